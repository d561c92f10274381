"""The LoRA paper's Section 7 analyses (and Table 5's budget), computed from saved adapters.

    load_lora_factors        adapter -> {(layer, target): (A, B, scaling)}
    subspace_similarity      phi(A1, A2, i, j) of Section 7.2 (Figure 3); similarity_grid: all i, j at once
    random_baseline          phi for two random Gaussian matrices (Figure 4's baseline); E = max(i, j) / d
    compare_runs             per-layer phi of two runs (r=8 vs r=64, or two seeds), beside the random baseline
    delta_w_table            Section 7.3 / Table 7: ||U^T W V||_F for the directions of dW, of W and random ones
    budget_equalised_ranks   Table 5: the rank per target set at an equal LoRA parameter budget; table5_pivot
    plot_similarity_heatmaps Figure 3-style heat maps of phi(i, j)

Shapes follow loralib: A is (r, d_in), B is (d_out, r), dW = scaling * B @ A with scaling = lora_alpha / r.
Everything is computed in float64 numpy.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from .errors import LoraNbError
from .methods.lora import TARGET_PATTERNS, parse_targets

TABLE5_TARGET_SETS = ("query", "key", "value", "attn_out", "query,key", "query,value", "query,key,value,attn_out")
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])$")
_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)\.")


class LoraFactors(NamedTuple):
    A: np.ndarray  # (r, d_in)
    B: np.ndarray  # (d_out, r)
    scaling: float  # lora_alpha / r


def _np(x) -> np.ndarray:
    """A float64 numpy copy of a tensor or array."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def module_key(module_name: str) -> tuple[int, str] | None:
    """(layer, target) of a module name such as `roberta.encoder.layer.3.attention.self.query` (or DeBERTa's
    `...query_proj`), using lora.TARGET_PATTERNS; None for modules outside the targets."""
    layer = _LAYER.search(module_name)
    if not layer:
        return None
    for target, patterns in TARGET_PATTERNS.items():
        if any(re.search(rf"(^|\.){p}$", module_name) for p in patterns):
            return int(layer.group(1)), target
    return None


def _read_adapter(source) -> tuple[dict, dict]:
    """(tensors, metadata) from a run directory, an adapter.safetensors file, a torch .bin/.pt state dict (e.g. the
    paper authors' released checkpoints) or an in-memory dict of tensors."""
    if isinstance(source, dict):
        return source, {}
    path = Path(source)
    if path.is_file() and path.suffix in (".bin", ".pt", ".pth"):
        return torch.load(path, map_location="cpu", weights_only=True), {}
    from .adapters.checkpoint import read_adapter_metadata, read_tensors, resolve_adapter
    return read_tensors(resolve_adapter(path)), read_adapter_metadata(path)


def load_lora_factors(source, alpha: float | None = None) -> dict[tuple[int, str], LoraFactors]:
    """{(layer, target): (A, B, scaling)} for every LoRA module of an adapter (run directory, adapter file, .bin
    state dict or dict). scaling = alpha / r, alpha from the adapter's metadata unless given (needed for files
    without metadata, e.g. alpha=16 for the paper's released RoBERTa checkpoints)."""
    state, meta = _read_adapter(source)
    alpha = alpha if alpha is not None else meta.get("lora_alpha")
    pairs: dict[str, dict] = {}
    for key, tensor in state.items():
        m = _LORA_KEY.match(key)
        if m:
            pairs.setdefault(m.group("module"), {})[m.group("which")] = tensor
    factors = {}
    for module, ab in sorted(pairs.items()):
        where = module_key(module)
        if where is None:
            continue
        if set(ab) != {"A", "B"}:
            raise LoraNbError(f"{source}: LoRA module {module!r} has lora_{''.join(ab)} but not both A and B.")
        if alpha is None:
            raise LoraNbError(f"{source}: no lora_alpha in the adapter metadata; pass alpha= (the run's lora_alpha).")
        A, B = _np(ab["A"]), _np(ab["B"])
        factors[where] = LoraFactors(A, B, float(alpha) / A.shape[0])
    if not factors:
        raise LoraNbError(f"{source}: holds no LoRA matrices of the targets {', '.join(TARGET_PATTERNS)}.")
    return factors


