"""Grids on SLURM (runs/slurm.py): the state mapping, packing and sbatch options without a cluster; then a real
single-node SLURM (.ci/slurm-up) running a fast stand-in notebook: ok, a failing cell, a job whose process dies, MNLI
ordering, a runner killed and restarted while its jobs run (nothing submitted twice), scancel, a killed slurmd.

Without SLURM (not installed, not root) the cluster tests skip with the reason; LORA_NB_REQUIRE_SLURM=1 (`make test`
sets it where it brought SLURM up) turns the skip into a failure."""
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lora_nb_utils import LoraNbError
from lora_nb_utils.cli import main
from lora_nb_utils.report.select import EXCLUDED
from lora_nb_utils.runs import rundir
from lora_nb_utils.runs.grid import load_plan
from lora_nb_utils.runs.results import collect_results
from lora_nb_utils.runs.rundir import NO_RESULT, Status, read_json
from lora_nb_utils.runs.runner import LocalExecutor, available_gpus, gpu_slots, run_plan
from lora_nb_utils.runs.slurm import (SlurmExecutor, SlurmOptions, job_name, jobs_in_flight, packs, parse_states,
                                      record_end, sbatch_parameters, status_for)

from tests.conftest import FAKE_NOTEBOOK_PARAMS, fake_project, start_lora_nb

REPO = Path(__file__).resolve().parents[2]

PARAMS = FAKE_NOTEBOOK_PARAMS + """
epochs: int = 3  # epochs (the dry run's cost estimate reads them)
batch_size: int = 16  # batch
max_seq_len: int = 128  # length"""

# No lora_nb_utils import in the kernel (seconds on a loaded machine): the hash comes from the manifest the job wrote.
BODY = '''import json, os, signal, time
if task == "cola":
    raise ValueError("boom: cola is broken on purpose")
if task == "qnli":  # the job's own process dies (as when the OOM killer takes it): SLURM ends the job FAILED
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(60)
if seed >= 90 and not os.environ.get("FAKE_NO_SLEEP"):
    time.sleep(300)
if init_from:
    assert os.path.isfile(os.path.join(init_from, "metrics.json")), "MNLI run must finish first"
with open(os.path.join(output_dir, "manifest.json")) as f:
    params_hash = json.load(f)["params_hash"]
metrics = {"status": "ok", "task": task, "model": model, "method": method, "lora_r": lora_r, "seed": seed,
           "primary_metric": "accuracy", "best_epoch": 1, "best": {"accuracy": 0.5 + seed / 100}, "last": {},
           "parameters": {"total_trainable": 10, "lora": 4}, "sizes": {"train": 5}, "train_seconds": 0.1,
           "peak_memory_mb": 1.0, "params_hash": params_hash}
with open(os.path.join(output_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f)'''


@pytest.fixture
def project(tmp_path):
    return fake_project(tmp_path, PARAMS, BODY)


# --- without a cluster ----------------------------------------------------------------------------------------------

def test_every_slurm_end_state_maps_to_a_status_the_report_excludes():
    assert status_for("COMPLETED", finished=False) is None  # the run's own record decides
    assert {s: status_for(s, finished=False) for s in ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED",
                                                       "NODE_FAIL", "PREEMPTED", "UNKNOWN")} == {
        "FAILED": "failed", "TIMEOUT": "timeout", "OUT_OF_MEMORY": "out_of_memory", "CANCELLED": "cancelled",
        "NODE_FAIL": "node_fail", "PREEMPTED": "preempted", "UNKNOWN": "failed"}
    assert status_for("TIMEOUT", finished=True) is None  # a result written before the kill stands
    assert {s.value for s in NO_RESULT} <= set(EXCLUDED) and Status.OK not in NO_RESULT


def test_squeue_and_sacct_lines_are_parsed():
    text = "12_0|COMPLETED|vm|None\n12_1|PENDING||JobHeldUser\n13|CANCELLED by 0|gpu[1-2]|\n13.batch|CANCELLED|gpu1|\n"
    assert parse_states(text) == {
        "12_0": {"state": "COMPLETED", "node": "vm", "reason": "None"},
        "12_1": {"state": "PENDING", "node": None, "reason": "JobHeldUser"},
        "13": {"state": "CANCELLED", "node": "gpu[1-2]", "reason": ""}}


