"""The report's data: our runs (the tidy results table) aggregated and set beside the LoRA paper's Table 2.

Scores are x100, as the paper prints them. The paper's aggregation: for each run the best epoch's validation metric,
then the median over seeds (5 in the paper). For a split with a test part (`sora`, `holdout`) a run's score is its
test part at the best validation epoch (`reported_scores`, the one place that picks it). Runs that collapsed, hit a
NaN loss, failed or timed out are left out of the statistics and counted in `n_excluded`.

The tables people read are made from these frames by report_tables.py, the figures by report_figures.py and the
sentences by report_prose.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..paper import load_reference

TASK_ORDER = ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")  # the paper's column order
TASK_LABELS = {"mnli": "MNLI", "sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA", "qnli": "QNLI", "qqp": "QQP",
               "rte": "RTE", "stsb": "STS-B"}
METRIC_LABELS = {"accuracy": "accuracy", "matthews_corr": "Matthews corr.", "pearson": "Pearson corr.",
                 "f1": "F1", "spearman": "Spearman corr."}
METHOD_ORDER = ("ft", "lora", "adalora", "sora")
METHOD_NAMES = {"ft": "FT", "lora": "LoRA", "adalora": "AdaLoRA", "sora": "SoRA"}
MODEL_NAMES = {"minilm": "MiniLM", "roberta-base": "RoBERTa-base", "roberta-large": "RoBERTa-large",
               "deberta-v2-xxlarge": "DeBERTa-XXL", "deberta-v3-base": "DeBERTa-v3-base"}
MATRIX_NAMES = {"query": "W_q", "key": "W_k", "value": "W_v", "attn_out": "W_o"}  # the paper's notation
EXCLUDED = ("collapsed", "nan_loss", "failed", "timeout")
FT_TOLERANCE = 1.0  # points (x100): the paper gives no ± for full fine-tuning, so this is our stated tolerance
PAPER_RANK = 8  # the paper's Table 2 LoRA rank
PAPER_TARGETS = "query,value"  # the matrices the paper's Table 2 adapts
REFERENCE_MODEL = "roberta-base"  # whose settings a model outside the paper is compared with
NO_RESULTS = "No finished runs yet: the results table is empty, so there is nothing to compare."
GROUP = ["model", "method", "lora_r", "task"]
AGG_COLUMNS = [*GROUP, "config", "median", "mean", "std", "min", "max", "n", "n_excluded", "n_running", "seeds",
               "trainable_params", "lora_params"]


# ---------------------------------------------------------------- helpers

def _empty(columns, message: str = NO_RESULTS) -> pd.DataFrame:
    frame = pd.DataFrame(columns=list(columns))
    frame.attrs["message"] = message
    return frame


def _has_runs(results: pd.DataFrame) -> bool:
    return results is not None and len(results) > 0 and "status" in results


def _other_targets(results: pd.DataFrame) -> pd.Series:
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
    if not _has_runs(results):
        return results
    return results[~(_other_targets(results) | sora_sweep(results) | not_chosen(results))]


def _usable(results: pd.DataFrame) -> pd.DataFrame:
    """Finished Table 2 runs with a score and status 'ok' (best validation score x100 in column `score100`)."""
    if not _has_runs(results) or "score" not in results:
        return pd.DataFrame(columns=[*GROUP, "seed", "score100"])
    results = table2_runs(results)
    ok = results[(results["status"] == "ok") & results["score"].notna()].copy()
    ok["score100"] = 100 * ok["score"].astype(float)
    return ok


def reported_scores(results: pd.DataFrame) -> pd.DataFrame:
    """As _usable, with `score100` the score the run's split reports: the test part (at the best validation epoch)
    for splits with a test part ('sora', 'holdout'), as the SoRA and AdaLoRA papers report it; the best validation
    score otherwise. Column `reported_part` says which ('test' or 'validation')."""
    ok = _usable(results)
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


def seed_range(runs: pd.DataFrame) -> str:
    """Seeds per task of these runs: '3', or '2–3' when tasks differ."""
    n = runs.groupby("task")["seed"].nunique()
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"


def task_order(tasks) -> list:
    """The tasks present, in the paper's column order (unknown names last)."""
    tasks = set(tasks)
    return [t for t in TASK_ORDER if t in tasks] + sorted(tasks - set(TASK_ORDER))


