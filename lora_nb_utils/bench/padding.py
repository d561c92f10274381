"""The padding part of the benchmarks, on real GLUE rows: LoRA training steps with batches padded to their longest
row (what runs use), to a fixed length (what the official scripts did) and length-grouped, interleaved batch by batch
on three copies of one model; then the trained model's predictions both ways, which must agree. make_bench_loader
builds the three kinds of batches."""
from __future__ import annotations

import copy

from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from ..glue.data import load_glue, make_loader, subsample, tokenize
from ..glue.metrics import compute_metrics, predictions_from_logits
from ..glue.tasks import get_task
from ..models import load_tokenizer
from ..train import predict
from .config import BenchConfig
from .timing import timed
from .variants import base_model, build_variant, train_step


def make_bench_loader(ds, tokenizer, batch_size: int, shuffle: bool, seed: int = 0, *, padding: str = "dynamic",
                      max_length: int = 512, group_by_length: bool = False) -> DataLoader:
    """padding='dynamic' (data.make_loader: each batch to its longest row, optionally length-grouped, what runs use)
    or 'max_length' (every batch to `max_length`, as the official scripts; the same row order as dynamic)."""
    if padding not in ("dynamic", "max_length"):
        raise ValueError(f"padding must be 'dynamic' or 'max_length', not {padding!r}")
    collate = (DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)
               if padding == "max_length" else None)
    return make_loader(ds, tokenizer, batch_size, shuffle, seed, group_by_length=group_by_length, collate_fn=collate)


def _task_data(cfg: BenchConfig, task, tokenizer, cache_dir=None):
    raw = load_glue(task, cfg.glue_dir)
    raw["train"] = subsample(raw["train"], cfg.padding_train_samples)
    split = task.eval_splits[0]
    raw = type(raw)({"train": raw["train"], split: subsample(raw[split], cfg.padding_eval_samples)})
    return tokenize(raw, task, tokenizer, cfg.padding_max_length, cache_dir), split


