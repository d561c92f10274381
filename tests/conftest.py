"""Shared fixtures. Offline data comes from configuration: $LORA_NB_SHARED_DIR (the Makefile and .ci/run set it
to ../shared when that exists), never from a path written here."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lora_nb_utils.models import load_model, load_tokenizer
from lora_nb_utils.bench.config import TINY
from lora_nb_utils.glue.tasks import get_task


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


FAKE_NOTEBOOK_PARAMS = '''model: str = "minilm"  # model
task: str = "sst2"  # task
method: str = "lora"  # method
lora_r: int = 8  # rank
learning_rate: float = 5.0e-4  # lr
seed: int = 0  # seed
init_from: str = ""  # MNLI init
output_dir: str = "runs/x"  # run directory
progress: str = "auto"  # progress'''  # the parameters cell of the runner's fake notebooks


def write_fake_notebook(folder: Path, params: str, body: str, name: str = "fake.ipynb") -> Path:
    """`folder`/notebooks/`name`, laid out like the repository: a cell tagged `parameters` with `params` and one
    code cell `body` (the runner's fast stand-in for a model notebook)."""
    import nbformat
    (folder / "notebooks").mkdir(exist_ok=True)
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell(body)],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    path = folder / "notebooks" / name
    nbformat.write(nb, path)
    return path


def fake_project(folder: Path, params: str, body: str):
    """`folder` laid out like the repository with write_fake_notebook's notebooks/fake.ipynb, and a function that
    writes a grid of it (output_root: out) from the YAML of its blocks. Returns (folder, write_grid)."""
    import textwrap
    write_fake_notebook(folder, params, body)

    def write_grid(blocks: str, name: str = "grid.yaml") -> Path:
        path = folder / name
        path.write_text("notebook: notebooks/fake.ipynb\noutput_root: out\n" + textwrap.dedent(blocks))
        return path
    return folder, write_grid


def start_lora_nb(argv: list, log_path: Path, env: dict | None = None):
    """`lora-nb ARGV` in a forked process (already imported: it starts at once) with `env` added, in a process group
    of its own (SIGKILL to the group takes it and its workers), its output appended to log_path (created first)."""
    import multiprocessing
    import sys
    from lora_nb_utils.cli import main

    def child():
        os.setpgid(0, 0)
        os.environ.update(env or {})
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)
        os._exit(main([str(a) for a in argv]))
    Path(log_path).touch()
    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    try:
        os.setpgid(proc.pid, proc.pid)  # whichever of parent and child comes first
    except OSError:
        pass
    return proc


def tiny_model(arch: str, task: str = "sst2", **overrides):
    """A small randomly initialised model with the real architecture's code path."""
    return load_model(arch, get_task(task), weights="random", **{**TINY, **overrides})


def real_rte_rows(glue_dir: str, tokenizer_dir: str, n_train: int, n_validation: int):
    """(task, tokenized splits, tokenizer): n_train training and n_validation validation rows of the real RTE
    (subsample's fixed draw), tokenized with the RoBERTa tokenizer at length 64."""
    from lora_nb_utils.glue.data import load_glue, subsample, tokenize
    tokenizer = load_tokenizer("roberta-base", tokenizer_dir)
    task = get_task("rte")
    dsd = load_glue(task, glue_dir)
    dsd["train"], dsd["validation"] = subsample(dsd["train"], n_train), subsample(dsd["validation"], n_validation)
    return task, tokenize(dsd, task, tokenizer, 64), tokenizer


@pytest.fixture(scope="session")
def slurm_cluster():
    """The project's single-node test SLURM, brought up by .ci/slurm-up (idempotent) when its packages are installed
    and this is root; SLURM_CONF points SLURM's commands at it. Its state folder (PID files, logs) is returned.
    Otherwise the test skips with the reason, or fails when LORA_NB_REQUIRE_SLURM=1 (`make test` sets it where it
    brought SLURM up)."""
    reason = None
    if not all(shutil.which(c) for c in ("slurmctld", "slurmd", "munged", "sbatch")):
        reason = "SLURM is not installed (apt-get install slurmctld slurmd slurm-client munge; `make test` does)"
    elif os.geteuid() != 0:
        reason = "the test SLURM's daemons run as root"
    else:
        up = subprocess.run([str(Path(__file__).resolve().parents[1] / ".ci" / "slurm-up")], capture_output=True,
                            text=True, timeout=120)
        if up.returncode:
            reason = f".ci/slurm-up failed: {up.stderr.strip()[-500:]}"
    if reason:
        if os.environ.get("LORA_NB_REQUIRE_SLURM") == "1":
            pytest.fail(f"LORA_NB_REQUIRE_SLURM=1 and {reason}")
        pytest.skip(reason)
    state = Path(os.environ.get("LORA_NB_SLURM_DIR", "/tmp/lora-nb-slurm"))
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    yield state
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before
