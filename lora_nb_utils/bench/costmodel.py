"""Cost model: device-hours of a run, a Table 2 cell or a whole grid, from measured training throughput.

    hours = train_rows x epochs / samples_per_s(model, method, padded_len) / 3600

- samples_per_s comes from reference/throughput.csv (device, model, method, seq_len, batch_size, samples_per_s:
  rows written by `lora-nb bench --throughput-csv`). Between measured lengths the time per sample is interpolated
  linearly in the length; outside them it scales with the tokens (length ratio). A model with no measurement is
  scaled from a measured one by FLOPs (parameters x tokens), and the estimate says so.
- padded_len is the expected length a batch is padded to under dynamic padding: E[min(max of batch_size row
  lengths, max_seq_len)], from the per-task length percentiles in reference/task_lengths.csv (RoBERTa tokenizer);
  with group_by_length, the mean row length (a batch's rows have nearly one length).
- Training only: evaluation passes, data preparation and notebook start-up are left out (see `lora-nb bench
  --runs` for the measured pipeline overhead). Attention's quadratic term is in the measurements, not in the scaling.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

from ..errors import LoraNbError
from ..glue.splits import SORA_LARGE_TASKS, SORA_LARGE_VALIDATION, holdout_size
from ..glue.tasks import TASK_ORDER, get_task
from ..models import skeleton
from ..methods import METHODS
from ..paper import REFERENCE_DIR
from ..paths import repo_root
from ..runs.rundir import METRICS, is_finished, read_json

THROUGHPUT_CSV = REFERENCE_DIR / "throughput.csv"
LENGTHS_CSV = REFERENCE_DIR / "task_lengths.csv"
TABLE2_MODELS = ("roberta-base", "roberta-large", "deberta-v2-xxlarge")


def load_throughput(path=None) -> pd.DataFrame:
    return pd.read_csv(path or THROUGHPUT_CSV, comment="#")


@lru_cache(maxsize=None)
def _length_quantiles(task: str) -> tuple[float, ...]:
    t = pd.read_csv(LENGTHS_CSV)
    q = t[t["task"] == task].sort_values("quantile")["tokens"].tolist()
    if len(q) != 101:
        raise LoraNbError(f"{LENGTHS_CSV.name}: no length percentiles for task {task!r}.")
    return tuple(q)


def expected_padded_length(task: str, batch_size: int, max_seq_len: int, padding: str = "dynamic") -> float:
    """E[min(max of batch_size row lengths, max_seq_len)] (rows drawn at random), or max_seq_len for 'max_length'.
    With percentiles Q_0..Q_100: sum_k mid(Q_k, Q_k+1) ((k+1)/100)^b - (k/100)^b). 'grouped' (group_by_length: a
    batch holds rows of nearly one length) is E[min(row length, max_seq_len)], the mean row."""
    if padding == "max_length":
        return float(max_seq_len)
    q = _length_quantiles(get_task(task).name)
    if padding == "grouped":
        return sum(min((q[k] + q[k + 1]) / 2, max_seq_len) for k in range(100)) / 100
    total = 0.0
    for k in range(100):
        mid = min((q[k] + q[k + 1]) / 2, max_seq_len)
        total += mid * (((k + 1) / 100) ** batch_size - (k / 100) ** batch_size)
    return total


@lru_cache(maxsize=None)
def model_parameters(model: str) -> int:
    """All parameters of the architecture (its meta-device skeleton, no weights; the 2-label head)."""
    return sum(p.numel() for p in skeleton(model, get_task("sst2")).parameters())


def _device_rows(table: pd.DataFrame, device: str | None) -> tuple[pd.DataFrame, str]:
    kinds = table["device"].str.split(":").str[0]
    if device is None:
        device = "cuda" if (kinds == "cuda").any() else "cpu"
    rows = table[kinds == device]
    if rows.empty:
        raise LoraNbError(f"no throughput measured on {device!r} in {THROUGHPUT_CSV.name}; run "
                          f"`lora-nb bench --device {device} --throughput-csv {THROUGHPUT_CSV}`.")
    return rows, device


def samples_per_s(model: str, method: str, seq_len: float, device: str | None = None,
                  table: pd.DataFrame | None = None) -> tuple[float, str]:
    """(training samples/s, how it was obtained) for `model` and `method` at padded length `seq_len`."""
    rows, device = _device_rows(load_throughput() if table is None else table, device)
    method = "lora" if method in METHODS and METHODS[method].trains_adapter else "ft"  # the rows bench measures
    rows = rows[rows["method"] == method]
    if rows.empty:
        raise LoraNbError(f"no {method!r} throughput on {device} in {THROUGHPUT_CSV.name}.")
    mine = rows[rows["model"] == model]
    scale, basis = 1.0, "measured"
    if mine.empty:  # scale from the measured model nearest in size, by parameters x tokens
        target = model_parameters(model)
        ref = min(rows["model"].unique(), key=lambda m: abs(model_parameters(m) - target))
        mine, scale = rows[rows["model"] == ref], model_parameters(ref) / target
        basis = f"scaled by FLOPs (parameters x tokens) from {ref}"
    per_len = mine.groupby("seq_len")["samples_per_s"].median().sort_index()
    lens, sec = list(per_len.index), [1 / v for v in per_len.values]  # seconds per sample at each length
    if seq_len <= lens[0]:
        s = sec[0] * seq_len / lens[0]
    elif seq_len >= lens[-1]:
        s = sec[-1] * seq_len / lens[-1]
    else:
        i = next(i for i in range(len(lens) - 1) if lens[i] <= seq_len <= lens[i + 1])
        w = (seq_len - lens[i]) / (lens[i + 1] - lens[i])
        s = sec[i] * (1 - w) + sec[i + 1] * w
    if len(lens) == 1 and seq_len != lens[0]:
        basis += f", length-scaled from {lens[0]} tokens"
    return scale / s, f"{basis} on {mine['device'].iloc[0]}"


def estimate_run_hours(model: str, task: str, epochs: int, batch_size: int, max_seq_len: int, method: str = "lora",
                       train_rows: int | None = None, device: str | None = None, padding: str = "dynamic",
                       table: pd.DataFrame | None = None) -> dict:
    """Training hours of one run (see the module docstring)."""
    spec = get_task(task)
    task, rows = spec.name, train_rows if train_rows else spec.train_rows
    length = expected_padded_length(task, batch_size, max_seq_len, padding)
    sps, basis = samples_per_s(model, method, length, device, table)
    samples = rows * epochs
    return {"model": model, "task": task, "method": method, "epochs": epochs, "batch_size": batch_size,
            "max_seq_len": max_seq_len, "train_rows": rows, "padded_len": round(length, 1),
            "samples_per_s": sps, "hours": samples / sps / 3600, "basis": basis}


def _repo_params() -> Path:
    return repo_root() / "params"


def table2_estimates(params_root=None, device: str | None = None, padding: str = "dynamic",
                     table: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per Table 2 cell (params/<model>/<task>.yaml): hours of one seed's training run."""
    root = Path(params_root) if params_root else _repo_params()
    out = []
    for model in TABLE2_MODELS:
        for task in TASK_ORDER:
            f = root / model / f"{task}.yaml"
            if not f.is_file():
                continue
            p = yaml.safe_load(f.read_text())
            out.append(estimate_run_hours(p.get("model", model), task, p["epochs"], p["batch_size"],
                                          p["max_seq_len"], p.get("method", "lora"), device=device, padding=padding,
                                          table=table))
    return pd.DataFrame(out)


