"""SoRA's split protocol (splits.py) on the real GLUE mirror: exact sizes, disjointness, determinism."""
import torch

from lora_nb_utils import RunConfig, get_task
from lora_nb_utils.glue.data import load_glue
from lora_nb_utils.glue.splits import apply_split, sora_permutation


def _ids(ds):
    return list(ds["idx"])


def test_glue_dev_is_todays_protocol(glue_dir):
    task = get_task("rte")
    raw = load_glue(task, glue_dir)
    out, selection, tests = apply_split(raw, task, "glue_dev")
    assert out is raw and selection == ["validation"] and tests == []
    assert RunConfig().split == "glue_dev"


def test_small_task_halves_the_validation_set(glue_dir):
    task = get_task("rte")
    out, selection, tests = apply_split(load_glue(task, glue_dir), task, "sora")
    assert (selection, tests) == (["validation"], ["test"])
    assert (len(out["train"]), len(out["validation"]), len(out["test"])) == (2490, 138, 139)
    assert set(_ids(out["validation"])).isdisjoint(_ids(out["test"]))
    order = torch.randperm(277, generator=torch.Generator().manual_seed(42)).tolist()
    assert _ids(out["validation"]) == order[:138] and _ids(out["test"]) == order[138:]  # idx = row number
    again, _, _ = apply_split(load_glue(task, glue_dir), task, "sora")
    assert _ids(again["validation"]) == _ids(out["validation"]) and _ids(again["test"]) == _ids(out["test"])


def test_large_task_takes_1000_training_rows_as_validation(glue_dir):
    task = get_task("sst2")
    out, selection, tests = apply_split(load_glue(task, glue_dir), task, "sora")
    assert (len(out["train"]), len(out["validation"]), len(out["test"])) == (66349, 1000, 872)
    assert set(_ids(out["train"])).isdisjoint(_ids(out["validation"]))
    assert _ids(out["validation"]) == sora_permutation(67349)[:1000]
    assert _ids(out["test"]) == list(range(872))  # the GLUE validation set, unchanged
    again, _, _ = apply_split(load_glue(task, glue_dir), task, "sora")
    assert _ids(again["validation"]) == _ids(out["validation"]) and _ids(again["train"])[:50] == _ids(out["train"])[:50]


def test_mnli_splits_matched_and_mismatched(glue_dir):
    task = get_task("mnli")
    raw = load_glue(task, glue_dir, splits=list(task.eval_splits))
    raw["train"] = raw["validation_matched"].select(range(10))  # the mirror has no MNLI training set
    out, selection, tests = apply_split(raw, task, "sora")
    assert selection == ["validation_matched", "validation_mismatched"]
    assert tests == ["test_matched", "test_mismatched"]
    assert (len(out["validation_matched"]), len(out["test_matched"])) == (4907, 4908)
    assert (len(out["validation_mismatched"]), len(out["test_mismatched"])) == (4916, 4916)


def test_holdout_carves_10_percent_of_train_and_reports_on_the_glue_validation_set(glue_dir):
    for name, n_train, n_holdout, n_test in (("rte", 2490, 249, 277), ("sst2", 67349, 1000, 872)):
        task = get_task(name)
        out, selection, tests = apply_split(load_glue(task, glue_dir), task, "holdout")
        assert (selection, tests) == (["validation"], ["test"])
        assert (len(out["train"]), len(out["validation"]), len(out["test"])) == \
            (n_train - n_holdout, n_holdout, n_test)
        assert set(_ids(out["train"])).isdisjoint(_ids(out["validation"]))  # held-out rows never train
        assert _ids(out["validation"]) == sora_permutation(n_train)[:n_holdout]
        assert _ids(out["test"]) == list(range(n_test))  # the reported set is the whole GLUE validation set
        again, _, _ = apply_split(load_glue(task, glue_dir), task, "holdout")
        assert _ids(again["validation"]) == _ids(out["validation"])


def test_holdout_on_mnli_selects_once_and_reports_both_validation_sets(glue_dir):
    task = get_task("mnli")
    raw = load_glue(task, glue_dir, splits=list(task.eval_splits))
    raw["train"] = raw["validation_matched"].select(range(100))  # the mirror has no MNLI training set
    out, selection, tests = apply_split(raw, task, "holdout")
    assert selection == ["validation_matched"] and tests == ["test_matched", "test_mismatched"]
    assert (len(out["train"]), len(out["validation_matched"]), len(out["test_mismatched"])) == (90, 10, 9832)


def test_the_protocols_have_one_home():
    """glue/splits.py owns the list; RunConfig validates against the same object."""
    import pytest

    from lora_nb_utils import LoraNbError, config
    from lora_nb_utils.glue import splits
    assert config.SPLITS is splits.SPLITS == ("glue_dev", "sora", "holdout")
    with pytest.raises(LoraNbError, match="split must be one of glue_dev, sora, holdout"):
        RunConfig(split="dev")
