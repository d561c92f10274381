"""VeRA (Kopiczko et al. 2024): one pair of frozen random matrices A (r x d_in) and B (d_out x r) shared by every
adapted layer, and per layer two trained vectors, d (r entries, initialised to vera_d_initial) and b (d_out entries,
zeros): h = W x + diag(b) B diag(d) A x. Trainable per layer: r + d_out, so its rank is large (the paper: 256 to
1024). Through peft: VeraConfig; the shared projections are drawn from `seed`."""
from __future__ import annotations

from ..errors import LoraNbError
from . import register_method
from .lora import adapter_and_head, check_rank
from .peft_tuner import wrap


def add_vera(cfg, model):
    from peft import VeraConfig
    from peft.tuners.vera import VeraModel
    config = VeraConfig(r=cfg.lora_r, vera_dropout=cfg.lora_dropout, d_initial=cfg.vera_d_initial,
                        projection_prng_key=cfg.seed)
    return wrap(model, VeraModel, config, cfg.lora_targets)


def check(cfg) -> None:
    check_rank(cfg)
    if cfg.vera_d_initial <= 0:
        raise LoraNbError(f"vera_d_initial must be > 0 (the start value of VeRA's d vector; peft's default 0.1), "
                          f"not {cfg.vera_d_initial!r}.")


register_method(name="vera", title="VeRA", changes_model=add_vera, trains=adapter_and_head,
                parameters=("lora_r", "lora_targets", "vera_d_initial"), rank_parameters=("lora_r",), validate=check,
                exports_to_peft=True,
                paper_claim="VeRA matches LoRA with about 10x fewer trainable parameters (VeRA paper, Table 2)",
                claim_beats_lora=False)