def estimate_plan_hours(plan, device: str | None = None, padding: str = "dynamic") -> dict:
    """Training hours of every run of a plan (lora_nb_utils.grid.load_plan), and the total; confirm runs of sweep
    groups not chosen yet are counted at their group's first candidate (the swept values do not change the cost).
    Returns {'runs': [...], 'total_hours', 'todo_hours' (runs not finished), 'device', 'bases', 'early_stopping'}."""
    table = load_throughput()
    _, device = _device_rows(table, device)
    planned = [(r.name, r.params, r.run_dir if is_finished(r.run_dir, r.hashes) else None) for r in plan.runs]
    planned += [(f"{s.group},seed={p['seed']}", {**s.candidates[0].params, "seed": p["seed"]}, None)
                for s in getattr(plan, "selections", []) if s.chosen is None for p in s.confirm_params]
    runs = []
    for name, p, finished_dir in planned:
        pads = "grouped" if padding == "dynamic" and p.get("group_by_length") else padding
        est = estimate_run_hours(p["model"], p["task"], p["epochs"], p["batch_size"], p["max_seq_len"],
                                 p.get("method", "lora"), _train_rows(p), device, pads, table)
        runs.append({"name": name, "finished": finished_dir is not None, **est, **_measured(finished_dir)})
    return {"runs": runs, "total_hours": sum(x["hours"] for x in runs),
            "todo_hours": sum(x["hours"] for x in runs if not x["finished"]), "device": device,
            "bases": sorted({x["basis"] for x in runs}),
            "early_stopping": any(p.get("early_stopping_patience") for _, p, _ in planned)}


def _measured(run_dir) -> dict:
    """A finished run's measured training hours and epochs run (metrics.json); {} when it has none."""
    if run_dir is None:
        return {}
    try:
        metrics = read_json(Path(run_dir) / METRICS)
        return {"measured_hours": float(metrics["train_seconds"]) / 3600, "epochs_run": int(metrics["epochs_run"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def measured_pace(estimate: dict) -> dict | None:
    """The plan's finished runs against the model (estimate: estimate_plan_hours): `pace`, the median of measured
    over estimated time per epoch (the machine, its load and its workers as they were), `epoch_fraction`, the
    median of epochs run over max epochs (early stopping), and the runs still to run at that pace,
    `todo_hours_at_cap` (every run to its max epochs) and `todo_hours_expected` (stopping as the finished runs did).
    None without a finished run that recorded its time."""
    done = [r for r in estimate["runs"] if r["finished"] and r.get("measured_hours") and r.get("epochs_run")
            and r["epochs"] and r["hours"]]
    if not done:
        return None
    pace = float(pd.Series([r["measured_hours"] / (r["hours"] * r["epochs_run"] / r["epochs"]) for r in done]).median())
    fraction = float(pd.Series([min(1.0, r["epochs_run"] / r["epochs"]) for r in done]).median())
    at_cap = estimate["todo_hours"] * pace
    return {"runs": len(done), "pace": pace, "epoch_fraction": fraction, "todo_hours_at_cap": at_cap,
            "todo_hours_expected": at_cap * fraction}


def _train_rows(params: dict) -> int | None:
    """Training rows of a run: the split's training part (split holdout / sora carve selection rows out of it),
    capped by max_train_samples; None = the whole GLUE training set."""
    task = get_task(params["task"])
    rows = task.train_rows
    if params.get("split") == "holdout":
        rows -= holdout_size(rows)
    elif params.get("split") == "sora" and task.name in SORA_LARGE_TASKS:
        rows -= SORA_LARGE_VALIDATION
    cap = params.get("max_train_samples") or 0
    return min(rows, cap) if cap > 0 else rows
