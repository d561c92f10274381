"""The report's Section 7 part: the paper's findings beside what our adapters show, read from the tables and figures
that notebooks/04_low_rank_analysis.ipynb writes (table5_targets.csv, subspace_*.csv, table7_delta_w.csv, *.png)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

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
