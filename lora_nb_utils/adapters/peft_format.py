"""PEFT adapter folders out and in: our LoRA model (or a finished run directory) as adapter_config.json +
adapter_model.safetensors that peft.PeftModel.from_pretrained loads, and such a folder loaded back into our model.

Our LoRA module `X` holds `X.lora_A` (r, d_in) and `X.lora_B` (d_out, r), and the output is W x + (alpha / r) B A x,
as in PEFT; only the names differ:

    ours                            roberta.encoder.layer.0.attention.self.query.lora_A
    PEFT adapter_model.safetensors  base_model.model.roberta.encoder.layer.0.attention.self.query.lora_A.weight
                                    base_model.model.classifier.dense.weight              (modules_to_save)
"""
from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ..errors import LoraNbError
from ..glue.tasks import get_task
from ..config import RunConfig
from ..methods import METHODS, get_method
from ..methods.lora import (is_adapter_parameter, is_head_parameter, is_lora_parameter, lora_modules, lora_scaling,
                             require_lora, set_lora_alpha)
from ..models import MODELS, canonical_name, load_model, resolve_source, skeleton
from ..runs.rundir import MANIFEST, read_json
from .checkpoint import load_trainable, read_adapter_metadata, resolve_adapter
from .state import check_lora_state, head_mismatch, load_state, lora_rank, split_lora_head

PEFT_CONFIG, PEFT_WEIGHTS, PEFT_WEIGHTS_BIN = "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"
PEFT_PREFIX = "base_model.model."


# ---------------------------------------------------------------- PEFT adapters out

def _lora_settings(model: nn.Module) -> dict:
    """r, alpha, dropout and use_rslora, which must be the same on every layer. Alpha is what the layers compute
    with: recomputed from `scaling` when someone changed `scaling` alone."""
    modules = require_lora(model, "export")
    settings = set()
    for m in modules.values():
        alpha = m.lora_alpha if math.isclose(m.scaling, lora_scaling(m, m.lora_alpha)) else \
            m.scaling / lora_scaling(m, 1.0)
        settings.add((m.r, alpha, getattr(m.lora_dropout, "p", 0.0), bool(getattr(m, "rank_stabilized", False))))
    if len(settings) > 1:
        raise LoraNbError(f"export: LoRA layers differ in (r, alpha, dropout, rsLoRA): {sorted(settings)}; PEFT "
                          "export supports one setting for all layers.")
    r, alpha, dropout, rslora = settings.pop()
    return {"r": r, "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha, "lora_dropout": dropout,
            "use_rslora": rslora}


def peft_target_modules(model: nn.Module) -> list[str]:
    """Short names ('query', 'value') when they select exactly our LoRA layers in PEFT's suffix matching, else the
    full module names."""
    names = set(lora_modules(model))
    short = sorted({n.rsplit(".", 1)[-1] for n in names})
    matched = {n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in short}
    return short if matched == names else sorted(names)


def peft_modules_to_save(model: nn.Module) -> list[str]:
    """The head as PEFT modules_to_save: 'classifier', and 'pooler' where the head reads one (BERT, DeBERTa)."""
    heads = [n for n, _ in model.named_parameters() if is_head_parameter(n)]
    return ["classifier"] + (["pooler"] if any("pooler" in n for n in heads) else [])


def _peft_key_to_ours(key: str) -> str:
    """PEFT model key (adapter 'default') -> our parameter name."""
    key = key.removeprefix(PEFT_PREFIX)
    key = re.sub(r"\.lora_([AB])\.default\.weight$", r".lora_\1", key)
    return key.replace(".modules_to_save.default.", ".").replace(".modules_to_save.default", "")


def _peft_key_to_tuner(key: str) -> str:
    """PEFT model key -> the name in our peft tuner (DoRA, VeRA): one prefix less, the head without its wrapper."""
    return key.removeprefix("base_model.").replace(".modules_to_save.default", "")


def peft_config_for(model: nn.Module):
    """The peft.LoraConfig that describes our model's LoRA layers and head."""
    from peft import LoraConfig, TaskType
    return LoraConfig(task_type=TaskType.SEQ_CLS, target_modules=peft_target_modules(model), bias="none",
                      modules_to_save=peft_modules_to_save(model), **_lora_settings(model))


