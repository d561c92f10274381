"""Section 7 analyses (subspace similarity, dW vs W), Table 5's equal-budget ranks, on constructed matrices and small
saved adapters. No training."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from lora_nb_utils import LoraNbError, RunConfig, count_parameters_for, inject_lora, mark_trainable, save_trainable
from lora_nb_utils import low_rank as an

from tests.conftest import _shared, tiny_model


def _orthonormal(d, k, seed=0):
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((d, k)))[0]


def _rows_in(Q, singular_values):
    """An r x d matrix whose right-singular vectors are Q's columns, in that order (singular values decreasing)."""
    return np.diag(singular_values) @ Q.T


# ------------------------------------------------------------------ subspace similarity (Section 7.2)

def test_identical_and_nested_subspaces_give_one():
    Q = _orthonormal(64, 12)
    A8 = _rows_in(Q[:, :8], np.arange(8, 0, -1.0))
    assert np.allclose(an.similarity_grid(A8, 3 * A8), 1)  # same directions: phi(i, j) = 1 for every i, j
    A12 = _rows_in(Q, np.arange(12, 0, -1.0))  # top-8 of A12 = A8's directions, same order: nested for all i, j
    grid = an.similarity_grid(A8, A12)
    assert grid.shape == (8, 12) and np.allclose(grid, 1)
    assert an.subspace_similarity(torch.tensor(A8), A12, 3, 11) == pytest.approx(1)  # tensors work too
    # a left rotation (A -> O A) keeps A's right-singular vectors, so phi is still 1 everywhere; a plain basis of the
    # row space (e.g. QR of the rows) would not be ordered by singular value and would fail here
    assert np.allclose(an.similarity_grid(_orthonormal(8, 8, seed=5) @ A8, A12), 1)
    # rotated bases of a contained subspace: only the full subspaces are nested, not the top directions
    rng = np.random.default_rng(1)
    B4, B12 = rng.standard_normal((4, 4)) @ Q[:, :4].T, rng.standard_normal((12, 12)) @ Q.T
    assert an.subspace_similarity(B4, B12, 4, 12) == pytest.approx(1)
    assert an.subspace_similarity(B4, B12, 1, 1) < 0.99


def test_orthogonal_subspaces_give_zero_and_grid_matches_pointwise():
    Q = _orthonormal(64, 12, seed=2)
    A, B = _rows_in(Q[:, :4], [4, 3, 2, 1]), _rows_in(Q[:, 4:], np.arange(8, 0, -1.0))
    assert np.allclose(an.similarity_grid(A, B), 0)
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((4, 20)), rng.standard_normal((6, 20))
    grid = an.similarity_grid(X, Y)
    assert ((grid >= 0) & (grid <= 1 + 1e-12)).all()
    for i, j in [(1, 1), (2, 5), (4, 6), (3, 1)]:
        assert grid[i - 1, j - 1] == pytest.approx(an.subspace_similarity(X, Y, i, j))
    with pytest.raises(LoraNbError, match="within 1..4"):
        an.subspace_similarity(X, Y, 5, 1)
    with pytest.raises(LoraNbError, match="different spaces"):
        an.similarity_grid(X, rng.standard_normal((4, 21)))


def test_random_gaussian_baseline_matches_max_ij_over_d():
    d = 384
    assert an.expected_random_similarity(d, 1, 1) == 1 / d
    assert an.expected_random_similarity(d, 8, 64) == 64 / d
    # i = j = 1: phi = cos^2 of two uniform directions, E = 1/d = 0.0026, sd ~ 1.4/d; 400 draws measure 0.98/d
    ones = [an.random_baseline(d, 8, 8, 1, 1, seed=s) for s in range(400)]
    assert 0.8 < np.mean(ones) * d < 1.2
    # r=8 vs r=64 (Figure 4's shapes), 10 draws: phi(8, 8) ~ 8/d, phi(8, 64) ~ 64/d (measured 1.04 and 1.00 x)
    with threadpool_limits(1):  # small SVDs: BLAS threads only contend with a training job on a 2-core machine
        grid = np.mean([an.random_similarity_grid(d, 8, 64, seed=s) for s in range(10)], axis=0)
    assert 0.8 < grid[7, 7] / (8 / d) < 1.2
    assert 0.9 < grid[7, 63] / (64 / d) < 1.1
    assert grid[7, 63] < 0.2  # far below the ~1 of a learned pair's top directions


