"""The report's Section 7 part: the paper's findings beside what our adapters show, each with a verdict, and the
detail tables for people, read from the tables and figures that notebooks/04_low_rank_analysis.ipynb writes
(table5_targets.csv, subspace_*.csv, table7_delta_w.csv, *.png)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..glue.tasks import TASK_LABELS
from ..runs.results import resolve_root
from .format import MATRIX_NAMES, matrices, signed
from .verdicts import FT_TOLERANCE, claim, grade

FIGURES = [("Figure 3: subspace similarity between r = 8 and r = 64", "fig3_subspace_r8_r64.png"),
           ("Figure 4: between two seeds at r = 64", "fig4_subspace_seeds.png")]


def _read(folder: Path, name: str):
    path = folder / name
    if not path.is_file():
        return None
    if name.startswith("table5"):
        return pd.read_csv(path, header=[0, 1], index_col=0)
    return pd.read_csv(path)


# ---------------------------------------------------------------- verdicts for the summary

def _table5_claim(t5: pd.DataFrame, tolerance: float) -> dict:
    parts, good, bad = [], 0, 0
    for task, row in t5.iterrows():
        row = row.dropna()
        multi = row[[("," in t) for t, _ in row.index]]
        single = row[[("," not in t) for t, _ in row.index]]
        if multi.empty or single.empty:
            continue
        (mt, mr), (st, sr) = multi.idxmax(), single.idxmax()
        diff = multi.max() - single.max()
        good, bad = good + (diff > tolerance), bad + (diff < -tolerance)
        parts.append(f"{TASK_LABELS.get(task, task)}: best multi-matrix set {{{matrices(mt)}}} r={int(float(mr))} "
                     f"{multi.max():.1f} vs best single matrix {{{matrices(st)}}} r={int(float(sr))} "
                     f"{single.max():.1f} ({signed(diff)}; all {len(row)} sets within {row.max() - row.min():.1f})")
    n = len(parts)
    verdict = "inconclusive" if good == 0 and bad == 0 else grade(good, n) if bad == 0 else "not reproduced"
    return claim("At an equal parameter budget, adapting several weight matrices at a low rank beats one matrix at a "
                 "higher rank (Section 7.1, Table 5)", verdict,
                 "; ".join(parts) + f" (median over seeds; tolerance {tolerance:g} point).")


def _subspace_claim(sub: pd.DataFrame, seeds: bool) -> dict:
    if seeds:  # Figure 4: two seeds share their top directions far more than random matrices do
        good = int((sub["phi_block_mean"] / sub["random_block_mean"] >= 10).sum())
        paper = ("Two seeds learn overlapping top directions, far more than random matrices share (Section 7.2, "
                 "Figure 4)")
        ours = (f"r=64, seed vs seed: mean φ over the top 8 × 8 block {sub['phi_block_mean'].mean():.2f} vs "
                f"{sub['random_block_mean'].mean():.3f} for random matrices; at least 10 times random in {good} of "
                f"{len(sub)} matrices (layer × target).")
    else:  # Figure 3: the top direction of r=8 lies in the r=64 subspace
        good = int((sub["phi_1_1"] > 0.5).sum())
        paper = ("The top direction of r=8 is contained in r=64 (φ(1, 1) > 0.5): a very low rank suffices "
                 "(Section 7.2, Figure 3)")
        ours = (f"φ(1, 1) > 0.5 in {good} of {len(sub)} matrices (layer × target; mean {sub['phi_1_1'].mean():.2f}, "
                f"from {sub['phi_1_1'].min():.2f} to {sub['phi_1_1'].max():.2f}); two random matrices: "
                f"{sub['random_1_1'].mean():.3f}.")
    return claim(paper, grade(good, len(sub)), ours)


def _table7_claim(t7: pd.DataFrame) -> dict:
    own = t7[t7["rank"] == t7["lora_r"]].groupby("lora_r")["amplification"].median()
    low, high = own.iloc[0], own.iloc[-1]
    amplifies = low > 1
    verdict = ("reproduced" if amplifies and (len(own) == 1 or low > high) else "partly" if amplifies
               else "not reproduced")
    ranks = ", ".join(f"{v:.1f} at r={int(r)}" for r, v in own.items())
    return claim("ΔW amplifies directions that W does not emphasise, most at a low rank (Section 7.3, Table 7: factor "
                 "21.5 at r=4, about 2 at r=64)", verdict,
                 f"Amplification factor ‖ΔW‖_F / ‖UᵀWV‖_F, median over layers: {ranks}.")


def section7_claims(analysis_dir, tolerance: float = FT_TOLERANCE) -> list[dict]:
    """The Section 7 findings our analysis outputs test, as claim rows (Claim, Verdict, Our runs) for the summary;
    none when the outputs are missing."""
    folder = resolve_root(analysis_dir)
    rows = []
    t5 = _read(folder, "table5_targets.csv")
    if t5 is not None and not t5.empty:
        rows.append(_table5_claim(t5, tolerance))
    for name, seeds in (("subspace_r8_r64.csv", False), ("subspace_seeds.csv", True)):
        sub = _read(folder, name)
        if sub is not None and not sub.empty:
            rows.append(_subspace_claim(sub, seeds))
    t7 = _read(folder, "table7_delta_w.csv")
    if t7 is not None and not t7.empty:
        rows.append(_table7_claim(t7))
    return rows


# ---------------------------------------------------------------- tables for people

def table5_view(analysis_dir) -> pd.DataFrame | None:
    """Table 5 as the paper prints it: one row per task, one column per target set and rank (score x100)."""
    t5 = _read(resolve_root(analysis_dir), "table5_targets.csv")
    if t5 is None or t5.empty:
        return None
    out = t5.copy()
    out.columns = [f"{matrices(t)} (r={int(float(r))})" for t, r in t5.columns]
    out.insert(0, "Task", [TASK_LABELS.get(t, t) for t in out.index])
    out = out.reset_index(drop=True)
    out.attrs["footnote"] = ("Median over seeds of the best-epoch validation score, x100; every column trains the same "
                             "number of LoRA parameters (W_q, W_k, W_v: the attention's query, key and value "
                             "projections; W_o: its output projection).")
    return out


SUBSPACE_HEADERS = {"layer": "Layer", "target": "Matrix", "phi_1_1": "φ(1, 1)", "random_1_1": "random φ(1, 1)",
                    "phi_block_mean": "φ, top 8×8 mean", "random_block_mean": "random, top 8×8 mean"}
TABLE7_HEADERS = {"layer": "Layer", "target": "Matrix", "lora_r": "r", "delta_w_norm": "‖ΔW‖_F",
                  "proj_delta_w": "‖UᵀWV‖_F, ΔW's directions", "proj_w": "W's own directions",
                  "proj_random": "random directions", "w_norm": "‖W‖_F", "amplification": "amplification"}


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Floats as text with 3 significant digits (similarities near 0.001 and norms near 30 in one table)."""
    return frame.apply(lambda c: c.map(lambda x: f"{x:.3g}") if pd.api.types.is_float_dtype(c) else c)


