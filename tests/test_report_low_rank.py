"""The report's Section 7 part: reading the analysis outputs and setting them beside the paper's findings."""
import numpy as np
import pandas as pd

from lora_nb_utils import analysis
from lora_nb_utils.report_low_rank import low_rank_section, section7_findings


def test_low_rank_section_reads_the_analysis_outputs_or_says_what_to_run(tmp_path):
    [(heading, text)] = low_rank_section(tmp_path)
    assert heading == "" and "04_low_rank_analysis" in text
    pd.DataFrame({"layer": [0], "phi_1_1": [0.7]}).to_csv(tmp_path / "subspace_r8_r64.csv", index=False)
    (tmp_path / "fig3_subspace_r8_r64.png").write_bytes(b"\x89PNG")
    items = low_rank_section(tmp_path)
    assert [type(item).__name__ for _, item in items] == ["PosixPath", "DataFrame"]
    assert items[1][1]["phi_1_1"].iloc[0] == 0.7


def test_findings_are_computed_from_the_analysis_files(tmp_path):
    empty = section7_findings(tmp_path)
    assert list(empty["our runs"]) == ["not run yet"] * 4 and "21.5" in empty.iloc[3]["the paper (GPT-3 175B)"]

    scores = pd.DataFrame([{"task": "sst2", "lora_targets": t, "lora_r": r, "seed": s, "score": v + 0.01 * s}
                           for t, r, v in (("query", 16, 0.70), ("query,value", 8, 0.80), ("value", 16, 0.75))
                           for s in (1, 2)])
    (100 * analysis.table5_pivot(scores)).to_csv(tmp_path / "table5_targets.csv")
    sub = pd.DataFrame({"layer": [0, 1], "target": ["query", "value"], "d": [384, 384], "phi_1_1": [0.9, 0.5],
                        "random_1_1": [0.002, 0.004], "phi_block_mean": [0.4, 0.2], "random_block_mean": [0.02, 0.02]})
    sub.to_csv(tmp_path / "subspace_r8_r64.csv", index=False)
    rng = np.random.default_rng(0)
    W, A, B = rng.standard_normal((6, 6)), rng.standard_normal((2, 6)), rng.standard_normal((6, 2))
    rows = analysis.delta_w_rows(W, B @ A, ranks=(2,))
    pd.DataFrame([{"layer": 3, "target": "query", "lora_r": 2, **r} for r in rows]).to_csv(
        tmp_path / "table7_delta_w.csv", index=False)

    ours = section7_findings(tmp_path)["our runs"]
    assert ours.iloc[0].startswith("sst2: best {query,value} at r = 8 (81.5), worst {query} at r = 16 (71.5)")
    assert "spread 10.0 points over 3 target sets" in ours.iloc[0]
    assert "mean 0.70 over 2 matrices" in ours.iloc[1] and "random matrices: 0.003 (expected 1/d = 0.003" in ours.iloc[1]
    assert "top 8 x 8 block: 0.30 vs random 0.020" in ours.iloc[1]
    assert ours.iloc[2] == "not run yet"
    assert f"r = 2: amplification {rows[0]['amplification']:.1f}" in ours.iloc[3] and "median over layer(s) 3, query" in ours.iloc[3]
