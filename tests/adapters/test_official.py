"""The LoRA authors' released checkpoint (microsoft/LoRA roberta_base_lora_mnli.bin, the real file) loaded into our
model: every tensor in its module, alpha set, the head only when it fits, MNLI initialisation, clear failures."""
from pathlib import Path

import loralib
import pytest
import torch

from lora_nb_utils import LoraNbError, init_from_mnli, inject_lora, mark_trainable
from lora_nb_utils.adapters import load_official_checkpoint
from lora_nb_utils.glue.tasks import get_task
from lora_nb_utils.models import load_model, skeleton

from tests.conftest import tiny_model


# ---------------------------------------------------------------- the official checkpoint (microsoft/LoRA)

@pytest.fixture(scope="module")
def official_path(glue_dir):
    path = Path(glue_dir).parent / "checkpoints" / "microsoft-lora" / "roberta_base_lora_mnli.bin"
    if not path.is_file():
        pytest.fail(f"missing {path}: the LoRA authors' RoBERTa-base MNLI checkpoint belongs in the shared folder.")
    return path


@pytest.fixture(scope="module")
def official_state(official_path):
    return torch.load(official_path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def roberta_mnli(official_path):
    """roberta-base (shipped config, random base weights), LoRA r=8 with a deliberately wrong alpha, then loaded."""
    torch.manual_seed(0)
    model = load_model("roberta-base", get_task("mnli"), weights="random")
    inject_lora(model, r=8, alpha=1)
    report = load_official_checkpoint(model, official_path, lora_alpha=16)
    print(report)
    return model, report


def _meta_roberta(name="roberta-base", r=8, targets="query,value", **config):
    """Only shapes matter for the mismatch checks: the meta-device skeleton (no memory, no time)."""
    model = skeleton(name, get_task("mnli"), **config)
    if r:
        inject_lora(model, r=r, alpha=16, targets=targets)
    return model


def test_official_checkpoint_lands_in_every_module(roberta_mnli, official_state):
    model, report = roberta_mnli
    assert report["loaded"] == 52 and report["lora_tensors"] == 48 and report["lora_modules"] == 24
    assert report["r"] == 8 and report["lora_alpha"] == 16 and report["scaling"] == 2.0
    assert report["head_loaded"] and "3 labels" in report["head"]
    params = dict(model.named_parameters())
    assert len(official_state) == 52
    for key, tensor in official_state.items():  # their names are ours: every tensor in its own module
        assert torch.equal(params[key], tensor), key
    layers = {n: m for n, m in model.named_modules() if isinstance(m, loralib.Linear)}
    assert len(layers) == 24
    assert all(m.lora_alpha == 16 and m.scaling == 2.0 for m in layers.values())  # alpha=1 at injection replaced
    # the layer computes W x + b + (16 / 8) B A x with the file's A and B
    name = "roberta.encoder.layer.5.attention.self.value"
    x = torch.randn(3, 768)
    a, b = official_state[f"{name}.lora_A"], official_state[f"{name}.lora_B"]
    layer = layers[name]
    layer.eval()  # loralib's train() returns None, so no chaining
    expected = torch.nn.functional.linear(x, layer.weight, layer.bias) + 2.0 * (x @ a.T @ b.T)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_official_checkpoint_module_prefix_is_dropped(roberta_mnli, official_state, tmp_path):
    model, _ = roberta_mnli
    path = tmp_path / "ddp.bin"
    torch.save({f"module.{k}": v for k, v in official_state.items()}, path)
    assert load_official_checkpoint(model, path, lora_alpha=16)["loaded"] == 52


def test_official_checkpoint_into_two_class_task_keeps_fresh_head(official_path, official_state):
    torch.manual_seed(1)
    model = load_model("roberta-base", get_task("rte"), weights="random")
    inject_lora(model, r=8, alpha=8)  # the run's own alpha
    mark_trainable(model, "lora")
    head = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("classifier.")}
    assert head["classifier.out_proj.weight"].shape == (2, 768)

    loaded = init_from_mnli(model, official_path)  # MNLI initialisation from their .bin: LoRA only
    assert sorted(loaded) == sorted(k for k in official_state if "lora_" in k)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[k], official_state[k]) for k in loaded)
    assert all(torch.equal(params[n], t) for n, t in head.items())
    assert all(m.scaling == 1.0 for m in model.modules() if isinstance(m, loralib.Linear))  # alpha untouched

    report = load_official_checkpoint(model, official_path, lora_alpha=16, include_head=False)
    print(report)
    assert not report["head_loaded"] and report["loaded"] == 48 and report["head"] == "not loaded: not requested"
    with pytest.warns(UserWarning, match=r"head not loaded.*\(3, 768\).*\(2, 768\)"):
        report = load_official_checkpoint(model, official_path, lora_alpha=16)  # 3-class head cannot fit 2 classes
    assert not report["head_loaded"]
    assert all(torch.equal(params[n], t) for n, t in head.items())
    assert all(m.scaling == 2.0 for m in model.modules() if isinstance(m, loralib.Linear))


@pytest.mark.parametrize("model_kw, match", [
    (dict(name="roberta-large"), r"shape mismatch at 'roberta\.encoder\.layer\.0\.attention\.self\.query\.lora_A'"
                                 r".*\(8, 768\) vs model \(8, 1024\).*different model size"),
    (dict(r=4), r"shape mismatch at 'roberta\.encoder\.layer\.0\.attention\.self\.query\.lora_A'.*file r=8, model r=4"),
    (dict(num_hidden_layers=6), r"key 'roberta\.encoder\.layer\.6\.attention\.self\.query\.lora_A' has no parameter"),
    (dict(num_hidden_layers=14), r"LoRA at 'roberta\.encoder\.layer\.12\.attention\.self\.query' but the file has no"),
    (dict(targets="query,key,value"), r"LoRA at 'roberta\.encoder\.layer\.0\.attention\.self\.key' but the file has"),
    (dict(r=0), r"has no LoRA layers.*inject_lora\(model, r=8"),
])
def test_official_checkpoint_wrong_model_fails_naming_the_key(official_path, model_kw, match):
    with pytest.raises(LoraNbError, match=match):
        load_official_checkpoint(_meta_roberta(**model_kw), official_path, lora_alpha=16)


def test_official_checkpoint_other_family_and_missing_alpha(official_path):
    deberta = tiny_model("deberta-v3-base", "mnli")
    inject_lora(deberta, r=8)
    with pytest.raises(LoraNbError, match=r"key 'roberta\.encoder\.layer\.0\.attention\.self\.query\.lora_A' has no"):
        load_official_checkpoint(deberta, official_path, lora_alpha=16)
    with pytest.raises(TypeError, match="lora_alpha"):
        load_official_checkpoint(_meta_roberta(), official_path)  # alpha must be given
    with pytest.raises(LoraNbError, match="No checkpoint file"):
        load_official_checkpoint(_meta_roberta(), official_path.with_name("nowhere.bin"), lora_alpha=16)
