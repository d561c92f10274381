"""How a difference becomes a verdict: our tolerance, the one-word verdict of a table cell (match, below, above), the
grade of a paper's claim (reproduced, partly, not reproduced, inconclusive) and the claim row the summary lists."""
from __future__ import annotations

import pandas as pd

from ..glue.tasks import TASK_LABELS
from .format import signed

FT_TOLERANCE = 1.0  # points (x100): the paper gives no ± for full fine-tuning, so this is our stated tolerance
VERDICTS = ("reproduced", "partly", "not reproduced", "inconclusive")
CLAIM_COLUMNS = ["Claim (paper)", "Verdict", "Our runs"]


def cell_verdict(diff: float, tol: float) -> str:
    """The short verdict of one cell: 'match' within the tolerance, else 'below' or 'above'."""
    if abs(diff) <= tol + 1e-9:
        return "match"
    return "below" if diff < 0 else "above"


def grade(good: int, total: int) -> str:
    """A claim's verdict from how many of its comparisons agree: all, at least half, fewer."""
    return "reproduced" if good == total else "partly" if good * 2 >= total else "not reproduced"


def claim(paper: str, verdict: str, ours: str) -> dict:
    """One row of the claims table: the paper's claim, its verdict and the numbers of our runs behind it."""
    return dict(zip(CLAIM_COLUMNS, (paper, verdict, ours)))


def cells_text(diffs: pd.Series, tolerance: float) -> str:
    """Differences per task in a phrase: 'within 1 point on STS-B (−0.9); below on SST-2 (−2.7), MRPC (−4.7)'."""
    groups = {"within": [], "above": [], "below": []}
    for task, d in diffs.items():
        kind = "within" if abs(d) <= tolerance + 1e-9 else "above" if d > 0 else "below"
        groups[kind].append(f"{TASK_LABELS.get(task, task)} ({signed(d)})")
    names = {"within": f"within {tolerance:g} point on", "above": "above on", "below": "below on"}
    return "; ".join(f"{names[k]} {', '.join(v)}" for k, v in groups.items() if v)