@pytest.mark.parametrize("state,metrics,recorded,status,error_type", [
    ("CANCELLED", False, "running", "cancelled", "SlurmJobEnded"),
    ("OUT_OF_MEMORY", False, "running", "out_of_memory", "SlurmJobEnded"),
    ("PREEMPTED", False, "running", "preempted", "SlurmJobEnded"),
    ("NODE_FAIL", False, "queued", "node_fail", "SlurmJobEnded"),
    ("TIMEOUT", True, "running", "ok", None),  # metrics.json was written before the limit: the result stands
    ("COMPLETED", False, "running", "failed", "NoResult"),  # the job ended, the run recorded no end
    ("UNKNOWN", False, "running", "failed", "SlurmJobEnded"),  # aged out of squeue, no accounting
])
def test_a_jobs_end_is_recorded_in_its_manifest(project, state, metrics, recorded, status, error_type):
    _, write_grid = project
    run = load_plan(write_grid("blocks:\n  - matrix: {seed: [1]}\n")).runs[0]
    log = str(run.run_dir / "12_3_0_log.out")
    rundir.start_run(run.run_dir, run.params, run_name=run.name, status=recorded, notebook_status="executing",
                     slurm={"job_id": "12_3", "state": "RUNNING", "node": "gpu7", "log": log})
    if metrics:
        rundir.write_json(run.run_dir / "metrics.json", {"status": "ok", "params_hash": run.hash})
    outcome = record_end(run, "12_3", {"state": state, "node": "gpu7", "reason": "None"})
    manifest = read_json(run.run_dir / "manifest.json")
    assert outcome["status"] == manifest["status"] == status
    assert manifest["slurm"] == {"job_id": "12_3", "state": state, "node": "gpu7", "log": log}
    assert (manifest["error"] or {}).get("type") == error_type
    if error_type == "SlurmJobEnded":
        assert "12_3" in manifest["error"]["message"] and log in manifest["error"]["message"]
        assert manifest["notebook_status"] == "interrupted"


def test_packing_and_sbatch_options():
    assert gpu_slots([0, 1], 2) == [0, 1, 0, 1] and gpu_slots([0], 3) == [0, 0, 0] and gpu_slots([], 4) == []
    assert LocalExecutor(workers=8, gpus=[0, 1], runs_per_gpu=2).worker_gpus() == [0, 1, 0, 1]  # a worker per slot
    assert LocalExecutor(workers=3, gpus=[0, 1], runs_per_gpu=2).worker_gpus() == [0, 1, 0]
    assert LocalExecutor(workers=2).worker_gpus() == []  # CPU workers
    assert [len(p) for p in packs(list(range(7)), 3)] == [3, 3, 1] and packs(list(range(2)), 1) == [[0], [1]]
    options = SlurmOptions(partition="gpu", account="lab", qos="normal", time_limit=90, gpus_per_run=1,
                           cpus_per_run=4, mem_gb=12.5, array_parallelism=8, sbatch={"constraint": "a100"})
    one = sbatch_parameters(options, 1, "lora-nb-x")
    assert {k: one[k] for k in ("partition", "account", "qos", "time", "gpus_per_node", "cpus_per_task", "mem",
                                "array_parallelism", "job_name", "use_srun")} == {
        "partition": "gpu", "account": "lab", "qos": "normal", "time": 90, "gpus_per_node": 1, "cpus_per_task": 4,
        "mem": "12800MB", "array_parallelism": 8, "job_name": "lora-nb-x", "use_srun": False}
    assert one["additional_parameters"] == {"constraint": "a100", "hold": True}
    packed = sbatch_parameters(options, 4, "lora-nb-x")  # 4 runs share one GPU: their CPUs and memory add up
    assert (packed["gpus_per_node"], packed["cpus_per_task"], packed["mem"]) == (1, 16, "50GB")


def test_slurm_options_from_a_file_and_flags_with_errors_naming_the_fix(tmp_path):
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text("partition: gpu\ntime_limit: 60\nsetup: [module load cuda]\nsbatch: {constraint: a100}\n")
    options = SlurmOptions.load(cfg, partition="debug", qos=None)
    assert (options.partition, options.time_limit, options.setup, options.sbatch) == (
        "debug", 60, ["module load cuda"], {"constraint": "a100"})
    cfg.write_text("partiton: gpu\n")
    with pytest.raises(LoraNbError, match=r"unknown SLURM option\(s\) \['partiton'\]; known: partition"):
        SlurmOptions.load(cfg)
    with pytest.raises(LoraNbError, match=r"time_limit must be a number >= 1, got 0"):
        SlurmOptions.load(None, time_limit=0)
    with pytest.raises(LoraNbError, match=r"mem_gb must be a number > 0, got 0"):
        SlurmOptions.load(None, mem_gb=0)


def test_the_readmes_sample_config_is_valid(tmp_path):
    section = (REPO / "README.md").read_text().split("### Running on a SLURM cluster", 1)[1]
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    options = SlurmOptions.load(cfg)
    assert options.gpus_per_run == 1 and options.sbatch == {"constraint": "a100", "no-requeue": True}


