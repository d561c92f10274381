"""Our adapter format: the trainable state (LoRA + head) as a small safetensors file with JSON metadata, and the paper's
MNLI initialisation from it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ..errors import LoraNbError
from ..methods.lora import is_head_parameter, is_lora_parameter
from .state import load_state

ADAPTER_FILE = "adapter.safetensors"


def save_trainable(model: nn.Module, path, metadata: dict | None = None) -> Path:
    """Write the parameters that require grad (LoRA + head, or all for 'ft') and JSON metadata, atomically."""
    path = Path(path)
    tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")  # rundir.TEMPORARY: removed if the writer is killed
    save_file(tensors, str(tmp), metadata={"lora_nb": json.dumps(metadata or {})})
    os.replace(tmp, path)
    return path


def resolve_adapter(path) -> Path:
    """An adapter file, or a run directory that holds one."""
    p = Path(path)
    if p.is_dir():
        p = p / ADAPTER_FILE
    if not p.is_file():
        raise LoraNbError(f"No adapter file at {path!r}: give a {ADAPTER_FILE} file or a finished run directory "
                          "(the MNLI run of the same model and seed, for MNLI initialisation).")
    return p


def _unreadable(path, exc: Exception) -> LoraNbError:
    return LoraNbError(f"{path}: not a readable safetensors file, truncated or corrupt ({exc}). Fix: rerun the run "
                       "that wrote it, or copy the file again.")


def read_adapter_metadata(path) -> dict:
    """The metadata saved with an adapter (model, task, r, alpha, targets, ...)."""
    p = resolve_adapter(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("lora_nb", "{}"))
    except (SafetensorError, ValueError) as e:
        raise _unreadable(p, e) from None


def read_tensors(path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; a truncated or corrupt file fails naming it."""
    try:
        return load_file(str(path))
    except (SafetensorError, ValueError) as e:
        raise _unreadable(path, e) from None


def load_trainable(model: nn.Module, path) -> list[str]:
    """Load a whole saved trainable state (LoRA + head) into a model with the same LoRA layout."""
    p = resolve_adapter(path)
    return load_state(model, read_tensors(p), source=str(p))


def init_from_adapter(model: nn.Module, path) -> list[str]:
    """The paper's MNLI initialisation from our adapter (file or run directory): copy only the LoRA matrices (and the
    pooler, where there is one); the task's classification head stays freshly initialised."""
    p = resolve_adapter(path)
    state = read_tensors(p)
    keep = {k: v for k, v in state.items()
            if is_lora_parameter(k) or (is_head_parameter(k) and "pooler" in k)}
    if not any(is_lora_parameter(k) for k in keep):
        raise LoraNbError(f"{p}: holds no LoRA matrices, so it cannot initialise a LoRA run.")
    return load_state(model, keep, source=str(p))
