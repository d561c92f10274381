import math

import numpy as np
import pytest

from lora_nb_utils import LoraNbError, compute_metrics, get_task
from lora_nb_utils.glue.metrics import is_collapsed, predictions_from_logits
from lora_nb_utils.glue.tasks import GLUE_TASKS


def test_registry_has_the_eight_glue_tasks_with_paper_metrics():
    assert sorted(GLUE_TASKS) == sorted(["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"])
    assert get_task("cola").primary_metric == "matthews_corr"
    assert get_task("stsb").primary_metric == "pearson" and get_task("stsb").num_labels == 1
    assert get_task("mnli").eval_splits == ("validation_matched", "validation_mismatched")
    assert get_task("mnli").num_labels == 3
    assert "f1" in get_task("mrpc").secondary_metrics and "f1" in get_task("qqp").secondary_metrics
    assert get_task("SST-2").name == "sst2"


def test_unknown_task_names_the_valid_ones():
    with pytest.raises(LoraNbError, match="Unknown GLUE task 'sst3'.*cola, sst2"):
        get_task("sst3")


def test_metrics_on_known_vectors():
    y = [1, 0, 1, 1, 0, 1]
    p = [1, 0, 0, 1, 0, 1]
    m = compute_metrics(get_task("mrpc"), p, y)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1))  # tp=3, fn=1, fp=0
    # MCC by hand: tp=3 tn=2 fp=0 fn=1
    mcc = (3 * 2 - 0 * 1) / math.sqrt((3 + 0) * (3 + 1) * (2 + 0) * (2 + 1))
    assert compute_metrics(get_task("cola"), p, y)["matthews_corr"] == pytest.approx(mcc)
    s = compute_metrics(get_task("stsb"), [0.1, 0.4, 0.35, 0.8], [0.0, 1.0, 2.0, 3.0])
    assert s["pearson"] == pytest.approx(np.corrcoef([0.1, 0.4, 0.35, 0.8], [0, 1, 2, 3])[0, 1])
    assert s["spearman"] == pytest.approx(0.8)


def test_constant_predictions_are_collapsed_not_scored():
    cola = get_task("cola")
    assert compute_metrics(cola, [1, 1, 1, 1], [1, 0, 1, 0])["matthews_corr"] == 0.0
    assert is_collapsed(cola, [1, 1, 1, 1]) and not is_collapsed(cola, [1, 0, 1, 1])
    stsb = get_task("stsb")
    assert math.isnan(compute_metrics(stsb, [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"])
    assert is_collapsed(stsb, [2.0, 2.0, 2.0])


def test_predictions_from_logits():
    assert list(predictions_from_logits(get_task("mnli"), np.array([[0, 2, 1], [3, 0, 0]]))) == [1, 0]
    assert list(predictions_from_logits(get_task("stsb"), np.array([[0.5], [4.0]]))) == [0.5, 4.0]
