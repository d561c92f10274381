"""PEFT adapter folders out and in (real MiniLM weights, real SST-2 sentences, loaded back by PEFT itself), from a
model and from a run directory (`lora-nb export`)."""
import json

import loralib
import pandas as pd
import pytest
import torch
from peft import PeftModel

from lora_nb_utils import LoraNbError, RunConfig, inject_lora, mark_trainable, save_trainable
from lora_nb_utils.cli import main
from lora_nb_utils.experiment import adapter_metadata
from lora_nb_utils.adapters import export_peft, import_peft
from lora_nb_utils.models import load_model, load_tokenizer
from lora_nb_utils.runs.rundir import start_run
from lora_nb_utils.glue.tasks import get_task

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


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
