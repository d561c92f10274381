"""Where a method differs from its reference: the bullets come from the runs' held-out scores, seeds, sweeps
(selection.json) and curves, and say only what those show."""
import pandas as pd
import pytest

from lora_nb_utils.report.gaps import gap_findings, sweep_position


def _run(tmp_path, task, method, lr, seed, test, heldout, selection, best_epoch=3, epochs_run=6, loss=0.3,
         curve=True):
    run_dir = tmp_path / f"{task}-{method}-{lr}-{seed}"
    run_dir.mkdir()
    if curve:  # the training loss falls to `loss` at the last epoch
        pd.DataFrame({"epoch": range(1, epochs_run + 1),
                      "train_loss": [loss + 0.1 * (epochs_run - e) for e in range(1, epochs_run + 1)]}
                     ).to_csv(run_dir / "epochs.csv", index=False)
    return {"model": "minilm", "task": task, "method": method, "lora_r": None if method == "ft" else 8,
            "learning_rate": lr, "seed": seed, "status": "ok", "score": heldout, "test_score": test,
            "best_epoch": best_epoch, "epochs_run": epochs_run, "epochs": 10, "stopped_early": epochs_run < 10,
            "train_seconds": 60.0, "cpu_seconds": 60.0, "trainable_params": 22_713_986 if method == "ft" else 222_338,
            "lora_params": 0, "split": "holdout", "selection": selection, "lora_targets": "query,value",
            "run_dir": str(run_dir)}


def _group(task, method, chosen, tried):
    """A selection.json group: `tried` is [(lr, status, held-out score)]."""
    name = f"minilm/task={task},method={method}" + ("" if method == "ft" else ",r=8")
    return {"group": name, "chosen": {"learning_rate": chosen},
            "candidates": [{"values": {"learning_rate": lr}, "status": status, "heldout_score": score}
                           for lr, status, score in tried]}


@pytest.fixture
def stsb(tmp_path):
    """STS-B: LoRA 5 points below FT on the reported set, 0.5 on the held-out part; MRPC: a match."""
    rows = []
    for s in (1, 2, 3):
        rows.append(_run(tmp_path, "stsb", "ft", 5e-5, s, 0.85 + s / 1000, 0.860, "chosen", loss=0.2))
        rows.append(_run(tmp_path, "stsb", "lora", 2e-3, s, 0.80 + s / 1000, 0.855, "chosen", best_epoch=10,
                         epochs_run=10, loss=0.6))
        rows.append(_run(tmp_path, "mrpc", "ft", 5e-5, s, 0.80, 0.80, "chosen"))
        rows.append(_run(tmp_path, "mrpc", "lora", 2e-3, s, 0.801, 0.80, "chosen"))
    rows += [_run(tmp_path, "stsb", "ft", lr, 1, 0.99, 0.5, "not chosen") for lr in (2e-5, 1e-4)]
    rows += [_run(tmp_path, "stsb", "lora", 5e-4, 1, 0.99, 0.5, "not chosen")]
    selection = {"groups": [_group("stsb", "ft", 5e-5, [(2e-5, "ok", .5), (5e-5, "ok", .86), (1e-4, "ok", .5)]),
                            _group("stsb", "lora", 2e-3, [(5e-4, "ok", .5), (2e-3, "ok", .855)])]}
    return pd.DataFrame(rows), selection


def test_a_gap_is_explained_from_the_sweep_the_seeds_and_the_curves(stsb):
    findings = gap_findings(*stsb)
    assert len(findings) == 1, findings  # MRPC matches: nothing to explain
    text = findings[0]
    assert text.startswith("STS-B, LoRA −5.0 against FT (below):\n  - ")  # a nested bullet per piece of evidence
    assert text.count("\n  - ") == 5
    assert "LoRA 85.5 vs FT 86.0 (−0.5), within 1 point there: the gap shows on the reported set only" in text
    assert "LoRA 80.1–80.3 (3 seeds), FT 85.1–85.3 (3 seeds); the ranges do not overlap" in text
    assert "LoRA's lr 2e-3 is the largest its sweep tried (5e-4 to 2e-3): a larger one was not tried" in text
    assert "FT's lr 5e-5 lies inside its sweep (2e-5 to 1e-4)" in text
    assert "LoRA 3 of 3 (0 ended by early stopping), FT 0 of 3 (3 ended by early stopping); LoRA was still " \
           "improving, so a longer budget may narrow the gap" in text
    assert "Lowest training loss reached (median over seeds): LoRA 0.6, FT 0.2; LoRA fits its training set less" \
        in text


