"""Our medians beside the LoRA paper's Table 2: per cell the paper's value (or, for a model the paper does not
report, our own full fine-tuning), the difference and a one-word verdict (`compare_to_paper`), and the paper's wide
layout, models and methods down, the 8 tasks across (`table2_layout`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..glue.tasks import TASK_LABELS, TASK_ORDER
from ..paper import load_reference
from .format import NothingToShow, config_key, human_count, method_label, trains_adapter
from .select import PAPER_RANK
from .verdicts import FT_TOLERANCE, cell_verdict

REFERENCE_MODEL = "roberta-base"  # whose settings a model outside the paper is compared with


def paper_rows() -> pd.DataFrame:
    """The LoRA paper's Table 2 rows of full fine-tuning and LoRA (model, method, task, value, plus_minus, ...)."""
    t = load_reference("lora_paper_table2")
    return t[t["method"].isin(["ft", "lora"])]


def _paper_method(method: str, lora_r) -> str | None:
    if method == "ft":
        return "ft"
    if method == "lora" and not pd.isna(lora_r) and int(lora_r) == PAPER_RANK:
        return "lora"
    return None


def compare_to_paper(agg: pd.DataFrame, ft_tolerance: float = FT_TOLERANCE) -> pd.DataFrame | NothingToShow:
    """Our medians beside the paper's Table 2 (same model, method, task), the difference and a verdict per cell.

    LoRA cells use the paper's ± as the tolerance; FT cells (no ± in the paper) use `ft_tolerance` points.
    Models outside the paper (e.g. minilm) have no paper value: their LoRA, AdaLoRA and SoRA cells are compared with
    our own FT of the same model and task instead (`reference` says which). `verdict` is one word (match, below,
    above, or "—" with no reference); `note` says it in a sentence.
    """
    cols = ["model", "method", "lora_r", "config", "task", "ours", "n", "n_excluded", "reference", "reference_value",
            "paper", "paper_pm", "tolerance", "difference", "verdict", "note"]
    if agg is None or agg.empty:
        return NothingToShow()
    paper = paper_rows().set_index(["model", "method", "task"])
    paper_models = set(paper.index.get_level_values("model"))
    ours_ft = agg[agg["method"] == "ft"].set_index(["model", "task"])["median"]
    rows = []
    for r in agg.itertuples(index=False):
        row = {"model": r.model, "method": r.method, "lora_r": r.lora_r, "config": r.config, "task": r.task,
               "ours": r.median,
               "n": r.n, "n_excluded": r.n_excluded, "reference": "", "reference_value": np.nan, "paper": np.nan,
               "paper_pm": np.nan, "tolerance": np.nan, "difference": np.nan, "verdict": "—", "note": ""}
        key = (r.model, _paper_method(r.method, r.lora_r), r.task)
        if pd.isna(r.median):
            row["note"] = "no finished run"
        elif key in paper.index:
            p = paper.loc[key]
            pm = p["plus_minus"]
            tol = ft_tolerance if pd.isna(pm) else pm
            diff = round(r.median - p["value"], 2)
            row.update(reference="paper", reference_value=p["value"], paper=p["value"], paper_pm=pm, tolerance=tol,
                       difference=diff, verdict=cell_verdict(diff, tol))
            row["note"] = (f"within {ft_tolerance:g} point (our tolerance; the paper gives no ±)" if pd.isna(pm)
                           else "within the paper's ± spread") if row["verdict"] == "match" else (
                f"{row['verdict']} the paper by {abs(diff):.1f}")
        elif r.model in paper_models:
            row["note"] = f"no paper value (the paper reports LoRA at r={PAPER_RANK} only)"
        elif r.method == "ft":
            row["note"] = "no paper value (model not in the paper)"
        elif (r.model, r.task) in ours_ft.index and not pd.isna(ours_ft.loc[(r.model, r.task)]):
            ft = ours_ft.loc[(r.model, r.task)]
            diff = round(r.median - ft, 2)
            row.update(reference="our FT", reference_value=ft, difference=diff, tolerance=ft_tolerance,
                       verdict=cell_verdict(diff, ft_tolerance))
            row["note"] = "no paper value; vs our FT: " + (f"within {ft_tolerance:g} point" if row["verdict"] == "match"
                                                           else f"{row['verdict']} FT by {abs(diff):.1f}")
        else:
            row["note"] = "no paper value; no FT run of ours to compare with"
        rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["footnote"] = (f"Tolerance: the paper's ± for LoRA; {ft_tolerance:g} point for FT (the paper copies FT "
                             "numbers without a spread) and for a method vs our own FT on models outside the paper.")
    return out


