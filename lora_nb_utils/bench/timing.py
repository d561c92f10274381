"""Side-by-side benchmarks: our LoRA vs PEFT LoRA vs full fine-tuning (step time, peak memory), inference latency
(base / unmerged / merged), dynamic vs max-length padding on real GLUE, tokenization cache and pipeline overhead.

Every figure is a ratio of variants measured in one run, interleaved (A B C A B C ...), after warm-up, the median of
several repetitions; absolute times are reported only beside the device description. Peak memory: on CPU each
variant runs in its own spawned process and reports its peak RSS (VmHWM) and the increment over the RSS after
the model was loaded; on CUDA torch.cuda.max_memory_allocated."""
from __future__ import annotations

import copy
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..methods.lora import inject_lora, lora_merged, mark_trainable, merge_lora
from ..glue.tasks import get_task
from ..train import autocast_context, make_optimizer, peak_rss_mb

REQUIRED_KEYS = ("lora_vs_peft_step_time", "lora_vs_peft_peak_memory", "lora_vs_ft_step_time",
                 "lora_vs_ft_peak_memory", "merged_vs_base_latency", "unmerged_vs_base_latency",
                 "dynamic_vs_maxlen_padding_speedup", "device", "model")
TINY_OVERRIDES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@dataclass
class BenchConfig:
    model: str = "minilm"
    weights: str = "auto"  # auto: pretrained for minilm, random for the others (time does not depend on values)
    tokenizer: str | None = None  # folder or hub id when not the model's own
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast in every timed forward, as train.train (fp16: CUDA only)
    batch_size: int = 16
    seq_len: int = 128
    lora_r: int = 8
    lora_alpha: float = 16.0
    targets: str = "query,value"
    warmup: int = 1  # untimed rounds per variant
    reps: int = 5  # timed rounds per variant (median)
    steps_per_rep: int = 1
    memory_steps: int = 3
    padding_tasks: tuple = ("sst2", "rte")
    padding_train_samples: int = 0  # 0 = the whole training split (one epoch)
    padding_eval_samples: int = 0  # 0 = the whole validation split
    padding_batch_size: int = 16
    padding_max_length: int = 512
    throughput_seq_lens: tuple = (128,)
    glue_dir: str | None = None
    runs: str | None = None  # a folder of run directories (manifest.json + metrics.json) for pipeline overhead
    config_overrides: dict = field(default_factory=dict)  # architecture overrides (tiny test models)
    seed: int = 0

    @classmethod
    def preset(cls, model="minilm", quick=False, tiny=False, **kw) -> "BenchConfig":
        if tiny:
            base = dict(model="roberta-base", weights="random", batch_size=4, seq_len=32, warmup=1, reps=1,
                        memory_steps=1, padding_train_samples=4, padding_eval_samples=4, padding_batch_size=4,
                        padding_tasks=("rte",),
                        throughput_seq_lens=(32,), config_overrides=dict(TINY_OVERRIDES))
        elif quick:
            small = model == "minilm"
            base = dict(model=model, reps=7, steps_per_rep=2, memory_steps=2, batch_size=16 if small else 8,
                        padding_train_samples=64 if small else 8, padding_eval_samples=128 if small else 16,
                        padding_batch_size=16 if small else 4,
                        throughput_seq_lens=(128,))
        else:
            base = dict(model=model, reps=7, memory_steps=3, throughput_seq_lens=(64, 128, 256, 512))
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)


# ---------------------------------------------------------------- models and steps

def _weights(cfg: BenchConfig) -> str:
    if cfg.weights != "auto":
        return cfg.weights
    return "pretrained" if cfg.model == "minilm" else "random"


def base_model(cfg: BenchConfig, task: str = "sst2"):
    from ..models import load_model
    torch.manual_seed(cfg.seed)
    return load_model(cfg.model, get_task(task), weights=_weights(cfg), **cfg.config_overrides)


