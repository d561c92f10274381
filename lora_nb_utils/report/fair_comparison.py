"""The fair comparison in the report: what each method's sweep chose on held-out data (selection.json) and what the
chosen values give on the reported set, with the cost of getting there (sweep runs included).

A run counts for a method's score only at its chosen value (select.table2_runs leaves the other swept values out);
its cost counts every run of the sweep. Chance level: always predicting the majority class of the GLUE validation
set (accuracy), 0 for Matthews and Pearson correlations; a task where a method stays within CHANCE_MARGIN of it is
not counted as a match.
"""
from __future__ import annotations

import pandas as pd

from ..glue.tasks import TASK_LABELS
from .format import METHOD_NAMES, METHOD_ORDER, human_count, model_label, signed, task_order, value_text
from .methods import PAPER_PAIR
from .select import main_runs
from .verdicts import FT_TOLERANCE

CHANCE = {"sst2": 50.9, "mrpc": 68.4, "rte": 52.7, "cola": 0.0, "stsb": 0.0, "qnli": 50.5, "qqp": 63.2,
          "mnli": 35.4}  # x100, majority class of the GLUE validation set (MNLI: matched)
CHANCE_MARGIN = 2.0  # points above chance a median must reach to count as learned


def _values_text(values: dict) -> str:
    names = {"learning_rate": "lr", "sora_lambda": "λ"}
    if list(values) == ["learning_rate"]:
        return value_text(values["learning_rate"])
    return ", ".join(f"{names.get(k, k)} {value_text(v)}" for k, v in values.items())


def group_parts(group: str) -> dict:
    """A sweep group's name (minilm/task=mrpc,method=lora,r=8) as model, task, method and rank (None without)."""
    model, _, rest = group.partition("/")
    parts = dict(p.split("=", 1) for p in rest.split(",") if "=" in p)
    return {"model": model, "task": parts.get("task", ""), "method": parts.get("method", ""),
            "r": int(parts["r"]) if parts.get("r", "").isdigit() else None}


def has_score(candidate: dict) -> bool:
    score = candidate.get("heldout_score")
    return isinstance(score, (int, float)) and score == score


def sweep_candidates(selection: dict) -> pd.DataFrame:
    """selection.json as one row per tried learning rate: model, task, method, rank `r`, `learning_rate`, held-out
    `score100` (NaN while pending), `status` and `chosen`. A group that also sweeps another value (SoRA's lambda)
    keeps the candidates at the chosen (before the choice: the best so far) value of the others."""
    rows = []
    for g in selection.get("groups", []):
        lr_swept = [c for c in g["candidates"] if "learning_rate" in c["values"]]
        scored = [c for c in lr_swept if has_score(c)]
        anchor = g.get("chosen") or (max(scored, key=lambda c: c["heldout_score"])["values"] if scored else {})
        others = {k: v for k, v in anchor.items() if k != "learning_rate"}
        for c in lr_swept:
            if all(c["values"].get(k) == v for k, v in others.items()):
                rows.append({**group_parts(g["group"]), "learning_rate": float(c["values"]["learning_rate"]),
                             "score100": 100 * c["heldout_score"] if has_score(c) else float("nan"),
                             "status": c.get("status", "ok"),
                             "chosen": g.get("chosen") is not None and c["values"] == g["chosen"]})
    return pd.DataFrame(rows, columns=["model", "task", "method", "r", "learning_rate", "score100", "status",
                                       "chosen"])


def selection_view(selection: dict) -> pd.DataFrame:
    """One row per sweep group: every value tried with its held-out score (x100; the chosen one marked) and the
    choice."""
    rows = []
    for g in selection.get("groups", []):
        parts = group_parts(g["group"])
        tried = []
        for c in g["candidates"]:
            text = "pending" if c.get("status") == "pending" else \
                f"{100 * c['heldout_score']:.1f}" if has_score(c) else "n/a"
            flag = "" if c.get("status") in ("ok", "pending") else f" ({c['status']})"
            mark = " ◀" if g.get("chosen") is not None and c["values"] == g["chosen"] else ""
            tried.append(f"{_values_text(c['values'])}: {text}{flag}{mark}")
        rows.append({"Model": model_label(parts["model"]), "Method": METHOD_NAMES.get(parts["method"], parts["method"]),
                     "Task": TASK_LABELS.get(parts["task"], parts["task"]),
                     "Values tried: held-out score (x100)": " · ".join(tried),
                     "Chosen": _values_text(g["chosen"]) if g.get("chosen") is not None else g.get("note", "waiting"),
                     "_task": parts["task"], "_method": parts["method"]})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["_t"] = frame["_task"].map({t: i for i, t in enumerate(task_order(frame["_task"]))})
    frame["_m"] = frame["_method"].map(lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))
    frame = frame.sort_values(["Model", "_t", "_m"])
    return frame.drop(columns=["_task", "_method", "_t", "_m"]).reset_index(drop=True)


