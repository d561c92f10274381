"""A user's battery of bad inputs, for every `lora-nb` command (train, run, results, report, export, count-params,
bench) and the notebooks. Each must exit non-zero with one line that names the problem and the fix, no traceback,
and leave everything on disk as it was. The commands run in-process (`cli.main`), on a tiny random-weight model.

Tests run as root, which ignores file permissions: "unreadable" and "disk full" are simulated (a folder where a file
belongs, a file where a folder belongs, /sys which refuses new folders, a write that fails with ENOSPC)."""
from __future__ import annotations

import errno
import json
import os
import pathlib
import re
import shutil
import textwrap

import nbformat
import pytest
import torch

from lora_nb_utils.cli import main
from lora_nb_utils.config import RunConfig
from lora_nb_utils.experiment import run_experiment
from lora_nb_utils.models import resolve_source

from tests.conftest import FAKE_NOTEBOOK_PARAMS, TINY
from lora_nb_utils.paths import repo_root

NOTEBOOK_PARAMS = FAKE_NOTEBOOK_PARAMS


@pytest.fixture(scope="module", autouse=True)
def own_tokenization_cache(tmp_path_factory):
    """This module's tokenizations stay out of the session's cache, whose entries other tests count."""
    before = os.environ["LORA_NB_CACHE"]
    os.environ["LORA_NB_CACHE"] = str(tmp_path_factory.mktemp("tokenized"))
    yield
    os.environ["LORA_NB_CACHE"] = before


def _tiny_model_folder(folder: pathlib.Path) -> pathlib.Path:
    """MiniLM's architecture at test size (config only): `model: <folder>, weights: random, tokenizer: minilm`."""
    config = json.loads((pathlib.Path(resolve_source("minilm")) / "config.json").read_text())
    config.update({k: v for k, v in TINY.items() if k != "pooler_hidden_size"})
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _finished_run(ws: pathlib.Path, glue_dir: str) -> pathlib.Path:
    run = ws / "runs" / "ok"
    cfg = RunConfig(model=str(ws / "tiny"), tokenizer="minilm", weights="random", task="rte", glue_dir=glue_dir,
                    max_train_samples=16, max_eval_samples=16, max_seq_len=32, progress="none", output_dir=str(run))
    run_experiment(cfg)
    return run


def _copy_run(ws, name, change) -> pathlib.Path:
    target = ws / name / "r"
    shutil.copytree(ws / "runs" / "ok", target)
    change(target)
    return target


