"""The method comparison (report_methods): which runs it uses, how it aggregates, what it says."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lora_nb_utils import report
from lora_nb_utils.report import methods as report_methods
from lora_nb_utils.report import references as report_references
from lora_nb_utils.runs.results import run_row

from tests.report.test_report import _row


def _method_row(method, task, seed, val, test, **extra):
    row = _row("minilm", task, method, seed, val, test_score=test, split="sora", **extra)
    if method == "adalora":
        row.update(lora_params=110736, trainable_params=259346, effective_params=73824, adalora_init_r=12,
                   adalora_target_r=8, lora_r=np.nan)
    if method == "sora":
        row.update(lora_r=8, lora_params=73824, trainable_params=222434, sora_lambda=extra.get("sora_lambda", 0.375),
                   zero_gates=extra.get("zero_gates", 0), total_gates=96,
                   effective_params=73728 - 768 * extra.get("zero_gates", 0))
    return row


@pytest.fixture()
def runs() -> pd.DataFrame:
    rows = []
    for task in ("sst2", "rte"):
        for seed, bump in ((1, 0.0), (2, 0.02)):
            rows += [_method_row("ft", task, seed, 0.90, 0.84 + bump),
                     _method_row("lora", task, seed, 0.88, 0.80 + bump),
                     _method_row("adalora", task, seed, 0.80, 0.70 + bump),
                     _method_row("sora", task, seed, 0.88, 0.80 + bump)]
    # a lambda sweep on SST-2 seed 1: stronger lambdas close gates and cost accuracy
    rows += [_method_row("sora", "sst2", 1, 0.70, 0.60, sora_lambda=30.0, zero_gates=96),
             _method_row("sora", "sst2", 1, 0.85, 0.77, sora_lambda=10.0, zero_gates=0)]
    rows.append(_method_row("adalora", "sst2", 3, 0.5, 0.5, status="collapsed"))
    return pd.DataFrame(rows)


def test_sweep_runs_stay_out_of_the_comparisons(runs):
    sweep = report.sora_sweep(runs)
    assert sweep.sum() == 2 and set(runs.loc[sweep, "sora_lambda"]) == {10.0, 30.0}
    assert len(report.table2_runs(runs)) == len(runs) - 2
    ref = report.reference_table("sora_paper_table", runs).xs("minilm", level="model")
    assert ref.loc[ref.index.get_level_values("method") == "SoRA r=8", "sst2"].iloc[0] == pytest.approx(81.0)


def test_methods_comparison_means_the_test_part_over_seeds(runs):
    table = report_methods.methods_comparison(runs)
    assert list(table["Method"]) == ["FT", "LoRA r=8", "AdaLoRA r=12→8", "SoRA r=8"]
    assert "Model" not in table and "Split" not in table  # one model, one split: said once, in the summary
    sora = table.set_index("Method").loc["SoRA r=8"]
    assert sora["SST-2"] == "81.0 ± 1.4"  # seeds 1 and 2 at lambda 0.375: 80 and 82; the sweep is left out
    assert sora["Seeds"] == "2"
    ada = table.set_index("Method").loc["AdaLoRA r=12→8"]
    assert ada["Trainable params"] == "0.26M" and ada["Adapter after training"] == "0.07M"
    assert table.set_index("Method").loc["FT", "Adapter after training"] == "—"


def test_sora_gates_lists_every_sora_run_with_its_lambda(runs):
    gates = report_methods.sora_gates(runs)
    sst2 = gates[(gates["task"] == "SST-2") & (gates["seed"] == 1)]
    assert list(sst2["sora_lambda"]) == ["0.375", "10", "30"]
    assert list(sst2["zero gates at the end"]) == ["0 / 96", "0 / 96", "96 / 96"]
    assert sst2["test"].iloc[-1] == pytest.approx(60.0)


def test_methods_findings_are_computed_from_the_runs(runs):
    text = "\n".join(report_methods.methods_findings(runs))
    assert "AdaLoRA minus LoRA r=8 (mean over seeds, x100): SST-2 −10.0, RTE −10.0; average −10.0" in text
    assert "SoRA minus LoRA r=8" in text and "SST-2 0.0" in text
    assert "0 of 384 gates at exactly zero over 4 runs" in text  # the main lambda only
    assert "0.11M adapter parameters allocated, 0.07M left" in text
    assert "Left out of the means: AdaLoRA SST-2 seed 3 (collapsed)." in text
    assert ("SoRA λ sweep, MiniLM SST-2 seed 1: λ 0.375: 0 / 96 zero, test 80.0; λ 10: 0 / 96 zero, "
            "test 77.0; λ 30: 96 / 96 zero, test 60.0.") in text


def test_method_claims_are_verdicts_from_the_runs(runs):
    claims = {c["Claim (paper)"].split(" ")[0]: c for c in report_methods.method_claims(runs)}
    assert claims["AdaLoRA"]["Verdict"] == "not reproduced"  # 10 points below LoRA on both tasks
    assert "below on SST-2 (−10.0), RTE (−10.0)" in claims["AdaLoRA"]["Our runs"]
    assert claims["SoRA"]["Verdict"] == "inconclusive"  # no gate closed at the main lambda: SoRA trained as LoRA
    assert "No gate reached zero" in claims["SoRA"]["Our runs"]
    gates = report_methods.sora_gates_view(runs)
    assert "sora_lambda" not in gates and "λ" in gates and "Model" not in gates
    assert report_references.reference_tables(runs)[0][1]["Method"].iloc[0] == "FT"


def test_without_adalora_or_sora_runs_there_is_only_the_message():
    lora_ft = pd.DataFrame([_method_row("lora", "sst2", 1, 0.9, 0.8), _method_row("ft", "sst2", 1, 0.9, 0.8)])
    assert report.message(report_methods.methods_comparison(lora_ft)) == report_methods.NO_METHODS
    assert report_methods.methods_findings(lora_ft) == []  # the section is left out of the report
    assert report_methods.method_claims(lora_ft) == [] and report_references.reference_tables(lora_ft) == []


def test_results_rows_record_the_method_settings(tmp_path):
    from lora_nb_utils.runs import rundir
    from lora_nb_utils.config import RunConfig
    params = RunConfig(model="minilm", task="sst2", method="sora", sora_lambda=10.0, split="sora").to_params()
    manifest = rundir.start_run(tmp_path / "r", params)
    rundir.finish_run(tmp_path / "r", {
        "status": "ok", "primary_metric": "accuracy", "best_epoch": 1, "best": {"accuracy": 0.8},
        "test": {"accuracy": 0.7}, "parameters": {"lora": 73824, "head": 1, "total_trainable": 73825},
        "sizes": {"train": 10}, "train_seconds": 1.0, "peak_memory_mb": 1.0,
        "params_hash": manifest["params_hash"],
        "method_state": {"method": "sora", "effective_params": 72960, "zero_gates": 1, "total_gates": 96}})
    row = run_row(tmp_path / "r")
    assert row["sora_lambda"] == 10.0 and row["zero_gates"] == 1 and row["total_gates"] == 96
    assert row["effective_params"] == 72960 and row["test_score"] == 0.7


def test_the_lora_family_joins_the_comparison_and_its_papers_claims(runs):
    def family_row(method, task, seed, test, **counts):
        row = _method_row(method, task, seed, 0.88, test)
        row.update(counts)
        return row
    family = [family_row("dora", t, s, 0.80 + b, lora_r=8, lora_params=78336, trainable_params=226946)
              for t in ("sst2", "rte") for s, b in ((1, 0.0), (2, 0.02))]
    family += [family_row("vera", t, s, (0.80 if t == "sst2" else 0.76) + b, lora_r=256, lora_params=7680,
                          trainable_params=156290)
               for t in ("sst2", "rte") for s, b in ((1, 0.0), (2, 0.02))]
    both = pd.concat([runs, pd.DataFrame(family)], ignore_index=True)
    table = report_methods.methods_comparison(both).set_index("Method")
    assert list(table.index)[-2:] == ["DoRA r=8", "VeRA r=256"]  # the registry's order, after the paper's methods
    assert table.loc["VeRA r=256", "Adapter after training"] == "7,680"
    assert table.loc["DoRA r=8", "SST-2"] == "81.0 ± 1.4"
    claims = {c["Claim (paper)"].split(" ")[0]: c for c in report_methods.method_claims(both)}
    assert claims["DoRA"]["Verdict"] == "inconclusive"  # 'beats LoRA', but equal on both tasks: a tie says nothing
    assert claims["VeRA"]["Verdict"] == "not reproduced"  # equal on SST-2, 4 points below LoRA on RTE: 1 of 2
    assert "below on RTE (−4.0)" in claims["VeRA"]["Our runs"] and "10x fewer" in claims["VeRA"]["Claim (paper)"]
    findings = " ".join(report_methods.methods_findings(both))
    assert "DoRA minus LoRA r=8" in findings and "VeRA minus LoRA r=8" in findings
    only_family = pd.concat([runs[runs["method"].isin(["ft", "lora"])], pd.DataFrame(family)], ignore_index=True)
    assert not report.message(report_methods.methods_comparison(only_family))  # no AdaLoRA or SoRA needed
