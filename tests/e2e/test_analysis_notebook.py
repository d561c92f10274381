"""The Section 7 notebook on a results folder of small fake runs (real MiniLM shapes, random LoRA weights)."""
import papermill
import pandas as pd
import torch
from pathlib import Path

from lora_nb_utils import RunConfig, inject_lora, mark_trainable, save_trainable
from lora_nb_utils.runs import rundir
from lora_nb_utils.config import params_hash
from lora_nb_utils.experiment import adapter_metadata
from lora_nb_utils.models import load_model
from lora_nb_utils.glue.tasks import get_task
from lora_nb_utils.paths import repo_root

NOTEBOOK = next((repo_root() / "notebooks").glob("*_low_rank_analysis.ipynb"))


def _fake_run(root: Path, base_state, r: int, seed: int, targets="query,value", score=0.8):
    cfg = RunConfig(model="minilm", task="sst2", lora_r=r, seed=seed, lora_targets=targets)
    run_dir = root / f"r={r},seed={seed},targets={targets}"
    params = cfg.to_params()
    rundir.start_run(run_dir, params)
    model = load_model("minilm", get_task("sst2"), weights="random")
    model.load_state_dict(base_state)
    torch.manual_seed(seed)
    inject_lora(model, r=r, alpha=16, targets=targets)
    mark_trainable(model, "lora")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.02)
    save_trainable(model, run_dir / "adapter.safetensors", adapter_metadata(cfg, get_task("sst2")))
    rundir.finish_run(run_dir, {"status": "ok", "task": "sst2", "model": "minilm", "method": "lora", "lora_r": r,
                                "seed": seed, "primary_metric": "accuracy", "best_epoch": 1,
                                "best": {"accuracy": score}, "last": {}, "parameters": {"total_trainable": 1,
                                "lora": 1}, "sizes": {"train": 1}, "train_seconds": 1.0, "peak_memory_mb": 1.0,
                                "params_hash": params_hash(params)})


def test_analysis_notebook_writes_tables_and_figures(tmp_path):
    base_state = load_model("minilm", get_task("sst2")).state_dict()
    root = tmp_path / "runs"
    for r, seed in ((8, 1), (64, 1), (64, 2), (4, 1)):
        _fake_run(root, base_state, r, seed)
    _fake_run(root, base_state, 16, 1, targets="query", score=0.7)
    out = tmp_path / "analysis"
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "out.ipynb"), progress_bar=False,
                               parameters={"results_root": str(root), "out_dir": str(out)})
    for name in ("table5_targets.csv", "subspace_r8_r64.csv", "subspace_seeds.csv", "table7_delta_w.csv",
                 "fig3_subspace_r8_r64.png", "fig4_subspace_seeds.png"):
        assert (out / name).is_file(), name
    table5 = pd.read_csv(out / "table5_targets.csv", header=[0, 1], index_col=0)
    assert table5.loc["sst2", ("query", "16")] == 70.0 and table5.loc["sst2", ("query,value", "8")] == 80.0
    table7 = pd.read_csv(out / "table7_delta_w.csv")
    assert set(table7["lora_r"]) == {4, 8, 64} and (table7["amplification"] > 0).all()


def test_analysis_notebook_on_an_empty_folder_explains_what_is_missing(tmp_path):
    out = papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "out.ipynb"), progress_bar=False,
                                     parameters={"results_root": str(tmp_path / "none"),
                                                 "out_dir": str(tmp_path / "a")})
    text = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "no finished runs yet" in text and "need finished runs" in text


def test_low_rank_notebook_on_the_committed_cpu_runs(tmp_path):
    """notebooks/04 on the committed adapters of the CPU reproduction (report/cpu_minilm/runs): every output is
    written and the top directions of r=8 and r=64 overlap far above the random baseline (the paper's Figure 3)."""
    root = repo_root() / "report" / "cpu_minilm" / "runs"
    out = tmp_path / "analysis"
    papermill.execute_notebook(str(NOTEBOOK),
                               str(tmp_path / "out.ipynb"), progress_bar=False, kernel_name="python3",
                               parameters={"results_root": str(root), "out_dir": str(out)})
    names = {p.name for p in out.iterdir()}
    assert names >= {"table5_targets.csv", "subspace_r8_r64.csv", "subspace_seeds.csv", "table7_delta_w.csv",
                     "fig3_subspace_r8_r64.png", "fig4_subspace_seeds.png"}
    sub = pd.read_csv(out / "subspace_r8_r64.csv")
    assert len(sub) == 12 and sub["phi_1_1"].between(0, 1).all()  # 6 layers x (query, value) of MiniLM
    assert sub["phi_1_1"].mean() > 10 * sub["expected_1_1"].mean()
    t7 = pd.read_csv(out / "table7_delta_w.csv")
    assert set(t7["lora_r"]) == {4, 8, 64} and len(t7) == 18 and (t7["amplification"] > 0).all()
