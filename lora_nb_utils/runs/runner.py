"""Execute a plan with papermill, resumable, failures recorded. `run_plan` drives; an executor runs: LocalExecutor
(here: serial, or N worker processes, one GPU slot each) or slurm.SlurmExecutor (one SLURM job per run or pack).

An executor is a context manager with
    adopt(plan, log) -> names              the runs a stopped runner left in flight, which it waits on (SLURM jobs;
                                            none locally); it records those that ended while no runner watched
    capacity() -> int                      how many more runs it takes now
    submit(runs)                           start these runs (ready: their MNLI run has finished)
    busy() -> bool                         whether runs are in flight
    wait() -> list[dict]                   block until at least one run ended; their outcomes
An outcome is {'name', 'status', 'seconds', 'error'}; the run's directory holds the record (manifest.json).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from enum import Enum

from jupyter_client.manager import AsyncKernelManager, KernelManager

from . import rundir
from .rundir import Status
from ..errors import LoraNbError
from .grid import Plan, PlannedRun, resolve_selections
from .results import write_results_table
from .selection import write_selection_file

_GPU = None  # the GPU id of this worker process


class NotebookStatus(str, Enum):
    """What became of a grid run's notebook (manifest.json's `notebook_status`, written by the runner)."""
    EXECUTING = "executing"
    COMPLETE = "complete"  # every cell ran (the run's own status says whether it has a score)
    ERROR = "error"  # a cell raised: the manifest's `error` has the cell and the exception
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"  # the runner was killed while it ran: notebook.ipynb is partial

    def __str__(self) -> str:
        return self.value


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


class QuietShutdownKernelManager(AsyncKernelManager):
    """nbclient's kernel manager, without the SIGINT that jupyter_client sends before every shutdown request. The
    notebook has finished (or nbclient gave up on it) when its kernel is shut down; the shutdown request alone stops
    it, and a kernel that does not exit is still terminated after `shutdown_wait_time`. The interrupt, arriving while
    ipykernel is still in a message handler (a loaded machine), made it print "KeyboardInterrupt caught in kernel"
    on the runner's terminal."""

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()


def kernel_config():
    """nbclient configuration for the kernels papermill starts, so that they print nothing on the terminal: the
    kernel manager provisions CurveZMQ keys when the kernelspec declares support (ipykernel's does), so the kernel's
    sockets are encrypted and ipykernel does not warn 'Kernel is running over TCP without encryption' for every
    notebook (without CURVE in libzmq or transport_encryption in jupyter_client: the default, plain TCP on
    localhost); and no interrupt before shutdown (QuietShutdownKernelManager)."""
    import zmq
    from traitlets.config import Config
    config = Config()
    if zmq.has("curve") and KernelManager.class_traits().get("transport_encryption") is not None:
        config.KernelManager.transport_encryption = "auto"
    config.NotebookClient.kernel_manager_class = QuietShutdownKernelManager
    return config


def execute_run(run: PlannedRun, notebook: str, timeout: float | None = None, **launcher) -> dict:
    """Run one notebook into its run directory (`launcher`: more manifest fields, e.g. the SLURM job). Returns
    {'name', 'status', 'seconds', 'error'?}."""
    import papermill
    rundir.start_run(run.run_dir, run.params, run_name=run.name, notebook=str(notebook), gpu=_GPU,
                     notebook_status=NotebookStatus.EXECUTING, **launcher)
    t0 = time.perf_counter()
    status, error = Status.OK, None
    try:
        papermill.execute_notebook(notebook, str(run.run_dir / rundir.NOTEBOOK), parameters=run.params,
                                   progress_bar=False, log_output=False, cwd=str(run.run_dir),
                                   execution_timeout=timeout, config=kernel_config())
    except Exception as exc:  # any failure is recorded; the grid goes on
        error = _error_info(exc)
        timed_out = "Timeout" in error["type"] or "timed out" in error["message"].lower()
        status = Status.TIMEOUT if timed_out else Status.FAILED
    seconds = time.perf_counter() - t0
    if status == Status.OK and not rundir.is_finished(run.run_dir):
        status, error = Status.FAILED, {"type": "NoMetrics", "message": "the notebook finished without metrics.json"}
    if status == Status.OK:
        status = Status(rundir.read_json(run.run_dir / rundir.METRICS)["status"])
    notebook_status = (NotebookStatus.COMPLETE if error is None or error["type"] == "NoMetrics" else
                       NotebookStatus.TIMEOUT if status == Status.TIMEOUT else NotebookStatus.ERROR)
    rundir.update_manifest(run.run_dir, status=status, finished=rundir.now(), papermill_seconds=seconds,
                           error=error, notebook_status=notebook_status)
    return {"name": run.name, "status": status, "seconds": seconds, "error": error}