def _truncate(path: pathlib.Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _to_folder(path: pathlib.Path) -> None:
    path.unlink()
    path.mkdir()


def _glue_copy(ws, name, glue_dir, change) -> str:
    folder = ws / name / "rte"
    shutil.copytree(pathlib.Path(glue_dir) / "rte", folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    change(folder / "train-00000-of-00001.parquet")
    return str(folder.parent)


def _grid(ws, name, body) -> str:
    path = ws / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return str(path)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, glue_dir):
    """The workspace of every case: a tiny model, a finished run and damaged copies, params files, grids."""
    ws = tmp_path_factory.mktemp("bad_inputs")
    _tiny_model_folder(ws / "tiny")
    _finished_run(ws, glue_dir)
    _copy_run(ws, "trunc_metrics", lambda r: _truncate(r / "metrics.json"))
    _copy_run(ws, "trunc_manifest", lambda r: _truncate(r / "manifest.json"))
    _copy_run(ws, "trunc_adapter", lambda r: _truncate(r / "adapter.safetensors"))
    _copy_run(ws, "garbage_adapter", lambda r: (r / "adapter.safetensors").write_bytes(os.urandom(4096)))
    _copy_run(ws, "folder_adapter", lambda r: _to_folder(r / "adapter.safetensors"))
    _copy_run(ws, "interrupted", lambda r: [(r / f).unlink() for f in ("metrics.json", "adapter.safetensors")])
    for name, change in (("glue_trunc", _truncate), ("glue_empty", lambda p: p.write_bytes(b"")),
                         ("glue_garbage", lambda p: p.write_bytes(os.urandom(2048))), ("glue_folder", _to_folder)):
        _glue_copy(ws, name, glue_dir, change)
    (ws / "a_file.txt").write_text("not a folder\n")
    (ws / "other_files").mkdir()
    (ws / "other_files" / "notes.txt").write_text("someone's notes\n")
    (ws / "out_exists").mkdir()
    for name, text in (("p_bad_yaml", "learning_rate: [1.0e-3,\n"), ("p_list", "- 1\n- 2\n"),
                       ("p_typo", "lerning_rate: 1.0e-3\n"), ("p_str_lr", "learning_rate: 5e-4\n"),
                       ("p_neg_lr", "learning_rate: -1.0e-3\n")):
        (ws / f"{name}.yaml").write_text(text)
    (ws / "notebooks").mkdir()
    cell = nbformat.v4.new_code_cell(NOTEBOOK_PARAMS)
    cell.metadata["tags"] = ["parameters"]
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=[cell], metadata=kernel), ws / "notebooks" / "fake.ipynb")
    head = "notebook: notebooks/fake.ipynb\noutput_root: out\n"
    grids = {"g_bad_yaml": head + "blocks: [\n", "g_list": "- notebook: x\n", "g_empty": head + "blocks: []\n",
             "g_null": head + "blocks:\n", "g_block_number": head + "blocks: [5]\n",
             "g_matrix_list": head + "blocks:\n  - matrix: [1, 2]\n",
             "g_empty_matrix": head + "blocks:\n  - matrix: {seed: []}\n",
             "g_unknown": head + "blocks:\n  - params: {lerning_rate: 1.0e-3}\n",
             "g_str_lr": head + "blocks:\n  - params: {learning_rate: 5e-4}\n",
             "g_neg_lr": head + "blocks:\n  - params: {learning_rate: -1.0e-3}\n",
             "g_epochs": head + "blocks:\n  - params: {method: bogus}\n",
             "g_block_key": head + "blocks:\n  - parms: {seed: 1}\n",
             "g_no_notebook": "notebook: notebooks/missing.ipynb\nblocks:\n  - matrix: {seed: [1]}\n",
             "g_root_file": "notebook: notebooks/fake.ipynb\noutput_root: a_file.txt/out\n"
                            "blocks:\n  - matrix: {seed: [1]}\n",
             "g_ok": head + "blocks:\n  - matrix: {seed: [1]}\n"}
    for name, body in grids.items():
        _grid(ws, name, body)
    return ws


def _train(ws, *extra, out="new_run") -> list[str]:
    return ["train", "--model", str(ws / "tiny"), "--tokenizer", "minilm", "--weights", "random", "--task", "rte",
            "--max-train-samples", "16", "--max-eval-samples", "16", "--max-seq-len", "32", "--progress", "none",
            "--output-dir", str(ws / out) if not str(out).startswith("/") else out, *extra]


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
RUN_FIX = r"rerun|delete"