def _sorted(frame: pd.DataFrame, task_col: str = "task") -> pd.DataFrame:
    order = {t: i for i, t in enumerate(TASK_ORDER)}
    methods = {m: i for i, m in enumerate(METHOD_ORDER)}
    keys = frame[task_col].map(lambda t: order.get(t, len(order)))
    frame = frame.assign(_k=keys)
    by = ["model"] if "model" in frame else []
    if "method" in frame:
        frame = frame.assign(_m=frame["method"].map(lambda m: methods.get(m, len(methods))))
        by.append("_m")
    by += [c for c in ("lora_r",) if c in frame] + ["_k"]
    return frame.sort_values(by, kind="stable").drop(columns=[c for c in ("_k", "_m") if c in frame]).reset_index(
        drop=True)


def message(obj) -> str | None:
    """The 'nothing to show' message attached to an empty table (None when there is something to show)."""
    if isinstance(obj, pd.DataFrame) and obj.empty:
        return obj.attrs.get("message", NO_RESULTS)
    return None


def human_count(n) -> str:
    """A parameter count as the paper prints it: 125M, 0.3M, 74K."""
    if n is None or pd.isna(n):
        return "—"
    n = float(n)
    if n >= 1e6:
        return f"{n / 1e6:.1f}M" if n < 1e8 else f"{n / 1e6:.0f}M"
    return f"{n / 1e6:.2f}M" if n >= 1e4 else f"{n:,.0f}"


def matrices(targets) -> str:
    """A LoRA target set in the paper's notation: 'query,value' -> 'W_q, W_v'."""
    return ", ".join(MATRIX_NAMES.get(t, t) for t in str(targets).split(","))


def signed(x) -> str:
    """A difference in points with its sign and a real minus: +0.7, −2.7 ('—' for none)."""
    if x is None or pd.isna(x):
        return "—"
    return "0.0" if round(x, 1) == 0 else f"{x:+.1f}".replace("-", "−")


def model_label(model) -> str:
    return MODEL_NAMES.get(model, str(model))


def method_label(method: str, lora_r=None, adalora_init_r=None, adalora_target_r=None) -> str:
    """A configuration as the report names it: FT, LoRA r=8, AdaLoRA r=12→8, SoRA r=8 (r: SoRA's r_max)."""
    name = METHOD_NAMES.get(method, str(method))
    if method == "adalora" and adalora_init_r is not None and not pd.isna(adalora_init_r):
        return f"{name} r={int(adalora_init_r)}→{int(adalora_target_r)}"
    if method in ("lora", "sora") and lora_r is not None and not pd.isna(lora_r):
        return f"{name} r={int(lora_r)}"
    return name


def config_labels(runs: pd.DataFrame) -> pd.Series:
    """method_label for every row of a results table."""
    get = lambda c: runs[c] if c in runs else pd.Series(np.nan, index=runs.index)  # noqa: E731
    return pd.Series([method_label(*v) for v in zip(runs["method"], get("lora_r"), get("adalora_init_r"),
                                                     get("adalora_target_r"))], index=runs.index, dtype=object)


def config_key(label: str) -> tuple:
    """Sort key for method_label strings: FT, LoRA by rank, AdaLoRA, SoRA, then the rest."""
    name, _, rank = label.partition(" r=")
    names = list(METHOD_NAMES.values())
    digits = "".join(ch for ch in rank.split("→")[0] if ch.isdigit())
    return (names.index(name) if name in names else len(names), int(digits) if digits else 0, label)


# ---------------------------------------------------------------- tables