def _randomize_b(model) -> None:
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
        from peft import get_peft_model

        from ..adapters.interop import peft_config_for
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


class Stepper:
    """forward (autocast at `precision`) + backward + clip + AdamW step + zero_grad, as train.train does (fp16 with
    its gradient scaler)."""

    def __init__(self, model, precision: str = "fp32"):
        self.model = model.train()
        self.optimizer = make_optimizer(model, 1e-5, 0.0)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.device = next(model.parameters()).device
        self.precision = precision
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")

    def step(self, batch) -> float:
        with autocast_context(self.device, self.precision):
            loss = self.model(**batch).loss
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


def _release_cuda_cache(device) -> None:
    """Give the caching allocator's free blocks back after a part, so spawned memory children find the card empty."""
    if str(device).startswith("cuda"):
        import gc
        gc.collect()
        torch.cuda.empty_cache()


def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def interleaved_times(fns: dict, warmup: int, reps: int, device="cpu", repeat: int = 1) -> dict:
    """Median seconds per call of each function, measured interleaved after `warmup` rounds; the order rotates
    every round (A B C, B C A, C A B, ...) so no variant always runs right after the same other one."""
    times = {k: [] for k in fns}
    keys = list(fns)
    for r in range(warmup + reps):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            fn = fns[k]
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            _sync(device)
            if r >= warmup:
                times[k].append((time.perf_counter() - t0) / repeat)
    return {k: statistics.median(v) for k, v in times.items()}


# ---------------------------------------------------------------- a. b. step time

def bench_step_time(cfg: BenchConfig) -> dict:
    base = base_model(cfg)
    batch = random_batch(cfg, base.config.vocab_size)
    steppers = {k: Stepper(build_variant(k, base, cfg), cfg.precision) for k in ("lora", "peft", "ft")}
    med = interleaved_times({k: (lambda s=s: s.step(batch)) for k, s in steppers.items()},
                            cfg.warmup, cfg.reps, cfg.device, cfg.steps_per_rep)
    trainable = {k: sum(p.numel() for p in s.trainable) for k, s in steppers.items()}
    return {"lora_vs_peft_step_time": med["lora"] / med["peft"], "lora_vs_ft_step_time": med["lora"] / med["ft"],
            "step_seconds": med, "trainable_parameters": trainable,
            "samples_per_s": {k: cfg.batch_size / v for k, v in med.items()},
            "step_batch": f"{cfg.batch_size} x {cfg.seq_len} random token ids, {cfg.precision}"}


# ---------------------------------------------------------------- peak memory, one spawned process per variant

def _rss_now_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _memory_child(kind: str, cfg_dict: dict) -> dict:
    cfg = BenchConfig(**cfg_dict)
    base = base_model(cfg)
    model = build_variant(kind, base, cfg)
    del base
    batch = random_batch(cfg, model.config.vocab_size)
    cuda = cfg.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        after_load = torch.cuda.memory_allocated() / 2**20
    else:
        after_load = _rss_now_mb()
    stepper = Stepper(model, cfg.precision)
    for _ in range(cfg.memory_steps):
        stepper.step(batch)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mb()
    return {"peak_mb": peak, "after_load_mb": after_load, "increment_mb": peak - after_load}


