import math

import pytest
import torch

from lora_nb_utils import RunConfig, get_task, inject_lora, mark_trainable, run_experiment
from lora_nb_utils.glue.data import load_glue, make_loader, subsample, tokenize
from lora_nb_utils.models import load_tokenizer
from lora_nb_utils.runs.rundir import read_json
from lora_nb_utils.train import TrainConfig, train

from tests.conftest import tiny_model

CPU = torch.device("cpu")


def _loaders(task_name, glue_dir, tokenizer, n_train=32, n_eval=32, batch=8, seed=0):
    task = get_task(task_name)
    dsd = load_glue(task, glue_dir)
    dsd["train"] = subsample(dsd["train"], n_train)
    dsd["validation"] = subsample(dsd["validation"], n_eval)
    tok = tokenize(dsd, task, tokenizer, 64)
    return task, make_loader(tok["train"], tokenizer, batch, True, seed), \
        {"validation": make_loader(tok["validation"], tokenizer, 16, False)}


@pytest.mark.parametrize("arch,tok_fixture", [("roberta-base", "roberta_tokenizer_dir"),
                                              ("deberta-v3-base", "deberta_tokenizer_dir")])
def test_small_random_models_train_lora_with_the_real_tokenizer(arch, tok_fixture, glue_dir, request):
    tokenizer = load_tokenizer(arch, request.getfixturevalue(tok_fixture))
    task, train_loader, eval_loaders = _loaders("rte", glue_dir, tokenizer)
    torch.manual_seed(0)
    model = tiny_model(arch, "rte", vocab_size=len(tokenizer))
    inject_lora(model, r=4, alpha=8)
    mark_trainable(model, "lora")
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    result = train(model, train_loader, eval_loaders, task, TrainConfig(epochs=1, learning_rate=1e-3,
                                                                          progress="none"), CPU)
    assert result["status"] in ("ok", "collapsed") and math.isfinite(result["epochs"][0]["train_loss"])
    assert 0.0 <= result["best"]["accuracy"] <= 1.0
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in frozen.items())
    assert all(params[n].abs().sum() > 0 for n in params if "lora_B" in n)  # B left zero: LoRA learned


def test_gradient_accumulation_equals_the_large_batch(glue_dir, roberta_tokenizer):
    def one_step(batch, accum):
        task, loader, evals = _loaders("rte", glue_dir, roberta_tokenizer, n_train=8, n_eval=8, batch=batch)
        torch.manual_seed(0)
        model = tiny_model("roberta-base", "rte", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        inject_lora(model, r=4, alpha=8)
        mark_trainable(model, "lora")
        train(model, loader, evals, task, TrainConfig(epochs=1, learning_rate=1e-2, warmup_ratio=0.0,
                                                      grad_accum=accum, progress="none"), CPU)
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    big, accumulated = one_step(8, 1), one_step(4, 2)
    for n in big:
        assert torch.allclose(big[n], accumulated[n], atol=1e-5), n


def test_nan_loss_is_flagged_not_scored(glue_dir, roberta_tokenizer):
    task, train_loader, eval_loaders = _loaders("rte", glue_dir, roberta_tokenizer)
    model = tiny_model("roberta-base", "rte")
    model.classifier.out_proj.register_forward_hook(lambda m, i, out: out * float("nan"))
    result = train(model, train_loader, eval_loaders, task, TrainConfig(epochs=2, progress="none"), CPU)
    assert result["status"] == "nan_loss" and result["epochs"] == [] and result["best"] == {}


def test_collapsed_run_is_flagged(glue_dir, roberta_tokenizer):
    task, train_loader, eval_loaders = _loaders("cola", glue_dir, roberta_tokenizer)
    model = tiny_model("roberta-base", "cola")
    with torch.no_grad():  # a head that always says "acceptable", and nothing learns (lr 0)
        model.classifier.out_proj.weight.zero_()
        model.classifier.out_proj.bias.copy_(torch.tensor([0.0, 5.0]))
    result = train(model, train_loader, eval_loaders, task, TrainConfig(epochs=1, learning_rate=0.0,
                                                                          progress="none"), CPU)
    assert result["status"] == "collapsed" and result["best"]["matthews_corr"] == 0.0


def test_same_seed_gives_identical_metrics_on_real_minilm(glue_dir, tmp_path):
    def run(seed, name):
        cfg = RunConfig(model="minilm", task="mrpc", glue_dir=glue_dir, max_train_samples=96, max_eval_samples=96,
                        epochs=2, batch_size=16, seed=seed, lora_dropout=0.1, progress="none",
                        output_dir=str(tmp_path / name))
        metrics = run_experiment(cfg)
        epochs = (tmp_path / name / "epochs.csv").read_text().splitlines()
        scores = [line.split(",")[:4] + line.split(",")[6:] for line in epochs]  # drop timing columns
        return metrics, scores
    (m1, e1), (m2, e2), (_, e3) = run(3, "a"), run(3, "b"), run(4, "c")
    assert m1["best"] == m2["best"] and e1 == e2
    assert e1 != e3  # a different seed is a different run
    manifest = read_json(tmp_path / "a" / "manifest.json")
    assert manifest["params"]["seed"] == 3 and manifest["status"] == m1["status"] and manifest["params_hash"]
    assert (tmp_path / "a" / "adapter.safetensors").is_file()


@pytest.mark.parametrize("patience,epochs_run", [(1, 2), (2, 3), (0, 4)])
def test_early_stopping_stops_after_patience_epochs_without_a_better_score(glue_dir, roberta_tokenizer, patience,
                                                                            epochs_run):
    task, loader, evals = _loaders("rte", glue_dir, roberta_tokenizer, n_train=16, n_eval=16)
    torch.manual_seed(0)
    model = tiny_model("roberta-base", "rte")
    inject_lora(model, r=2, alpha=4)
    mark_trainable(model, "lora")
    config = TrainConfig(epochs=4, learning_rate=1e-9, progress="none", early_stopping_patience=patience)
    result = train(model, loader, evals, task, config, CPU)  # lr ~ 0: no epoch beats the first
    assert result["best_epoch"] == 1
    assert result["epochs_run"] == len(result["epochs"]) == epochs_run
    assert result["stopped_early"] == (patience > 0)
    assert result["cpu_seconds"] > 0


def test_optimizer_steps_is_the_schedules_length_for_every_caller():
    """train's schedule and the methods that follow it (AdaLoRA's budget, SoRA's lambda) count steps in one place."""
    from lora_nb_utils.train import optimizer_steps
    batches = [None] * 10
    assert optimizer_steps(batches, TrainConfig(epochs=2, grad_accum=3)) == 8  # 4 steps an epoch, the last short
    assert optimizer_steps(batches, TrainConfig(epochs=3)) == 30


@pytest.mark.parametrize("progress, bars", [("none", False), ("log", False), ("bar", True)])
def test_the_notebooks_edge_sets_the_progress_bars(progress, bars):
    """config_from_notebook (and run_experiment) set the datasets/transformers bars; the data step no longer does."""
    import datasets
    from transformers.utils import logging as hf_logging

    from lora_nb_utils.config import PARAMETER_NAMES, config_from_notebook
    namespace = {**RunConfig(progress=progress).to_params(), "In": []}
    try:
        config_from_notebook({n: namespace[n] for n in (*PARAMETER_NAMES, "In")})
        assert datasets.utils.are_progress_bars_disabled() is not bars
        assert hf_logging.is_progress_bar_enabled() is bars
    finally:
        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()
