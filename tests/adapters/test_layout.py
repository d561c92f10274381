"""The adapters package: formats import one way (state <- formats <- the package), and `init_from_mnli` picks the
format from the file it is given: the authors' torch files go to official.py, our adapter (file or run folder) to
checkpoint.py."""
import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import lora_nb_utils.adapters as adapters
from lora_nb_utils import LoraNbError, inject_lora, mark_trainable, save_trainable

from tests.conftest import tiny_model

PACKAGE = Path(adapters.__file__).parent


def _siblings_imported(module: str) -> set[str]:
    """The modules of lora_nb_utils.adapters that `module` imports ('__init__': the package itself)."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import ... / from . import x
                found |= {node.module} if node.module else {a.name for a in node.names}
            elif node.level == 0 and (node.module or "").startswith("lora_nb_utils.adapters"):
                found.add(node.module.removeprefix("lora_nb_utils.adapters").lstrip(".") or "__init__")
            elif node.level == 2 and node.module == "adapters":
                found.add("__init__")
    return found


def test_adapter_modules_import_one_way():
    assert _siblings_imported("state") == set()
    assert _siblings_imported("checkpoint") == {"state"}  # no lazy import of the .bin format any more
    assert _siblings_imported("official") == {"state"}
    assert _siblings_imported("peft_format") <= {"state", "checkpoint"}
    assert {p.stem for p in PACKAGE.glob("*.py")} == {"__init__", "state", "checkpoint", "official", "peft_format"}


def _mnli_and_rte(seed=0):
    torch.manual_seed(seed)
    mnli, rte = tiny_model("roberta-base", "mnli"), tiny_model("roberta-base", "rte")
    for model in (mnli, rte):
        inject_lora(model, r=4, alpha=8)
        mark_trainable(model, "lora")
    with torch.no_grad():
        for p in (p for p in mnli.parameters() if p.requires_grad):
            nn.init.normal_(p, std=0.1)  # as if trained
    return mnli, rte


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth"])
def test_init_from_mnli_reads_a_torch_file_as_the_authors_format(tmp_path, suffix):
    mnli, rte = _mnli_and_rte()
    state = {n: p.detach().clone() for n, p in mnli.named_parameters() if "lora_" in n or n.startswith("classifier.")}
    path = tmp_path / f"released{suffix}"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # a DDP prefix, as in their files
    head = {n: p.detach().clone() for n, p in rte.named_parameters() if n.startswith("classifier.")}
    loaded = adapters.init_from_mnli(rte, path)
    assert sorted(loaded) == sorted(k for k in state if "lora_" in k)  # LoRA only: their 3-class head stays out
    params = dict(rte.named_parameters())
    assert all(torch.equal(params[k], state[k]) for k in loaded)
    assert all(torch.equal(params[n], t) for n, t in head.items())


@pytest.mark.parametrize("give", ["file", "folder"])
def test_init_from_mnli_reads_our_adapter_from_its_file_or_run_folder(tmp_path, give):
    mnli, rte = _mnli_and_rte()
    path = save_trainable(mnli, tmp_path / adapters.ADAPTER_FILE)
    loaded = adapters.init_from_mnli(rte, path if give == "file" else tmp_path)
    assert loaded and all("lora_" in n for n in loaded)  # RoBERTa's head has no pooler: LoRA only
    mnli_params, params = dict(mnli.named_parameters()), dict(rte.named_parameters())
    assert all(torch.equal(params[n], mnli_params[n]) for n in loaded)


def test_init_from_mnli_with_neither_fails_naming_what_it_wants(tmp_path):
    _, rte = _mnli_and_rte()
    with pytest.raises(LoraNbError, match="No adapter file"):
        adapters.init_from_mnli(rte, tmp_path / "nowhere.bin")  # a .bin that does not exist is not the authors'
    (tmp_path / "broken.bin").write_bytes(b"not a pickle")
    with pytest.raises(LoraNbError, match="not a readable torch state dict"):
        adapters.init_from_mnli(rte, tmp_path / "broken.bin")


def test_export_peft_takes_a_model_and_names_export_run_for_a_folder(tmp_path):
    with pytest.raises(LoraNbError, match=r"export_run\(run_dir, out_dir\)"):
        adapters.export_peft(tmp_path, tmp_path / "out")
