"""Where grid runs go to a SLURM cluster: `lora-nb run GRID --executor slurm`.

One SLURM job per run (with `runs_per_gpu` K, one job per K runs sharing its GPU), submitted with submitit
(`submitit.SlurmExecutor`); the runs ready at the same moment go as one job array. A job executes the same
`runner.execute_run` as a local run (papermill of the run's notebook into its run directory). The runner stays the
driver: it submits the runs that are ready (an MNLI-initialised run once its MNLI run has finished, a sweep's
confirm runs once the sweep has), polls the jobs with `squeue` (then `sacct`, where the cluster keeps accounting)
and records each job's end in its run's manifest.json:

    "status": "queued" | "running" | ... | "cancelled" | "out_of_memory" | "node_fail" | "preempted"
    "slurm": {"job_id": "1234_5", "state": "PENDING" | "RUNNING" | "COMPLETED" | "CANCELLED" | ...,
              "node": "gpu17", "log": ".../1234_5_0_log.out", "reason": "..."}

Jobs are submitted held and released once every run's manifest records its job, so a stopped runner never loses
a job: a restarted `lora-nb run` waits on the jobs its manifests name (queued or running) and submits nothing
twice. A job that ended while no runner watched is recorded when the runner next starts. A run whose job ended
without a result (failed, timeout, cancelled, out of memory, node failure, preempted) is rerun by the next
`lora-nb run`, like a failed local run; SLURM's own requeue (node failure, preemption with requeue) keeps the job
id, and the runner waits on it.
"""
from __future__ import annotations

import getpass
import hashlib
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from . import rundir
from .grid import Plan, PlannedRun
from .rundir import Status
from ..errors import LoraNbError

# SLURM end states -> the run's status; COMPLETED: the run's own record decides (ok, failed in a cell, ...)
END_STATUS = {"FAILED": Status.FAILED, "TIMEOUT": Status.TIMEOUT, "DEADLINE": Status.TIMEOUT,
              "OUT_OF_MEMORY": Status.OUT_OF_MEMORY, "CANCELLED": Status.CANCELLED, "REVOKED": Status.CANCELLED,
              "NODE_FAIL": Status.NODE_FAIL, "BOOT_FAIL": Status.NODE_FAIL, "PREEMPTED": Status.PREEMPTED,
              "UNKNOWN": Status.FAILED}  # UNKNOWN: SLURM no longer knows the job (see job_states)
ENDED = ("COMPLETED", *END_STATUS)
HELD = "JobHeldUser"  # squeue's reason for a job submitted with --hold


