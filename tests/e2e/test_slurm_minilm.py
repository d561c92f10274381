"""A real run on SLURM: the MiniLM CPU notebook (real weights, real MRPC, 32 rows) as a job of the project's test
cluster (.ci/slurm-up; skipped without it, failing instead under LORA_NB_REQUIRE_SLURM=1), through `lora-nb run
--executor slurm`, then the results table."""
import os
import subprocess
import sys

from lora_nb_utils.runs.results import collect_results
from lora_nb_utils.runs.rundir import read_json


def test_a_real_minilm_run_as_a_slurm_job(slurm_cluster, glue_dir, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"""notebook: notebooks/00_minilm_cpu.ipynb
output_root: {tmp_path / 'out'}
blocks:
  - params_file: params/minilm/lora.yaml
    params: {{glue_dir: {glue_dir}, max_train_samples: 32, max_eval_samples: 32, epochs: 1, seed: 1}}
    matrix: {{task: [mrpc]}}
""")
    (tmp_path / "slurm.yaml").write_text("poll_seconds: 1\ntime_limit: 15\ncpus_per_run: 1\nmem_gb: 4\n")
    out = subprocess.run([sys.executable, "-m", "lora_nb_utils.cli", "run", str(grid), "--executor", "slurm",
                          "--slurm-config", str(tmp_path / "slurm.yaml")], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "submitted 1 run(s) as 1 SLURM job(s)" in out.stdout and "done: 1 finished, 0 failed" in out.stdout
    run_dir = tmp_path / "out" / "minilm" / "task=mrpc,method=lora,r=8,seed=1"
    manifest, metrics = read_json(run_dir / "manifest.json"), read_json(run_dir / "metrics.json")
    assert manifest["status"] == metrics["status"] in ("ok", "collapsed")  # 32 rows, one epoch: may predict one class
    assert manifest["notebook_status"] == "complete"
    assert manifest["slurm"]["state"] == "COMPLETED" and os.path.isfile(manifest["slurm"]["log"])
    assert metrics["sizes"]["train"] == 32 and 0.0 <= metrics["best"]["accuracy"] <= 1.0
    assert (run_dir / "adapter.safetensors").is_file() and (run_dir / "notebook.ipynb").is_file()
    table = collect_results(tmp_path / "out")
    assert list(table["status"]) == [metrics["status"]]
    assert table["trainable_params"].iloc[0] == metrics["parameters"]["total_trainable"]
