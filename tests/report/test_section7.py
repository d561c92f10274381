"""The report's Section 7 part: the analysis outputs read back, each finding with a verdict, tables for people."""
import numpy as np
import pandas as pd

from lora_nb_utils import low_rank as analysis
from lora_nb_utils.report.section7 import detail_tables, figures, section7_claims, table5_view


def test_claims_are_computed_from_the_analysis_files(tmp_path):
    assert section7_claims(tmp_path) == [] and figures(tmp_path) == []
    scores = pd.DataFrame([{"task": "sst2", "lora_targets": t, "lora_r": r, "seed": s, "score": v + 0.01 * s}
                           for t, r, v in (("query", 16, 0.70), ("query,value", 8, 0.80), ("value", 16, 0.75))
                           for s in (1, 2)])
    (100 * analysis.table5_pivot(scores)).to_csv(tmp_path / "table5_targets.csv")
    rng = np.random.default_rng(0)
    W, A, B = rng.standard_normal((6, 6)), rng.standard_normal((2, 6)), rng.standard_normal((6, 2))
    rows = analysis.delta_w_rows(W, B @ A, ranks=(2,))
    pd.DataFrame([{"layer": 3, "target": "query", "lora_r": 2, **r} for r in rows]).to_csv(
        tmp_path / "table7_delta_w.csv", index=False)
    (tmp_path / "fig3_subspace_r8_r64.png").write_bytes(b"\x89PNG")

    table5, table7 = section7_claims(tmp_path)
    assert table5["Verdict"] == "reproduced"  # {W_q, W_v} r=8 beats the best single matrix by 5 points
    assert table5["Our runs"].startswith("SST-2: best multi-matrix set {W_q, W_v} r=8 81.5 vs best single matrix "
                                         "{W_v} r=16 76.5 (+5.0; all 3 sets within 10.0)")
    amplification = rows[0]["amplification"]
    assert f"median over layers: {amplification:.1f} at r=2" in table7["Our runs"]
    assert table7["Verdict"] == ("reproduced" if amplification > 1 else "not reproduced")
    assert [title for title, _ in figures(tmp_path)] == ["Figure 3: subspace similarity between r = 8 and r = 64"]
    (_, t7), = detail_tables(tmp_path)
    assert list(t7.columns)[:3] == ["Layer", "Matrix", "r"] and "amplification" in t7


def test_section7_claims_and_tables_for_people(tmp_path):
    assert section7_claims(tmp_path) == [] and table5_view(tmp_path) is None and detail_tables(tmp_path) == []
    sub = pd.DataFrame({"layer": [0, 1], "target": ["query", "value"], "d": [384, 384], "phi_1_1": [0.9, 0.3],
                        "random_1_1": [0.002, 0.002], "phi_block_mean": [0.4, 0.2], "random_block_mean": [0.01, 0.01]})
    sub.to_csv(tmp_path / "subspace_r8_r64.csv", index=False)
    sub.to_csv(tmp_path / "subspace_seeds.csv", index=False)
    t5 = pd.DataFrame({("query", "16"): [79.0], ("query,value", "8"): [81.5]}, index=pd.Index(["sst2"], name="task"))
    t5.columns.names = ["lora_targets", "lora_r"]
    t5.to_csv(tmp_path / "table5_targets.csv")
    claims = {c["Claim (paper)"].split("(")[-1]: c for c in section7_claims(tmp_path)}
    assert [c["Verdict"] for c in section7_claims(tmp_path)] == ["reproduced", "partly", "reproduced"]
    assert "φ(1, 1) > 0.5 in 1 of 2 matrices" in claims["Section 7.2, Figure 3)"]["Our runs"]
    assert "best multi-matrix set {W_q, W_v} r=8 81.5 vs best single matrix {W_q} r=16 79.0 (+2.5" in \
        claims["Section 7.1, Table 5)"]["Our runs"]
    assert list(table5_view(tmp_path).columns) == ["Task", "W_q (r=16)", "W_q, W_v (r=8)"]
    (title, phi), _ = detail_tables(tmp_path)
    assert "phi_1_1" not in phi and phi["φ(1, 1)"].tolist() == ["0.9", "0.3"]
    assert phi["Matrix"].tolist() == ["W_q", "W_v"]
