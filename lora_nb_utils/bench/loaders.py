"""Batching for benchmarks: padding every batch to a fixed length (what the official scripts did) beside the
dynamic and length-grouped batches of data.make_loader (what runs use)."""
from __future__ import annotations

from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from ..glue.data import make_loader


def make_bench_loader(ds, tokenizer, batch_size: int, shuffle: bool, seed: int = 0, *, padding: str = "dynamic",
                      max_length: int = 512, group_by_length: bool = False) -> DataLoader:
    """padding='dynamic' (data.make_loader: each batch to its longest row, optionally length-grouped) or
    'max_length' (every batch to `max_length`, as the official scripts; the same row order as dynamic)."""
    if padding not in ("dynamic", "max_length"):
        raise ValueError(f"padding must be 'dynamic' or 'max_length', not {padding!r}")
    collate = (DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)
               if padding == "max_length" else None)
    return make_loader(ds, tokenizer, batch_size, shuffle, seed, group_by_length=group_by_length, collate_fn=collate)
