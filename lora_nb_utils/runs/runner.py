"""Execute a plan with papermill: serial or N worker processes (one GPU each), resumable, failures recorded."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from . import rundir
from .grid import Plan, PlannedRun, resolve_selections
from .results import write_results_table
from .selection import write_selection_file

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


def kernel_config():
    """nbclient configuration for the kernels papermill starts: the kernel manager provisions CurveZMQ keys when the
    kernelspec declares support (ipykernel's does), so the kernel's sockets are encrypted and ipykernel does not
    print 'Kernel is running over TCP without encryption' on the terminal for every notebook. Without CURVE in
    libzmq or transport_encryption in jupyter_client, the default (plain TCP on localhost)."""
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config
    config = Config()
    if zmq.has("curve") and KernelManager.class_traits().get("transport_encryption") is not None:
        config.KernelManager.transport_encryption = "auto"
    return config


def execute_run(run: PlannedRun, notebook: str, timeout: float | None = None) -> dict:
    """Run one notebook into its run directory. Returns {'name', 'status', 'seconds', 'error'?}."""
    import papermill
    rundir.start_run(run.run_dir, run.params)
    rundir.update_manifest(run.run_dir, notebook=str(notebook), gpu=_GPU, run_name=run.name,
                           notebook_status="executing")
    t0 = time.perf_counter()
    status, error = "ok", None
    try:
        papermill.execute_notebook(notebook, str(run.run_dir / rundir.NOTEBOOK), parameters=run.params,
                                   progress_bar=False, log_output=False, cwd=str(run.run_dir),
                                   execution_timeout=timeout, config=kernel_config())
    except Exception as exc:  # any failure is recorded; the grid goes on
        error = _error_info(exc)
        status = "timeout" if "Timeout" in error["type"] or "timed out" in error["message"].lower() else "failed"
    seconds = time.perf_counter() - t0
    if status == "ok" and not rundir.is_finished(run.run_dir):
        status, error = "failed", {"type": "NoMetrics", "message": "the notebook finished without metrics.json"}
    if status == "ok":
        status = rundir.read_json(run.run_dir / rundir.METRICS)["status"]
    manifest = rundir.read_json(run.run_dir / rundir.MANIFEST)
    fields = {"papermill_seconds": seconds, "error": error,
              "notebook_status": "complete" if error is None or error["type"] == "NoMetrics" else
              "timeout" if status == "timeout" else "error"}
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


def recover_interrupted(plan: Plan) -> list[str]:
    """Record what a killed runner left behind, before anything else runs: a run it had finished keeps its result,
    with its notebook.ipynb marked partial and its papermill time unknown; an unfinished one is marked failed (it
    is rerun). Stale temporary files go. Returns the names of the runs recorded."""
    rundir.remove_stale_temporaries(plan.output_root)
    recorded = []
    for run in plan.runs:
        rundir.remove_stale_temporaries(run.run_dir)
        manifest = _readable_manifest(run.run_dir)
        if not _left_by_a_killed_process(manifest):
            continue
        if rundir.is_finished(run.run_dir):
            status = rundir.read_json(run.run_dir / rundir.METRICS)["status"]
            rundir.update_manifest(run.run_dir, status=status, notebook_status="interrupted", papermill_seconds=None,
                                   note="the runner was killed after this run's metrics.json was written: the "
                                        "result stands; notebook.ipynb is partial and the papermill time unknown")
        else:
            rundir.update_manifest(run.run_dir, status="failed", notebook_status="interrupted",
                                   error={"type": "Interrupted", "message": "the process running it was killed "
                                                                            "before it finished; it is rerun"})
        recorded.append(run.name)
    return recorded


def _readable_manifest(run_dir: Path) -> dict:
    try:
        return rundir.read_json(run_dir / rundir.MANIFEST)
    except (OSError, ValueError):
        return {}


def _left_by_a_killed_process(manifest: dict) -> bool:
    active = manifest.get("status") == "running" or manifest.get("notebook_status") == "executing"
    return active and not rundir.process_alive(manifest.get("pid"), manifest.get("host"))


def pending_runs(plan: Plan, force: bool = False) -> list[PlannedRun]:
    """Runs still to do: not finished, or finished with other parameters (hash), or all with `force`."""
    return [r for r in plan.runs if force or not rundir.is_finished(r.run_dir, r.hash)]


def run_plan(plan: Plan, workers: int = 1, force: bool = False, timeout: float | None = None,
             gpus: list[int] | None = None, log=print) -> list[dict]:
    """Execute the plan's pending runs; MNLI-initialised runs start only after their MNLI run finished. A sweep
    group's confirm runs join the plan once all its sweep runs have finished, and run before the next group's."""
    resolve_selections(plan)
    interrupted = recover_interrupted(plan)
    if interrupted:
        log(f"recorded {len(interrupted)} run(s) a killed runner left behind: {', '.join(interrupted)}")
    write_results_table(plan.output_root)  # also when nothing is left to run, or results.csv was deleted
    todo = pending_runs(plan, force)
    waits = sum(len(s.confirm_params) for s in plan.selections if s.chosen is None)
    log(f"{len(plan.runs)} runs planned, {len(plan.runs) - len(todo)} already finished, {len(todo)} to run"
        + (f", {waits} more after their learning-rate selection" if waits else ""))
    write_selection_file(plan)
    done: dict[str, str] = {r.name: "ok" for r in plan.runs if r not in todo}
    outcomes: list[dict] = []
    waiting = list(todo)

    def record(outcome):
        done[outcome["name"]] = outcome["status"]
        outcomes.append(outcome)
        err = f"  [{outcome['error']['type']}: {outcome['error']['message'][:200]}]" if outcome["error"] else ""
        log(f"[{len(outcomes)}/{len(todo)}] {outcome['name']}: {outcome['status']} "
            f"({outcome['seconds']:.0f}s){err}")
        write_results_table(plan.output_root)
        added = resolve_selections(plan)
        if added:
            new = [r for r in added if force or not rundir.is_finished(r.run_dir, r.hash)]
            done.update({r.name: "ok" for r in added if r not in new})
            todo.extend(new)
            waiting[:0] = new  # the group's confirm runs next: a cell completes before the next one starts
            log(f"selected {added[0].group}: {_chosen(plan, added[0].group)}; {len(new)} confirm run(s) added")
        write_selection_file(plan)

    def blocked(run):  # its MNLI run failed: do not train on a missing initialisation
        dep = done.get(run.depends_on) if run.depends_on else "ok"
        return dep is not None and dep not in ("ok",)

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


def _chosen(plan: Plan, group: str) -> str:
    sel = next(s for s in plan.selections if s.group == group)
    return ", ".join(f"{k}={v}" for k, v in sel.chosen.items())


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
