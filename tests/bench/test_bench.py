"""Benchmarks (bench/: config, variants, parts, padding, summary, costmodel): correctness only, never timing."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from lora_nb_utils.bench.config import BenchConfig
from lora_nb_utils.bench.padding import make_bench_loader
from lora_nb_utils.bench.parts import pipeline_overhead
from lora_nb_utils.bench.summary import REQUIRED_KEYS, ratios_markdown
from lora_nb_utils.bench.variants import build_variant, random_batch, train_step
from lora_nb_utils.cli import main
from lora_nb_utils.bench.costmodel import estimate_plan_hours, estimate_run_hours, expected_padded_length, samples_per_s
from lora_nb_utils.adapters import peft_config_for
from lora_nb_utils.methods.lora import inject_lora, lora_merged, mark_trainable, merge_lora

from tests.conftest import tiny_model
from lora_nb_utils.paths import repo_root


def _randomize_lora(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def _ids(model, batch=3, length=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, model.config.vocab_size, (batch, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_lora_forward_equals_peft_for_identical_weights():
    from peft import get_peft_model
    torch.manual_seed(0)
    base = tiny_model("roberta-base").eval()
    ours = copy.deepcopy(base)
    inject_lora(ours, r=4, alpha=8, targets="query,value")
    mark_trainable(ours, "lora")
    _randomize_lora(ours)
    peft_model = get_peft_model(copy.deepcopy(base), peft_config_for(ours)).eval()
    ours_state = dict(ours.named_parameters())
    copied = 0
    with torch.no_grad():
        for key, p in peft_model.named_parameters():
            if ".lora_A.default." in key or ".lora_B.default." in key:
                p.copy_(ours_state[key.removeprefix("base_model.model.").replace(".default.weight", "")])
                copied += 1
            elif ".modules_to_save.default." in key:
                p.copy_(ours_state[key.removeprefix("base_model.model.").replace(".modules_to_save.default", "")])
    assert copied == 2 * 2 * 2  # layers x targets x (A, B)
    batch = _ids(base)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(**batch).logits, peft_model(**batch).logits, atol=1e-5, rtol=1e-5)
    # the same trainable set: LoRA matrices + head (PEFT's trainable head copy)
    n_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    n_peft = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert n_ours == n_peft


def test_bench_variants_train_the_expected_sets():
    cfg = BenchConfig.preset(tiny=True)
    base = tiny_model("roberta-base")
    counts = {k: sum(p.numel() for p in build_variant(k, base, cfg).parameters() if p.requires_grad)
              for k in ("lora", "peft", "ft")}
    assert counts["lora"] == counts["peft"] < counts["ft"] == sum(p.numel() for p in base.parameters())


def test_bench_times_the_training_step_of_train():
    """One training step in the package: the benchmarks' step (train.TrainStep at a fixed learning rate) and
    train.train's loop leave bit-identical parameters after N steps on the same batch, once the bench step is given
    the schedule train builds."""
    from transformers import get_linear_schedule_with_warmup

    from lora_nb_utils.bench.variants import STEP_LR
    from lora_nb_utils.glue.tasks import get_task
    from lora_nb_utils.train import TrainConfig, train
    n, cfg = 3, BenchConfig.preset(tiny=True)
    torch.manual_seed(0)
    base = tiny_model("roberta-base")  # dropout on: both sides draw the same random numbers
    bench_model = build_variant("lora", base, cfg)
    train_model = copy.deepcopy(bench_model)
    batch = random_batch(cfg, base.config.vocab_size)
    step = train_step(bench_model)
    step.scheduler = get_linear_schedule_with_warmup(step.optimizer, 0, n)
    torch.manual_seed(1)
    losses = [step.step(batch) for _ in range(n)]
    torch.manual_seed(1)
    out = train(train_model, [batch] * n, {"validation": [batch]}, get_task("sst2"),
                TrainConfig(epochs=1, learning_rate=STEP_LR, warmup_ratio=0.0, progress="none"), torch.device("cpu"))
    assert out["epochs"][0]["step"] == step.steps == n
    assert out["epochs"][0]["train_loss"] == pytest.approx(sum(losses) / n)
    trained = dict(train_model.named_parameters())
    for name, p in bench_model.named_parameters():
        assert torch.equal(p, trained[name]), name
    assert any(name.endswith("lora_B") and p.abs().sum() > 0 for name, p in bench_model.named_parameters())


def test_merged_equals_unmerged():
    torch.manual_seed(0)
    model = tiny_model("roberta-base").eval()
    inject_lora(model, r=4, alpha=16)
    _randomize_lora(model, 1)
    batch = _ids(model)
    with torch.no_grad():
        unmerged = model(**batch).logits
        with lora_merged(model):
            in_context = model(**batch).logits
        merged = merge_lora(copy.deepcopy(model))(**batch).logits
        again = model(**batch).logits
    torch.testing.assert_close(in_context, unmerged, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, unmerged, atol=0, rtol=0)  # lora_merged restores W bit-exactly


def _tokenized_rows(tokenizer):
    texts = ["a fine film .", "the movie was long, slow and in the end not worth the price of the ticket at all",
             "bad", "it is what it is , and that is enough for one evening"]
    enc = tokenizer(texts, truncation=True, max_length=512)
    from datasets import Dataset
    return Dataset.from_dict({**enc, "labels": [1, 0, 0, 1]})


def test_dynamic_padding_gives_the_same_logits_as_max_length(roberta_tokenizer):
    torch.manual_seed(0)
    model = tiny_model("roberta-base", max_position_embeddings=514).eval()
    ds = _tokenized_rows(roberta_tokenizer)
    dyn = next(iter(make_bench_loader(ds, roberta_tokenizer, 4, False)))
    full = next(iter(make_bench_loader(ds, roberta_tokenizer, 4, False, padding="max_length", max_length=512)))
    assert full["input_ids"].shape == (4, 512) and dyn["input_ids"].shape[1] < 40
    with torch.no_grad():
        a = model(**{k: v for k, v in dyn.items() if k != "labels"}).logits
        b = model(**{k: v for k, v in full.items() if k != "labels"}).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_cost_model_arithmetic():
    import pandas as pd
    table = pd.DataFrame([
        {"device": "cpu: test", "model": "roberta-base", "method": "lora", "seq_len": 100, "batch_size": 16,
         "samples_per_s": 10.0},
        {"device": "cpu: test", "model": "roberta-base", "method": "lora", "seq_len": 200, "batch_size": 16,
         "samples_per_s": 4.0}])
    # at a measured length: rows x epochs / samples_per_s
    est = estimate_run_hours("roberta-base", "rte", 2, 16, 100, train_rows=3600, table=table, padding="max_length")
    assert est["padded_len"] == 100 and est["hours"] == pytest.approx(3600 * 2 / 10 / 3600)
    # halfway: seconds per sample interpolated (0.1 and 0.25 -> 0.175)
    assert samples_per_s("roberta-base", "lora", 150, table=table)[0] == pytest.approx(1 / 0.175)
    # beyond the longest: scaled by tokens
    assert samples_per_s("roberta-base", "lora", 400, table=table)[0] == pytest.approx(2.0)
    # a model without a measurement: scaled by parameters x tokens, and says so
    sps, basis = samples_per_s("roberta-large", "lora", 100, table=table)
    from lora_nb_utils.bench.costmodel import model_parameters
    assert sps == pytest.approx(10.0 * model_parameters("roberta-base") / model_parameters("roberta-large"))
    assert "FLOPs" in basis
    # padded length: batch 1 is the mean length (capped), a larger batch pads longer, max_length is the cap
    assert expected_padded_length("sst2", 1, 512) < expected_padded_length("sst2", 16, 512) < 64
    assert expected_padded_length("rte", 16, 128) <= 128
    assert expected_padded_length("rte", 16, 512, padding="max_length") == 512
    # grouped by length: a batch pads to about its own rows' length, the mean row (batch 1's length)
    assert expected_padded_length("sst2", 16, 512, padding="grouped") == pytest.approx(
        expected_padded_length("sst2", 1, 512))
    assert expected_padded_length("stsb", 16, 128, padding="grouped") < expected_padded_length("stsb", 16, 128) / 2


def test_a_grid_that_groups_by_length_is_estimated_with_less_padding(tmp_path):
    from lora_nb_utils.runs.grid import load_plan
    grids = {}
    for grouped in (False, True):
        path = tmp_path / f"grid_{grouped}.yaml"
        path.write_text(f"notebook: {repo_root() / 'notebooks' / '00_minilm_cpu.ipynb'}\noutput_root: out\n"
                        "blocks:\n  - params: {model: minilm, task: stsb, max_train_samples: 1000, "
                        f"max_eval_samples: 0, group_by_length: {str(grouped).lower()}}}\n"
                        "    matrix: {seed: [1]}\n")
        grids[grouped] = estimate_plan_hours(load_plan(path))["runs"][0]
    assert grids[True]["padded_len"] < grids[False]["padded_len"] and grids[True]["hours"] < grids[False]["hours"]


def test_estimate_plan_hours_on_a_grid():
    from lora_nb_utils.runs.grid import load_plan
    plan = load_plan(repo_root() / "params" / "grids" / "table2.yaml")
    est = estimate_plan_hours(plan)
    assert len(est["runs"]) == len(plan.runs) == 120
    assert est["total_hours"] == pytest.approx(sum(r["hours"] for r in est["runs"])) and est["total_hours"] > 0


def test_the_finished_runs_pace_rescales_what_is_left(tmp_path, capsys):
    from lora_nb_utils.bench.costmodel import measured_pace
    from lora_nb_utils.runs.grid import load_plan
    from lora_nb_utils.runs.rundir import write_json
    path = tmp_path / "grid.yaml"
    path.write_text(f"notebook: {repo_root() / 'notebooks' / '00_minilm_cpu.ipynb'}\noutput_root: {tmp_path / 'out'}\n"
                    "blocks:\n  - params: {model: minilm, task: rte, max_train_samples: 1000, max_eval_samples: 0, "
                    "epochs: 10}\n    matrix: {seed: [1, 2, 3]}\n")
    plan = load_plan(path)
    assert measured_pace(estimate_plan_hours(plan)) is None  # nothing finished: no pace to tell
    per_epoch = estimate_plan_hours(plan)["runs"][0]["hours"] / 10
    first, second = plan.runs[0], plan.runs[1]  # stopped after 4 of 10 epochs, 3x and 2x slower than the model
    write_json(first.run_dir / "metrics.json", {"params_hash": first.hashes[0], "epochs_run": 4,
                                                "train_seconds": 3 * 4 * per_epoch * 3600})
    write_json(second.run_dir / "metrics.json", {"params_hash": second.hashes[0], "epochs_run": 4,
                                                 "train_seconds": 2 * 4 * per_epoch * 3600})
    est = estimate_plan_hours(plan)
    pace = measured_pace(est)
    assert pace["runs"] == 2 and pace["pace"] == pytest.approx(2.5) and pace["epoch_fraction"] == pytest.approx(0.4)
    assert pace["todo_hours_at_cap"] == pytest.approx(2.5 * est["todo_hours"]) == pytest.approx(2.5 * 10 * per_epoch)
    assert pace["todo_hours_expected"] == pytest.approx(0.4 * 2.5 * 10 * per_epoch)
    assert main(["run", str(path), "--dry-run", "--workers", "2"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("at the pace of its 2 finished run(s) (x2.50 the estimate's time per epoch; they ran 40% "
                           "of their max epochs, median)")
    assert line.endswith(f"at least {pace['todo_hours_expected'] / 2:,.1f} hours of wall time with --workers 2")


def test_bench_tiny_returns_every_key(glue_dir, roberta_tokenizer_dir, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LORA_NB_GLUE_DIR", glue_dir)
    out_file = tmp_path / "bench.json"
    assert main(["bench", "--tiny", "--json", "--model", "roberta-base", "--tokenizer", roberta_tokenizer_dir,
                 "--out", str(out_file)]) == 0
    out = json.loads(capsys.readouterr().out)
    missing = [k for k in REQUIRED_KEYS if k not in out]
    assert not missing
    assert out["padding_predictions_identical"] and out["merged_equals_unmerged"]
    assert out["eval_sorted_metrics_identical"]  # evaluation rows sorted by length: the same metrics
    assert json.loads(out_file.read_text())["model"] == "roberta-base"


def test_pipeline_overhead_reads_run_directories(tmp_path):
    from lora_nb_utils.runs.rundir import write_json
    run = tmp_path / "m" / "task=rte,seed=1"
    write_json(run / "manifest.json", {"papermill_seconds": 100.0})
    write_json(run / "metrics.json", {"train_seconds": 80.0})
    out = pipeline_overhead(tmp_path)
    assert out["pipeline_runs"] == 1 and out["pipeline_overhead_fraction_median"] == pytest.approx(0.2)


def test_ratios_markdown_sets_models_side_by_side():
    text = ratios_markdown([{"model": "minilm", "lora_vs_peft_step_time": 0.5, "merged_equals_unmerged": True},
                            {"model": "roberta-base", "lora_vs_peft_step_time": 1.25},
                            {"model": "roberta-base", "config": {"precision": "bf16"}}])
    assert text.splitlines()[0] == "| ratio | minilm | roberta-base | roberta-base (bf16) |"
    assert "| `lora_vs_peft_step_time` | 0.500 | 1.250 | — |" in text
    assert "| `merged_equals_unmerged` | True | — | — |" in text


def test_bench_rejects_an_unknown_part(capsys):
    from lora_nb_utils.cli import main
    assert main(["bench", "--parts", "step,speed"]) == 2
    assert "--parts: unknown speed; choose from step, memory" in capsys.readouterr().err