# (id, argv from the workspace, the problem, the fix)
CASES = [
    # train: values
    ("train lr 0", lambda ws: _train(ws, "--learning-rate", "0"), r"learning_rate must be > 0", r"e\.g\. 5\.0e-4"),
    ("train lr negative", lambda ws: _train(ws, "--learning-rate=-1e-3"), r"learning_rate must be > 0", r"e\.g\."),
    ("train lr nan", lambda ws: _train(ws, "--learning-rate", "nan"), r"learning_rate must be > 0", r"e\.g\."),
    ("train lr not a number", lambda ws: _train(ws, "--learning-rate", "fast"), r"invalid float value: 'fast'",
     r"--help"),
    ("train rank not an int", lambda ws: _train(ws, "--lora-r", "abc"), r"invalid int value: 'abc'", r"--help"),
    ("train seed float", lambda ws: _train(ws, "--seed", "1.5"), r"invalid int value: '1.5'", r"--help"),
    ("train bool", lambda ws: _train(ws, "--group-by-length", "maybe"), r"expected true or false", r"--help"),
    ("train rank 0", lambda ws: _train(ws, "--lora-r", "0"), r"lora_r must be >= 1", r">= 1"),
    ("train epochs 0", lambda ws: _train(ws, "--epochs", "0"), r"epochs must be >= 1", r">= 1"),
    ("train batch negative", lambda ws: _train(ws, "--batch-size", "-4"), r"batch_size must be >= 1", r">= 1"),
    ("train dropout 1.5", lambda ws: _train(ws, "--lora-dropout", "1.5"), r"lora_dropout must be in", r"\[0, 1\)"),
    ("train warmup negative", lambda ws: _train(ws, "--warmup-ratio", "-0.1"), r"warmup_ratio must be in",
     r"\[0, 1\]"),
    ("train samples negative", lambda ws: _train(ws, "--max-train-samples", "-5"), r"max_train_samples must be >= 0",
     r">= 0"),
    ("train task", lambda ws: _train(ws, "--task", "sst3"), r"Unknown GLUE task 'sst3'", r"Choose one of"),
    ("train method", lambda ws: _train(ws, "--method", "bogus"), r"method must be one of", r"ft, lora"),
    ("train split", lambda ws: _train(ws, "--split", "bogus"), r"split must be one of", r"glue_dev"),
    ("train weights", lambda ws: _train(ws, "--weights", "bogus"), r"weights must be", r"pretrained or random"),
    ("train precision", lambda ws: _train(ws, "--precision", "fp8"), r"precision must be one of", r"fp32, bf16"),
    ("train device name", lambda ws: _train(ws, "--device", "gpu"), r"device must be", r"auto, cpu, cuda"),
    ("train device cuda", lambda ws: _train(ws, "--device", "cuda"), r"no CUDA GPU", r"device 'auto' or 'cpu'",
     NO_CUDA),
    ("train fp16 on cpu", lambda ws: _train(ws, "--precision", "fp16"), r"fp16.*needs a CUDA device",
     r"use 'bf16' or 'fp32'", NO_CUDA),
    ("train seq len", lambda ws: _train(ws, "--max-seq-len", "100000"), r"longer than the 512 positions",
     r"max_seq_len <= 512"),
    ("train targets", lambda ws: _train(ws, "--lora-targets", "bogus"), r"Unknown LoRA target", r"Choose from"),
    # train: files and folders
    ("train params missing", lambda ws: _train(ws, "-f", str(ws / "missing.yaml")), r"does not exist",
     r"give a YAML file"),
    ("train params folder", lambda ws: _train(ws, "-f", str(ws / "notebooks")), r"is not a file", r"YAML file"),
    ("train params bad yaml", lambda ws: _train(ws, "-f", str(ws / "p_bad_yaml.yaml")), r"not valid YAML",
     r"Fix the file"),
    ("train params list", lambda ws: _train(ws, "-f", str(ws / "p_list.yaml")), r"not a list",
     r"maps parameter names"),
    ("train params typo", lambda ws: _train(ws, "-f", str(ws / "p_typo.yaml")), r"unknown parameter 'lerning_rate'",
     r"Did you mean 'learning_rate'"),
    ("train params string lr", lambda ws: _train(ws, "-f", str(ws / "p_str_lr.yaml")),
     r"'learning_rate' must be float, got '5e-4'", r"e\.g\. 5\.0e-4"),
    ("train params negative lr", lambda ws: _train(ws, "-f", str(ws / "p_neg_lr.yaml")), r"learning_rate must be > 0",
     r"e\.g\."),
    ("train glue missing", lambda ws: _train(ws, "--glue-dir", str(ws / "nope")), r"does not exist",
     r"LORA_NB_GLUE_DIR"),
    ("train glue is a file", lambda ws: _train(ws, "--glue-dir", str(ws / "a_file.txt")), r"not a folder",
     r"LORA_NB_GLUE_DIR"),
    ("train parquet truncated", lambda ws: _train(ws, "--glue-dir", str(ws / "glue_trunc")),
     r"train-00000-of-00001.parquet: not a readable Parquet file", r"copy or download it again"),
    ("train parquet empty", lambda ws: _train(ws, "--glue-dir", str(ws / "glue_empty")),
     r"not a readable Parquet file", r"copy or download it again"),
    ("train parquet garbage", lambda ws: _train(ws, "--glue-dir", str(ws / "glue_garbage")),
     r"not a readable Parquet file", r"copy or download it again"),
    ("train parquet is a folder", lambda ws: _train(ws, "--glue-dir", str(ws / "glue_folder")),
     r"missing .*train-00000-of-00001.parquet", r"LORA_NB_GLUE_DIR"),
    ("train output is a file", lambda ws: _train(ws, out=str(ws / "a_file.txt")), r"is a file, not a folder",
     r"choose another output_dir"),
    ("train output below a file", lambda ws: _train(ws, out=str(ws / "a_file.txt" / "run")),
     r"is a file, not a folder", r"choose another output_dir"),
    ("train output holds another run", lambda ws: _train(ws, "--seed", "3", out=str(ws / "runs" / "ok")),
     r"holds another run \(seed 0 there, 3 here\)", r"--force"),
    ("train output holds other files", lambda ws: _train(ws, out=str(ws / "other_files")), r"holds other files",
     r"new or empty output_dir"),
    ("train output refused by the system", lambda ws: _train(ws, out="/sys/lora_nb_test_run"),
     r"Operation not permitted|Read-only|Permission denied", r"check that path"),
    ("train init_from missing", lambda ws: _train(ws, "--init-from", str(ws / "nope")), r"No adapter file",
     r"finished run directory"),
    ("train init_from interrupted run", lambda ws: _train(ws, "--init-from", str(ws / "interrupted" / "r")),
     r"No adapter file", r"finished run directory"),
    ("train init_from truncated", lambda ws: _train(ws, "--init-from", str(ws / "trunc_adapter" / "r")),
     r"adapter.safetensors: not a readable safetensors file", r"rerun the run"),
    # run
    ("run grid missing", lambda ws: ["run", str(ws / "nope.yaml")], r"does not exist", r"give a grid YAML file"),
    ("run grid is a folder", lambda ws: ["run", str(ws / "notebooks")], r"not a file", r"give a grid YAML file"),
    ("run grid bad yaml", lambda ws: ["run", str(ws / "g_bad_yaml.yaml")], r"not valid YAML", r"Fix the file"),
    ("run grid is a list", lambda ws: ["run", str(ws / "g_list.yaml")], r"not a list", r"'notebook' and 'blocks'"),
    ("run blocks empty", lambda ws: ["run", str(ws / "g_empty.yaml")], r"declares no runs", r"non-empty list"),
    ("run blocks null", lambda ws: ["run", str(ws / "g_null.yaml")], r"declares no runs", r"non-empty list"),
    ("run block is a number", lambda ws: ["run", str(ws / "g_block_number.yaml")], r"got 5", r"a block maps"),
    ("run matrix is a list", lambda ws: ["run", str(ws / "g_matrix_list.yaml")], r"got \{'matrix'",
     r"matrix maps parameter names to lists"),
    ("run matrix entry empty", lambda ws: ["run", str(ws / "g_empty_matrix.yaml")], r"matrix entry 'seed'",
     r"non-empty list"),
    ("run unknown parameter", lambda ws: ["run", str(ws / "g_unknown.yaml")], r"'lerning_rate' is not a parameter",
     r"known: "),
    ("run string lr", lambda ws: ["run", str(ws / "g_str_lr.yaml")], r"'learning_rate' must be float", r"5\.0e-4"),
    ("run negative lr", lambda ws: ["run", str(ws / "g_neg_lr.yaml")], r"block 1\).*learning_rate must be > 0",
     r"e\.g\."),
    ("run bad method", lambda ws: ["run", str(ws / "g_epochs.yaml")], r"method must be one of", r"ft, lora"),
    ("run unknown block key", lambda ws: ["run", str(ws / "g_block_key.yaml")], r"unknown block keys \['parms'\]",
     r"use notebook, params_file, params, matrix"),
    ("run notebook missing", lambda ws: ["run", str(ws / "g_no_notebook.yaml")], r"missing.ipynb' does not exist",
     r"set the grid's 'notebook'"),
    ("run output root below a file", lambda ws: ["run", str(ws / "g_root_file.yaml")], r"is a file, not a folder",
     r"output_root"),
    ("run workers 0", lambda ws: ["run", str(ws / "g_ok.yaml"), "--workers", "0"], r"--workers must be >= 1",
     r">= 1"),
    ("run timeout negative", lambda ws: ["run", str(ws / "g_ok.yaml"), "--timeout", "-1"], r"--timeout > 0",
     r"> 0 seconds"),
    ("run workers not a number", lambda ws: ["run", str(ws / "g_ok.yaml"), "--workers", "many"],
     r"invalid int value", r"--help"),
    # results
    ("results root missing", lambda ws: ["results", str(ws / "nope")], r"is not a folder of run directories",
     r"give a grid's output folder"),
    ("results root is a file", lambda ws: ["results", str(ws / "a_file.txt")], r"is not a folder of run directories",
     r"give a grid's output folder"),
    ("results truncated metrics", lambda ws: ["results", str(ws / "trunc_metrics")],
     r"r/metrics.json: truncated or not JSON", RUN_FIX),
    ("results truncated manifest", lambda ws: ["results", str(ws / "trunc_manifest")],
     r"r/manifest.json: truncated or not JSON", RUN_FIX),
    # report
    ("report root missing", lambda ws: ["report", str(ws / "nope"), "--out", str(ws / "rep")], r"is not a folder",
     r"give a folder of run directories"),
    ("report root is a file", lambda ws: ["report", str(ws / "a_file.txt"), "--out", str(ws / "rep")],
     r"is not a folder", r"give a folder of run directories"),
    ("report truncated metrics", lambda ws: ["report", str(ws / "trunc_metrics"), "--out", str(ws / "rep")],
     r"trunc_metrics/r/metrics.json: truncated or not JSON", RUN_FIX),
    ("report out is a file", lambda ws: ["report", str(ws / "runs"), "--out", str(ws / "a_file.txt")],
     r"--out .* is a file", r"give a folder"),
    ("report without --out", lambda ws: ["report", str(ws / "runs")], r"required: --out", r"--help"),
    # export
    ("export run missing", lambda ws: ["export", str(ws / "nope"), str(ws / "peft")], r"No adapter file",
     r"finished run directory"),
    ("export interrupted run", lambda ws: ["export", str(ws / "interrupted" / "r"), str(ws / "peft")],
     r"No adapter file", r"finished run directory"),
    ("export truncated adapter", lambda ws: ["export", str(ws / "trunc_adapter" / "r"), str(ws / "peft")],
     r"adapter.safetensors: not a readable safetensors file", r"rerun the run"),
    ("export garbage adapter", lambda ws: ["export", str(ws / "garbage_adapter" / "r"), str(ws / "peft")],
     r"not a readable safetensors file", r"rerun the run"),
    ("export adapter is a folder", lambda ws: ["export", str(ws / "folder_adapter" / "r"), str(ws / "peft")],
     r"No adapter file", r"give a adapter.safetensors file"),
    ("export out is a file", lambda ws: ["export", str(ws / "runs" / "ok"), str(ws / "a_file.txt")], r"is a file",
     r"give a folder"),
    ("export format", lambda ws: ["export", str(ws / "runs" / "ok"), "--format", "onnx", str(ws / "peft")],
     r"invalid choice: 'onnx'", r"--help"),
    # count-params
    ("count-params rank 0", lambda ws: ["count-params", "roberta-base", "--lora-r", "0"], r"lora_r must be >= 1",
     r">= 1"),
    ("count-params targets", lambda ws: ["count-params", "roberta-base", "--lora-targets", "bogus"],
     r"Unknown LoRA target", r"Choose from"),
    ("count-params method", lambda ws: ["count-params", "roberta-base", "--method", "bogus"],
     r"method must be one of", r"ft, lora"),
    ("count-params unknown model", lambda ws: ["count-params", str(ws / "no_such_model")], r"Cannot load model config",
     r"pass a local model folder"),
    ("count-params no model", lambda ws: ["count-params"], r"required: model", r"--help"),
    # bench
    ("bench parts", lambda ws: ["bench", "--parts", "bogus"], r"--parts: unknown bogus", r"choose from"),
    ("bench batch 0", lambda ws: ["bench", "--batch-size", "0"], r"--batch-size must be >= 1", r">= 1"),
    ("bench cuda", lambda ws: ["bench", "--device", "cuda"], r"no CUDA GPU", r"or 'cpu'", NO_CUDA),
    ("bench fp16 on cpu", lambda ws: ["bench", "--precision", "fp16"], r"fp16 needs --device cuda",
     r"use bf16 or fp32"),
    ("bench runs missing", lambda ws: ["bench", "--runs", str(ws / "nope")], r"is not a folder of run directories",
     r"give a grid's output folder"),
    ("bench out is a folder", lambda ws: ["bench", "--out", str(ws / "out_exists")], r"a folder is in the way",
     r"give a file path"),
    ("bench csv below a file", lambda ws: ["bench", "--throughput-csv", str(ws / "a_file.txt" / "t.csv")],
     r"a file stands where a folder is needed", r"give a file path"),
    ("bench model", lambda ws: ["bench", "--model", "gpt2"], r"invalid choice: 'gpt2'", r"--help"),
]


