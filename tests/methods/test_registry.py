"""The method registry: a method registered from outside the package runs end to end with no edit elsewhere, the
four methods keep their labels, ranks and run names, and the spine asks the registry instead of naming methods."""
import ast
import json
from pathlib import Path

import pandas as pd
import pytest

import lora_nb_utils
from lora_nb_utils import LoraNbError, RunConfig, build_model, prepare_data, train_and_record
from lora_nb_utils.bench import costmodel
from lora_nb_utils.methods import METHODS, get_method, register_method
from lora_nb_utils.methods.lora import is_head_parameter
from lora_nb_utils.report.format import METHOD_NAMES, METHOD_ORDER, config_labels, method_label
from lora_nb_utils.runs import grid, results, rundir

from tests.conftest import tiny_model

PACKAGE = Path(lora_nb_utils.__file__).parent


# ---------------------------------------------------------------- a toy method, registered from this test

def only_biases(name: str) -> bool:
    return name.endswith(".bias") or is_head_parameter(name)


def check_bitfit(cfg) -> None:
    if cfg.learning_rate > 0.01:
        raise LoraNbError(f"bitfit: learning_rate must be <= 0.01, not {cfg.learning_rate!r}.")


@pytest.fixture
def bitfit():
    """A BitFit-like method (only biases and the head train) with a step hook and a final state; unregistered
    after the test."""
    calls = {"total_steps": None, "steps": []}

    def on_training_start(cfg, model, optimizer, total_steps):
        calls["total_steps"] = total_steps
        return calls["steps"].append

    def final_state(model):
        return {"method": "bitfit", "trained_biases": sum(p.numel() for n, p in model.named_parameters()
                                                          if p.requires_grad and n.endswith(".bias"))}

    method = register_method(name="bitfit", title="BitFit", changes_model=lambda cfg, model: model,
                             trains=only_biases, validate=check_bitfit, on_training_start=on_training_start,
                             final_state=final_state, trains_adapter=False)
    yield method, calls
    METHODS.pop("bitfit")


@pytest.fixture
def tiny_folder(tmp_path):
    """MiniLM's architecture at test size, config only: `model: <folder>, weights: random, tokenizer: minilm`."""
    folder = tmp_path / "tiny"
    tiny_model("minilm", "rte").config.save_pretrained(folder)
    return folder


def test_a_method_registered_from_outside_trains_and_is_recorded(bitfit, tiny_folder, glue_dir, tmp_path):
    method, calls = bitfit
    run = tmp_path / "runs" / "task=rte,method=bitfit,seed=1"
    cfg = RunConfig(model=str(tiny_folder), tokenizer="minilm", weights="random", task="rte", glue_dir=glue_dir,
                    method="bitfit", max_train_samples=32, max_eval_samples=16, max_seq_len=32, batch_size=8,
                    epochs=2, learning_rate=1e-3, seed=1, progress="none", output_dir=str(run))
    data = prepare_data(cfg)
    model = build_model(cfg, data.task)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(only_biases(n) for n in trained)
    assert any(n.endswith(".bias") and not is_head_parameter(n) for n in trained)

    metrics = train_and_record(cfg, model, data)

    assert metrics["status"] in ("ok", "collapsed") and metrics["method"] == "bitfit" and metrics["lora_r"] is None
    assert calls["total_steps"] == 8 and calls["steps"] == list(range(1, 9))  # 32 rows / 8 x 2 epochs
    assert metrics["method_state"] == method.final_state(model) and metrics["method_state"]["trained_biases"] > 0
    assert metrics["parameters"]["total_trainable"] == sum(p.numel() for n, p in model.named_parameters()
                                                           if only_biases(n))
    assert not (run / "adapter.safetensors").exists()  # trains_adapter=False: nothing beside the base to save
    row = results.run_row(run)
    assert row["method"] == "bitfit" and row["lora_r"] is None and row["lora_targets"] is None
    assert results._method_label(row) == "bitfit"
    assert method_label("bitfit") == "BitFit"
    assert list(config_labels(pd.DataFrame([row]))) == ["BitFit"]
    assert grid.run_name({"task": "rte", "method": "bitfit", "lora_r": 8, "seed": 1}, []) == \
        "task=rte,method=bitfit,seed=1"


def test_the_registered_method_checks_its_own_parameters(bitfit):
    with pytest.raises(LoraNbError, match="bitfit: learning_rate must be <= 0.01"):
        RunConfig(method="bitfit", learning_rate=0.1)
    RunConfig(method="lora", learning_rate=0.1)  # another method's check does not apply


def test_unregistered_and_duplicate_names_fail():
    with pytest.raises(LoraNbError, match="method must be one of ft, lora, adalora, sora, rslora, loraplus, dora, "
                                          "pissa, vera, not 'bitfit'"):
        RunConfig(method="bitfit")
    with pytest.raises(LoraNbError, match="already registered"):
        register_method(name="lora", title="LoRA 2", changes_model=lambda cfg, model: model, trains=only_biases)
    assert list(METHODS) == ["ft", "lora", "adalora", "sora", "rslora", "loraplus", "dora", "pissa", "vera"]


# ---------------------------------------------------------------- the methods, pinned

