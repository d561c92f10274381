"""Every run directory tells the truth (issue #12): the results table survives kills of the runner, a run directory
always describes the run that wrote its metrics, errors after a directory exists mark the run failed, grids that
do nothing or double up are reported, misspelled notebook parameters fail, `make test` sets itself up.

The runner tests use a stand-in notebook that imports nothing heavy (a kernel starts in about a second) and writes
its result the way rundir.finish_run does; the runner itself is real and is killed with SIGKILL."""
from __future__ import annotations

import json
import multiprocessing
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import time

import nbformat
import pandas as pd
import papermill  # noqa: F401  (imported before the runner processes fork, so they start at once)
import pytest

from lora_nb_utils import LoraNbError
from lora_nb_utils.runs import rundir
from lora_nb_utils.cli import main
from lora_nb_utils.config import RunConfig, config_from_notebook, injected_parameter_names
from lora_nb_utils.errors import LoraNbWarning
from lora_nb_utils.experiment import run_experiment
from lora_nb_utils.runs.grid import load_plan
from lora_nb_utils.runs.results import collect_results
from lora_nb_utils.runs.runner import recover_interrupted, run_plan

from tests.conftest import start_lora_nb
from tests.test_cli_bad_inputs import _tiny_model_folder, own_tokenization_cache  # noqa: F401  (an autouse fixture)
from lora_nb_utils.paths import repo_root

PARAMS = '''model: str = "minilm"  # model
task: str = "sst2"  # task
method: str = "lora"  # method
lora_r: int = 8  # rank
seed: int = 0  # seed
output_dir: str = "runs/x"  # run directory
progress: str = "auto"  # progress'''

# The stand-in notebook: "trains" for STANDIN_WORK seconds, logs a unique token, then writes the manifest status
# and metrics.json (carrying the token) as rundir.finish_run does, then "plots" for STANDIN_AFTER seconds.
STANDIN = '''import json, os, time, uuid
def atomic(path, obj):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp" + str(os.getpid()))
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
    os.replace(tmp, path)
manifest_path = os.path.join(output_dir, "manifest.json")
time.sleep(float(os.environ.get("STANDIN_WORK", "0")))
token = uuid.uuid4().hex
with open(os.environ["STANDIN_LOG"], "a") as log:
    log.write(f"{seed} {token}\\n")
    log.flush()
    os.fsync(log.fileno())
manifest = json.load(open(manifest_path))
atomic(manifest_path, {**manifest, "status": "ok"})
atomic(os.path.join(output_dir, "metrics.json"), {
    "status": "ok", "task": task, "model": model, "method": method, "lora_r": lora_r, "seed": seed,
    "primary_metric": "accuracy", "best_epoch": 1, "best": {"accuracy": 0.5 + seed / 100}, "last": {},
    "parameters": {"total_trainable": 10, "lora": 4}, "sizes": {"train": 5}, "train_seconds": 0.1,
    "peak_memory_mb": 1.0, "params_hash": manifest["params_hash"], "token": token})
if str(seed) in os.environ.get("STANDIN_AFTER_SEEDS", str(seed)).split(","):
    time.sleep(float(os.environ.get("STANDIN_AFTER", "0")))'''


@pytest.fixture
def project(tmp_path):
    """A folder laid out like the repository (notebooks/standin.ipynb) and a grid of `seeds` stand-in runs."""
    (tmp_path / "notebooks").mkdir()
    cell = nbformat.v4.new_code_cell(PARAMS)
    cell.metadata["tags"] = ["parameters"]
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell(STANDIN)], metadata=kernel)
    nbformat.write(nb, tmp_path / "notebooks" / "standin.ipynb")

    def grid(seeds) -> pathlib.Path:
        path = tmp_path / "grid.yaml"
        path.write_text(f"notebook: notebooks/standin.ipynb\noutput_root: out\n"
                        f"blocks:\n  - matrix: {{seed: {seeds}}}\n")
        return path
    return tmp_path, grid


def start_runner(grid, log_path, **env) -> multiprocessing.Process:
    """`lora-nb run GRID` in a forked process (already imported: it starts at once), in a process group of its own."""
    env = {"STANDIN_LOG": str(grid.parent / "writes.log"), "PYTHONUNBUFFERED": "1", **env}
    return start_lora_nb(["run", grid], log_path, env)


