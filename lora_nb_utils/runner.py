"""Execute a plan with papermill: serial or N worker processes (one GPU each), resumable, failures recorded."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from . import rundir
from .grid import Plan, PlannedRun
from .results import write_results_table

_GPU = None  # the GPU id of this worker process


def _init_worker(gpu_queue) -> None:
    global _GPU
    _GPU = gpu_queue.get() if gpu_queue is not None else None
    if _GPU is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(_GPU)


def _error_info(exc: BaseException) -> dict:
    """What failed: for a notebook error, the failing cell's number, source and the exception."""
    info = {"type": type(exc).__name__, "message": str(exc).strip().splitlines()[-1][:2000] if str(exc) else ""}
    if hasattr(exc, "cell_index"):  # papermill.PapermillExecutionError
        info.update(type=exc.ename, message=str(exc.evalue)[:2000], cell_index=exc.cell_index,
                    cell_source=exc.source[:2000])
    return info


def execute_run(run: PlannedRun, notebook: str, timeout: float | None = None) -> dict:
    """Run one notebook into its run directory. Returns {'name', 'status', 'seconds', 'error'?}."""
    import papermill
    rundir.start_run(run.run_dir, run.params)
    rundir.update_manifest(run.run_dir, notebook=str(notebook), gpu=_GPU, run_name=run.name)
    t0 = time.perf_counter()
    status, error = "ok", None
    try:
        papermill.execute_notebook(notebook, str(run.run_dir / rundir.NOTEBOOK), parameters=run.params,
                                   progress_bar=False, log_output=False, cwd=str(run.run_dir),
                                   execution_timeout=timeout)
    except Exception as exc:  # any failure is recorded; the grid goes on
        error = _error_info(exc)
        status = "timeout" if "Timeout" in error["type"] or "timed out" in error["message"].lower() else "failed"
    seconds = time.perf_counter() - t0
    if status == "ok" and not rundir.is_finished(run.run_dir):
        status, error = "failed", {"type": "NoMetrics", "message": "the notebook finished without metrics.json"}
    if status == "ok":
        status = rundir.read_json(run.run_dir / rundir.METRICS)["status"]
    manifest = rundir.read_json(run.run_dir / rundir.MANIFEST)
    fields = {"papermill_seconds": seconds, "error": error}
    if error is not None:  # the notebook did not record a result: the runner records the failure
        fields["status"] = status
    if manifest.get("status") == "running":
        fields["status"] = status
    rundir.update_manifest(run.run_dir, **fields)
    return {"name": run.name, "status": status, "seconds": seconds, "error": error}


def _safe_execute(run, notebook, timeout):
    try:
        return execute_run(run, notebook, timeout)
    except Exception as exc:  # the runner's own failure for this run (disk full, ...): record, go on
        return {"name": run.name, "status": "failed", "seconds": 0.0,
                "error": {"type": type(exc).__name__, "message": traceback.format_exc()[-2000:]}}


def pending_runs(plan: Plan, force: bool = False) -> list[PlannedRun]:
    """Runs still to do: not finished, or finished with other parameters (hash), or all with `force`."""
    return [r for r in plan.runs if force or not rundir.is_finished(r.run_dir, r.hash)]


def run_plan(plan: Plan, workers: int = 1, force: bool = False, timeout: float | None = None,
             gpus: list[int] | None = None, log=print) -> list[dict]:
    """Execute the plan's pending runs; MNLI-initialised runs start only after their MNLI run finished."""
    todo = pending_runs(plan, force)
    log(f"{len(plan.runs)} runs planned, {len(plan.runs) - len(todo)} already finished, {len(todo)} to run")
    done: dict[str, str] = {r.name: "ok" for r in plan.runs if r not in todo}
    outcomes: list[dict] = []

    def record(outcome):
        done[outcome["name"]] = outcome["status"]
        outcomes.append(outcome)
        err = f"  [{outcome['error']['type']}: {outcome['error']['message'][:200]}]" if outcome["error"] else ""
        log(f"[{len(outcomes)}/{len(todo)}] {outcome['name']}: {outcome['status']} "
            f"({outcome['seconds']:.0f}s){err}")
        write_results_table(plan.output_root)

    def blocked(run):  # its MNLI run failed: do not train on a missing initialisation
        dep = done.get(run.depends_on) if run.depends_on else "ok"
        return dep is not None and dep not in ("ok",)

    waiting = list(todo)
    if workers <= 1:
        while waiting:
            run = waiting.pop(0)
            if blocked(run):
                record(_blocked_outcome(run))
            else:
                record(_safe_execute(run, str(plan.notebook), timeout))
        return outcomes

    gpu_queue = None
    if gpus:
        gpu_queue = mp.get_context("spawn").Queue()
        for g in gpus[:workers]:
            gpu_queue.put(g)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(gpu_queue,)) as pool:
        futures = {}
        while waiting or futures:
            for run in list(waiting):
                dep = done.get(run.depends_on) if run.depends_on else "ok"
                if dep is None:
                    continue  # its MNLI run is still to come
                waiting.remove(run)
                if blocked(run):
                    record(_blocked_outcome(run))
                else:
                    futures[pool.submit(_safe_execute, run, str(plan.notebook), timeout)] = run
            if not futures:
                continue
            finished = next(as_completed(futures))
            futures.pop(finished)
            record(finished.result())
    return outcomes


def _blocked_outcome(run: PlannedRun) -> dict:
    error = {"type": "DependencyFailed", "message": f"its MNLI run {run.depends_on} did not finish"}
    run.run_dir.mkdir(parents=True, exist_ok=True)
    rundir.start_run(run.run_dir, run.params)
    rundir.update_manifest(run.run_dir, status="failed", error=error)
    return {"name": run.name, "status": "failed", "seconds": 0.0, "error": error}


def available_gpus() -> list[int]:
    try:
        import torch
        return list(range(torch.cuda.device_count()))
    except Exception:
        return []
