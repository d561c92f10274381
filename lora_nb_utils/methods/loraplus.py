"""LoRA+ (Hayou et al. 2024): LoRA whose B matrices learn `loraplus_lr_ratio` times faster than A. The layers are our
LoRA's; the optimizer is peft's `create_loraplus_optimizer` (peft/optimizers/loraplus.py), as its docs use it:
A (and other matrices, the head's weights) at the learning rate; B and every 1-D parameter (biases) at lr x ratio."""
from __future__ import annotations

import torch

from ..errors import LoraNbError
from . import register_method
from .lora import adapter_and_head, add_lora, check_rank


def loraplus_optimizer(cfg, model) -> torch.optim.Optimizer:
    from peft.optimizers import create_loraplus_optimizer
    return create_loraplus_optimizer(model, torch.optim.AdamW, lr=cfg.learning_rate,
                                     loraplus_lr_ratio=cfg.loraplus_lr_ratio, loraplus_weight_decay=cfg.weight_decay)


def check(cfg) -> None:
    check_rank(cfg)
    if cfg.loraplus_lr_ratio <= 0:
        raise LoraNbError(f"loraplus_lr_ratio must be > 0 (B's learning rate over A's; the LoRA+ paper uses about "
                          f"4 to 16), not {cfg.loraplus_lr_ratio!r}.")



register_method(name="loraplus", title="LoRA+", changes_model=add_lora, trains=adapter_and_head,
                parameters=("lora_r", "lora_alpha", "lora_targets", "loraplus_lr_ratio"), rank_parameters=("lora_r",),
                validate=check, make_optimizer=loraplus_optimizer, accepts_init_from=True,
                exports_to_peft=True,
                paper_claim="LoRA+ beats LoRA at the same rank and cost, B learning faster than A (LoRA+ paper)")