def export_peft(model: nn.Module, out_dir, *, base_model_name_or_path: str | None = None,
                revision: str | None = None) -> dict:
    """Write a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) for a LoRA-injected model
    (a run directory: export_run). peft.PeftModel.from_pretrained(base_model, out_dir) then gives our logits.

    Uses PEFT itself: a PeftModel of the same architecture is built on the meta device (no weights), our LoRA and
    head tensors are given under its parameter names, and PeftModel.save_pretrained writes the files."""
    from peft import get_peft_model

    if not isinstance(model, nn.Module):
        raise LoraNbError(f"export_peft takes a LoRA-injected model, not {model!r}. Fix: export_run(run_dir, out_dir) "
                          "for a run directory.")
    tuner = hasattr(model, "peft_config")  # DoRA, VeRA: built by peft (methods/peft_tuner.py), its config as is
    base = model.model if tuner else model
    if base_model_name_or_path is None:
        base_model_name_or_path, found = _base_reference(base.name_or_path)
        revision = revision or found
    if tuner:
        from peft import TaskType
        config = copy.deepcopy(model.peft_config["default"])
        config.task_type, config.modules_to_save = TaskType.SEQ_CLS, peft_modules_to_save(base)
        to_ours = _peft_key_to_tuner
        ours = {n: t.detach() for n, t in model.state_dict().items()  # the tuner's own state (VeRA's shared
                if is_adapter_parameter(n) or is_head_parameter(n) or not n.startswith("model.")}  # projections)
    else:
        config, to_ours = peft_config_for(model), _peft_key_to_ours
        ours = {n: p.detach() for n, p in model.named_parameters() if is_lora_parameter(n) or is_head_parameter(n)}
    peft_model = get_peft_model(skeleton(base.config), config)
    mapped = {}
    for key, meta in peft_model.state_dict().items():
        name = to_ours(key)
        if name in ours and ".original_module." not in key:
            if tuple(meta.shape) != tuple(ours[name].shape):
                raise LoraNbError(f"export: {name!r} has shape {tuple(ours[name].shape)}, PEFT expects "
                                  f"{tuple(meta.shape)} at {key!r}.")
            mapped[key] = ours[name].contiguous().cpu()
    missing = sorted(set(ours) - {to_ours(k) for k in mapped})
    if missing:
        raise LoraNbError(f"export: no PEFT parameter for {missing[0]!r} (and {len(missing) - 1} more).")
    cfg = peft_model.peft_config["default"]  # get_peft_model set the name to the skeleton's: ours is better
    cfg.base_model_name_or_path, cfg.revision = base_model_name_or_path, revision
    cfg.modules_to_save = list(dict.fromkeys(cfg.modules_to_save))  # PEFT appends its SEQ_CLS defaults again
    out_dir = Path(out_dir)
    # save_embedding_layers=False: we never adapt embeddings, and "auto" would look the base model up on the hub
    peft_model.save_pretrained(str(out_dir), state_dict=mapped, save_embedding_layers=False)
    with safe_open(str(out_dir / PEFT_WEIGHTS), framework="pt") as f:
        n_written = len(list(f.keys()))
    if n_written != len(ours):
        raise LoraNbError(f"export: PEFT wrote {n_written} tensors for our {len(ours)} LoRA + head tensors.")
    written = json.loads((out_dir / PEFT_CONFIG).read_text())
    return {"out_dir": str(out_dir), "files": sorted(p.name for p in out_dir.iterdir()), "tensors": n_written,
            "peft_type": written["peft_type"], "r": written["r"], "lora_alpha": written.get("lora_alpha"),
            "lora_dropout": written.get("lora_dropout"),
            "target_modules": written["target_modules"], "modules_to_save": written["modules_to_save"],
            "base_model_name_or_path": written["base_model_name_or_path"], "revision": written["revision"]}


def _base_reference(name: str) -> tuple[str | None, str | None]:
    """(base_model_name_or_path, revision) for adapter_config.json: the hub id for registry models (portable, also
    when loaded from a local copy), else the name itself; the commit when the source is a hub-cache snapshot."""
    if not name:
        return None, None
    key = canonical_name(name)
    if key not in MODELS:  # a folder: is it where a registry model resolves to (e.g. the MiniLM package)?
        for candidate in MODELS:
            try:
                if Path(resolve_source(candidate)).resolve() == Path(name).resolve():
                    key = candidate
                    break
            except LoraNbError:
                continue
    try:
        source = resolve_source(key if key in MODELS else name)
    except LoraNbError:
        source = name
    found = re.search(r"snapshots[/\\]([0-9a-f]{40})", str(source))
    return (MODELS[key].hub_id if key in MODELS else name), (found.group(1) if found else None)