# ------------------------------------------------------------------ dW versus W (Section 7.3, Table 7)

def _known_w(d_out=48, d_in=32, seed=4):
    U, V = _orthonormal(d_out, d_in, seed), _orthonormal(d_in, d_in, seed + 1)  # non-square: catches a U/V swap
    s = np.geomspace(20, 0.01, d_in)
    return U, s, V, U @ np.diag(s) @ V.T


def test_projection_identities_on_known_singular_vectors():
    U, s, V, W = _known_w()
    r = 4
    Ur, Vr = an.top_singular_subspace(W, r)
    assert Ur.shape == (48, r) and Vr.shape == (32, r)
    assert an.projection_norm(W, Ur, Vr) == pytest.approx(np.sqrt((s[:r] ** 2).sum()))
    assert an.projection_norm(W, U[:, :r], V[:, :r]) == pytest.approx(np.sqrt((s[:r] ** 2).sum()))
    # dW along W's bottom directions (the paper's finding: dW amplifies directions W does not emphasise)
    dW = 0.5 * U[:, -r:] @ V[:, -r:].T
    bottom = np.sqrt((s[-r:] ** 2).sum())
    assert an.projection_norm(W, *an.top_singular_subspace(dW, r)) == pytest.approx(bottom)
    assert an.amplification_factor(W, dW, r) == pytest.approx(np.linalg.norm(dW) / bottom)  # 1 / 0.0311 = 32.2
    assert an.amplification_factor(W, dW, r) > 30
    # dW along W's top directions: no amplification
    top = U[:, :r] @ V[:, :r].T
    assert an.amplification_factor(W, top, r) < 0.1
    (row,) = an.delta_w_rows(W, dW, ranks=(r,))
    assert row["proj_delta_w"] == pytest.approx(bottom) and row["proj_w"] == pytest.approx(np.sqrt((s[:r] ** 2).sum()))
    assert row["w_norm"] == pytest.approx(np.linalg.norm(s)) and row["delta_w_norm"] == pytest.approx(1.0)
    assert row["amplification"] == pytest.approx(1.0 / bottom)
    # random r-dim subspaces: E ||U^T W V||_F^2 = r^2 ||W||_F^2 / (d_out d_in) (the paper's 0.02 = 4 * 61.95 / 12288)
    rand = np.mean([an.projection_norm(W, *an.random_subspace(48, 32, r, seed=k)) ** 2 for k in range(200)])
    assert 0.7 < rand / (r ** 2 * np.linalg.norm(W) ** 2 / (48 * 32)) < 1.3
    with pytest.raises(LoraNbError, match="differ in shape"):
        an.delta_w_rows(W, dW.T, ranks=(r,))


# ------------------------------------------------------------------ adapters on disk

def _adapter(tmp_path, arch="roberta-base", r=4, alpha=8.0, seed=0, name="run", metadata=True):
    """A tiny LoRA model with 'trained' (random) LoRA matrices, saved as a run directory's adapter."""
    torch.manual_seed(seed)
    model = tiny_model(arch)
    inject_lora(model, r=r, alpha=alpha)
    mark_trainable(model, "lora")
    for n, p in model.named_parameters():
        if "lora_" in n:
            nn.init.normal_(p, std=0.1)
    run_dir = tmp_path / name
    run_dir.mkdir()
    meta = {"model": arch, "lora_r": r, "lora_alpha": alpha, "lora_targets": "query,value"} if metadata else {}
    save_trainable(model, run_dir / "adapter.safetensors", meta)
    return run_dir, model