def test_dry_run_prints_the_jobs_and_sbatch_lines(project, capsys):
    root, write_grid = project
    grid = write_grid("""
        blocks:
          - params: {init_from: mnli}
            matrix: {task: [rte], seed: [1, 2]}
          - matrix: {task: [mnli], seed: [1, 2]}
          - matrix: {task: [sst2], seed: [1, 2, 3]}
        """)
    assert main(["run", str(grid), "--dry-run", "--executor", "slurm", "--partition", "gpu", "--gpus-per-run", "1",
                 "--runs-per-gpu", "2", "--time-limit", "120", "--array-parallelism", "4"]) == 0
    out = capsys.readouterr().out
    assert "SLURM: 5 run(s) ready now in 3 job(s) of 2 run(s); 3 submitted at once as one job array; 2 run(s) " \
           "later, once their MNLI run or their sweep has finished" in out
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=120",
                 "#SBATCH --array=0-2%3", "#SBATCH --hold", f"#SBATCH --job-name={job_name(load_plan(grid))}"):
        assert line in out
    assert not (root / "out").exists()
    assert main(["run", str(grid), "--dry-run", "--partition", "gpu"]) == 2  # a SLURM flag without the executor
    assert "--partition is an option of --executor slurm" in capsys.readouterr().err
    assert main(["run", str(grid), "--executor", "slurm", "--workers", "4"]) == 2
    assert "--workers is for --executor local" in capsys.readouterr().err
    if not available_gpus():
        assert main(["run", str(grid), "--runs-per-gpu", "2"]) == 2
        assert "--runs-per-gpu packs runs on the GPUs and no CUDA GPU is visible" in capsys.readouterr().err
    assert not (root / "out").exists()


def test_a_local_runner_refuses_runs_that_slurm_holds(project, monkeypatch):
    _, write_grid = project
    monkeypatch.setattr("lora_nb_utils.runs.slurm.shutil.which", lambda command: None)  # no SLURM to ask
    plan = load_plan(write_grid("blocks:\n  - matrix: {seed: [1, 2]}\n"))
    run = plan.runs[0]
    rundir.start_run(run.run_dir, run.params, run_name=run.name, status=Status.QUEUED,
                     slurm={"job_id": "77", "state": "PENDING", "node": None, "log": "x"})
    assert jobs_in_flight(plan) == {run.name: "77"}
    with pytest.raises(LoraNbError, match=r"1 run\(s\) of this grid are on SLURM.*\(job 77\).*--executor slurm"):
        run_plan(plan, log=lambda *_: None)


# --- on a real single-node SLURM ------------------------------------------------------------------------------------

def _jobs_named(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-n", name, "-o", "%i"], capture_output=True,
                         text=True, check=True).stdout
    return sorted(out.split())


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _manifest(run) -> dict:
    try:
        return read_json(run.run_dir / "manifest.json")
    except (OSError, ValueError):
        return {}


def test_a_grid_on_slurm_records_each_end_and_keeps_mnli_order(slurm_cluster, project):
    """One array for the runs ready at once; the MNLI-initialised run is submitted once its MNLI run finished. A
    cell that raises is the run's failure (the job COMPLETED); a job whose process dies is FAILED."""
    root, write_grid = project
    plan = load_plan(write_grid("""
        blocks:
          - matrix: {task: [cola, qnli, mnli], seed: [1]}
          - params: {init_from: mnli}
            matrix: {task: [rte], seed: [1]}
        """))
    lines = []
    executor = SlurmExecutor(SlurmOptions(poll_seconds=0.5, time_limit=10), log=lines.append)
    outcomes = {o["name"].split("/")[1].split(",")[0]: o for o in run_plan(plan, executor=executor,
                                                                           log=lines.append)}
    assert {t: o["status"] for t, o in outcomes.items()} == {
        "task=cola": "failed", "task=qnli": "failed", "task=mnli": "ok", "task=rte": "ok"}
    manifests = {r.params["task"]: _manifest(r) for r in plan.runs}
    first = {manifests[t]["slurm"]["job_id"].split("_")[0] for t in ("cola", "qnli", "mnli")}
    assert len(first) == 1 and manifests["rte"]["slurm"]["job_id"].split("_")[0] not in first  # one array, then rte
    assert manifests["rte"]["started"] >= manifests["mnli"]["finished"]
    node = socket.gethostname().split(".")[0]
    for task, m in manifests.items():
        assert m["slurm"]["node"] == node and Path(m["slurm"]["log"]).is_file()
    assert manifests["cola"]["slurm"]["state"] == "COMPLETED" and manifests["cola"]["error"]["type"] == "ValueError"
    qnli = manifests["qnli"]
    assert (qnli["slurm"]["state"], qnli["error"]["type"], qnli["notebook_status"]) == (
        "FAILED", "SlurmJobEnded", "interrupted")
    assert qnli["slurm"]["job_id"] in qnli["error"]["message"] and qnli["slurm"]["log"] in qnli["error"]["message"]
    table = collect_results(root / "out").set_index("task")
    assert table["status"].to_dict() == {"cola": "failed", "mnli": "ok", "qnli": "failed", "rte": "ok"}
    assert table.loc["rte", "score"] == pytest.approx(0.51)


