"""Sweep -> select -> confirm (grid.py, selection.py, runner.py) on a fast stand-in notebook whose held-out and test
scores disagree on purpose: selection must follow the held-out part and never the reported one."""
import inspect
import json
import math
import textwrap
from lora_nb_utils.paths import repo_root

import pytest

from lora_nb_utils import LoraNbError
from lora_nb_utils.runs import runner
from lora_nb_utils.cli import main
from lora_nb_utils.config import params_hash
from lora_nb_utils.runs.grid import load_plan, resolve_selections
from lora_nb_utils.runs.results import collect_results
from lora_nb_utils.runs.rundir import finish_run, read_json
from lora_nb_utils.runs.runner import run_plan
from lora_nb_utils.runs.selection import choose, read_selection

from tests.conftest import write_fake_notebook

PARAMS = '''model: str = "minilm"  # model
task: str = "rte"  # task
method: str = "lora"  # method
lora_r: int = 8  # rank
learning_rate: float = 5.0e-4  # lr
sora_lambda: float = 0.375  # L1 weight
seed: int = 0  # seed
split: str = "glue_dev"  # split
max_train_samples: int = 64  # rows
max_eval_samples: int = 64  # rows
epochs: int = 1  # epochs
batch_size: int = 16  # batch
max_seq_len: int = 128  # length
init_from: str = ""  # MNLI init
output_dir: str = "runs/x"  # run directory
progress: str = "auto"  # progress'''

NAMES = [line.split(":")[0] for line in PARAMS.splitlines()]


def fake_metrics(p: dict) -> dict:
    """Held-out score peaks at lr 1e-3; the test score grows with lr (it would pick the largest)."""
    heldout = 0.9 - 0.1 * abs(math.log10(p["learning_rate"]) + 3) + p["seed"] / 1000
    return {"status": "ok", "task": p["task"], "model": p["model"], "method": p["method"], "seed": p["seed"],
            "primary_metric": "accuracy", "best_epoch": 2, "epochs_run": 4, "best": {"accuracy": heldout},
            "test": {"accuracy": 0.5 + 50 * p["learning_rate"]}, "last": {},
            "parameters": {"total_trainable": 10, "lora": 4},
            "method_state": {"effective_params": int(1000 / p["sora_lambda"])}, "sizes": {"train": 5},
            "train_seconds": 0.1, "peak_memory_mb": 1.0, "params_hash": params_hash(p)}


BODY = f'''import math
from lora_nb_utils.config import params_hash
from lora_nb_utils.runs.rundir import finish_run

{inspect.getsource(fake_metrics)}
finish_run(output_dir, fake_metrics({{n: globals()[n] for n in {NAMES!r}}}))'''

SWEEP = """
    blocks:
      - params: {split: holdout, max_train_samples: 0, max_eval_samples: 0}
        matrix: {task: [rte], seed: [1, 2, 3]}
        sweep: {learning_rate: [5.0e-4, 1.0e-3, 4.0e-3]}
    """


@pytest.fixture
def project(tmp_path):
    write_fake_notebook(tmp_path, PARAMS, BODY)

    def write_grid(body: str) -> str:
        path = tmp_path / "grid.yaml"
        path.write_text("notebook: notebooks/fake.ipynb\noutput_root: out\n" + textwrap.dedent(body))
        return str(path)
    return tmp_path, write_grid


def fake_execute(calls):
    def execute(run, notebook, timeout):
        calls.append(run.name)
        finish_run(run.run_dir, fake_metrics(run.params))
        return {"name": run.name, "status": "ok", "seconds": 0.0, "error": None}
    return execute


