"""Notebooks: committed stripped, with a kernelspec and one typed `parameters` cell matching RunConfig, and they run."""
import json

import papermill
import pytest

from lora_nb_utils.notebook_parameters import model_notebooks
from lora_nb_utils.config import PARAMETER_NAMES
from lora_nb_utils.runs.rundir import read_json
from lora_nb_utils.paths import repo_root

NOTEBOOKS = sorted((repo_root() / "notebooks").glob("*.ipynb"))
MODEL_NOTEBOOKS = model_notebooks()  # 00 (MiniLM on a CPU), 01-03 (the paper's models)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_stripped_with_kernelspec_and_one_parameters_cell(nb):
    data = json.loads(nb.read_text())
    assert data["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in data["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in data["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    for line in source.splitlines():
        if line and not line.startswith("#"):
            assert line.count("=") == 1, f"papermill skips lines with two '=': {line}"
            assert "#" in line, f"every parameter has a comment: {line}"
            assert ":" in line.split("=")[0], f"every parameter is typed: {line}"


def test_model_notebooks_expose_exactly_the_run_parameters_and_share_their_code():
    assert len(MODEL_NOTEBOOKS) == 4
    codes = []
    for nb in MODEL_NOTEBOOKS:
        params = papermill.inspect_notebook(str(nb))
        assert list(params) == PARAMETER_NAMES, nb.name
        cells = json.loads(nb.read_text())["cells"]
        codes.append(["".join(c["source"]) for c in cells if c["cell_type"] == "code"])
    assert all(code == codes[0] for code in codes), "the model notebooks differ in prose only"


@pytest.mark.parametrize("nb", MODEL_NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_smoke_run_on_real_minilm(nb, glue_dir, tmp_path):
    run_dir = tmp_path / "run"
    out = papermill.execute_notebook(
        str(nb), str(tmp_path / "out.ipynb"), progress_bar=False, kernel_name="python3",
        parameters={"glue_dir": glue_dir, "task": "mrpc", "max_train_samples": 32, "max_eval_samples": 32,
                    "output_dir": str(run_dir), "progress": "log"})
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["task"] == "mrpc" and metrics["model"] == "minilm" and metrics["best_epoch"] == 1
    assert 0.0 <= metrics["best"]["accuracy"] <= 1.0 and "f1" in metrics["best"]
    assert (run_dir / "epochs.csv").is_file() and (run_dir / "adapter.safetensors").is_file()
    outputs = [o for c in out.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)  # no widgets
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the curves figure rendered
