"""Where GLUE is loaded: the hub dataset nyu-mll/glue or a local Parquet mirror, tokenized once and cached."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import datasets
import torch
from datasets import DatasetDict, load_dataset, load_from_disk
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding

from ..errors import LoraNbError
from ..hub import hub_offline_requested, hub_reachable
from .tasks import Task

GLUE_HUB_ID = "nyu-mll/glue"
GLUE_DIR_ENV = "LORA_NB_GLUE_DIR"
CACHE_ENV = "LORA_NB_CACHE"
SUBSAMPLE_SEED = 0  # the same training subset for every seed, method and rank
GLUE_FIX = (f"point the `glue_dir` parameter or ${GLUE_DIR_ENV} at a folder in the hub's Parquet layout "
            "(<task>/<split>-00000-of-00001.parquet), or run where the Hugging Face hub is reachable.")


def glue_source(glue_dir: str | None = None) -> str | None:
    """The local GLUE folder to use (parameter first, then $LORA_NB_GLUE_DIR), or None for the hub."""
    return glue_dir or os.environ.get(GLUE_DIR_ENV) or None


def _load_local(task: Task, root: Path, splits: list[str]) -> DatasetDict:
    if not root.is_dir():
        raise LoraNbError(f"GLUE folder {str(root)!r} does not exist or is not a folder. Fix: {GLUE_FIX}")
    files = {s: root / task.name / f"{s}-00000-of-00001.parquet" for s in splits}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise LoraNbError(f"GLUE task {task.name!r}: missing {', '.join(missing)}. Fix: {GLUE_FIX}")
    for f in files.values():
        _check_parquet(f)
    try:
        return load_dataset("parquet", data_files={s: str(f) for s, f in files.items()})
    except Exception as e:  # datasets wraps reader errors in its own types
        raise LoraNbError(f"GLUE task {task.name!r}: cannot read {', '.join(map(str, files.values()))} "
                          f"({type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}). "
                          f"Fix: copy those files again; {GLUE_FIX}") from None


def _check_parquet(path: Path) -> None:
    """The file's Parquet footer can be read (a truncated, empty or corrupt file fails naming it)."""
    import pyarrow.parquet as pq
    try:
        pq.read_metadata(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError with the reason
        raise LoraNbError(f"{path}: not a readable Parquet file, truncated or corrupt ({e}). Fix: copy or download "
                          f"it again; {GLUE_FIX}") from None


def _load_hub(task: Task, splits: list[str]) -> DatasetDict:
    if not hub_offline_requested() and not hub_reachable():
        raise LoraNbError(f"Cannot load GLUE {task.name!r} from the hub ({GLUE_HUB_ID}): it is not reachable from "
                          f"this machine. Fix: {GLUE_FIX}")
    try:
        full = load_dataset(GLUE_HUB_ID, task.name)
    except Exception as e:  # offline with nothing cached, or a hub error
        raise LoraNbError(f"Cannot load GLUE {task.name!r} from the hub ({e}). Fix: {GLUE_FIX}") from None
    return DatasetDict({s: full[s] for s in splits})


def load_glue(task: Task, glue_dir: str | None = None, splits: list[str] | None = None) -> DatasetDict:
    """Train + validation splits of a GLUE task, from a local Parquet mirror or the hub, with columns checked."""
    splits = splits or ["train", *task.eval_splits]
    root = glue_source(glue_dir)
    dsd = _load_local(task, Path(root), splits) if root else _load_hub(task, splits)
    for split, ds in dsd.items():
        missing = [c for c in (*task.text_columns, "label") if c not in ds.column_names]
        if missing:
            raise LoraNbError(f"GLUE {task.name!r} split {split!r} lacks column(s) {missing} (has {ds.column_names}). "
                              f"Is this the right task folder? Fix: {GLUE_FIX}")
    return dsd


def subsample(ds: datasets.Dataset, n: int) -> datasets.Dataset:
    """The first n rows after a fixed shuffle (SUBSAMPLE_SEED); n <= 0 or n >= len keeps everything."""
    if n <= 0 or n >= len(ds):
        return ds
    return ds.shuffle(seed=SUBSAMPLE_SEED).select(range(n))


def cache_root(cache_dir: str | None = None) -> Path:
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lora_nb") / "tokenized"


def _tokenizer_digest(tokenizer) -> str:
    """Identifies the vocabulary and pipeline, not the call state: the backend records the last call's truncation
    and padding settings, which must not change the cache key."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        ident = json.dumps(state, sort_keys=True)
    else:
        ident = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(f"{type(tokenizer).__name__}|{ident}".encode()).hexdigest()[:16]


def tokenize(dsd: DatasetDict, task: Task, tokenizer, max_seq_len: int, cache_dir: str | None = None) -> DatasetDict:
    """Truncate to max_seq_len (no padding: batches are padded dynamically). Cached on disk by tokenizer, task,
    length and data fingerprint, so every seed and rank reuses one tokenization."""
    key = hashlib.sha256(json.dumps([_tokenizer_digest(tokenizer), task.name, max_seq_len,
                                     {s: d._fingerprint for s, d in dsd.items()}]).encode()).hexdigest()[:20]
    path = cache_root(cache_dir) / f"{task.name}-{max_seq_len}-{key}"
    if path.is_dir():
        return load_from_disk(str(path))

    def encode(batch):
        out = tokenizer(*(batch[c] for c in task.text_columns), truncation=True, max_length=max_seq_len)
        out["labels"] = [float(x) for x in batch["label"]] if task.is_regression else batch["label"]
        return out

    columns = next(iter(dsd.values())).column_names
    tokenized = dsd.map(encode, batched=True, remove_columns=columns, desc=f"tokenize {task.name}")
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tokenized.save_to_disk(str(tmp))
    try:
        os.replace(tmp, path)  # atomic: a concurrent run may have finished first, then keep theirs
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_from_disk(str(path))


class LengthGroupedBatchSampler(Sampler):
    """Batches of rows of similar length, so dynamic padding pads little. shuffle=True (training): shuffle, cut into
    mega-batches of `batch_size * mega_batch_factor` rows, sort each by length (longest first), cut into batches,
    shuffle the batch order; a new order every epoch, fixed by `seed`. shuffle=False (evaluation): all rows sorted
    by length. Every row appears once per pass."""

    def __init__(self, lengths, batch_size: int, seed: int = 0, mega_batch_factor: int = 50, shuffle: bool = True):
        self.lengths, self.batch_size, self.seed = list(lengths), batch_size, seed
        self.mega = batch_size * mega_batch_factor if shuffle else max(len(self.lengths), 1)
        self.shuffle, self.epoch = shuffle, 0

    def _batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + epoch)
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
        batches = self._batches(self.epoch)
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def make_loader(ds: datasets.Dataset, tokenizer, batch_size: int, shuffle: bool, seed: int = 0,
                num_workers: int = 0, group_by_length: bool = False, collate_fn=None) -> DataLoader:
    """Batches padded to their own longest sequence; the shuffle order is fixed by `seed`. group_by_length:
    batches of similar lengths (LengthGroupedBatchSampler): less padding, but for training it changes which rows
    share a batch, hence the results; for evaluation (shuffle=False) only the order of the rows changes.
    `collate_fn` replaces the dynamic-padding collator (the benchmarks pad to a fixed length with it)."""
    collate = collate_fn or DataCollatorWithPadding(tokenizer)
    if group_by_length:
        sampler = LengthGroupedBatchSampler([len(x) for x in ds["input_ids"]], batch_size, seed, shuffle=shuffle)
        return DataLoader(ds, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers,
                      collate_fn=collate)
