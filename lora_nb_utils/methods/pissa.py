"""PiSSA (Meng et al. 2024): LoRA initialised from the principal singular components of W. With W = U S V^T and s the
LoRA scaling, B = U_r sqrt(S_r) / sqrt(s) and A = sqrt(S_r) V_r^T / sqrt(s) hold the top r components, and the frozen
weight becomes the residual W - s B A: the model's output is unchanged at the start, and training moves the principal
directions. Through peft: LoraConfig(init_lora_weights='pissa') (an exact SVD)."""
from __future__ import annotations

from . import register_method
from .lora import adapter_and_head, check_rank
from .peft_tuner import peft_lora


def add_pissa(cfg, model):
    # a meta-device skeleton (parameter counts, dry runs) has no weights to decompose: the same shapes, LoRA's init
    on_meta = next(model.parameters()).is_meta
    return peft_lora(model, cfg, init_lora_weights=True if on_meta else "pissa")


register_method(name="pissa", title="PiSSA", changes_model=add_pissa, trains=adapter_and_head,
                parameters=("lora_r", "lora_alpha", "lora_targets"), rank_parameters=("lora_r",), validate=check_rank,
                paper_claim="PiSSA beats LoRA at the same rank (PiSSA paper, Table 3 on DeBERTaV3-base)")