def kill_runner(proc) -> bool:
    """SIGKILL to the runner's process group; False when it had already finished."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
        killed = True
    except ProcessLookupError:
        killed = False
    proc.join()
    return killed and proc.exitcode == -signal.SIGKILL


def wait_for_orphan_kernels(root: pathlib.Path, timeout: float = 30) -> None:
    """Kernels start in sessions of their own and outlive a killed runner by up to a second (ipykernel's parent
    poller ends them): wait until no process works below root, so the state on disk is final."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = []
        for proc in pathlib.Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and str(root) in os.readlink(proc / "cwd"):
                    busy.append(proc.name)
            except OSError:
                continue
        if not busy:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes still working below {root}: {busy}")


def wait_for_anchor(anchor: str, out: pathlib.Path, runner_pid: int, timeout: float = 60) -> None:
    """Until the runner (process runner_pid) starts a run, or a run writes its metrics.json; 'session': at once."""
    def count(name):
        return len(list(out.glob(f"minilm/*/{name}")))
    metrics_before, deadline = count("metrics.json"), time.time() + timeout
    while time.time() < deadline:
        if anchor == "session" or (anchor == "metrics.json" and count("metrics.json") > metrics_before):
            return
        if anchor == "run start" and any(_read(m).get("pid") == runner_pid for m in out.glob("minilm/*/manifest.json")):
            return
        time.sleep(0.02)