@dataclass
class SlurmOptions:
    """What a cluster user sets (flags of `lora-nb run`, or keys of a --slurm-config YAML file)."""
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: int = 1440  # minutes per job (sbatch --time); sbatch refuses more than the partition's MaxTime
    gpus_per_run: int = 0  # --gpus-per-node of a job (one run; with runs_per_gpu K > 1, K runs share one GPU)
    cpus_per_run: int | None = None  # --cpus-per-task = cpus_per_run x runs per job (None: the cluster's default)
    mem_gb: float | None = None  # --mem = mem_gb x runs per job (None: the cluster's default)
    array_parallelism: int | None = None  # jobs of this grid in flight at once (and each array's %N)
    log_dir: str | None = None  # submitit's folder: job scripts, pickles, logs (default <output_root>/slurm)
    setup: list = field(default_factory=list)  # shell lines before the run (module load ..., source venv/bin/activate)
    sbatch: dict = field(default_factory=dict)  # more #SBATCH options, e.g. {constraint: a100, no-requeue: true}
    poll_seconds: float = 10.0  # how often the runner asks squeue

    @classmethod
    def load(cls, path=None, **overrides) -> "SlurmOptions":
        """The options of a YAML file (optional), then the given ones that are not None (command-line flags)."""
        values = {}
        if path:
            if not Path(path).is_file():
                raise LoraNbError(f"--slurm-config {str(path)!r} does not exist. Fix: give a YAML file of SLURM "
                                  "options (README: Running on a SLURM cluster).")
            try:
                values = yaml.safe_load(Path(path).read_text()) or {}
            except yaml.YAMLError as e:
                raise LoraNbError(f"{path}: not valid YAML ({str(e).splitlines()[0]}). Fix the file's "
                                  "syntax.") from None
            known = [f.name for f in fields(cls)]
            if not isinstance(values, dict) or set(values) - set(known):
                bad = sorted(set(values) - set(known)) if isinstance(values, dict) else values
                raise LoraNbError(f"{path}: unknown SLURM option(s) {bad}; known: {', '.join(known)}.")
        values.update({k: v for k, v in overrides.items() if v is not None})
        options = cls(**values)
        options.check(str(path or "command line"))
        return options

    def check(self, source: str) -> None:
        least = {"gpus_per_run": 0, "time_limit": 1, "cpus_per_run": 1, "array_parallelism": 1, "mem_gb": 0,
                 "poll_seconds": 0}  # mem_gb, poll_seconds: more than 0
        for name, low in least.items():
            value = getattr(self, name)
            if value is None:
                continue
            strict = name in ("mem_gb", "poll_seconds")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (strict and not value):
                raise LoraNbError(f"{source}: SLURM option {name} must be a number {'>' if strict else '>='} {low}, "
                                  f"got {value!r}.")
        if not isinstance(self.setup, list) or not isinstance(self.sbatch, dict):
            raise LoraNbError(f"{source}: 'setup' is a list of shell lines and 'sbatch' maps #SBATCH option names "
                              f"to values (got {self.setup!r}, {self.sbatch!r}).")


def sbatch_parameters(options: SlurmOptions, runs_per_job: int, job_name: str) -> dict:
    """submitit.SlurmExecutor's parameters for jobs of `runs_per_job` runs. The job runs Python in the batch step
    itself (use_srun False), so submitit's time-limit signal (USR2) reaches no process: a job past its limit ends
    TIMEOUT, which the runner records (a notebook cannot be checkpointed mid-cell, so submitit's requeue on that
    signal would only rerun it from the start)."""
    params = {"job_name": job_name, "time": int(options.time_limit), "use_srun": False, "stderr_to_stdout": True,
              "setup": list(options.setup) or None,
              "additional_parameters": {**options.sbatch, "hold": True}}  # released once the manifests name it
    for key, value in (("partition", options.partition), ("account", options.account), ("qos", options.qos)):
        if value:
            params[key] = value
    if options.gpus_per_run:
        params["gpus_per_node"] = 1 if runs_per_job > 1 else int(options.gpus_per_run)
    if options.cpus_per_run:
        params["cpus_per_task"] = int(options.cpus_per_run) * runs_per_job
    if options.mem_gb:
        mem = options.mem_gb * runs_per_job
        params["mem"] = f"{int(mem)}GB" if mem == int(mem) else f"{math.ceil(mem * 1024)}MB"
    if options.array_parallelism:
        params["array_parallelism"] = int(options.array_parallelism)
    return {k: v for k, v in params.items() if v is not None}


def packs(runs: list[PlannedRun], runs_per_job: int) -> list[list[PlannedRun]]:
    """The jobs for runs ready together: consecutive runs, `runs_per_job` at most in each (the last may be smaller)."""
    k = max(1, runs_per_job)
    return [runs[i:i + k] for i in range(0, len(runs), k)]


def job_name(plan: Plan) -> str:
    """lora-nb-<grid>-<6 hex of the output folder>: this grid's jobs in squeue."""
    tag = hashlib.sha1(str(Path(plan.output_root).resolve()).encode()).hexdigest()[:6]
    return f"lora-nb-{plan.grid_file.stem}-{tag}"


def log_dir(plan: Plan, options: SlurmOptions) -> Path:
    return Path(options.log_dir or Path(plan.output_root) / "slurm").absolute()


# --- on the node: what a job runs ----------------------------------------------------------------------------------

