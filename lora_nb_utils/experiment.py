"""One run, step by step: data -> model (+ LoRA) -> train -> recorded run directory. Notebooks call these steps."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .runs import rundir

from .adapters import ADAPTER_FILE, init_from_mnli, save_trainable
from .config import RunConfig, configure_progress, params_hash
from .glue.data import load_glue, make_loader, subsample, tokenize
from .errors import LoraNbError
from .methods import METHODS, get_method
from .methods.lora import count_parameters
from .glue.splits import apply_split
from .models import canonical_name, load_config, load_model, load_tokenizer, max_input_length, skeleton
from .glue.tasks import Task, get_task
from .train import TrainConfig, check_device, make_optimizer, optimizer_steps, pick_device, set_seed, train


@dataclass
class RunData:
    task: Task
    tokenizer: object
    train_loader: object
    eval_loaders: dict
    sizes: dict  # rows per split actually used
    test_loaders: dict = field(default_factory=dict)  # split 'sora': reported at the best validation epoch


def check_environment(cfg: RunConfig) -> None:
    """What used to fail only once the run directory existed, checked before anything is loaded or written: the
    device, fp16 off CUDA, max_seq_len beyond the model's positions, an output_dir below a file."""
    device = check_device(cfg.device)
    if cfg.precision == "fp16" and device.type != "cuda":
        raise LoraNbError(f"precision='fp16' needs a CUDA device (this run's device is {device.type}); use 'bf16' or "
                          "'fp32' on CPU.")
    limit = max_input_length(load_config(cfg.model, get_task(cfg.task)))
    if limit is not None and cfg.max_seq_len > limit:
        raise LoraNbError(f"max_seq_len {cfg.max_seq_len} is longer than the {limit} positions model {cfg.model!r} "
                          f"has: longer rows would crash or train on garbage. Fix: max_seq_len <= {limit}.")
    rundir.check_output_dir(cfg.output_dir)


def prepare_data(cfg: RunConfig) -> RunData:
    """Load, split by the protocol (`split`, splits.py), subsample, tokenize (cached) and batch the task's data."""
    check_environment(cfg)
    task = get_task(cfg.task)
    tokenizer = load_tokenizer(cfg.model, cfg.tokenizer or None)
    raw, selection, tests = apply_split(load_glue(task, cfg.glue_dir or None), task, cfg.split)
    raw["train"] = subsample(raw["train"], cfg.max_train_samples)
    for split in (*selection, *tests):
        raw[split] = subsample(raw[split], cfg.max_eval_samples)
    tok = tokenize(raw, task, tokenizer, cfg.max_seq_len, cfg.cache_dir or None)
    train_loader = make_loader(tok["train"], tokenizer, cfg.batch_size, shuffle=True, seed=cfg.seed,
                               group_by_length=cfg.group_by_length)

    def loaders(names):  # evaluation rows sorted by length: less padding, the same predictions and metrics
        return {s: make_loader(tok[s], tokenizer, cfg.eval_batch_size, shuffle=False, group_by_length=True)
                for s in names}
    return RunData(task, tokenizer, train_loader, loaders(selection), {s: len(d) for s, d in tok.items()},
                   loaders(tests))


def build_model(cfg: RunConfig, task: Task | None = None) -> nn.Module:
    """The classification model for this run, with LoRA injected and the trainable set marked; MNLI-initialised
    when `init_from` is set. Seeds torch first, so the head and LoRA initialisation follow `seed`."""
    task = task or get_task(cfg.task)
    set_seed(cfg.seed, cfg.deterministic)
    model = load_model(cfg.model, task, weights=cfg.weights,
                       cls_dropout=cfg.cls_dropout if cfg.cls_dropout >= 0 else None)
    return _add_method(model, cfg)


def _add_method(model: nn.Module, cfg: RunConfig) -> nn.Module:
    """The method's layers and trainable set (the registry's Method.build), then the MNLI initialisation."""
    method = get_method(cfg.method)
    model = method.build(cfg, model)
    if cfg.init_from:
        if not method.accepts_init_from:
            takers = " or ".join(f"method={m.name!r}" for m in METHODS.values() if m.accepts_init_from)
            raise LoraNbError(f"init_from (MNLI initialisation) transfers LoRA weights: it needs {takers}.")
        init_from_mnli(model, cfg.init_from)
    return model


def adapter_metadata(cfg: RunConfig, task: Task) -> dict:
    return {"model": canonical_name(cfg.model), "task": task.name, "method": cfg.method, "lora_r": cfg.lora_r,
            "split": cfg.split,
            "lora_alpha": cfg.lora_alpha, "lora_targets": cfg.lora_targets, "num_labels": task.num_labels,
            "seed": cfg.seed}


