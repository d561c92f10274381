"""DoRA (Liu et al. 2024, weight-decomposed LoRA): W' = m * (W + s B A) / ||W + s B A||, the norm per output row; the
magnitude vector m (one entry per output feature, initialised to ||W||) trains with A and B. Through peft:
LoraConfig(use_dora=True)."""
from __future__ import annotations

from . import register_method
from .lora import adapter_and_head, check_rank
from .peft_tuner import peft_lora


def add_dora(cfg, model):
    return peft_lora(model, cfg, use_dora=True)


register_method(name="dora", title="DoRA", changes_model=add_dora, trains=adapter_and_head,
                parameters=("lora_r", "lora_alpha", "lora_targets"), rank_parameters=("lora_r",), validate=check_rank,
                exports_to_peft=True,
                paper_claim="DoRA beats LoRA at the same rank (DoRA paper, on commonsense reasoning and "
                            "vision-language tasks)")
