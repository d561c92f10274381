"""The short table a finished grid prints (results.summary_table / format_summary), and `lora-nb run` printing it
after tiny runs of a stand-in notebook, with no kernel warning on the terminal."""
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat

from tests.conftest import FAKE_NOTEBOOK_PARAMS
from lora_nb_utils.runs import rundir
from lora_nb_utils.runs.results import collect_results, format_summary, grid_summary, summary_table


def _run(root: Path, task: str, method: str, seed: int, score, *, lr=5e-4, r=8, test=None, status="ok",
         trainable=1000, seconds=30.0, targets="query,value"):
    """A run directory as a finished (or failed, score None) run leaves it."""
    params = {"model": "minilm", "task": task, "method": method, "lora_r": r, "lora_targets": targets,
              "learning_rate": lr, "seed": seed, "split": "sora" if test is not None else "glue_dev"}
    name = f"task={task},method={method}" + (f",r={r}" if method != "ft" else "") + f",lr={lr},seed={seed}"
    run_dir = root / "minilm" / name
    manifest = rundir.start_run(run_dir, params)
    if score is None:
        rundir.update_manifest(run_dir, status="failed", error={"type": "X", "message": "boom"})
        return run_dir
    metric = "pearson" if task == "stsb" else "accuracy"
    metrics = {"status": status, "task": task, "model": "minilm", "method": method, "primary_metric": metric,
               "best_epoch": 2, "best": {metric: score}, "last": {metric: score},
               "parameters": {"total_trainable": trainable, "lora": 0 if method == "ft" else trainable // 2},
               "sizes": {"train": 100}, "train_seconds": seconds, "peak_memory_mb": 1.0,
               "params_hash": manifest["params_hash"]}
    if test is not None:
        metrics["test"] = {metric: test}
    rundir.finish_run(run_dir, metrics)
    return run_dir


def test_summary_table_one_row_per_task_method_and_lr(tmp_path):
    _run(tmp_path, "sst2", "lora", 1, 0.80, lr=2e-3, trainable=222_338, seconds=40)
    _run(tmp_path, "sst2", "lora", 2, 0.84, lr=2e-3, trainable=222_338, seconds=60)
    _run(tmp_path, "sst2", "lora", 3, None, lr=2e-3)  # failed: counted, not scored
    _run(tmp_path, "sst2", "ft", 1, 0.85, lr=1e-4, trainable=22_713_986, seconds=300)
    _run(tmp_path, "stsb", "lora", 1, 0.70, lr=2e-3, r=64, trainable=738_049)
    _run(tmp_path, "stsb", "lora", 1, 0.50, r=4, targets="query,key,value,attn_out", trainable=222_000)
    _run(tmp_path, "mrpc", "lora", 1, 0.70, test=0.75, trainable=5)  # split sora: the test part is reported
    _run(tmp_path, "rte", "ft", 1, 0.5, status="collapsed")
    table = summary_table(collect_results(tmp_path))
    rows = {(r["task"], r["method"], r["lr"]): r for r in table.to_dict("records")}
    assert list(table.columns) == ["task", "method", "lr", "trainable", "metric", "score", "runs", "train time"]
    assert [(r["task"], r["method"]) for r in table.to_dict("records")] == [
        ("mrpc", "lora r=8"), ("rte", "ft"), ("sst2", "ft"), ("sst2", "lora r=8"),
        ("stsb", "lora r=4 (query,key,value,attn_out)"), ("stsb", "lora r=64")]
    lora = rows[("sst2", "lora r=8", "2e-3")]
    assert (lora["score"], lora["runs"], lora["trainable"], lora["train time"], lora["metric"]) == \
        ("82.0", "2/3 (1 failed)", "222,338", "50 s", "accuracy")
    assert rows[("sst2", "ft", "1e-4")]["train time"] == "5.0 min"
    assert rows[("sst2", "ft", "1e-4")]["trainable"] == "22,713,986"
    assert rows[("mrpc", "lora r=8", "5e-4")]["score"] == "75.0"
    assert rows[("stsb", "lora r=64", "2e-3")]["metric"] == "pearson"
    collapsed = rows[("rte", "ft", "5e-4")]
    assert (collapsed["score"], collapsed["runs"]) == ("-", "0/1 (1 collapsed)")

    text = format_summary(collect_results(tmp_path))
    lines = text.splitlines()
    assert lines[0].split() == ["task", "method", "lr", "trainable", "metric", "score", "runs", "train", "time"]
    assert len(lines) == 1 + len(table)
    assert "sst2  lora r=8" in text and "222,338" in text
    # a grid's own runs only
    only = grid_summary(tmp_path, [tmp_path / "minilm" / "task=sst2,method=ft,lr=0.0001,seed=1"])
    assert len(only.splitlines()) == 2 and "ft" in only.splitlines()[1]


def test_summary_of_nothing():
    assert format_summary(collect_results("/nonexistent/folder")) == "no runs"
    assert summary_table(collect_results("/nonexistent/folder")).empty


PARAMS = FAKE_NOTEBOOK_PARAMS

BODY = '''from pathlib import Path
from lora_nb_utils.runs import rundir
manifest = rundir.read_json(Path(output_dir) / rundir.MANIFEST)
metric = "pearson" if task == "stsb" else "accuracy"
rundir.finish_run(output_dir, {
    "status": "ok", "task": task, "model": model, "method": method, "primary_metric": metric, "best_epoch": 1,
    "best": {metric: 0.9 if method == "ft" else 0.8}, "last": {},
    "parameters": {"total_trainable": 22713986 if method == "ft" else 222338, "lora": 73728},
    "sizes": {"train": 5}, "train_seconds": 1.5, "peak_memory_mb": 1.0, "params_hash": manifest["params_hash"]})'''


def test_lora_nb_run_ends_with_the_summary_and_no_kernel_warning(tmp_path):
    (tmp_path / "notebooks").mkdir()
    cell = nbformat.v4.new_code_cell(PARAMS)
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell(BODY)],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nbformat.write(nb, tmp_path / "notebooks" / "fake.ipynb")
    (tmp_path / "grid.yaml").write_text(textwrap.dedent("""\
        notebook: notebooks/fake.ipynb
        output_root: out
        blocks:
          - params: {seed: 1}
            matrix: {task: [stsb]}
          - params: {seed: 1, method: ft, learning_rate: 1.0e-4}
            matrix: {task: [sst2]}
        """))
    proc = subprocess.run([sys.executable, "-m", "lora_nb_utils.cli", "run", "grid.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # nbclient's kernels run with CurveZMQ keys: ipykernel has nothing to warn about
    assert "without encryption" not in proc.stdout + proc.stderr, proc.stderr
    assert "Kernel is running" not in proc.stderr and "[IPKernelApp]" not in proc.stderr, proc.stderr
    lines = proc.stdout.strip().splitlines()
    done = next(i for i, line in enumerate(lines) if line.startswith("done: 2 finished, 0 failed"))
    assert lines[done + 1] == "" and lines[done + 2].startswith("task  method")
    rows = [line.split() for line in lines[done + 3:]]
    assert rows == [["sst2", "ft", "1e-4", "22,713,986", "accuracy", "90.0", "1/1", "2", "s"],
                    ["stsb", "lora", "r=8", "5e-4", "222,338", "pearson", "80.0", "1/1", "2", "s"]]