def run_job(runs: list[PlannedRun], timeout: float | None = None) -> list[dict]:
    """What a SLURM job executes (submitit unpickles and calls it on the node): its runs, each as
    runner.execute_run with the job in the manifest's `slurm`; the K runs of a pack at once, in K processes."""
    job_id = _job_id_from_environment()
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    signal.signal(signal.SIGTERM, _ended_by_slurm)
    if len(runs) == 1:
        return [_run_in_job(runs[0], timeout, job_id, node)]
    n = len(runs)
    with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_run_in_job, runs, [timeout] * n, [job_id] * n, [node] * n))


def _ended_by_slurm(signum, frame):
    """SIGTERM: SLURM ends the job (scancel, its time limit, preemption). Leave at once, writing nothing: the runner
    records the job's end state, and a late 'failed: kernel died' from here would overwrite it."""
    raise SystemExit(128 + signum)


def _job_id_from_environment() -> str:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


def _run_in_job(run: PlannedRun, timeout, job_id: str, node: str) -> dict:
    from . import runner
    runner._GPU = os.environ.get("CUDA_VISIBLE_DEVICES")  # the GPU(s) SLURM gave the job, for the manifest
    previous = rundir.read_manifest(run.run_dir).get("slurm") or {}
    slurm = {**previous, "job_id": job_id, "node": node, "state": "RUNNING"}
    return runner._safe_execute(run, str(run.notebook), timeout, slurm=slurm)


# --- the driver: submit, poll, record -------------------------------------------------------------------------------