def bench_memory(cfg: BenchConfig) -> dict:
    """Each variant in a fresh spawned process of its own; the three run at the same time (peak RSS and CUDA
    allocator peaks are per process, so running them together changes no figure, only the wall time). As with any
    'spawn' start, a calling script needs an `if __name__ == "__main__":` guard."""
    ctx = mp.get_context("spawn")
    cfg_dict = asdict(cfg)
    kinds = ("lora", "peft", "ft")
    cuda = cfg.device.startswith("cuda")
    # on CUDA one at a time: the three share the card's memory (DeBERTa XXL's full fine-tuning alone takes ~40 GB)
    with ctx.Pool(1 if cuda else len(kinds), maxtasksperchild=1) as pool:
        pending = {k: pool.apply_async(_memory_child, (k, cfg_dict)) for k in kinds}
        out = {k: r.get() for k, r in pending.items()}
    return {"lora_vs_peft_peak_memory": out["lora"]["peak_mb"] / out["peft"]["peak_mb"],
            "lora_vs_ft_peak_memory": out["lora"]["peak_mb"] / out["ft"]["peak_mb"],
            "lora_vs_peft_memory_increment": out["lora"]["increment_mb"] / out["peft"]["increment_mb"],
            "lora_vs_ft_memory_increment": out["lora"]["increment_mb"] / out["ft"]["increment_mb"],
            "memory_mb": out,
            "memory_measure": ("torch.cuda.max_memory_allocated (after load: memory_allocated)" if cuda else
                               f"process peak RSS (VmHWM, else ru_maxrss) after {cfg.memory_steps} training steps, "
                               "each variant in its own spawned process; increment = peak - RSS right after the model "
                               "was built")}


# ---------------------------------------------------------------- c. inference latency

def bench_latency(cfg: BenchConfig) -> dict:
    """Inference of the base model, LoRA unmerged and LoRA merged (timed under autocast at cfg.precision); merged and
    unmerged logits are compared in fp32."""
    base = base_model(cfg).eval()
    unmerged = build_variant("lora", base, cfg).eval()
    _randomize_b(unmerged)
    merged = merge_lora(copy.deepcopy(unmerged)).eval()
    base = base.to(cfg.device)
    batch = {k: v for k, v in random_batch(cfg, base.config.vocab_size).items() if k != "labels"}
    with torch.no_grad():
        same = torch.allclose(unmerged(**batch).logits, merged(**batch).logits, atol=1e-4, rtol=1e-4)
        with lora_merged(unmerged):
            same_ctx = torch.allclose(unmerged(**batch).logits, merged(**batch).logits, atol=1e-4, rtol=1e-4)

        with autocast_context(torch.device(cfg.device), cfg.precision):
            med = interleaved_times({"base": lambda: base(**batch), "unmerged": lambda: unmerged(**batch),
                                     "merged": lambda: merged(**batch)}, cfg.warmup, cfg.reps, cfg.device,
                                    repeat=max(1, cfg.steps_per_rep * 2))
    return {"merged_vs_base_latency": med["merged"] / med["base"],
            "unmerged_vs_base_latency": med["unmerged"] / med["base"], "latency_seconds": med,
            "merged_equals_unmerged": bool(same and same_ctx),
            "latency_batch": f"{cfg.batch_size} x {cfg.seq_len}, eval, no_grad, {cfg.precision}"}


# ---------------------------------------------------------------- d. padding on real data

def _tokenizer(cfg: BenchConfig):
    from ..models import load_tokenizer
    return load_tokenizer(cfg.model, cfg.tokenizer)


def _task_data(cfg: BenchConfig, task, tokenizer, cache_dir=None):
    from ..glue.data import load_glue, subsample, tokenize
    raw = load_glue(task, cfg.glue_dir)
    raw["train"] = subsample(raw["train"], cfg.padding_train_samples)
    split = task.eval_splits[0]
    raw = type(raw)({"train": raw["train"], split: subsample(raw[split], cfg.padding_eval_samples)})
    return tokenize(raw, task, tokenizer, cfg.padding_max_length, cache_dir), split


