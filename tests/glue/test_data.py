import time

import pandas as pd
import pytest

from lora_nb_utils import LoraNbError, get_task
from lora_nb_utils.glue.data import cache_root, load_glue, make_loader, subsample, tokenize


def test_local_mirror_loads_real_splits(glue_dir):
    dsd = load_glue(get_task("rte"), glue_dir)
    assert (len(dsd["train"]), len(dsd["validation"])) == (2490, 277)
    mnli = load_glue(get_task("mnli"), glue_dir, splits=["validation_matched", "validation_mismatched"])
    assert (len(mnli["validation_matched"]), len(mnli["validation_mismatched"])) == (9815, 9832)


def test_env_variable_selects_the_mirror(glue_dir, monkeypatch):
    monkeypatch.setenv("LORA_NB_GLUE_DIR", glue_dir)
    assert len(load_glue(get_task("mrpc"))["validation"]) == 408


def test_missing_folder_split_and_column_errors(tmp_path, glue_dir):
    with pytest.raises(LoraNbError, match="does not exist.*LORA_NB_GLUE_DIR"):
        load_glue(get_task("rte"), str(tmp_path / "nope"))
    with pytest.raises(LoraNbError, match="missing .*mnli/train-00000-of-00001.parquet.*hub"):
        load_glue(get_task("mnli"), glue_dir)  # the mirror has MNLI validation only
    bad = tmp_path / "sst2"
    bad.mkdir()
    for split in ("train", "validation"):
        pd.DataFrame({"sentence": ["a", "b"], "lbl": [0, 1]}).to_parquet(bad / f"{split}-00000-of-00001.parquet")
    with pytest.raises(LoraNbError, match=r"lacks column\(s\) \['label'\]"):
        load_glue(get_task("sst2"), str(tmp_path))


@pytest.mark.parametrize("offline", ["", "1"], ids=["online", "HF_HUB_OFFLINE=1"])
def test_unreachable_hub_fails_fast_with_both_fixes(monkeypatch, offline):
    """The behaviour, whatever the user's HF_HUB_OFFLINE (the README recommends it) and whatever words the Hugging
    Face libraries use: a LoraNbError within seconds, one line, naming both fixes (a local folder, or network)."""
    import datasets
    import huggingface_hub.constants
    monkeypatch.delenv("LORA_NB_GLUE_DIR", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", bool(offline))  # as if set before the import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", bool(offline))
    t0 = time.perf_counter()
    with pytest.raises(LoraNbError) as err:
        load_glue(get_task("rte"))
    assert time.perf_counter() - t0 < 10
    message = str(err.value)
    assert "\n" not in message and "'rte'" in message
    assert "glue_dir" in message and "LORA_NB_GLUE_DIR" in message  # fix 1: a local Parquet folder
    assert "hub is reachable" in message  # fix 2: network


def test_subsample_is_fixed_across_calls(glue_dir):
    train = load_glue(get_task("sst2"), glue_dir)["train"]
    a, b = subsample(train, 100), subsample(train, 100)
    assert len(a) == 100 and a["idx"] == b["idx"] and a["idx"] != list(range(100))
    assert len(subsample(train, 0)) == len(train)


def test_tokenize_truncates_pads_per_batch_and_caches(glue_dir, roberta_tokenizer, monkeypatch, tmp_path):
    task = get_task("rte")
    dsd = load_glue(task, glue_dir)
    dsd["train"] = subsample(dsd["train"], 64)
    monkeypatch.setenv("LORA_NB_CACHE", str(tmp_path))  # its own cache: other tests' entries stay out of the counts
    tok = tokenize(dsd, task, roberta_tokenizer, max_seq_len=128)
    lengths = [len(x) for x in tok["train"]["input_ids"]]
    assert max(lengths) == 128 and min(lengths) < 64  # truncated, not padded
    assert tok["train"][0]["input_ids"][0] == 0  # <s>, the real RoBERTa tokenizer
    batches = list(make_loader(tok["train"], roberta_tokenizer, batch_size=8, shuffle=False))
    widths = {b["input_ids"].shape[1] for b in batches}
    assert len(widths) > 1 and max(widths) <= 128  # each batch padded to its own longest
    cached = list(cache_root().glob("rte-128-*"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime
    again = tokenize(dsd, task, roberta_tokenizer, max_seq_len=128)
    assert again["train"]["input_ids"] == tok["train"]["input_ids"]
    assert cached[0].stat().st_mtime == stamp and len(list(cache_root().glob("rte-128-*"))) == 1
    tokenize(dsd, task, roberta_tokenizer, max_seq_len=32)
    assert len(list(cache_root().glob("rte-32-*"))) == 1  # another length, another cache entry


def test_shuffle_order_follows_the_seed(glue_dir, roberta_tokenizer):
    task = get_task("rte")
    dsd = load_glue(task, glue_dir)
    dsd["train"] = subsample(dsd["train"], 40)
    tok = tokenize(dsd, task, roberta_tokenizer, max_seq_len=32)

    def first_labels(seed):
        return [b["labels"].tolist() for b in make_loader(tok["train"], roberta_tokenizer, 8, True, seed)]
    assert first_labels(1) == first_labels(1) and first_labels(1) != first_labels(2)


def test_cache_key_ignores_the_tokenizers_call_state(roberta_tokenizer_dir):
    """The fast backend records the last call's truncation; a fresh tokenizer and a used one share one key."""
    from lora_nb_utils.glue.data import _tokenizer_digest
    from lora_nb_utils.models import load_tokenizer
    fresh = load_tokenizer("roberta-base", roberta_tokenizer_dir)
    before = _tokenizer_digest(fresh)
    fresh(["a sentence"], truncation=True, max_length=7)
    assert _tokenizer_digest(fresh) == before


def test_length_grouped_batches_cover_every_row_once_and_reshuffle_each_epoch(glue_dir, roberta_tokenizer):
    from lora_nb_utils.glue.data import LengthGroupedBatchSampler
    lengths = [5, 50, 7, 48, 6, 49, 8, 47, 45, 46]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=2, seed=0, mega_batch_factor=5)
    first, second = list(sampler), list(sampler)
    for batches in (first, second):
        assert sorted(i for b in batches for i in b) == list(range(10)) and len(batches) == len(sampler)
        spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
        assert spread <= 5  # sorted inside mega-batches of 5 rows: similar lengths share a batch
    assert first != second  # a new order each epoch ...
    again = LengthGroupedBatchSampler(lengths, batch_size=2, seed=0, mega_batch_factor=5)
    assert [list(again), list(again)] == [first, second]  # ... fixed by the seed
    evaluation = list(LengthGroupedBatchSampler(lengths, batch_size=3, shuffle=False))
    assert [lengths[i] for b in evaluation for i in b] == sorted(lengths, reverse=True)

    dsd = load_glue(get_task("rte"), glue_dir)
    dsd["train"] = subsample(dsd["train"], 96)
    tok = tokenize(dsd, get_task("rte"), roberta_tokenizer, max_seq_len=128)
    plain = make_loader(tok["train"], roberta_tokenizer, 16, shuffle=True, seed=1)
    grouped = make_loader(tok["train"], roberta_tokenizer, 16, shuffle=True, seed=1, group_by_length=True)
    padded = {name: sum(b["input_ids"].numel() for b in loader) for name, loader in (("plain", plain),
                                                                                      ("grouped", grouped))}
    assert padded["grouped"] < 0.8 * padded["plain"]  # real RTE rows: far less padding
    labels = sorted(x for b in grouped for x in b["labels"].tolist())
    assert labels == sorted(tok["train"]["labels"])
