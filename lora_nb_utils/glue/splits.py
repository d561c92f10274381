"""Data-split protocols: which rows train, which select the best epoch (validation) and which are reported (test).

glue_dev (default): train on GLUE train, select and report on the GLUE validation set(s) (the LoRA paper's protocol).
sora: SoRA's protocol (Ding et al. 2023, their src/processor.py; also AdaLoRA-style comparisons), seed 42 with
  `torch.randperm(n, generator=torch.Generator().manual_seed(42))`:
  - small tasks (cola, rte, mrpc, stsb, mnli): the GLUE validation set shuffled; the first n // 2 rows are the
    validation part (model selection), the rest the test part (for MNLI each of matched / mismatched is split);
  - large tasks (sst2, qnli, qqp): the training set shuffled with the same generator; its first 1000 rows are the
    validation part, the remaining rows stay training; the GLUE validation set is the test part.
holdout: the fair-comparison protocol (learning-rate sweeps, early stopping): for every task, the training set
  shuffled with the same generator; its first 10% (at most 1000 rows) are the held-out part, which picks the best
  epoch and the swept value; the rest trains; the GLUE validation set(s), never seen by any choice, are the test
  part, reported like the paper's dev-set numbers.
"""
from __future__ import annotations

import torch
from datasets import DatasetDict

from ..errors import LoraNbError
from .tasks import Task

SPLITS = ("glue_dev", "sora", "holdout")  # the protocols above; RunConfig.split is one of them
SORA_SEED = 42
SORA_SMALL_TASKS = ("cola", "rte", "mrpc", "stsb", "mnli")
SORA_LARGE_TASKS = ("sst2", "qnli", "qqp")
SORA_LARGE_VALIDATION = 1000
HOLDOUT_FRACTION, HOLDOUT_MAX = 0.1, 1000


def sora_permutation(n: int, seed: int = SORA_SEED) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def test_name(split: str) -> str:
    """validation -> test, validation_matched -> test_matched."""
    return split.replace("validation", "test", 1)


def apply_split(raw: DatasetDict, task: Task, split: str = "glue_dev") -> tuple[DatasetDict, list[str], list[str]]:
    """Rearrange the loaded GLUE splits (train + task.eval_splits) for the protocol. Returns the new DatasetDict,
    the selection split names (the first one picks the best epoch) and the test split names (empty for glue_dev)."""
    if split not in SPLITS:
        raise LoraNbError(f"split must be one of {', '.join(SPLITS)}, not {split!r}.")
    if split == "glue_dev":
        return raw, list(task.eval_splits), []
    if split == "holdout":
        return _carve_from_train(raw, task, holdout_size(len(raw["train"])))
    out = DatasetDict({"train": raw["train"]})
    if task.name in SORA_SMALL_TASKS:
        for s in task.eval_splits:
            order = sora_permutation(len(raw[s]))
            half = len(order) // 2
            out[s] = raw[s].select(order[:half])
            out[test_name(s)] = raw[s].select(order[half:])
    elif task.name in SORA_LARGE_TASKS:
        return _carve_from_train(raw, task, SORA_LARGE_VALIDATION)
    else:
        raise LoraNbError(f"split 'sora' has no rule for task {task.name!r}.")
    return out, list(task.eval_splits), [test_name(s) for s in task.eval_splits]


def holdout_size(n_train: int) -> int:
    """Rows of the held-out part of split 'holdout': 10% of the training set, at most 1000."""
    return min(HOLDOUT_MAX, int(n_train * HOLDOUT_FRACTION))


def _carve_from_train(raw: DatasetDict, task: Task, n: int) -> tuple[DatasetDict, list[str], list[str]]:
    """The first n rows of the shuffled training set select (named as the task's first validation split); the rest
    trains; every GLUE validation split becomes a test part (MNLI: the held-out part selects for both)."""
    order = sora_permutation(len(raw["train"]))
    first = task.eval_splits[0]
    out = DatasetDict({"train": raw["train"].select(order[n:]), first: raw["train"].select(order[:n])})
    for s in task.eval_splits:
        out[test_name(s)] = raw[s]
    return out, [first], [test_name(s) for s in task.eval_splits]
