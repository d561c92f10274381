"""Extra batching for benchmarks: padding every batch to a fixed length (what the official scripts did), and
length-grouped batches (sort by length inside shuffled mega-batches). data.make_loader stays the training default."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding


class LengthGroupedBatchSampler(Sampler):
    """Shuffle, cut into mega-batches of `batch_size * mega_batch_factor` rows, sort each by length (longest first),
    cut into batches, then shuffle the batch order. Every row appears once per epoch; fixed by `seed` and epoch."""

    def __init__(self, lengths, batch_size: int, seed: int = 0, mega_batch_factor: int = 50, shuffle: bool = True):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.mega, self.shuffle, self.epoch = batch_size * mega_batch_factor, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.lengths)
        order = torch.randperm(n, generator=g).tolist() if self.shuffle else list(range(n))
        batches = []
        for start in range(0, n, self.mega):
            chunk = sorted(order[start:start + self.mega], key=lambda i: -self.lengths[i])
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def __iter__(self):
        self.epoch_batches = self._batches()
        return iter(self.epoch_batches)

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def make_bench_loader(ds, tokenizer, batch_size: int, shuffle: bool, seed: int = 0, *, padding: str = "dynamic",
                      max_length: int = 512, group_by_length: bool = False, mega_batch_factor: int = 50) -> DataLoader:
    """padding='dynamic' (each batch to its longest row, as data.make_loader) or 'max_length' (every batch to
    `max_length`, as the official scripts). group_by_length: batches of similar lengths (LengthGroupedBatchSampler).
    Without group_by_length the row order for a seed is the one data.make_loader gives."""
    collate = (DataCollatorWithPadding(tokenizer) if padding == "dynamic" else
               DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length))
    if padding not in ("dynamic", "max_length"):
        raise ValueError(f"padding must be 'dynamic' or 'max_length', not {padding!r}")
    if group_by_length:
        lengths = [len(x) for x in ds["input_ids"]]
        sampler = LengthGroupedBatchSampler(lengths, batch_size, seed, mega_batch_factor, shuffle)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)
