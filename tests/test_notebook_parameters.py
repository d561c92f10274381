"""One set of defaults: the model notebooks' `parameters` cell is RunConfig's, written by notebook_parameters.py,
with only params/smoke.yaml's values (the "Run All" smoke run) in their place; grids start from RunConfig."""
import json
import shutil

import papermill
import pytest
import yaml

from lora_nb_utils.config import RUN_DEFAULTS, RunConfig
from lora_nb_utils.notebook_parameters import (SMOKE_FILE, model_notebooks, parameters_cell, parameters_cell_of,
                                               smoke_values, write_parameters_cells)
from lora_nb_utils.paths import repo_root

NOTEBOOKS = model_notebooks()


def test_the_model_notebooks_are_found():
    assert [p.name for p in NOTEBOOKS] == ["00_minilm_cpu.ipynb", "01_roberta_base.ipynb", "02_roberta_large.ipynb",
                                           "03_deberta_xxl.ipynb"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_cell_is_exactly_what_the_generator_writes(notebook):
    assert "".join(parameters_cell_of(notebook)["source"]) == parameters_cell(smoke_values()), (
        f"{notebook.name}: its parameters cell differs from RunConfig; run `make notebook-parameters`")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_with_runconfigs_type_and_value(notebook):
    """Names, types and values: RunConfig's defaults, except the smoke file's values."""
    seen = papermill.inspect_notebook(str(notebook))
    assert list(seen) == list(RUN_DEFAULTS)  # none lost to papermill's parser (it stops at '=' in a comment)
    expected = {**RUN_DEFAULTS, **smoke_values()}
    for name, spec in seen.items():
        value = yaml.safe_load(spec["default"])
        assert value == expected[name] and type(value) is type(expected[name]), name
        assert spec["inferred_type_name"] == RunConfig.__dataclass_fields__[name].type, name
        assert spec["help"], f"{name}: no help text for papermill --help-notebook"


def test_the_smoke_file_changes_only_how_much_data_and_where():
    """Run All is the same method and recipe as a real run, on less data."""
    assert set(smoke_values()) <= {"task", "max_train_samples", "max_eval_samples", "output_dir"}
    assert RunConfig.from_params({**RUN_DEFAULTS, **smoke_values()}).max_train_samples == 64


def test_a_changed_default_reaches_every_notebook_through_the_generator(tmp_path, monkeypatch):
    (tmp_path / "params").mkdir()
    shutil.copy(repo_root() / SMOKE_FILE, tmp_path / SMOKE_FILE)
    shutil.copytree(repo_root() / "notebooks", tmp_path / "notebooks")
    assert write_parameters_cells(tmp_path) == []  # nothing to do: the committed cells are current
    monkeypatch.setitem(RUN_DEFAULTS, "learning_rate", 3.0e-4)
    written = write_parameters_cells(tmp_path)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    for path in written:
        assert papermill.inspect_notebook(str(path))["learning_rate"]["default"] == "3.0e-4"
        assert json.loads(path.read_text())["metadata"]["kernelspec"]["name"] == "python3"
