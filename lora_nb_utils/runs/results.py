"""The tidy results table: one row per run directory, rebuilt from manifest.json / metrics.json files."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import rundir
from .rundir import Status
from ..errors import LoraNbError
from ..methods import METHODS
from ..paths import repo_root
from .selection import selection_roles

PARAM_COLUMNS = ("model", "task", "method", "lora_r", "lora_alpha", "lora_targets", "seed", "learning_rate",
                 "batch_size", "grad_accum", "epochs", "max_seq_len", "max_train_samples", "weight_decay",
                 "warmup_ratio", "init_from", "weights", "precision", "split", "early_stopping_patience")
LORA_COLUMNS = ("lora_r", "lora_alpha", "lora_targets")
RESULTS_FILE = "results.csv"


def run_row(run_dir: Path, strict: bool = False) -> dict | None:
    """One row for a run directory (finished or not); None when it has no manifest. A truncated manifest.json or
    metrics.json fails with `strict` (naming the file), else its row says so (status failed)."""
    manifest_path = run_dir / rundir.MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest = rundir.read_record(manifest_path)
    except LoraNbError as e:
        if strict:
            raise
        return {"run": run_dir.name, "run_dir": str(run_dir), "status": Status.FAILED, "error": str(e)}
    params = manifest.get("params", {})
    row = {"run": run_dir.name, "run_dir": str(run_dir), **{k: params.get(k) for k in PARAM_COLUMNS},
           "status": manifest.get("status"), "error": (manifest.get("error") or {}).get("message")}
    method = METHODS.get(params.get("method"))
    if method:  # the LoRA settings it does not use are blank; its own parameters (AdaLoRA's ranks, ...) are added
        row.update({k: None for k in LORA_COLUMNS if k not in method.parameters})
        row.update({k: params.get(k) for k in method.parameters if k not in PARAM_COLUMNS})
    row["split"] = row["split"] or "glue_dev"  # runs recorded before the split parameter
    finished = rundir.is_finished(run_dir, manifest.get("params_hash"))  # a result of these parameters
    if not finished:
        row.update(_unfinished(run_dir, manifest, strict))
    if finished:
        m = rundir.read_json(run_dir / rundir.METRICS)
        row.update(status=m["status"], primary_metric=m["primary_metric"], score=m["best"].get(m["primary_metric"]),
                   best_epoch=m["best_epoch"], train_seconds=m["train_seconds"], peak_memory_mb=m["peak_memory_mb"],
                   trainable_params=m["parameters"]["total_trainable"], lora_params=m["parameters"]["lora"],
                   n_train=m["sizes"].get("train"), params_hash=m["params_hash"],
                   papermill_seconds=manifest.get("papermill_seconds"), cpu_seconds=m.get("cpu_seconds"),
                   epochs_run=m.get("epochs_run"), stopped_early=m.get("stopped_early"),
                   **{f"best_{k}": v for k, v in m["best"].items()})
        if m.get("test"):  # split 'sora': the test part at the best validation epoch is the reported score
            row.update(test_score=m["test"].get(m["primary_metric"]), **{f"test_{k}": v for k, v in m["test"].items()})
        state = m.get("method_state") or {}
        row.update({k: state[k] for k in ("effective_params", "zero_gates", "total_gates", "total_rank")
                    if k in state})
    return row


def _unfinished(run_dir: Path, manifest: dict, strict: bool) -> dict:
    """What a run without a readable metrics.json really is, when its manifest alone would mislead."""
    if (run_dir / rundir.METRICS).is_file():
        if strict:
            rundir.read_record(run_dir / rundir.METRICS)
        if rundir.is_finished(run_dir):
            return {"status": Status.FAILED, "error": f"{rundir.METRICS} was written by a run with other parameters than "
                                                 f"{rundir.MANIFEST} describes; rerun this run"}
        return {"status": Status.FAILED, "error": f"{rundir.METRICS} is truncated or not JSON; rerun this run"}
    if rundir.interrupted(manifest):
        return {"status": Status.FAILED,
                "error": f"interrupted: the process that ran it (pid {manifest.get('pid')}) is gone; rerun it"}
    if manifest.get("status") in rundir.FINISHED:
        return {"status": Status.FAILED, "error": f"{rundir.METRICS} is missing (interrupted while finishing or while "
                                             "being replaced); rerun it"}
    return {}


def collect_results(root, strict: bool = False) -> pd.DataFrame:
    """All run directories below `root` (any depth) as a table, one row per run (strict: see run_row)."""
    root = Path(root)
    rows = [run_row(p.parent, strict) for p in sorted(root.rglob(rundir.MANIFEST))] if root.is_dir() else []
    table = pd.DataFrame([r for r in rows if r is not None])
    roles = selection_roles(root)
    if roles and len(table):  # sweep grids: which runs carry the chosen value
        table["selection"] = [roles.get(Path(p).relative_to(root).as_posix()) for p in table["run_dir"]]
    return table


def write_results_table(root) -> Path:
    """Rebuild `<root>/results.csv` atomically from the run directories."""
    path = Path(root) / RESULTS_FILE
    table = collect_results(root)
    if len(table):  # the file is portable: run directories relative to its folder
        table["run_dir"] = [str(Path(p).relative_to(Path(root))) for p in table["run_dir"]]
    rundir.atomic_write(path, table.to_csv(index=False))
    return path


def resolve_root(path) -> Path:
    """A results folder given relative to the working directory or, failing that, to the repository root (so the
    same notebook parameter works from JupyterLab in notebooks/ and from papermill in the root)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return repo_root() / path