def delta_w(A, B, scaling: float = 1.0) -> np.ndarray:
    """dW = scaling * B @ A, shape (d_out, d_in)."""
    return scaling * _np(B) @ _np(A)


# ---------------------------------------------------------------- Section 7.2: subspace similarity (Figures 3, 4)

def right_singular_vectors(A) -> np.ndarray:
    """Columns = right-singular vectors of A (r x d, A = U S V^T), by decreasing singular value: (d, min(r, d)).
    These span A's row space in R^d: the paper's "right-singular unitary matrix" U_A of Section 7.2."""
    return np.linalg.svd(_np(A), full_matrices=False)[2].T


def _similarity_from_bases(U1: np.ndarray, U2: np.ndarray) -> np.ndarray:
    """phi(i, j) for all i, j from two orthonormal bases (columns ordered by importance)."""
    overlap = (U1.T @ U2) ** 2
    cumulative = overlap.cumsum(axis=0).cumsum(axis=1)  # [i-1, j-1] = ||U1[:, :i]^T U2[:, :j]||_F^2
    i, j = np.arange(1, U1.shape[1] + 1), np.arange(1, U2.shape[1] + 1)
    return cumulative / np.minimum.outer(i, j)


def similarity_grid(A1, A2) -> np.ndarray:
    """phi(i, j) for i = 1..r1 (rows) and j = 1..r2 (columns): grid[i-1, j-1] = subspace_similarity(A1, A2, i, j)."""
    A1, A2 = _np(A1), _np(A2)
    if A1.shape[1] != A2.shape[1]:
        raise LoraNbError(f"A matrices live in different spaces: {A1.shape} vs {A2.shape} (same model and target?).")
    return _similarity_from_bases(right_singular_vectors(A1), right_singular_vectors(A2))


def subspace_similarity(A1, A2, i: int, j: int) -> float:
    """Normalised subspace similarity of Section 7.2 (Eq. 4):

        phi(A1, A2, i, j) = ||U1[:, :i]^T U2[:, :j]||_F^2 / min(i, j)  in [0, 1]

    with U = right_singular_vectors(A) (top-i / top-j right-singular directions in R^d). 1 when one subspace holds
    the other, 0 when they are orthogonal."""
    U1, U2 = right_singular_vectors(A1), right_singular_vectors(A2)
    if not (1 <= i <= U1.shape[1] and 1 <= j <= U2.shape[1]):
        raise LoraNbError(f"i, j must be within 1..{U1.shape[1]} and 1..{U2.shape[1]}, not {i}, {j}.")
    return float(np.linalg.norm(U1[:, :i].T @ U2[:, :j]) ** 2 / min(i, j))


def expected_random_similarity(d: int, i: int, j: int) -> float:
    """E[phi(i, j)] for two independent random matrices in R^d: max(i, j) / d.

    The top-i right-singular subspace of a Gaussian matrix is uniformly distributed (rotation invariance), so
    E||P_i^T Q_j||_F^2 = i * j / d, and dividing by min(i, j) gives max(i, j) / d (e.g. 1/768 for i=j=1 in
    RoBERTa-base, 8/768 for the top-8 block)."""
    return max(i, j) / d


def random_similarity_grid(d: int, r1: int, r2: int, seed: int = 0) -> np.ndarray:
    """similarity_grid of two random Gaussian matrices (r1 x d) and (r2 x d): Figure 4's baseline."""
    rng = np.random.default_rng(seed)
    return similarity_grid(rng.standard_normal((r1, d)), rng.standard_normal((r2, d)))


def random_baseline(d: int, r1: int, r2: int, i: int, j: int, seed: int = 0) -> float:
    """phi(i, j) between two random Gaussian matrices (r1 x d) and (r2 x d); its expectation is max(i, j) / d
    (see expected_random_similarity)."""
    return float(random_similarity_grid(d, r1, r2, seed)[i - 1, j - 1])


