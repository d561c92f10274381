"""The LoRA family beside LoRA: rsLoRA and LoRA+ on our loralib layers, DoRA, PiSSA and VeRA through peft.

Each is checked against arithmetic and against peft's own documented usage (get_peft_model with its config, a plain
loop, peft's create_loraplus_optimizer for LoRA+): same parameter count, same loss step by step on the same model,
data and seed. PiSSA starts where the base model is; every method merges for inference without changing outputs."""
import pytest
import torch
from peft import LoraConfig, VeraConfig, get_peft_model
from peft.optimizers import create_loraplus_optimizer
from transformers import get_linear_schedule_with_warmup

from lora_nb_utils import LoraNbError, RunConfig
from lora_nb_utils.adapters import export_peft, import_peft
from lora_nb_utils.experiment import _add_method, count_parameters_for
from lora_nb_utils.glue.data import make_loader
from lora_nb_utils.glue.tasks import get_task
from lora_nb_utils.methods import get_method, merged_for_inference
from lora_nb_utils.methods.lora import find_target_modules, lora_modules, set_lora_alpha
from lora_nb_utils.train import TrainConfig, make_optimizer, train

from tests.conftest import real_rte_rows, tiny_model

CPU = torch.device("cpu")
FAMILY = ("rslora", "loraplus", "dora", "pissa", "vera")
STEPS, LR = 8, 5e-3

# MiniLM (6 layers, width 384) on query and value: 12 adapted 384 x 384 layers
MODULES, WIDTH = 12, 384


def minilm_adapter_params(method: str, r: int) -> int:
    """The adapter's size by hand: LoRA's A (r x d) and B (d x r) per layer; DoRA adds a magnitude per output
    feature; VeRA trains only d (r entries) and b (d_out entries) per layer."""
    if method == "vera":
        return MODULES * (r + WIDTH)
    return MODULES * r * 2 * WIDTH + (MODULES * WIDTH if method == "dora" else 0)


def peft_config(method: str, r: int, alpha: float = 8.0, **extra):
    """peft's documented configuration of each method."""
    if method == "vera":
        return VeraConfig(r=r, **extra)
    options = {"rslora": {"use_rslora": True}, "dora": {"use_dora": True},
               "pissa": {"init_lora_weights": "pissa"}}.get(method, {})
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, **options, **extra)


@pytest.mark.parametrize("method,r", [("rslora", 8), ("loraplus", 8), ("dora", 8), ("pissa", 8), ("vera", 256),
                                      ("dora", 2)])
def test_adapter_size_matches_arithmetic_and_peft(method, r):
    ours = count_parameters_for(RunConfig(method=method, model="minilm", task="mrpc", lora_r=r))
    assert ours["lora"] == minilm_adapter_params(method, r)
    assert ours["total_trainable"] == ours["lora"] + ours["head"]
    from lora_nb_utils.models import skeleton
    base = skeleton("minilm", get_task("mrpc"))
    targets = find_target_modules(base, "query,value")
    config = peft_config(method, r, target_modules=targets)
    if method == "pissa":
        config.init_lora_weights = True  # a meta-device skeleton has nothing to decompose; the shapes are the same
    trainable, _ = get_peft_model(base, config).get_nb_trainable_parameters()
    assert trainable == ours["lora"]  # peft without modules_to_save: the adapter alone


@pytest.fixture(scope="module")
def rte(glue_dir, roberta_tokenizer_dir):
    return real_rte_rows(glue_dir, roberta_tokenizer_dir, 4 * STEPS, 8)