def test_sweep_chooses_on_the_heldout_part_and_confirms_the_other_seeds(project):
    root, write_grid = project
    plan = load_plan(write_grid(SWEEP))
    assert [r.name for r in plan.runs] == [f"minilm/task=rte,method=lora,r=8,seed=1,lr={lr}"
                                           for lr in (0.0005, 0.001, 0.004)]
    assert all(r.stage == "sweep" for r in plan.runs) and len(plan.selections) == 1
    outcomes = run_plan(plan, log=lambda m: None)  # real papermill runs of the stand-in notebook
    assert [o["status"] for o in outcomes] == ["ok"] * 5
    assert [o["name"] for o in outcomes][3:] == [f"minilm/task=rte,method=lora,r=8,seed={s},lr=0.001"
                                                 for s in (2, 3)]
    chosen = read_selection(root / "out")["groups"][0]
    assert chosen["chosen"] == {"learning_rate": 0.001} and chosen["split"] == "holdout"
    assert [c["heldout_score"] for c in chosen["candidates"]] == pytest.approx([0.8709, 0.901, 0.8408], abs=1e-4)
    tests = {c["values"]["learning_rate"]: read_json(root / "out" / c["run"] / "metrics.json")["test"]["accuracy"]
             for c in chosen["candidates"]}
    assert max(tests, key=tests.get) == 0.004  # the reported part would have picked another value
    assert all("test" not in json.dumps(c) for c in chosen["candidates"])  # no reported score in the evidence
    assert len(collect_results(root / "out")) == 5


def test_a_kill_between_sweep_and_confirm_loses_nothing(project, monkeypatch):
    root, write_grid = project
    calls = []

    def killed_at_first_confirm(run, notebook, timeout):
        if run.stage == "confirm":
            raise KeyboardInterrupt  # the runner dies as the confirm stage starts
        return fake_execute(calls)(run, notebook, timeout)
    monkeypatch.setattr(runner, "_safe_execute", killed_at_first_confirm)
    with pytest.raises(KeyboardInterrupt):
        run_plan(load_plan(write_grid(SWEEP)), log=lambda m: None)
    assert len(calls) == 3
    assert read_selection(root / "out")["groups"][0]["chosen"] == {"learning_rate": 0.001}

    monkeypatch.setattr(runner, "_safe_execute", fake_execute(calls))
    run_plan(load_plan(write_grid(SWEEP)), log=lambda m: None)
    assert calls[3:] == [f"minilm/task=rte,method=lora,r=8,seed={s},lr=0.001" for s in (2, 3)]  # no sweep rerun
    assert run_plan(load_plan(write_grid(SWEEP)), log=lambda m: None) == []  # all finished, selection stable


