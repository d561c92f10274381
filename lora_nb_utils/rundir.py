"""Where a run is recorded. One directory per run:

    manifest.json      parameters, their hash, git commit, versions, device, status, error (written first, updated)
    epochs.csv         one row per epoch (rewritten atomically after each epoch)
    adapter.safetensors  trained LoRA + head (LoRA runs)
    notebook.ipynb     the executed notebook (runner)
    metrics.json       the result; written last and atomically: its presence means the run finished
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from .config import params_hash

MANIFEST, EPOCHS, METRICS, NOTEBOOK = "manifest.json", "epochs.csv", "metrics.json", "notebook.ipynb"
PACKAGES = ("torch", "transformers", "datasets", "loralib", "peft", "papermill", "scikit-learn", "lora-nb-utils")


def atomic_write(path, text: str) -> None:
    """Write text to a temporary file beside `path`, then rename: readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n")


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def git_state(cwd=None) -> dict:
    """Commit and dirty flag of the checkout the code runs from (None outside git)."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                    capture_output=True, text=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_description() -> str:
    import torch
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads " \
           f"{torch.get_num_threads()}"


def start_run(run_dir, params: dict) -> dict:
    """Create the run directory and its manifest (status 'running'); a stale metrics.json is removed first."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS).unlink(missing_ok=True)
    manifest = {"params": params, "params_hash": params_hash(params), "git": git_state(),
                "versions": package_versions(), "device": device_description(), "status": "running",
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(run_dir / MANIFEST, manifest)
    return manifest


def update_manifest(run_dir, **fields) -> dict:
    path = Path(run_dir) / MANIFEST
    manifest = read_json(path) if path.is_file() else {}
    manifest.update(fields)
    write_json(path, manifest)
    return manifest


def write_epochs(run_dir, rows: list[dict]) -> None:
    """All epoch rows so far, as CSV (atomically replaced)."""
    if not rows:
        return
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(Path(run_dir) / EPOCHS, buf.getvalue())


def finish_run(run_dir, metrics: dict) -> None:
    """Record the result: manifest status first, then metrics.json last (its presence marks the run finished)."""
    update_manifest(run_dir, status=metrics["status"], finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_json(Path(run_dir) / METRICS, metrics)


def is_finished(run_dir, expected_hash: str | None = None) -> bool:
    """True when metrics.json exists (and, if given, its parameter hash matches)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return False
    return expected_hash is None or read_json(path).get("params_hash") == expected_hash