@pytest.mark.parametrize("arch,module", [("roberta-base", "attention.self.query"),
                                         ("deberta-v3-base", "attention.self.query_proj")])
def test_load_lora_factors_from_a_saved_adapter(tmp_path, arch, module):
    run_dir, model = _adapter(tmp_path, arch)
    factors = an.load_lora_factors(run_dir)
    assert sorted(factors) == [(0, "query"), (0, "value"), (1, "query"), (1, "value")]
    A, B, scaling = factors[1, "query"]
    params = dict(model.named_parameters())
    (name,) = [n for n in params if n.endswith(f"layer.1.{module}.lora_A")]
    assert A.shape == (4, 32) and B.shape == (32, 4) and scaling == 2.0
    assert np.allclose(A, params[name].detach().numpy())
    assert np.allclose(B, params[name.replace("lora_A", "lora_B")].detach().numpy())
    assert an.module_key(name[:-len(".lora_A")]) == (1, "query")


def test_adapter_without_alpha_needs_it(tmp_path):
    run_dir, _ = _adapter(tmp_path, metadata=False)
    with pytest.raises(LoraNbError, match="pass alpha="):
        an.load_lora_factors(run_dir)
    assert an.load_lora_factors(run_dir, alpha=16)[0, "value"].scaling == 4.0


def test_compare_runs_and_similarity_grids(tmp_path):
    run_a, _ = _adapter(tmp_path, name="a", r=4)
    run_b, _ = _adapter(tmp_path, name="b", r=8, seed=1)
    same = an.compare_runs(run_a, run_a, pairs=((1, 1), (2, 3)))
    assert len(same) == 4 and np.allclose(same[["phi_1_1", "phi_2_3", "phi_block_mean"]], 1)
    df = an.compare_runs(run_a, run_b, targets="value", pairs=((1, 1), (4, 8), (5, 1)))
    assert list(df["layer"]) == [0, 1] and set(df["target"]) == {"value"}
    assert (df["r_a"] == 4).all() and (df["r_b"] == 8).all() and (df["d"] == 32).all()
    assert df["phi_5_1"].isna().all() and (df["expected_1_1"] == 1 / 32).all()
    assert ((df["phi_4_8"] > 0) & (df["phi_4_8"] <= 1)).all()
    grids = an.similarity_grids(run_a, run_b, targets=("query",), layers=[1])
    assert list(grids) == [(1, "query")] and grids[1, "query"].shape == (4, 8)


def test_delta_w_table_from_an_adapter_and_base_model(tmp_path):
    run_dir, model = _adapter(tmp_path, r=4, alpha=8.0)
    table = an.delta_w_table(run_dir, model, layer=1, target="value", ranks=(1, 4))
    assert list(table["rank"]) == [1, 4] and (table["lora_r"] == 4).all()
    m = model.roberta.encoder.layer[1].attention.self.value
    W, dW = m.weight.detach().double().numpy(), 2.0 * (m.lora_B @ m.lora_A).detach().double().numpy()
    assert np.allclose(an.find_weight(model.state_dict(), 1, "value"), W)
    assert table["delta_w_norm"].iloc[0] == pytest.approx(np.linalg.norm(dW))
    assert table["w_norm"].iloc[0] == pytest.approx(np.linalg.norm(W))
    assert table["proj_delta_w"].iloc[1] == pytest.approx(an.projection_norm(W, *an.top_singular_subspace(dW, 4)))
    assert (table["proj_w"] >= table["proj_delta_w"] - 1e-9).all()  # W's own top directions capture the most
    assert len(an.delta_w_table(run_dir, model, target="query")) == 2  # every layer, rank = lora_r
    with pytest.raises(LoraNbError, match="rank at most lora_r = 4"):
        an.delta_w_table(run_dir, model, layer=0, ranks=(8,))


