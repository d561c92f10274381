"""The committed reproductions under report/ stay finished: every run directory there is one its grid still plans,
with the same parameter hash, so `lora-nb run` of the grid does not rerun it (a change of a default, a parameter
or the hash that renamed runs would fail here, not silently turn evidence into "to run")."""
import pytest
import yaml

from lora_nb_utils.config import params_hash
from lora_nb_utils.paths import repo_root
from lora_nb_utils.runs import rundir
from lora_nb_utils.runs.grid import load_plan, resolve_selections

ROOT = repo_root()
GRIDS = sorted(g for g in (ROOT / "params" / "grids").glob("*.yaml")
               if str(yaml.safe_load(g.read_text()).get("output_root", "")).startswith("report/"))


def test_there_are_committed_reproductions():
    assert {g.stem for g in GRIDS} >= {"cpu_minilm", "cpu_minilm_methods", "cpu_minilm_v2"}


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: g.stem)
def test_every_finished_run_of_a_committed_grid_keeps_its_hash(grid):
    plan = load_plan(grid)
    resolve_selections(plan)  # the confirm runs of finished sweeps
    planned = {run.run_dir: run for run in plan.runs}
    finished = [p.parent for p in plan.output_root.glob("**/" + rundir.METRICS)]
    if grid.stem in ("cpu_minilm", "cpu_minilm_methods"):
        assert len(finished) >= 60
    mine = [d for d in finished if d in planned]
    assert mine or grid.stem == "cpu_minilm_v2" or grid.stem == "cpu_minilm_analysis"
    for run_dir in mine:
        metrics = rundir.read_json(run_dir / rundir.METRICS)
        manifest = rundir.read_json(run_dir / rundir.MANIFEST)
        assert params_hash(manifest["params"]) == metrics["params_hash"], run_dir
        now = planned[run_dir].params
        assert planned[run_dir].hash == metrics["params_hash"], (
            f"{run_dir}: the grid now plans other parameters for this run "
            f"({sorted(k for k in now if now[k] != manifest['params'].get(k))})")
