"""Where a run is recorded. One directory per run:

    manifest.json      parameters, their hash, git commit, versions, device, status, error (written first, updated)
    epochs.csv         one row per epoch (rewritten atomically after each epoch)
    adapter.safetensors  trained LoRA + head (LoRA runs)
    notebook.ipynb     the executed notebook (runner)
    metrics.json       the result; written last and atomically: its presence means the run finished

manifest.json has one writer: whoever launched the run. The runner, for a grid run (it also records the notebook,
the papermill time and a failure the notebook could not record); otherwise the run itself (`lora-nb train`, a
notebook run by hand). The run always writes epochs.csv, the adapter and metrics.json.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import re
import socket
import subprocess
import time
from enum import Enum
from importlib import metadata
from pathlib import Path

from ..config import NOT_HASHED, RUN_DEFAULTS, params_hash
from ..errors import LoraNbError
from ..paths import PACKAGE_DIR

MANIFEST, EPOCHS, METRICS, NOTEBOOK = "manifest.json", "epochs.csv", "metrics.json", "notebook.ipynb"
RESULT_FILES = (METRICS, EPOCHS, "adapter.safetensors", NOTEBOOK)  # a run's outputs, metrics.json first
TEMPORARY = re.compile(r"^\..+\.tmp(\d+)$")  # atomic_write's temporary files: .<name>.tmp<pid>
PACKAGES = ("torch", "transformers", "datasets", "loralib", "peft", "papermill", "scikit-learn", "lora-nb-utils")


class Status(str, Enum):
    """A run's status, in manifest.json and metrics.json (as its string)."""
    RUNNING = "running"  # started; a dead process's 'running' record is an interrupted run
    OK = "ok"  # finished with a score
    COLLAPSED = "collapsed"  # finished, but its best epoch predicts one class: no score reported
    NAN_LOSS = "nan_loss"  # stopped by a NaN loss
    FAILED = "failed"  # an error (recorded in the manifest), or a record that contradicts itself
    TIMEOUT = "timeout"  # a cell ran past the runner's --timeout, or the SLURM job its time limit
    QUEUED = "queued"  # submitted to SLURM, not started yet (the manifest's `slurm` has the job)
    CANCELLED = "cancelled"  # SLURM: the job was cancelled (scancel, or an administrator)
    OUT_OF_MEMORY = "out_of_memory"  # SLURM: the job went past its memory
    NODE_FAIL = "node_fail"  # SLURM: its node failed and SLURM did not requeue it
    PREEMPTED = "preempted"  # SLURM: preempted and not requeued

    def __str__(self) -> str:
        return self.value


FINISHED = (Status.OK, Status.COLLAPSED, Status.NAN_LOSS)  # the statuses a metrics.json can carry
NO_RESULT = (Status.FAILED, Status.TIMEOUT, Status.CANCELLED, Status.OUT_OF_MEMORY, Status.NODE_FAIL,
             Status.PREEMPTED)  # ended without a result: `lora-nb run` reruns them


def atomic_write(path, text: str) -> None:
    """Write text to a temporary file beside `path`, then rename: readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:  # disk full, killed by an exception: no half-written temporary is left behind
        tmp.unlink(missing_ok=True)
        raise


def write_json(path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n")


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def git_state(cwd=None) -> dict:
    """Commit and dirty flag of the checkout the code runs from (None outside git)."""
    cwd = cwd or PACKAGE_DIR
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


def start_run(run_dir, params: dict, **launcher) -> dict:
    """Create the run directory, or start it afresh: the previous run's files go first (metrics.json before the
    others, so an old result never sits beside a new manifest), then the manifest (status 'running', this
    process's id, so that a killed run can be told from a running one). The runner adds its fields (`run_name`,
    `notebook`, ...): it then owns the manifest until the run ends."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        (run_dir / name).unlink(missing_ok=True)
    manifest = {"params": params, "params_hash": params_hash(params), "git": git_state(),
                "versions": package_versions(), "device": device_description(), "status": Status.RUNNING,
                "started": now(), "pid": os.getpid(), "host": socket.gethostname(),
                **launcher}
    write_json(run_dir / MANIFEST, manifest)
    return manifest


def check_output_dir(path) -> None:
    """The run directory can be created: neither it nor a folder above it is a file."""
    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            if not folder.is_dir():
                raise LoraNbError(f"output folder {str(path)!r}: {folder} is a file, not a folder. "
                                  "Fix: choose another output_dir (output_root in a grid).")
            return