def test_the_papers_released_mnli_adapter_loads(tmp_path):
    path = _shared() / "checkpoints" / "microsoft-lora" / "roberta_base_lora_mnli.bin"
    factors = an.load_lora_factors(path, alpha=16)
    assert len(factors) == 24 and {t for _, t in factors} == {"query", "value"}
    A, B, scaling = factors[11, "value"]
    assert A.shape == (8, 768) and B.shape == (768, 8) and scaling == 2.0
    assert np.linalg.matrix_rank(A) == np.linalg.matrix_rank(B) == 8  # so dW = s B A has rank 8 (Sylvester)
    assert an.delta_w(A, B, scaling).shape == (768, 768)


# ------------------------------------------------------------------ Table 5

def test_budget_equalised_ranks_keep_the_lora_parameter_count():
    ranks = an.budget_equalised_ranks(budget_r=8)
    assert [(d["lora_targets"], d["lora_r"]) for d in ranks] == [
        ("query", 16), ("key", 16), ("value", 16), ("attn_out", 16), ("query,key", 8), ("query,value", 8),
        ("query,key,value,attn_out", 4)]
    for d in ranks:
        counts = count_parameters_for(RunConfig(model="roberta-base", weights="random", **d))
        assert counts["lora"] == 294_912, d
    with pytest.raises(LoraNbError, match="not a whole number"):
        an.budget_equalised_ranks(target_sets=["query,key,value"])
    assert an.budget_equalised_ranks(target_sets=["query,key,value"], allow_rounding=True)[0]["lora_r"] == 5
    with pytest.raises(LoraNbError, match="pass model="):
        an.budget_equalised_ranks(target_sets=["ffn_in"])
    assert an.budget_equalised_ranks(4, target_sets=["query,ffn_in"], model="roberta-base",
                                     allow_rounding=True)[0]["lora_r"] == 2  # 4*3072/(1536+3840) = 2.3


def test_table5_pivot_medians_over_seeds_in_the_papers_order():
    rows = []
    for task in ("mnli", "sst2"):
        for targets, r in [("value,query", 8), ("query", 16), ("query,key,value,attn_out", 4)]:
            for seed, score in enumerate([0.80, 0.90, 0.82]):
                rows.append({"task": task, "lora_targets": targets, "lora_r": r, "seed": seed,
                             "score": score + (0.1 if task == "sst2" else 0) + r / 1000})
    pivot = an.table5_pivot(pd.DataFrame(rows).sample(frac=1, random_state=0))
    assert list(pivot.columns) == [("query", 16), ("query,value", 8), ("query,key,value,attn_out", 4)]
    assert list(pivot.index) == ["mnli", "sst2"]
    assert pivot.loc["mnli", ("query,value", 8)] == pytest.approx(0.828)  # median of 0.808, 0.908, 0.828
    assert pivot.loc["sst2", ("query", 16)] == pytest.approx(0.936)


def test_plot_similarity_heatmaps():
    import matplotlib.pyplot as plt
    rng = np.random.default_rng(0)
    grids = {(3, "query"): an.similarity_grid(rng.standard_normal((8, 40)), rng.standard_normal((16, 40))),
             (3, "value"): an.similarity_grid(rng.standard_normal((8, 40)), rng.standard_normal((16, 40)))}
    fig = an.plot_similarity_heatmaps(grids, zoom=4, title="r=8 vs r=16")
    heatmaps = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heatmaps] == ["layer 3, query", "layer 3, value", "layer 3, query (top 4)",
                                                   "layer 3, value (top 4)"]
    assert heatmaps[0].collections[0].get_array().shape == (8, 16) and heatmaps[2].get_xlim() == (0, 4)
    assert heatmaps[0].get_xticklabels()[0].get_text() == "1"  # 1-based i, j as in the paper
    plt.close(fig)
