"""The report: our runs (the tidy results table) beside the LoRA paper's Table 2, as tables, verdicts and figures.

Scores are shown x100, as the paper prints them. The paper's aggregation: for each run the best epoch's validation
metric, then the median over seeds (5 in the paper). Runs that collapsed, hit a NaN loss, failed or timed out are
left out of the statistics and counted in `n_excluded`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .reference import load_reference
from .tasks import MNLI_INIT_TASKS

TASK_ORDER = ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")  # the paper's column order
TASK_LABELS = {"mnli": "MNLI", "sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA", "qnli": "QNLI", "qqp": "QQP",
               "rte": "RTE", "stsb": "STS-B"}
EXCLUDED = ("collapsed", "nan_loss", "failed", "timeout")
FT_TOLERANCE = 1.0  # points (x100): the paper gives no ± for full fine-tuning, so this is our stated tolerance
PAPER_RANK = 8  # the paper's Table 2 LoRA rank
PAPER_TARGETS = "query,value"  # the matrices the paper's Table 2 adapts
REFERENCE_MODEL = "roberta-base"  # whose settings a model outside the paper is compared with
NO_RESULTS = "No finished runs yet: the results table is empty, so there is nothing to compare."
GROUP = ["model", "method", "lora_r", "task"]
AGG_COLUMNS = [*GROUP, "median", "mean", "std", "min", "max", "n", "n_excluded", "n_running", "seeds",
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
    modal = results[sora].dropna(subset=["sora_lambda"]).groupby("model")["sora_lambda"].agg(lambda s: s.mode().iloc[0])
    return sora & results["sora_lambda"].notna() & (results["sora_lambda"] != results["model"].map(modal))


def table2_runs(results: pd.DataFrame) -> pd.DataFrame:
    """The runs that the comparisons use: every run except LoRA on other target sets (Section 7's Table 5) and the
    runs of a SoRA lambda sweep."""
    return results[~(_other_targets(results) | sora_sweep(results))] if _has_runs(results) else results


def _usable(results: pd.DataFrame) -> pd.DataFrame:
    """Finished Table 2 runs with a score and status 'ok' (scores x100 in column `score100`)."""
    if not _has_runs(results) or "score" not in results:
        return pd.DataFrame(columns=[*GROUP, "seed", "score100"])
    results = table2_runs(results)
    ok = results[(results["status"] == "ok") & results["score"].notna()].copy()
    ok["score100"] = 100 * ok["score"].astype(float)
    return ok


def reported_scores(results: pd.DataFrame) -> pd.DataFrame:
    """As _usable, with `score100` the score the run's split reports: the test part (at the best validation epoch)
    for split 'sora', as the SoRA and AdaLoRA papers report it; the best validation score otherwise."""
    ok = _usable(results)
    if "test_score" in ok:
        ok["score100"] = (100 * ok["test_score"].astype(float)).where(ok["test_score"].notna(), ok["score100"])
    return ok


def seed_range(runs: pd.DataFrame) -> str:
    """Seeds per task of these runs: '3', or '2-3' when tasks differ."""
    n = runs.groupby("task")["seed"].nunique()
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}"


def _sorted(frame: pd.DataFrame, task_col: str = "task") -> pd.DataFrame:
    order = {t: i for i, t in enumerate(TASK_ORDER)}
    keys = frame[task_col].map(lambda t: order.get(t, len(order)))
    return frame.assign(_k=keys).sort_values([c for c in ("model", "method", "lora_r") if c in frame] + ["_k"],
                                             kind="stable").drop(columns="_k").reset_index(drop=True)


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


def method_label(method: str, lora_r=None) -> str:
    if method == "ft":
        return "FT"
    if method == "lora" and lora_r is not None and not pd.isna(lora_r):
        return f"LoRA r={int(lora_r)}"
    return str(method)


def show(obj, precision: int = 1) -> None:
    """Display a table in a notebook (missing cells as "—", its footnote below), or its 'nothing to show' message."""
    from IPython.display import Markdown, display
    if message(obj):
        display(Markdown(f"*{message(obj)}*"))
        return
    if isinstance(obj, (list, tuple)):
        display(Markdown("\n".join(f"- {line}" for line in obj)))
        return
    table = obj.copy()
    for c in table.columns:
        col = table[c]
        if pd.api.types.is_float_dtype(col) and c in ("lora_r", "n", "seed", "trainable_params", "lora_params",
                                                        "lora_trainable", "ft_trainable"):
            table[c] = col.round().astype("Int64")
    styler = table.style.format(precision=precision, na_rep="—", thousands=",")
    if "params_pct" in table:
        styler = styler.format("{:.2f}", subset=["params_pct"], na_rep="—")
    text = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if text:
        styler = styler.set_properties(subset=text, **{"text-align": "left"})
    if isinstance(table.index, pd.RangeIndex):
        styler = styler.hide(axis="index")
    display(styler)
    if obj.attrs.get("footnote"):
        display(Markdown(f"<small>{obj.attrs['footnote']}</small>"))


def show_figure(fig, what: str = "figure") -> None:
    """Show a figure made by one of the plot_* functions (None: say there is nothing to plot)."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display
    if fig is None:
        display(Markdown(f"*No finished runs to plot for the {what}.*"))
    else:
        plt.show()


# ---------------------------------------------------------------- tables

def aggregate(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method, lora_r, task): median / mean / std / min / max over seeds (x100), n, n_excluded."""
    if not _has_runs(results):
        return _empty(AGG_COLUMNS)
    res = table2_runs(results).copy()
    for col in GROUP:
        if col not in res:
            res[col] = np.nan
    res["lora_r"] = pd.to_numeric(res["lora_r"], errors="coerce")
    rows = []
    for key, group in res.groupby(GROUP, dropna=False, sort=False):
        ok = _usable(group)
        scores = ok["score100"]
        rows.append({**dict(zip(GROUP, key)), "median": scores.median(), "mean": scores.mean(),
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


def _verdict(diff: float, tol: float, within: str) -> str:
    if abs(diff) <= tol + 1e-9:
        return within
    return "below" if diff < 0 else "above"


def compare_to_paper(agg: pd.DataFrame, ft_tolerance: float = FT_TOLERANCE) -> pd.DataFrame:
    """Our medians beside the paper's Table 2 (same model, method, task), the difference and a verdict per cell.

    LoRA cells use the paper's ± as the tolerance; FT cells (no ± in the paper) use `ft_tolerance` points.
    Models outside the paper (e.g. minilm) get "no paper value" and LoRA is compared with our own FT instead.
    """
    cols = ["model", "method", "lora_r", "task", "ours", "n", "n_excluded", "paper", "paper_pm", "tolerance",
            "difference", "verdict"]
    if message(agg) or agg is None or agg.empty:
        return _empty(cols, message(agg) or NO_RESULTS)
    paper = _paper_rows().set_index(["model", "method", "task"])
    paper_models = set(paper.index.get_level_values("model"))
    ours_ft = agg[agg["method"] == "ft"].set_index(["model", "task"])["median"]
    rows = []
    for r in agg.itertuples(index=False):
        row = {"model": r.model, "method": r.method, "lora_r": r.lora_r, "task": r.task, "ours": r.median,
               "n": r.n, "n_excluded": r.n_excluded, "paper": np.nan, "paper_pm": np.nan, "tolerance": np.nan,
               "difference": np.nan, "verdict": ""}
        key = (r.model, _paper_method(r.method, r.lora_r), r.task)
        if pd.isna(r.median):
            row["verdict"] = "no finished run"
        elif key in paper.index:
            p = paper.loc[key]
            pm = p["plus_minus"]
            row.update(paper=p["value"], paper_pm=pm, difference=round(r.median - p["value"], 2))
            if pd.isna(pm):
                row["tolerance"] = ft_tolerance
                row["verdict"] = _verdict(row["difference"], ft_tolerance,
                                          f"within {ft_tolerance:g} point (our tolerance; the paper gives no ±)")
            else:
                row["tolerance"] = pm
                row["verdict"] = _verdict(row["difference"], pm, "within the paper's ± spread")
        elif r.model in paper_models:
            row["verdict"] = f"no paper value (the paper reports LoRA at r={PAPER_RANK} only)"
        elif r.method == "ft":
            row["verdict"] = "no paper value (model not in the paper)"
        elif (r.model, r.task) in ours_ft.index and not pd.isna(ours_ft.loc[(r.model, r.task)]):
            diff = round(r.median - ours_ft.loc[(r.model, r.task)], 2)
            row.update(difference=diff, tolerance=ft_tolerance)
            row["verdict"] = ("no paper value; vs our FT: "
                              + _verdict(diff, ft_tolerance, f"within {ft_tolerance:g} point").replace(
                                  "below", f"below FT by {-diff:.1f}").replace("above", f"above FT by {diff:.1f}"))
        else:
            row["verdict"] = "no paper value; no FT run of ours to compare with"
        rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["footnote"] = (f"Tolerance: the paper's ± for LoRA; {ft_tolerance:g} point for FT (the paper copies FT "
                             "numbers without a spread) and for LoRA vs our own FT on models outside the paper.")
    return out


def table2_layout(agg: pd.DataFrame, with_paper: bool = True) -> pd.DataFrame:
    """A wide table like the paper's Table 2: rows (model, method, trainable params, source), columns 8 tasks + Avg.

    Cells we have no run for stay empty (NaN). Avg is the mean over the tasks present in that row only, and the
    column "Avg over" says how many.
    """
    columns = [TASK_LABELS[t] for t in TASK_ORDER] + ["Avg", "Avg over"]
    if message(agg) or agg is None or agg.empty:
        return _empty(columns, message(agg) or NO_RESULTS)
    rows = []
    for (model, method, lora_r), g in agg.groupby(["model", "method", "lora_r"], dropna=False, sort=False):
        params = g["lora_params"].median() if method != "ft" else g["trainable_params"].median()
        row = {"model": model, "method": method_label(method, lora_r), "# trainable params": human_count(params),
               "source": "ours", "_r": lora_r}
        row.update({TASK_LABELS.get(t, t): v for t, v in zip(g["task"], g["median"])})
        rows.append(row)
    if with_paper:
        paper = _paper_rows()
        for (model, method), g in paper[paper["model"].isin(agg["model"])].groupby(["model", "method"], sort=False):
            row = {"model": model, "method": method_label(method, PAPER_RANK if method == "lora" else None),
                   "# trainable params": g["trainable_params"].iloc[0], "source": "paper",
                   "_r": PAPER_RANK if method == "lora" else np.nan}
            row.update({TASK_LABELS[t]: v for t, v in zip(g["task"], g["value"])})
            rows.append(row)
    table = pd.DataFrame(rows)
    for c in columns[:-2]:
        if c not in table:
            table[c] = np.nan
    scores = table[columns[:-2]].astype(float)
    table["Avg"] = scores.mean(axis=1, skipna=True)
    table["Avg over"] = scores.notna().sum(axis=1).map(lambda k: f"{k} of {len(TASK_ORDER)} tasks")
    table["_m"] = table["method"].str.split(" r=").str[0]  # FT, LoRA, ... then ranks in numeric order
    table = table.sort_values(["model", "_m", "_r", "source"], kind="stable", na_position="first")
    table = table.set_index(["model", "method", "# trainable params", "source"])[columns]
    table.attrs["footnote"] = ("Median over seeds of each run's best-epoch validation score, x100. Empty cells: no "
                               "finished run. Avg is the mean over the tasks present in the row (see 'Avg over'); "
                               "the paper's Avg is over all 8 tasks. Our LoRA parameter counts are the LoRA matrices "
                               "only, as the paper counts them (the classification head trains too).")
    return table


def rank_ablation(results: pd.DataFrame) -> pd.DataFrame:
    """LoRA score vs rank per (model, task) with runs at two or more ranks: median, min, max over seeds (x100), n."""
    cols = ["model", "task", "lora_r", "median", "min", "max", "n", "lora_params"]
    ok = _usable(results)
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
    ok = _usable(results)
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
    """epochs.csv of every finished run (FT and LoRA at `ranks`), long format with the primary metric x100."""
    cols = ["run", "model", "task", "config", "seed", "epoch", "train_loss", "metric", "value"]
    ok = _usable(results)
    if ok.empty:
        return _empty(cols)
    frames = []
    for r in ok.itertuples(index=False):
        path = Path(r.run_dir) / "epochs.csv"
        if not path.is_file() or (r.method == "lora" and int(r.lora_r) not in ranks):
            continue
        ep = pd.read_csv(path)
        if r.primary_metric not in ep or "epoch" not in ep:
            continue
        frames.append(pd.DataFrame({"run": r.run, "model": r.model, "task": r.task,
                                    "config": method_label(r.method, r.lora_r), "seed": r.seed, "epoch": ep["epoch"],
                                    "train_loss": ep.get("train_loss", np.nan), "metric": r.primary_metric,
                                    "value": 100 * ep[r.primary_metric]}))
    return pd.concat(frames, ignore_index=True) if frames else _empty(cols, "No epochs.csv files found.")


def cost_table(results: pd.DataFrame) -> pd.DataFrame:
    """Training time (minutes) and peak memory (MB) per finished run."""
    cols = ["model", "task", "config", "seed", "train_minutes", "peak_memory_mb", "trainable_params"]
    results = table2_runs(results)
    done = results[results["train_seconds"].notna()] if _has_runs(results) and "train_seconds" in results else None
    if done is None or done.empty:
        return _empty(cols)
    out = pd.DataFrame({"model": done["model"], "task": done["task"],
                        "config": [method_label(m, r) for m, r in zip(done["method"], done["lora_r"])],
                        "seed": done["seed"], "train_minutes": done["train_seconds"] / 60,
                        "peak_memory_mb": done["peak_memory_mb"], "trainable_params": done["trainable_params"]})
    return _sorted(out)


# ---------------------------------------------------------------- prose

def _values(series) -> str:
    vals = sorted({v for v in series.dropna()}, key=lambda v: (isinstance(v, str), v))
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vals) or "none"


def _convergence(ok: pd.DataFrame, model: str) -> list[str]:
    """Per method: how many runs scored best at their last epoch (still improving when training stopped)."""
    if ok.empty or not {"best_epoch", "epochs"} <= set(ok.columns):
        return []
    ok = ok.dropna(subset=["best_epoch", "epochs"])
    parts = []
    for method, g in ok.groupby("method"):
        last = int((g["best_epoch"].astype(int) >= g["epochs"].astype(int)).sum())
        parts.append(f"{method} {last} of {len(g)}")
    if not parts:
        return []
    return [f"Convergence, {model}: runs whose best epoch was their last one (the score was still rising when "
            f"training stopped): {', '.join(parts)}. With a short budget this favours the method that learns "
            "faster per step."]


def why_numbers_differ(results: pd.DataFrame) -> list[str]:
    """Sentences, generated from the runs' settings, on why our numbers differ from the paper's."""
    if not _has_runs(results):
        return [NO_RESULTS]
    hp = load_reference("lora_paper_hparams")
    paper_models = set(_paper_rows()["model"])
    out = []
    ok = _usable(results)
    agg = aggregate(results)
    if len(agg) and agg["n"].max() > 0:
        ns = agg.loc[agg["n"] > 0, "n"]
        span = f"{ns.min()}" if ns.min() == ns.max() else f"{ns.min()} to {ns.max()}"
        out.append(f"Seeds and aggregation: each cell is the median over {span} seed(s) (seeds "
                   f"{_values(ok['seed'])}) of every run's best-epoch validation score, the paper's aggregation; "
                   "the paper uses 5 seeds, so our medians are noisier.")
    for model in sorted(results["model"].dropna().unique()):
        mine = results[results["model"] == model]
        ref = model if model in set(hp["model"]) else REFERENCE_MODEL
        p = hp[hp["model"] == ref].set_index("task")
        who = f"{model}" if ref == model else f"{model} (compared with the paper's {ref} settings)"
        if model not in paper_models:
            size = mine.loc[mine["method"] == "ft", "trainable_params"].median()
            smaller = ", much smaller" if not pd.isna(size) and size < 1e8 else ""
            known = f" (about {human_count(size)} parameters when fully fine-tuned)" if not pd.isna(size) else ""
            out.append(f"Model substitution: {model} is not in the paper. It is a different{smaller} model than "
                       f"RoBERTa/DeBERTa{known}; absolute numbers are not comparable to the paper's, only the "
                       "comparisons inside our own runs (LoRA vs FT, rank vs rank) are.")
        lora = mine[mine["method"] == "lora"]
        if len(lora) and "lora_alpha" in lora:
            note = p["official_script_differences"].iloc[0] if len(p) else ""
            script = " (the official scripts use 16)" if "lora_alpha 16" in str(note) else ""
            out.append(f"LoRA alpha, {who}: ours {_values(lora['lora_alpha'])}; the paper's Appendix D lists "
                       f"{_values(p['lora_alpha'])}{script}. The update is scaled by alpha / r, so a different "
                       "alpha acts like a different learning rate for the LoRA matrices.")
        tasks = [t for t in MNLI_INIT_TASKS if t in set(mine["task"])]
        if tasks:
            init = mine[mine["task"].isin(tasks) & (mine["method"] == "lora")]["init_from"].fillna("").astype(str)
            names = ", ".join(TASK_LABELS[t] for t in tasks)
            if len(init) and (init != "").all():
                out.append(f"MNLI initialisation, {model}: used for {names}, as in the paper.")
            elif len(init):
                out.append(f"MNLI initialisation, {model}: not used for {names} (the paper starts these tasks "
                           "from its MNLI-trained LoRA weights, which helps on these small data sets).")
        for label, ours_col, paper_col in (("Effective batch size", "effective_batch", "batch_size"),
                                           ("Maximum sequence length", "max_seq_len", "max_seq_len"),
                                           ("Epochs", "epochs", "epochs")):
            m = mine.assign(effective_batch=mine["batch_size"] * mine["grad_accum"].fillna(1))
            diffs = []
            for task, g in m.groupby("task"):
                if task in p.index and ours_col in g:
                    ours_v, paper_v = _values(g[ours_col]), f"{p.loc[task, paper_col]:g}"
                    if ours_v != paper_v:
                        diffs.append(f"{TASK_LABELS.get(task, task)} {ours_v} vs {paper_v}")
            if diffs:
                extra = " (batch_size x grad_accum)" if ours_col == "effective_batch" else ""
                fewer = " We train for fewer epochs, so runs may stop before they converge." \
                    if ours_col == "epochs" and (m["epochs"].max() < p["epochs"].min()) else ""
                out.append(f"{label}{extra}, {who}, ours vs the paper's: {'; '.join(diffs)}.{fewer}")
        out.extend(_convergence(_usable(mine), model))
        sub = mine[pd.to_numeric(mine["max_train_samples"], errors="coerce").fillna(0) > 0]
        if len(sub):
            out.append(f"Subsampling, {model}: training sets capped at {_values(sub['max_train_samples'])} rows "
                       f"({', '.join(sorted({TASK_LABELS.get(t, t) for t in sub['task']}))}); the paper trains on the "
                       "full training sets (e.g. SST-2 67,349 rows, MNLI 392,702).")
    other = _other_targets(results)
    if other.any():
        sets = _values(results.loc[other, "lora_targets"])
        out.append(f"Target sets: {int(other.sum())} LoRA run(s) adapt other matrices than query and value ({sets}): the Table 5 "
                   "runs of Section 7. Table 2, the LoRA-vs-FT comparison, the rank ablation and the cost figures "
                   "leave them out; Section 7 shows them.")
    bad = results[results["status"].isin(EXCLUDED)]
    if len(bad):
        counts = ", ".join(f"{n} {s}" for s, n in bad["status"].value_counts().items())
        out.append(f"Excluded runs: {counts}; they are left out of every median (and counted in n_excluded). "
                   "The paper does not say how it treated collapsed runs.")
    running = int((results["status"] == "running").sum())
    if running:
        out.append(f"Partial results: {running} run(s) still running or interrupted; their cells may change.")
    return out


def claims_summary(results: pd.DataFrame, tolerance: float = FT_TOLERANCE) -> list[str]:
    """What our runs say about the paper's two claims (LoRA matches FT; small ranks suffice)."""
    vs = lora_vs_ft(results)
    if message(vs):
        return [message(vs)]
    out = []
    both = vs.dropna(subset=["lora", "ft"])
    for model, g in both.groupby("model"):
        close = int((g["difference"] >= -tolerance - 1e-9).sum())
        out.append(f"LoRA matches full fine-tuning, {model}: LoRA r={PAPER_RANK} is at most {tolerance:g} point "
                   f"below FT (or above it) on {close} of {len(g)} task(s) (median difference "
                   f"{g['difference'].median():+.1f}), training {g['params_pct'].median():.2f}% of FT's parameters.")
    ra = rank_ablation(results)
    if not message(ra):
        for (model, task), g in ra.groupby(["model", "task"]):
            if len(g) < 2:
                continue
            best = g["median"].max()
            small = g[g["median"] >= best - tolerance]["lora_r"].min()
            out.append(f"Small ranks suffice, {model} {TASK_LABELS.get(task, task)}: ranks {_values(g['lora_r'])} "
                       f"tried; r={small} is already within {tolerance:g} point of the best median ({best:.1f}).")
    return out or ["Not enough finished runs yet (LoRA and FT on the same task, or several ranks) to say."]


def reference_table(name: str, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """The AdaLoRA or SoRA reference table (methods x task metrics), our medians beside it when we have such runs."""
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


# ---------------------------------------------------------------- figures

def _bars_and_dots(ax, data: pd.DataFrame, y: str, order, hue_order, estimator: str, size: int) -> None:
    """Bars (the estimator over runs) per Task and config, with one black dot per run on top."""
    import seaborn as sns
    sns.barplot(data=data, x="Task", y=y, hue="config", order=order, hue_order=hue_order, estimator=estimator,
                errorbar=None, alpha=0.6, ax=ax)
    sns.stripplot(data=data, x="Task", y=y, hue="config", order=order, hue_order=hue_order, dodge=True,
                  palette="dark:black", size=size, legend=False, ax=ax)


def plot_lora_vs_ft(results: pd.DataFrame, lora_r: int = PAPER_RANK):
    """Per task: LoRA (rank `lora_r`) and FT scores, median bars with one dot per seed."""
    import matplotlib.pyplot as plt
    ok = _usable(results)
    ok = ok[(ok["method"] == "ft") | ((ok["method"] == "lora") & (ok["lora_r"] == lora_r))] if len(ok) else ok
    if ok.empty:
        return None
    ok = ok.assign(config=[method_label(m, r) for m, r in zip(ok["method"], ok["lora_r"])],
                   Task=ok["task"].map(lambda t: TASK_LABELS.get(t, t)))
    order = [TASK_LABELS.get(t, t) for t in TASK_ORDER if t in set(ok["task"])]
    hue_order = [c for c in ("FT", f"LoRA r={lora_r}") if c in set(ok["config"])]
    models = sorted(ok["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(max(6, 1.6 * len(order)) * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        d = ok[ok["model"] == model]
        _bars_and_dots(ax, d, "score100", order, hue_order, estimator="median", size=4)
        ax.set(title=f"{model}: LoRA vs full fine-tuning (bar: median, dots: seeds)", ylabel="score x100", xlabel="")
        ax.legend(title="", loc="lower right")
    fig.tight_layout()
    return fig


def plot_rank_ablation(results: pd.DataFrame):
    """Score vs LoRA rank per task: median over seeds, error bars from min to max."""
    import matplotlib.pyplot as plt
    ra = rank_ablation(results)
    if message(ra):
        return None
    keys = list(ra.groupby(["model", "task"]).groups)
    agg = aggregate(results)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, (model, task) in zip(axes[0], keys):
        g = ra[(ra["model"] == model) & (ra["task"] == task)]
        ax.errorbar(g["lora_r"], g["median"], yerr=[g["median"] - g["min"], g["max"] - g["median"]], marker="o",
                    capsize=3, label="LoRA")
        ft = agg[(agg["model"] == model) & (agg["task"] == task) & (agg["method"] == "ft") & (agg["n"] > 0)]
        if len(ft):
            ax.axhline(ft["median"].iloc[0], color="grey", linestyle="--", label="FT (median)")
            ax.legend(fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(g["lora_r"], [str(r) for r in g["lora_r"]])
        ax.set(title=f"{model} {TASK_LABELS.get(task, task)}", xlabel="LoRA rank r", ylabel="score x100")
    fig.suptitle("Rank ablation: median, bars min to max over seeds; dashed: FT")
    fig.tight_layout()
    return fig


def plot_training_curves(results: pd.DataFrame):
    """Training loss and validation metric per epoch, one line per run, one column per task."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    curves = training_curves(results)
    if message(curves):
        return None
    tasks = [t for t in TASK_ORDER if t in set(curves["task"])] + sorted(set(curves["task"]) - set(TASK_ORDER))
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.2 * len(tasks), 5.4), squeeze=False)
    for j, task in enumerate(tasks):
        d = curves[curves["task"] == task]
        for i, (y, label) in enumerate((("train_loss", "training loss"), ("value", f"{d['metric'].iloc[0]} x100"))):
            sns.lineplot(data=d, x="epoch", y=y, hue="config", units="run", estimator=None, marker="o", ax=axes[i, j],
                         legend=(i == 0 and j == 0))
            axes[i, j].set(title=f"{TASK_LABELS.get(task, task)}" if i == 0 else "", ylabel=label)
            axes[i, j].xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle("Per-epoch curves (one line per run and seed)")
    fig.tight_layout()
    return fig


def plot_cost(results: pd.DataFrame):
    """Training time and peak memory per run (bars: mean over seeds, dots: runs)."""
    import matplotlib.pyplot as plt
    cost = cost_table(results)
    if message(cost):
        return None
    cost = cost.assign(Task=cost["task"].map(lambda t: TASK_LABELS.get(t, t)))
    order = [TASK_LABELS.get(t, t) for t in TASK_ORDER if t in set(cost["task"])]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.4 * len(order)), 3.4))
    for ax, (y, label) in zip(axes, (("train_minutes", "training time (minutes)"),
                                     ("peak_memory_mb", "peak memory (MB)"))):
        _bars_and_dots(ax, cost, y, order, None, estimator="mean", size=3)
        ax.set(ylabel=label, xlabel="", title=label)
        ax.legend(title="", fontsize=8)
    fig.tight_layout()
    return fig