def fair_comparison(results: pd.DataFrame) -> pd.DataFrame:
    """Per model, task and method of a sweep grid: the chosen values, the reported score (median, min, max over
    seeds, x100), epochs to the best held-out score and epochs trained (medians), the adapter size, and the hours of
    the whole cell (every sweep and confirm run: wall-clock training time and CPU core time)."""
    if "selection" not in results or results["selection"].isna().all():
        return pd.DataFrame()
    swept = results[results["selection"].notna()]
    chosen = main_runs(swept)
    rows = []
    for (model, task, method), g in chosen.groupby(["model", "task", "method"]):
        cell = swept[(swept["model"] == model) & (swept["task"] == task) & (swept["method"] == method)]
        adapter = g["effective_params"] if "effective_params" in g and g["effective_params"].notna().any() \
            else g["trainable_params"]
        row = {"model": model, "task": task, "method": method, "learning_rate": g["learning_rate"].iloc[0],
               "median": g["score100"].median(), "min": g["score100"].min(), "max": g["score100"].max(),
               "n": len(g), "seeds": ",".join(str(int(s)) for s in sorted(g["seed"])),
               "best_epoch": g["best_epoch"].median(), "epochs_run": g["epochs_run"].median(),
               "trainable_params": g["trainable_params"].median(), "adapter_params": adapter.median(),
               "cell_runs": int(cell["train_seconds"].notna().sum()),
               "cell_hours": cell["train_seconds"].sum() / 3600,
               "cell_cpu_hours": cell["cpu_seconds"].sum() / 3600 if "cpu_seconds" in cell else float("nan")}
        if method == "sora" and "sora_lambda" in g:
            row["sora_lambda"] = g["sora_lambda"].iloc[0]
            row["zero_gates"] = g["zero_gates"].median() if "zero_gates" in g else float("nan")
            row["total_gates"] = g["total_gates"].median() if "total_gates" in g else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def learned(task: str, score: float) -> bool:
    return score > CHANCE.get(task, 0.0) + CHANCE_MARGIN


def versus(comp: pd.DataFrame, method: str, reference: str = "lora", tolerance: float = FT_TOLERANCE) -> pd.DataFrame:
    """Per model and task where both ran: `method` minus `reference` (medians, x100), their chosen learning rates
    and their ratio, and a verdict: match (within the tolerance, both above chance), below, above, or chance."""
    if comp.empty:
        return pd.DataFrame()
    a = comp[comp["method"] == method].set_index(["model", "task"])
    b = comp[comp["method"] == reference].set_index(["model", "task"])
    both = a.merge(b, left_index=True, right_index=True, suffixes=("", "_ref"))
    rows = []
    for (model, task), r in both.iterrows():
        diff = r["median"] - r["median_ref"]
        verdict = "chance" if not (learned(task, r["median"]) and learned(task, r["median_ref"])) else \
            "match" if abs(diff) <= tolerance else ("below" if diff < 0 else "above")
        rows.append({"model": model, "task": task, "diff": diff, "verdict": verdict,
                     "median": r["median"], "median_ref": r["median_ref"], "lr": r["learning_rate"],
                     "lr_ref": r["learning_rate_ref"], "lr_ratio": r["learning_rate"] / r["learning_rate_ref"],
                     "params_ratio": r["adapter_params"] / r["trainable_params_ref"] if reference == "ft" else None,
                     "trainable_ratio": r["trainable_params"] / r["trainable_params_ref"]})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_k"] = out["task"].map({t: i for i, t in enumerate(task_order(out["task"]))})
    return out.sort_values(["model", "_k"]).drop(columns="_k").reset_index(drop=True)


