"""Why a method misses its reference in a sweep grid, from the runs: for every task where the fair comparison's
verdict is below or above (LoRA against FT, every other method against LoRA), what the data shows.

- the gap on the held-out part that chose the values (selection could only see that one);
- the seed spread of both methods (do their ranges overlap?);
- where each chosen learning rate sits in its sweep (at an edge, the best value may lie outside what was tried);
- how many runs were still improving at their last epoch, and how many early stopping ended;
- the training loss at the best epoch (a method that fits its training set less is limited by its capacity or its
  rate; one that fits it as well and scores lower is not).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..glue.tasks import TASK_LABELS
from .fair_comparison import fair_comparison, versus
from .format import METHOD_NAMES, METHOD_ORDER, signed, value_text
from .methods import PAPER_PAIR
from .select import main_runs
from .verdicts import FT_TOLERANCE

UNDERFIT_RATIO = 1.5  # a training loss this many times the reference's counts as fitting the training set less


def _cell(frame: pd.DataFrame, model: str, task: str, method: str) -> pd.DataFrame:
    return frame[(frame["model"] == model) & (frame["task"] == task) & (frame["method"] == method)]


def _loss_at_best_epoch(run: dict) -> float:
    """The training loss of the epoch whose held-out score the run reports (its epochs.csv); NaN without one."""
    path = Path(str(run.get("run_dir", ""))) / "epochs.csv"
    if not path.is_file() or pd.isna(run.get("best_epoch")):
        return float("nan")
    epochs = pd.read_csv(path)
    row = epochs[epochs["epoch"] == int(run["best_epoch"])]
    return float(row["train_loss"].iloc[0]) if len(row) and "train_loss" in row else float("nan")


def _sweep_position(swept: pd.DataFrame, chosen_lr: float, name: str) -> str:
    """Where the chosen learning rate lies among the values its sweep tried."""
    values = sorted(swept["learning_rate"].dropna().unique())
    if len(values) < 2:
        return f"{name}'s lr {value_text(chosen_lr)} was the only value tried"
    span = f"{value_text(values[0])} to {value_text(values[-1])}"
    if chosen_lr >= values[-1]:
        return f"{name}'s lr {value_text(chosen_lr)} is the largest of its sweep ({span}): a larger one was not tried"
    if chosen_lr <= values[0]:
        return f"{name}'s lr {value_text(chosen_lr)} is the smallest of its sweep ({span}): a smaller one was not tried"
    return f"{name}'s lr {value_text(chosen_lr)} lies inside its sweep ({span})"


def _still_improving(runs: pd.DataFrame) -> tuple[int, int]:
    """(runs whose best epoch was their last one, runs that early stopping ended)."""
    last = runs["epochs_run"].fillna(runs["epochs"]) if "epochs_run" in runs else runs["epochs"]
    rising = int((runs["best_epoch"].astype(float) >= last.astype(float)).sum())
    stopped = int(runs["stopped_early"].astype(str).str.lower().eq("true").sum()) if "stopped_early" in runs else 0
    return rising, stopped


def explain_gap(results: pd.DataFrame, row, method: str, reference: str) -> str:
    """One task's gap (`row`: a row of fair_comparison.versus): a heading line and one nested bullet per piece of
    evidence (Markdown)."""
    chosen = main_runs(results[results["selection"].notna()])
    swept = results[results["selection"].notna()]
    name, ref_name = METHOD_NAMES.get(method, method), METHOD_NAMES.get(reference, reference)
    a, b = _cell(chosen, row.model, row.task, method), _cell(chosen, row.model, row.task, reference)
    parts = []

    held_a, held_b = 100 * a["score"].astype(float).median(), 100 * b["score"].astype(float).median()
    held = f"on the held-out part that chose the values, {name} {held_a:.1f} vs {ref_name} {held_b:.1f} " \
           f"({signed(held_a - held_b)})"
    if abs(held_a - held_b) <= FT_TOLERANCE < abs(row.diff):
        held += ": within a point there, so selection could not see the gap"
    parts.append(held)

    overlap = max(a["score100"].min(), b["score100"].min()) <= min(a["score100"].max(), b["score100"].max())
    parts.append(f"the seeds span {name} {a['score100'].min():.1f}–{a['score100'].max():.1f} and {ref_name} "
                 f"{b['score100'].min():.1f}–{b['score100'].max():.1f} ("
                 + ("they overlap: the gap is within seed noise" if overlap else
                    "no overlap: the gap is larger than the seed spread") + ")")

    parts.append(_sweep_position(_cell(swept, row.model, row.task, method), row.lr, name) + "; "
                 + _sweep_position(_cell(swept, row.model, row.task, reference), row.lr_ref, ref_name))

    (rise_a, stop_a), (rise_b, stop_b) = _still_improving(a), _still_improving(b)
    improving = f"still improving at their last epoch: {name} {rise_a} of {len(a)} runs, {ref_name} {rise_b} of " \
                f"{len(b)} (early stopping ended {stop_a} and {stop_b})"
    if row.diff < 0 and rise_a == 0:
        improving += f"; {name}'s runs had stopped improving before their budget ran out"
    elif row.diff < 0:
        improving += "; a longer budget may close part of the gap"
    parts.append(improving)

    loss_a = pd.Series([_loss_at_best_epoch(r) for r in a.to_dict("records")]).median()
    loss_b = pd.Series([_loss_at_best_epoch(r) for r in b.to_dict("records")]).median()
    if loss_a == loss_a and loss_b == loss_b:
        fit = f"training loss at the best epoch {name} {loss_a:.3g} vs {ref_name} {loss_b:.3g}"
        worse = row.diff < 0
        if worse and loss_a > UNDERFIT_RATIO * loss_b:
            fit += f" ({name} fits its training set less: its capacity or its rate limits it)"
        elif worse and loss_a <= loss_b:
            fit += f" ({name} fits its training set as well or better and still scores lower: not a capacity limit)"
        parts.append(fit)

    head = f"{TASK_LABELS.get(row.task, row.task)}, {name} {signed(row.diff)} against {ref_name} ({row.verdict}):"
    return head + "".join(f"\n  - {p[0].upper()}{p[1:]}." for p in parts)  # nested bullets (Markdown)


def gap_findings(results: pd.DataFrame, tolerance: float = FT_TOLERANCE) -> list[str]:
    """A sentence per task where LoRA misses FT, or another method misses LoRA, by more than the tolerance."""
    comp = fair_comparison(results)
    if comp.empty:
        return []
    pairs = [PAPER_PAIR[::-1]] + [(m, "lora") for m in METHOD_ORDER if m not in PAPER_PAIR]
    out = []
    for method, reference in pairs:
        v = versus(comp, method, reference, tolerance)
        for row in v[v["verdict"].isin(["below", "above"])].itertuples() if len(v) else ():
            out.append(explain_gap(results, row, method, reference))
    return out
