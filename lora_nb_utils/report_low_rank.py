"""The report's Section 7 part: the paper's findings beside what our adapters show, each with a verdict, and the
detail tables for people, read from the tables and figures that notebooks/04_low_rank_analysis.ipynb writes
(table5_targets.csv, subspace_*.csv, table7_delta_w.csv, *.png)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .report import FT_TOLERANCE, MATRIX_NAMES, TASK_LABELS, signed
from .report import matrices as _matrices
from .results import resolve_root

PAPER_SECTION7 = {
    "Table 5: which matrices to adapt": "GPT-3, 18M-parameter budget: W_q and W_v at r = 4 beat W_q or W_k alone at "
                                        "r = 8; spreading the budget over more matrices wins over a higher rank.",
    "Figure 3: r = 8 vs r = 64": "the top singular directions of A_r=8 are contained in A_r=64 (phi > 0.5 at i = 1); "
                                 "the rest is mostly noise, so a very low rank suffices.",
    "Figure 4: seed vs seed (r = 64)": "the top directions of two seeds agree far more than two random matrices do.",
    "Table 7: ΔW against W": "ΔW amplifies directions that W does not emphasise: amplification factor ≈ 21.5 "
                             "(6.91 / 0.32) at r = 4, ≈ 2 at r = 64.",
}
ANALYSIS_FILES = [("Table 5: which weight matrices to adapt (median score x100)", "table5_targets.csv"),
                  ("Figure 3: subspace similarity between r = 8 and r = 64", "fig3_subspace_r8_r64.png"),
                  ("phi per layer, r = 8 vs r = 64 (with the random baseline)", "subspace_r8_r64.csv"),
                  ("Figure 4: between two seeds at r = 64", "fig4_subspace_seeds.png"),
                  ("phi per layer, seed vs seed (with the random baseline)", "subspace_seeds.csv"),
                  ("Table 7: ΔW against W", "table7_delta_w.csv")]
MISSING = ("No analysis outputs in {}: run notebooks/04_low_rank_analysis.ipynb on runs of "
           "params/grids/cpu_minilm_analysis.yaml (or your own r=8 / r=64 runs).")


def _read(folder: Path, name: str):
    path = folder / name
    if not path.is_file():
        return None
    if name.startswith("table5"):
        return pd.read_csv(path, header=[0, 1], index_col=0)
    return pd.read_csv(path)


def low_rank_section(analysis_dir) -> list:
    """What our adapters show, [(title, DataFrame | Path to a PNG)], or one ("", message) naming what to run."""
    folder = resolve_root(analysis_dir)
    items = [(title, folder / name if name.endswith(".png") else _read(folder, name))
             for title, name in ANALYSIS_FILES if (folder / name).is_file()]
    return items or [("", MISSING.format(analysis_dir))]


def _table5_finding(t5: pd.DataFrame) -> str:
    parts = []
    for task, row in t5.iterrows():
        row = row.dropna().sort_values(ascending=False)
        if row.empty:
            continue
        (best_t, best_r), best = row.index[0], row.iloc[0]
        (worst_t, worst_r), worst = row.index[-1], row.iloc[-1]
        parts.append(f"{task}: best {{{best_t}}} at r = {int(float(best_r))} ({best:.1f}), worst {{{worst_t}}} at "
                     f"r = {int(float(worst_r))} "
                     f"({worst:.1f}), spread {best - worst:.1f} points over {len(row)} target sets")
    return "; ".join(parts)


def _similarity_finding(sub: pd.DataFrame) -> str:
    d = int(sub["d"].iloc[0])
    text = (f"phi at i = j = 1: mean {sub['phi_1_1'].mean():.2f} over {len(sub)} matrices (layer x target; min "
            f"{sub['phi_1_1'].min():.2f}, max {sub['phi_1_1'].max():.2f}); two random matrices: "
            f"{sub['random_1_1'].mean():.3f} (expected 1/d = {1 / d:.3f}, d = {d})")
    if "phi_block_mean" in sub:
        text += (f"; mean phi over the top 8 x 8 block: {sub['phi_block_mean'].mean():.2f} vs random "
                 f"{sub['random_block_mean'].mean():.3f}")
    return text


def _table7_finding(t7: pd.DataFrame) -> str:
    own = t7[t7["rank"] == t7["lora_r"]].groupby("lora_r")
    parts = [f"r = {r}: amplification {g['amplification'].median():.1f} (range {g['amplification'].min():.1f} to "
             f"{g['amplification'].max():.1f}; ||ΔW||_F {g['delta_w_norm'].median():.2f} / ||U^T W V||_F "
             f"{g['proj_delta_w'].median():.3f}; on W's own top-{r} directions {g['proj_w'].median():.2f}, on random "
             f"ones {g['proj_random'].median():.3f})" for r, g in own]
    layers = ", ".join(str(int(x)) for x in sorted(t7["layer"].unique()))
    where = f"median over layer(s) {layers}, {', '.join(sorted(t7['target'].unique()))}"
    return f"{where}: " + "; ".join(parts)


def section7_findings(analysis_dir) -> pd.DataFrame:
    """One row per Section 7 analysis: what the paper found on GPT-3 and what our outputs show (computed from the
    CSV files of notebooks/04_low_rank_analysis.ipynb; 'not run yet' where a file is missing)."""
    folder = resolve_root(analysis_dir)
    readers = [("table5_targets.csv", _table5_finding), ("subspace_r8_r64.csv", _similarity_finding),
               ("subspace_seeds.csv", _similarity_finding), ("table7_delta_w.csv", _table7_finding)]
    rows = []
    for (analysis, paper), (name, finding) in zip(PAPER_SECTION7.items(), readers):
        data = _read(folder, name)
        ours = "not run yet" if data is None or data.empty else finding(data)
        rows.append({"analysis": analysis, "the paper (GPT-3 175B)": paper, "our runs": ours})
    return pd.DataFrame(rows).set_index("analysis")


# ---------------------------------------------------------------- verdicts for the summary

def _table5_claim(t5: pd.DataFrame, tolerance: float) -> dict:
    from .report_prose import _grade
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
        parts.append(f"{TASK_LABELS.get(task, task)}: best multi-matrix set {{{_matrices(mt)}}} r={int(float(mr))} "
                     f"{multi.max():.1f} vs best single matrix {{{_matrices(st)}}} r={int(float(sr))} "
                     f"{single.max():.1f} ({signed(diff)}; all {len(row)} sets within {row.max() - row.min():.1f})")
    n = len(parts)
    verdict = "inconclusive" if good == 0 and bad == 0 else _grade(good, n) if bad == 0 else "not reproduced"
    return {"Claim (paper)": "At an equal parameter budget, adapting several weight matrices at a low rank beats one "
                             "matrix at a higher rank (Section 7.1, Table 5)",
            "Verdict": verdict,
            "Our runs": "; ".join(parts) + f" (median over seeds; tolerance {tolerance:g} point)."}


def _subspace_claim(sub: pd.DataFrame, seeds: bool) -> dict:
    from .report_prose import _grade
    if seeds:  # Figure 4: two seeds share their top directions far more than random matrices do
        ratio = sub["phi_block_mean"] / sub["random_block_mean"]
        good = int((ratio >= 10).sum())
        return {"Claim (paper)": "Two seeds learn overlapping top directions, far more than random matrices share "
                                 "(Section 7.2, Figure 4)",
                "Verdict": _grade(good, len(sub)),
                "Our runs": f"r=64, seed vs seed: mean φ over the top 8 × 8 block {sub['phi_block_mean'].mean():.2f} "
                            f"vs {sub['random_block_mean'].mean():.3f} for random matrices; at least 10 times random "
                            f"in {good} of {len(sub)} matrices (layer × target)."}
    good = int((sub["phi_1_1"] > 0.5).sum())
    return {"Claim (paper)": "The top direction of r=8 is contained in r=64 (φ(1, 1) > 0.5): a very low rank "
                             "suffices (Section 7.2, Figure 3)",
            "Verdict": _grade(good, len(sub)),
            "Our runs": f"φ(1, 1) > 0.5 in {good} of {len(sub)} matrices (layer × target; mean "
                        f"{sub['phi_1_1'].mean():.2f}, from {sub['phi_1_1'].min():.2f} to {sub['phi_1_1'].max():.2f}); "
                        f"two random matrices: {sub['random_1_1'].mean():.3f}."}


def _table7_claim(t7: pd.DataFrame) -> dict:
    own = t7[t7["rank"] == t7["lora_r"]].groupby("lora_r")["amplification"].median()
    low, high = own.iloc[0], own.iloc[-1]
    amplifies = low > 1
    verdict = ("reproduced" if amplifies and (len(own) == 1 or low > high) else "partly" if amplifies
               else "not reproduced")
    ranks = ", ".join(f"{v:.1f} at r={int(r)}" for r, v in own.items())
    return {"Claim (paper)": "ΔW amplifies directions that W does not emphasise, most at a low rank (Section 7.3, "
                             "Table 7: factor 21.5 at r=4, about 2 at r=64)",
            "Verdict": verdict,
            "Our runs": f"Amplification factor ‖ΔW‖_F / ‖UᵀWV‖_F, median over layers: {ranks}."}


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
    out.columns = [f"{_matrices(t)} (r={int(float(r))})" for t, r in t5.columns]
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
    return [(title, folder / name) for title, name in ANALYSIS_FILES if name.endswith(".png") and (folder / name).is_file()]