def _base():
    torch.manual_seed(0)
    return tiny_model("roberta-base", "rte", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _settings(method):
    return dict(method=method, lora_r=256 if method == "vera" else 4, lora_alpha=8.0, lora_targets="query,value",
                learning_rate=LR, seed=1)


def _our_losses(method, rte):
    """The run's code path: RunConfig -> Method.build -> the method's optimizer -> train.train."""
    task, tok, tokenizer = rte
    cfg = RunConfig(**_settings(method))
    base = _base()
    torch.manual_seed(1)
    model = _add_method(base, cfg)
    built = get_method(method)
    optimizer = built.make_optimizer(cfg, model) if built.make_optimizer else make_optimizer(model, LR, 0.0)
    losses = []
    model.register_forward_hook(lambda m, i, out: losses.append(out.loss.item()) if m.training else None)
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}
    train(model, make_loader(tok["train"], tokenizer, 4, shuffle=True, seed=3),
          {"validation": make_loader(tok["validation"], tokenizer, 8, False)}, task,
          TrainConfig(epochs=1, learning_rate=LR, warmup_ratio=0.0, max_grad_norm=0.0, progress="none"), CPU,
          optimizer=optimizer)
    return losses, initial


def _peft_losses(method, rte, initial_a):
    """peft's documented usage: get_peft_model(model, config) (SEQ_CLS: the classifier trains), AdamW over the
    trainable parameters (LoRA+: create_loraplus_optimizer), a plain loop. For the methods our loralib layers run
    (rsLoRA, LoRA+), our initial A is copied in (loralib and peft draw it with the same kaiming rule, in another
    order); peft's own methods draw theirs from the same seed as ours."""
    task, tok, tokenizer = rte
    base = _base()
    s = _settings(method)
    config = peft_config(method, s["lora_r"], s["lora_alpha"], target_modules=find_target_modules(base, "query,value"),
                         task_type="SEQ_CLS", **({"projection_prng_key": 1} if method == "vera" else {}))
    torch.manual_seed(1)
    model = get_peft_model(base, config)
    if method in ("rslora", "loraplus"):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_A" in name:
                    ours = name.removeprefix("base_model.model.").replace(".lora_A.default.weight", ".lora_A")
                    p.copy_(initial_a[ours])
    trainable = [p for p in model.parameters() if p.requires_grad]
    ratio = RunConfig().loraplus_lr_ratio
    optimizer = create_loraplus_optimizer(model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=ratio) \
        if method == "loraplus" else torch.optim.AdamW(trainable, lr=LR, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, STEPS)
    model.train()
    losses = []
    for batch in make_loader(tok["train"], tokenizer, 4, shuffle=True, seed=3):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("method", FAMILY)
def test_our_loop_matches_peft_documented_usage_step_by_step(method, rte):
    ours, initial_a = _our_losses(method, rte)
    theirs = _peft_losses(method, rte, initial_a)
    assert len(ours) == len(theirs) == STEPS
    assert torch.allclose(torch.tensor(ours), torch.tensor(theirs), rtol=1e-4, atol=1e-5), (ours, theirs)
    assert abs(ours[-1] - ours[0]) > 1e-3  # it trained


def test_loraplus_gives_b_its_ratio_of_the_learning_rate():
    cfg = RunConfig(method="loraplus", lora_r=4, learning_rate=1e-3, loraplus_lr_ratio=4.0, weight_decay=0.1)
    model = _add_method(_base(), cfg)
    optimizer = get_method("loraplus").make_optimizer(cfg, model)
    group_of = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        faster = "lora_B" in name or p.ndim == 1  # peft's rule: B and every 1-D parameter (the head's biases)
        decays = p.ndim == 2  # biases do not decay
        assert group_of[id(p)] == (pytest.approx(4e-3 if faster else 1e-3), 0.1 if decays else 0.0), name
    assert any("classifier" in n and n.endswith("bias") for n, p in model.named_parameters() if p.requires_grad)
    assert set(group_of) == {id(p) for p in model.parameters() if p.requires_grad}  # every trainable one, once


def test_rslora_scales_by_alpha_over_sqrt_r_and_keeps_it_when_alpha_is_set():
    model = _add_method(_base(), RunConfig(method="rslora", lora_r=16, lora_alpha=8.0))
    layers = lora_modules(model)
    assert layers and all(m.scaling == pytest.approx(8.0 / 4.0) for m in layers.values())
    set_lora_alpha(model, 32.0)
    assert all(m.scaling == pytest.approx(32.0 / 4.0) for m in layers.values())


