"""The report's sentences, generated from the run files: what was run (one paragraph), why our numbers differ from
the paper's, and where training was still improving (claims.claims gives the paper's claims each with a verdict)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..glue.tasks import MNLI_INIT_TASKS, TASK_LABELS
from ..paper import load_reference
from ..runs import rundir
from .format import (METHOD_NAMES, METHOD_ORDER, NO_RESULTS, config_key, config_labels, human_count, matrices,
                     message, model_label, span, task_order, trains_adapter, value_text)
from .select import EXCLUDED, PAPER_RANK, has_runs, other_targets, sora_sweep, table2_runs, usable
from .stats import aggregate, still_improving
from .table2 import REFERENCE_MODEL, paper_rows

SPLIT_TEXT = {
    "glue_dev": "each run is scored on the GLUE validation set at its best epoch (the paper's protocol)",
    "sora": "SoRA's split: the best epoch is chosen on a validation part and the score is the test part at that "
            "epoch (CoLA, MRPC, RTE, STS-B: halves of the shuffled GLUE validation set; SST-2, QNLI, QQP: 1,000 "
            "training rows select, the GLUE validation set tests)",
    "holdout": "a held-out tenth of the training set (at most 1,000 rows) chooses the best epoch and the score is "
               "the GLUE validation set, which no choice has seen",
}


def _values(series) -> str:
    vals = sorted({v for v in series.dropna()}, key=lambda v: (isinstance(v, str), v))
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vals) or "none"


def _tasks(tasks) -> str:
    return ", ".join(TASK_LABELS.get(t, t) for t in task_order(tasks))


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _manifests(results: pd.DataFrame) -> pd.DataFrame:
    """device, gpu and start / finish time of every run, from its manifest.json."""
    rows = []
    for path in results.get("run_dir", pd.Series(dtype=str)).dropna():
        m = Path(path) / rundir.MANIFEST
        if m.is_file():
            man = rundir.read_json(m)
            rows.append({k: man.get(k) for k in ("device", "gpu", "started", "finished")})
    return pd.DataFrame(rows, columns=["device", "gpu", "started", "finished"])


def _steps(results: pd.DataFrame) -> list[int]:
    """The optimizer steps of the finished runs (the last row of each epochs.csv)."""
    steps = set()
    for path in results.loc[results["status"] == "ok", "run_dir"].dropna() if "run_dir" in results else []:
        ep = Path(path) / rundir.EPOCHS
        if ep.is_file():
            frame = pd.read_csv(ep)
            if "step" in frame and len(frame):
                steps.add(int(frame["step"].iloc[-1]))
    return sorted(steps)


def _seeds(runs: pd.DataFrame) -> str:
    """'seeds 1–3', or 'seeds 1–3, RTE 1–2' when some tasks have other seeds."""
    spans = runs.groupby("task")["seed"].apply(span)
    common = spans.mode().iloc[0]
    others = [f"{TASK_LABELS.get(t, t)} {s}" for t, s in spans.items() if s != common]
    return f"seeds {common}" + (f", {', '.join(others)}" if others else "")


def _what_ran(results: pd.DataFrame) -> str:
    """Models, tasks, configurations and seeds, in one sentence."""
    main = table2_runs(results)
    main = main.assign(config=config_labels(main))
    other_ranks = (main["method"] == "lora") & (main["lora_r"] != PAPER_RANK)
    parts = []
    for model, g in main[~other_ranks].groupby("model"):
        ft = g.loc[g["method"] == "ft", "trainable_params"] if "trainable_params" in g else pd.Series(dtype=float)
        size = f" ({human_count(ft.median())} parameters)" if ft.notna().any() else ""
        configs = ", ".join(sorted(g["config"].unique(), key=config_key))
        targets = g.loc[g["method"].map(trains_adapter), "lora_targets"].dropna() if "lora_targets" in g \
            else pd.Series()
        where = f"adapters on {matrices(targets.mode().iloc[0])}; " if len(targets) else ""
        parts.append(f"{model_label(model)}{size} on {_tasks(g['task'])}: {configs} ({where}{_seeds(g)})")
    text = "; ".join(parts)
    ablation = main[other_ranks]
    if len(ablation):
        ranks = main.loc[(main["method"] == "lora") & main["task"].isin(ablation["task"]), "lora_r"]
        text += (f"; a rank ablation, LoRA r ∈ {{{', '.join(str(int(r)) for r in sorted(ranks.unique()))}}} on "
                 f"{_tasks(ablation['task'])} ({_seeds(ablation)})")
    other = results[other_targets(results)]
    if len(other):
        sets = ", ".join(f"{{{matrices(t)}}}" for t in sorted(other["lora_targets"].unique(), key=lambda t: (
            t.count(","), t)))
        text += f"; {_count(len(other), 'LoRA run')} on other weight matrices ({sets}; Section 7, Table 5)"
    sweep = results[sora_sweep(results)]
    if len(sweep):
        text += (f"; a SoRA λ sweep ({_count(len(sweep), 'run')}: λ {_values(sweep['sora_lambda'])} on "
                 f"{_tasks(sweep['task'])}, seed {span(sweep['seed'])})")
    return text


def _budget(results: pd.DataFrame) -> str:
    caps = pd.to_numeric(results.get("max_train_samples"), errors="coerce").fillna(0)
    rows = (f"{' or '.join(f'{c:,}' for c in sorted(caps[caps > 0].astype(int).unique()))} training rows per task"
            if (caps > 0).all() else "the full training sets" if (caps == 0).all() else
            "training sets partly subsampled")
    accum = results["grad_accum"].fillna(1) if "grad_accum" in results else 1
    batch = _values((results["batch_size"] * accum).dropna().astype(int))
    steps = _steps(results)
    steps_text = (f"{steps[0]}" if len(steps) == 1 else f"{steps[0]}–{steps[-1]}") if steps else ""
    step_text = f"{steps_text} optimizer steps at batch {batch}" if steps else f"batch {batch}"
    lrs = ", ".join(f"{METHOD_NAMES.get(m, m)} " + " or ".join(
        value_text(x) for x in sorted(results.loc[results["method"] == m, "learning_rate"].dropna().unique()))
        for m in METHOD_ORDER if m in set(results["method"]))
    alpha = results.loc[results["method"].map(trains_adapter), "lora_alpha"] if "lora_alpha" in results \
        else pd.Series(dtype=float)
    alpha_text = f" (alpha {_values(alpha)})" if alpha.notna().any() else ""
    return (f"{rows}, {_values(results['epochs'].dropna().astype(int))} epochs ({step_text}), sequence length "
            f"{_values(results['max_seq_len'].dropna().astype(int))}; learning rate {lrs}{alpha_text}")


def _hardware(results: pd.DataFrame) -> str:
    man = _manifests(results)
    devices = sorted({str(d).replace("cpu: ", "CPU, ").replace("cuda: ", "GPU, ") for d in man["device"].dropna()})
    devices = devices or ["not recorded"]
    gpus = sorted({str(g) for g in man["gpu"].dropna() if g})
    text = "; ".join(devices) + (f" ({', '.join(gpus)})" if gpus else "")
    hours = results["train_seconds"].sum() / 3600 if "train_seconds" in results else 0
    if hours:
        text += f"; {hours:.1f} hours of training in total"
    days = sorted(str(s)[:10] for s in pd.concat([man["started"], man["finished"]]).dropna())
    if days:
        text += f", runs from {days[0]} to {days[-1]}" if days[0] != days[-1] else f", on {days[0]}"
    return text


def overview(results: pd.DataFrame) -> str:
    """What was run, in one Markdown paragraph: runs and their status, models, tasks, methods, seeds, protocol,
    budget and hardware, all read from the run directories."""
    if not has_runs(results):
        return NO_RESULTS
    status = results["status"].value_counts()
    ok = int(status.get("ok", 0))
    rest = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in status.items() if s != "ok")
    count = (f"**{_count(len(results), 'run')}**" + (" (all finished)" if ok == len(results) else
                                                      f" ({ok} finished, {rest})"))
    splits = results["split"].fillna("glue_dev").unique() if "split" in results else ["glue_dev"]
    protocol = "; ".join(SPLIT_TEXT.get(s, f"split {s}") for s in sorted(splits))
    methods = set(results["method"])
    agg = ("each table cell is the median over seeds (the LoRA paper's aggregation; it uses 5 seeds)"
           + ("; the method comparison uses the mean over seeds, as the AdaLoRA and SoRA papers do"
              if methods & {"adalora", "sora"} else ""))
    outside = sorted(set(results["model"]) - set(paper_rows()["model"]))
    scope = (f" {', '.join(model_label(m) for m in outside)} {'is' if len(outside) == 1 else 'are'} not in the "
             "paper: these runs test its claims within one model (our runs compared with each other), "
             "not its absolute numbers." if outside else "")
    return (f"**What was run.** {count}: {_what_ran(results)}. **Protocol:** {protocol}; {agg}. "
            f"**Budget:** {_budget(results)}. **Hardware:** {_hardware(results)}.{scope}")


# ---------------------------------------------------------------- convergence

def convergence_summary(results: pd.DataFrame) -> str | None:
    """One sentence: per model and configuration compared (FT, LoRA at the paper's rank, AdaLoRA, SoRA), how many
    runs were still improving when training stopped (their best epoch was their last)."""
    rising = still_improving(results)
    if message(rising):
        return None
    rising = rising[(rising["method"] != "lora") | (rising["lora_r"] == PAPER_RANK)]
    if rising.empty:
        return None
    parts = []
    for model, g in rising.groupby("model"):
        counts = g.groupby("config")["rising"].agg(["sum", "size"])
        counts = counts.loc[sorted(counts.index, key=config_key)]
        parts.append(f"{model_label(model)}: " + ", ".join(f"{c} {int(r['sum'])} of {int(r['size'])}"
                                                             for c, r in counts.iterrows()))
    return ("Runs whose best epoch was their last one (the score was still rising when training stopped): "
            + "; ".join(parts) + ".")


# ---------------------------------------------------------------- why our numbers differ

def why_numbers_differ(results: pd.DataFrame) -> list[str]:
    """Sentences, generated from the runs' settings, on why our numbers differ from the paper's (none without runs:
    the summary says so once)."""
    if not has_runs(results):
        return []
    hp = load_reference("lora_paper_hparams")
    paper_models = set(paper_rows()["model"])
    out = []
    ok = usable(results)
    agg = aggregate(results)
    if len(agg) and agg["n"].max() > 0:
        ns = agg.loc[agg["n"] > 0, "n"]
        span = f"{ns.min()}" if ns.min() == ns.max() else f"{ns.min()} to {ns.max()}"
        out.append(f"Seeds and aggregation: each cell is the median over {span} seed(s) (seeds "
                   f"{_values(ok['seed'])}) of every run's best-epoch score, the paper's aggregation; "
                   "the paper uses 5 seeds, so our medians are noisier.")
    for model in sorted(results["model"].dropna().unique()):
        mine = results[results["model"] == model]
        ref = model if model in set(hp["model"]) else REFERENCE_MODEL
        p = hp[hp["model"] == ref].set_index("task")
        name = model_label(model)
        who = name if ref == model else f"{name} (against the paper's {model_label(ref)} settings)"
        if model not in paper_models:
            size = mine.loc[mine["method"] == "ft", "trainable_params"].median() if "trainable_params" in mine \
                else np.nan
            smaller = ", much smaller" if not pd.isna(size) and size < 1e8 else ""
            known = f" (about {human_count(size)} parameters when fully fine-tuned)" if not pd.isna(size) else ""
            out.append(f"Model substitution: {name} is not in the paper. It is a different{smaller} model than "
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
        if tasks and "init_from" in mine:
            init = mine[mine["task"].isin(tasks) & (mine["method"] == "lora")]["init_from"].fillna("").astype(str)
            names = ", ".join(TASK_LABELS[t] for t in tasks)
            if len(init) and (init != "").all():
                out.append(f"MNLI initialisation, {name}: used for {names}, as in the paper.")
            elif len(init):
                out.append(f"MNLI initialisation, {name}: not used for {names} (the paper starts these tasks "
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
                extra = " (batch size × gradient accumulation)" if ours_col == "effective_batch" else ""
                fewer = " We train for fewer epochs, so runs may stop before they converge." \
                    if ours_col == "epochs" and (m["epochs"].max() < p["epochs"].min()) else ""
                out.append(f"{label}{extra}, {who}, ours vs the paper's: {'; '.join(diffs)}.{fewer}")
        sub = mine[pd.to_numeric(mine["max_train_samples"], errors="coerce").fillna(0) > 0]
        if len(sub):
            caps = _values(sub["max_train_samples"].astype(int))
            out.append(f"Subsampling, {name}: training sets capped at {caps} rows "
                       f"({', '.join(sorted({TASK_LABELS.get(t, t) for t in sub['task']}))}); the paper trains on the "
                       "full training sets (e.g. SST-2 67,349 rows, MNLI 392,702).")
    rising = convergence_summary(results)
    if rising:
        out.append(f"Convergence: {rising} With a short budget this favours the method that learns faster per "
                   "step.")
    other = other_targets(results)
    if other.any():
        sets = ", ".join(f"{{{matrices(t)}}}" for t in sorted(results.loc[other, "lora_targets"].unique()))
        out.append(f"Target sets: {int(other.sum())} LoRA run(s) adapt other matrices than W_q and W_v ({sets}): "
                   "the Table 5 runs of Section 7. Table 2, the LoRA-vs-FT comparison, the rank ablation and the "
                   "cost figures leave them out; Section 7 shows them.")
    bad = results[results["status"].isin(EXCLUDED)]
    if len(bad):
        counts = ", ".join(f"{n} {s}" for s, n in bad["status"].value_counts().items())
        out.append(f"Excluded runs: {counts}; they are left out of every median (and counted as excluded). "
                   "The paper does not say how it treated collapsed runs.")
    running = int((results["status"] == "running").sum())
    if running:
        out.append(f"Partial results: {running} run(s) still running or interrupted; their cells may change.")
    return out
