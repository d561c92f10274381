import pytest
import torch
from torch import nn

from lora_nb_utils import LoraNbError, init_from_mnli, inject_lora, load_trainable, mark_trainable, save_trainable
from lora_nb_utils.adapters.checkpoint import read_adapter_metadata

from tests.conftest import tiny_model


def _lora_model(arch, task, r=4, seed=0):
    torch.manual_seed(seed)
    model = tiny_model(arch, task)
    inject_lora(model, r=r, alpha=8)
    mark_trainable(model, "lora")
    for n, p in model.named_parameters():
        if p.requires_grad:
            nn.init.normal_(p, std=0.1)  # pretend it trained
    return model


@pytest.mark.parametrize("arch", ["roberta-base", "deberta-v3-base"])
def test_save_load_roundtrip_is_small_and_exact(tmp_path, arch):
    model = _lora_model(arch, "sst2")
    path = save_trainable(model, tmp_path / "adapter.safetensors", {"model": arch, "lora_r": 4})
    assert read_adapter_metadata(tmp_path)["lora_r"] == 4
    other = _lora_model(arch, "sst2", seed=1)
    loaded = load_trainable(other, path)
    assert sorted(loaded) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    for (n, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        if n in loaded:
            assert torch.equal(a, b), n


@pytest.mark.parametrize("arch", ["roberta-base", "deberta-v3-base"])
def test_mnli_initialisation_transfers_lora_only_and_reinitialises_head(tmp_path, arch):
    mnli = _lora_model(arch, "mnli")
    save_trainable(mnli, tmp_path / "adapter.safetensors")
    rte = _lora_model(arch, "rte", seed=5)
    head_before = {n: p.clone() for n, p in rte.named_parameters() if n.startswith("classifier.")}
    loaded = init_from_mnli(rte, tmp_path)  # a run directory works as well as the file
    mnli_params = dict(mnli.named_parameters())
    assert any("lora_A" in n for n in loaded) and any("lora_B" in n for n in loaded)
    assert not any(n.startswith("classifier.") for n in loaded)
    assert any("pooler" in n for n in loaded) == arch.startswith("deberta")  # DeBERTa: pooler transfers too
    for n, p in rte.named_parameters():
        if n in loaded:
            assert torch.equal(p, mnli_params[n]), n
        if n in head_before:
            assert torch.equal(p, head_before[n]), n  # 3-class MNLI head not forced into a 2-class task


def test_wrong_rank_fails_clearly(tmp_path):
    save_trainable(_lora_model("roberta-base", "mnli", r=4), tmp_path / "adapter.safetensors")
    with pytest.raises(LoraNbError, match=r"shape mismatch at '.*lora_A'.*\(4, 32\).*\(8, 32\)"):
        init_from_mnli(_lora_model("roberta-base", "rte", r=8), tmp_path)
    with pytest.raises(LoraNbError, match="No adapter file"):
        init_from_mnli(_lora_model("roberta-base", "rte"), tmp_path / "nowhere")
