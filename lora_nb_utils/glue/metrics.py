"""GLUE metrics with scikit-learn and scipy. Values are fractions (0.873), the report shows them x100."""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from .tasks import Task


def _correlation(fn, preds: np.ndarray, labels: np.ndarray) -> float:
    # A constant prediction has no correlation: report NaN (flagged as a collapsed run), not a warning.
    if np.std(preds) == 0 or np.std(labels) == 0:
        return math.nan
    return float(fn(preds, labels)[0])


METRIC_FUNCTIONS = {
    "accuracy": lambda p, y: float(accuracy_score(y, p)),
    "f1": lambda p, y: float(f1_score(y, p)),
    "matthews_corr": lambda p, y: float(matthews_corrcoef(y, p)),
    "pearson": lambda p, y: _correlation(pearsonr, p, y),
    "spearman": lambda p, y: _correlation(spearmanr, p, y),
}


def predictions_from_logits(task: Task, logits: np.ndarray) -> np.ndarray:
    """Class ids for classification tasks, the scalar score for STS-B."""
    logits = np.asarray(logits)
    return logits.reshape(-1) if task.is_regression else logits.argmax(axis=-1)


def compute_metrics(task: Task, preds, labels) -> dict[str, float]:
    """The task's primary and secondary metrics for predictions (class ids or scores) against labels."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    return {m: METRIC_FUNCTIONS[m](preds, labels) for m in (task.primary_metric, *task.secondary_metrics)}


def is_collapsed(task: Task, preds) -> bool:
    """True when a run predicts a single class (or a constant score): its metric is not a real score."""
    preds = np.asarray(preds)
    if task.is_regression:
        return bool(np.std(preds) < 1e-6)
    return len(np.unique(preds)) <= 1