class SlurmExecutor:
    """runner.run_plan's executor for SLURM (the protocol: runner.py's docstring). Stopping the runner leaves the
    jobs running; `scancel` stops them."""

    def __init__(self, options: SlurmOptions, timeout: float | None = None, runs_per_gpu: int = 1, log=print):
        self.options, self.timeout, self.runs_per_job, self.log = options, timeout, max(1, runs_per_gpu), log
        self._jobs: dict[str, list[PlannedRun]] = {}  # job id -> its runs (in flight)
        self._submitit = None
        self._requeued: set[str] = set()
        self._unknown: dict[str, int] = {}  # polls in a row that squeue and sacct did not know the job
        self._name = self._folder = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def adopt(self, plan: Plan, log) -> set:
        """Wait on the jobs this grid's manifests name as queued or running; record those that ended meanwhile;
        release jobs a runner stopped between submitting and releasing, and cancel held jobs no manifest names
        (submitted just before a runner was killed: they never ran)."""
        self._name, self._folder = job_name(plan), log_dir(plan, self.options)
        _require_slurm()
        flights = settle(plan, jobs_in_flight(plan), log, unknown_ended=False)
        held = _held_jobs(self._name)
        orphans = sorted(set(held) - set(flights.values()))
        if orphans:
            _slurm(["scancel", *orphans])
            log(f"cancelled {len(orphans)} held job(s) no manifest names (a runner was stopped while submitting): "
                f"{', '.join(orphans)}")
        release = sorted({job.split("_")[0] for job in held if job in flights.values()})
        if release:
            _slurm(["scontrol", "release", *release])
        runs = {r.name: r for r in plan.runs}
        for name, job in flights.items():
            self._jobs.setdefault(job, []).append(runs[name])
        adopted = set(flights)
        if adopted:
            log(f"waiting on {len(self._jobs)} SLURM job(s) a previous runner submitted: "
                f"{', '.join(sorted(self._jobs))}")
        return adopted

    def capacity(self) -> int:
        if not self.options.array_parallelism:
            return 10 ** 9
        return max(0, int(self.options.array_parallelism) * self.runs_per_job - sum(map(len, self._jobs.values())))

    def busy(self) -> bool:
        return bool(self._jobs)

    def submit(self, runs: list[PlannedRun]) -> None:
        """One job per pack of runs, as one array when there are several; submitted held, recorded in each run's
        manifest (status queued, the job id and its log), then released."""
        submitit = _import_submitit()
        from submitit.core.utils import FailedJobError
        if self._submitit is None:
            self._submitit = submitit.SlurmExecutor(folder=self._folder)
            self._submitit.update_parameters(**sbatch_parameters(self.options, self.runs_per_job, self._name))
        groups = packs(runs, self.runs_per_job)
        try:
            with self._submitit.batch():
                jobs = [self._submitit.submit(run_job, group, self.timeout) for group in groups]
        except FailedJobError as e:
            said = "; ".join(line.replace("sbatch: error: ", "") for line in str(e).strip().splitlines())
            raise LoraNbError(f"sbatch refused the jobs: {said[:500]}. Fix: check --partition, "
                              "--account, --qos, --time-limit (at most the partition's MaxTime) and the "
                              "--slurm-config file.") from None
        for job, group in zip(jobs, groups):
            for run in group:
                rundir.start_run(run.run_dir, run.params, run_name=run.name, notebook=str(run.notebook),
                                 status=Status.QUEUED, slurm={"job_id": job.job_id, "state": "PENDING", "node": None,
                                        "log": str(job.paths.stdout)})
            self._jobs[job.job_id] = group
        _slurm(["scontrol", "release", *sorted({job.job_id.split("_")[0] for job in jobs})])
        self.log(f"submitted {len(runs)} run(s) as {len(jobs)} SLURM job(s) "
                 f"({', '.join(job.job_id for job in jobs)}); logs in {self._folder}")

    def wait(self) -> list[dict]:
        """Poll until at least one job has ended; record each ended job's runs. A job SLURM does not know any more
        counts as ended after three polls in a row (not on one empty answer)."""
        while True:
            try:
                states = job_states(list(self._jobs))
            except LoraNbError as e:  # the controller is briefly unreachable: keep waiting
                self.log(f"squeue failed ({e}); retrying in {self.options.poll_seconds:g} s")
                states = None
            if states is not None:
                outcomes = []
                for job in list(self._jobs):
                    state = states.get(job, {"state": "UNKNOWN"})
                    self._unknown[job] = self._unknown.get(job, 0) + 1 if state["state"] == "UNKNOWN" else 0
                    if state["state"] in ENDED and (state["state"] != "UNKNOWN" or self._unknown[job] >= 3):
                        outcomes += [record_end(run, job, state) for run in self._jobs.pop(job)]
                    else:
                        self._note_state(job, state)
                if outcomes:
                    return outcomes
            time.sleep(self.options.poll_seconds)

    def _note_state(self, job: str, state: dict) -> None:
        """A requeued job (node failure, preemption) is PENDING again under the same id: said once."""
        if state["state"] != "PENDING" or job in self._requeued:
            return
        if any((rundir.read_manifest(run.run_dir).get("slurm") or {}).get("state") == "RUNNING"
               for run in self._jobs[job]):
            self._requeued.add(job)
            self.log(f"job {job} was requeued by SLURM ({state.get('reason')}); waiting on it")


def status_for(state: str, finished: bool) -> Status | None:
    """The status a job's end state gives its run; None when the run's own record stands: the job COMPLETED (ok, or
    failed in a cell), or the run had written its result (metrics.json) before SLURM ended the job."""
    return None if finished else END_STATUS.get(state)