def _read(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def tokens(out: pathlib.Path) -> dict:
    """seed -> the token of its metrics.json (None while unfinished)."""
    found = {}
    for run in sorted((out / "minilm").iterdir()) if (out / "minilm").is_dir() else []:
        seed = int(re.search(r"seed=(\d+)", run.name).group(1))
        found[seed] = rundir.read_json(run / "metrics.json")["token"] if (run / "metrics.json").is_file() else None
    return found


def logged(root: pathlib.Path) -> list[tuple[int, str]]:
    path = root / "writes.log"
    return [(int(s), t) for s, t in (line.split() for line in path.read_text().splitlines())] if path.is_file() else []


def temporaries(root: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in root.rglob(".*") if rundir.TEMPORARY.match(p.name)]


def test_kill_the_runner_at_random_moments_nothing_is_lost_or_done_twice(project):
    """A grid of 10 runs; the runner's process group gets SIGKILL at random moments 10 times, restarted each time.
    Each moment is random after a random anchor (the session's start, a run's start, a run's metrics.json), so
    the kills land in every phase: before a run, in a kernel's start, mid-run, between a run's metrics.json and the
    runner's books, in the books. A session finishes at most one run before its kill, so all 10 kill a working
    runner. Evidence for "finished exactly once": each run's metrics.json carries the token of the execution that
    wrote it; once a run is finished (seen while nothing runs, after a kill), its token never changes, and no later
    session executes it again (every execution logs its token before writing metrics.json)."""
    root, grid = project
    seeds = list(range(1, 11))
    grid = grid(seeds)
    out, log = root / "out", root / "runner.log"
    rng = random.Random(12)
    env = {"STANDIN_WORK": "0.5", "STANDIN_AFTER": "0.5"}  # a window between metrics.json and the runner's books
    kills, restarts, t0 = 0, 0, time.perf_counter()
    finished, anchors = {}, []  # seed -> token, once seen
    while kills < 10 and restarts < 30:
        before_session = len(logged(root))
        proc = start_runner(grid, log, **env)
        restarts += 1
        anchor = rng.choice(["session", "run start", "metrics.json"])
        anchors.append(anchor)
        wait_for_anchor(anchor, out, proc.pid)
        time.sleep(rng.uniform(0.1, 2.0) if anchor == "session" else rng.uniform(0.0, 0.7))
        kills += kill_runner(proc)
        wait_for_orphan_kernels(root)
        executed = {seed for seed, _ in logged(root)[before_session:]}
        assert not executed & set(finished), f"finished runs executed again: {executed & set(finished)}"
        now = tokens(out)
        assert all(now[s] == t for s, t in finished.items()), "a finished run's metrics.json was replaced"
        finished.update({s: t for s, t in now.items() if t is not None})
    assert kills == 10, f"only {kills} of {restarts} sessions were still working when killed"
    before_session = len(logged(root))
    proc = start_runner(grid, log, **env)
    proc.join(timeout=300)
    if proc.is_alive():
        kill_runner(proc)
    restarts += 1
    seconds = time.perf_counter() - t0
    assert proc.exitcode == 0, log.read_text()[-3000:]
    assert not {s for s, _ in logged(root)[before_session:]} & set(finished)
    final = tokens(out)
    assert sorted(final) == seeds and all(final.values())
    assert all(final[s] == t for s, t in finished.items())
    assert {t for _, t in logged(root)} >= set(final.values())
    table = pd.read_csv(out / "results.csv")
    assert len(table) == len(seeds) and table["run_dir"].is_unique and set(table["seed"]) == set(seeds)
    assert set(table["status"]) == {"ok"}
    assert temporaries(root) == [], "temporary files remain"
    for run in (out / "minilm").iterdir():
        manifest = rundir.read_json(run / "manifest.json")
        assert manifest["status"] == "ok" and manifest["notebook_status"] in ("complete", "interrupted")
        if manifest["notebook_status"] == "interrupted":
            assert manifest["papermill_seconds"] is None
    interrupted = sum(rundir.read_json(r / "manifest.json")["notebook_status"] == "interrupted"
                      for r in (out / "minilm").iterdir())
    print(f"\nkill test: {kills} kills ({', '.join(f'{anchors.count(a)} after {a}' for a in sorted(set(anchors)))}), "
          f"{restarts} runner starts, {len(logged(root))} executions for {len(seeds)} "
          f"runs, "
          f"{interrupted} finished run(s) recorded as interrupted after metrics.json, {seconds:.0f}s")


def test_a_kill_between_metrics_and_the_runners_books_is_recorded_and_the_table_rebuilt(project, capsys):
    """The issue's case: killed after the last run's metrics.json, the restart says "all finished, 0 to run" and
    results.csv must still get every row; deleted, it is rebuilt too. The killed run's partial notebook and missing
    papermill time are recorded as such."""
    root, grid = project
    grid = grid([1, 2])
    slow = root / "out/minilm/task=sst2,method=lora,r=8,seed=2"
    proc = start_runner(grid, root / "runner.log", STANDIN_AFTER="60", STANDIN_AFTER_SEEDS="2")
    deadline = time.time() + 120
    while not (slow / "metrics.json").is_file() and time.time() < deadline:
        time.sleep(0.1)
    assert kill_runner(proc)
    wait_for_orphan_kernels(root)
    assert rundir.read_json(slow / "manifest.json")["notebook_status"] == "executing"
    for attempt in ("restart", "results.csv deleted"):
        if attempt == "results.csv deleted":
            (root / "out" / "results.csv").unlink()
        assert main(["run", str(grid)]) == 0
        printed = capsys.readouterr().out
        assert "2 runs planned, 2 already finished, 0 to run" in printed
        table_path = pathlib.Path(re.search(r"results table: (\S+)", printed).group(1))
        table = pd.read_csv(table_path)
        assert sorted(table["seed"]) == [1, 2] and set(table["status"]) == {"ok"}
    manifest = rundir.read_json(slow / "manifest.json")
    assert manifest["status"] == "ok" and manifest["notebook_status"] == "interrupted"
    assert manifest["papermill_seconds"] is None and "partial" in manifest["note"]
    assert rundir.read_json(root / "out/minilm/task=sst2,method=lora,r=8,seed=1/manifest.json")[
        "notebook_status"] == "complete"


def test_a_run_killed_mid_way_reads_as_interrupted_then_failed_then_reruns(project, monkeypatch):
    root, grid = project
    grid = grid([1])
    run = root / "out/minilm/task=sst2,method=lora,r=8,seed=1"
    proc = start_runner(grid, root / "runner.log", STANDIN_WORK="60")
    deadline = time.time() + 120
    while not (run / "manifest.json").is_file() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert kill_runner(proc)
    wait_for_orphan_kernels(root)
    assert rundir.read_json(run / "manifest.json")["status"] == "running"  # on disk, as the kill left it
    row = collect_results(root / "out").iloc[0]
    assert row["status"] == "failed" and "interrupted" in row["error"]  # the table tells the truth at once
    plan = load_plan(grid)
    assert recover_interrupted(plan) == [plan.runs[0].name]
    manifest = rundir.read_json(run / "manifest.json")
    assert manifest["status"] == "failed" and manifest["error"]["type"] == "Interrupted"
    monkeypatch.setenv("STANDIN_LOG", str(root / "writes.log"))
    assert [o["status"] for o in run_plan(load_plan(grid), log=lambda *_: None)] == ["ok"]


# ---------------------------------------------------------------- the run directory describes its run

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, glue_dir):
    """Parameters of a tiny real run (random-weight model at test size, 16 rows, 1 epoch) and its folder."""
    ws = tmp_path_factory.mktemp("truth")
    tiny = _tiny_model_folder(ws / "tiny")

    def cfg(**kw):
        return RunConfig(**{**dict(model=str(tiny), tokenizer="minilm", weights="random", task="rte",
                                   glue_dir=glue_dir, max_train_samples=16, max_eval_samples=16, max_seq_len=32,
                                   progress="none", output_dir=str(ws / "run")), **kw})
    run_experiment(cfg(seed=1))
    return ws / "run", cfg


