"""One run, step by step: data -> model (+ LoRA) -> train -> recorded run directory. Notebooks call these steps."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from . import rundir
from .checkpoint import ADAPTER_FILE, init_from_mnli, save_trainable
from .config import RunConfig, params_hash
from .data import load_glue, make_loader, subsample, tokenize
from .errors import LoraNbError
from .lora import count_parameters, inject_lora, mark_trainable
from .models import canonical_name, load_model, load_tokenizer
from .tasks import Task, get_task
from .train import TrainConfig, configure_progress, pick_device, set_seed, train


@dataclass
class RunData:
    task: Task
    tokenizer: object
    train_loader: object
    eval_loaders: dict
    sizes: dict  # rows per split actually used


def prepare_data(cfg: RunConfig) -> RunData:
    """Load, subsample, tokenize (cached) and batch the task's data for this run."""
    task = get_task(cfg.task)
    configure_progress(cfg.progress)
    tokenizer = load_tokenizer(cfg.model, cfg.tokenizer or None)
    raw = load_glue(task, cfg.glue_dir or None)
    raw["train"] = subsample(raw["train"], cfg.max_train_samples)
    for split in task.eval_splits:
        raw[split] = subsample(raw[split], cfg.max_eval_samples)
    tok = tokenize(raw, task, tokenizer, cfg.max_seq_len, cfg.cache_dir or None)
    train_loader = make_loader(tok["train"], tokenizer, cfg.batch_size, shuffle=True, seed=cfg.seed)
    eval_loaders = {s: make_loader(tok[s], tokenizer, cfg.eval_batch_size, shuffle=False) for s in task.eval_splits}
    return RunData(task, tokenizer, train_loader, eval_loaders, {s: len(d) for s, d in tok.items()})


def build_model(cfg: RunConfig, task: Task | None = None) -> nn.Module:
    """The classification model for this run, with LoRA injected and the trainable set marked; MNLI-initialised
    when `init_from` is set. Seeds torch first, so the head and LoRA initialisation follow `seed`."""
    task = task or get_task(cfg.task)
    set_seed(cfg.seed, cfg.deterministic)
    model = load_model(cfg.model, task, weights=cfg.weights,
                       cls_dropout=cfg.cls_dropout if cfg.cls_dropout >= 0 else None)
    if cfg.method == "lora":
        inject_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    mark_trainable(model, cfg.method)
    if cfg.init_from:
        if cfg.method != "lora":
            raise LoraNbError("init_from (MNLI initialisation) transfers LoRA weights: it needs method='lora'.")
        init_from_mnli(model, cfg.init_from)
    return model


def adapter_metadata(cfg: RunConfig, task: Task) -> dict:
    return {"model": canonical_name(cfg.model), "task": task.name, "method": cfg.method, "lora_r": cfg.lora_r,
            "lora_alpha": cfg.lora_alpha, "lora_targets": cfg.lora_targets, "num_labels": task.num_labels,
            "seed": cfg.seed}


def train_and_record(cfg: RunConfig, model: nn.Module, data: RunData, run_dir=None) -> dict:
    """Train, writing epochs.csv as epochs finish, the adapter, and metrics.json last. Returns the metrics."""
    run_dir = Path(run_dir or cfg.output_dir)
    params = cfg.to_params()
    if not (run_dir / rundir.MANIFEST).is_file():  # the runner writes it before executing the notebook
        rundir.start_run(run_dir, params)
    set_seed(cfg.seed, cfg.deterministic)
    counts = count_parameters(model)
    rows = []

    def on_epoch(row):
        rows.append(row)
        rundir.write_epochs(run_dir, rows)

    tcfg = TrainConfig(epochs=cfg.epochs, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                       warmup_ratio=cfg.warmup_ratio, max_grad_norm=cfg.max_grad_norm, grad_accum=cfg.grad_accum,
                       precision=cfg.precision, progress=cfg.progress)
    result = train(model, data.train_loader, data.eval_loaders, data.task, tcfg, pick_device(cfg.device),
                   on_epoch=on_epoch)
    if cfg.save_adapter and cfg.method != "ft" and result["status"] != "nan_loss":
        save_trainable(model, run_dir / ADAPTER_FILE, adapter_metadata(cfg, data.task))
    metrics = {
        "status": result["status"], "task": data.task.name, "model": canonical_name(cfg.model),
        "method": cfg.method, "lora_r": cfg.lora_r if cfg.method == "lora" else None, "seed": cfg.seed,
        "primary_metric": data.task.primary_metric, "best_epoch": result["best_epoch"], "best": result["best"],
        "last": {k: v for k, v in (rows[-1] if rows else {}).items()
                 if k not in ("epoch", "step", "lr", "train_seconds", "samples_per_second", "collapsed")},
        "parameters": counts, "sizes": data.sizes, "effective_batch_size": cfg.batch_size * cfg.grad_accum,
        "train_seconds": result["train_seconds"], "peak_memory_mb": result["peak_memory_mb"],
        "params_hash": params_hash(params),
    }
    rundir.finish_run(run_dir, metrics)
    return metrics


def run_experiment(cfg: RunConfig, run_dir=None) -> dict:
    """Everything for one run: prepare_data -> build_model -> train_and_record."""
    data = prepare_data(cfg)
    model = build_model(cfg, data.task)
    return train_and_record(cfg, model, data, run_dir)


def count_parameters_for(cfg: RunConfig) -> dict:
    """Parameter counts of the run's model without loading weights (built on the meta device from its config)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from .models import load_config
    task = get_task(cfg.task)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(load_config(cfg.model, task))
        if cfg.method == "lora":
            inject_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    mark_trainable(model, cfg.method)
    return count_parameters(model)
