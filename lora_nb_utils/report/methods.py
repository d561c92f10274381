"""The method comparison on our own runs (FT, LoRA and every other registered method: AdaLoRA, SoRA, the LoRA family):
the reported score per task (mean over seeds, as the AdaLoRA and SoRA papers aggregate) beside trainable and
effective parameter counts, and what SoRA's gates did, including a lambda sweep when one was run."""
from __future__ import annotations

import pandas as pd

from ..glue.tasks import TASK_LABELS, TASK_ORDER
from ..methods import METHODS
from .format import (METHOD_NAMES, METHOD_ORDER, NothingToShow, config_labels, human_count, message, model_label,
                     seed_range, signed, trains_adapter)
from .select import EXCLUDED, PAPER_RANK, has_runs, reported_scores, sora_sweep
from .verdicts import FT_TOLERANCE, cells_text, claim

NO_METHODS = "No finished runs of a method beyond FT and LoRA beside other methods on the same task yet."
PAPER_PAIR = ("ft", "lora")  # the LoRA paper's comparison; every other method is compared with LoRA


def beyond_the_paper(methods: pd.Series) -> pd.Series:
    """Which rows are of a method other than the LoRA paper's two (AdaLoRA, SoRA, the LoRA family)."""
    return ~methods.isin(PAPER_PAIR)


def _effective(g: pd.DataFrame) -> float:
    """Adapter parameters that remain after training: AdaLoRA / SoRA record them; LoRA keeps all; FT has none."""
    if "effective_params" in g and g["effective_params"].notna().any():
        return g["effective_params"].median()
    return g["lora_params"].median() if trains_adapter(g["method"].iloc[0]) else float("nan")


def methods_comparison(results: pd.DataFrame) -> pd.DataFrame | NothingToShow:
    """One row per model and method: per task 'mean ± std' of the reported score x100 over seeds (the test part for
    split 'sora'), the number of seeds, the trainable parameters (with the head) and the adapter parameters left
    after training (AdaLoRA's final ranks, SoRA's non-zero gates)."""
    ok = reported_scores(results)  # empty, with its columns, when there are no runs
    if not beyond_the_paper(ok["method"]).any() or ok.groupby("task")["method"].nunique().max() < 2:
        return NothingToShow(NO_METHODS)
    ok = ok.assign(label=config_labels(ok), _m=ok["method"].map({m: i for i, m in enumerate(METHOD_ORDER)}))
    tasks = [t for t in TASK_ORDER if t in set(ok["task"])]
    rows = []
    for (model, _, label), g in ok.groupby(["model", "_m", "label"], sort=True):
        row = {"Model": model_label(model), "Method": label,
               "Trainable params": human_count(g["trainable_params"].median()),
               "Adapter after training": human_count(_effective(g))}
        for t in tasks:
            s = g.loc[g["task"] == t, "score100"]
            row[TASK_LABELS[t]] = f"{s.mean():.1f} ± {s.std(ddof=1):.1f}" if len(s) > 1 else (
                f"{s.mean():.1f}" if len(s) else "—")
        row["Seeds"] = seed_range(g)
        row["Split"] = ", ".join(sorted(g["split"].dropna().astype(str).unique()))
        rows.append(row)
    out = pd.DataFrame(rows)
    out = out.drop(columns=[c for c in ("Model", "Split") if out[c].nunique() == 1])  # said once, in the summary
    out.attrs["footnote"] = ("Reported score x100, mean ± standard deviation over seeds (the AdaLoRA and SoRA papers' "
                             "aggregation). Trainable params include the classification head. Adapter after "
                             "training: all of LoRA's (and its family's), AdaLoRA's final ranks, SoRA's ranks whose "
                             "gate is not zero. SoRA's r is its maximum rank; VeRA's r is the rank of its shared "
                             "random projections.")
    return out


def sora_gates(results: pd.DataFrame) -> pd.DataFrame | NothingToShow:
    """Every finished SoRA run (the sweep's too): its L1 strength, gates at exactly zero and adapter parameters left
    after the last epoch, and its validation and test scores x100 (at the best epoch, which may come earlier)."""
    has = has_runs(results) and "sora_lambda" in results
    s = results[(results["method"] == "sora") & (results["status"] == "ok")] if has else pd.DataFrame()
    if s.empty:
        return NothingToShow("No finished SoRA runs.")
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


GATE_HEADERS = {"model": "Model", "task": "Task", "seed": "Seed", "sora_lambda": "λ",
                "zero gates at the end": "Zero gates at the end", "adapter at the end": "Adapter at the end",
                "validation": "Validation part (x100)", "test": "Test part (x100)"}


def sora_gates_view(results: pd.DataFrame) -> pd.DataFrame | NothingToShow:
    """sora_gates with readable headers (the model column only when there are several)."""
    gates = sora_gates(results)
    if message(gates):
        return gates
    gates = gates.assign(model=gates["model"].map(model_label)).rename(columns=GATE_HEADERS)
    return gates.drop(columns=["Model"]) if gates["Model"].nunique() == 1 else gates


