"""SoRA (Ding et al. 2023, Sparse Low-rank Adaptation): LoRA with a gate per rank, h = W0 x + s * B diag(g) A x
(s = alpha / r, as our LoRA), gates initialised to 1 and trained with the optimizer; after every optimizer step a
proximal L1 step soft-thresholds the gates, g <- sign(g) * max(|g| - lr * lambda, 0), so ranks reach exact zeros.
`prune_sora` then removes the zero-gate ranks (one row of A and one column of B each) without changing outputs.

Written on top of loralib.Linear (our LoRA layer), not vendored from the SoRA code."""
from __future__ import annotations

import loralib
import torch
from torch import nn
from torch.nn import functional as F

from . import register_method
from .lora import adapter_and_head, check_rank, inject_lora

GATE = "lora_gate"  # the parameter name: contains "lora_", so it is trainable and saved like the LoRA matrices


class SoraLinear(loralib.Linear):
    """loralib.Linear with a gate vector g (size r) between A and B."""

    def __init__(self, in_features: int, out_features: int, r: int = 0, **kwargs):
        super().__init__(in_features, out_features, r=r, **kwargs)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.lora_gate = nn.Parameter(torch.ones(r, **factory))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = F.linear(x, self.weight, bias=self.bias)
        if self.r > 0 and not self.merged:
            result = result + ((self.lora_dropout(x) @ self.lora_A.t()) * self.lora_gate) @ self.lora_B.t() \
                * self.scaling
        return result

    def delta_weight(self) -> torch.Tensor:
        """s * B diag(g) A: what lora.lora_merged / merge_lora fold into W."""
        return (self.lora_B * self.lora_gate) @ self.lora_A * self.scaling


def sora_layers(model: nn.Module) -> dict[str, SoraLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, SoraLinear)}


def build(model: nn.Module, cfg) -> nn.Module:
    """Inject SoRA layers at the run's LoRA targets (rank lora_r = SoRA's r_max); returns the model."""
    inject_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets, layer_cls=SoraLinear)
    return model


def lambda_at(step: int, total_steps: int, cfg) -> float:
    """The L1 weight at optimizer step `step` (1-based): constant, or linear from sora_lambda to sora_max_lambda."""
    if cfg.sora_lambda_schedule == "linear" and total_steps > 1:
        frac = min(max(step - 1, 0) / (total_steps - 1), 1.0)
        return cfg.sora_lambda + frac * (cfg.sora_max_lambda - cfg.sora_lambda)
    return cfg.sora_lambda


@torch.no_grad()
def proximal_step(model: nn.Module, threshold: float) -> None:
    """Soft threshold every gate: g <- sign(g) * max(|g| - threshold, 0)."""
    for m in sora_layers(model).values():
        g = m.lora_gate
        g.copy_(torch.sign(g) * torch.clamp(g.abs() - threshold, min=0.0))


def attach(model: nn.Module, optimizer: torch.optim.Optimizer, total_steps: int, cfg):
    """After every optimizer step (a step post-hook, so the lr is the one that step used), soft-threshold the gates
    by lr x lambda(step). Returns the hook handle."""
    gates = {id(m.lora_gate) for m in sora_layers(model).values()}
    group = next((g for g in optimizer.param_groups if any(id(p) in gates for p in g["params"])), None)
    state = {"step": 0}

    def hook(opt, args, kwargs):
        state["step"] += 1
        lr = group["lr"] if group is not None else 0.0
        proximal_step(model, lr * lambda_at(state["step"], total_steps, cfg))

    return optimizer.register_step_post_hook(hook)


def _rank_params(m: SoraLinear, ranks: int) -> int:
    return ranks * (m.in_features + m.out_features)


def method_state(model: nn.Module) -> dict:
    """Gates per module after training: ranks kept (non-zero gates) and the effective LoRA parameter count after
    pruning (each zero gate removes one row of A and one column of B; the gates fold into B)."""
    layers = sora_layers(model)
    kept = {n: int((m.lora_gate != 0).sum()) for n, m in layers.items()}
    return {"method": "sora", "ranks": kept, "r_max": max((m.r for m in layers.values()), default=0),
            "zero_gates": sum(m.lora_gate.numel() for m in layers.values()) - sum(kept.values()),
            "total_gates": sum(m.lora_gate.numel() for m in layers.values()),
            "lora_params_before_pruning": sum(_rank_params(m, m.r) for m in layers.values()),
            "effective_params": sum(_rank_params(m, kept[n]) for n, m in layers.items())}


@torch.no_grad()
def prune_sora(model: nn.Module) -> dict[str, int]:
    """Remove the ranks whose gate is exactly zero, in place (A's rows, B's columns, the gates); the scaling stays
    alpha / r_max, so outputs are unchanged. Returns the kept rank per module."""
    kept = {}
    for name, m in sora_layers(model).items():
        keep = m.lora_gate != 0
        for pname, sliced in (("lora_A", m.lora_A[keep]), ("lora_B", m.lora_B[:, keep]), (GATE, m.lora_gate[keep])):
            old = getattr(m, pname)
            setattr(m, pname, nn.Parameter(sliced.clone(), requires_grad=old.requires_grad))
        m.r = int(keep.sum())
        kept[name] = m.r
    return kept


def start_training(cfg, model: nn.Module, optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    attach(model, optimizer, total_steps, cfg)


register_method(name="sora", title="SoRA", changes_model=lambda cfg, model: build(model, cfg),
                trains=adapter_and_head,
                parameters=("lora_r", "lora_alpha", "lora_targets", "sora_lambda"), rank_parameters=("lora_r",),
                validate=check_rank, on_training_start=start_training, final_state=method_state,
                paper_claim="SoRA matches or beats LoRA with fewer parameters, its L1 gates pruning ranks (SoRA "
                            "paper)", claim_beats_lora=False)