PARAMS = [pytest.param(case[1:4], id=case[0], marks=case[4:]) for case in CASES]


def _snapshot(root: pathlib.Path) -> dict:
    """Every path below root, with size and modification time for files (a folder's own time changes when a
    temporary file comes and goes)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "folder"
            for p in sorted(root.rglob("*"))}


def _run_cli(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse
        return e.code


def assert_one_line_failure(argv, root, capsys, problem, fix):
    before = _snapshot(root)
    code = _run_cli(argv)
    out, err = capsys.readouterr()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code not in (0, None), f"exit {code}: {out + err}"
    assert "Traceback" not in out + err
    assert len(lines) == 1, out + err
    assert lines[0].startswith("lora-nb"), lines[0]
    assert re.search(problem, lines[0]), f"problem /{problem}/ not in: {lines[0]}"
    assert re.search(fix, lines[0]), f"fix /{fix}/ not in: {lines[0]}"
    assert _snapshot(root) == before, "the failing command changed files on disk"


@pytest.mark.parametrize("case", PARAMS)
def test_bad_input_fails_in_one_line_naming_problem_and_fix_and_changes_nothing(case, ws, capsys, monkeypatch):
    argv, problem, fix = case
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an unknown model fails at once, without network attempts
    assert_one_line_failure(argv(ws), ws, capsys, problem, fix)


def test_disk_full_while_writing_the_results_table_leaves_no_temporary(ws, capsys, monkeypatch):
    """ENOSPC half-way through a write: one line, the old table intact, no temporary left behind."""
    real_write = pathlib.Path.write_text

    def disk_full(self, text, *args, **kwargs):
        real_write(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
    assert _run_cli(["results", str(ws / "runs")]) == 0  # a table to keep
    capsys.readouterr()
    monkeypatch.setattr(pathlib.Path, "write_text", disk_full)
    assert_one_line_failure(["results", str(ws / "runs")], ws, capsys, r"No space left on device",
                            r"free disk space")


def test_the_notebook_refuses_a_misspelled_papermill_parameter(ws, glue_dir):
    """`papermill ... -p lerning_rate 1e-3` only gets papermill's warning; the notebook itself stops, before any
    data is loaded or anything is written, naming the closest parameter."""
    import papermill
    notebook = repo_root() / "notebooks" / "01_roberta_base.ipynb"
    run_dir = ws / "nb_typo_run"
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(notebook), str(ws.parent / "nb_typo.ipynb"), progress_bar=False,
                                   kernel_name="python3",
                                   parameters={"lerning_rate": 1e-3, "glue_dir": glue_dir, "output_dir": str(run_dir)})
    assert err.value.ename == "LoraNbError"
    assert "unknown parameter 'lerning_rate'. Did you mean 'learning_rate'?" in err.value.evalue
    assert "\n" not in err.value.evalue and not run_dir.exists()