def test_a_job_sbatch_refuses_fails_in_one_line_and_writes_nothing(slurm_cluster, project):
    root, write_grid = project
    plan = load_plan(write_grid("blocks:\n  - matrix: {seed: [1]}\n"))
    executor = SlurmExecutor(SlurmOptions(partition="no-such-partition"), log=lambda *_: None)
    with pytest.raises(LoraNbError, match=r"sbatch refused the jobs: .*invalid partition.* Fix: check --partition"):
        run_plan(plan, executor=executor, log=lambda *_: None)
    assert not plan.runs[0].run_dir.exists()


def test_restarted_runner_waits_on_its_jobs_then_cancel_and_node_failure_are_recorded(slurm_cluster, project,
                                                                                        monkeypatch):
    """A runner killed while its jobs run: the restarted one waits on them (submits nothing). scancel -> cancelled;
    slurmd killed until its node is declared down -> node_fail (no requeue here: SLURM would hold a requeued job
    120 s). The next `lora-nb run` resubmits both, packed in one job (--runs-per-gpu 2), and each run counts once."""
    root, write_grid = project
    grid = write_grid("blocks:\n  - matrix: {seed: [98, 99]}\n")
    cfg = root / "slurm.yaml"
    cfg.write_text("poll_seconds: 0.5\ntime_limit: 10\nsbatch: {no-requeue: true}\n")
    plan = load_plan(grid)
    node_fail, cancel = plan.runs  # seeds 98, 99
    name = job_name(plan)

    args = [grid, "--executor", "slurm", "--slurm-config", cfg]
    first = start_lora_nb(["run", *args], root / "first.log")
    _wait_for(lambda: all(_manifest(r).get("slurm", {}).get("state") == "RUNNING" for r in plan.runs), 90,
              "both jobs running")
    os.killpg(first.pid, signal.SIGKILL)
    first.join()
    assert len(_jobs_named(name)) == 2
    assert main(["run", str(grid)]) == 2  # a local runner does not run them a second time

    log = root / "second.log"
    second = start_lora_nb(["run", *args], log)
    try:
        _wait_for(lambda: "0 to run, 2 still on SLURM" in log.read_text(), 60, "the restarted runner")
        assert "waiting on 2 SLURM job(s)" in log.read_text()
        subprocess.run(["scancel", _manifest(cancel)["slurm"]["job_id"]], check=True)
        _wait_for(lambda: _manifest(cancel).get("status") == "cancelled", 30, "the cancel recorded")
        os.kill(int((slurm_cluster / "run" / "slurmd.pid").read_text()), signal.SIGKILL)
        _wait_for(lambda: _manifest(node_fail).get("status") == "node_fail", 90, "the node failure recorded")
        second.join(timeout=30)
        assert second.exitcode == 1, log.read_text()  # runs ended without a result
    finally:
        if second.exitcode is None:
            os.killpg(second.pid, signal.SIGKILL)
            second.join()
        subprocess.run([str(REPO / ".ci/slurm-up")], capture_output=True, timeout=120)  # slurmd back
    assert _jobs_named(name) == sorted({_manifest(r)["slurm"]["job_id"] for r in plan.runs})  # nothing twice
    for run, state in ((cancel, "CANCELLED"), (node_fail, "NODE_FAIL")):
        m = _manifest(run)
        assert m["slurm"]["state"] == state and m["error"]["type"] == "SlurmJobEnded" and m["slurm"]["node"]
    assert sorted(collect_results(root / "out")["status"]) == ["cancelled", "node_fail"]

    monkeypatch.setenv("FAKE_NO_SLEEP", "1")  # sbatch passes the environment on to the jobs
    lines = []
    executor = SlurmExecutor(SlurmOptions.load(cfg), runs_per_gpu=2, log=lines.append)
    outcomes = run_plan(load_plan(grid), executor=executor, log=lines.append)
    assert [o["status"] for o in outcomes] == ["ok", "ok"]
    assert "2 runs planned, 0 already finished, 2 to run" in lines
    assert any(line.startswith("submitted 2 run(s) as 1 SLURM job(s)") for line in lines)
    jobs = {_manifest(r)["slurm"]["job_id"] for r in plan.runs}
    assert len(jobs) == 1 and len(_jobs_named(name)) == 3  # the pack: both runs in one job
    table = collect_results(root / "out")
    assert len(table) == 2 and list(table["status"]) == ["ok", "ok"]
    assert all(json.loads((r.run_dir / "manifest.json").read_text())["slurm"]["state"] == "COMPLETED"
               for r in plan.runs)