def record_end(run: PlannedRun, job: str, state: dict) -> dict:
    """Write a job's end into its run's manifest (the `slurm` record, and the status status_for gives) and return the
    run's outcome. A run that wrote its metrics.json keeps its result (its status from there, should the job have
    ended before the run's own last manifest write); a COMPLETED job whose run recorded no end is a failure."""
    from .runner import NotebookStatus
    manifest = rundir.read_manifest(run.run_dir)
    slurm = {**(manifest.get("slurm") or {}), "job_id": job, "state": state["state"]}
    slurm["node"] = state.get("node") or slurm.get("node")
    if state.get("reason") and state["reason"] != "None":
        slurm["reason"] = state["reason"]
    finished = rundir.is_finished(run.run_dir, run.hashes)
    status, error = status_for(state["state"], finished), manifest.get("error")
    if status is not None:
        error = {"type": "SlurmJobEnded", "message": _end_message(job, slurm),
                 **({"run_error": manifest["error"]} if manifest.get("error") else {})}  # what the run recorded
    elif finished and manifest.get("status") not in rundir.FINISHED:
        status = Status(rundir.read_json(run.run_dir / rundir.METRICS)["status"])
    elif not finished and manifest.get("status") in (Status.QUEUED, Status.RUNNING, None):
        status, error = Status.FAILED, {"type": "NoResult", "message": f"SLURM job {job} completed but the run "
                                                                       f"recorded no end; log: {slurm.get('log')}"}
    update = {"slurm": slurm}
    if status is None:  # the run's own record stands
        status = manifest.get("status")
    else:
        executing = manifest.get("notebook_status") == NotebookStatus.EXECUTING
        update.update(status=status, error=error, finished=rundir.now(),
                      notebook_status=NotebookStatus.INTERRUPTED if executing else manifest.get("notebook_status"))
    rundir.update_manifest(run.run_dir, **update)
    return {"name": run.name, "status": status, "seconds": manifest.get("papermill_seconds"), "error": error}


def _end_message(job: str, slurm: dict) -> str:
    state = slurm["state"]
    if state == "UNKNOWN":
        return (f"SLURM no longer knows job {job} (it ended longer ago than the cluster's MinJobAge and there is no "
                f"accounting) and its run recorded no result; log: {slurm.get('log')}")
    reason = f", {slurm['reason']}" if slurm.get("reason") else ""
    return f"SLURM job {job} ended {state} on {slurm.get('node') or 'no node'}{reason}; log: {slurm.get('log')}"


def jobs_in_flight(plan: Plan) -> dict[str, str]:
    """run name -> SLURM job id, for the runs whose manifest says a job holds them (queued or running, its end not
    recorded yet)."""
    out = {}
    for run in plan.runs:
        manifest = rundir.read_manifest(run.run_dir)
        slurm = manifest.get("slurm") or {}
        if slurm.get("job_id") and slurm.get("state") not in ENDED and \
                manifest.get("status") in (Status.QUEUED, Status.RUNNING):
            out[run.name] = str(slurm["job_id"])
    return out


def settle(plan: Plan, flights: dict[str, str], log, unknown_ended: bool = True) -> dict[str, str]:
    """Record the ends of the jobs in `flights` (run name -> job id) that have ended; returns the others, still
    queued or running (all of them where SLURM's commands are missing or no controller answers). A job SLURM does
    not name counts as ended with `unknown_ended`; else it is returned, for SlurmExecutor.wait's three polls."""
    if not flights or shutil.which("squeue") is None:
        return flights
    try:
        states = job_states(list(flights.values()))
    except LoraNbError as e:  # no controller answers: they may still run
        log(f"could not ask SLURM about {len(flights)} job(s) ({e})")
        return flights
    runs, left = {r.name: r for r in plan.runs}, {}
    for name, job in flights.items():
        state = states.get(job, {"state": "UNKNOWN"})
        if state["state"] in ENDED and (unknown_ended or state["state"] != "UNKNOWN"):
            outcome = record_end(runs[name], job, state)
            log(f"{name}: job {job} ended {state['state']} while no runner watched: {outcome['status']}")
        else:
            left[name] = job
    return left




# --- asking SLURM ---------------------------------------------------------------------------------------------------

def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise LoraNbError("--executor slurm submits through submitit, which is not installed. Fix: pip install "
                          "submitit==1.5.4 (requirements.txt pins it).") from None
    return submitit


def _require_slurm() -> None:
    missing = [c for c in ("sbatch", "squeue", "scontrol", "scancel") if shutil.which(c) is None]
    if missing:
        raise LoraNbError(f"--executor slurm needs SLURM's commands; not found: {', '.join(missing)}. Fix: run on a "
                          "SLURM login node (or use --executor local).")


