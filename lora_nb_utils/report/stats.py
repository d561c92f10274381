"""The report's numbers, from the results table (one row per run): per configuration and task the statistics over
seeds (`aggregate`: the LoRA paper's median and the rest), the rank ablation, LoRA against full fine-tuning, and per
run the training curves, whether a run was still improving, and its cost. Scores are x100, as the papers print them.
A function with nothing to show returns NothingToShow, saying why."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..glue.tasks import TASK_ORDER
from .format import NothingToShow, config_labels, sort_rows
from .select import EXCLUDED, GROUP, PAPER_RANK, has_runs, reported_scores, table2_runs

AGG_COLUMNS = [*GROUP, "config", "median", "mean", "std", "min", "max", "n", "n_excluded", "n_running", "seeds",
               "trainable_params", "lora_params"]


def aggregate(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method, lora_r, task): median / mean / std / min / max over seeds of the reported score (x100),
    n, n_excluded."""
    if not has_runs(results):
        return pd.DataFrame(columns=AGG_COLUMNS)
    res = table2_runs(results).copy()
    for col in GROUP:
        if col not in res:
            res[col] = np.nan
    res["lora_r"] = pd.to_numeric(res["lora_r"], errors="coerce")
    rows = []
    for key, group in res.groupby(GROUP, dropna=False, sort=False):
        ok = reported_scores(group)
        scores = ok["score100"]
        rows.append({**dict(zip(GROUP, key)), "config": config_labels(group.iloc[:1]).iloc[0],
                     "median": scores.median(), "mean": scores.mean(),
                     "std": scores.std(ddof=1) if len(scores) > 1 else np.nan, "min": scores.min(),
                     "max": scores.max(), "n": len(scores),
                     "n_excluded": int(group["status"].isin(EXCLUDED).sum()),
                     "n_running": int((group["status"] == "running").sum()),
                     "seeds": ",".join(str(s) for s in sorted(ok["seed"].dropna().astype(int))) if "seed" in ok else "",
                     "trainable_params": ok["trainable_params"].median() if "trainable_params" in ok else np.nan,
                     "lora_params": ok["lora_params"].median() if "lora_params" in ok else np.nan})
    return sort_rows(pd.DataFrame(rows, columns=AGG_COLUMNS))


def rank_ablation(results: pd.DataFrame) -> pd.DataFrame | NothingToShow:
    """LoRA score vs rank per (model, task) with runs at two or more ranks: median, min, max over seeds (x100), n."""
    ok = reported_scores(results)
    ok = ok[ok["method"] == "lora"] if len(ok) else ok
    if ok.empty:
        return NothingToShow("No finished LoRA runs: no rank ablation to show.")
    ok = ok.assign(lora_r=ok["lora_r"].astype(int))
    ok = ok[ok.groupby(["model", "task"])["lora_r"].transform("nunique") >= 2]
    if ok.empty:
        return NothingToShow("No task has finished LoRA runs at two or more ranks yet: no rank ablation to "
                             "show.")
    out = ok.groupby(["model", "task", "lora_r"]).agg(median=("score100", "median"), min=("score100", "min"),
                                                      max=("score100", "max"), n=("score100", "size"),
                                                      lora_params=("lora_params", "median")).reset_index()
    order = {t: i for i, t in enumerate(TASK_ORDER)}
    out = out.assign(_k=out["task"].map(lambda t: order.get(t, len(order))))
    return out.sort_values(["model", "_k", "lora_r"]).drop(columns="_k").reset_index(drop=True)


