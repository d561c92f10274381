"""The grid runner on a fast stand-in notebook: expansion, validation, failures, resume after a kill, results."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lora_nb_utils import LoraNbError
from lora_nb_utils.config import RunConfig, params_hash
from lora_nb_utils.runs import rundir
from lora_nb_utils.runs.grid import load_plan
from lora_nb_utils.runs.results import collect_results
from lora_nb_utils.runs.rundir import read_json
from lora_nb_utils.runs.runner import pending_runs, run_plan

from tests.conftest import FAKE_NOTEBOOK_PARAMS, write_fake_notebook

PARAMS = FAKE_NOTEBOOK_PARAMS

BODY = '''import os, time
from lora_nb_utils.runs import rundir
from lora_nb_utils.config import params_hash

names = ["model", "task", "method", "lora_r", "learning_rate", "seed", "init_from", "output_dir", "progress"]
if task == "cola":
    raise ValueError("boom: cola is broken on purpose")
if seed == 99 and not os.environ.get("FAKE_NO_SLEEP"):
    time.sleep(60)
if init_from:
    assert rundir.is_finished(init_from), "MNLI run must finish first"
score = 0.5 + seed / 100 + lora_r / 1000
rundir.finish_run(output_dir, {
    "status": "ok", "task": task, "model": model, "method": method, "lora_r": lora_r, "seed": seed,
    "primary_metric": "accuracy", "best_epoch": 1, "best": {"accuracy": score}, "last": {},
    "parameters": {"total_trainable": 10, "lora": 4}, "sizes": {"train": 5}, "train_seconds": 0.1,
    "peak_memory_mb": 1.0, "params_hash": params_hash({n: globals()[n] for n in names})})'''


@pytest.fixture
def project(tmp_path):
    """A folder laid out like the repository: notebooks/fake.ipynb and a grid writer."""
    write_fake_notebook(tmp_path, PARAMS, BODY)

    def write_grid(body: str, name="grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text("notebook: notebooks/fake.ipynb\noutput_root: out\n" + textwrap.dedent(body))
        return path
    return tmp_path, write_grid


def test_plan_expands_blocks_with_precedence_and_key_value_names(project):
    root, write_grid = project
    (root / "p_sst2.yaml").write_text("learning_rate: 1.0e-3\nseed: 7\n")
    grid = write_grid("""
        blocks:
          - params_file: p_{task}.yaml
            params: {seed: 5}
            matrix: {seed: [1, 2], task: [sst2], lora_r: [4, 8]}
          - params: {method: ft}
            matrix: {task: [rte]}
        """)
    plan = load_plan(grid)
    names = [r.name for r in plan.runs]
    assert names == ["minilm/task=sst2,method=lora,r=4,seed=1", "minilm/task=sst2,method=lora,r=8,seed=1",
                     "minilm/task=sst2,method=lora,r=4,seed=2", "minilm/task=sst2,method=lora,r=8,seed=2",
                     "minilm/task=rte,method=ft,seed=0"]
    first = plan.runs[0].params
    assert first["learning_rate"] == 1.0e-3 and first["seed"] == 1  # file < params < matrix
    assert first["output_dir"] == str(root / "out" / names[0]) and first["progress"] == "log"


@pytest.mark.parametrize("block,message", [
    ("params: {learning_rte: 1.0e-3}", r"'learning_rte' is not a parameter of the notebook"),
    ("params: {learning_rate: 5e-4}", r"'learning_rate' must be float, got '5e-4' \(str\).*5.0e-4"),
    ("params: {lora_r: 8.5}", r"'lora_r' must be int"),
    ("params: {task: sst3}", r"Unknown GLUE task 'sst3'"),
    ("params_file: missing_{task}.yaml", r"params file .*missing_sst2.yaml' does not exist"),
    ("params: {task: rte, init_from: mnli}", r"initialises from MNLI .* no MNLI run"),
])
def test_bad_grids_fail_before_anything_runs_naming_file_and_key(project, block, message):
    _, write_grid = project
    grid = write_grid(f"blocks:\n  - {block}\n")
    with pytest.raises(LoraNbError, match=message) as err:
        load_plan(grid)
    assert "grid.yaml" in str(err.value) or "missing_" in str(err.value)
    assert not (grid.parent / "out").exists()


def test_failures_are_recorded_and_the_grid_goes_on_then_results_table(project):
    root, write_grid = project
    grid = write_grid("""
        blocks:
          - matrix: {task: [cola, sst2], seed: [1]}
        """)
    outcomes = run_plan(load_plan(grid), log=lambda *_: None)
    assert [o["status"] for o in outcomes] == ["failed", "ok"]
    failed = read_json(root / "out/minilm/task=cola,method=lora,r=8,seed=1/manifest.json")
    assert failed["status"] == "failed" and failed["error"]["type"] == "ValueError"
    assert "boom" in failed["error"]["message"] and "raise ValueError" in failed["error"]["cell_source"]
    assert not (root / "out/minilm/task=cola,method=lora,r=8,seed=1/metrics.json").exists()
    table = collect_results(root / "out")
    assert sorted(table["status"]) == ["failed", "ok"]
    ok = table[table.task == "sst2"].iloc[0]
    assert ok["score"] == pytest.approx(0.518) and (root / "out" / "results.csv").is_file()
    # resume: the finished run is skipped, the failed one is retried
    again = run_plan(load_plan(grid), log=lambda *_: None)
    assert [o["name"] for o in again] == ["minilm/task=cola,method=lora,r=8,seed=1"]


def test_changed_parameters_rerun_and_force_reruns(project):
    _, write_grid = project
    grid = write_grid("blocks:\n  - matrix: {seed: [1]}\n")
    assert len(run_plan(load_plan(grid), log=lambda *_: None)) == 1
    assert run_plan(load_plan(grid), log=lambda *_: None) == []
    assert len(run_plan(load_plan(grid), force=True, log=lambda *_: None)) == 1
    write_grid("blocks:\n  - params: {learning_rate: 1.0e-3}\n    matrix: {seed: [1]}\n")
    assert len(run_plan(load_plan(grid), log=lambda *_: None)) == 1  # same folder, other hash: rerun


def test_mnli_initialised_runs_follow_their_mnli_run(project):
    root, write_grid = project
    grid = write_grid("""
        blocks:
          - params: {init_from: mnli}
            matrix: {task: [rte], seed: [1]}
          - matrix: {task: [mnli], seed: [1]}
        """)
    plan = load_plan(grid)
    assert [r.params["task"] for r in plan.runs] == ["mnli", "rte"]
    assert plan.runs[1].params["init_from"] == str(plan.runs[0].run_dir)
    assert [o["status"] for o in run_plan(plan, log=lambda *_: None)] == ["ok", "ok"]


def test_mnli_linked_runs_keep_their_hash_when_the_checkout_moves(project):
    root, write_grid = project
    body = """
        blocks:
          - params: {init_from: mnli}
            matrix: {task: [rte], seed: [1]}
          - matrix: {task: [mnli], seed: [1]}
        """
    plan = load_plan(write_grid(body))
    moved = root / "moved"
    shutil.copytree(root / "notebooks", moved / "notebooks")
    (moved / "grid.yaml").write_text((root / "grid.yaml").read_text())
    again = load_plan(moved / "grid.yaml")
    rte, rte_moved = plan.runs[1], again.runs[1]
    assert rte.params["init_from"] != rte_moved.params["init_from"] and rte.hash == rte_moved.hash
    assert params_hash({**rte.params, "init_from": "/elsewhere/mnli-run"}) != rte.hash  # another MNLI run counts
    # a run finished before this rule carries the hash of its absolute init_from: still finished, not rerun
    legacy = params_hash(rte.params, legacy=True)
    assert legacy != rte.hash and rte.hashes == (rte.hash, legacy)
    rundir.write_json(rte.run_dir / rundir.METRICS, {"status": "ok", "params_hash": legacy})
    assert [r.name for r in pending_runs(plan)] == [plan.runs[0].name]
    # an init_from outside the grid's folders hashes as given, as it always did
    plain = {**rte.params, "init_from": "/data/adapters/mnli.safetensors"}
    assert params_hash(plain) == params_hash(plain, legacy=True)


def test_killed_runner_resumes_without_loss_or_duplicates(project):
    root, write_grid = project
    grid = write_grid("blocks:\n  - matrix: {seed: [1, 99, 2]}\n")
    cmd = [sys.executable, "-m", "lora_nb_utils.cli", "run", str(grid)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    slow = root / "out/minilm/task=sst2,method=lora,r=8,seed=99"
    deadline = time.time() + 300  # a loaded machine starts kernels slowly
    while not (slow / "manifest.json").is_file() and time.time() < deadline:
        time.sleep(0.5)
    assert (slow / "manifest.json").is_file(), "the slow run did not start within 300 s"
    time.sleep(3)  # the slow run is executing now
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (root / "out/minilm/task=sst2,method=lora,r=8,seed=1/metrics.json").is_file()
    assert read_json(slow / "manifest.json")["status"] == "running" and not (slow / "metrics.json").exists()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONUNBUFFERED": "1", "FAKE_NO_SLEEP": "1"})
    assert "3 runs planned, 1 already finished, 2 to run" in out.stdout
    assert sorted(p.name for p in (root / "out/minilm").iterdir()) == sorted(
        ["task=sst2,method=lora,r=8,seed=1", "task=sst2,method=lora,r=8,seed=2", "task=sst2,method=lora,r=8,seed=99"])
    assert len(collect_results(root / "out")) == 3


def test_each_block_runs_its_own_notebook_from_runconfigs_defaults(project):
    """A block names its notebook (Table 2's blocks run the RoBERTa-base, -large and DeBERTa notebooks); every run
    starts from RunConfig's defaults, not from a notebook's parameters cell (the smoke values there)."""
    root, write_grid = project
    smoke_params = PARAMS.replace('learning_rate: float = 5.0e-4', 'learning_rate: float = 9.0e-1')
    write_fake_notebook(root, smoke_params, BODY.replace('"status": "ok"', '"status": "ok", "nb": "other"'),
                        name="other.ipynb")
    grid = write_grid("""
        blocks:
          - matrix: {task: [sst2], seed: [1]}
          - notebook: notebooks/other.ipynb
            matrix: {task: [rte], seed: [1]}
        """)
    plan = load_plan(grid)
    assert [r.notebook.name for r in plan.runs] == ["fake.ipynb", "other.ipynb"]
    assert [r.params["learning_rate"] for r in plan.runs] == [RunConfig().learning_rate] * 2  # not 0.9
    assert [o["status"] for o in run_plan(plan, log=lambda *_: None)] == ["ok", "ok"]
    metrics = [read_json(r.run_dir / "metrics.json") for r in plan.runs]
    assert [m.get("nb") for m in metrics] == [None, "other"]  # each ran its own notebook
    assert read_json(plan.runs[1].run_dir / "manifest.json")["notebook"].endswith("other.ipynb")


def test_a_block_without_a_notebook_fails_naming_the_fix(project):
    root, _ = project
    grid = root / "no_notebook.yaml"
    grid.write_text("output_root: out\nblocks:\n  - matrix: {task: [sst2]}\n")
    with pytest.raises(LoraNbError, match=r"block 1\): no notebook to run. Fix: set the grid's 'notebook' or the "
                                          r"block's"):
        load_plan(grid)


def test_the_runner_alone_writes_a_grid_runs_manifest(project):
    """One owner: a grid run's notebook writes epochs, adapter and metrics.json (finish_run); manifest.json is the
    runner's, from the first write to the last."""
    root, write_grid = project
    probe = """
import json, os
path = os.path.join(output_dir, "manifest.json")
before = (os.stat(path).st_mtime_ns, open(path).read())
"""
    after = """
with open(os.path.join(output_dir, "probe.json"), "w") as f:
    json.dump({"same": before == (os.stat(path).st_mtime_ns, open(path).read())}, f)
"""
    write_fake_notebook(root, PARAMS, probe + BODY + after, name="probe.ipynb")
    plan = load_plan(write_grid("""
        blocks:
          - notebook: notebooks/probe.ipynb
            matrix: {task: [sst2], seed: [1]}
        """))
    assert [o["status"] for o in run_plan(plan, log=lambda *_: None)] == ["ok"]
    run_dir = plan.runs[0].run_dir
    assert read_json(run_dir / "probe.json") == {"same": True}  # finish_run left the manifest alone
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["status"] == "ok" and manifest["notebook_status"] == "complete" and manifest["finished"]
    assert manifest["papermill_seconds"] > 0 and rundir.launched_by_runner(run_dir)


def test_a_runner_failure_after_the_start_closes_the_runs_record(project, monkeypatch):
    """The runner writes a grid run's manifest: when it fails itself after starting the run (a read error, a full
    disk), the record says failed, with the error, instead of 'running' until the next runner."""
    root, write_grid = project
    plan = load_plan(write_grid("blocks:\n  - matrix: {task: [sst2], seed: [1]}\n"))

    real = rundir.is_finished

    def unreadable_once_started(run_dir, expected_hash=None):  # the check after papermill, not the plan's
        if rundir.read_manifest(run_dir).get("status") == "running":
            raise OSError("simulated read error")
        return real(run_dir, expected_hash)
    monkeypatch.setattr(rundir, "is_finished", unreadable_once_started)
    outcomes = run_plan(plan, log=lambda *_: None)
    assert [o["status"] for o in outcomes] == ["failed"]
    manifest = read_json(plan.runs[0].run_dir / "manifest.json")
    assert manifest["status"] == "failed" and manifest["notebook_status"] == "error" and manifest["finished"]
    assert "simulated read error" in manifest["error"]["message"]
