"""The LoRA authors' released checkpoints (microsoft/LoRA examples/NLU, e.g. roberta_base_lora_mnli.bin) loaded
into our model. Their key names are ours, LoRA layers being loralib.Linear in both:

    official .bin (microsoft/LoRA)  roberta.encoder.layer.0.attention.self.query.lora_A
    ours                            roberta.encoder.layer.0.attention.self.query.lora_A
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import LoraNbError
from ..methods.lora import set_lora_alpha
from .state import check_lora_state, head_mismatch, load_state, lora_rank, split_lora_head

OFFICIAL_SUFFIXES = (".bin", ".pt", ".pth")  # torch.save files; ours are .safetensors


def is_official_file(path) -> bool:
    """A torch state-dict file (the authors' format), not our adapter file or run directory."""
    return Path(path).is_file() and Path(path).suffix in OFFICIAL_SUFFIXES


def read_official_checkpoint(path, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a microsoft/LoRA `.bin` file, under our names: a `module.` prefix (DDP) is dropped, and keys of
    a bare encoder (`encoder.`, `embeddings.`) get the model's prefix (`roberta.`, `deberta.`, `bert.`)."""
    path = Path(path)
    if not path.is_file():
        raise LoraNbError(f"No checkpoint file at {str(path)!r}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickles with code, truncated files, ...
        raise LoraNbError(f"{path}: not a readable torch state dict ({type(e).__name__}: {e}).") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LoraNbError(f"{path}: expected a flat state dict of tensors (name -> tensor).")
    prefix = getattr(model, "base_model_prefix", "") if model is not None else ""
    out = {}
    for key, tensor in state.items():
        key = key.removeprefix("module.")
        if prefix and key.split(".")[0] in ("encoder", "embeddings"):
            key = f"{prefix}.{key}"
        out[key] = tensor
    return out


def _num_labels(head: dict[str, torch.Tensor]) -> int | None:
    out = head.get("classifier.out_proj.weight", head.get("classifier.weight"))
    return None if out is None else out.shape[0]


def load_official_checkpoint(model: nn.Module, path, *, lora_alpha: float, include_head: bool = True) -> dict:
    """Load a LoRA checkpoint released by the paper's authors (microsoft/LoRA examples/NLU, e.g.
    roberta_base_lora_mnli.bin) into a model with LoRA injected at the same rank and targets.

    `lora_alpha` is required: the file holds A and B but not alpha, and the output is W x + (alpha / r) B A x.
    Their RoBERTa-base scripts used alpha 16 (r 8); DeBERTa XXL alpha 32 (r 16). Evaluating with another alpha
    rescales every update and silently ruins accuracy, so it is set here on every LoRA layer (alpha and scaling).

    The head (`classifier.*`, plus the pooler for DeBERTa) is loaded when `include_head` and its shapes match the
    model (same num_labels); otherwise it stays as it is. Returns a printable report."""
    source = str(path)
    lora, head = split_lora_head(read_official_checkpoint(path, model), source)
    check_lora_state(model, lora, source)
    reason = "not requested" if not include_head else "none in the file" if not head else head_mismatch(model, head)
    if include_head and head and reason:
        warnings.warn(f"{source}: classification head not loaded: {reason}.", stacklevel=2)
    head = head if reason is None else {}
    loaded = load_state(model, {**lora, **head}, source=source)
    set_lora_alpha(model, lora_alpha)
    r = lora_rank(lora)
    return {"source": source, "loaded": len(loaded), "lora_tensors": len(lora), "lora_modules": len(lora) // 2,
            "r": r, "lora_alpha": lora_alpha, "scaling": lora_alpha / r, "head_loaded": bool(head),
            "head": f"loaded, {len(head)} tensors, {_num_labels(head)} labels" if head else f"not loaded: {reason}"}


def init_from_official(model: nn.Module, path) -> list[str]:
    """MNLI initialisation from an official `.bin`: the LoRA matrices only (no head); alpha stays the run's own."""
    lora, _ = split_lora_head(read_official_checkpoint(path, model), str(path))
    check_lora_state(model, lora, str(path))
    return load_state(model, lora, source=str(path))
