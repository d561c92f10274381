"""Interoperability: the LoRA authors' released checkpoint in (real file), PEFT adapter folders out and in (real
MiniLM weights, real SST-2 sentences, loaded back by PEFT itself)."""
import json
from pathlib import Path

import loralib
import pandas as pd
import pytest
import torch
from peft import PeftModel

from lora_nb_utils import LoraNbError, RunConfig, init_from_mnli, inject_lora, mark_trainable, save_trainable
from lora_nb_utils.cli import main
from lora_nb_utils.experiment import adapter_metadata
from lora_nb_utils.adapters.interop import export_peft, import_peft, load_official_checkpoint
from lora_nb_utils.models import load_model, load_tokenizer
from lora_nb_utils.runs.rundir import start_run
from lora_nb_utils.glue.tasks import get_task

from tests.conftest import tiny_model

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


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
    """Only shapes matter for the mismatch checks: build on the meta device (no memory, no time)."""
    with torch.device("meta"):
        model = load_model(name, get_task("mnli"), weights="random", **config)
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


# ---------------------------------------------------------------- PEFT: ours -> PEFT -> ours on the real MiniLM

@pytest.fixture(scope="module")
def sst2_batch(glue_dir):
    frame = pd.read_parquet(f"{glue_dir}/sst2/validation-00000-of-00001.parquet").head(8)
    return load_tokenizer("minilm")(list(frame["sentence"]), padding=True, truncation=True, return_tensors="pt")


def _logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def _trained_minilm(r=8, alpha=16, seed=0):
    """Real MiniLM + LoRA with non-zero B and head (as if trained)."""
    torch.manual_seed(seed)
    model = load_model("minilm", get_task("sst2"))
    inject_lora(model, r=r, alpha=alpha)
    mark_trainable(model, "lora")
    with torch.no_grad():
        for p in (p for p in model.parameters() if p.requires_grad):
            p.normal_(0.0, 0.05)
    return model


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory, sst2_batch):
    model = _trained_minilm()
    out = tmp_path_factory.mktemp("peft") / "adapter"
    report = export_peft(model, out)
    print(report)
    return model, out, report, _logits(model, sst2_batch)


def test_export_writes_a_peft_lora_adapter(minilm_export):
    model, out, report, _ = minilm_export
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(report["files"])
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "SEQ_CLS"
    assert config["r"] == 8 and config["lora_alpha"] == 16 and config["lora_dropout"] == 0.0
    assert sorted(config["target_modules"]) == ["query", "value"]
    assert {"classifier", "pooler"} <= set(config["modules_to_save"])  # BERT's head reads the pooler
    assert config["base_model_name_or_path"] == MINILM_HUB_ID
    from safetensors.torch import load_file
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert len(tensors) == report["tensors"] == 6 * 2 * 2 + 4
    key = "base_model.model.bert.encoder.layer.3.attention.self.value.lora_B.weight"
    assert torch.equal(tensors[key], model.get_parameter("bert.encoder.layer.3.attention.self.value.lora_B"))
    assert torch.equal(tensors["base_model.model.bert.pooler.dense.weight"], model.bert.pooler.dense.weight)
    assert torch.equal(tensors["base_model.model.classifier.weight"], model.classifier.weight)


def test_peft_from_pretrained_gives_our_logits(minilm_export, sst2_batch):
    _, out, _, ours = minilm_export
    fresh = load_model("minilm", get_task("sst2"))
    plain = _logits(fresh, sst2_batch)
    assert (plain - ours).abs().max() > 1e-2  # the adapter changes the output: equality below is not vacuous
    peft_model = PeftModel.from_pretrained(fresh, str(out))
    diff = (_logits(peft_model, sst2_batch) - ours).abs().max().item()
    print(f"ours -> PEFT: max |logit diff| = {diff:.3g}")
    assert diff < 1e-5


def test_peft_back_into_ours_gives_the_same_logits(minilm_export, sst2_batch):
    _, out, _, ours = minilm_export
    model = load_model("minilm", get_task("sst2"))
    inject_lora(model, r=8, alpha=1)  # alpha comes from adapter_config.json
    report = import_peft(model, out)
    print(report)
    assert report["loaded"] == 28 and report["lora_alpha"] == 16 and report["head_loaded"]
    assert all(m.scaling == 2.0 for m in model.modules() if isinstance(m, loralib.Linear))
    diff = (_logits(model, sst2_batch) - ours).abs().max().item()
    print(f"ours -> PEFT -> ours: max |logit diff| = {diff:.3g}")
    assert diff < 1e-5


def test_import_peft_fails_clearly(minilm_export, tmp_path):
    _, out, _, _ = minilm_export
    wrong_rank = load_model("minilm", get_task("sst2"))
    inject_lora(wrong_rank, r=4)
    with pytest.raises(LoraNbError, match=r"shape mismatch at 'bert\.encoder\.layer\.0\.attention\.self\.query\.lora"):
        import_peft(wrong_rank, out)
    with pytest.raises(LoraNbError, match="no LoRA layers"):
        import_peft(load_model("minilm", get_task("sst2")), out)
    three_class = load_model("minilm", get_task("mnli"))
    inject_lora(three_class, r=8)
    with pytest.raises(LoraNbError, match=r"cannot load the head.*'classifier\.\w+'.*num_labels=3"):
        import_peft(three_class, out)
    assert not import_peft(three_class, out, include_head=False)["head_loaded"]
    dora = tmp_path / "dora"
    dora.mkdir()
    config = json.loads((out / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(LoraNbError, match="use_dora"):
        import_peft(three_class, dora)
    with pytest.raises(LoraNbError, match="No PEFT adapter"):
        import_peft(three_class, tmp_path / "nowhere")


# ---------------------------------------------------------------- lora-nb export RUN_DIR --format peft OUT

def test_cli_exports_a_run_directory_that_peft_loads(tmp_path, sst2_batch, capsys):
    cfg = RunConfig(model="minilm", task="sst2", lora_r=4, lora_alpha=8, lora_dropout=0.1,
                    output_dir=str(tmp_path / "run"))
    model = _trained_minilm(r=4, alpha=8, seed=3)
    start_run(cfg.output_dir, cfg.to_params())
    save_trainable(model, tmp_path / "run" / "adapter.safetensors", adapter_metadata(cfg, get_task("sst2")))
    out = tmp_path / "peft"
    assert main(["export", cfg.output_dir, "--format", "peft", str(out)]) == 0
    printed = capsys.readouterr().out
    print(printed)
    assert f"wrote PEFT adapter {out}" in printed and "adapter_model.safetensors" in printed
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (4, 8, 0.1)
    assert config["base_model_name_or_path"] == MINILM_HUB_ID
    peft_model = PeftModel.from_pretrained(load_model("minilm", get_task("sst2")), str(out))
    diff = (_logits(peft_model, sst2_batch) - _logits(model, sst2_batch)).abs().max().item()
    print(f"run directory -> PEFT: max |logit diff| = {diff:.3g}")
    assert diff < 1e-5

    assert main(["export", str(tmp_path / "nowhere"), "--format", "peft", str(out)]) == 2
    assert "No adapter file" in capsys.readouterr().err
