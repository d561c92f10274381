"""The fair comparison's report part on a synthetic sweep grid: chosen runs score, swept runs only cost."""
import pandas as pd
import pytest

from lora_nb_utils.report.fair_comparison import fair_comparison, fair_findings, fair_table, selection_view, versus
from lora_nb_utils.report.format import value_text
from lora_nb_utils.report.select import table2_runs


def _run(task, method, lr, seed, test, selection, heldout=0.8, **extra):
    return {"model": "minilm", "task": task, "method": method, "lora_r": 8 if method != "ft" else None,
            "learning_rate": lr, "seed": seed, "status": "ok", "score": heldout, "test_score": test,
            "best_epoch": 3, "epochs_run": 6, "train_seconds": 360.0, "cpu_seconds": 700.0,
            "trainable_params": 22_713_986 if method == "ft" else 222_338, "lora_params": 0, "split": "holdout",
            "selection": selection, "lora_targets": "query,value", **extra}


@pytest.fixture
def results():
    rows = []
    for task, ft, lora in (("mrpc", 0.80, 0.795), ("stsb", 0.85, 0.80), ("cola", 0.30, 0.005)):
        rows += [_run(task, "ft", 5e-5, s, ft + s / 1000, "chosen") for s in (1, 2, 3)]
        rows += [_run(task, "ft", 2e-5, 1, 0.99, "not chosen")]  # a high test score that must not count
        rows += [_run(task, "lora", 2e-3, s, lora + s / 1000, "chosen") for s in (1, 2, 3)]
        rows += [_run(task, "lora", 5e-4, 1, 0.99, "not chosen")]
    rows += [_run("mrpc", "sora", 2e-3, s, 0.79, "chosen", sora_lambda=1.0, zero_gates=40, total_gates=96,
                  effective_params=43_008) for s in (1, 2, 3)]
    return pd.DataFrame(rows)


def test_only_the_chosen_value_scores_but_the_whole_sweep_costs(results):
    assert set(table2_runs(results)["selection"]) == {"chosen"}
    comp = fair_comparison(results).set_index(["task", "method"])
    assert comp.loc[("mrpc", "ft"), "median"] == pytest.approx(80.2)  # never the 99.0 of the unchosen value
    assert comp.loc[("mrpc", "ft"), "learning_rate"] == 5e-5
    assert comp.loc[("mrpc", "lora"), "cell_runs"] == 4 and comp.loc[("mrpc", "lora"), "cell_hours"] == 0.4
    assert comp.loc[("mrpc", "sora"), "adapter_params"] == 43_008


def test_lora_versus_ft_verdicts_and_chance_level(results):
    v = versus(fair_comparison(results), "lora", "ft").set_index("task")
    assert v.loc["mrpc", "verdict"] == "match" and v.loc["mrpc", "diff"] == pytest.approx(-0.5)
    assert v.loc["stsb", "verdict"] == "below"
    assert v.loc["cola", "verdict"] == "chance"  # LoRA's MCC 0.7 is within 2 points of 0
    assert v.loc["mrpc", "lr_ratio"] == pytest.approx(40)
    findings = " ".join(fair_findings(results))
    assert "within 1 point of FT on 1 of 3 task(s) (1 with a method at chance level, not counted)" in findings
    assert "MRPC 2e-3 / 5e-5 (x40)" in findings
    assert "SoRA minus LoRA" in findings and "MRPC 40 of 96 gates closed (42%)" in findings
    assert "in all 2.7 h" in findings  # all 27 runs (sweeps included), 0.1 h each


def test_tables_for_people(results):
    table = fair_table(fair_comparison(results))
    assert list(table["Task"].unique()) == ["MRPC", "CoLA", "STS-B"]  # the paper's task order
    row = table[(table["Task"] == "MRPC") & (table["Method"] == "SoRA")].iloc[0]
    assert row["Chosen lr"] == "2e-3, λ 1" and "40 of 96 gates closed" in row["Adapter after training"]
    selection = {"groups": [{"group": "minilm/task=rte,method=lora,r=8", "chosen": {"learning_rate": 0.001},
                             "candidates": [{"values": {"learning_rate": 0.0005}, "status": "ok",
                                             "heldout_score": 0.61},
                                            {"values": {"learning_rate": 0.001}, "status": "ok",
                                             "heldout_score": 0.65},
                                            {"values": {"learning_rate": 0.004}, "status": "collapsed",
                                             "heldout_score": 0.5}]}]}
    view = selection_view(selection).iloc[0]
    assert view["Values tried: held-out score (x100)"] == "5e-4: 61.0 · 1e-3: 65.0 ◀ · 4e-3: 50.0 (collapsed)"
    assert view["Chosen"] == "1e-3" and view["Task"] == "RTE" and view["Method"] == "LoRA"
    assert [value_text(v) for v in (2e-5, 1e-4, 0.4, 1.0, 3.5e-4, 2.2e-3, 1e-2)] == [
        "2e-5", "1e-4", "0.4", "1", "3.5e-4", "2.2e-3", "1e-2"]


def test_the_sweep_figure_plots_what_selection_read():
    from lora_nb_utils.report.fair_comparison import sweep_candidates
    from lora_nb_utils.report.figures import plot_sweeps
    assert plot_sweeps({"groups": []}) is None and sweep_candidates({}).empty
    lora = {"group": "minilm/task=mrpc,method=lora,r=8", "chosen": {"learning_rate": 0.002},
            "candidates": [{"values": {"learning_rate": lr}, "status": status, "heldout_score": score}
                           for lr, status, score in ((0.001, "ok", 0.79), (0.002, "ok", 0.792),
                                                     (0.004, "collapsed", 0.66))]}
    sora = {"group": "minilm/task=stsb,method=sora,r=8", "chosen": {"learning_rate": 0.001, "sora_lambda": 1.0},
            "candidates": [{"values": {"learning_rate": lr, "sora_lambda": lam}, "status": "ok", "heldout_score": s}
                           for lr, lam, s in ((0.001, 0.4, 0.86), (0.001, 1.0, 0.855), (0.002, 0.4, 0.84),
                                              (0.002, 1.0, 0.85))]}
    pending = {"group": "minilm/task=stsb,method=ft", "chosen": None,
               "candidates": [{"values": {"learning_rate": 2e-5}, "status": "ok", "heldout_score": 0.85},
                              {"values": {"learning_rate": 5e-5}, "status": "pending"}]}
    points = sweep_candidates({"groups": [lora, sora, pending]})
    assert list(points["method"].unique()) == ["lora", "sora", "ft"]
    assert points.loc[points["chosen"], "learning_rate"].tolist() == [0.002, 0.001]
    assert points.loc[points["status"] == "collapsed", "score100"].tolist() == [66.0]
    sora_points = points[points["method"] == "sora"]  # only the chosen lambda's curve
    assert sora_points["learning_rate"].tolist() == [0.001, 0.002]
    assert sora_points["score100"].tolist() == pytest.approx([85.5, 85.0])
    assert points.loc[points["method"] == "ft", "status"].tolist() == ["ok", "pending"]  # pending: no score yet
    assert points.loc[points["status"] == "pending", "score100"].isna().all()
    fig = plot_sweeps({"groups": [lora, sora, pending]})
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["MRPC", "STS-B"] and panels[0].get_xscale() == "log"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["FT", "LoRA r=8", "SoRA r=8"]
    assert len(panels[1].lines) == 2  # STS-B: FT's one scored value and SoRA's curve (the pending value has no point)