def train_and_record(cfg: RunConfig, model: nn.Module, data: RunData, run_dir=None, replace: bool = False) -> dict:
    """Train, writing epochs.csv as epochs finish, the adapter, and metrics.json last. Returns the metrics.

    The run directory always describes the run that writes its metrics: the one the runner prepared for these
    parameters is kept, any other is started afresh, and one holding another run is refused unless `replace`
    (rundir.claim). An error from then on records the run as failed, with the error, and is raised again."""
    run_dir = Path(run_dir or cfg.output_dir)
    rundir.claim(run_dir, cfg.to_params(), replace)
    try:
        return _train_and_record(cfg, model, data, run_dir)
    except BaseException as exc:  # KeyboardInterrupt too: never leave a stale 'running'
        rundir.record_failure(run_dir, exc)
        raise


def _train_and_record(cfg: RunConfig, model: nn.Module, data: RunData, run_dir: Path) -> dict:
    params = cfg.to_params()
    method = get_method(cfg.method)
    set_seed(cfg.seed, cfg.deterministic)
    counts = count_parameters(model)
    rows = []

    def on_epoch(row):
        rows.append(row)
        rundir.write_epochs(run_dir, rows)

    tcfg = TrainConfig(epochs=cfg.epochs, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                       warmup_ratio=cfg.warmup_ratio, max_grad_norm=cfg.max_grad_norm, grad_accum=cfg.grad_accum,
                       precision=cfg.precision, progress=cfg.progress,
                       early_stopping_patience=cfg.early_stopping_patience)
    total_steps = optimizer_steps(data.train_loader, tcfg)
    optimizer = method.make_optimizer(cfg, model) if method.make_optimizer else \
        make_optimizer(model, cfg.learning_rate, cfg.weight_decay, cfg.head_learning_rate or None)
    before_zero_grad = method.on_training_start(cfg, model, optimizer, total_steps) \
        if method.on_training_start else None
    result = train(model, data.train_loader, data.eval_loaders, data.task, tcfg, pick_device(cfg.device),
                   on_epoch=on_epoch, optimizer=optimizer, before_zero_grad=before_zero_grad,
                   test_loaders=data.test_loaders)
    if cfg.save_adapter and method.trains_adapter and result["status"] != rundir.Status.NAN_LOSS:
        save_trainable(model, run_dir / ADAPTER_FILE, adapter_metadata(cfg, data.task))
    metrics = {
        "status": result["status"], "task": data.task.name, "model": canonical_name(cfg.model),
        "method": cfg.method, "lora_r": cfg.lora_r if "lora_r" in method.rank_parameters else None,
        "seed": cfg.seed,
        "split": cfg.split, "primary_metric": data.task.primary_metric, "best_epoch": result["best_epoch"],
        "best": result["best"], "test": result["test"],
        "last": {k: v for k, v in (rows[-1] if rows else {}).items()
                 if k not in ("epoch", "step", "lr", "train_seconds", "samples_per_second", "collapsed")},
        "parameters": counts, "sizes": data.sizes, "effective_batch_size": cfg.batch_size * cfg.grad_accum,
        "epochs_run": result["epochs_run"], "stopped_early": result["stopped_early"],
        "train_seconds": result["train_seconds"], "cpu_seconds": result["cpu_seconds"],
        "peak_memory_mb": result["peak_memory_mb"],
        "params_hash": params_hash(params),
    }
    if method.final_state:  # final ranks / gates and the effective adapter size
        metrics["method_state"] = method.final_state(model)
    rundir.finish_run(run_dir, metrics)
    return metrics


def run_experiment(cfg: RunConfig, run_dir=None, replace: bool = False) -> dict:
    """Everything for one run: prepare_data -> build_model -> train_and_record. A run directory holding another run
    is refused before any work unless `replace`."""
    rundir.needs_start(run_dir or cfg.output_dir, cfg.to_params(), replace)
    configure_progress(cfg.progress)
    data = prepare_data(cfg)
    model = build_model(cfg, data.task)
    return train_and_record(cfg, model, data, run_dir, replace)


def count_parameters_for(cfg: RunConfig) -> dict:
    """Parameter counts of the run's model without loading weights (its meta-device skeleton, the method added)."""
    model = _add_method(skeleton(cfg.model, get_task(cfg.task)), RunConfig(**{**cfg.to_params(), "init_from": ""}))
    return count_parameters(model)
