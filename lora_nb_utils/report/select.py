"""Which runs the report counts, and with which score.

The comparisons use every run except LoRA on other weight matrices than the paper's Table 2 (Section 7's Table 5),
the runs of a SoRA lambda sweep and the swept values a grid did not choose (those are evidence for a choice, never a
reported score). Runs that collapsed, hit a NaN loss, failed, timed out or ended on SLURM without a result
(cancelled, out of memory, node failure, preemption) are left out of the statistics (EXCLUDED) and counted apart. A
run's reported score is its test part at the best validation epoch for a split with a test part (`sora`,
`holdout`), its best validation score otherwise (`reported_scores`, the one place that picks it).
"""
from __future__ import annotations

import pandas as pd

EXCLUDED = ("collapsed", "nan_loss", "failed", "timeout", "cancelled", "out_of_memory", "node_fail",
            "preempted")  # runs.rundir.Status: FINISHED without a score and NO_RESULT
PAPER_RANK = 8  # the paper's Table 2 LoRA rank
PAPER_TARGETS = "query,value"  # the matrices the paper's Table 2 adapts
GROUP = ["model", "method", "lora_r", "task"]  # one configuration on one task: its seeds are aggregated


def has_runs(results: pd.DataFrame) -> bool:
    return results is not None and len(results) > 0 and "status" in results


def other_targets(results: pd.DataFrame) -> pd.Series:
    """True for LoRA runs that adapt other matrices than the paper's Table 2 (query, value): Table 5 runs."""
    if "lora_targets" not in results:
        return pd.Series(False, index=results.index)
    targets = results["lora_targets"].fillna(PAPER_TARGETS).astype(str)
    return (results["method"] == "lora") & (targets != PAPER_TARGETS)


def sora_sweep(results: pd.DataFrame) -> pd.Series:
    """True for SoRA runs at another L1 strength (sora_lambda) than the one most of that model's SoRA runs use: the
    runs of a lambda sweep, kept out of the method comparisons."""
    if "sora_lambda" not in results:
        return pd.Series(False, index=results.index)
    sora = results["method"] == "sora"
    if "selection" in results:  # a grid that sweeps lambda chooses it per group (not_chosen)
        sora &= results["selection"].isna()
    modal = results[sora].dropna(subset=["sora_lambda"]).groupby("model")["sora_lambda"].agg(lambda s: s.mode().iloc[0])
    return sora & results["sora_lambda"].notna() & (results["sora_lambda"] != results["model"].map(modal))


def not_chosen(results: pd.DataFrame) -> pd.Series:
    """True for the runs of a learning-rate (or other) sweep at a value that was not chosen, or not chosen yet
    (column `selection`, from selection.json): evidence for the choice, never a reported score."""
    if "selection" not in results:
        return pd.Series(False, index=results.index)
    return results["selection"].isin(["not chosen", "sweep"])


def table2_runs(results: pd.DataFrame) -> pd.DataFrame:
    """The runs that the comparisons use: every run except LoRA on other target sets (Section 7's Table 5), the
    runs of a SoRA lambda sweep and the swept values a grid did not choose."""
    if not has_runs(results):
        return results
    return results[~(other_targets(results) | sora_sweep(results) | not_chosen(results))]


def usable(results: pd.DataFrame) -> pd.DataFrame:
    """Finished Table 2 runs with a score and status 'ok' (best validation score x100 in column `score100`); empty,
    with its columns, without runs."""
    if not has_runs(results) or "score" not in results:
        return pd.DataFrame(columns=[*GROUP, "seed", "score100"])
    results = table2_runs(results)
    ok = results[(results["status"] == "ok") & results["score"].notna()].copy()
    ok["score100"] = 100 * ok["score"].astype(float)
    return ok


def reported_scores(results: pd.DataFrame) -> pd.DataFrame:
    """As usable, with `score100` the score the run's split reports: the test part (at the best validation epoch)
    for splits with a test part ('sora', 'holdout'), as the SoRA and AdaLoRA papers report it; the best validation
    score otherwise. Column `reported_part` says which ('test' or 'validation')."""
    ok = usable(results)
    ok["reported_part"] = "validation"
    if "test_score" in ok:
        has_test = ok["test_score"].notna()
        ok["score100"] = (100 * ok["test_score"].astype(float)).where(has_test, ok["score100"])
        ok.loc[has_test, "reported_part"] = "test"
    return ok


def main_runs(results: pd.DataFrame) -> pd.DataFrame:
    """reported_scores of the configurations Table 2 compares: every method, LoRA at the paper's rank only."""
    ok = reported_scores(results)
    return ok[(ok["method"] != "lora") | (ok["lora_r"] == PAPER_RANK)]