def _safe_execute(run, notebook, timeout, **launcher):
    try:
        return execute_run(run, notebook, timeout, **launcher)
    except Exception as exc:  # the runner's own failure for this run (disk full, ...): record, go on
        error = {"type": type(exc).__name__, "message": traceback.format_exc()[-2000:]}
        if rundir.read_manifest(run.run_dir).get("status") == Status.RUNNING:  # the manifest's writer closes it
            try:
                rundir.update_manifest(run.run_dir, status=Status.FAILED, notebook_status=NotebookStatus.ERROR,
                                       error=error, finished=rundir.now())
            except OSError:  # the disk that failed the run: the next runner's recovery records it
                pass
        return {"name": run.name, "status": Status.FAILED, "seconds": 0.0, "error": error}


def recover_interrupted(plan: Plan, skip=()) -> list[str]:
    """Record what a killed runner left behind, before anything else runs: a run it had finished keeps its result,
    with its notebook.ipynb marked partial and its papermill time unknown; an unfinished one is marked failed (it
    is rerun). Stale temporary files go. Runs named in `skip` (SLURM jobs still in flight) are left alone. Returns
    the names of the runs recorded."""
    rundir.remove_stale_temporaries(plan.output_root)
    recorded = []
    for run in plan.runs:
        if run.name in skip:
            continue
        rundir.remove_stale_temporaries(run.run_dir)
        manifest = rundir.read_manifest(run.run_dir)
        if not _left_by_a_killed_process(manifest):
            continue
        if rundir.is_finished(run.run_dir):
            status = rundir.read_json(run.run_dir / rundir.METRICS)["status"]
            rundir.update_manifest(run.run_dir, status=status, notebook_status=NotebookStatus.INTERRUPTED,
                                   papermill_seconds=None,
                                   note="the runner was killed after this run's metrics.json was written: the "
                                        "result stands; notebook.ipynb is partial and the papermill time unknown")
        else:
            rundir.update_manifest(run.run_dir, status=Status.FAILED, notebook_status=NotebookStatus.INTERRUPTED,
                                   error={"type": "Interrupted", "message": "the process running it was killed "
                                                                            "before it finished; it is rerun"})
        recorded.append(run.name)
    return recorded




def _left_by_a_killed_process(manifest: dict) -> bool:
    active = manifest.get("status") == Status.RUNNING or manifest.get("notebook_status") == NotebookStatus.EXECUTING
    return active and not rundir.process_alive(manifest.get("pid"), manifest.get("host"))


def pending_runs(plan: Plan, force: bool = False) -> list[PlannedRun]:
    """Runs still to do: not finished, or finished with other parameters (hash), or all with `force`."""
    return [r for r in plan.runs if force or not rundir.is_finished(r.run_dir, r.hashes)]


def run_plan(plan: Plan, workers: int = 1, force: bool = False, timeout: float | None = None,
             gpus: list[int] | None = None, log=print, executor=None, runs_per_gpu: int = 1) -> list[dict]:
    """Execute the plan's pending runs with `executor` (default: LocalExecutor(workers, gpus, runs_per_gpu,
    timeout)); MNLI-initialised runs start only after their MNLI run finished. A sweep group's confirm runs join the
    plan once all its sweep runs have finished, and run before the next group's."""
    executor = executor or LocalExecutor(workers, gpus, runs_per_gpu, timeout)
    resolve_selections(plan)
    with executor:
        return _drive(plan, executor, force, log)


def _drive(plan: Plan, executor, force: bool, log) -> list[dict]:
    in_flight = executor.adopt(plan, log)
    interrupted = recover_interrupted(plan, skip=in_flight)
    if interrupted:
        log(f"recorded {len(interrupted)} run(s) a killed runner left behind: {', '.join(interrupted)}")
    write_results_table(plan.output_root)  # also when nothing is left to run, or results.csv was deleted
    todo = [r for r in pending_runs(plan, force) if r.name not in in_flight]
    waits = sum(len(s.confirm_params) for s in plan.selections if s.chosen is None)
    log(f"{len(plan.runs)} runs planned, {len(plan.runs) - len(todo) - len(in_flight)} already finished, "
        f"{len(todo)} to run" + (f", {len(in_flight)} still on SLURM (waited on, not resubmitted)" if in_flight
                                 else "") + (f", {waits} more after their learning-rate selection" if waits else ""))
    write_selection_file(plan)
    done: dict[str, str] = {r.name: Status.OK for r in plan.runs if r not in todo and r.name not in in_flight}
    outcomes: list[dict] = []
    waiting = list(todo)
    total = [len(todo) + len(in_flight)]

    def record(outcome):
        done[outcome["name"]] = outcome["status"]
        outcomes.append(outcome)
        err = f"  [{outcome['error']['type']}: {outcome['error']['message'][:200]}]" if outcome["error"] else ""
        log(f"[{len(outcomes)}/{total[0]}] {outcome['name']}: {outcome['status']} "
            f"({outcome['seconds'] or 0:.0f}s){err}")
        write_results_table(plan.output_root)
        added = resolve_selections(plan)
        if added:
            new = [r for r in added if force or not rundir.is_finished(r.run_dir, r.hashes)]
            done.update({r.name: Status.OK for r in added if r not in new})
            total[0] += len(new)
            waiting[:0] = new  # the group's confirm runs next: a cell completes before the next one starts
            log(f"selected {added[0].group}: {_chosen(plan, added[0].group)}; {len(new)} confirm run(s) added")
        write_selection_file(plan)

    def blocked(run):  # its MNLI run failed: do not train on a missing initialisation
        dep = done.get(run.depends_on) if run.depends_on else Status.OK
        return dep is not None and dep != Status.OK

    while waiting or executor.busy():
        ready = []
        for run in list(waiting):
            if len(ready) >= executor.capacity():
                break
            if run.depends_on and done.get(run.depends_on) is None:
                continue  # its MNLI run is still to come
            waiting.remove(run)
            if blocked(run):
                record(_blocked_outcome(run))
            else:
                ready.append(run)
        if ready:
            executor.submit(ready)
        if not executor.busy():
            if waiting and not ready:  # nothing runs and nothing can start: their MNLI run is not in the plan
                stuck, waiting[:] = list(waiting), []
                for run in stuck:
                    record(_blocked_outcome(run))
            continue
        for outcome in executor.wait():
            record(outcome)
    return outcomes