def _slurm(command: list[str], ok_errors: tuple = ()) -> str:
    """Run a SLURM command; its stdout. A failure raises LoraNbError with its stderr, unless the stderr contains one
    of `ok_errors` (then '')."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LoraNbError(f"{command[0]} failed: {e}") from None
    if done.returncode:
        if any(text in done.stderr for text in ok_errors):
            return ""
        raise LoraNbError(f"{' '.join(command[:2])} failed: {done.stderr.strip()[:300]}")
    return done.stdout


def parse_states(text: str) -> dict[str, dict]:
    """'JOBID|STATE|NODES|REASON' lines (squeue -o '%i|%T|%N|%r', or sacct -P) -> {job id: {state, node, reason}}.
    sacct writes 'CANCELLED by 0'; only the state's first word is kept."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0] or "." in parts[0]:
            continue  # a header or a job step (1234.batch)
        words = parts[1].split()
        out[parts[0]] = {"state": words[0].rstrip("+") if words else "UNKNOWN",
                         "node": parts[2] if len(parts) > 2 and parts[2] not in ("", "None assigned") else None,
                         "reason": parts[3] if len(parts) > 3 else None}
    return out


def job_states(job_ids: list[str]) -> dict[str, dict]:
    """{job id: {state, node, reason}} from `squeue -t all` (it keeps an ended job for the cluster's MinJobAge), then
    `sacct` for the rest where the cluster keeps accounting; a job neither knows is left out (its state is UNKNOWN).
    Raises LoraNbError when squeue cannot answer (the controller is unreachable)."""
    if not job_ids:
        return {}
    states = {}
    for i in range(0, len(job_ids), 200):
        chunk = job_ids[i:i + 200]
        states.update(parse_states(_slurm(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(chunk),
                                           "-o", "%i|%T|%N|%r"], ok_errors=("Invalid job id",))))
    missing = [j for j in job_ids if j not in states]
    if missing and shutil.which("sacct"):
        try:
            states.update(parse_states(_slurm(["sacct", "-n", "-P", "-X", "-o", "JobID,State,NodeList,Reason",
                                               "-j", ",".join(missing)])))
        except LoraNbError:  # no accounting on this cluster
            pass
    return {j: states[j] for j in job_ids if j in states}


def _held_jobs(name: str) -> list[str]:
    """This grid's jobs that wait held (submitted with --hold, not released yet)."""
    text = _slurm(["squeue", "-h", "-r", "-u", getpass.getuser(), "-n", name, "-t", "PENDING", "-o", "%i|%T|%N|%r"])
    return [job for job, s in parse_states(text).items() if s["reason"] == HELD]


# --- --dry-run ------------------------------------------------------------------------------------------------------

def describe(plan: Plan, todo: list[PlannedRun], options: SlurmOptions, runs_per_gpu: int = 1,
             waits: int = 0) -> list[str]:
    """What `--executor slurm` would submit now: the jobs, the #SBATCH lines submitit writes, what waits."""
    _import_submitit()
    from submitit.slurm.slurm import _make_sbatch_string  # the script submitit writes (pinned: requirements.txt)
    names = {r.name for r in todo}
    now = [r for r in todo if not (r.depends_on and r.depends_on in names)]
    later = len(todo) - len(now) + waits
    k = max(1, runs_per_gpu)
    jobs = math.ceil(len(now) / k)
    first = min(jobs, options.array_parallelism) if options.array_parallelism else jobs  # the runner's capacity
    params = sbatch_parameters(options, k, job_name(plan))
    if first > 1:
        params["map_count"] = first
    script = _make_sbatch_string(command="python -m submitit.core._submit ...", folder=log_dir(plan, options),
                                 **params)
    rest = f", the other {jobs - first} as jobs end (--array-parallelism)" if first < jobs else ""
    lines = [f"SLURM: {len(now)} run(s) ready now in {jobs} job(s) of {k} run(s); {first} submitted at once"
             f"{' as one job array' if first > 1 else ''}{rest}; {later} run(s) later, once their MNLI run or "
             f"their sweep has finished; logs in {log_dir(plan, options)}"]
    lines += ["  " + line for line in script.splitlines() if line.startswith("#SBATCH")]
    lines += ["  " + line for line in options.setup]
    return lines