def fair_table(comp: pd.DataFrame) -> pd.DataFrame:
    """fair_comparison for people: one row per method and task."""
    if comp.empty:
        return comp
    rows = []
    for _, r in comp.iterrows():
        lam = f", λ {value_text(r['sora_lambda'])}" if r.get("method") == "sora" and "sora_lambda" in r and \
            r["sora_lambda"] == r["sora_lambda"] else ""
        gates = f" ({int(r['zero_gates'])} of {int(r['total_gates'])} gates closed)" \
            if "zero_gates" in r and r["zero_gates"] == r["zero_gates"] else ""
        rows.append({"Model": model_label(r["model"]), "Task": TASK_LABELS.get(r["task"], r["task"]),
                     "Method": METHOD_NAMES.get(r["method"], r["method"]),
                     "Chosen lr": value_text(r["learning_rate"]) + lam,
                     "Score (median, x100)": f"{r['median']:.1f}",
                     "Seed range": f"{r['min']:.1f}–{r['max']:.1f}", "Seeds": r["n"],
                     "Best epoch / trained": f"{r['best_epoch']:g} / {r['epochs_run']:g}",
                     "Trainable": human_count(r["trainable_params"]),
                     "Adapter after training": human_count(r["adapter_params"]) + gates,
                     "Cell: runs, hours": f"{r['cell_runs']}, {r['cell_hours']:.2f} h"})
    out = pd.DataFrame(rows)
    out["_k"] = comp["task"].map({t: i for i, t in enumerate(task_order(comp["task"]))}).values
    out["_m"] = comp["method"].map(lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 9).values
    return out.sort_values(["Model", "_k", "_m"]).drop(columns=["_k", "_m"]).reset_index(drop=True)


def fair_findings(results: pd.DataFrame, tolerance: float = FT_TOLERANCE) -> list[str]:
    """Sentences generated from a sweep grid's runs: LoRA vs FT at their chosen learning rates, the learning-rate
    ratio, every other method (AdaLoRA, SoRA, the LoRA family) vs LoRA, SoRA's gates, and what the whole comparison
    cost."""
    comp = fair_comparison(results)
    if comp.empty:
        return []
    out = []
    lf = versus(comp, "lora", "ft", tolerance)
    if not lf.empty:
        counted = lf[lf["verdict"] != "chance"]
        matched = counted[counted["verdict"] == "match"]
        per_task = "; ".join(f"{TASK_LABELS.get(r.task, r.task)} {signed(r.diff)} ({r.verdict})"
                             for r in lf.itertuples())
        out.append(f"LoRA minus FT at each method's chosen learning rate (median over seeds, x100): {per_task}. "
                   f"LoRA is within {tolerance:g} point of FT on {len(matched)} of {len(lf)} task(s)"
                   + (f" ({len(lf) - len(counted)} with a method at chance level, not counted)"
                      if len(counted) < len(lf) else "") +
                   f", training {100 * lf['trainable_ratio'].median():.1f}% of FT's parameters.")
        out.append("Chosen learning rates, LoRA / FT: " + "; ".join(
            f"{TASK_LABELS.get(r.task, r.task)} {value_text(r.lr)} / {value_text(r.lr_ref)} (x{r.lr_ratio:g})"
            for r in lf.itertuples()) + f"; median ratio x{lf['lr_ratio'].median():g}.")
    for method in (m for m in METHOD_ORDER if m not in PAPER_PAIR):  # every other method against LoRA
        v = versus(comp, method, "lora", tolerance)
        if v.empty:
            continue
        n_match = int((v["verdict"] == "match").sum())
        out.append(f"{METHOD_NAMES[method]} minus LoRA (median over seeds, x100): "
                   + "; ".join(f"{TASK_LABELS.get(r.task, r.task)} {signed(r.diff)} ({r.verdict})"
                               for r in v.itertuples())
                   + f"; within {tolerance:g} point on {n_match} of {len(v)} task(s).")
    sora = comp[comp["method"] == "sora"]
    if len(sora) and "zero_gates" in sora:
        out.append("SoRA at its chosen lambda: " + "; ".join(
            f"{TASK_LABELS.get(r.task, r.task)} {r.zero_gates:g} of {r.total_gates:g} gates closed "
            f"({100 * r.zero_gates / r.total_gates:.0f}%), adapter {human_count(r.adapter_params)}"
            for r in sora.itertuples() if r.total_gates == r.total_gates) + " (medians over seeds).")
    epochs = comp.groupby("method")[["best_epoch", "epochs_run"]].median()
    out.append("Epochs to the best held-out score / trained (median over tasks): " + "; ".join(
        f"{METHOD_NAMES.get(m, m)} {epochs.loc[m, 'best_epoch']:g} / {epochs.loc[m, 'epochs_run']:g}"
        for m in METHOD_ORDER if m in epochs.index) + ".")
    hours = comp.groupby("method")[["cell_hours", "cell_cpu_hours", "cell_runs"]].sum()
    out.append("Cost, sweeps included (training time, wall-clock hours / CPU core-hours, runs): " + "; ".join(
        f"{METHOD_NAMES.get(m, m)} {hours.loc[m, 'cell_hours']:.1f} h / {hours.loc[m, 'cell_cpu_hours']:.1f} h, "
        f"{int(hours.loc[m, 'cell_runs'])} runs" for m in METHOD_ORDER if m in hours.index)
        + f"; in all {hours['cell_hours'].sum():.1f} h.")
    return out
