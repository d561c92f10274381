"""What the benchmarks run: the base model, its variants (our LoRA, PEFT's LoRA, full fine-tuning, the base model
for inference), a batch of random token ids, and the training step they time: train.TrainStep, the step train.train
runs, at a fixed learning rate (no schedule)."""
from __future__ import annotations

import copy

import torch

from ..adapters import peft_config_for
from ..glue.tasks import get_task
from ..methods.lora import inject_lora, mark_trainable
from ..models import load_model
from ..train import TrainStep, make_optimizer
from .config import BenchConfig

STEP_LR = 1e-5  # the timed steps' learning rate (AdamW, no weight decay, gradients clipped at norm 1)


def base_model(cfg: BenchConfig, task: str = "sst2"):
    torch.manual_seed(cfg.seed)
    return load_model(cfg.model, get_task(task), weights=cfg.weights_kind, **cfg.config_overrides)


def randomize_b(model) -> None:
    """loralib initialises B to zero; a non-zero B makes merged/unmerged comparisons meaningful."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def build_variant(kind: str, base, cfg: BenchConfig):
    """'lora' (ours: loralib), 'peft' (peft.LoraConfig with our r, alpha, targets, dropout 0, head in
    modules_to_save), 'ft' (everything trains), 'base' (inference only). `base` is deep-copied."""
    model = copy.deepcopy(base)
    if kind == "ft":
        mark_trainable(model, "ft")
    elif kind == "lora":
        inject_lora(model, cfg.lora_r, cfg.lora_alpha, 0.0, cfg.targets)
        mark_trainable(model, "lora")
    elif kind == "peft":
        from peft import get_peft_model  # optional (not a package dependency): only this variant needs it
        probe = copy.deepcopy(base)
        inject_lora(probe, cfg.lora_r, cfg.lora_alpha, 0.0, cfg.targets)
        config = peft_config_for(probe)  # the same r, alpha, dropout, target names and head as ours
        del probe
        model = get_peft_model(model, config)
    elif kind != "base":
        raise ValueError(kind)
    return model.to(cfg.device)


def random_batch(cfg: BenchConfig, vocab_size: int, num_labels: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (cfg.batch_size, cfg.seq_len), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "labels": torch.randint(0, num_labels, (cfg.batch_size,), generator=g)}
    return {k: v.to(cfg.device) for k, v in batch.items()}


def train_step(model, precision: str = "fp32") -> TrainStep:
    """The training step of train.train on `model` (put in training mode), as the benchmarks time it: forward under
    autocast at `precision`, backward (fp16: with its gradient scaler), clipping, AdamW at STEP_LR, zero_grad."""
    return TrainStep(model.train(), make_optimizer(model, STEP_LR, 0.0), next(model.parameters()).device, precision)