@torch.no_grad()
def _predict(model, loader, device, precision="fp32"):
    model.eval()
    logits, labels = [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast_context(torch.device(device), precision):
            out = model(**{k: v for k, v in batch.items() if k != "labels"})
        logits.append(out.logits.float().cpu())
        labels.append(batch["labels"].cpu())
    return torch.cat(logits), torch.cat(labels)


def bench_padding(cfg: BenchConfig) -> dict:
    """Per task: one epoch (or a subsample) of LoRA training steps with dynamic padding, max-length padding and
    length-grouped dynamic batches, interleaved batch by batch on three copies of one model; then the trained
    (dynamic) model evaluated on validation both ways: predictions and metrics must agree."""
    from .loaders import make_bench_loader
    from ..glue.metrics import compute_metrics, predictions_from_logits
    tokenizer = _tokenizer(cfg)
    per_task, totals = {}, {"dynamic": 0.0, "max_length": 0.0, "grouped": 0.0}
    for name in cfg.padding_tasks:
        task = get_task(name)
        tok, split = _task_data(cfg, task, tokenizer)
        base = base_model(cfg, name)
        model0 = build_variant("lora", base, cfg)
        del base
        steppers = {k: Stepper(copy.deepcopy(model0), cfg.precision) for k in totals}
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
                _sync(cfg.device)
                t0 = time.perf_counter()
                losses[k].append(steppers[k].step(batch))
                _sync(cfg.device)
                if not first or len(loaders["dynamic"]) <= 2:  # the first step of each is warm-up (if > 2)
                    times[k] += time.perf_counter() - t0
            first = False
        # same rows, same order, same init: dynamic and max-length training must agree up to float tolerance
        loss_diff = max(abs(a - b) for a, b in zip(losses["dynamic"], losses["max_length"]))
        trained = steppers["dynamic"].model
        eval_dyn = make_bench_loader(tok[split], tokenizer, 32, False)
        eval_max = make_bench_loader(tok[split], tokenizer, 32, False, padding="max_length", max_length=L)
        t0 = time.perf_counter()
        logits_d, labels = _predict(trained, eval_dyn, cfg.device, cfg.precision)
        t_eval_d = time.perf_counter() - t0
        t0 = time.perf_counter()
        logits_m, _ = _predict(trained, eval_max, cfg.device, cfg.precision)
        t_eval_m = time.perf_counter() - t0
        eval_sorted = make_bench_loader(tok[split], tokenizer, 32, False, group_by_length=True)  # what runs use
        t0 = time.perf_counter()
        logits_s, labels_s = _predict(trained, eval_sorted, cfg.device, cfg.precision)
        t_eval_s = time.perf_counter() - t0
        m_s = compute_metrics(task, predictions_from_logits(task, logits_s.numpy()), labels_s.numpy())
        preds_d = predictions_from_logits(task, logits_d.numpy())
        preds_m = predictions_from_logits(task, logits_m.numpy())
        m_d = compute_metrics(task, preds_d, labels.numpy())
        m_m = compute_metrics(task, preds_m, labels.numpy())
        per_task[name] = {
            "train_rows": len(tok["train"]), "eval_rows": len(tok[split]), "batches": len(loaders["dynamic"]),
            "train_seconds": times, "padded_tokens": tokens,
            "dynamic_vs_maxlen_padding_speedup": times["max_length"] / times["dynamic"],
            "grouped_vs_dynamic_speedup": times["dynamic"] / times["grouped"],
            "train_loss_max_abs_diff_dynamic_vs_maxlen": loss_diff,
            "eval_seconds": {"dynamic": t_eval_d, "max_length": t_eval_m, "sorted": t_eval_s},
            "eval_dynamic_vs_maxlen_speedup": t_eval_m / t_eval_d,
            "eval_sorted_vs_dynamic_speedup": t_eval_d / t_eval_s, "eval_sorted_metrics_identical": m_s == m_d,
            "predictions_identical": bool((preds_d == preds_m).all()),
            "logits_max_abs_diff": float((logits_d - logits_m).abs().max()),
            "metrics_dynamic": m_d, "metrics_max_length": m_m,
            "metrics_identical": m_d == m_m}
        for k in totals:
            totals[k] += times[k]
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


# ---------------------------------------------------------------- e. pipeline overhead

def bench_tokenize_cache(cfg: BenchConfig, task_name: str = "sst2") -> dict:
    """data.tokenize with a fresh cache folder (cold: tokenize + save) vs the same call again (warm: load)."""
    from ..glue.data import load_glue, tokenize
    task = get_task(task_name)
    tokenizer = _tokenizer(cfg)
    raw = load_glue(task, cfg.glue_dir)
    if cfg.padding_train_samples:  # tiny / quick: a slice keeps it short; the ratio grows with size
        from ..glue.data import subsample
        n = cfg.padding_train_samples * 50
        raw = type(raw)({s: subsample(d, n) for s, d in raw.items()})
    tmp = tempfile.mkdtemp(prefix="lora_nb_bench_cache_")
    try:
        t0 = time.perf_counter()
        tokenize(raw, task, tokenizer, cfg.seq_len, tmp)
        cold = time.perf_counter() - t0
        warm_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            tokenize(raw, task, tokenizer, cfg.seq_len, tmp)
            warm_times.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    warm = statistics.median(warm_times)
    return {"tokenize_cold_vs_warm": cold / warm,
            "tokenize_cache": {"task": task_name, "rows": sum(len(d) for d in raw.values()), "cold_seconds": cold,
                               "warm_seconds": warm}}


def pipeline_overhead(runs_root) -> dict:
    """Per finished run directory under `runs_root`: papermill_seconds (manifest.json) - train_seconds
    (metrics.json) = notebook kernel start, imports, data preparation, model loading and recording."""
    from ..runs.rundir import MANIFEST, METRICS, read_json
    rows = []
    for manifest in sorted(Path(runs_root).rglob(MANIFEST)):
        metrics = manifest.parent / METRICS
        if not metrics.is_file():
            continue
        m, r = read_json(manifest), read_json(metrics)
        if m.get("papermill_seconds") is None or r.get("train_seconds") is None:
            continue
        total, train = float(m["papermill_seconds"]), float(r["train_seconds"])
        rows.append({"run": str(manifest.parent.relative_to(runs_root)), "papermill_seconds": total,
                     "train_seconds": train, "overhead_seconds": total - train,
                     "overhead_fraction": (total - train) / total if total else None})
    if not rows:
        return {"pipeline_runs": 0}
    return {"pipeline_runs": len(rows),
            "pipeline_overhead_fraction_median": statistics.median(r["overhead_fraction"] for r in rows),
            "pipeline_overhead_seconds_median": statistics.median(r["overhead_seconds"] for r in rows),
            "pipeline": rows}


# ---------------------------------------------------------------- throughput for the cost model

def bench_throughput(cfg: BenchConfig) -> list[dict]:
    """LoRA and full fine-tuning training samples/s at each length in cfg.throughput_seq_lens (random ids)."""
    from ..runs.rundir import device_description
    base = base_model(cfg)
    rows = []
    for L in cfg.throughput_seq_lens:
        c = BenchConfig(**{**asdict(cfg), "seq_len": L})
        batch = random_batch(c, base.config.vocab_size)
        steppers = {k: Stepper(build_variant(k, base, c), c.precision) for k in ("lora", "ft")}
        med = interleaved_times({k: (lambda s=s: s.step(batch)) for k, s in steppers.items()},
                                cfg.warmup, max(1, cfg.reps // 2), cfg.device)
        for k, sec in med.items():
            rows.append({"device": device_description(), "model": cfg.model, "method": k, "seq_len": L,
                         "batch_size": cfg.batch_size, "samples_per_s": cfg.batch_size / sec,
                         "note": f"lora-nb bench, {cfg.precision}"})
        del steppers
    return rows


# ---------------------------------------------------------------- everything

BENCH_PARTS = ("step", "memory", "latency", "padding", "tokenize", "pipeline", "throughput")


def run_bench(cfg: BenchConfig, parts=BENCH_PARTS, log=None) -> dict:
    from ..runs.rundir import device_description
    from ..train import configure_progress
    log = log or (lambda msg: None)
    configure_progress("none")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        from ..errors import LoraNbError
        raise LoraNbError("--device cuda: no CUDA device here.")
    out = {"model": cfg.model, "weights": _weights(cfg), "device": device_description(),
           "torch_threads": torch.get_num_threads(), "config": {k: v for k, v in asdict(cfg).items()},
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    t_all = time.perf_counter()
    steps = [("step", bench_step_time), ("memory", bench_memory), ("latency", bench_latency),
             ("padding", bench_padding), ("tokenize", bench_tokenize_cache)]
    for name, fn in steps:
        if name in parts:
            log(f"bench: {name} ...")
            t0 = time.perf_counter()
            out.update(fn(cfg))
            out.setdefault("part_seconds", {})[name] = time.perf_counter() - t0
            _release_cuda_cache(cfg.device)
    if "pipeline" in parts and cfg.runs:
        out.update(pipeline_overhead(cfg.runs))
    if "throughput" in parts:
        log("bench: throughput ...")
        out["throughput"] = bench_throughput(cfg)
    out["bench_seconds"] = time.perf_counter() - t_all
    return out


RATIO_KEYS = ("lora_vs_peft_step_time", "lora_vs_peft_peak_memory", "lora_vs_peft_memory_increment",
              "lora_vs_ft_step_time", "lora_vs_ft_peak_memory", "lora_vs_ft_memory_increment",
              "merged_vs_base_latency", "unmerged_vs_base_latency", "dynamic_vs_maxlen_padding_speedup",
              "dynamic_vs_maxlen_padding_speedup_sst2", "dynamic_vs_maxlen_padding_speedup_rte",
              "grouped_vs_dynamic_speedup", "eval_sorted_vs_dynamic_speedup", "tokenize_cold_vs_warm",
              "pipeline_overhead_fraction_median")


def summary_lines(out: dict) -> list[str]:
    """A short human-readable summary of a run_bench result."""
    lines = [f"model {out['model']} ({out['weights']} weights, {out.get('config', {}).get('precision', 'fp32')}), "
             f"device {out['device']}"]
    lines += [f"{k:>40}: {out[k]:.3f}" for k in RATIO_KEYS if isinstance(out.get(k), (int, float))]
    for k in ("padding_predictions_identical", "padding_metrics_identical", "eval_sorted_metrics_identical",
              "merged_equals_unmerged"):
        if k in out:
            lines.append(f"{k:>40}: {out[k]}")
    if "memory_measure" in out:
        lines.append(f"memory: {out['memory_measure']}")
    return lines


def ratios_markdown(outs: list[dict]) -> str:
    """A Markdown table of the ratios of several run_bench results side by side (one column per model)."""
    flags = ("padding_predictions_identical", "padding_metrics_identical", "eval_sorted_metrics_identical",
             "merged_equals_unmerged")
    precisions = [o.get("config", {}).get("precision", "fp32") for o in outs]
    names = [o["model"] + ("" if p == "fp32" else f" ({p})") for o, p in zip(outs, precisions)]
    lines = ["| ratio | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(outs)]
    for k in (*RATIO_KEYS, *flags):
        cells = [f"{o[k]:.3f}" if isinstance(o.get(k), float) else str(o.get(k, "—")) for o in outs]
        lines.append(f"| `{k}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def append_throughput_csv(rows: list[dict], path) -> None:
    """Add measured throughput rows to a CSV (the cost model reads lora_nb_utils/reference/throughput.csv)."""
    import csv
    from datetime import date
    path = Path(path)
    new = not path.is_file()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["device", "model", "method", "seq_len", "batch_size", "samples_per_s",
                                           "measured", "note"])
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({**r, "samples_per_s": round(r["samples_per_s"], 3), "measured": date.today().isoformat(),
                        "note": r.get("note", "lora-nb bench")})
