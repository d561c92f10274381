"""Where tensors meet a model: the name and shape checks every adapter format loads through (ours, the LoRA
authors' `.bin`, PEFT), and the copy into the model's parameters."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LoraNbError
from ..methods.lora import is_head_parameter, is_lora_parameter, require_lora


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


def lora_rank(lora: dict[str, torch.Tensor]) -> int:
    """The rank of a state's LoRA matrices (the rows of its first lora_A); 0 when it has none."""
    return next((t.shape[0] for k, t in lora.items() if k.endswith("lora_A")), 0)


def split_lora_head(state: dict[str, torch.Tensor], source: str) -> tuple[dict, dict]:
    """(LoRA tensors, head tensors); anything else is an error."""
    lora, head = {}, {}
    for key, tensor in state.items():
        if is_lora_parameter(key):
            lora[key] = tensor
        elif is_head_parameter(key):
            head[key] = tensor
        else:
            raise LoraNbError(f"{source}: key {key!r} is neither a LoRA matrix nor the classification head; only "
                              "LoRA adapters can be loaded this way.")
    if not lora:
        raise LoraNbError(f"{source}: holds no LoRA matrices.")
    return lora, head


def check_lora_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Every LoRA tensor of `state` has a parameter of the same shape, and every LoRA layer of the model is covered."""
    modules = require_lora(model, source, lora_rank(state))
    check_state(model, state, source)
    for name in modules:
        for part in ("lora_A", "lora_B"):
            if f"{name}.{part}" not in state:
                raise LoraNbError(f"{source}: the model has LoRA at {name!r} but the file has no {name}.{part} "
                                  "(LoRA injected on other targets, or more layers than the checkpoint?).")


def head_mismatch(model: nn.Module, head: dict[str, torch.Tensor]) -> str | None:
    """Why this head cannot be loaded into the model, or None when it can."""
    params = dict(model.named_parameters())
    for key, tensor in head.items():
        if key not in params:
            return f"{key!r} is not a parameter of this model"
        if tuple(params[key].shape) != tuple(tensor.shape):
            return (f"shape {tuple(tensor.shape)} at {key!r} vs model {tuple(params[key].shape)} "
                    f"(model num_labels={getattr(model.config, 'num_labels', '?')})")
    return None