def test_training_into_another_runs_directory_is_refused_and_replace_starts_it_afresh(tiny_run):
    run, cfg = tiny_run
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(LoraNbError, match=r"holds another run \(seed 1 there, 2 here\).*--force"):
        run_experiment(cfg(seed=2))
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # untouched
    (run / "notebook.ipynb").write_text("{}")  # a runner's notebook of the old run
    run_experiment(cfg(seed=2), replace=True)
    manifest, metrics = rundir.read_json(run / "manifest.json"), rundir.read_json(run / "metrics.json")
    assert manifest["params"]["seed"] == metrics["seed"] == 2
    assert manifest["params_hash"] == metrics["params_hash"] == rundir.params_hash(cfg(seed=2).to_params())
    assert not (run / "notebook.ipynb").exists()  # the old run's files went with it
    row = collect_results(run.parent).iloc[0]
    assert row["seed"] == 2 and row["status"] in ("ok", "collapsed")
    run_experiment(cfg(seed=2))  # the same run again: started afresh, no refusal


def test_a_directory_the_runner_prepared_is_kept(tiny_run):
    run, cfg = tiny_run
    params = cfg(seed=4, output_dir=str(run.parent / "prepared")).to_params()
    rundir.start_run(run.parent / "prepared", params)
    rundir.update_manifest(run.parent / "prepared", run_name="x", notebook_status="executing")
    assert not rundir.needs_start(run.parent / "prepared", params)
    run_experiment(RunConfig(**params))
    assert rundir.read_json(run.parent / "prepared" / "manifest.json")["run_name"] == "x"


def test_the_real_notebook_keeps_the_directory_the_runner_prepared(tiny_run, tmp_path, glue_dir):
    """The runner writes the manifest, then the notebook trains into that directory: kept, not refused."""
    run, _ = tiny_run
    (tmp_path / "notebooks").mkdir()
    shutil.copy(repo_root() / "notebooks" / "01_roberta_base.ipynb", tmp_path / "notebooks")
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"notebook: notebooks/01_roberta_base.ipynb\noutput_root: out\nblocks:\n"
                    f"  - params: {{model: {run.parent / 'tiny'}, tokenizer: minilm, weights: random, task: rte, "
                    f"glue_dir: {glue_dir}, max_train_samples: 16, max_eval_samples: 16, max_seq_len: 32}}\n")
    outcome, = run_plan(load_plan(grid), log=lambda *_: None)
    assert outcome["status"] in ("ok", "collapsed"), outcome["error"]
    run_dir = load_plan(grid).runs[0].run_dir
    manifest, metrics = rundir.read_json(run_dir / "manifest.json"), rundir.read_json(run_dir / "metrics.json")
    assert manifest["run_name"] and manifest["notebook_status"] == "complete"
    assert manifest["params_hash"] == metrics["params_hash"] and manifest["status"] == metrics["status"]


@pytest.mark.parametrize("exc", [RuntimeError("boom: out of memory"), KeyboardInterrupt()])
def test_an_error_after_the_directory_exists_marks_the_run_failed(tiny_run, monkeypatch, exc):
    import lora_nb_utils.experiment as experiment
    run, cfg = tiny_run
    target = run.parent / f"fails_{type(exc).__name__}"

    def broken_train(*args, **kwargs):
        raise exc
    monkeypatch.setattr(experiment, "train", broken_train)
    with pytest.raises(type(exc)):
        run_experiment(cfg(seed=5, output_dir=str(target)))
    manifest = rundir.read_json(target / "manifest.json")
    assert manifest["status"] == "failed" and manifest["error"]["type"] == type(exc).__name__
    assert not (target / "metrics.json").exists()
    assert collect_results(target).iloc[0]["status"] == "failed"