def methods_findings(results: pd.DataFrame) -> list[str]:
    """Sentences generated from the runs: each method against LoRA per task, AdaLoRA's budget, SoRA's gates."""
    ok = reported_scores(results)  # empty, with its columns, when there are no runs
    if "lora" not in set(ok["method"]) or not beyond_the_paper(ok["method"]).any():
        return []
    ok = ok[(ok["method"] != "lora") | (ok["lora_r"] == PAPER_RANK)]  # LoRA at the paper's rank, not an ablation
    out = []
    for (model, method), diff in _versus_lora(results).items():
        cells = ", ".join(f"{TASK_LABELS.get(t, t)} {signed(d)}" for t, d in diff.items())
        out.append(f"{model_label(model)}, {METHOD_NAMES.get(method, method)} minus LoRA r={PAPER_RANK} (mean over "
                   f"seeds, x100): {cells}; average {signed(diff.mean())} over {len(diff)} task(s).")
    sora = ok[ok["method"] == "sora"]
    if len(sora) and "zero_gates" in sora:
        zero, total = int(sora["zero_gates"].sum()), int(sora["total_gates"].sum())
        out.append(f"SoRA (λ {', '.join(f'{x:g}' for x in sorted(sora['sora_lambda'].unique()))}): "
                   f"{zero} of {total} gates at exactly zero over {len(sora)} runs"
                   + (", so every SoRA run kept all ranks and trained as LoRA with a gate per rank." if zero == 0
                      else "."))
    swept = sora_gates(results)
    for (model, task, seed), g in swept.groupby(["model", "task", "seed"]) if not message(swept) else []:
        if len(g) > 1:
            steps = "; ".join(f"λ {r['sora_lambda']}: {r['zero gates at the end']} zero, test {r['test']:.1f}"
                              for _, r in g.iterrows())
            out.append(f"SoRA λ sweep, {model_label(model)} {task} seed {seed}: {steps}.")
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


def _versus_lora(results: pd.DataFrame) -> dict:
    """Per model and method: the mean over seeds minus LoRA's (at the paper's rank), per task."""
    ok = reported_scores(results)
    ok = ok[(ok["method"] != "lora") | (ok["lora_r"] == PAPER_RANK)]
    means = ok.groupby(["model", "method", "task"])["score100"].mean().unstack("task")
    out = {}
    for model, m in means.groupby(level="model"):
        m = m.droplevel("model")
        if "lora" in m.index:
            for method in sorted(m.index.drop("lora"), key=lambda x: (METHOD_ORDER + (x,)).index(x)):
                diff = (m.loc[method] - m.loc["lora"]).dropna()
                out[(model, method)] = diff.reindex([t for t in TASK_ORDER if t in diff.index])
    return out


def method_claims(results: pd.DataFrame, tolerance: float = FT_TOLERANCE) -> list[dict]:
    """Each method paper's claim against LoRA (the registry's `paper_claim`: AdaLoRA, SoRA, the LoRA family), with a
    verdict, for the summary (none without such runs beside LoRA). 'Beats LoRA': reproduced when above LoRA on most
    tasks and below on none, inconclusive when every task is within the tolerance. 'Matches LoRA': reproduced when
    below on none. SoRA's claim also needs gates that closed."""
    rows = []
    for (model, method), diff in _versus_lora(results).items():
        m = METHODS.get(method)
        if m is None or not m.paper_claim or diff.empty:
            continue
        above, below = int((diff > tolerance).sum()), int((diff < -tolerance).sum())
        text = (f"{model_label(model)}, {METHOD_NAMES[method]} minus LoRA r={PAPER_RANK}, mean over seeds: "
                f"{cells_text(diff, tolerance)}.")
        if m.claim_beats_lora:
            verdict = ("not reproduced" if below * 2 >= len(diff) else "inconclusive" if above == below == 0
                       else "reproduced" if below == 0 and above * 2 >= len(diff) else "partly")
        else:
            verdict = "reproduced" if below == 0 else "partly" if below * 2 < len(diff) else "not reproduced"
        if method == "sora":  # its claim is about pruning: without a closed gate it was not tested
            verdict, gates = _sora_gates_verdict(results, model, verdict)
            text += gates
        rows.append(claim(m.paper_claim, verdict, text))
    return rows


def _sora_gates_verdict(results: pd.DataFrame, model: str, verdict: str) -> tuple[str, str]:
    sora = reported_scores(results)
    sora = sora[(sora["method"] == "sora") & (sora["model"] == model)]
    zero = int(sora["zero_gates"].sum()) if "zero_gates" in sora else 0
    total = int(sora["total_gates"].sum()) if "total_gates" in sora else 0
    if zero == 0:
        return "inconclusive", (f" No gate reached zero ({total} gates, {len(sora)} runs): SoRA kept every rank and "
                                "trained as LoRA, so its sparsity was not tested.")
    return verdict, f" {zero} of {total} gates closed over {len(sora)} runs."