def test_rslora_exports_to_peft_and_loads_back_with_its_scaling(tmp_path):
    model = _add_method(_base(), RunConfig(method="rslora", lora_r=4, lora_alpha=8.0))
    torch.manual_seed(2)
    with torch.no_grad():
        for m in lora_modules(model).values():
            m.lora_B.normal_()
    x = torch.randint(3, 100, (2, 12))
    expected = model.eval()(input_ids=x).logits
    info = export_peft(model, tmp_path / "adapter")
    assert (info["r"], info["lora_alpha"]) == (4, 8)
    from peft import PeftModel
    loaded = PeftModel.from_pretrained(_base(), str(tmp_path / "adapter")).eval()
    assert loaded.peft_config["default"].use_rslora
    torch.testing.assert_close(loaded(input_ids=x).logits, expected, atol=1e-5, rtol=1e-5)
    plain = _add_method(_base(), RunConfig(method="lora", lora_r=4, lora_alpha=8.0))
    with pytest.raises(LoraNbError, match="use_rslora=True.*method 'rslora'"):
        import_peft(plain, tmp_path / "adapter")
    again = _add_method(_base(), RunConfig(method="rslora", lora_r=4, lora_alpha=8.0))
    import_peft(again, tmp_path / "adapter")
    torch.testing.assert_close(again.eval()(input_ids=x).logits, expected, atol=1e-6, rtol=1e-6)