def test_the_results_table_never_takes_a_manifest_at_its_word(tmp_path):
    """Rows for directories whose manifest alone would mislead: a dead process's 'running', an 'ok' without
    metrics.json, a metrics.json of other parameters, a truncated metrics.json."""
    params = RunConfig(seed=1).to_params()
    cases = {}
    for name in ("dead", "ok_without_metrics", "other_params", "truncated", "alive"):
        rundir.start_run(tmp_path / name, params)
        cases[name] = tmp_path / name
    rundir.update_manifest(cases["dead"], pid=2**22 + 7)  # above pid_max's default: no such process
    rundir.update_manifest(cases["ok_without_metrics"], status="ok")
    rundir.write_json(cases["other_params"] / "metrics.json", {"params_hash": "0" * 16, "status": "ok"})
    (cases["truncated"] / "metrics.json").write_text('{"status": "o')
    rows = collect_results(tmp_path).set_index("run")
    assert rows.loc["alive", "status"] == "running"  # this process
    for name, words in (("dead", "interrupted"), ("ok_without_metrics", "missing"),
                        ("other_params", "other parameters"), ("truncated", "truncated")):
        assert rows.loc[name, "status"] == "failed" and words in rows.loc[name, "error"], name
    assert not rundir.is_finished(cases["truncated"])  # so the runner reruns it


# ---------------------------------------------------------------- grids and notebook parameters

def test_a_run_declared_twice_is_reported_once_as_a_warning(tmp_path, capsys):
    (tmp_path / "notebooks").mkdir()
    shutil.copy(repo_root() / "notebooks" / "01_roberta_base.ipynb", tmp_path / "notebooks")
    grid = tmp_path / "twice.yaml"
    grid.write_text("notebook: notebooks/01_roberta_base.ipynb\nblocks:\n"
                    "  - params: {task: sst2, max_train_samples: 16, max_eval_samples: 16}\n"
                    "    matrix: {seed: [1, 2]}\n"
                    "  - params: {max_eval_samples: 16, task: sst2, max_train_samples: 16}\n"
                    "    matrix: {seed: [2]}\n")
    with pytest.warns(LoraNbWarning, match=r"twice.yaml: 1 run\(s\) declared again with identical parameters, each "
                                           r"run once: minilm/task=sst2,method=lora,r=8,seed=2 \(block 2, first in "
                                           r"block 1\)"):
        plan = load_plan(grid)
    assert len(plan.runs) == 2
    assert main(["run", str(grid), "--dry-run"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("lora-nb: warning: ") and "remove the repeated declaration" in err[0]


def test_injected_parameter_names_come_from_papermills_cell_only():
    history = ["", "# Parameters: papermill overrides these\nseed: int = 0  # seed",
               '# Parameters\nlerning_rate = 0.001\nseed = 3\n', "cfg = 1"]
    assert injected_parameter_names(history) == ["lerning_rate", "seed"]
    namespace = {name: value for name, value in RunConfig().to_params().items()}
    config_from_notebook({**namespace, "In": history[:2]})  # JupyterLab: nothing injected
    with pytest.raises(LoraNbError, match=r"papermill parameters.*unknown parameter 'lerning_rate'.*Did you mean "
                                          r"'learning_rate'"):
        config_from_notebook({**namespace, "lerning_rate": 0.001, "In": history})


# ---------------------------------------------------------------- the README's commands set themselves up

def test_make_test_installs_the_system_packages_it_needs_and_ci_is_only_make_test(tmp_path):
    repo = repo_root()
    ci = [line for line in (repo / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert ci == ["make test"]
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-get").write_text('#!/bin/sh\necho "apt-get $*"\n')
    (fake / "apt-get").chmod(0o755)
    for tool in ("sh", "id", "env"):  # a PATH without chromium and pdftoppm
        (fake / tool).symlink_to(shutil.which(tool))
    done = subprocess.run([make, "-s", "-C", str(repo), "system-packages", "SHELL=/bin/sh"], capture_output=True,
                          text=True, env={"PATH": str(fake)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "apt-get install -y -qq chromium poppler-utils" in done.stdout
    assert "test: .make/installed system-packages" in (repo / "Makefile").read_text()
