"""Where adapter weights go in and out of a model, one module per format:

checkpoint.py   ours: adapter.safetensors (LoRA + head, with metadata) in a run directory
official.py     the LoRA authors' released `.bin` checkpoints (microsoft/LoRA), loaded into our model
peft_format.py  PEFT adapter folders, out (a model or a run directory) and in
state.py        the name and shape checks all three load through

`init_from_mnli` (the paper's MNLI initialisation) takes either of the files it can start from; the formats never
import each other or this package, so the dependencies run one way: state <- formats <- here.
"""
from __future__ import annotations

from torch import nn

from .checkpoint import (ADAPTER_FILE, init_from_adapter, load_trainable, read_adapter_metadata, read_tensors,
                         resolve_adapter, save_trainable)
from .official import init_from_official, is_official_file, load_official_checkpoint, read_official_checkpoint
from .peft_format import export_peft, export_run, import_peft, peft_config_for, read_peft_adapter
from .state import check_state, load_state


def init_from_mnli(model: nn.Module, path) -> list[str]:
    """The paper's MNLI initialisation: copy only the LoRA matrices (and the pooler, where there is one) from an
    MNLI-trained adapter, a file or its run directory; the task's classification head stays freshly initialised.
    The LoRA authors' released `.bin` files (microsoft/LoRA) work too: their LoRA matrices only."""
    if is_official_file(path):
        return init_from_official(model, path)
    return init_from_adapter(model, path)


__all__ = ["ADAPTER_FILE", "check_state", "export_peft", "export_run", "import_peft", "init_from_adapter",
           "init_from_mnli", "init_from_official", "is_official_file", "load_official_checkpoint", "load_state",
           "load_trainable", "peft_config_for", "read_adapter_metadata", "read_official_checkpoint",
           "read_peft_adapter", "read_tensors", "resolve_adapter", "save_trainable"]