def select_runs(table: pd.DataFrame, **equals) -> pd.DataFrame:
    """The finished runs (status ok) whose columns equal the given values, e.g. select_runs(t, task='sst2', lora_r=8)."""
    if table.empty:
        return table
    mask = table["status"].eq(Status.OK)
    for column, value in equals.items():
        mask &= table[column].eq(value)
    return table[mask]


def _method_label(row) -> str:
    method = row.get("method")
    label = METHODS[method].label(row, method, "->") if method in METHODS else None
    if label in (None, method):  # no rank
        return "-" if pd.isna(method) else str(method)
    targets = row.get("lora_targets")
    return label if not isinstance(targets, str) or targets == "query,value" else f"{label} ({targets})"


def _method_order(row) -> tuple:
    method = METHODS.get(row.get("method"))
    order = list(METHODS).index(method.name) if method else 9
    rank = row.get(method.rank_parameters[0]) if method and method.has_rank else row.get("lora_r")
    return (order, str(row.get("method")), 0 if pd.isna(rank) else rank,
            str(row.get("lora_targets")))


def _duration(seconds: float) -> str:
    if pd.isna(seconds):
        return "-"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _lr(value: float) -> str:
    if pd.isna(value):
        return "-"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as numbers; NaN where it is missing or not a number."""
    if column not in frame:
        return pd.Series(float("nan"), index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce")


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """A grid's outcome in a few rows: per task, method and learning rate (and model, when there are several), the
    trainable parameters, the metric, the reported score x100 (each run's best epoch; the test part for the 'sora' /
    'holdout' splits; the median over seeds), the runs that finished ok, and the training time per run (median)."""
    columns = ["task", "method", "lr", "trainable", "metric", "score", "runs", "train time"]
    if table.empty or "task" not in table:
        return pd.DataFrame(columns=columns)
    t = table.copy()
    t["model"] = t["model"] if "model" in t else ""
    t["status"] = t["status"] if "status" in t else None
    records = t.to_dict("records")
    t["method_label"] = [_method_label(r) for r in records]
    t["_order"] = [_method_order(r) for r in records]
    t["lr"] = _numeric(t, "learning_rate")
    t["reported"] = _numeric(t, "test_score").fillna(_numeric(t, "score"))
    order = sorted(range(len(t)), key=lambda i: (str(t["model"].iat[i]), str(t["task"].iat[i]), t["_order"].iat[i],
                                                 0 if pd.isna(t["lr"].iat[i]) else t["lr"].iat[i]))
    t = t.iloc[order]
    keys = (["model"] if t["model"].nunique() > 1 else []) + ["task", "method_label", "lr"]
    rows = []
    for key, g in t.groupby(keys, sort=False, dropna=False):
        ok = g[g["status"].eq(Status.OK)]
        others = g.loc[~g["status"].eq(Status.OK), "status"].fillna("unknown").value_counts()
        metrics = ok["primary_metric"].dropna() if "primary_metric" in ok else pd.Series(dtype=str)
        trainable, score = _numeric(ok, "trainable_params").median(), ok["reported"].median()
        rows.append({**dict(zip(keys, key)), "trainable": "-" if pd.isna(trainable) else f"{trainable:,.0f}",
                     "metric": metrics.iloc[0] if len(metrics) else "-",
                     "score": "-" if pd.isna(score) else f"{100 * score:.1f}",
                     "runs": f"{len(ok)}/{len(g)}" + (" (" + ", ".join(f"{n} {status}" for status, n in
                                                                  others.items()) + ")" if len(others) else ""),
                     "train time": _duration(_numeric(ok, "train_seconds").median())})
    out = pd.DataFrame(rows).rename(columns={"method_label": "method"})
    out["lr"] = [_lr(v) for v in out["lr"]]
    return out[[c for c in ["model"] + columns if c in out]]


def format_summary(table: pd.DataFrame) -> str:
    """summary_table as aligned text (what `lora-nb run` prints when a grid finishes)."""
    summary = summary_table(table)
    if summary.empty:
        return "no runs"
    left = {"model", "task", "method", "metric", "runs"}
    cells = [list(summary.columns)] + [[str(v) for v in row] for row in summary.itertuples(index=False)]
    widths = [max(len(r[j]) for r in cells) for j in range(len(summary.columns))]
    return "\n".join("  ".join(v.ljust(w) if c in left else v.rjust(w)
                               for v, w, c in zip(row, widths, summary.columns)).rstrip() for row in cells)


def grid_summary(root, run_dirs=None) -> str:
    """format_summary of the runs below `root`, or only of `run_dirs` (a grid's own runs) when given."""
    table = collect_results(root)
    if run_dirs is not None and len(table):
        wanted = {str(Path(p).resolve()) for p in run_dirs}
        table = table[[str(Path(p).resolve()) in wanted for p in table["run_dir"]]]
    return format_summary(table)
