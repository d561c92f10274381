"""The AdaLoRA and SoRA papers' tables (DeBERTa-v3-base on GLUE) with our means beside them, for the appendix: shown
only when we have AdaLoRA, SoRA or DeBERTa-v3-base runs (the papers' setting)."""
from __future__ import annotations

import pandas as pd

from ..paper import load_reference
from .format import human_count, method_label, model_label, seed_range, trains_adapter
from .select import reported_scores


def reference_table(name: str, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """The AdaLoRA or SoRA reference table (methods x task metrics), our means beside it when we have such runs."""
    ref = load_reference(name)
    wide = ref.pivot_table(index=["model", "method", "trainable_params"], columns="task_metric", values="value",
                           sort=False)
    wide = wide.rename(index=lambda m: m.split("/")[-1], level="model")
    wide.insert(0, "source", "paper")
    ok = reported_scores(results)
    deberta_v3 = ok["model"].isin(["deberta-v3-base", "microsoft/deberta-v3-base"])
    mine = ok[ok["method"].isin(["adalora", "sora"]) | (deberta_v3 & ok["method"].isin(["lora", "ft"]))]
    rename = {"mnli": "mnli_m", "qqp": "qqp_acc"}
    rows = []
    for (model, method, lora_r), g in mine.groupby(["model", "method", "lora_r"], dropna=False):
        params = g["lora_params"].median() if trains_adapter(method) else g["trainable_params"].median()
        means = g.groupby("task")["score100"].mean()  # their aggregation: mean over seeds
        split = ", ".join(sorted(g["split"].dropna().astype(str).unique())) if "split" in g else ""
        source = f"ours: mean of {seed_range(g)} seed(s){', split ' + split if split else ''}"
        rows.append(pd.Series({"source": source, **{rename.get(t, t): v for t, v in means.items()}},
                              name=(model, method_label(method, lora_r), human_count(params))))
    if rows:
        wide = pd.concat([wide, pd.DataFrame(rows)])
    wide.index.names = ["model", "method", "params"]
    wide.columns.name = None
    wide.attrs["footnote"] = (f"{ref['aggregation'].iloc[0]}. Source: {ref['source'].iloc[0]}. Our STS-B is "
                              "Pearson (theirs: mean of Pearson and Spearman); our MNLI is matched accuracy.")
    return wide


REFERENCE_METHODS = {"full_ft": "FT", "lora_r8": "LoRA r=8", "lora_r2": "LoRA r=2", "adalora": "AdaLoRA",
                     "sora": "SoRA", "adapter": "Adapter", "bitfit": "BitFit"}
REFERENCE_HEADERS = {"mnli_m": "MNLI-m", "mnli_mm": "MNLI-mm", "avg": "Avg.", "mnli": "MNLI", "sst2": "SST-2",
                     "cola": "CoLA", "qqp_acc": "QQP acc.",
                     "qqp_f1": "QQP F1", "qnli": "QNLI", "rte": "RTE", "mrpc": "MRPC", "stsb": "STS-B",
                     "mrpc_acc": "MRPC acc.", "mrpc_f1": "MRPC F1", "source": "Source"}


def reference_view(table: pd.DataFrame) -> pd.DataFrame:
    """An AdaLoRA / SoRA reference table (reference_table) with readable headers and one decimal."""
    out = table.reset_index().rename(columns={"model": "Model", "method": "Method", "params": "Params"})
    out["Method"] = out["Method"].map(lambda m: REFERENCE_METHODS.get(m, m))
    out["Model"] = out["Model"].map(model_label)
    out = out.rename(columns=lambda c: REFERENCE_HEADERS.get(c, c))
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda x: "—" if pd.isna(x) else f"{x:.1f}")
    out.attrs["footnote"] = table.attrs.get("footnote")
    return out


def reference_tables(results: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The AdaLoRA and SoRA papers' tables with our means beside them, for people; none without AdaLoRA, SoRA or
    DeBERTa-v3-base runs (the papers' setting)."""
    ok = reported_scores(results)
    if not (ok["method"].isin(["adalora", "sora"]).any() or ok["model"].isin(["deberta-v3-base"]).any()):
        return []
    return [("AdaLoRA paper, Table 1 (DeBERTa-v3-base)", reference_view(reference_table("adalora_paper_table1",
                                                                                       results))),
            ("SoRA paper, GLUE table (DeBERTa-v3-base)", reference_view(reference_table("sora_paper_table", results)))]
