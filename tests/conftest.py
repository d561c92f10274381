"""Shared fixtures. Offline data comes from configuration: $LORA_NB_SHARED_DIR (the Makefile and .ci/run set it
to ../shared when that exists), never from a path written here."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lora_nb_utils.models import load_model, load_tokenizer
from lora_nb_utils.glue.tasks import get_task

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, pooler_hidden_size=32)


def _shared() -> Path:
    root = os.environ.get("LORA_NB_SHARED_DIR")
    if not root or not Path(root).is_dir():
        pytest.fail("Set LORA_NB_SHARED_DIR to the offline data folder (../shared beside the checkout); "
                    "`make test` does this for you.")
    return Path(root)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    os.environ["LORA_NB_CACHE"] = str(tmp_path_factory.mktemp("lora_nb_cache"))


@pytest.fixture(scope="session")
def glue_dir() -> str:
    return str(_shared() / "glue")


@pytest.fixture(scope="session")
def roberta_tokenizer_dir() -> str:
    return str(_shared() / "tokenizers" / "roberta")


@pytest.fixture(scope="session")
def deberta_tokenizer_dir() -> str:
    return str(_shared() / "tokenizers" / "deberta-v3")


@pytest.fixture(scope="session")
def roberta_tokenizer(roberta_tokenizer_dir):
    return load_tokenizer("roberta-base", roberta_tokenizer_dir)


def write_fake_notebook(folder: Path, params: str, body: str) -> Path:
    """`folder`/notebooks/fake.ipynb, laid out like the repository: a cell tagged `parameters` with `params` and one
    code cell `body` (the runner's fast stand-in for a model notebook)."""
    import nbformat
    (folder / "notebooks").mkdir(exist_ok=True)
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell(body)],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    path = folder / "notebooks" / "fake.ipynb"
    nbformat.write(nb, path)
    return path


def tiny_model(arch: str, task: str = "sst2", **overrides):
    """A small randomly initialised model with the real architecture's code path."""
    return load_model(arch, get_task(task), weights="random", **{**TINY, **overrides})
