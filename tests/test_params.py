"""Every params file against the project's copy of the paper's hyper-parameters (Appendix D)."""
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lora_nb_utils.config import RunConfig, check_params
from lora_nb_utils.runs.grid import load_plan
from lora_nb_utils.paper import load_reference
from lora_nb_utils.paths import repo_root

ROOT = repo_root()
HPARAMS = load_reference("lora_paper_hparams")
CELLS = [(r.model, r.task) for r in HPARAMS.itertuples()]


def _load(path: Path) -> dict:
    params = yaml.safe_load(path.read_text())
    check_params(params, str(path))  # known names, right types (floats written as floats)
    return params


def test_one_params_file_per_table2_cell():
    files = {(p.parent.name, p.stem) for m in ("roberta-base", "roberta-large", "deberta-v2-xxlarge")
             for p in (ROOT / "params" / m).glob("*.yaml")}
    assert files == set(CELLS) and len(files) == 24


@pytest.mark.parametrize("model,task", CELLS)
def test_params_file_matches_appendix_d(model, task):
    ref = HPARAMS[(HPARAMS.model == model) & (HPARAMS.task == task)].iloc[0]
    p = _load(ROOT / "params" / model / f"{task}.yaml")
    assert (p["model"], p["task"], p["method"]) == (model, task, "lora")
    assert p["batch_size"] == ref.batch_size and p["epochs"] == ref.epochs
    assert p["learning_rate"] == pytest.approx(float(ref.learning_rate))
    assert p["lora_r"] == ref.lora_r and p["lora_alpha"] == ref.lora_alpha
    assert p["lora_targets"] == ref.lora_targets and p["max_seq_len"] == ref.max_seq_len
    assert p["warmup_ratio"] == pytest.approx(ref.warmup_ratio)
    assert p["weight_decay"] == pytest.approx(0.0 if pd.isna(ref.weight_decay) else ref.weight_decay)
    assert p.get("cls_dropout", None) == (None if pd.isna(ref.cls_dropout) else pytest.approx(ref.cls_dropout))
    assert (p["init_from"] == "mnli") == bool(ref.init_from_mnli)
    RunConfig.from_params(p)


@pytest.mark.parametrize("model,task", CELLS)
def test_official_variant_differs_only_where_the_scripts_did(model, task):
    paper = _load(ROOT / "params" / model / f"{task}.yaml")
    official = _load(ROOT / "params" / "official" / model / f"{task}.yaml")
    changed = {k for k in set(paper) | set(official) if paper.get(k) != official.get(k)}
    if model == "roberta-base":
        assert changed == {"lora_alpha", "weight_decay"} and official["lora_alpha"] == 16.0
    elif model == "deberta-v2-xxlarge":
        assert {"lora_r", "lora_alpha", "precision"} <= changed and official["lora_r"] == 16
    else:
        assert "weight_decay" in changed and official["weight_decay"] == 0.1


@pytest.mark.parametrize("grid", sorted((ROOT / "params" / "grids").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_grid_expands_and_validates(grid):
    plan = load_plan(grid)
    assert plan.runs and len({r.run_dir for r in plan.runs}) == len(plan.runs)


def test_table2_grid_is_3_models_x_8_tasks_x_5_seeds_with_mnli_first():
    plan = load_plan(ROOT / "params" / "grids" / "table2.yaml")
    assert len(plan.runs) == 120
    position = {r.name: i for i, r in enumerate(plan.runs)}
    dependent = [r for r in plan.runs if r.depends_on]
    assert len(dependent) == 3 * 3 * 5  # mrpc, rte, stsb for each model and seed
    assert all(position[r.depends_on] < position[r.name] for r in dependent)


def test_a_grid_must_state_how_much_data_it_uses(tmp_path):
    import shutil
    from lora_nb_utils import LoraNbError
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "01_roberta_base.ipynb", tmp_path / "notebooks")
    grid = tmp_path / "g.yaml"
    grid.write_text("notebook: notebooks/01_roberta_base.ipynb\nblocks:\n  - params: {max_eval_samples: 0}\n"
                    "    matrix: {task: [rte]}\n")
    with pytest.raises(LoraNbError, match=r"state max_train_samples in the grid or its params file \(0 = the whole split\)"):
        load_plan(grid)
    grid.write_text(grid.read_text().replace("{max_eval_samples: 0}", "{max_eval_samples: 0, max_train_samples: 0}"))
    assert load_plan(grid).runs[0].params["max_train_samples"] == 0
