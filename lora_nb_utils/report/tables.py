"""The report's tables for people: readable headers with units, scores rounded as the paper rounds them (x100, one
decimal), a verdict per cell as one word, and `show`, which renders a table (or its 'nothing to show' line) in the
notebook with the classes the printed report's CSS uses (short tables are not split across pages)."""
from __future__ import annotations

import html

import pandas as pd

from .core import (FT_TOLERANCE, PAPER_RANK, TASK_LABELS, TASK_ORDER, compare_to_paper, config_key, human_count,
                     message, model_label, signed, table2_layout)

KEEP_ROWS = 30  # tables up to this many rows are kept on one page
VERDICT_COLORS = {"reproduced": "#d9f2d9", "match": "#d9f2d9", "partly": "#fff0c2", "inconclusive": "#e8e8e8",
                  "not reproduced": "#f8d7d3", "below": "#f8d7d3", "above": "#dbe8fb"}


def _score(x, pm=None) -> str:
    if x is None or pd.isna(x):
        return "—"
    return f"{x:.1f}" + (f" ± {pm:.1f}" if pm is not None and not pd.isna(pm) else "")


def _verdict_color(text) -> str:
    text = str(text)
    for word in ("not reproduced", "reproduced", "partly", "inconclusive", "match", "below", "above"):
        if word in text:
            return f"background-color: {VERDICT_COLORS[word]}"
    return ""


def show(obj, verdicts=None, footnote: str | None = None, title: str = "") -> None:
    """Display a table for people (its title above and footnote below, kept with it on the printed page), a list as
    bullets or a string as a paragraph. None, an empty list or an empty table display nothing (a section without
    data is left out of the report). `verdicts`: the columns whose cells are coloured by their verdict word (default:
    a column named 'Verdict', or the table's attrs['verdicts'])."""
    from IPython.display import HTML, Markdown, display
    if obj is None or len(obj) == 0:
        return
    if isinstance(obj, str):
        display(Markdown(obj))
        return
    if isinstance(obj, (list, tuple)):
        display(Markdown("\n".join(f"- {line}" for line in obj)))
        return
    display(HTML(table_html(obj, verdicts, footnote, title)))


def table_html(obj: pd.DataFrame, verdicts=None, footnote: str | None = None, title: str = "") -> str:
    """The HTML of one table: caption, table and footnote in one block (class 'keep' for a short table, which the
    printed report does not split across pages)."""
    table = obj.copy()
    for c in table.columns:  # counts that pandas made float by a missing value
        if pd.api.types.is_float_dtype(table[c]) and table[c].dropna().apply(float.is_integer).all():
            table[c] = table[c].round().astype("Int64")
    styler = table.style.format(precision=1, na_rep="—", thousands=",")
    text = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    short = [c for c in table.columns if table[c].astype(str).str.len().max() <= 24]  # kept on one line
    if short:
        styler = styler.set_properties(subset=short, **{"white-space": "nowrap"})
    if text:
        styler = styler.set_properties(subset=text, **{"text-align": "left"})
        styler = styler.set_table_styles([{"selector": f"th.col{table.columns.get_loc(c)}",
                                           "props": [("text-align", "left")]} for c in text], overwrite=False)
    verdicts = verdicts if verdicts is not None else obj.attrs.get("verdicts", ["Verdict"])
    verdicts = [c for c in verdicts if c in table.columns]
    if verdicts:
        styler = styler.map(_verdict_color, subset=verdicts)
    if isinstance(table.index, pd.RangeIndex):
        styler = styler.hide(axis="index")
    if title:
        styler = styler.set_caption(html.escape(title))
    note = footnote or obj.attrs.get("footnote")
    foot = f'<p class="footnote">{html.escape(note)}</p>' if note else ""
    kind = "keep" if len(table) <= KEEP_ROWS else "long"
    return f'<div class="table-block {kind}">{styler.to_html()}{foot}</div>'


# ---------------------------------------------------------------- Table 2 and the verdicts