def test_the_tolerance_is_the_callers(stsb):
    (text,) = gap_findings(*stsb, tolerance=0.2)
    assert "(−0.5), the same direction there, smaller" in text  # half a point is a gap at tolerance 0.2


def test_what_lies_beyond_an_edge_is_named():
    tried = pd.DataFrame({"learning_rate": [5e-4, 2e-3, 4e-3], "status": ["ok", "ok", "collapsed"]})
    assert sweep_position(tried, 2e-3, "LoRA") == \
        "LoRA's lr 2e-3 is the largest that trained (5e-4 to 4e-3); the next larger, 4e-3, collapsed"
    pending = pd.DataFrame({"learning_rate": [2e-5, 1e-4, 2e-4], "status": ["ok", "ok", "pending"]})
    assert sweep_position(pending, 1e-4, "FT").endswith("the next larger, 2e-4, pending")
    assert sweep_position(pending, 2e-5, "FT") == \
        "FT's lr 2e-5 is the smallest its sweep tried (2e-5 to 2e-4): a smaller one was not tried"
    assert "only value" in sweep_position(pending.iloc[:1], 2e-5, "FT")


def test_one_seed_an_inverted_held_out_gap_and_no_curves_say_so(tmp_path):
    rows = [_run(tmp_path, "rte", "ft", 5e-5, 1, 0.60, 0.70, "chosen", curve=False),
            _run(tmp_path, "rte", "lora", 1e-3, 1, 0.70, 0.65, "chosen", curve=False)]
    selection = {"groups": [_group("rte", "ft", 5e-5, [(5e-5, "ok", .7)]),
                            _group("rte", "lora", 1e-3, [(1e-3, "ok", .65)])]}
    (text,) = gap_findings(pd.DataFrame(rows), selection)
    assert text.startswith("RTE, LoRA +10.0 against FT (above):")
    assert "(−5.0), the other way round there" in text
    assert "one seed gives no spread to compare the gap with" in text
    assert "Lowest training loss" not in text and text.count("\n  - ") == 4  # no epochs.csv: no loss bullet
    assert "still improving, so" not in text  # LoRA is above: nothing to narrow


def test_overlapping_seeds_a_converged_method_and_a_regularised_loss(tmp_path):
    rows = []
    for s, (ft, lora) in enumerate(((0.80, 0.765), (0.79, 0.775), (0.76, 0.77)), start=1):
        rows.append(_run(tmp_path, "rte", "ft", 5e-5, s, ft, 0.80, "chosen", loss=0.3))
        rows.append(_run(tmp_path, "rte", "lora", 1e-3, s, lora, 0.785, "chosen", loss=0.25))
        rows.append(_run(tmp_path, "rte", "adalora", 1e-3, s, lora - 0.03, 0.74, "chosen", loss=0.25))
    selection = {"groups": [_group("rte", m, lr, [(lr, "ok", 0.8)]) for m, lr in
                            (("ft", 5e-5), ("lora", 1e-3), ("adalora", 1e-3))]}
    lora, adalora = gap_findings(pd.DataFrame(rows), selection)
    assert "the ranges overlap" in lora
    assert "(−1.5), the same direction there, smaller" in lora  # reported: −2.0
    assert "every LoRA run had stopped improving before its budget ran out" in lora
    assert "LoRA fits its training set at least as well and still scores lower" in lora
    assert adalora.startswith("RTE, AdaLoRA −3.0 against LoRA (below):")
    assert "training loss" not in adalora  # AdaLoRA's loss carries its orthogonal regulariser