def _paired_factors(run_a, run_b, targets, layers=None) -> dict[tuple[int, str], tuple[LoraFactors, LoraFactors]]:
    """{(layer, target): (factors of run a, factors of run b)} for the chosen targets and layers."""
    fa, fb = load_lora_factors(run_a, alpha=1.0), load_lora_factors(run_b, alpha=1.0)  # scaling plays no part
    targets = parse_targets(targets)
    keys = [k for k in fa if k[1] in targets and (layers is None or k[0] in layers)]
    missing = [k for k in keys if k not in fb]
    if missing or not keys:
        raise LoraNbError(f"{run_a} / {run_b}: no LoRA matrices in both for (layer, target) {missing or 'any'} of "
                          f"{targets}.")
    return {k: (fa[k], fb[k]) for k in keys}


def similarity_grids(run_a, run_b, targets=("query", "value"), layers=None) -> dict[tuple[int, str], np.ndarray]:
    """{(layer, target): similarity_grid(A of run a, A of run b)} for the targets (and layers) both adapters hold."""
    return {k: similarity_grid(a.A, b.A) for k, (a, b) in _paired_factors(run_a, run_b, targets, layers).items()}


def compare_runs(run_a, run_b, targets=("query", "value"), pairs=((1, 1),), block: int = 8,
                 seed: int = 0) -> pd.DataFrame:
    """Per (layer, target): phi(i, j) for each (i, j) in `pairs`, the mean of phi over the top block x block corner
    (clipped to the ranks), and the same numbers for two random Gaussian matrices of the same shapes (`random_*`,
    one draw per shape) with their expectation (`expected_*`, max(i, j) / d). NaN where i or j exceeds a rank."""
    rows, baselines = [], {}
    for (layer, target), (a, b) in _paired_factors(run_a, run_b, targets).items():
        grid = similarity_grid(a.A, b.A)
        (r_a, r_b), d = grid.shape, a.A.shape[1]
        if (d, r_a, r_b) not in baselines:
            baselines[d, r_a, r_b] = random_similarity_grid(d, r_a, r_b, seed)
        rand = baselines[d, r_a, r_b]
        row = {"layer": layer, "target": target, "r_a": r_a, "r_b": r_b, "d": d}
        for i, j in pairs:
            ok = i <= r_a and j <= r_b
            row[f"phi_{i}_{j}"] = grid[i - 1, j - 1] if ok else np.nan
            row[f"random_{i}_{j}"] = rand[i - 1, j - 1] if ok else np.nan
            row[f"expected_{i}_{j}"] = expected_random_similarity(d, i, j)
        k1, k2 = min(block, r_a), min(block, r_b)
        row["phi_block_mean"] = grid[:k1, :k2].mean()
        row["random_block_mean"] = rand[:k1, :k2].mean()
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Section 7.3: dW versus W (Table 7)

