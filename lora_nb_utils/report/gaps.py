"""Where a method differs from its reference in a sweep grid by more than the tolerance (LoRA against FT, every
other method against LoRA), what the runs show, one bullet each:

- the held-out part (median over seeds of each run's best held-out score): the same gap, a smaller one, or none;
- the seeds: how many, and whether the two methods' ranges overlap;
- where each chosen learning rate sits among the values its sweep tried (selection.json), and what lies beyond it;
- how many runs were still improving at their last epoch, and how many early stopping ended;
- the lowest training loss each run reached (its epochs.csv), for methods whose loss is the task's loss alone.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..glue.tasks import TASK_LABELS
from ..methods import METHODS
from ..runs.rundir import EPOCHS
from .fair_comparison import fair_comparison, sweep_candidates, versus
from .format import METHOD_NAMES, METHOD_ORDER, model_label, signed, value_text
from .methods import PAPER_PAIR
from .select import main_runs
from .verdicts import FT_TOLERANCE

FITS_LESS = 1.5  # a lowest training loss this many times the reference's counts as fitting the training set less


def _name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def heldout_gap(a: pd.DataFrame, b: pd.DataFrame, reported: float, names, tolerance: float) -> str:
    """The gap on the held-out part, where the values were chosen, against the reported one."""
    ha, hb = 100 * a["score"].astype(float).median(), 100 * b["score"].astype(float).median()
    gap = ha - hb
    if abs(gap) <= tolerance:
        verdict = f"within {tolerance:g} point there: the gap shows on the reported set only"
    elif (gap < 0) != (reported < 0):
        verdict = "the other way round there"
    else:
        verdict = "the same direction there" + (", smaller" if abs(gap) < abs(reported) else "")
    return (f"held-out part (median over seeds of each run's best held-out score): {names[0]} {ha:.1f} vs "
            f"{names[1]} {hb:.1f} ({signed(gap)}), {verdict}")


def seed_spread(ca, cb, names) -> str:
    """The seeds' ranges of the reported score (rows of fair_comparison)."""
    spans = f"{names[0]} {ca['min']:.1f}–{ca['max']:.1f} ({ca['n']} seeds), {names[1]} {cb['min']:.1f}–" \
            f"{cb['max']:.1f} ({cb['n']} seeds)"
    if min(ca["n"], cb["n"]) < 2:
        return f"seeds: {spans}; one seed gives no spread to compare the gap with"
    overlap = max(ca["min"], cb["min"]) <= min(ca["max"], cb["max"])
    return f"seeds: {spans}; the ranges " + ("overlap" if overlap else "do not overlap")


def sweep_position(tried: pd.DataFrame, chosen_lr: float, name: str) -> str:
    """Where the chosen learning rate lies among the values its sweep tried, and what lies beyond an edge."""
    values = tried.sort_values("learning_rate")
    ok = values[values["status"] == "ok"]["learning_rate"]
    if len(values) < 2:
        return f"{name}'s lr {value_text(chosen_lr)} is the only value its sweep tried"
    span = f"{value_text(values['learning_rate'].iloc[0])} to {value_text(values['learning_rate'].iloc[-1])}"
    for edge, beyond, most, more in ((ok.max(), values[values["learning_rate"] > chosen_lr], "largest", "larger"),
                                     (ok.min(), values[values["learning_rate"] < chosen_lr], "smallest", "smaller")):
        if chosen_lr != edge:
            continue
        if beyond.empty:
            return f"{name}'s lr {value_text(chosen_lr)} is the {most} its sweep tried ({span}): a {more} one was " \
                   "not tried"
        nxt = beyond.iloc[0] if more == "larger" else beyond.iloc[-1]
        return f"{name}'s lr {value_text(chosen_lr)} is the {most} that trained ({span}); the next {more}, " \
               f"{value_text(nxt['learning_rate'])}, {nxt['status']}"
    return f"{name}'s lr {value_text(chosen_lr)} lies inside its sweep ({span})"


