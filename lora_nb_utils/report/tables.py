"""The report's tables for people: readable headers with units, scores rounded as the paper rounds them (x100, one
decimal), a verdict per cell as one word: Table 2 in the paper's layout, the verdicts per task, every configuration
(the appendix) and the rank ablation. render.show displays them."""
from __future__ import annotations

import pandas as pd

from ..glue.tasks import TASK_LABELS, TASK_ORDER
from .format import NothingToShow, config_key, human_count, message, model_label, score_text, signed
from .select import PAPER_RANK
from .table2 import compare_to_paper, table2_layout
from .verdicts import FT_TOLERANCE


# ---------------------------------------------------------------- Table 2 and the verdicts

def table2_view(agg: pd.DataFrame, ranks=(PAPER_RANK,)) -> pd.DataFrame | NothingToShow:
    """The paper's Table 2 layout for people: Model, Method, Trainable params, Source, the 8 tasks and Avg., scores
    x100 with one decimal; the paper's rows with their ± (our rows first, then the paper's)."""
    t2 = table2_layout(agg, ranks=ranks)
    if message(t2):
        return t2
    pms = t2.attrs.get("paper_pm", {})
    tasks = [TASK_LABELS[t] for t in TASK_ORDER]
    labels = {v: k for k, v in TASK_LABELS.items()}
    rows = []
    for key, r in t2.iterrows():
        model, method, params, source = key
        pm = pms.get(key, {})
        row = {"Model": model_label(model), "Method": method, "Trainable params": params,
               "Source": "paper" if source == "paper" else "ours"}
        row.update({t: score_text(r[t], pm.get(labels[t])) for t in tasks})
        row["Avg."] = score_text(r["Avg"])
        rows.append(row)
    out = pd.DataFrame(rows)
    n_ours = t2.xs("ours", level="source")[tasks].notna().sum(axis=1)
    tasks_ours = f"{n_ours.max()}" if n_ours.min() == n_ours.max() else f"{n_ours.min()} to {n_ours.max()}"
    out.attrs["footnote"] = ("Median over seeds of each run's reported score, x100 (MNLI: matched accuracy; CoLA: "
                             "Matthews correlation; STS-B: Pearson correlation; the rest: accuracy); — no run. Avg.: "
                             f"mean over the tasks in the row (ours: {tasks_ours}; the paper's: all 8). Trainable "
                             "params of adapters count the adapter matrices only, as the paper does; the "
                             "classification head trains too. The paper's ± is its spread over 5 seeds.")
    return out


def verdict_view(agg: pd.DataFrame, ft_tolerance: float = FT_TOLERANCE) -> pd.DataFrame | NothingToShow:
    """Per configuration (FT, LoRA at the paper's rank, AdaLoRA, SoRA) and task: the difference from the reference
    (the paper's cell, or our FT for a model the paper does not report) and a one-word verdict, e.g. '−2.8 below'."""
    cmp = compare_to_paper(agg, ft_tolerance)
    if message(cmp):
        return cmp
    cmp = cmp[(cmp["reference"] != "") & ((cmp["method"] != "lora") | (cmp["lora_r"] == PAPER_RANK))]
    if cmp.empty:
        return NothingToShow("No cell has a reference to compare with (the paper's value or our own FT).")
    cmp = cmp.assign(cell=[f"{signed(d)} {v}" for d, v in zip(cmp["difference"], cmp["verdict"])])
    rows = []
    for (model, label, ref), g in cmp.groupby(["model", "config", "reference"], sort=False):
        row = {"Model": model_label(model), "Method": label, "Compared with": ref}
        row.update({TASK_LABELS.get(t, t): c for t, c in zip(g["task"], g["cell"])})
        rows.append(row)
    out = pd.DataFrame(rows)
    out = out.iloc[sorted(range(len(out)), key=lambda i: (out["Model"].iloc[i], config_key(out["Method"].iloc[i])))]
    tasks = [TASK_LABELS[t] for t in TASK_ORDER if TASK_LABELS[t] in out]
    out = out[["Model", "Method", "Compared with", *tasks]].fillna("—").reset_index(drop=True)
    if out["Model"].nunique() == 1:
        out = out.drop(columns="Model")
    out.attrs["footnote"] = (f"Points (x100), ours minus the reference's median. match: within the tolerance (the "
                             f"paper's ± for LoRA, {ft_tolerance:g} point otherwise); below / above: outside it.")
    out.attrs["verdicts"] = tasks
    return out


def configurations_view(agg: pd.DataFrame, ft_tolerance: float = FT_TOLERANCE) -> pd.DataFrame | NothingToShow:
    """Every configuration and task (the appendix): median, mean ± s.d., range and runs over seeds, the reference
    and the verdict."""
    cmp = compare_to_paper(agg, ft_tolerance)
    if message(cmp):
        return cmp
    full = agg.merge(cmp[["model", "method", "lora_r", "task", "reference", "reference_value", "paper_pm",
                          "difference", "verdict"]], on=["model", "method", "lora_r", "task"], how="left")
    rows = []
    for r in full.itertuples(index=False):
        runs = f"{r.n}" + (f" + {r.n_excluded} excluded" if r.n_excluded else "")
        ref = "—" if not r.reference else f"{r.reference} {score_text(r.reference_value, r.paper_pm)}"
        rows.append({"Model": model_label(r.model), "Method": r.config,
                     "Task": TASK_LABELS.get(r.task, r.task), "Median": score_text(r.median),
                     "Mean ± s.d.": score_text(r.mean, r.std), "Min–max": "—" if pd.isna(r.min) else
                     f"{r.min:.1f}–{r.max:.1f}", "Runs": runs, "Seeds": r.seeds.replace(",", ", ") or "—",
                     "Trainable params": human_count(r.trainable_params), "Reference": ref,
                     "Difference": signed(r.difference), "Verdict": r.verdict})
    out = pd.DataFrame(rows)
    if out["Model"].nunique() == 1:
        out = out.drop(columns="Model")
    out.attrs["footnote"] = ("Reported scores x100 over seeds; excluded runs (collapsed, NaN loss, failed, timed out) "
                             "are left out of every statistic. Trainable params include the classification head. "
                             f"Verdict as in Table 2's comparison (tolerance: the paper's ± or {ft_tolerance:g} "
                             "point).")
    return out


def rank_view(ra: pd.DataFrame) -> pd.DataFrame | NothingToShow:
    """The rank ablation (report.rank_ablation) as a tasks x ranks grid of medians."""
    if message(ra):
        return ra
    grid = ra.assign(Task=ra["task"].map(lambda t: TASK_LABELS.get(t, t)), r=ra["lora_r"].map(lambda r: f"r={r}"))
    out = grid.pivot_table(index=["model", "Task"], columns="r", values="median", sort=False)
    out = out[sorted(out.columns, key=lambda c: int(c[2:]))].map(score_text).reset_index()
    out = out.rename(columns={"model": "Model"}).assign(Model=lambda f: f["Model"].map(model_label))
    out.columns.name = None
    return out.drop(columns="Model") if out["Model"].nunique() == 1 else out