def table2_view(agg: pd.DataFrame, ranks=(PAPER_RANK,)) -> pd.DataFrame:
    """The paper's Table 2 layout for people: Model, Method, Trainable params, Source, the 8 tasks and Avg., scores
    x100 with one decimal; the paper's rows with their ± (our rows first, then the paper's)."""
    t2 = table2_layout(agg, ranks=ranks)
    if message(t2):
        return t2
    pms = t2.attrs.get("paper_pm", {})
    tasks = [TASK_LABELS[t] for t in TASK_ORDER]
    labels = {v: k for k, v in TASK_LABELS.items()}
    rows = []
    for key, r in t2.iterrows():
        model, method, params, source = key
        pm = pms.get(key, {})
        row = {"Model": model_label(model), "Method": method, "Trainable params": params,
               "Source": "paper" if source == "paper" else "ours"}
        row.update({t: _score(r[t], pm.get(labels[t])) for t in tasks})
        row["Avg."] = _score(r["Avg"])
        rows.append(row)
    out = pd.DataFrame(rows)
    n_ours = t2.xs("ours", level="source")[tasks].notna().sum(axis=1)
    tasks_ours = f"{n_ours.max()}" if n_ours.min() == n_ours.max() else f"{n_ours.min()} to {n_ours.max()}"
    out.attrs["footnote"] = ("Median over seeds of each run's reported score, x100 (MNLI: matched accuracy; CoLA: "
                             "Matthews correlation; STS-B: Pearson correlation; the rest: accuracy); — no run. Avg.: "
                             f"mean over the tasks in the row (ours: {tasks_ours}; the paper's: all 8). Trainable "
                             "params of adapters count the adapter matrices only, as the paper does; the "
                             "classification head trains too. The paper's ± is its spread over 5 seeds.")
    return out


def verdict_view(agg: pd.DataFrame, ft_tolerance: float = FT_TOLERANCE) -> pd.DataFrame:
    """Per configuration (FT, LoRA at the paper's rank, AdaLoRA, SoRA) and task: the difference from the reference
    (the paper's cell, or our FT for a model the paper does not report) and a one-word verdict, e.g. '−2.8 below'."""
    cmp = compare_to_paper(agg, ft_tolerance)
    if message(cmp):
        return cmp
    cmp = cmp[(cmp["reference"] != "") & ((cmp["method"] != "lora") | (cmp["lora_r"] == PAPER_RANK))]
    if cmp.empty:
        out = pd.DataFrame(columns=["Method"])
        out.attrs["message"] = "No cell has a reference to compare with (the paper's value or our own FT)."
        return out
    cmp = cmp.assign(cell=[f"{signed(d)} {v}" for d, v in zip(cmp["difference"], cmp["verdict"])])
    rows = []
    for (model, label, ref), g in cmp.groupby(["model", "config", "reference"], sort=False):
        row = {"Model": model_label(model), "Method": label, "Compared with": ref}
        row.update({TASK_LABELS.get(t, t): c for t, c in zip(g["task"], g["cell"])})
        rows.append(row)
    out = pd.DataFrame(rows)
    out = out.iloc[sorted(range(len(out)), key=lambda i: (out["Model"].iloc[i], config_key(out["Method"].iloc[i])))]
    tasks = [TASK_LABELS[t] for t in TASK_ORDER if TASK_LABELS[t] in out]
    out = out[["Model", "Method", "Compared with", *tasks]].fillna("—").reset_index(drop=True)
    if out["Model"].nunique() == 1:
        out = out.drop(columns="Model")
    out.attrs["footnote"] = (f"Points (x100), ours minus the reference's median. match: within the tolerance (the "
                             f"paper's ± for LoRA, {ft_tolerance:g} point otherwise); below / above: outside it.")
    out.attrs["verdicts"] = tasks
    return out