def gpu_slots(gpus: list[int], runs_per_gpu: int = 1) -> list[int]:
    """The GPU of each local worker: every GPU `runs_per_gpu` times, round-robin (0, 1, 0, 1 for two GPUs and 2), so
    that fewer workers than slots still spread over the GPUs."""
    return [g for _ in range(max(1, runs_per_gpu)) for g in gpus]


class LocalExecutor:
    """Runs on this machine: serial (one worker), or `workers` spawned processes. With GPUs, each worker is pinned
    to one slot of gpu_slots (CUDA_VISIBLE_DEVICES): `runs_per_gpu` K puts K workers on each GPU, and there are at
    most as many workers as slots."""

    def __init__(self, workers: int = 1, gpus: list[int] | None = None, runs_per_gpu: int = 1,
                 timeout: float | None = None):
        self.slots = gpu_slots(gpus or [], runs_per_gpu)
        self.workers = min(workers, len(self.slots)) if self.slots else workers
        self.timeout = timeout
        self._serial: list[PlannedRun] = []
        self._pool, self._futures = None, {}

    def worker_gpus(self) -> list[int]:
        """The GPU each worker process is pinned to (none without GPUs)."""
        return self.slots[:self.workers]

    def __enter__(self):
        if self.workers > 1:
            gpu_queue = None
            if self.slots:
                gpu_queue = mp.get_context("spawn").Queue()
                for g in self.worker_gpus():
                    gpu_queue.put(g)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker, initargs=(gpu_queue,))
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown()

    def adopt(self, plan: Plan, log) -> set:
        """Nothing runs elsewhere; but runs a SLURM runner left queued or running are not run here a second time
        (those whose job has ended are recorded, where SLURM can be asked)."""
        from .slurm import jobs_in_flight, settle
        held = settle(plan, jobs_in_flight(plan), log)
        if held:
            names = ", ".join(f"{name} (job {job})" for name, job in list(held.items())[:3])
            raise LoraNbError(f"{len(held)} run(s) of this grid are on SLURM, queued or running: {names}"
                              f"{' ...' if len(held) > 3 else ''}. Fix: `lora-nb run {plan.grid_file} --executor "
                              "slurm` waits for them; or scancel them, then rerun here (without SLURM's commands: "
                              "delete their run directories).")
        return set()

    def capacity(self) -> int:
        if self._pool is None:
            return 0 if self._serial else 1
        return self.workers - len(self._futures)

    def submit(self, runs: list[PlannedRun]) -> None:
        for run in runs:
            if self._pool is None:
                self._serial.append(run)
            else:
                self._futures[self._pool.submit(_safe_execute, run, str(run.notebook), self.timeout)] = run

    def busy(self) -> bool:
        return bool(self._serial or self._futures)

    def wait(self) -> list[dict]:
        if self._pool is None:
            run = self._serial.pop(0)
            return [_safe_execute(run, str(run.notebook), self.timeout)]
        finished = next(as_completed(self._futures))
        self._futures.pop(finished)
        return [finished.result()]


def _chosen(plan: Plan, group: str) -> str:
    sel = next(s for s in plan.selections if s.group == group)
    return ", ".join(f"{k}={v}" for k, v in sel.chosen.items())


def _blocked_outcome(run: PlannedRun) -> dict:
    error = {"type": "DependencyFailed", "message": f"its MNLI run {run.depends_on} did not finish"}
    run.run_dir.mkdir(parents=True, exist_ok=True)
    rundir.start_run(run.run_dir, run.params, run_name=run.name, status=Status.FAILED, error=error)
    return {"name": run.name, "status": Status.FAILED, "seconds": 0.0, "error": error}


def available_gpus() -> list[int]:
    try:
        import torch
        return list(range(torch.cuda.device_count()))
    except Exception:
        return []
