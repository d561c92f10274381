"""How the report writes things for people: names of models, methods, tasks and weight matrices, parameter counts,
signed differences, swept values, the paper's task order, and NothingToShow, what a report function returns in
place of a table when there is nothing to show, and why."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..glue.tasks import TASK_ORDER
from ..methods import METHODS

METHOD_ORDER = tuple(METHODS)  # the registry's order: ft, lora, adalora, sora, then the LoRA family
METHOD_NAMES = {m.name: m.title for m in METHODS.values()}
MODEL_NAMES = {"minilm": "MiniLM", "roberta-base": "RoBERTa-base", "roberta-large": "RoBERTa-large",
               "deberta-v2-xxlarge": "DeBERTa-XXL", "deberta-v3-base": "DeBERTa-v3-base"}
MATRIX_NAMES = {"query": "W_q", "key": "W_k", "value": "W_v", "attn_out": "W_o"}  # the paper's notation
NO_RESULTS = "No finished runs yet: the results table is empty, so there is nothing to compare."


@dataclass(frozen=True)
class NothingToShow:
    """In place of a table: there is nothing to show, and `reason` says why. render.show displays nothing for it
    (a section without data is left out of the report)."""
    reason: str = NO_RESULTS


def message(obj) -> str | None:
    """Why there is nothing to show (a NothingToShow's reason); None when `obj` is something to show."""
    return obj.reason if isinstance(obj, NothingToShow) else None


# ---------------------------------------------------------------- values

def human_count(n) -> str:
    """A parameter count as the paper prints it: 125M, 0.3M, 74K."""
    if n is None or pd.isna(n):
        return "—"
    n = float(n)
    if n >= 1e6:
        return f"{n / 1e6:.1f}M" if n < 1e8 else f"{n / 1e6:.0f}M"
    return f"{n / 1e6:.2f}M" if n >= 1e4 else f"{n:,.0f}"


def matrices(targets) -> str:
    """A LoRA target set in the paper's notation: 'query,value' -> 'W_q, W_v'."""
    return ", ".join(MATRIX_NAMES.get(t, t) for t in str(targets).split(","))


def signed(x) -> str:
    """A difference in points with its sign and a real minus: +0.7, −2.7 ('—' for none)."""
    if x is None or pd.isna(x):
        return "—"
    return "0.0" if round(x, 1) == 0 else f"{x:+.1f}".replace("-", "−")


def span(values) -> str:
    """Integers as a compact range: 1–3, or 1, 2, 4 when not contiguous ('none' for none)."""
    vals = sorted({int(v) for v in values if not pd.isna(v)})
    if not vals:
        return "none"
    if len(vals) > 1 and vals == list(range(vals[0], vals[-1] + 1)):
        return f"{vals[0]}–{vals[-1]}"
    return ", ".join(str(v) for v in vals)


def value_text(v) -> str:
    """A swept value as people write it: 5e-4, 3.5e-4, 1e-2, 0.4 (at most 3 significant digits)."""
    v = float(v)
    if not 0 < abs(v) < 0.1:
        return f"{v:g}"
    mantissa, exponent = f"{v:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def score_text(x, pm=None) -> str:
    """A score x100 with one decimal, and the paper's ± when given: 89.7 ± 0.7 ('—' for none)."""
    if x is None or pd.isna(x):
        return "—"
    return f"{x:.1f}" + (f" ± {pm:.1f}" if pm is not None and not pd.isna(pm) else "")


# ---------------------------------------------------------------- names

def model_label(model) -> str:
    return MODEL_NAMES.get(model, str(model))


def method_label(method: str, lora_r=None, adalora_init_r=None, adalora_target_r=None, **ranks) -> str:
    """A configuration as the report names it: FT, LoRA r=8, AdaLoRA r=12→8, SoRA r=8 (r: SoRA's r_max); `ranks`:
    the rank parameters of other registered methods (Method.label)."""
    values = {"lora_r": lora_r, "adalora_init_r": adalora_init_r, "adalora_target_r": adalora_target_r, **ranks}
    return METHODS[method].label(values) if method in METHODS else str(method)


def config_labels(runs: pd.DataFrame) -> pd.Series:
    """method_label for every row of a results table."""
    ranks = [c for c in dict.fromkeys(p for m in METHODS.values() for p in m.rank_parameters) if c in runs]
    return pd.Series([method_label(r["method"], **{c: r[c] for c in ranks}) for r in runs.to_dict("records")],
                     index=runs.index, dtype=object)


def trains_adapter(method) -> bool:
    """Whether a method is sized by its adapter (the LoRA matrices) rather than all its trainable parameters (FT)."""
    return method not in METHODS or METHODS[method].trains_adapter


def config_key(label: str) -> tuple:
    """Sort key for method_label strings: FT, LoRA by rank, AdaLoRA, SoRA, then the rest."""
    name, _, rank = label.partition(" r=")
    names = list(METHOD_NAMES.values())
    digits = "".join(ch for ch in rank.split("→")[0] if ch.isdigit())
    return (names.index(name) if name in names else len(names), int(digits) if digits else 0, label)


def seed_range(runs: pd.DataFrame) -> str:
    """Seeds per task of these runs: '3', or '2–3' when tasks differ."""
    n = runs.groupby("task")["seed"].nunique()
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"


# ---------------------------------------------------------------- order

def task_order(tasks) -> list:
    """The tasks present, in the paper's column order (unknown names last)."""
    tasks = set(tasks)
    return [t for t in TASK_ORDER if t in tasks] + sorted(tasks - set(TASK_ORDER))


def sort_rows(frame: pd.DataFrame, task_col: str = "task") -> pd.DataFrame:
    """Rows by model, method (METHOD_ORDER), rank and task (the paper's order)."""
    order = {t: i for i, t in enumerate(TASK_ORDER)}
    methods = {m: i for i, m in enumerate(METHOD_ORDER)}
    keys = frame[task_col].map(lambda t: order.get(t, len(order)))
    frame = frame.assign(_k=keys)
    by = ["model"] if "model" in frame else []
    if "method" in frame:
        frame = frame.assign(_m=frame["method"].map(lambda m: methods.get(m, len(methods))))
        by.append("_m")
    by += [c for c in ("lora_r",) if c in frame] + ["_k"]
    return frame.sort_values(by, kind="stable").drop(columns=[c for c in ("_k", "_m") if c in frame]).reset_index(
        drop=True)
