"""The training loop: AdamW, linear warmup/decay, clipping, accumulation, per-epoch evaluation, best epoch. Its one
training step (TrainStep) and one prediction loop (predict) are the ones the benchmarks time."""
from __future__ import annotations

import contextlib
import math
import os
import random
import resource
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from .config import use_bar
from .errors import LoraNbError
from .methods.lora import is_head_parameter, lora_merged
from .glue.metrics import compute_metrics, is_collapsed, predictions_from_logits
from .glue.tasks import Task
from .runs.rundir import Status

NAN_CHECK_EVERY = 50  # optimizer steps between loss checks (each check syncs with the device)


@dataclass
class TrainConfig:
    epochs: int = 3
    learning_rate: float = 5e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0  # 0 turns clipping off
    grad_accum: int = 1  # micro-batches per optimizer step: effective batch = batch_size x grad_accum
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 needs CUDA)
    progress: str = "auto"  # auto (bar on a terminal, else one line per epoch) | bar | log | none
    early_stopping_patience: int = 0  # stop after this many epochs without a better selection score; 0: never


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); `deterministic` also asks CUDA for deterministic kernels.

    Strict (not warn_only): with warn_only=True, attention's backward (scaled_dot_product_attention's memory-efficient
    and cuDNN kernels) keeps its non-deterministic default and only warns; strict mode makes it pick its deterministic
    path (seen on an H100, torch 2.11)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)


def pick_device(device: str = "auto") -> torch.device:
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                        ("cpu" if device == "auto" else device))


def check_device(device: str = "auto") -> torch.device:
    """The device a run will use; one this machine does not have fails naming the fix."""
    dev = pick_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LoraNbError(f"device {device!r}: this machine has no CUDA GPU that torch can use. "
                          "Fix: device 'auto' or 'cpu', or run on a machine with a CUDA GPU.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise LoraNbError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s). "
                          "Fix: device 'cuda' or cuda:N with N below that count.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise LoraNbError(f"device {device!r}: MPS is not available here. Fix: device 'auto' or 'cpu'.")
    return dev


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in ("bf16", "fp16"):
        raise LoraNbError(f"precision must be fp32, bf16 or fp16, not {precision!r}.")
    if precision == "fp16" and device.type != "cuda":
        raise LoraNbError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU.")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float,
                   head_lr: float | None = None) -> torch.optim.AdamW:
    """AdamW over trainable parameters; no weight decay on biases and LayerNorm weights. `head_lr`: the
    classification head's own learning rate (VeRA's recipe); else every parameter at `lr`."""
    groups = {(lr, True): [], (lr, False): []}  # (learning rate, decays) -> parameters
    for name, p in model.named_parameters():
        if p.requires_grad:
            decays = not (p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name)
            groups.setdefault((head_lr if head_lr and is_head_parameter(name) else lr, decays), []).append(p)
    return torch.optim.AdamW([{"params": params, "lr": rate, "weight_decay": weight_decay if decays else 0.0}
                              for (rate, decays), params in groups.items()], lr=lr)


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM (/proc/self/status) where it exists: ru_maxrss survives execve on Linux, so a
    papermill kernel or spawned child would start at its parent's peak; VmHWM belongs to the new address space."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this run: the CUDA allocator's peak on GPU, the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


@torch.no_grad()
def evaluate(model: nn.Module, loaders: dict, task: Task, device: torch.device, precision: str = "fp32"):
    """Metrics per evaluation split, flattened: the first split's names are plain (`accuracy`), later splits get
    their name as suffix (`accuracy_mismatched`). Also returns whether the first split's predictions collapsed."""
    model.eval()
    metrics, collapsed = {}, False
    with lora_merged(model):  # evaluation runs at base-model cost
        for i, (split, loader) in enumerate(loaders.items()):
            metrics_i, collapsed_i = _evaluate_split(model, loader, task, device, precision)
            suffix = "" if i == 0 else "_" + split.replace("validation_", "").replace("test_", "")
            metrics.update({f"{k}{suffix}": v for k, v in metrics_i.items()})
            collapsed = collapsed or (i == 0 and collapsed_i)
    return metrics, collapsed


def _evaluate_split(model, loader, task, device, precision):
    logits, labels = predict(model, loader, device, precision)
    preds = predictions_from_logits(task, logits.numpy())
    return compute_metrics(task, preds, labels.numpy()), is_collapsed(task, preds)


@torch.no_grad()
def predict(model: nn.Module, loader, device, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """The one prediction loop (evaluate and the benchmarks): in eval mode, under autocast at `precision`, the logits
    (float32) and labels of every batch of `loader`, in order, on the CPU."""
    device = torch.device(device)
    model.eval()
    logits, labels = [], []
    for batch in loader:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast_context(device, precision):
            out = model(**{k: v for k, v in batch.items() if k != "labels"})
        logits.append(out.logits.float().cpu())
        labels.append(batch["labels"].cpu())
    return torch.cat(logits), torch.cat(labels)


class TrainStep:
    """The one training step (train and the benchmarks): `backward(batch)` runs the forward pass under autocast at
    `precision` and the backward pass of the loss divided by the micro-batches of a step (scaled for fp16);
    `update()` then clips the gradients (max_grad_norm > 0), steps AdamW, the fp16 scaler and the schedule, calls
    `before_zero_grad(steps)` while the gradients are still there (AdaLoRA's update_and_allocate reads them) and
    zeroes them. `step(batch)`: both, for one micro-batch a step; returns the loss."""

    def __init__(self, model: nn.Module, optimizer, device, precision: str = "fp32", max_grad_norm: float = 1.0,
                 grad_accum: int = 1, scheduler=None, before_zero_grad=None):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.device, self.precision = torch.device(device), precision
        self.max_grad_norm, self.grad_accum, self.before_zero_grad = max_grad_norm, grad_accum, before_zero_grad
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.steps = 0  # optimizer steps taken

    def backward(self, batch: dict) -> torch.Tensor:
        with autocast_context(self.device, self.precision):
            loss = self.model(**batch).loss
        self.scaler.scale(loss / self.grad_accum).backward()
        return loss

    def update(self) -> None:
        if self.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps += 1
        if self.before_zero_grad is not None:
            self.before_zero_grad(self.steps)
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, batch: dict) -> float:
        loss = self.backward(batch)
        self.update()
        return loss.item()