def lora_vs_ft(results: pd.DataFrame, lora_r: int = PAPER_RANK) -> pd.DataFrame | NothingToShow:
    """Per (model, task): median LoRA (rank `lora_r`) vs median FT (x100), difference, parameter ratio."""
    cols = ["model", "task", "lora", "ft", "difference", "n_lora", "n_ft", "lora_trainable", "ft_trainable",
            "params_pct"]
    ok = reported_scores(results)
    if ok.empty:
        return NothingToShow()
    lora = ok[(ok["method"] == "lora") & (ok["lora_r"] == lora_r)]
    ft = ok[ok["method"] == "ft"]
    stats = dict(score=("score100", "median"), n=("score100", "size"), trainable=("trainable_params", "median"))
    a = lora.groupby(["model", "task"]).agg(**stats)
    b = ft.groupby(["model", "task"]).agg(**stats)
    out = a.reset_index().merge(b.reset_index(), on=["model", "task"], how="outer", suffixes=("_lora", "_ft"))
    out = out.rename(columns={"score_lora": "lora", "score_ft": "ft", "trainable_lora": "lora_trainable",
                              "trainable_ft": "ft_trainable"})
    out["difference"] = out["lora"] - out["ft"]
    out["params_pct"] = 100 * out["lora_trainable"] / out["ft_trainable"]
    for c in ("n_lora", "n_ft"):
        out[c] = out[c].fillna(0).astype(int)
    out = sort_rows(out[cols])
    out.attrs["footnote"] = (f"LoRA at r={lora_r}. params_pct: LoRA's trainable parameters (LoRA matrices + "
                             "classification head) as a percentage of full fine-tuning's.")
    return out


def training_curves(results: pd.DataFrame, ranks=(PAPER_RANK,)) -> pd.DataFrame | NothingToShow:
    """epochs.csv of every finished run (all methods, LoRA at `ranks`), long format: per epoch the optimizer step,
    the cumulative training time (minutes), the training loss and the reported part's primary metric x100 (the test
    part for splits that have one, as reported_scores), with `last` marking each run's last recorded epoch."""
    ok = reported_scores(results)
    if ok.empty or "run_dir" not in ok:
        return NothingToShow()
    ok = ok.assign(config=config_labels(ok))
    frames = []
    for r in ok.to_dict("records"):
        path = Path(r["run_dir"]) / "epochs.csv"
        if not path.is_file() or (r["method"] == "lora" and int(r["lora_r"]) not in ranks):
            continue
        ep = pd.read_csv(path)
        metric = r["primary_metric"]
        column = f"test_{metric}" if r["reported_part"] == "test" and f"test_{metric}" in ep else metric
        if column not in ep or "epoch" not in ep:
            continue
        minutes = ep["train_seconds"].cumsum() / 60 if "train_seconds" in ep else np.nan
        frames.append(pd.DataFrame({
            "run": r["run"], "model": r["model"], "task": r["task"], "method": r["method"], "config": r["config"],
            "seed": r["seed"], "epoch": ep["epoch"], "step": ep["step"] if "step" in ep else np.nan,
            "minutes": minutes, "train_loss": ep.get("train_loss", np.nan), "metric": metric,
            "part": "test" if column.startswith("test_") else "validation", "value": 100 * ep[column],
            "last": ep["epoch"] == ep["epoch"].max()}))
    return pd.concat(frames, ignore_index=True) if frames else NothingToShow("No epochs.csv files found.")


def still_improving(results: pd.DataFrame) -> pd.DataFrame | NothingToShow:
    """Per finished run (reported_scores): `rising`, whether its best epoch was its last one (the score was still
    rising when training stopped; a run stopped early was not)."""
    ok = reported_scores(results)
    if ok.empty or not {"best_epoch", "epochs"} <= set(ok.columns):
        return NothingToShow("No best epochs recorded.")
    ok = ok.dropna(subset=["best_epoch", "epochs"])
    last = ok["epochs_run"].fillna(ok["epochs"]) if "epochs_run" in ok else ok["epochs"]
    return ok.assign(config=config_labels(ok), rising=ok["best_epoch"].astype(int) >= last.astype(int))[
        ["model", "task", "method", "lora_r", "config", "rising"]]


def cost_table(results: pd.DataFrame) -> pd.DataFrame | NothingToShow:
    """Per finished run: training time (minutes), peak memory (MB), trainable parameters and the reported score."""
    ok = reported_scores(results)
    done = ok[ok["train_seconds"].notna()] if "train_seconds" in ok else ok.iloc[0:0]
    if done.empty:
        return NothingToShow()
    out = pd.DataFrame({"model": done["model"], "task": done["task"], "method": done["method"],
                        "config": config_labels(done), "seed": done["seed"],
                        "train_minutes": done["train_seconds"].astype(float) / 60,
                        "peak_memory_mb": done["peak_memory_mb"].astype(float),
                        "trainable_params": done["trainable_params"].astype(float), "score100": done["score100"]})
    return sort_rows(out)
