"""The tidy results table: one row per run directory, rebuilt from manifest.json / metrics.json files."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import rundir

PARAM_COLUMNS = ("model", "task", "method", "lora_r", "lora_alpha", "lora_targets", "seed", "learning_rate",
                 "batch_size", "grad_accum", "epochs", "max_seq_len", "max_train_samples", "weight_decay",
                 "warmup_ratio", "init_from", "weights", "precision", "split")
RESULTS_FILE = "results.csv"


def run_row(run_dir: Path) -> dict | None:
    """One row for a run directory (finished or not); None when it has no manifest."""
    manifest_path = run_dir / rundir.MANIFEST
    if not manifest_path.is_file():
        return None
    manifest = rundir.read_json(manifest_path)
    params = manifest.get("params", {})
    row = {"run": run_dir.name, "run_dir": str(run_dir), **{k: params.get(k) for k in PARAM_COLUMNS},
           "status": manifest.get("status"), "error": (manifest.get("error") or {}).get("message")}
    if params.get("method") == "ft":  # LoRA settings do not apply
        row.update(lora_r=None, lora_alpha=None, lora_targets=None)
    elif params.get("method") == "adalora":  # ranks: adalora_init_r -> adalora_target_r
        row.update(lora_r=None, adalora_init_r=params.get("adalora_init_r"),
                   adalora_target_r=params.get("adalora_target_r"))
    elif params.get("method") == "sora":
        row.update(sora_lambda=params.get("sora_lambda"))
    row["split"] = row["split"] or "glue_dev"  # runs recorded before the split parameter
    if rundir.is_finished(run_dir):
        m = rundir.read_json(run_dir / rundir.METRICS)
        row.update(status=m["status"], primary_metric=m["primary_metric"], score=m["best"].get(m["primary_metric"]),
                   best_epoch=m["best_epoch"], train_seconds=m["train_seconds"], peak_memory_mb=m["peak_memory_mb"],
                   trainable_params=m["parameters"]["total_trainable"], lora_params=m["parameters"]["lora"],
                   n_train=m["sizes"].get("train"), params_hash=m["params_hash"],
                   papermill_seconds=manifest.get("papermill_seconds"),
                   **{f"best_{k}": v for k, v in m["best"].items()})
        if m.get("test"):  # split 'sora': the test part at the best validation epoch is the reported score
            row.update(test_score=m["test"].get(m["primary_metric"]), **{f"test_{k}": v for k, v in m["test"].items()})
        state = m.get("method_state") or {}
        row.update({k: state[k] for k in ("effective_params", "zero_gates", "total_gates", "total_rank")
                    if k in state})
    return row


def collect_results(root) -> pd.DataFrame:
    """All run directories below `root` (any depth) as a table, one row per run."""
    root = Path(root)
    rows = [run_row(p.parent) for p in sorted(root.rglob(rundir.MANIFEST))] if root.is_dir() else []
    return pd.DataFrame([r for r in rows if r is not None])


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
    return Path(__file__).resolve().parent.parent / path


def select_runs(table: pd.DataFrame, **equals) -> pd.DataFrame:
    """The finished runs (status ok) whose columns equal the given values, e.g. select_runs(t, task='sst2', lora_r=8)."""
    if table.empty:
        return table
    mask = table["status"].eq("ok")
    for column, value in equals.items():
        mask &= table[column].eq(value)
    return table[mask]