def optimizer_steps(train_loader, config: TrainConfig) -> int:
    """Optimizer steps of the whole run: the learning-rate schedule's length (methods that follow the schedule, such
    as AdaLoRA's budget and SoRA's lambda, are given the same number)."""
    return math.ceil(len(train_loader) / config.grad_accum) * config.epochs


def train(model: nn.Module, train_loader, eval_loaders: dict, task: Task, config: TrainConfig,
          device: torch.device, on_epoch=None, optimizer=None, before_zero_grad=None,
          test_loaders: dict | None = None) -> dict:
    """Train and evaluate after every epoch. `on_epoch(row)` gets each epoch's row (e.g. to write epochs.csv);
    `before_zero_grad(step)` runs after each optimizer step while the gradients are still there (AdaLoRA's
    update_and_allocate reads them). `test_loaders` (split 'sora') are evaluated every epoch too, as `test_*` columns;
    they never pick the best epoch: `test` holds their metrics at the best epoch. With `early_stopping_patience`
    p > 0, training stops once p epochs in a row brought no better selection score (the schedule still spans
    `epochs`, so a stopped run is the first epochs of the full one).
    Returns rows, best epoch, its metrics, whether it stopped early, wall and process CPU seconds, and a status:
    'ok', 'nan_loss' (training stopped) or 'collapsed' (the best epoch predicts one class)."""
    if config.grad_accum < 1:
        raise LoraNbError("grad_accum must be >= 1.")
    model.to(device)
    optimizer = optimizer or make_optimizer(model, config.learning_rate, config.weight_decay)
    total_steps = optimizer_steps(train_loader, config)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    stepper = TrainStep(model, optimizer, device, config.precision, config.max_grad_norm, config.grad_accum,
                        scheduler, before_zero_grad)
    primary = task.primary_metric
    rows, best, best_metrics, best_test, status, stopped_early = [], None, {}, {}, Status.OK, False
    start, cpu_start = time.perf_counter(), time.process_time()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    for epoch in range(1, config.epochs + 1):
        model.train()
        t0, loss_sum, n_batches, n_samples = time.perf_counter(), torch.zeros((), device=device), 0, 0
        batches = tqdm(train_loader, desc=f"epoch {epoch}", leave=False, disable=not use_bar(config.progress))
        for i, batch in enumerate(batches):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            loss = stepper.backward(batch)
            loss_sum += loss.detach().float()
            n_batches += 1
            n_samples += batch["labels"].shape[0]
            if (i + 1) % config.grad_accum == 0 or i + 1 == len(train_loader):
                stepper.update()
                if stepper.steps % NAN_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                    break
        train_loss = (loss_sum / max(n_batches, 1)).item()
        if not math.isfinite(train_loss):
            status = Status.NAN_LOSS
            print(f"epoch {epoch}: training loss is {train_loss}; stopping (lower the learning rate, or use fp32).")
            break
        train_seconds = time.perf_counter() - t0
        metrics, collapsed = evaluate(model, eval_loaders, task, device, config.precision)
        test = {f"test_{k}": v for k, v in evaluate(model, test_loaders, task, device, config.precision)[0].items()} \
            if test_loaders else {}
        row = {"epoch": epoch, "step": stepper.steps, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0],
               "train_seconds": train_seconds, "samples_per_second": n_samples / train_seconds,
               **metrics, **test, "collapsed": collapsed}
        rows.append(row)
        score = metrics[primary]
        if best is None or (math.isfinite(score) and not (math.isfinite(best[primary]) and best[primary] >= score)):
            best, best_metrics, best_test = row, metrics, {k[len("test_"):]: v for k, v in test.items()}
        if config.progress != "none":
            print(f"epoch {epoch}/{config.epochs}  loss {train_loss:.4f}  {primary} {score:.4f}  "
                  f"({train_seconds:.0f}s, {row['samples_per_second']:.1f} samples/s)", flush=True)
        if on_epoch is not None:
            on_epoch(row)
        if config.early_stopping_patience and epoch - best["epoch"] >= config.early_stopping_patience \
                and epoch < config.epochs:
            stopped_early = True
            if config.progress != "none":
                print(f"early stop: no better {primary} for {config.early_stopping_patience} epoch(s); "
                      f"best epoch {best['epoch']}", flush=True)
            break
    if status == Status.OK and best is not None and best["collapsed"]:
        status = Status.COLLAPSED
    return {"status": status, "epochs": rows, "best_epoch": best["epoch"] if best else None,
            "best": best_metrics, "test": best_test, "epochs_run": len(rows), "stopped_early": stopped_early,
            "train_seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
            "peak_memory_mb": peak_memory_mb(device)}