def export_run(run_dir, out_dir, base_model=None) -> dict:
    """Export a finished LoRA run directory (its adapter.safetensors and metadata) as a PEFT adapter folder.

    The model is rebuilt from the metadata (model, task, r, alpha, targets): from `base_model` when given (a model
    object, or a model name / folder), else from the model's config on the meta device and left uninitialised, since
    only the adapter's own tensors are exported (no pretrained weights needed, so it works offline)."""
    adapter = resolve_adapter(run_dir)
    meta = read_adapter_metadata(adapter)
    need = [k for k in ("model", "task", "lora_r", "lora_alpha", "lora_targets") if k not in meta]
    method = get_method(meta.get("method", "lora")) if not need else None
    if need or not method.exports_to_peft:
        raise LoraNbError(f"{adapter}: not an exportable adapter with lora_nb metadata (method={meta.get('method')!r}, "
                          f"missing {need}); PEFT export takes runs of "
                          f"{', '.join(m.title for m in METHODS.values() if m.exports_to_peft)}.")
    task = get_task(meta["task"])
    manifest = adapter.parent / MANIFEST
    dropout = (read_json(manifest).get("params", {}) if manifest.is_file() else {}).get("lora_dropout") or 0.0
    if isinstance(base_model, nn.Module):
        model, reference = base_model, base_model.name_or_path or meta["model"]
    elif base_model is not None:
        model, reference = load_model(base_model, task, weights="pretrained"), base_model
    else:
        model, reference = skeleton(meta["model"], task), meta["model"]
    layers = RunConfig(method=method.name, lora_r=meta["lora_r"], lora_alpha=float(meta["lora_alpha"]),
                       lora_dropout=float(dropout), lora_targets=meta["lora_targets"], seed=meta.get("seed", 0))
    if base_model is None:
        model.to_empty(device="cpu")  # real (uninitialised) storage to hold the adapter's tensors
    model = method.changes_model(layers, model)  # the run's adapter layers (rsLoRA's scaling, peft's DoRA / VeRA)
    load_trainable(model, adapter)
    name, revision = _base_reference(reference)
    return export_peft(model, out_dir, base_model_name_or_path=name, revision=revision)


# ---------------------------------------------------------------- PEFT adapters in

def read_peft_adapter(adapter_dir) -> tuple[dict, dict[str, torch.Tensor]]:
    """(adapter_config.json, tensors under our names) of a PEFT LoRA adapter folder."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / PEFT_CONFIG).is_file():
        raise LoraNbError(f"No PEFT adapter at {str(adapter_dir)!r}: expected {PEFT_CONFIG} and {PEFT_WEIGHTS}.")
    config = json.loads((adapter_dir / PEFT_CONFIG).read_text())
    if config.get("peft_type") != "LORA":
        raise LoraNbError(f"{adapter_dir}: peft_type {config.get('peft_type')!r}; only LoRA adapters can be loaded.")
    unsupported = {k: config.get(k) for k in ("use_dora", "lora_bias", "rank_pattern", "alpha_pattern")
                   if config.get(k)}
    if config.get("bias", "none") != "none":
        unsupported["bias"] = config["bias"]
    if unsupported:
        raise LoraNbError(f"{adapter_dir}: LoRA variant not supported by loralib layers: {unsupported}.")
    if (adapter_dir / PEFT_WEIGHTS).is_file():
        raw = load_file(str(adapter_dir / PEFT_WEIGHTS))
    elif (adapter_dir / PEFT_WEIGHTS_BIN).is_file():
        raw = torch.load(adapter_dir / PEFT_WEIGHTS_BIN, map_location="cpu", weights_only=True)
    else:
        raise LoraNbError(f"{adapter_dir}: no {PEFT_WEIGHTS} (or {PEFT_WEIGHTS_BIN}).")
    state = {}
    for key, tensor in raw.items():
        name = re.sub(r"\.lora_([AB])\.weight$", r".lora_\1", key.removeprefix(PEFT_PREFIX))
        state[name.replace(".modules_to_save.", ".")] = tensor
    return config, state


def import_peft(model: nn.Module, adapter_dir, *, include_head: bool = True) -> dict:
    """Load a PEFT LoRA adapter folder into a model with LoRA injected at the same rank and targets; alpha and
    scaling come from its adapter_config.json. The head (modules_to_save) loads when `include_head`."""
    source = str(adapter_dir)
    config, state = read_peft_adapter(adapter_dir)
    lora, head = split_lora_head(state, source)
    check_lora_state(model, lora, source)
    if config.get("r") != lora_rank(lora):
        raise LoraNbError(f"{source}: adapter_config.json says r={config.get('r')}, its tensors r={lora_rank(lora)}.")
    if include_head and head:
        reason = head_mismatch(model, head)
        if reason:
            raise LoraNbError(f"{source}: cannot load the head (modules_to_save): {reason}.")
    stabilized = {bool(getattr(m, "rank_stabilized", False)) for m in lora_modules(model).values()}
    if stabilized != {bool(config.get("use_rslora"))}:
        want = "rsLoRA layers (method 'rslora')" if config.get("use_rslora") else "plain LoRA layers (method 'lora')"
        raise LoraNbError(f"{source}: adapter_config.json says use_rslora={bool(config.get('use_rslora'))}; inject "
                          f"{want} before loading it, so that its scaling is the one it trained with.")
    loaded = load_state(model, {**lora, **(head if include_head else {})}, source=source)
    set_lora_alpha(model, config["lora_alpha"])
    return {"source": source, "loaded": len(loaded), "lora_tensors": len(lora), "r": config["r"],
            "lora_alpha": config["lora_alpha"], "scaling": next(iter(lora_modules(model).values())).scaling,
            "head_loaded": bool(include_head and head),
            "base_model_name_or_path": config.get("base_model_name_or_path")}
