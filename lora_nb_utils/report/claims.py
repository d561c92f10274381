"""The report's summary: the paper's claims that our runs test, each with a verdict (reproduced, partly, not
reproduced, inconclusive) and the numbers behind it: LoRA against full fine-tuning, the paper's Table 2 cells, the
rank ablation, the cost, Section 7's findings (section7.py) and the AdaLoRA and SoRA papers' claims (methods.py)."""
from __future__ import annotations

import pandas as pd

from ..glue.tasks import TASK_LABELS
from .format import NO_RESULTS, NothingToShow, message, model_label, span, task_order
from .methods import method_claims
from .section7 import section7_claims
from .select import PAPER_RANK, has_runs
from .stats import aggregate, cost_table, lora_vs_ft, rank_ablation
from .table2 import compare_to_paper
from .verdicts import CLAIM_COLUMNS, FT_TOLERANCE, cells_text, claim, grade


def _lora_vs_ft_claims(results: pd.DataFrame, tolerance: float) -> list[dict]:
    vs = lora_vs_ft(results)
    if message(vs):
        return []
    rows = []
    for model, g in vs.dropna(subset=["lora", "ft"]).groupby("model"):
        g = g.set_index("task").reindex(task_order(g["task"]))
        good = int((g["difference"] >= -tolerance - 1e-9).sum())
        rows.append(claim("LoRA matches full fine-tuning while training a small fraction of the parameters "
                          "(Table 2)", grade(good, len(g)),
                          f"{model_label(model)}, LoRA r={PAPER_RANK} minus FT, median over seeds: "
                          f"{cells_text(g['difference'], tolerance)}; LoRA trains "
                          f"{g['params_pct'].median():.1f}% of FT's parameters."))
    return rows


def _paper_cell_claims(results: pd.DataFrame, ft_tolerance: float) -> list[dict]:
    cmp = compare_to_paper(aggregate(results), ft_tolerance)
    if message(cmp):
        return []
    cmp = cmp[cmp["reference"] == "paper"]
    if cmp.empty:
        return []
    good = int((cmp["verdict"] == "match").sum())
    return [claim("The paper's Table 2 numbers", grade(good, len(cmp)),
                  f"{good} of {len(cmp)} cells within the paper's ± (LoRA) or {ft_tolerance:g} point (FT); "
                  f"{int((cmp['verdict'] == 'below').sum())} below, {int((cmp['verdict'] == 'above').sum())} above.")]


def _rank_claims(results: pd.DataFrame, tolerance: float) -> list[dict]:
    ra = rank_ablation(results)
    if message(ra):
        return []
    parts, good = [], 0
    for (model, task), g in ra.groupby(["model", "task"], sort=False):
        best = g.loc[g["median"].idxmax()]
        small = int(g.loc[g["median"] >= best["median"] - tolerance, "lora_r"].min())
        good += small <= PAPER_RANK
        parts.append(f"{TASK_LABELS.get(task, task)}: r={small} is within {tolerance:g} point of the best rank "
                     f"(r={int(best['lora_r'])}, {best['median']:.1f})")
    n = ra.groupby(["model", "task"]).ngroups
    return [claim(f"A small rank suffices: r ≤ {PAPER_RANK} does as well as larger ranks (Section 7.2, Table 6)",
                  grade(good, n), f"LoRA r ∈ {{{span(ra['lora_r'])}}}, median over seeds; " + "; ".join(parts) + ".")]


def _cost_claims(results: pd.DataFrame) -> list[dict]:
    cost = cost_table(results)
    if message(cost):
        return []
    main = cost[(cost["method"] == "ft") | (cost["config"] == f"LoRA r={PAPER_RANK}")]
    med = main.groupby(["model", "task", "method"])[["peak_memory_mb", "train_minutes"]].median().unstack("method")
    if med.empty or "ft" not in med.columns.get_level_values(1) or "lora" not in med.columns.get_level_values(1):
        return []
    mem = (med[("peak_memory_mb", "lora")] / med[("peak_memory_mb", "ft")]).dropna()
    time = (med[("train_minutes", "lora")] / med[("train_minutes", "ft")]).dropna()
    if mem.empty:
        return []
    good = int(mem.median() < 0.9) + int(time.median() < 0.9)
    return [claim("LoRA needs less memory and time to train than full fine-tuning (Section 4.2)",
                  {2: "reproduced", 1: "partly", 0: "not reproduced"}[good],
                  f"LoRA r={PAPER_RANK} / FT, median over {len(mem)} task(s): peak memory {mem.median():.2f}x, "
                  f"training time {time.median():.2f}x (per task from {time.min():.2f}x to {time.max():.2f}x).")]


def claims(results: pd.DataFrame, analysis_dir=None,
           tolerance: float = FT_TOLERANCE) -> pd.DataFrame | NothingToShow:
    """The paper's claims that our runs test, each with a verdict (reproduced, partly, not reproduced,
    inconclusive) and the numbers behind it; claims without runs are left out."""
    if not has_runs(results):
        return NothingToShow(NO_RESULTS)
    rows = (_lora_vs_ft_claims(results, tolerance) + _paper_cell_claims(results, tolerance)
            + _rank_claims(results, tolerance) + _cost_claims(results)
            + (section7_claims(analysis_dir, tolerance) if analysis_dir else [])
            + method_claims(results, tolerance))
    if not rows:
        return NothingToShow("Not enough finished runs yet (LoRA and FT on the same task, or several ranks) to "
                             "test a claim.")
    out = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    out.attrs["footnote"] = (f"Scores x100. 'Within {tolerance:g} point' is our tolerance. Verdicts: reproduced "
                             "(every task or comparison agrees), partly (at least half), not reproduced (fewer), "
                             "inconclusive (a difference smaller than the tolerance).")
    return out