def aggregate(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method, lora_r, task): median / mean / std / min / max over seeds of the reported score (x100),
    n, n_excluded."""
    if not _has_runs(results):
        return _empty(AGG_COLUMNS)
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
    return _sorted(pd.DataFrame(rows, columns=AGG_COLUMNS))


def _paper_rows() -> pd.DataFrame:
    t = load_reference("lora_paper_table2")
    return t[t["method"].isin(["ft", "lora"])]


def _paper_method(method: str, lora_r) -> str | None:
    if method == "ft":
        return "ft"
    if method == "lora" and not pd.isna(lora_r) and int(lora_r) == PAPER_RANK:
        return "lora"
    return None


def _verdict(diff: float, tol: float) -> str:
    """The short verdict of one cell: 'match' within the tolerance, else 'below' or 'above'."""
    if abs(diff) <= tol + 1e-9:
        return "match"
    return "below" if diff < 0 else "above"


def compare_to_paper(agg: pd.DataFrame, ft_tolerance: float = FT_TOLERANCE) -> pd.DataFrame:
    """Our medians beside the paper's Table 2 (same model, method, task), the difference and a verdict per cell.

    LoRA cells use the paper's ± as the tolerance; FT cells (no ± in the paper) use `ft_tolerance` points.
    Models outside the paper (e.g. minilm) have no paper value: their LoRA, AdaLoRA and SoRA cells are compared with
    our own FT of the same model and task instead (`reference` says which). `verdict` is one word (match, below,
    above, or "—" with no reference); `note` says it in a sentence.
    """
    cols = ["model", "method", "lora_r", "config", "task", "ours", "n", "n_excluded", "reference", "reference_value",
            "paper", "paper_pm", "tolerance", "difference", "verdict", "note"]
    if message(agg) or agg is None or agg.empty:
        return _empty(cols, message(agg) or NO_RESULTS)
    paper = _paper_rows().set_index(["model", "method", "task"])
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
                       difference=diff, verdict=_verdict(diff, tol))
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
                       verdict=_verdict(diff, ft_tolerance))
            row["note"] = "no paper value; vs our FT: " + (f"within {ft_tolerance:g} point" if row["verdict"] == "match"
                                                           else f"{row['verdict']} FT by {abs(diff):.1f}")
        else:
            row["note"] = "no paper value; no FT run of ours to compare with"
        rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["footnote"] = (f"Tolerance: the paper's ± for LoRA; {ft_tolerance:g} point for FT (the paper copies FT "
                             "numbers without a spread) and for a method vs our own FT on models outside the paper.")
    return out


def table2_layout(agg: pd.DataFrame, with_paper: bool = True, ranks=None) -> pd.DataFrame:
    """A wide table like the paper's Table 2: rows (model, method, trainable params, source), columns 8 tasks + Avg.

    Cells we have no run for stay empty (NaN). Avg is the mean over the tasks present in that row only, and the
    column "Avg over" says how many. `ranks`: the LoRA ranks to show (None: all). The paper's rows appear for our
    models it reports, or, when it reports none of them, for REFERENCE_MODEL (the scale of the paper's numbers).
    """
    columns = [TASK_LABELS[t] for t in TASK_ORDER] + ["Avg", "Avg over"]
    if message(agg) or agg is None or agg.empty:
        return _empty(columns, message(agg) or NO_RESULTS)
    if ranks is not None:
        agg = agg[(agg["method"] != "lora") | agg["lora_r"].isin(list(ranks))]
    rows = []
    for (model, method, config), g in agg.groupby(["model", "method", "config"], dropna=False, sort=False):
        params = g["lora_params"].median() if method != "ft" else g["trainable_params"].median()
        row = {"model": model, "method": config, "# trainable params": human_count(params), "source": "ours"}
        row.update({TASK_LABELS.get(t, t): v for t, v in zip(g["task"], g["median"])})
        rows.append(row)
    if with_paper:
        paper = _paper_rows()
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


def rank_ablation(results: pd.DataFrame) -> pd.DataFrame:
    """LoRA score vs rank per (model, task) with runs at two or more ranks: median, min, max over seeds (x100), n."""
    cols = ["model", "task", "lora_r", "median", "min", "max", "n", "lora_params"]
    ok = reported_scores(results)
    ok = ok[ok["method"] == "lora"] if len(ok) else ok
    if ok.empty:
        return _empty(cols, "No finished LoRA runs: no rank ablation to show.")
    ok = ok.assign(lora_r=ok["lora_r"].astype(int))
    ok = ok[ok.groupby(["model", "task"])["lora_r"].transform("nunique") >= 2]
    if ok.empty:
        return _empty(cols, "No task has finished LoRA runs at two or more ranks yet: no rank ablation to show.")
    out = ok.groupby(["model", "task", "lora_r"]).agg(median=("score100", "median"), min=("score100", "min"),
                                                      max=("score100", "max"), n=("score100", "size"),
                                                      lora_params=("lora_params", "median")).reset_index()
    order = {t: i for i, t in enumerate(TASK_ORDER)}
    out = out.assign(_k=out["task"].map(lambda t: order.get(t, len(order))))
    return out.sort_values(["model", "_k", "lora_r"]).drop(columns="_k").reset_index(drop=True)


def lora_vs_ft(results: pd.DataFrame, lora_r: int = PAPER_RANK) -> pd.DataFrame:
    """Per (model, task): median LoRA (rank `lora_r`) vs median FT (x100), difference, parameter ratio."""
    cols = ["model", "task", "lora", "ft", "difference", "n_lora", "n_ft", "lora_trainable", "ft_trainable",
            "params_pct"]
    ok = reported_scores(results)
    if ok.empty:
        return _empty(cols)
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
    out = _sorted(out[cols])
    out.attrs["footnote"] = (f"LoRA at r={lora_r}. params_pct: LoRA's trainable parameters (LoRA matrices + "
                             "classification head) as a percentage of full fine-tuning's.")
    return out


def training_curves(results: pd.DataFrame, ranks=(PAPER_RANK,)) -> pd.DataFrame:
    """epochs.csv of every finished run (all methods, LoRA at `ranks`), long format: per epoch the optimizer step,
    the cumulative training time (minutes), the training loss and the reported part's primary metric x100 (the test
    part for splits that have one, as reported_scores), with `last` marking each run's last recorded epoch."""
    cols = ["run", "model", "task", "method", "config", "seed", "epoch", "step", "minutes", "train_loss", "metric",
            "part", "value", "last"]
    ok = reported_scores(results)
    if ok.empty or "run_dir" not in ok:
        return _empty(cols)
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
    return pd.concat(frames, ignore_index=True) if frames else _empty(cols, "No epochs.csv files found.")