def test_dry_run_shows_the_sweep_the_choice_and_the_confirm_runs(project, capsys):
    root, write_grid = project
    grid = write_grid(SWEEP)
    assert main(["run", grid, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 runs planned: 3 to run, 0 finished, 2 confirm runs after their selection" in out
    assert "waits for 3 of 3 sweep runs" in out
    plan = load_plan(grid)
    for run in plan.runs:
        finish_run(run.run_dir, fake_metrics(run.params))
    assert main(["run", grid, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "minilm/task=rte,method=lora,r=8 (seed 1): learning_rate=0.001" in out
    assert "learning_rate=0.001: 90.1 (best epoch 2 of 4)" in out
    assert "run   minilm/task=rte,method=lora,r=8,seed=2,lr=0.001" in out
    assert not (root / "out" / "selection.json").exists()  # a dry run writes nothing


def test_tolerance_prefers_the_smallest_adapter_within_it(project):
    _, write_grid = project
    plan = load_plan(write_grid("""
        blocks:
          - params: {split: sora, max_train_samples: 0, max_eval_samples: 0, method: sora}
            matrix: {seed: [1, 2]}
            sweep: {learning_rate: [1.0e-3, 2.0e-3], sora_lambda: [0.5, 2.0]}
            select: {tolerance: 3.5, prefer: fewest_params}
        """))
    assert len(plan.runs) == 4
    for run in plan.runs:
        finish_run(run.run_dir, fake_metrics(run.params))
    added = resolve_selections(plan)
    # held-out: lr 1e-3 0.901 (both lambdas), 2e-3 0.871; within 3.5 points all four; fewest params: lambda 2.0
    assert plan.selections[0].chosen == {"learning_rate": 0.001, "sora_lambda": 2.0}
    assert [r.params["seed"] for r in added] == [2] and added[0].params["sora_lambda"] == 2.0


def _ev(score, status="ok", params=100):
    return {"heldout_score": score, "status": status, "adapter_params": params}


def test_choose_best_score_ties_to_the_first_and_never_a_collapsed_run_when_another_scores():
    assert choose([_ev(0.7), _ev(0.8), _ev(0.8)])[0] == 1
    assert choose([_ev(0.9, "collapsed"), _ev(0.6)])[0] == 1
    assert choose([_ev(float("nan"), "nan_loss"), _ev(None, "nan_loss")]) == \
        (None, "no sweep run has a held-out score (all diverged); widen the sweep")
    index, note = choose([_ev(0.5, "collapsed"), _ev(0.6, "collapsed")])
    assert index == 1 and "collapsed" in note
    candidates = [_ev(0.80, params=50), _ev(0.805, params=80), _ev(0.79, params=10)]
    assert choose(candidates, tolerance=2.0, prefer="fewest_params")[0] == 2
    assert choose(candidates, tolerance=1.0, prefer="fewest_params")[0] == 0
    assert choose(candidates, tolerance=1.0)[0] == 1


@pytest.mark.parametrize("block,message", [
    ("params: {split: glue_dev, max_train_samples: 0, max_eval_samples: 0}\n    sweep: {learning_rate: [1.0e-3]}",
     "never on the reported set"),
    ("params: {split: holdout, max_train_samples: 0, max_eval_samples: 0}\n    sweep: {learning_rate: []}",
     "non-empty list"),
    ("params: {split: holdout, max_train_samples: 0, max_eval_samples: 0}\n    sweep: {lerning_rate: [1.0e-3]}",
     "lerning_rate"),
    ("params: {split: holdout, max_train_samples: 0, max_eval_samples: 0}\n    sweep: {learning_rate: [1.0e-3]}\n"
     "    select: {prefer: smallest}", "select takes"),
    ("params: {split: holdout, max_train_samples: 0, max_eval_samples: 0}\n    matrix: {learning_rate: [1.0e-3]}\n"
     "    sweep: {learning_rate: [1.0e-3]}", "not in the matrix"),
])
def test_bad_sweep_blocks_fail_naming_the_fix(project, block, message):
    _, write_grid = project
    with pytest.raises(LoraNbError, match=message):
        load_plan(write_grid("blocks:\n  - " + block + "\n"))


def test_the_cpu_v2_grid_sweeps_every_method_on_heldout_data():
    plan = load_plan(repo_root() / "params" / "grids" / "cpu_minilm_v2.yaml")
    assert {r.params["split"] for r in plan.runs} == {"holdout"}
    groups = {s.group: s for s in plan.selections}
    methods = {g.split("method=")[1].split(",")[0] for g in groups}
    family = {"rslora", "loraplus", "dora", "pissa", "vera"}
    assert methods == {"ft", "lora", "adalora", "sora"} | family
    assert all(sorted({p["seed"] for p in s.confirm_params}) == [2, 3] and s.seed == 1 for s in groups.values())
    assert all(s.swept[0] == "learning_rate" for s in groups.values())
    assert all(len(s.candidates) >= (2 if g.split("method=")[1].split(",")[0] in family else 3)
               for g, s in groups.items())  # the family sweeps two values (its budget), the others three or more
    assert {r.params["group_by_length"] for r in plan.runs} == {True}  # one pipeline for every method
    sora = [s for g, s in groups.items() if "method=sora" in g]
    assert all(s.swept == ["learning_rate", "sora_lambda"] and s.prefer == "fewest_params" for s in sora)
