"""The benchmarks' parts, each a dict of figures: our LoRA vs PEFT's LoRA vs full fine-tuning (training step time,
peak memory), inference latency (base / unmerged / merged), dynamic vs max-length padding on real GLUE (padding.py),
the tokenization cache, the pipeline overhead of finished runs, and training throughput for the cost model; run_bench
runs the parts asked for.

Every figure is a ratio of variants measured in one run, interleaved (timing.py), after warm-up, the median of
several repetitions; absolute times are reported only beside the device description. Peak memory: on CPU each
variant runs in its own spawned process and reports its peak RSS (VmHWM) and the increment over the RSS after the
model was loaded; on CUDA torch.cuda.max_memory_allocated."""
from __future__ import annotations

import copy
import multiprocessing as mp
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import configure_progress
from ..errors import LoraNbError
from ..glue.data import load_glue, subsample, tokenize
from ..glue.tasks import get_task
from ..methods.lora import lora_merged, merge_lora
from ..models import load_tokenizer
from ..runs.rundir import MANIFEST, METRICS, device_description, read_json
from ..train import autocast_context
from .config import BenchConfig
from .padding import bench_padding
from .timing import interleaved_times, memory_now_mb, memory_peak_mb, release_cuda_cache
from .variants import base_model, build_variant, random_batch, randomize_b, train_step

BENCH_PARTS = ("step", "memory", "latency", "padding", "tokenize", "pipeline", "throughput")


# ---------------------------------------------------------------- a. b. step time

def bench_step_time(cfg: BenchConfig) -> dict:
    base = base_model(cfg)
    batch = random_batch(cfg, base.config.vocab_size)
    steppers = {k: train_step(build_variant(k, base, cfg), cfg.precision) for k in ("lora", "peft", "ft")}
    med = interleaved_times({k: (lambda s=s: s.step(batch)) for k, s in steppers.items()},
                            cfg.warmup, cfg.reps, cfg.device, cfg.steps_per_rep)
    trainable = {k: sum(p.numel() for p in s.trainable) for k, s in steppers.items()}
    return {"lora_vs_peft_step_time": med["lora"] / med["peft"], "lora_vs_ft_step_time": med["lora"] / med["ft"],
            "step_seconds": med, "trainable_parameters": trainable,
            "samples_per_s": {k: cfg.batch_size / v for k, v in med.items()},
            "step_batch": f"{cfg.batch_size} x {cfg.seq_len} random token ids, {cfg.precision}"}


# ---------------------------------------------------------------- peak memory, one spawned process per variant

def _memory_child(kind: str, cfg_dict: dict) -> dict:
    cfg = BenchConfig(**cfg_dict)
    base = base_model(cfg)
    model = build_variant(kind, base, cfg)
    del base
    batch = random_batch(cfg, model.config.vocab_size)
    cuda = cfg.device.startswith("cuda")
    after_load = memory_now_mb(cuda)
    stepper = train_step(model, cfg.precision)
    for _ in range(cfg.memory_steps):
        stepper.step(batch)
    peak = memory_peak_mb(cuda)
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
    randomize_b(unmerged)
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


# ---------------------------------------------------------------- e. pipeline overhead

def bench_tokenize_cache(cfg: BenchConfig, task_name: str = "sst2") -> dict:
    """data.tokenize with a fresh cache folder (cold: tokenize + save) vs the same call again (warm: load)."""
    task = get_task(task_name)
    tokenizer = load_tokenizer(cfg.model, cfg.tokenizer)
    raw = load_glue(task, cfg.glue_dir)
    if cfg.padding_train_samples:  # tiny / quick: a slice keeps it short; the ratio grows with size
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
    base = base_model(cfg)
    rows = []
    for L in cfg.throughput_seq_lens:
        c = BenchConfig(**{**asdict(cfg), "seq_len": L})
        batch = random_batch(c, base.config.vocab_size)
        steppers = {k: train_step(build_variant(k, base, c), c.precision) for k in ("lora", "ft")}
        med = interleaved_times({k: (lambda s=s: s.step(batch)) for k, s in steppers.items()},
                                cfg.warmup, max(1, cfg.reps // 2), cfg.device)
        for k, sec in med.items():
            rows.append({"device": device_description(), "model": cfg.model, "method": k, "seq_len": L,
                         "batch_size": cfg.batch_size, "samples_per_s": cfg.batch_size / sec,
                         "note": f"lora-nb bench, {cfg.precision}"})
        del steppers
    return rows


# ---------------------------------------------------------------- everything

def run_bench(cfg: BenchConfig, parts=BENCH_PARTS, log=None) -> dict:
    log = log or (lambda msg: None)
    configure_progress("none")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise LoraNbError("--device cuda: no CUDA device here.")
    out = {"model": cfg.model, "weights": cfg.weights_kind, "device": device_description(),
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
            release_cuda_cache(cfg.device)
    if "pipeline" in parts and cfg.runs:
        out.update(pipeline_overhead(cfg.runs))
    if "throughput" in parts:
        log("bench: throughput ...")
        out["throughput"] = bench_throughput(cfg)
    out["bench_seconds"] = time.perf_counter() - t_all
    return out
