"""Real model (MiniLM, pretrained), real data (SST-2): LoRA must learn, not just run.

Calibration (CPU, 3000 training sentences, 1 epoch, seed 0): LoRA r=8 + head 0.792 dev accuracy; head only
(LoRA B frozen at zero) 0.698; LoRA with a frozen head 0.776. The bar 0.76 fails the first kind of breakage;
the weight checks below fail the second."""
import pytest
import torch

from lora_nb_utils import RunConfig, build_model, prepare_data, train_and_record

BAR = 0.76


@pytest.fixture(scope="module")
def trained(glue_dir, tmp_path_factory):
    cfg = RunConfig(model="minilm", task="sst2", glue_dir=glue_dir, max_train_samples=3000, epochs=1,
                    lora_r=8, lora_alpha=16, learning_rate=5e-4, batch_size=16, seed=0, progress="none",
                    output_dir=str(tmp_path_factory.mktemp("sst2_lora")))
    data = prepare_data(cfg)
    model = build_model(cfg, data.task)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    metrics = train_and_record(cfg, model, data)
    return cfg, model, initial, metrics


def test_lora_on_real_sst2_is_well_above_chance(trained):
    _, _, _, metrics = trained
    assert metrics["status"] == "ok"
    assert metrics["best"]["accuracy"] >= BAR, metrics["best"]
    assert metrics["sizes"] == {"train": 3000, "validation": 872}
    assert metrics["parameters"]["lora"] == 6 * 2 * 8 * (384 + 384)


def test_adapter_and_head_moved_and_base_stayed(trained):
    _, model, initial, _ = trained
    for name, p in model.named_parameters():
        changed = not torch.equal(p, initial[name])
        if "lora_B" in name or name.startswith("classifier."):
            assert changed, f"{name} did not train"
        elif "lora_" not in name and "pooler" not in name:
            assert not changed, f"{name} should be frozen"
