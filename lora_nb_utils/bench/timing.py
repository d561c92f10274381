"""How the benchmarks measure. Time: the functions run interleaved (A B C, B C A, C A B, ...) after warm-up rounds,
and each gets the median of several rounds, with the device synchronised around every timed call. Memory: a
process's peak, the resident set's high-water mark on CPU (VmHWM) and the CUDA allocator's peak on GPU; a variant
measured in a process of its own has a peak of its own."""
from __future__ import annotations

import gc
import os
import statistics
import time

import torch

from ..train import peak_rss_mb


def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device="cpu"):
    """(fn(), its seconds), the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def interleaved_times(fns: dict, warmup: int, reps: int, device="cpu", repeat: int = 1) -> dict:
    """Median seconds per call of each function, measured interleaved after `warmup` rounds; the order rotates
    every round (A B C, B C A, C A B, ...) so no variant always runs right after the same other one."""
    times = {k: [] for k in fns}
    keys = list(fns)
    for r in range(warmup + reps):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            fn = fns[k]
            sync(device)
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            sync(device)
            if r >= warmup:
                times[k].append((time.perf_counter() - t0) / repeat)
    return {k: statistics.median(v) for k, v in times.items()}


def release_cuda_cache(device) -> None:
    """Give the caching allocator's free blocks back after a part, so spawned memory children find the card empty."""
    if str(device).startswith("cuda"):
        gc.collect()
        torch.cuda.empty_cache()


def memory_now_mb(cuda: bool) -> float:
    """What this process holds now: CUDA allocated memory (peak statistics reset from here on), or its RSS."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_peak_mb(cuda: bool) -> float:
    """This process's peak: the CUDA allocator's since memory_now_mb, or the peak RSS."""
    if cuda:
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()
