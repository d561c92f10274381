"""RunConfig: the one set of run parameters shared by notebooks, command line, runner and results table."""
from __future__ import annotations

import ast
import dataclasses
import difflib
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import PurePath

from .errors import LoraNbError
from .glue.splits import SPLITS
from .methods import get_method


@dataclass
class RunConfig:
    # model
    model: str = "minilm"  # registry name (minilm, roberta-base, ...), hub id or local folder
    weights: str = "pretrained"  # pretrained | random (architecture only: dry runs and tests)
    tokenizer: str = ""  # tokenizer folder or hub id; empty: the model's own
    # task and data
    task: str = "sst2"  # cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte
    glue_dir: str = ""  # local GLUE Parquet mirror; empty: $LORA_NB_GLUE_DIR, else the hub
    max_seq_len: int = 128  # truncation length; batches are padded dynamically
    max_train_samples: int = 0  # 0: the whole training set; else a fixed subsample (same for every seed)
    max_eval_samples: int = 0  # 0: the whole validation set
    split: str = "glue_dev"  # glue_dev (train / GLUE validation) | sora (SoRA's protocol) | holdout (splits.py)
    # method
    method: str = "lora"  # ft | lora | adalora | sora | rslora | loraplus | dora | pissa | vera
    lora_r: int = 8  # LoRA rank r (SoRA: the largest rank, r_max; VeRA: the shared projections' rank)
    lora_alpha: float = 8.0  # LoRA alpha: the update is scaled by alpha / r (rsLoRA: alpha / sqrt(r); VeRA: unused)
    lora_dropout: float = 0.0  # dropout on the LoRA branch input
    lora_targets: str = "query,value"  # comma list of query,key,value,attn_out,ffn_in,ffn_out, or 'all'
    init_from: str = ""  # MNLI initialisation: adapter file or MNLI run directory; empty: none
    # AdaLoRA (method adalora, via peft; Zhang et al. 2023): ranks start at init_r, pruned to an average target_r
    adalora_init_r: int = 12  # initial rank per module (the paper: 1.5 x the target budget)
    adalora_target_r: int = 8  # average final rank per module
    adalora_tinit: int = 200  # optimizer steps before pruning starts
    adalora_tfinal: int = 1000  # final optimizer steps at the fixed final budget
    adalora_delta_t: int = 10  # optimizer steps between budget reallocations
    adalora_beta1: float = 0.85  # EMA of the sensitivity
    adalora_beta2: float = 0.85  # EMA of the uncertainty
    adalora_orth_reg_weight: float = 0.1  # orthogonal regulariser weight (gamma)
    # SoRA (method sora; Ding et al. 2023): a gate per LoRA rank, proximal L1 step after each optimizer step
    sora_lambda: float = 0.375  # L1 weight; soft threshold per step: current lr x sora_lambda
    sora_lambda_schedule: str = "constant"  # constant | linear (sora_lambda -> sora_max_lambda over training)
    sora_max_lambda: float = 0.0  # final lambda of the linear schedule
    # the LoRA family (methods rslora, loraplus, dora, pissa, vera: lora_r, lora_alpha and lora_targets as LoRA)
    loraplus_lr_ratio: float = 8.0  # LoRA+ (Hayou et al. 2024): B's learning rate over A's (its best for B from 0)
    vera_d_initial: float = 0.1  # VeRA (Kopiczko et al. 2024): the start value of its d vectors
    cls_dropout: float = -1.0  # classifier dropout; negative: the model's default
    # optimisation
    epochs: int = 1  # the most epochs a run trains (the learning-rate schedule spans them all)
    early_stopping_patience: int = 0  # stop after this many epochs without a better selection score; 0: never
    batch_size: int = 16  # per-device batch size
    grad_accum: int = 1  # micro-batches per optimizer step (effective batch: batch_size x grad_accum)
    learning_rate: float = 5.0e-4  # peak learning rate (AdamW, linear warmup then linear decay)
    head_learning_rate: float = 0.0  # the classification head's own peak learning rate (VeRA's recipe); 0: the same
    weight_decay: float = 0.0  # AdamW weight decay (not on biases and LayerNorm)
    warmup_ratio: float = 0.06  # fraction of steps spent warming up
    max_grad_norm: float = 1.0  # gradient clipping; 0: off
    eval_batch_size: int = 64  # evaluation batch size
    group_by_length: bool = False  # training batches of similar lengths: less padding, other batches (results differ)
    seed: int = 0  # seeds python, numpy, torch and the data order
    # execution
    precision: str = "fp32"  # fp32 | bf16 | fp16
    deterministic: bool = False  # deterministic CUDA kernels (slower)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    cache_dir: str = ""  # tokenization cache; empty: $LORA_NB_CACHE or ~/.cache/lora_nb
    save_adapter: bool = True  # keep the trained LoRA + head weights (adapter.safetensors)
    progress: str = "auto"  # auto | bar | log | none (the runner sets log: no widgets under papermill)
    output_dir: str = "runs/adhoc"  # this run's directory

    def __post_init__(self):
        get_method(self.method)  # an unknown method fails listing the registered ones
        if self.split not in SPLITS:
            raise LoraNbError(f"split must be one of {', '.join(SPLITS)}, not {self.split!r}.")
        if self.sora_lambda_schedule not in ("constant", "linear"):
            raise LoraNbError(f"sora_lambda_schedule must be constant or linear, not {self.sora_lambda_schedule!r}.")
        for name in ("epochs", "batch_size", "grad_accum", "max_seq_len", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise LoraNbError(f"{name} must be >= 1, not {getattr(self, name)!r}.")
        if self.early_stopping_patience < 0:
            raise LoraNbError(f"early_stopping_patience must be >= 0 (0 = no early stopping), not "
                              f"{self.early_stopping_patience!r}.")
        check_ranges(self)

    @classmethod
    def from_params(cls, params: dict, source: str = "parameters") -> "RunConfig":
        """Build from a dict, with a clear error for unknown names (with the closest match) and wrong types."""
        return cls(**check_params(params, source))

    def to_params(self) -> dict:
        return dataclasses.asdict(self)


PRECISIONS = ("fp32", "bf16", "fp16")
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise LoraNbError(message)


def check_ranges(cfg: RunConfig) -> None:
    """Values no run can use fail here, before anything is loaded or written."""
    _require(cfg.learning_rate > 0, f"learning_rate must be > 0, not {cfg.learning_rate!r}: give the peak learning "
                                    "rate, e.g. 5.0e-4 (LoRA) or 1.0e-5 (full fine-tuning).")
    _require(cfg.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, not {cfg.precision!r}.")
    _require(cfg.weights in ("pretrained", "random"), f"weights must be pretrained or random, not {cfg.weights!r}.")
    _require(bool(DEVICE_PATTERN.fullmatch(cfg.device)),
             f"device must be auto, cpu, cuda or cuda:N, not {cfg.device!r}.")
    _require(cfg.progress in ("auto", "bar", "log", "none"),
             f"progress must be auto, bar, log or none, not {cfg.progress!r}.")
    method = get_method(cfg.method)
    _require(not (cfg.head_learning_rate and method.make_optimizer),
             f"head_learning_rate does not apply to method {cfg.method}: its optimizer sets the head's rates itself "
             "(LoRA+: peft's create_loraplus_optimizer). Fix: head_learning_rate 0.")
    if method.validate:  # its own parameters: lora_r >= 1, AdaLoRA's target_r <= init_r, ...
        method.validate(cfg)
    _require(0 <= cfg.lora_dropout < 1, f"lora_dropout must be in [0, 1), not {cfg.lora_dropout!r}.")
    _require(0 <= cfg.warmup_ratio <= 1, f"warmup_ratio must be in [0, 1], not {cfg.warmup_ratio!r}.")
    for name in ("max_train_samples", "max_eval_samples", "weight_decay", "max_grad_norm", "head_learning_rate"):
        _require(getattr(cfg, name) >= 0, f"{name} must be >= 0, not {getattr(cfg, name)!r}.")


def use_bar(progress: str) -> bool:
    """Whether `progress` means progress bars: 'bar', or 'auto' on a terminal (else one line per epoch, or none)."""
    return progress == "bar" or (progress == "auto" and sys.stderr.isatty())


def configure_progress(progress: str) -> None:
    """The run's edge: the datasets/transformers progress bars follow `progress`, silenced unless bars are wanted
    (papermill, logs, CI). config_from_notebook and experiment.run_experiment call it first."""
    import datasets
    from transformers.utils import logging as hf_logging
    if use_bar(progress):
        datasets.enable_progress_bars()
        hf_logging.enable_progress_bar()
    else:
        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()


PARAMETER_NAMES = [f.name for f in dataclasses.fields(RunConfig)]
RUN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}  # the one set of defaults
_TYPES = {f.name: f.type for f in dataclasses.fields(RunConfig)}


def _type_ok(value, annotation: str) -> bool:
    if value is None:
        return "None" in annotation
    if "bool" in annotation:
        return isinstance(value, bool)
    if "float" in annotation:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if "int" in annotation:
        return isinstance(value, int) and not isinstance(value, bool)
    if "str" in annotation:
        return isinstance(value, str)
    return True


def check_params(params: dict, source: str = "parameters") -> dict:
    """Validate names and types of run parameters; raises LoraNbError naming the source and the key."""
    for key, value in params.items():
        if key not in _TYPES:
            close = difflib.get_close_matches(key, PARAMETER_NAMES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise LoraNbError(f"{source}: unknown parameter {key!r}.{hint} Known: {', '.join(PARAMETER_NAMES)}.")
        if not _type_ok(value, str(_TYPES[key])):
            raise LoraNbError(f"{source}: parameter {key!r} must be {_TYPES[key]}, got {value!r} "
                              f"({type(value).__name__}). Write floats with a dot, e.g. 5.0e-4.")
    return dict(params)


PAPERMILL_MARKER = "# Parameters"  # the first line of the cell papermill injects after the `parameters` cell


def injected_parameter_names(history) -> list[str]:
    """Names assigned in the cells papermill injected, found in the kernel's input history (IPython's `In`)."""
    names = []
    for source in history or ():
        if source.split("\n", 1)[0].strip() != PAPERMILL_MARKER:
            continue
        try:
            body = ast.parse(source).body
        except SyntaxError:
            continue
        names += [t.id for node in body if isinstance(node, ast.Assign) for t in node.targets
                  if isinstance(t, ast.Name)]
    return names


def config_from_notebook(namespace: dict) -> RunConfig:
    """The run's parameters from a notebook's globals, and its progress bars set (the notebook's edge). A name
    papermill injected that is not a parameter (a typo such as `-p lerning_rate 1e-3`) fails here: papermill itself
    only warns, and the run would use the default."""
    injected = {n: namespace.get(n) for n in injected_parameter_names(namespace.get("In"))}
    check_params({n: v for n, v in injected.items() if n not in _TYPES}, "papermill parameters (-p / -f)")
    cfg = RunConfig.from_params({n: namespace[n] for n in PARAMETER_NAMES}, source="notebook parameters")
    configure_progress(cfg.progress)
    return cfg


def _sibling_of_output(init_from, output_dir) -> bool:
    if not (isinstance(init_from, str) and init_from and isinstance(output_dir, str) and output_dir):
        return False
    a, b = PurePath(init_from), PurePath(output_dir)
    return a.is_absolute() and b.is_absolute() and a.parent == b.parent and a != b


NOT_HASHED = ("output_dir", "progress", "cache_dir", "glue_dir")  # where things are, not what is computed
# A parameter at its hash-neutral value is left out of a run's hash. That value is the parameter's default when it
# was introduced, frozen here, so that a later change of a default never renames finished runs: lora_alpha's
# default became 8.0 (the notebooks' value, which every grid run used) after hashes of 16.0 had been written.
HASH_NEUTRAL = {**RUN_DEFAULTS, "lora_alpha": 16.0}


def params_hash(params: dict, legacy: bool = False) -> str:
    """A stable hash of the parameters that define a run's result. Parameters at their hash-neutral value (the
    default they were introduced with) are left out, so adding a parameter whose default keeps old behaviour does
    not invalidate finished runs. An `init_from` that is a sibling of the run's output_dir (the MNLI run a grid
    links: both absolute, in one folder) counts as '../<its name>', so moving a checkout or a grid's output folder
    keeps the hash; `legacy`: the hash as written before that rule (the absolute path), which finished runs may
    carry (grid.PlannedRun.hashes accepts both)."""
    keep = {k: v for k, v in sorted(params.items()) if k not in NOT_HASHED and not
            (k in HASH_NEUTRAL and v == HASH_NEUTRAL[k] and type(v) is type(HASH_NEUTRAL[k]))}
    if not legacy and _sibling_of_output(keep.get("init_from"), params.get("output_dir")):
        keep["init_from"] = f"../{PurePath(keep['init_from']).name}"
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]
