"""models.py: the meta-device skeleton, the one way the package builds a model's architecture without weights."""
import re
from pathlib import Path

import pytest

import lora_nb_utils
from lora_nb_utils import LoraNbError, RunConfig, count_parameters_for, get_task
from lora_nb_utils.methods.lora import count_parameters
from lora_nb_utils.models import load_config, load_model, skeleton

from tests.conftest import TINY

PACKAGE = Path(lora_nb_utils.__file__).parent


def test_skeleton_has_the_models_names_and_shapes_and_no_storage():
    task = get_task("mnli")
    meta = skeleton("roberta-base", task, **TINY)
    real = load_model("roberta-base", task, weights="random", **TINY)
    assert {n: tuple(p.shape) for n, p in meta.named_parameters()} == \
        {n: tuple(p.shape) for n, p in real.named_parameters()}
    assert {p.device.type for p in meta.parameters()} == {"meta"}
    assert meta.config.num_labels == 3


def test_skeleton_from_a_config_copies_it():
    config = load_config("deberta-v3-base", get_task("stsb"), **TINY)
    meta = skeleton(config)
    meta.config.num_labels = 7
    assert config.num_labels == 1 and meta.classifier.out_features == 1
    with pytest.raises(LoraNbError, match="needs the task"):
        skeleton("roberta-base")


def test_count_parameters_for_counts_the_skeleton_with_the_method():
    counts = count_parameters_for(RunConfig(model="roberta-base", method="lora", lora_r=8, task="sst2"))
    assert counts["lora"] == 294_912  # the paper's 0.3M for RoBERTa-base r=8 on query and value
    assert counts["base"] == count_parameters(skeleton("roberta-base", get_task("sst2")))["total"]


def test_the_skeleton_is_built_in_models_py_only():
    """Counts, PEFT export and the cost model all call models.skeleton: no other module builds on the meta device."""
    pattern = re.compile(r"torch\.device\(\s*['\"]meta['\"]\s*\)|init_empty_weights|\.from_config\(")
    places = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text()))
    assert places == ["models.py"]
    callers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                     if re.search(r"\bskeleton\(", p.read_text()) and p.name != "models.py")
    assert {"adapters/peft_format.py", "bench/costmodel.py", "experiment.py"} <= set(callers)