def detail_tables(analysis_dir) -> list[tuple[str, pd.DataFrame]]:
    """The per-layer Section 7 tables for the appendix, with readable headers."""
    folder = resolve_root(analysis_dir)
    out = []
    for name, title in (("subspace_r8_r64.csv", "Subspace similarity φ, r=8 vs r=64, per layer"),
                        ("subspace_seeds.csv", "Subspace similarity φ, seed vs seed at r=64, per layer")):
        sub = _read(folder, name)
        if sub is not None and not sub.empty:
            table = _rounded(sub[[c for c in SUBSPACE_HEADERS if c in sub]]).rename(columns=SUBSPACE_HEADERS)
            table["Matrix"] = table["Matrix"].map(lambda t: MATRIX_NAMES.get(t, t))
            table.attrs["footnote"] = (f"φ(i, j) = ‖U_iᵀ U_j‖²_F / min(i, j) between the top right-singular "
                                       f"directions of the two A matrices (1: identical, 0: orthogonal); random: two "
                                       f"random Gaussian matrices of the same shape (d = {int(sub['d'].iloc[0])}).")
            out.append((title, table))
    t7 = _read(folder, "table7_delta_w.csv")
    if t7 is not None and not t7.empty:
        own = t7[t7["rank"] == t7["lora_r"]]
        table = _rounded(own[list(TABLE7_HEADERS)]).rename(columns=TABLE7_HEADERS)
        table["Matrix"] = table["Matrix"].map(lambda t: MATRIX_NAMES.get(t, t))
        table.attrs["footnote"] = ("‖UᵀWV‖_F: W projected on the top-r singular directions of ΔW, of W itself, or on "
                                   "random directions; amplification = ‖ΔW‖_F / ‖UᵀWV‖_F with ΔW's directions.")
        out.append(("Table 7: ΔW against W, per layer", table.reset_index(drop=True)))
    return out


def figures(analysis_dir) -> list[tuple[str, Path]]:
    """Figures 3 and 4 (PNG files of the analysis notebook) that exist, with their captions."""
    folder = resolve_root(analysis_dir)
    return [(title, folder / name) for title, name in FIGURES if (folder / name).is_file()]
