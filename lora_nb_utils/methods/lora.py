"""Where LoRA is injected: swap chosen nn.Linear modules for loralib.Linear, freeze the rest, count, merge."""
from __future__ import annotations

import math
import re
from contextlib import contextmanager

import loralib
import torch
from torch import nn

from ..errors import LoraNbError
from . import register_method

# Target names -> module-name patterns (BERT/RoBERTa names first, DeBERTa-v2/v3 names second).
TARGET_PATTERNS: dict[str, tuple[str, ...]] = {
    "query": (r"attention\.self\.query", r"attention\.self\.query_proj"),
    "key": (r"attention\.self\.key", r"attention\.self\.key_proj"),
    "value": (r"attention\.self\.value", r"attention\.self\.value_proj"),
    "attn_out": (r"attention\.output\.dense",),
    "ffn_in": (r"intermediate\.dense",),
    "ffn_out": (r"layer\.\d+\.output\.dense",),
}
DEFAULT_TARGETS = ("query", "value")


def parse_targets(targets) -> tuple[str, ...]:
    """'query,value' or ['query', 'value'] or 'all' -> a validated tuple of target names."""
    names = [t.strip() for t in (targets.split(",") if isinstance(targets, str) else targets) if t.strip()]
    if names == ["all"]:
        return tuple(TARGET_PATTERNS)
    unknown = [n for n in names if n not in TARGET_PATTERNS]
    if unknown or not names:
        raise LoraNbError(f"Unknown LoRA target(s) {unknown or names!r}. Choose from: {', '.join(TARGET_PATTERNS)}, "
                          "or 'all'.")
    return tuple(names)


def find_target_modules(model: nn.Module, targets=DEFAULT_TARGETS) -> list[str]:
    """Names of the nn.Linear modules that the target names select."""
    patterns = [p for t in parse_targets(targets) for p in TARGET_PATTERNS[t]]
    found = [name for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and any(re.search(rf"(^|\.){p}$", name) for p in patterns)]
    if not found:
        raise LoraNbError(f"No module of this {type(model).__name__} matches LoRA targets {targets!r}.")
    return found


def inject_lora(model: nn.Module, r: int = 8, alpha: float = 16, dropout: float = 0.0,
                targets=DEFAULT_TARGETS, layer_cls=loralib.Linear) -> list[str]:
    """Replace the target nn.Linear modules by loralib.Linear (same weight and bias objects); returns their names.
    `layer_cls`: a loralib.Linear subclass with the same constructor (SoRA's gated layer, sora.py)."""
    if r < 1:
        raise LoraNbError(f"lora_r must be a positive integer, not {r!r}.")
    names = find_target_modules(model, targets)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        old: nn.Linear = getattr(parent, child)
        # merge_weights=False: loralib would otherwise add/subtract B A on every eval()/train() switch, which
        # drifts the frozen W by rounding; evaluation merges through `lora_merged` instead.
        new = layer_cls(old.in_features, old.out_features, r=r, lora_alpha=alpha, lora_dropout=dropout,
                        merge_weights=False, bias=old.bias is not None, device=old.weight.device,
                        dtype=old.weight.dtype)
        new.weight, new.bias = old.weight, old.bias  # keep the pretrained tensors, no copy
        new.weight.requires_grad = False
        new.train(old.training)
        setattr(parent, child, new)
    return names


def is_head_parameter(name: str) -> bool:
    """Classification head: `classifier.*`, plus the pooler where the classifier reads it (BERT, DeBERTa).
    Inside a peft tuner (AdaLoRA) the names start with `model.`."""
    name = name[len("model."):] if name.startswith("model.") else name
    return name.startswith("classifier.") or name.startswith("pooler.") or ".pooler." in name


def is_lora_parameter(name: str) -> bool:
    return "lora_" in name


ADAPTER_NAME_PARTS = ("lora_", "vera_lambda_")  # LoRA-style matrices, gates and magnitudes; VeRA's scaling vectors


def is_adapter_parameter(name: str) -> bool:
    """A parameter an adapter method adds beside the base model (what `count_parameters` counts as its adapter)."""
    return any(part in name for part in ADAPTER_NAME_PARTS)


