import json

import loralib
import pytest
import torch
from torch import nn

from lora_nb_utils import LoraNbError, RunConfig, count_parameters, count_parameters_for, inject_lora, mark_trainable
from lora_nb_utils.cli import main as cli_main
from lora_nb_utils.methods.lora import find_target_modules, lora_merged, merge_lora

from tests.conftest import tiny_model


@pytest.mark.parametrize("model,r,expected", [
    ("roberta-base", 8, 294_912),  # 12 layers x 2 x 8 x (768 + 768)
    ("roberta-large", 8, 786_432),
    ("deberta-v2-xxlarge", 8, 2_359_296),
    ("deberta-v2-xxlarge", 16, 4_718_592),  # the paper's "4.7M": the official script's r=16
])
def test_lora_parameter_counts_equal_the_papers_arithmetic(model, r, expected):
    counts = count_parameters_for(RunConfig(model=model, lora_r=r, weights="random"))
    assert counts["lora"] == expected
    assert counts["total_trainable"] == counts["lora"] + counts["head"]


def test_count_params_cli_prints_json(capsys):
    assert cli_main(["count-params", "roberta-base", "--lora-r", "8", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    # head = classifier.dense (768*768+768) + out_proj (768*2+2)
    assert counts == {"lora": 294912, "head": 592130, "total_trainable": 887042, "base": 124647170,
                      "total": 124942082}
    assert cli_main(["count-params", "roberta-base", "--lora-r", "4", "--targets", "query,key,value,attn_out",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lora"] == 12 * 4 * 4 * (768 + 768)


@pytest.mark.parametrize("arch", ["roberta-base", "deberta-v3-base", "minilm"])
def test_trainable_set_is_exactly_adapter_and_head(arch):
    model = tiny_model(arch)
    names = inject_lora(model, r=4, alpha=8, targets="query,value")
    mark_trainable(model, "lora")
    assert len(names) == 2 * model.config.num_hidden_layers
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if "lora_" in n}
    head = trainable - lora
    assert len(lora) == 2 * len(names)
    assert head and all(n.startswith("classifier.") or "pooler" in n for n in head)
    if arch != "roberta-base":  # BERT and DeBERTa classifiers read a pooler: it trains with the head
        assert any("pooler" in n for n in head)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any("query" in n and n.endswith("weight") for n in frozen)
    assert not any("lora_" in n or n.startswith("classifier.") for n in frozen)
    mark_trainable(model, "ft")
    assert all(p.requires_grad for p in model.parameters())


def test_injection_keeps_pretrained_weights_and_starts_as_identity():
    model = tiny_model("roberta-base").eval()
    x = torch.randint(5, 100, (2, 7))
    before = model(input_ids=x).logits
    q = model.roberta.encoder.layer[0].attention.self.query.weight
    inject_lora(model, r=4, alpha=8)
    layer = model.roberta.encoder.layer[0].attention.self
    assert isinstance(layer.query, loralib.Linear) and isinstance(layer.value, loralib.Linear)
    assert not isinstance(layer.key, loralib.Linear)
    assert layer.query.weight is q  # same tensor, no copy
    model.eval()
    assert torch.allclose(model(input_ids=x).logits, before, atol=1e-6)  # B = 0 at start


def test_all_targets_and_unknown_target():
    model = tiny_model("roberta-base")
    assert len(find_target_modules(model, "all")) == 6 * 2
    ffn_out = find_target_modules(model, "ffn_out")
    assert ffn_out and all("attention" not in n for n in ffn_out)
    with pytest.raises(LoraNbError, match="Unknown LoRA target.*querry"):
        inject_lora(model, targets="querry,value")


@pytest.mark.parametrize("arch", ["roberta-base", "deberta-v3-base"])
def test_merged_model_equals_unmerged_and_is_plain(arch):
    torch.manual_seed(0)
    model = tiny_model(arch)
    inject_lora(model, r=4, alpha=16, targets="all")
    for name, p in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=0.05)  # a trained-looking update
    model.eval()
    x = torch.randint(5, 100, (3, 9))
    unmerged = model(input_ids=x).logits
    weights = {n: p.clone() for n, p in model.named_parameters()}
    with lora_merged(model):  # what evaluation uses
        assert torch.allclose(model(input_ids=x).logits, unmerged, atol=1e-5)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())  # W restored bit-exactly
    merged_model = merge_lora(model)
    assert not any(isinstance(m, loralib.Linear) for m in merged_model.modules())
    assert not any("lora_" in n for n, _ in merged_model.named_parameters())
    assert torch.allclose(merged_model(input_ids=x).logits, unmerged, atol=1e-5)
    assert sum(p.numel() for p in merged_model.parameters()) == count_parameters(merged_model)["base"]
