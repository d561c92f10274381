"""The tidy results table: one row per run directory, rebuilt from manifest.json / metrics.json files."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import rundir

PARAM_COLUMNS = ("model", "task", "method", "lora_r", "lora_alpha", "lora_targets", "seed", "learning_rate",
                 "batch_size", "grad_accum", "epochs", "max_seq_len", "max_train_samples", "weight_decay",
                 "warmup_ratio", "init_from", "weights", "precision")
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
    if rundir.is_finished(run_dir):
        m = rundir.read_json(run_dir / rundir.METRICS)
        row.update(status=m["status"], primary_metric=m["primary_metric"], score=m["best"].get(m["primary_metric"]),
                   best_epoch=m["best_epoch"], train_seconds=m["train_seconds"], peak_memory_mb=m["peak_memory_mb"],
                   trainable_params=m["parameters"]["total_trainable"], lora_params=m["parameters"]["lora"],
                   n_train=m["sizes"].get("train"), params_hash=m["params_hash"],
                   papermill_seconds=manifest.get("papermill_seconds"),
                   **{f"best_{k}": v for k, v in m["best"].items()})
    return row


def collect_results(root) -> pd.DataFrame:
    """All run directories below `root` (any depth) as a table, one row per run."""
    root = Path(root)
    rows = [run_row(p.parent) for p in sorted(root.rglob(rundir.MANIFEST))] if root.is_dir() else []
    return pd.DataFrame([r for r in rows if r is not None])


def write_results_table(root) -> Path:
    """Rebuild `<root>/results.csv` atomically from the run directories."""
    path = Path(root) / RESULTS_FILE
    rundir.atomic_write(path, collect_results(root).to_csv(index=False))
    return path
