"""The method comparison on our own runs (ft, lora, adalora, sora): the reported score per task (mean over seeds,
as the AdaLoRA and SoRA papers aggregate) beside trainable and effective parameter counts, and what SoRA's gates
did, including a lambda sweep when one was run."""
from __future__ import annotations

import pandas as pd

from .report import (EXCLUDED, PAPER_RANK, TASK_LABELS, TASK_ORDER, _empty, _has_runs, human_count, message,
                     method_label, reported_scores, seed_range, sora_sweep)

METHOD_ORDER = ("ft", "lora", "adalora", "sora")
METHOD_NAMES = {"ft": "FT", "lora": "LoRA", "adalora": "AdaLoRA", "sora": "SoRA"}
NO_METHODS = "No finished AdaLoRA or SoRA runs beside other methods on the same task yet."


def _label(row) -> str:
    if row["method"] == "adalora" and pd.notna(row.get("adalora_init_r")):
        return f"AdaLoRA r {int(row['adalora_init_r'])}->{int(row['adalora_target_r'])}"
    if row["method"] == "sora" and pd.notna(row.get("lora_r")):
        return f"SoRA r_max={int(row['lora_r'])}"
    return method_label(row["method"], row.get("lora_r"))


def _effective(g: pd.DataFrame) -> float:
    """Adapter parameters that remain after training: AdaLoRA / SoRA record them; LoRA keeps all; FT has none."""
    if "effective_params" in g and g["effective_params"].notna().any():
        return g["effective_params"].median()
    return g["lora_params"].median() if g["method"].iloc[0] != "ft" else float("nan")


def methods_comparison(results: pd.DataFrame) -> pd.DataFrame:
    """One row per model and method: per task 'mean ± std' of the reported score x100 over seeds (the test part for
    split 'sora'), the number of seeds, the trainable parameters (with the head) and the adapter parameters left
    after training (AdaLoRA's final ranks, SoRA's non-zero gates)."""
    ok = reported_scores(results)  # empty, with its columns, when there are no runs
    if not ok["method"].isin(["adalora", "sora"]).any() or ok.groupby("task")["method"].nunique().max() < 2:
        return _empty(["model", "method"], NO_METHODS)
    ok = ok.assign(label=ok.apply(_label, axis=1), _m=ok["method"].map({m: i for i, m in enumerate(METHOD_ORDER)}))
    tasks = [t for t in TASK_ORDER if t in set(ok["task"])]
    rows = []
    for (model, _, label), g in ok.groupby(["model", "_m", "label"], sort=True):
        row = {"model": model, "method": label, "trainable": human_count(g["trainable_params"].median()),
               "adapter after training": human_count(_effective(g))}
        for t in tasks:
            s = g.loc[g["task"] == t, "score100"]
            row[TASK_LABELS[t]] = f"{s.mean():.1f} ± {s.std(ddof=1):.1f}" if len(s) > 1 else (
                f"{s.mean():.1f}" if len(s) else "—")
        row["seeds"] = seed_range(g)
        row["split"] = ", ".join(sorted(g["split"].dropna().astype(str).unique()))
        rows.append(row)
    return pd.DataFrame(rows)


def sora_gates(results: pd.DataFrame) -> pd.DataFrame:
    """Every finished SoRA run (the sweep's too): its L1 strength, gates at exactly zero and adapter parameters left
    after the last epoch, and its validation and test scores x100 (at the best epoch, which may come earlier)."""
    has = _has_runs(results) and "sora_lambda" in results
    s = results[(results["method"] == "sora") & (results["status"] == "ok")] if has else pd.DataFrame()
    if s.empty:
        return _empty(["task", "seed", "sora_lambda"], "No finished SoRA runs.")
    out = pd.DataFrame({"model": s["model"], "task": s["task"].map(TASK_LABELS), "seed": s["seed"],
                        "sora_lambda": s["sora_lambda"].astype(float),
                        "zero gates at the end": [f"{int(z)} / {int(t)}" for z, t in zip(s["zero_gates"],
                                                                                          s["total_gates"])],
                        "adapter at the end": s["effective_params"].map(human_count),
                        "validation": 100 * s["score"].astype(float),
                        "test": 100 * s["test_score"].astype(float) if "test_score" in s else float("nan")})
    out = out.sort_values(["model", "task", "seed", "sora_lambda"]).reset_index(drop=True)
    out["sora_lambda"] = out["sora_lambda"].map(lambda x: f"{x:g}")  # shown as given (0.375, not 0.4)
    return out


def methods_findings(results: pd.DataFrame) -> list[str]:
    """Sentences generated from the runs: each method against LoRA per task, AdaLoRA's budget, SoRA's gates."""
    ok = reported_scores(results)  # empty, with its columns, when there are no runs
    if "lora" not in set(ok["method"]) or not ok["method"].isin(["adalora", "sora"]).any():
        return [NO_METHODS]
    ok = ok[(ok["method"] != "lora") | (ok["lora_r"] == PAPER_RANK)]  # LoRA at the paper's rank, not an ablation
    means = ok.groupby(["model", "method", "task"])["score100"].mean().unstack("task")
    out = []
    for model, m in means.groupby(level="model"):
        m = m.droplevel("model")
        if "lora" not in m.index:
            continue
        for method in [x for x in METHOD_ORDER if x in m.index and x != "lora"]:
            diff = (m.loc[method] - m.loc["lora"]).dropna()
            if diff.empty:
                continue
            cells = ", ".join(f"{TASK_LABELS[t]} {d:+.1f}" for t, d in diff.reindex(
                [t for t in TASK_ORDER if t in diff.index]).items())
            out.append(f"{model}, {METHOD_NAMES[method]} minus LoRA (mean over seeds, x100): {cells}; "
                       f"average {diff.mean():+.1f} over {len(diff)} task(s).")
    sora = ok[ok["method"] == "sora"]
    if len(sora) and "zero_gates" in sora:
        zero, total = int(sora["zero_gates"].sum()), int(sora["total_gates"].sum())
        out.append(f"SoRA (lambda {', '.join(f'{x:g}' for x in sorted(sora['sora_lambda'].unique()))}): "
                   f"{zero} of {total} gates at exactly zero over {len(sora)} runs"
                   + (", so every SoRA run kept all ranks and trained as LoRA with a gate per rank." if zero == 0
                      else "."))
    swept = sora_gates(results)
    for (model, task, seed), g in swept.groupby(["model", "task", "seed"]) if not message(swept) else []:
        if len(g) > 1:
            steps = "; ".join(f"lambda {r['sora_lambda']}: {r['zero gates at the end']} zero, test {r['test']:.1f}"
                              for _, r in g.iterrows())
            out.append(f"SoRA lambda sweep, {model} {task} seed {seed}: {steps}.")
    bad = results[results["status"].isin(EXCLUDED) & ~sora_sweep(results)]
    if len(bad):
        out.append("Left out of the means: " + ", ".join(
            f"{METHOD_NAMES.get(r['method'], r['method'])} {TASK_LABELS.get(r['task'], r['task'])} seed {r['seed']} "
            f"({r['status']})" for _, r in bad.iterrows()) + ".")
    ada = ok[ok["method"] == "adalora"]
    if len(ada) and "effective_params" in ada:
        out.append(f"AdaLoRA: {human_count(ada['lora_params'].median())} adapter parameters allocated, "
                   f"{human_count(ada['effective_params'].median())} left after the budget (median over "
                   f"{len(ada)} runs).")
    return out