def test_pissa_starts_where_the_base_model_is():
    x = torch.randint(3, 100, (2, 12))
    base = _base().eval()
    expected = base(input_ids=x).logits
    w = base.roberta.encoder.layer[0].attention.self.query.weight.detach().clone()
    model = _add_method(_base(), RunConfig(method="pissa", lora_r=4, lora_alpha=8.0)).eval()
    layer = model.model.roberta.encoder.layer[0].attention.self.query
    assert not torch.allclose(layer.base_layer.weight, w)  # the frozen weight is now the residual
    assert layer.lora_B["default"].weight.abs().sum() > 0  # B holds the principal components: not LoRA's zeros
    torch.testing.assert_close(model(input_ids=x).logits, expected, atol=1e-5, rtol=1e-4)
    merged = merged_for_inference(model)
    torch.testing.assert_close(merged(input_ids=x).logits, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(merged.roberta.encoder.layer[0].attention.self.query.weight, w, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", FAMILY)
def test_merging_for_inference_keeps_outputs(method, rte):
    task, tok, tokenizer = rte
    model = _add_method(_base(), RunConfig(**_settings(method)))
    built = get_method(method)
    cfg = RunConfig(**_settings(method))
    optimizer = built.make_optimizer(cfg, model) if built.make_optimizer else make_optimizer(model, LR, 0.0)
    train(model, make_loader(tok["train"], tokenizer, 4, shuffle=True, seed=3),
          {"validation": make_loader(tok["validation"], tokenizer, 8, False)}, task,
          TrainConfig(epochs=1, learning_rate=LR, progress="none"), CPU, optimizer=optimizer)
    x = torch.randint(3, 100, (2, 12))
    before = model.eval()(input_ids=x).logits
    merged = merged_for_inference(model).eval()
    assert not any(n for n, _ in merged.named_parameters() if "lora_" in n or "vera_" in n)  # plain layers again
    torch.testing.assert_close(merged(input_ids=x).logits, before, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("params,fix", [({"method": "loraplus", "loraplus_lr_ratio": 0.0}, "loraplus_lr_ratio"),
                                        ({"method": "vera", "vera_d_initial": -1.0}, "vera_d_initial"),
                                        ({"method": "dora", "lora_r": 0}, "lora_r"),
                                        ({"method": "loraplus", "head_learning_rate": 1e-3}, "head_learning_rate 0"),
                                        ({"method": "vera", "head_learning_rate": -1.0}, "head_learning_rate")])
def test_bad_family_settings_fail_early_naming_the_parameter(params, fix):
    with pytest.raises(LoraNbError, match=fix):
        RunConfig(**params)


def test_head_learning_rate_gives_the_head_its_own_rate():
    model = _add_method(_base(), RunConfig(method="vera", lora_r=16))
    optimizer = make_optimizer(model, 1e-2, 0.01, head_lr=4e-3)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        if p.requires_grad:
            rate = 4e-3 if name.startswith("model.classifier.") else 1e-2
            assert lr_of[id(p)][0] == rate, name
            assert lr_of[id(p)][1] == (0.01 if p.ndim == 2 else 0.0), name
    assert set(lr_of) == {id(p) for p in model.parameters() if p.requires_grad}
    plain = make_optimizer(model, 1e-2, 0.01)  # without head_lr: the two groups it always had
    assert [(g["lr"], g["weight_decay"]) for g in plain.param_groups] == [(1e-2, 0.01), (1e-2, 0.0)]


@pytest.mark.parametrize("method,given_base", [("dora", True), ("vera", True), ("dora", False), ("vera", False)])
def test_peft_backed_runs_export_to_peft_and_load_with_peft(method, given_base, rte, tmp_path, monkeypatch):
    """A finished DoRA / VeRA run directory -> a PEFT folder that peft.PeftModel.from_pretrained loads on the base
    model with the run's logits (VeRA's shared projections saved with it). Without a base model the export works
    on uninitialised weights (the model's architecture only): DoRA's magnitudes then come from the run's file."""
    from lora_nb_utils.adapters import ADAPTER_FILE, export_run, save_trainable
    from lora_nb_utils.experiment import adapter_metadata
    from peft import PeftModel
    task, tok, tokenizer = rte
    cfg = RunConfig(**_settings(method))
    model = _add_method(_base(), cfg)
    train(model, make_loader(tok["train"], tokenizer, 4, shuffle=True, seed=3),
          {"validation": make_loader(tok["validation"], tokenizer, 8, False)}, task,
          TrainConfig(epochs=1, learning_rate=LR, progress="none"), CPU)
    run = tmp_path / "run"
    run.mkdir()
    save_trainable(model, run / ADAPTER_FILE, {**adapter_metadata(cfg, task), "model": "roberta-base"})
    x = torch.randint(3, 100, (2, 12))
    expected = model.eval()(input_ids=x).logits
    if not given_base:  # the architecture of the tiny model, as the shipped config of "roberta-base" would give
        from lora_nb_utils.adapters import peft_format
        monkeypatch.setattr(peft_format, "skeleton", lambda *a, **k: _meta_copy_of(_base()))
    info = export_run(run, tmp_path / "peft", base_model=_base() if given_base else None)
    assert info["peft_type"] == {"dora": "LORA", "vera": "VERA"}[method]  # DoRA is a LoRA option in peft
    loaded = PeftModel.from_pretrained(_base(), str(tmp_path / "peft")).eval()
    assert method != "dora" or loaded.peft_config["default"].use_dora
    torch.testing.assert_close(loaded(input_ids=x).logits, expected, atol=1e-5, rtol=1e-4)


def test_pissa_runs_are_not_exported_without_their_residual(tmp_path):
    from lora_nb_utils.adapters import ADAPTER_FILE, export_run, save_trainable
    from lora_nb_utils.experiment import adapter_metadata
    cfg = RunConfig(method="pissa", lora_r=4)
    (tmp_path / "run").mkdir()
    save_trainable(_add_method(_base(), cfg), tmp_path / "run" / ADAPTER_FILE,
                   {**adapter_metadata(cfg, get_task("rte")), "model": "roberta-base"})
    with pytest.raises(LoraNbError, match="PEFT export takes runs of LoRA, rsLoRA, LoRA\\+, DoRA, VeRA"):
        export_run(tmp_path / "run", tmp_path / "peft")


def _meta_copy_of(model):
    from lora_nb_utils.models import skeleton
    return skeleton(model.config)
