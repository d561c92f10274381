"""AdaLoRA (Zhang et al. 2023) through peft: SVD-form updates P diag(E) Q on our LoRA target modules, ranks pruned
from adalora_init_r to an average adalora_target_r by sensitivity scores, with an orthogonal regulariser.

What peft does (checked in peft 0.21.2, peft/tuners/adalora/model.py): `AdaLoraModel.forward` adds
`orth_reg_weight * mean_i ||P_i^T P_i - I||_F` (over lora_A and lora_B) to `outputs.loss` whenever the output has a
loss (labels given), and `update_and_allocate(global_step)` must run after backward and before zero_grad (it reads
`p.grad` for the sensitivity |p * grad|): it masks lora_E to the cubic budget schedule every deltaT steps between
tinit and total_step - tfinal, fixes the final rank pattern at total_step - tfinal and keeps that mask afterwards.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LoraNbError
from . import register_method
from .lora import adapter_and_head
from .peft_tuner import wrap


def check_ranks(cfg) -> None:
    """RunConfig's check: the average final rank fits between 1 and the initial rank."""
    if cfg.adalora_target_r > cfg.adalora_init_r or cfg.adalora_target_r < 1:
        raise LoraNbError(f"adalora_target_r ({cfg.adalora_target_r}) must be between 1 and adalora_init_r "
                          f"({cfg.adalora_init_r}).")


def build(model: nn.Module, cfg) -> nn.Module:
    """Wrap the model in peft's AdaLoraModel (its forward adds the orthogonal regulariser to the loss) on the
    modules our `lora_targets` select; the classification head (+ pooler) trains too. `total_step` is set once the
    data size is known (`set_total_steps`, called by `start_training`)."""
    from peft import AdaLoraConfig
    from peft.tuners.adalora import AdaLoraModel

    config = AdaLoraConfig(
        init_r=cfg.adalora_init_r, target_r=cfg.adalora_target_r, tinit=cfg.adalora_tinit,
        tfinal=cfg.adalora_tfinal, deltaT=cfg.adalora_delta_t, beta1=cfg.adalora_beta1, beta2=cfg.adalora_beta2,
        orth_reg_weight=cfg.adalora_orth_reg_weight, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=["placeholder"],  # peft_tuner.wrap sets the modules `lora_targets` select
        total_step=cfg.adalora_tinit + cfg.adalora_tfinal + 1)  # placeholder until set_total_steps
    return wrap(model, AdaLoraModel, config, cfg.lora_targets)


def set_total_steps(tuner: nn.Module, total_steps: int) -> None:
    """The budget schedule needs the run's number of optimizer steps; checks that a pruning phase exists."""
    config = tuner.peft_config["default"]
    # peft scores importance at steps 1 .. total - tfinal - 1 and masks from step tinit + 1: a phase of one step
    # (total - tfinal == 1) would mask before any score exists (a KeyError inside peft)
    if config.tinit >= total_steps - config.tfinal or total_steps - config.tfinal < 2:
        raise LoraNbError(f"AdaLoRA: adalora_tinit ({config.tinit}) + adalora_tfinal ({config.tfinal}) leave no "
                          f"budget-allocation phase in {total_steps} optimizer steps; lower them (or train longer).")
    tuner.rankallocator.set_total_step(total_steps)  # the same config object the allocator reads


def update_hook(tuner: nn.Module):
    """The before-zero-grad hook for train.train: peft's update_and_allocate(global_step)."""
    return lambda step: tuner.update_and_allocate(step)


def _svd_layers(tuner: nn.Module) -> dict:
    from peft.tuners.adalora.layer import SVDLinear
    return {n: m for n, m in tuner.model.named_modules() if isinstance(m, SVDLinear)}


@torch.no_grad()
def method_state(tuner: nn.Module) -> dict:
    """The final rank per module (non-zero entries of E) and the effective adapter size: each kept rank holds one
    row of A, one column of B and one entry of E."""
    layers = _svd_layers(tuner)
    ranks = {n: int((m.lora_E["default"] != 0).sum()) for n, m in layers.items()}
    per_rank = {n: m.in_features + m.out_features + 1 for n, m in layers.items()}
    config = tuner.peft_config["default"]
    return {"method": "adalora", "ranks": ranks, "init_r": config.init_r, "target_r": config.target_r,
            "total_rank": sum(ranks.values()), "target_total_rank": config.target_r * len(layers),
            "total_step": config.total_step,
            "params_allocated": sum(config.init_r * per_rank[n] for n in layers),
            "effective_params": sum(ranks[n] * per_rank[n] for n in layers)}


def start_training(cfg, tuner: nn.Module, optimizer, total_steps: int):
    """The budget schedule gets the run's steps; the rank allocator runs before every zero_grad."""
    set_total_steps(tuner, total_steps)
    return update_hook(tuner)


register_method(name="adalora", title="AdaLoRA", changes_model=lambda cfg, model: build(model, cfg),
                trains=adapter_and_head,
                parameters=("lora_alpha", "lora_targets", "adalora_init_r", "adalora_target_r"),
                rank_parameters=("adalora_init_r", "adalora_target_r"), validate=check_ranks,
                on_training_start=start_training, final_state=method_state, loss_is_task_loss=False,
                paper_claim="AdaLoRA beats LoRA at the same parameter budget (AdaLoRA paper, Table 1)")
