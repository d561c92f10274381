"""rsLoRA (Kalajdzievski 2023, rank-stabilised LoRA): LoRA with the update scaled by alpha / sqrt(r) instead of
alpha / r, so that the update's size stops shrinking as the rank grows (peft: LoraConfig(use_rslora=True)). On our
loralib layers: one class that changes the scaling, nothing else."""
from __future__ import annotations

import math

import loralib

from . import register_method
from .lora import adapter_and_head, check_rank, inject_lora


class RsLoraLinear(loralib.Linear):
    """loralib.Linear with scaling alpha / sqrt(r)."""
    rank_stabilized = True  # lora.lora_scaling reads it when alpha is set again (checkpoint and PEFT loading)

    def __init__(self, in_features: int, out_features: int, r: int = 0, lora_alpha: int = 1, **kwargs):
        super().__init__(in_features, out_features, r=r, lora_alpha=lora_alpha, **kwargs)
        if r > 0:
            self.scaling = lora_alpha / math.sqrt(r)


def add_rslora(cfg, model):
    inject_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets, layer_cls=RsLoraLinear)
    return model


register_method(name="rslora", title="rsLoRA", changes_model=add_rslora, trains=adapter_and_head,
                parameters=("lora_r", "lora_alpha", "lora_targets"), rank_parameters=("lora_r",),
                validate=check_rank, exports_to_peft=True,
                paper_claim="rsLoRA beats LoRA at the same rank (rsLoRA paper, which shows it at large ranks)")