def _padding_task(cfg: BenchConfig, name: str, tokenizer) -> dict:
    """One task of bench_padding."""
    task = get_task(name)
    tok, split = _task_data(cfg, task, tokenizer)
    base = base_model(cfg, name)
    model0 = build_variant("lora", base, cfg)
    del base
    kinds = ("dynamic", "max_length", "grouped")
    steppers = {k: train_step(copy.deepcopy(model0), cfg.precision) for k in kinds}
    bs, L = cfg.padding_batch_size, cfg.padding_max_length
    loaders = {"dynamic": make_bench_loader(tok["train"], tokenizer, bs, True, cfg.seed),
               "max_length": make_bench_loader(tok["train"], tokenizer, bs, True, cfg.seed,
                                               padding="max_length", max_length=L),
               "grouped": make_bench_loader(tok["train"], tokenizer, bs, True, cfg.seed, group_by_length=True)}
    times = {k: 0.0 for k in loaders}
    tokens = {k: 0 for k in loaders}
    losses = {k: [] for k in loaders}
    first = True
    for batches in zip(*loaders.values()):
        for k, batch in zip(loaders, batches):
            batch = {kk: v.to(cfg.device) for kk, v in batch.items()}
            tokens[k] += batch["input_ids"].numel()
            loss, seconds = timed(lambda: steppers[k].step(batch), cfg.device)
            losses[k].append(loss)
            if not first or len(loaders["dynamic"]) <= 2:  # the first step of each is warm-up (if > 2)
                times[k] += seconds
        first = False
    # same rows, same order, same init: dynamic and max-length training must agree up to float tolerance
    loss_diff = max(abs(a - b) for a, b in zip(losses["dynamic"], losses["max_length"]))
    trained = steppers["dynamic"].model
    evals = {"dynamic": make_bench_loader(tok[split], tokenizer, 32, False),
             "max_length": make_bench_loader(tok[split], tokenizer, 32, False, padding="max_length", max_length=L),
             "sorted": make_bench_loader(tok[split], tokenizer, 32, False, group_by_length=True)}  # what runs use
    out, eval_seconds = {}, {}
    for k, loader in evals.items():
        out[k], eval_seconds[k] = timed(lambda: predict(trained, loader, cfg.device, cfg.precision), cfg.device)
    (logits_d, labels), (logits_m, _), (logits_s, labels_s) = out["dynamic"], out["max_length"], out["sorted"]
    m_s = compute_metrics(task, predictions_from_logits(task, logits_s.numpy()), labels_s.numpy())
    preds_d = predictions_from_logits(task, logits_d.numpy())
    preds_m = predictions_from_logits(task, logits_m.numpy())
    m_d = compute_metrics(task, preds_d, labels.numpy())
    m_m = compute_metrics(task, preds_m, labels.numpy())
    return {
        "train_rows": len(tok["train"]), "eval_rows": len(tok[split]), "batches": len(loaders["dynamic"]),
        "train_seconds": times, "padded_tokens": tokens,
        "dynamic_vs_maxlen_padding_speedup": times["max_length"] / times["dynamic"],
        "grouped_vs_dynamic_speedup": times["dynamic"] / times["grouped"],
        "train_loss_max_abs_diff_dynamic_vs_maxlen": loss_diff,
        "eval_seconds": eval_seconds,
        "eval_dynamic_vs_maxlen_speedup": eval_seconds["max_length"] / eval_seconds["dynamic"],
        "eval_sorted_vs_dynamic_speedup": eval_seconds["dynamic"] / eval_seconds["sorted"],
        "eval_sorted_metrics_identical": m_s == m_d,
        "predictions_identical": bool((preds_d == preds_m).all()),
        "logits_max_abs_diff": float((logits_d - logits_m).abs().max()),
        "metrics_dynamic": m_d, "metrics_max_length": m_m,
        "metrics_identical": m_d == m_m}


def bench_padding(cfg: BenchConfig) -> dict:
    """Per task: one epoch (or a subsample) of LoRA training steps with dynamic padding, max-length padding and
    length-grouped dynamic batches, interleaved batch by batch on three copies of one model; then the trained
    (dynamic) model evaluated on validation both ways: predictions and metrics must agree."""
    tokenizer = load_tokenizer(cfg.model, cfg.tokenizer)
    per_task = {name: _padding_task(cfg, name, tokenizer) for name in cfg.padding_tasks}
    totals = {k: sum(p["train_seconds"][k] for p in per_task.values()) for k in ("dynamic", "max_length", "grouped")}
    evals = [p["eval_seconds"] for p in per_task.values()]
    return {"dynamic_vs_maxlen_padding_speedup": totals["max_length"] / totals["dynamic"],
            "grouped_vs_dynamic_speedup": totals["dynamic"] / totals["grouped"],
            "eval_sorted_vs_dynamic_speedup": sum(e["dynamic"] for e in evals) / sum(e["sorted"] for e in evals),
            "eval_sorted_metrics_identical": all(p["eval_sorted_metrics_identical"] for p in per_task.values()),
            **{f"dynamic_vs_maxlen_padding_speedup_{t}": per_task[t]["dynamic_vs_maxlen_padding_speedup"]
               for t in per_task},
            "padding_metrics_identical": all(p["metrics_identical"] for p in per_task.values()),
            "padding_predictions_identical": all(p["predictions_identical"] for p in per_task.values()),
            "padding": per_task,
            "padding_setup": (f"LoRA r={cfg.lora_r} training steps, batch {cfg.padding_batch_size}, max length "
                              f"{cfg.padding_max_length}, first step of each variant untimed when > 2 batches; "
                              f"train rows {cfg.padding_train_samples or 'all'}, eval rows "
                              f"{cfg.padding_eval_samples or 'all'}")}