def top_singular_subspace(M, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(U_r, V_r): the top-r left (d_out x r) and right (d_in x r) singular vectors of M = U S V^T."""
    U, _, Vh = np.linalg.svd(_np(M), full_matrices=False)
    return U[:, :r], Vh[:r].T


def random_subspace(d_out: int, d_in: int, r: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal (d_out x r, d_in x r) bases of uniformly random r-dim subspaces (QR of Gaussian matrices)."""
    rng = np.random.default_rng(seed)
    return np.linalg.qr(rng.standard_normal((d_out, r)))[0], np.linalg.qr(rng.standard_normal((d_in, r)))[0]


def projection_norm(W, U, V) -> float:
    """||U^T W V||_F with U (d_out x r) and V (d_in x r) orthonormal columns. The paper writes U^T W V^T with V^T
    meaning the same d_in x r matrix of right-singular vectors; here V is always the column form."""
    return float(np.linalg.norm(_np(U).T @ _np(W) @ _np(V)))


def amplification_factor(W, dW, r: int) -> float:
    """||dW||_F / ||U^T W V||_F with U, V the top-r left/right singular vectors of dW (Section 7.3)."""
    U, V = top_singular_subspace(dW, r)
    return float(np.linalg.norm(_np(dW)) / projection_norm(W, U, V))


def delta_w_rows(W, dW, ranks, seed: int = 0) -> list[dict]:
    """One row per rank k: ||U^T W V||_F with (U, V) the top-k singular vectors of dW (`proj_delta_w`), of W itself
    (`proj_w`) or random (`proj_random`); ||W||_F, ||dW||_F and amplification = ||dW||_F / proj_delta_w.
    For random subspaces E[proj^2] = k^2 ||W||_F^2 / (d_out d_in): the paper's 0.02 = 4 * 61.95 / 12288 (Table 7)."""
    W, dW = _np(W), _np(dW)
    if W.shape != dW.shape:
        raise LoraNbError(f"W {W.shape} and dW {dW.shape} differ in shape (wrong base model or target?).")
    rows = []
    for k in ranks:
        proj_dw = projection_norm(W, *top_singular_subspace(dW, k))
        rows.append({"rank": k, "proj_delta_w": proj_dw, "proj_w": projection_norm(W, *top_singular_subspace(W, k)),
                     "proj_random": projection_norm(W, *random_subspace(*W.shape, k, seed)),
                     "w_norm": float(np.linalg.norm(W)), "delta_w_norm": float(np.linalg.norm(dW)),
                     "amplification": float(np.linalg.norm(dW)) / proj_dw})
    return rows


def find_weight(base, layer: int, target: str) -> np.ndarray:
    """The frozen weight W (d_out x d_in) of (layer, target) in a model or state dict; any name prefix
    (`roberta.`, none, ...). A LoRA-injected (unmerged) model gives its pretrained W; a merged one gives W + dW."""
    state = base.state_dict() if isinstance(base, torch.nn.Module) else base
    found = [k for k in state if k.endswith(".weight") and module_key(k[:-len(".weight")]) == (layer, target)]
    if len(found) != 1:
        raise LoraNbError(f"Expected one weight for layer {layer}, target {target!r} in the base model, found "
                          f"{found or 'none'}.")
    return _np(state[found[0]])


def delta_w_table(run_dir, base, layer: int | None = None, target: str = "query", ranks=None, seed: int = 0,
                  alpha: float | None = None) -> pd.DataFrame:
    """Table 7 for one adapter: rows (layer, target, lora_r, rank) with the columns of delta_w_rows. `base` is the
    pretrained model or its state dict (W); `layer` None = every layer; `ranks` default = (lora_r,), each at most
    lora_r (dW has no further directions)."""
    factors = load_lora_factors(run_dir, alpha=alpha)
    keys = [k for k in factors if k[1] == target and (layer is None or k[0] == layer)]
    if not keys:
        raise LoraNbError(f"{run_dir}: no LoRA matrices for layer {layer}, target {target!r}.")
    rows = []
    for key in keys:
        A, B, scaling = factors[key]
        r = A.shape[0]
        ks = tuple(ranks or (r,))
        if max(ks) > r or min(ks) < 1:
            raise LoraNbError(f"ranks {ks} must lie within 1..{r}: dW = B A has rank at most lora_r = {r}.")
        for row in delta_w_rows(find_weight(base, *key), delta_w(A, B, scaling), ks, seed):
            rows.append({"layer": key[0], "target": target, "lora_r": r, **row})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Table 5: which weight matrices to adapt

def canonical_targets(targets) -> str:
    """'value, query' -> 'query,value' (TARGET_PATTERNS order), so runs group under one name."""
    names = set(parse_targets(targets))
    return ",".join(t for t in TARGET_PATTERNS if t in names)


def target_sizes(model: str | None = None) -> dict[str, int]:
    """d_in + d_out per target and layer (LoRA parameters = r * that). Without a model: the attention matrices in
    units of d (each d x d, so 2), which is all Table 5 needs; FFN targets then need `model`."""
    if model is None:
        return {t: 2 for t in ("query", "key", "value", "attn_out")}
    from .models import load_config
    from .glue.tasks import get_task
    cfg = load_config(model, get_task("sst2"))
    h, i = cfg.hidden_size, cfg.intermediate_size
    return {"query": 2 * h, "key": 2 * h, "value": 2 * h, "attn_out": 2 * h, "ffn_in": h + i, "ffn_out": h + i}


def budget_equalised_ranks(budget_r: int = 8, budget_targets="query,value", target_sets=TABLE5_TARGET_SETS,
                           model: str | None = None, allow_rounding: bool = False) -> list[dict]:
    """Table 5: for each target set, the rank with the same LoRA parameter count as r=budget_r on budget_targets.
    Paper setting (r=8 on query,value): query/key/value/attn_out alone r=16, two matrices r=8, all four r=4.
    Returns [{"lora_targets": "query,value", "lora_r": 8}, ...]; a non-whole rank raises unless allow_rounding."""
    sizes = target_sizes(model)

    def size(targets):
        names = parse_targets(targets)
        if any(t not in sizes for t in names):
            raise LoraNbError(f"Sizing {targets!r} needs the model's dimensions: pass model= (e.g. 'roberta-base').")
        return sum(sizes[t] for t in names)

    budget = budget_r * size(budget_targets)
    out = []
    for targets in target_sets:
        r = budget / size(targets)
        if r != int(r) and not allow_rounding:
            raise LoraNbError(f"{targets!r}: the equal-budget rank is {r:.3g}, not a whole number "
                              "(pass allow_rounding=True to round it).")
        out.append({"lora_targets": canonical_targets(targets), "lora_r": max(1, round(r))})
    return out


def table5_pivot(results: pd.DataFrame, score: str = "score", agg: str = "median") -> pd.DataFrame:
    """Table 5 layout from one row per run (task, lora_targets, lora_r, seed, score): rows = task, columns =
    (lora_targets, lora_r) in the paper's order, values = the `agg` (median) over seeds."""
    df = results.assign(lora_targets=results["lora_targets"].map(canonical_targets),
                        lora_r=results["lora_r"].astype(int))
    pivot = df.pivot_table(index="task", columns=["lora_targets", "lora_r"], values=score, aggfunc=agg)
    order = {t: n for n, t in enumerate(TABLE5_TARGET_SETS)}
    columns = sorted(pivot.columns, key=lambda c: (order.get(c[0], len(order)), c[0], c[1]))
    return pivot[columns]


# ---------------------------------------------------------------- plots for the notebook

def plot_similarity_heatmaps(grids: dict, zoom: int | None = 8, title: str | None = None, cmap: str = "viridis",
                             panel_size: float = 3.2):
    """Figure 3-style heat maps: one column per grids entry ({(layer, target) or label: phi grid}, rows i, columns
    j, 1-based), a second row with the top zoom x zoom corner when zoom is set. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = 2 if zoom else 1
    fig, axes = plt.subplots(rows, len(grids), figsize=(panel_size * len(grids) + 1, panel_size * rows),
                             squeeze=False)
    for col, (label, grid) in enumerate(grids.items()):
        name = f"layer {label[0]}, {label[1]}" if isinstance(label, tuple) else str(label)
        for row, g in enumerate([grid] + ([grid[:zoom, :zoom]] if zoom else [])):
            ax = axes[row, col]
            step_i, step_j = max(1, g.shape[0] // 8), max(1, g.shape[1] // 8)
            sns.heatmap(g, ax=ax, vmin=0, vmax=1, cmap=cmap, square=False, cbar=col == len(grids) - 1,
                        xticklabels=step_j, yticklabels=step_i)
            ax.set_xticklabels([int(t.get_text()) + 1 for t in ax.get_xticklabels()])
            ax.set_yticklabels([int(t.get_text()) + 1 for t in ax.get_yticklabels()])
            ax.set_xlabel("j")
            ax.set_ylabel("i")
            ax.set_title(name if row == 0 else f"{name} (top {zoom})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
