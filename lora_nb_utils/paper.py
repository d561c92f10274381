"""The published numbers and hyper-parameters (copied into lora_nb_utils/reference/*.csv, each row with its source)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

REFERENCE_DIR = Path(__file__).parent / "reference"


@lru_cache(maxsize=None)
def load_reference(name: str) -> pd.DataFrame:
    """One reference table: lora_paper_table2, lora_paper_hparams, adalora_paper_table1, sora_paper_table."""
    return pd.read_csv(REFERENCE_DIR / f"{name}.csv", dtype={"plus_minus": float})


def paper_trainable_params(model: str, method: str) -> str | None:
    """The paper's trainable-parameter figure for a Table 2 row, e.g. '0.3M' (None if the model is not in it)."""
    t = load_reference("lora_paper_table2")
    hit = t[(t["model"] == model) & (t["method"] == method)]
    return None if hit.empty else str(hit["trainable_params"].iloc[0])
