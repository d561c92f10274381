"""The methods peft implements (AdaLoRA, DoRA, PiSSA, VeRA) wrap the model in peft's tuner for the method, on the
modules our `lora_targets` select. The tuner's forward is the model's (with the loss), its parameter names start
with `model.`; the classification head trains beside the adapter."""
from __future__ import annotations

from torch import nn

from .lora import find_target_modules, is_head_parameter


def wrap(model: nn.Module, tuner_cls, config, targets) -> nn.Module:
    """peft's `tuner_cls` (LoraModel, VeraModel, AdaLoraModel) around `model`, its adapter 'default' on `targets`;
    peft freezes everything but the adapter, and the head is made trainable again."""
    config.target_modules = find_target_modules(model, targets)
    tuner = tuner_cls(model, config, "default")
    for name, p in tuner.named_parameters():
        if is_head_parameter(name):
            p.requires_grad = True
    return tuner


def peft_lora(model: nn.Module, cfg, **lora_options) -> nn.Module:
    """peft's LoRA layers at the run's rank, alpha, dropout and targets, with the variant `lora_options` selects
    (use_dora=True, init_lora_weights='pissa')."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, **lora_options)
    return wrap(model, LoraModel, config, cfg.lora_targets)
