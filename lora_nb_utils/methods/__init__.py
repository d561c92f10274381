"""Where a method is described: the `Method` registry (`METHODS`, in registration order: ft, lora, adalora, sora, and
the LoRA family: rslora, loraplus, dora, pissa, vera).

Each method module registers itself once, at its bottom, with `register_method` (as PEFT's `register_peft_method`).
Everything that depends on the method (RunConfig's checks, build_model, the training hooks, the recorded state, run
names, results columns, report labels, the cost model) asks the registry, so adding a method is one module + one
registration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import LoraNbError


@dataclass(frozen=True)
class Method:
    name: str  # the `method` parameter's value
    title: str  # its name in tables: FT, LoRA
    changes_model: Callable  # (cfg, model) -> model: layers injected, a peft wrapper, or the model unchanged
    trains: Callable[[str], bool]  # parameter name -> whether it trains (applied after changes_model)
    parameters: tuple[str, ...] = ()  # its parameters in the results table; LoRA settings not named here are blank
    rank_parameters: tuple[str, ...] = ()  # the parameters that are its rank: ("lora_r",); several: r from -> to
    validate: Callable | None = None  # (cfg) -> None; raises LoraNbError naming the fix (run by RunConfig)
    on_training_start: Callable | None = None  # (cfg, model, optimizer, total_steps) -> before_zero_grad hook | None
    final_state: Callable | None = None  # model -> dict, recorded as metrics.json's method_state
    make_optimizer: Callable | None = None  # (cfg, model) -> optimizer; None: AdamW (train.make_optimizer)
    trains_adapter: bool = True  # a small adapter on a frozen base: saved, counted and timed as LoRA is; else as FT
    accepts_init_from: bool = False  # init_from (MNLI initialisation) loads its weights
    exports_to_peft: bool = False  # its runs' adapters can be written as PEFT adapter folders (adapters.export_run)
    paper_claim: str = ""  # its paper's claim against LoRA at the same rank, judged from the runs in the summary
    claim_beats_lora: bool = True  # the claim is 'beats LoRA' (else 'matches LoRA', e.g. with fewer parameters)
    loss_is_task_loss: bool = True  # its recorded training loss is the task's loss alone (AdaLoRA's adds a regulariser)

    @property
    def has_rank(self) -> bool:
        return bool(self.rank_parameters)

    def build(self, cfg, model):
        """changes_model, then exactly the parameters `trains` names train."""
        model = self.changes_model(cfg, model)
        for name, p in model.named_parameters():
            p.requires_grad = self.trains(name)
        return model

    def label(self, values: dict, title: str | None = None, arrow: str = "→") -> str:
        """`title` (default: the method's) with its rank read from `values` (run parameters or a results row):
        'LoRA r=8', 'AdaLoRA r=12→8', 'FT'. Without a rank value, the title alone."""
        title = title or self.title
        ranks = [values.get(p) for p in self.rank_parameters]
        if not ranks or _missing(ranks[0]):
            return title
        return f"{title} r={arrow.join(str(int(r)) for r in ranks)}"


def _missing(value) -> bool:
    try:
        return value is None or bool(value != value)  # None, NaN
    except TypeError:  # pandas' NA
        return True


METHODS: dict[str, Method] = {}


def register_method(**fields) -> Method:
    """Describe a method (the fields of `Method`) and add it to METHODS; a name can be registered once."""
    method = Method(**fields)
    if method.name in METHODS:
        raise LoraNbError(f"method {method.name!r} is already registered; give the new method another name.")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method called `name`; an unknown name fails listing the known ones."""
    if name not in METHODS:
        raise LoraNbError(f"method must be one of {', '.join(METHODS)}, not {name!r}.")
    return METHODS[name]


# each registers itself; this fixes the order
from . import ft, lora, adalora, sora, rslora, loraplus, dora, pissa, vera  # noqa: E402


def merged_for_inference(model):
    """The model with its adapter folded into the weights (base-model cost at inference): peft tuners (AdaLoRA,
    DoRA, PiSSA, VeRA) through peft's merge_and_unload, loralib layers (LoRA, rsLoRA, LoRA+, SoRA) through
    lora.merge_lora. In place for loralib layers; returns the merged model."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return lora.merge_lora(model)


__all__ = ["Method", "METHODS", "register_method", "get_method", "merged_for_inference", "ft", "lora", "adalora",
           "sora", "rslora", "loraplus", "dora", "pissa", "vera"]