def still_improving(results: pd.DataFrame) -> pd.DataFrame:
    """Per finished run (reported_scores): `rising`, whether its best epoch was its last one (the score was still
    rising when training stopped; a run stopped early was not)."""
    ok = reported_scores(results)
    if ok.empty or not {"best_epoch", "epochs"} <= set(ok.columns):
        return _empty(["model", "task", "method", "config", "rising"], "No best epochs recorded.")
    ok = ok.dropna(subset=["best_epoch", "epochs"])
    last = ok["epochs_run"].fillna(ok["epochs"]) if "epochs_run" in ok else ok["epochs"]
    return ok.assign(config=config_labels(ok), rising=ok["best_epoch"].astype(int) >= last.astype(int))[
        ["model", "task", "method", "lora_r", "config", "rising"]]


def cost_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per finished run: training time (minutes), peak memory (MB), trainable parameters and the reported score."""
    cols = ["model", "task", "method", "config", "seed", "train_minutes", "peak_memory_mb", "trainable_params",
            "score100"]
    ok = reported_scores(results)
    done = ok[ok["train_seconds"].notna()] if "train_seconds" in ok else ok.iloc[0:0]
    if done.empty:
        return _empty(cols)
    out = pd.DataFrame({"model": done["model"], "task": done["task"], "method": done["method"],
                        "config": config_labels(done), "seed": done["seed"],
                        "train_minutes": done["train_seconds"].astype(float) / 60,
                        "peak_memory_mb": done["peak_memory_mb"].astype(float),
                        "trainable_params": done["trainable_params"].astype(float), "score100": done["score100"]})
    return _sorted(out)


def reference_table(name: str, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """The AdaLoRA or SoRA reference table (methods x task metrics), our means beside it when we have such runs."""
    ref = load_reference(name)
    wide = ref.pivot_table(index=["model", "method", "trainable_params"], columns="task_metric", values="value",
                           sort=False)
    wide = wide.rename(index=lambda m: m.split("/")[-1], level="model")
    wide.insert(0, "source", "paper")
    ok = reported_scores(results)
    deberta_v3 = ok["model"].isin(["deberta-v3-base", "microsoft/deberta-v3-base"])
    mine = ok[ok["method"].isin(["adalora", "sora"]) | (deberta_v3 & ok["method"].isin(["lora", "ft"]))]
    rename = {"mnli": "mnli_m", "qqp": "qqp_acc"}
    rows = []
    for (model, method, lora_r), g in mine.groupby(["model", "method", "lora_r"], dropna=False):
        params = g["lora_params"].median() if method != "ft" else g["trainable_params"].median()
        means = g.groupby("task")["score100"].mean()  # their aggregation: mean over seeds
        split = ", ".join(sorted(g["split"].dropna().astype(str).unique())) if "split" in g else ""
        source = f"ours: mean of {seed_range(g)} seed(s){', split ' + split if split else ''}"
        rows.append(pd.Series({"source": source, **{rename.get(t, t): v for t, v in means.items()}},
                              name=(model, method_label(method, lora_r), human_count(params))))
    if rows:
        wide = pd.concat([wide, pd.DataFrame(rows)])
    wide.index.names = ["model", "method", "params"]
    wide.columns.name = None
    wide.attrs["footnote"] = (f"{ref['aggregation'].iloc[0]}. Source: {ref['source'].iloc[0]}. Our STS-B is "
                              "Pearson (theirs: mean of Pearson and Spearman); our MNLI is matched accuracy.")
    return wide
