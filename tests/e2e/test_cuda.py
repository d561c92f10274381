"""CUDA paths: autocast precisions, the fp16 gradient scaler and the determinism flags. Skipped without a GPU (CI has
none); run on a GPU machine with `pytest tests/test_cuda.py`. A full-size RoBERTa-base with random weights and the
real tokenizer on real RTE rows: the checks are about repeatability and numerics, not accuracy."""
from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from lora_nb_utils import RunConfig, get_task, run_experiment
from lora_nb_utils.models import load_model
from lora_nb_utils.runs.rundir import read_json
from lora_nb_utils.train import autocast_context

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _run(tmp_path, name, roberta_tokenizer_dir, glue_dir, **kw):
    cfg = RunConfig(**{**dict(model="roberta-base", weights="random", tokenizer=roberta_tokenizer_dir, task="rte",
                              glue_dir=glue_dir, split="sora", max_train_samples=256, max_eval_samples=0, epochs=2,
                              batch_size=16, learning_rate=5e-4, lora_dropout=0.1, seed=7, device="cuda",
                              deterministic=True, progress="none", output_dir=str(tmp_path / name)), **kw})
    metrics = run_experiment(cfg)
    adapter = tmp_path / name / "adapter.safetensors"  # full fine-tuning saves no weights: its metrics are compared
    return metrics, load_file(adapter) if adapter.is_file() else {}


@pytest.mark.filterwarnings("error:.*non-deterministic")  # a kernel that only warns is not deterministic
@pytest.mark.parametrize("method,precision", [("lora", "fp32"), ("lora", "bf16"), ("lora", "fp16"), ("ft", "bf16"),
                                              ("ft", "fp16"), ("adalora", "bf16"), ("sora", "bf16")])
def test_deterministic_cuda_runs_repeat_bit_for_bit(method, precision, tmp_path, roberta_tokenizer_dir, glue_dir):
    kw = dict(method=method, precision=precision)
    if method == "adalora":
        kw.update(adalora_init_r=12, adalora_target_r=8, adalora_tinit=4, adalora_tfinal=8, adalora_delta_t=2)
    m1, w1 = _run(tmp_path, "a", roberta_tokenizer_dir, glue_dir, **kw)
    m2, w2 = _run(tmp_path, "b", roberta_tokenizer_dir, glue_dir, **kw)
    assert m1["status"] in ("ok", "collapsed"), m1["status"]
    assert math.isfinite(m1["last"]["train_loss"])
    assert m1["best"] == m2["best"] and m1["test"] == m2["test"] and m1["last"] == m2["last"]
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert read_json(tmp_path / "a" / "manifest.json")["device"].startswith("cuda")
    assert m1["peak_memory_mb"] > 0  # the CUDA allocator's peak


def test_a_different_seed_differs_on_cuda(tmp_path, roberta_tokenizer_dir, glue_dir):
    _, w1 = _run(tmp_path, "a", roberta_tokenizer_dir, glue_dir)
    _, w2 = _run(tmp_path, "b", roberta_tokenizer_dir, glue_dir, seed=8)
    assert w1 and any(not torch.equal(w1[k], w2[k]) for k in w1)


@pytest.mark.parametrize("precision,tol", [("bf16", 3e-2), ("fp16", 5e-3)])
def test_autocast_logits_stay_close_to_fp32(precision, tol):
    torch.manual_seed(0)
    model = load_model("roberta-base", get_task("rte"), weights="random").cuda().eval()
    ids = torch.randint(5, model.config.vocab_size, (8, 128), device="cuda")
    with torch.no_grad():
        ref = model(input_ids=ids).logits.double()
        with autocast_context(torch.device("cuda"), precision):
            low = model(input_ids=ids).logits.double()
    rel = ((low - ref).norm() / ref.norm()).item()
    assert 0 < rel < tol, rel  # 0 would mean autocast did nothing