def convergence(a: pd.DataFrame, b: pd.DataFrame, reported: float, names) -> str:
    """Runs still improving at their last epoch (best epoch = last), and runs that early stopping ended."""
    parts = []
    for runs, name in ((a, names[0]), (b, names[1])):
        known = runs.dropna(subset=["best_epoch", "epochs_run"])
        rising = int((known["best_epoch"].astype(float) >= known["epochs_run"].astype(float)).sum())
        text = f"{name} {rising} of {len(known)}" if len(known) else f"{name} unknown"
        if "stopped_early" in runs and runs["stopped_early"].notna().any():
            text += f" ({int(runs['stopped_early'].astype(str).str.lower().eq('true').sum())} ended by early " \
                    "stopping)"
        parts.append((text, rising, len(known)))
    out = "still improving at their last epoch: " + ", ".join(p[0] for p in parts)
    rising, known = parts[0][1], parts[0][2]
    if reported < 0 and known and rising == 0:
        out += f"; every {names[0]} run had stopped improving before its budget ran out"
    elif reported < 0 and rising:
        out += f"; {names[0]} was still improving, so a longer budget may narrow the gap"
    return out


def lowest_loss(run: dict) -> float:
    """The lowest training loss over a run's epochs (epochs.csv); NaN without one."""
    path = Path(str(run.get("run_dir", ""))) / EPOCHS
    if not path.is_file():
        return float("nan")
    epochs = pd.read_csv(path)
    return float(epochs["train_loss"].min()) if "train_loss" in epochs and len(epochs) else float("nan")


def training_fit(a: pd.DataFrame, b: pd.DataFrame, reported: float, methods, names) -> str | None:
    """The lowest training loss each method's runs reached (median); None where a method's loss is not the task's
    loss alone or no epochs.csv was found."""
    if not all(METHODS[m].loss_is_task_loss for m in methods if m in METHODS):
        return None
    la = pd.Series([lowest_loss(r) for r in a.to_dict("records")], dtype=float).median()
    lb = pd.Series([lowest_loss(r) for r in b.to_dict("records")], dtype=float).median()
    if not (la == la and lb == lb):
        return None
    out = f"lowest training loss reached (median over seeds): {names[0]} {la:.3g}, {names[1]} {lb:.3g}"
    if reported < 0 and la > FITS_LESS * lb:
        out += f"; {names[0]} fits its training set less within its budget"
    elif reported < 0 and la <= lb:
        out += f"; {names[0]} fits its training set at least as well and still scores lower"
    return out


def explain_gap(results: pd.DataFrame, selection: dict, row, method: str, reference: str,
                tolerance: float = FT_TOLERANCE) -> str:
    """One task's gap (`row`: a row of fair_comparison.versus) as a heading line and a nested bullet per piece of
    evidence (Markdown)."""
    chosen = main_runs(results[results["selection"].notna()])
    comp = fair_comparison(results).set_index(["model", "task", "method"])
    names = (_name(method), _name(reference))

    def cell(frame, m):
        return frame[(frame["model"] == row.model) & (frame["task"] == row.task) & (frame["method"] == m)]

    def tried(runs, m):  # the sweep of the chosen runs' rank where groups name one (LoRA at several ranks)
        values = cell(candidates, m)
        ranks = runs["lora_r"].dropna() if "lora_r" in runs else pd.Series(dtype=float)
        return values[values["r"] == ranks.iloc[0]] if len(ranks) and values["r"].notna().any() else values
    a, b = cell(chosen, method), cell(chosen, reference)
    candidates = sweep_candidates(selection)
    parts = [heldout_gap(a, b, row.diff, names, tolerance),
             seed_spread(comp.loc[(row.model, row.task, method)], comp.loc[(row.model, row.task, reference)], names),
             sweep_position(tried(a, method), row.lr, names[0]) + "; "
             + sweep_position(tried(b, reference), row.lr_ref, names[1]),
             convergence(a, b, row.diff, names),
             training_fit(a, b, row.diff, (method, reference), names)]
    models = results["model"].nunique() > 1
    head = (f"{model_label(row.model)} " if models else "") + \
        f"{TASK_LABELS.get(row.task, row.task)}, {names[0]} {signed(row.diff)} against {names[1]} ({row.verdict}):"
    return head + "".join(f"\n  - {p[0].upper()}{p[1:]}." for p in parts if p)


def gap_findings(results: pd.DataFrame, selection: dict, tolerance: float = FT_TOLERANCE) -> list[str]:
    """explain_gap for every task where LoRA differs from FT, or another method from LoRA, by more than the
    tolerance (verdict below or above)."""
    comp = fair_comparison(results)
    if comp.empty:
        return []
    out = []
    for method, reference in [PAPER_PAIR[::-1]] + [(m, "lora") for m in METHOD_ORDER if m not in PAPER_PAIR]:
        v = versus(comp, method, reference, tolerance)
        if v.empty:
            continue
        for row in v[v["verdict"].isin(["below", "above"])].itertuples():
            out.append(explain_gap(results, selection, row, method, reference, tolerance))
    return out