def lora_modules(model: nn.Module) -> dict[str, loralib.Linear]:
    """The model's LoRA layers by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, loralib.Linear) and m.r > 0}


def require_lora(model: nn.Module, source: str, r: int = 8) -> dict[str, loralib.Linear]:
    """The model's LoRA layers; none fails naming the fix (inject first, with the rank `r` of what is loaded)."""
    modules = lora_modules(model)
    if not modules:
        raise LoraNbError(f"{source}: this {type(model).__name__} has no LoRA layers. Inject them first with the "
                          f"checkpoint's rank and targets, e.g. inject_lora(model, r={r}, targets='query,value').")
    return modules


def lora_scaling(m: loralib.Linear, lora_alpha: float) -> float:
    """The factor of the layer's update: alpha / r (loralib), alpha / sqrt(r) for a rank-stabilised layer (rsLoRA)."""
    return lora_alpha / (math.sqrt(m.r) if getattr(m, "rank_stabilized", False) else m.r)


def set_lora_alpha(model: nn.Module, lora_alpha: float) -> None:
    """Set alpha on every LoRA layer, and the scaling derived from it (lora_scaling)."""
    for m in lora_modules(model).values():
        m.lora_alpha = lora_alpha
        m.scaling = lora_scaling(m, lora_alpha)


def mark_trainable(model: nn.Module, method: str) -> None:
    """'ft': everything trains. 'lora': exactly the LoRA matrices and the classification head train."""
    if method == "ft":
        for p in model.parameters():
            p.requires_grad = True
        return
    for name, p in model.named_parameters():
        p.requires_grad = adapter_and_head(name)


def adapter_and_head(name: str) -> bool:
    """What trains beside a frozen model (every adapter method): the adapter's parameters and the classification
    head."""
    return is_adapter_parameter(name) or is_head_parameter(name)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts: lora (the adapter's parameters, is_adapter_parameter), head, total_trainable, base (the model
    without the adapter) and total."""
    lora = head = trainable = total = 0
    for name, p in model.named_parameters():
        n = p.numel()
        total += n
        lora += n if is_adapter_parameter(name) else 0
        head += n if is_head_parameter(name) else 0
        trainable += n if p.requires_grad else 0
    return {"lora": lora, "head": head, "total_trainable": trainable, "base": total - lora, "total": total}


def lora_delta(m: loralib.Linear) -> torch.Tensor:
    """The layer's update s * B A (a layer may define its own `delta_weight`, e.g. SoRA's gated B diag(g) A)."""
    return m.delta_weight() if hasattr(m, "delta_weight") else (m.lora_B @ m.lora_A) * m.scaling


@contextmanager
@torch.no_grad()
def lora_merged(model: nn.Module):
    """Inside the block every LoRA layer runs merged (W + s * B A: base-model cost); W is restored bit-exactly."""
    saved = []
    for m in model.modules():
        if isinstance(m, loralib.Linear) and m.r > 0 and not m.merged:
            saved.append((m, m.weight.detach().clone()))
            m.weight.data += lora_delta(m)
            m.merged = True
    try:
        yield model
    finally:
        for m, weight in saved:
            m.weight.data.copy_(weight)
            m.merged = False


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its weight (W + s * B A) and put back plain nn.Linear modules, in place."""
    for name, m in list(model.named_modules()):
        if not isinstance(m, loralib.Linear):
            continue
        weight = m.weight.detach().clone()
        if m.r > 0 and not m.merged:
            weight += lora_delta(m)
        plain = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None,
                          device=weight.device, dtype=weight.dtype)
        plain.weight.data.copy_(weight)
        if m.bias is not None:
            plain.bias.data.copy_(m.bias)
        plain.train(m.training)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, plain)
    return model


def add_lora(cfg, model: nn.Module) -> nn.Module:
    inject_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    return model


def check_rank(cfg) -> None:
    if cfg.lora_r < 1:
        raise LoraNbError(f"lora_r must be >= 1, not {cfg.lora_r!r}.")


register_method(name="lora", title="LoRA", changes_model=add_lora, trains=adapter_and_head,
                parameters=("lora_r", "lora_alpha", "lora_targets"), rank_parameters=("lora_r",),
                validate=check_rank, accepts_init_from=True, exports_to_peft=True)