PINNED = {  # method: (title, rank parameters, report label, results label, run name, trains adapter, init_from)
    "ft": ("FT", (), "FT", "ft", "task=rte,method=ft,seed=1", False, False),
    "lora": ("LoRA", ("lora_r",), "LoRA r=8", "lora r=8", "task=rte,method=lora,r=8,seed=1", True, True),
    "adalora": ("AdaLoRA", ("adalora_init_r", "adalora_target_r"), "AdaLoRA r=12→8", "adalora r=12->8",
                "task=rte,method=adalora,seed=1", True, False),
    "sora": ("SoRA", ("lora_r",), "SoRA r=8", "sora r=8", "task=rte,method=sora,r=8,seed=1", True, False),
    "rslora": ("rsLoRA", ("lora_r",), "rsLoRA r=8", "rslora r=8", "task=rte,method=rslora,r=8,seed=1", True, False),
    "loraplus": ("LoRA+", ("lora_r",), "LoRA+ r=8", "loraplus r=8", "task=rte,method=loraplus,r=8,seed=1", True,
                 True),
    "dora": ("DoRA", ("lora_r",), "DoRA r=8", "dora r=8", "task=rte,method=dora,r=8,seed=1", True, False),
    "pissa": ("PiSSA", ("lora_r",), "PiSSA r=8", "pissa r=8", "task=rte,method=pissa,r=8,seed=1", True, False),
    "vera": ("VeRA", ("lora_r",), "VeRA r=8", "vera r=8", "task=rte,method=vera,r=8,seed=1", True, False),
}
RANKS = {"lora_r": 8, "adalora_init_r": 12, "adalora_target_r": 8}


@pytest.mark.parametrize("name", list(PINNED))
def test_each_method_keeps_its_label_rank_and_run_name(name):
    title, ranks, report_label, results_label, run_name, adapter, init_from = PINNED[name]
    method = get_method(name)
    assert (method.title, method.rank_parameters, method.has_rank) == (title, ranks, bool(ranks))
    assert method_label(name, **RANKS) == report_label and method_label(name) == title
    row = {"method": name, "lora_targets": "query,value", **RANKS}
    assert results._method_label(row) == results_label
    assert results._method_label({**row, "lora_targets": "all"}) == \
        results_label + (" (all)" if ranks else "")
    assert grid.run_name({"task": "rte", "method": name, "lora_r": 8, "seed": 1}, []) == run_name
    assert (method.trains_adapter, method.accepts_init_from) == (adapter, init_from)
    assert METHOD_ORDER == tuple(METHODS) and METHOD_NAMES[name] == title


@pytest.mark.parametrize("name,blank,added", [
    ("ft", {"lora_r", "lora_alpha", "lora_targets"}, []),
    ("lora", set(), []),
    ("adalora", {"lora_r"}, ["adalora_init_r", "adalora_target_r"]),
    ("sora", set(), ["sora_lambda"]),
    ("loraplus", set(), ["loraplus_lr_ratio"]),
    ("vera", {"lora_alpha"}, ["vera_d_initial"])])
def test_each_method_keeps_its_results_columns(name, blank, added, tmp_path):
    params = RunConfig(method=name).to_params()
    (tmp_path / rundir.MANIFEST).write_text(json.dumps({"params": params, "status": "failed"}))
    row = results.run_row(tmp_path)
    assert {k for k in ("lora_r", "lora_alpha", "lora_targets") if row[k] is None} == blank
    assert [k for k in row if k not in results.PARAM_COLUMNS and k in params] == added
    assert all(row[k] == params[k] for k in added)


def test_the_cost_model_times_adapter_methods_as_lora():
    table = pd.DataFrame({"device": "cpu", "model": "minilm", "seq_len": 128, "method": ["lora", "ft"],
                          "samples_per_s": [10.0, 4.0]})
    speed = {m: costmodel.samples_per_s("minilm", m, 128, "cpu", table)[0] for m in (*PINNED, "unknown")}
    assert speed == {"ft": 4.0, "unknown": 4.0, **{m: 10.0 for m in PINNED if m != "ft"}}


def test_adalora_target_rank_is_checked_by_run_config():
    with pytest.raises(LoraNbError, match=r"adalora_target_r \(13\) must be between 1 and adalora_init_r \(12\)"):
        RunConfig(method="adalora", adalora_target_r=13)
    RunConfig(method="lora", adalora_target_r=13)  # not AdaLoRA's run: not its check


# ---------------------------------------------------------------- nobody else names a method

SPINE = ("experiment.py", "train.py", "config.py", "runs/grid.py", "runs/results.py", "bench/costmodel.py",
         "adapters/peft_format.py", "adapters/checkpoint.py")


def method_branches(source: str) -> list[str]:
    """Comparisons of a method expression with a registered method's name (`cfg.method == "lora"`,
    `method in ("ft", "adalora")`) and dicts keyed by method names: the branches the registry replaces."""
    names = set(METHODS)

    def literals(node):
        elts = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        return {e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = set().union(*(literals(s) for s in sides)) & names
            if named and any("method" in ast.unparse(s) for s in sides if not literals(s)):
                found.append(ast.unparse(node))
        elif isinstance(node, ast.Dict):
            if len(literals(ast.Tuple([k for k in node.keys if k is not None])) & names) >= 2:
                found.append(ast.unparse(node)[:80])
    return found


def test_the_detector_finds_method_branches():
    assert method_branches('if cfg.method == "adalora": pass') == ["cfg.method == 'adalora'"]
    assert method_branches('x = "ft" if values.get("method") in ("ft", "adalora") else 1')
    assert method_branches('ORDER = {"ft": 0, "lora": 1}')
    assert method_branches('if params.get("split") in ("holdout", "sora"): pass') == []  # a split, not a method


@pytest.mark.parametrize("module", SPINE)
def test_the_spine_asks_the_registry_instead_of_naming_methods(module):
    assert method_branches((PACKAGE / module).read_text()) == []