def table2_layout(agg: pd.DataFrame, with_paper: bool = True, ranks=None) -> pd.DataFrame | NothingToShow:
    """A wide table like the paper's Table 2: rows (model, method, trainable params, source), columns 8 tasks + Avg.

    Cells we have no run for stay empty (NaN). Avg is the mean over the tasks present in that row only, and the
    column "Avg over" says how many. `ranks`: the LoRA ranks to show (None: all). The paper's rows appear for our
    models it reports, or, when it reports none of them, for REFERENCE_MODEL (the scale of the paper's numbers).
    """
    columns = [TASK_LABELS[t] for t in TASK_ORDER] + ["Avg", "Avg over"]
    if agg is None or agg.empty:
        return NothingToShow()
    if ranks is not None:
        agg = agg[(agg["method"] != "lora") | agg["lora_r"].isin(list(ranks))]
    rows = []
    for (model, method, config), g in agg.groupby(["model", "method", "config"], dropna=False, sort=False):
        params = g["lora_params"].median() if trains_adapter(method) else g["trainable_params"].median()
        row = {"model": model, "method": config, "# trainable params": human_count(params), "source": "ours"}
        row.update({TASK_LABELS.get(t, t): v for t, v in zip(g["task"], g["median"])})
        rows.append(row)
    if with_paper:
        paper = paper_rows()
        models = set(agg["model"]) & set(paper["model"]) or {REFERENCE_MODEL}
        for (model, method), g in paper[paper["model"].isin(models)].groupby(["model", "method"], sort=False):
            row = {"model": model, "method": method_label(method, PAPER_RANK if method == "lora" else None),
                   "# trainable params": g["trainable_params"].iloc[0], "source": "paper",
                   "_pm": dict(zip(g["task"], g["plus_minus"]))}
            row.update({TASK_LABELS[t]: v for t, v in zip(g["task"], g["value"])})
            rows.append(row)
    table = pd.DataFrame(rows)
    for c in columns[:-2]:
        if c not in table:
            table[c] = np.nan
    scores = table[columns[:-2]].astype(float)
    table["Avg"] = scores.mean(axis=1, skipna=True)
    table["Avg over"] = scores.notna().sum(axis=1).map(lambda k: f"{k} of {len(TASK_ORDER)} tasks")
    table["_m"] = table["method"].map(config_key)
    table["_s"] = table["source"].map({"ours": 0, "paper": 1})
    table = table.sort_values(["_s", "model", "_m"], kind="stable")
    pm = table["_pm"] if "_pm" in table else pd.Series(np.nan, index=table.index)
    table = table.set_index(["model", "method", "# trainable params", "source"])
    out = table[columns].copy()
    out.attrs["paper_pm"] = {k: v for k, v in zip(out.index, pm) if isinstance(v, dict)}  # ± per task, paper rows
    out.attrs["footnote"] = ("Median over seeds of each run's reported score, x100. Empty cells: no finished run. "
                             "Avg is the mean over the tasks present in the row (see 'Avg over'); the paper's Avg is "
                             "over all 8 tasks. Our LoRA parameter counts are the LoRA matrices only, as the paper "
                             "counts them (the classification head trains too).")
    return out