def configurations_view(agg: pd.DataFrame, ft_tolerance: float = FT_TOLERANCE) -> pd.DataFrame:
    """Every configuration and task (the appendix): median, mean ± s.d., range and runs over seeds, the reference
    and the verdict."""
    cmp = compare_to_paper(agg, ft_tolerance)
    if message(cmp):
        return cmp
    full = agg.merge(cmp[["model", "method", "lora_r", "task", "reference", "reference_value", "paper_pm",
                          "difference", "verdict"]], on=["model", "method", "lora_r", "task"], how="left")
    rows = []
    for r in full.itertuples(index=False):
        runs = f"{r.n}" + (f" + {r.n_excluded} excluded" if r.n_excluded else "")
        ref = "—" if not r.reference else f"{r.reference} {_score(r.reference_value, r.paper_pm)}"
        rows.append({"Model": model_label(r.model), "Method": r.config,
                     "Task": TASK_LABELS.get(r.task, r.task), "Median": _score(r.median),
                     "Mean ± s.d.": _score(r.mean, r.std), "Min–max": "—" if pd.isna(r.min) else
                     f"{r.min:.1f}–{r.max:.1f}", "Runs": runs, "Seeds": r.seeds.replace(",", ", ") or "—",
                     "Trainable params": human_count(r.trainable_params), "Reference": ref,
                     "Difference": signed(r.difference), "Verdict": r.verdict})
    out = pd.DataFrame(rows)
    if out["Model"].nunique() == 1:
        out = out.drop(columns="Model")
    out.attrs["footnote"] = ("Reported scores x100 over seeds; excluded runs (collapsed, NaN loss, failed, timed out) "
                             "are left out of every statistic. Trainable params include the classification head. "
                             f"Verdict as in Table 2's comparison (tolerance: the paper's ± or {ft_tolerance:g} "
                             "point).")
    return out


REFERENCE_METHODS = {"full_ft": "FT", "lora_r8": "LoRA r=8", "lora_r2": "LoRA r=2", "adalora": "AdaLoRA",
                     "sora": "SoRA", "adapter": "Adapter", "bitfit": "BitFit"}
REFERENCE_HEADERS = {"mnli_m": "MNLI-m", "mnli_mm": "MNLI-mm", "avg": "Avg.", "mnli": "MNLI", "sst2": "SST-2",
                     "cola": "CoLA", "qqp_acc": "QQP acc.",
                     "qqp_f1": "QQP F1", "qnli": "QNLI", "rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B",
                     "mrpc_acc": "MRPC acc.", "mrpc_f1": "MRPC F1", "source": "Source"}


def reference_view(table: pd.DataFrame) -> pd.DataFrame:
    """An AdaLoRA / SoRA reference table (report.reference_table) with readable headers and one decimal."""
    out = table.reset_index().rename(columns={"model": "Model", "method": "Method", "params": "Params"})
    out["Method"] = out["Method"].map(lambda m: REFERENCE_METHODS.get(m, m))
    out["Model"] = out["Model"].map(model_label)
    out = out.rename(columns=lambda c: REFERENCE_HEADERS.get(c, c))
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda x: "—" if pd.isna(x) else f"{x:.1f}")
    out.attrs["footnote"] = table.attrs.get("footnote")
    return out


def rank_view(ra: pd.DataFrame) -> pd.DataFrame:
    """The rank ablation (report.rank_ablation) as a tasks x ranks grid of medians."""
    if message(ra):
        return ra
    grid = ra.assign(Task=ra["task"].map(lambda t: TASK_LABELS.get(t, t)), r=ra["lora_r"].map(lambda r: f"r={r}"))
    out = grid.pivot_table(index=["model", "Task"], columns="r", values="median", sort=False)
    out = out[sorted(out.columns, key=lambda c: int(c[2:]))].map(_score).reset_index()
    out = out.rename(columns={"model": "Model"}).assign(Model=lambda f: f["Model"].map(model_label))
    out.columns.name = None
    return out.drop(columns="Model") if out["Model"].nunique() == 1 else out