def needs_start(run_dir, params: dict, replace: bool = False) -> bool:
    """Whether a run with `params` must start `run_dir` (afresh) before writing into it; False when the runner
    prepared it for exactly this run. Refuses (LoraNbError) a directory holding another run's record unless
    `replace`, and a folder of other files: either way the results table would mislabel a result."""
    run_dir = Path(run_dir)
    check_output_dir(run_dir)
    if not (run_dir / MANIFEST).is_file():
        if run_dir.is_dir() and any(not TEMPORARY.match(p.name) for p in run_dir.iterdir()):
            raise LoraNbError(f"output_dir {str(run_dir)!r} holds other files and no {MANIFEST}: a run written there "
                              "would mix with them. Fix: choose a new or empty output_dir.")
        return True
    try:
        manifest = read_json(run_dir / MANIFEST)
    except ValueError:
        manifest = {}
    if _prepared_by_runner(manifest, params):
        return False
    if not replace and manifest.get("params_hash") != params_hash(params):
        raise LoraNbError(f"output_dir {str(run_dir)!r} holds another run ({_difference(manifest, params)}): writing "
                          "this run there would show its result under the other's parameters. Fix: choose another "
                          "output_dir, delete that folder, or replace it with `lora-nb train --force`.")
    return True


def claim(run_dir, params: dict, replace: bool = False) -> None:
    """Make `run_dir` describe this run before anything else is written into it (see needs_start)."""
    if needs_start(run_dir, params, replace):
        start_run(run_dir, params)


def read_manifest(run_dir) -> dict:
    """The run's manifest.json; {} when it is missing or unreadable (truncated by a kill)."""
    try:
        return read_json(Path(run_dir) / MANIFEST)
    except (OSError, ValueError):
        return {}


def launched_by_runner(run_dir) -> bool:
    """Whether the runner launched this run, and so writes its manifest (see the module's docstring)."""
    return "run_name" in read_manifest(run_dir)


def _prepared_by_runner(manifest: dict, params: dict) -> bool:
    return (manifest.get("status") == Status.RUNNING and "run_name" in manifest and
            manifest.get("params_hash") == params_hash(params) and process_alive(manifest.get("pid"),
                                                                                manifest.get("host")))


def _difference(manifest: dict, params: dict) -> str:
    if not manifest:
        return f"its {MANIFEST} is unreadable"
    old, new = {**RUN_DEFAULTS, **manifest.get("params", {})}, {**RUN_DEFAULTS, **params}
    keys = [k for k in sorted(set(old) | set(new)) if k not in NOT_HASHED and old.get(k) != new.get(k)]
    shown = ", ".join(f"{k} {old.get(k)!r} there, {new.get(k)!r} here" for k in keys[:4])
    return (shown or "other parameters") + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def record_failure(run_dir, exc: BaseException) -> None:
    """An error after the run directory was claimed: the run is recorded as failed, with the error (by the runner
    instead, from the notebook's error, when the runner launched it)."""
    message = str(exc).strip().splitlines()[-1][:2000] if str(exc).strip() else ""
    if (Path(run_dir) / MANIFEST).is_file() and not is_finished(run_dir) and not launched_by_runner(run_dir):
        update_manifest(run_dir, status=Status.FAILED, error={"type": type(exc).__name__, "message": message},
                        finished=now())


def process_alive(pid, host: str | None = None) -> bool:
    """Whether the process that wrote a record still runs (a process on another machine is assumed to)."""
    if host and host != socket.gethostname():
        return True
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process nobody has reaped yet is gone too
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[-1][:4]
    except OSError:
        return True


def interrupted(manifest: dict) -> bool:
    """A record left 'running' by a process that no longer exists (killed, or the machine went down)."""
    return manifest.get("status") == Status.RUNNING and not process_alive(manifest.get("pid"), manifest.get("host"))


def remove_stale_temporaries(folder) -> list[Path]:
    """Temporary files of atomic writes (`.<name>.tmp<pid>`) whose writing process is gone."""
    removed = []
    for path in Path(folder).glob(".*.tmp*") if Path(folder).is_dir() else []:
        match = TEMPORARY.match(path.name)
        if match and path.is_file() and not process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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
    """Record the result: the manifest's status first (unless the runner owns the manifest: it records the status
    once the notebook has ended), then metrics.json last (its presence marks the run finished)."""
    if not launched_by_runner(run_dir):
        update_manifest(run_dir, status=metrics["status"], finished=now())
    write_json(Path(run_dir) / METRICS, metrics)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def is_finished(run_dir, expected_hash: str | tuple[str, ...] | None = None) -> bool:
    """True when metrics.json exists and is readable (and, if given, its parameter hash matches, or is one of the
    hashes given). A truncated metrics.json is no result: the run counts as unfinished, and rerunning it replaces
    the file."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return False
    try:
        metrics = read_json(path)
    except ValueError:
        return False
    if expected_hash is None:
        return True
    accepted = (expected_hash,) if isinstance(expected_hash, str) else tuple(expected_hash)
    return metrics.get("params_hash") in accepted


def read_record(path) -> dict:
    """A run's manifest.json or metrics.json; a truncated or corrupt one fails naming the file and the fix."""
    try:
        return read_json(path)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise LoraNbError(f"{path}: truncated or not JSON ({e}). Fix: rerun that run (`lora-nb run` reruns it, "
                          "`lora-nb train --force` replaces it) or delete its directory.") from None
