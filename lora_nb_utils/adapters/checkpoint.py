"""Save and load the trainable state (LoRA + head) as a small safetensors file, and the paper's MNLI initialisation."""
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


def check_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Every tensor of `state` names a parameter of the model with the same shape; else a LoraNbError naming the
    first mismatching key and its likely cause (another LoRA rank, another model size or family)."""
    params = dict(model.named_parameters())
    for key, tensor in state.items():
        if key not in params:
            raise LoraNbError(f"{source}: key {key!r} has no parameter in this model (a different model family or "
                              "size, missing layers, LoRA on other modules, or another method?).")
        if tuple(params[key].shape) != tuple(tensor.shape):
            hint = "a different model size or head"
            if is_lora_parameter(key):
                dim = 0 if key.endswith("lora_A") else -1
                r_file, r_model = tensor.shape[dim], params[key].shape[dim]
                hint = (f"file r={r_file}, model r={r_model}: inject LoRA with r={r_file}" if r_file != r_model else
                        f"same r={r_file}, other layer widths: a different model size, e.g. base vs large")
            raise LoraNbError(f"{source}: shape mismatch at {key!r}: file {tuple(tensor.shape)} vs model "
                              f"{tuple(params[key].shape)} ({hint}).")


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> list[str]:
    """Copy tensors into the model's parameters by name, checking names and shapes first; returns the names loaded."""
    check_state(model, state, source)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, tensor in state.items():
            params[key].copy_(tensor.to(params[key].dtype))
    return list(state)


def load_trainable(model: nn.Module, path) -> list[str]:
    """Load a whole saved trainable state (LoRA + head) into a model with the same LoRA layout."""
    p = resolve_adapter(path)
    return load_state(model, read_tensors(p), source=str(p))


def init_from_mnli(model: nn.Module, path) -> list[str]:
    """The paper's MNLI initialisation: copy only the LoRA matrices (and the pooler, where there is one) from an
    MNLI-trained adapter; the task's classification head stays freshly initialised. The LoRA authors' released
    `.bin` files (microsoft/LoRA) work too: their LoRA matrices only (see interop.load_official_checkpoint)."""
    if Path(path).is_file() and Path(path).suffix in (".bin", ".pt", ".pth"):
        from .interop import init_from_official
        return init_from_official(model, path)
    p = resolve_adapter(path)
    state = read_tensors(p)
    keep = {k: v for k, v in state.items()
            if is_lora_parameter(k) or (is_head_parameter(k) and "pooler" in k)}
    if not any(is_lora_parameter(k) for k in keep):
        raise LoraNbError(f"{p}: holds no LoRA matrices, so it cannot initialise a LoRA run.")
    return load_state(model, keep, source=str(p))
