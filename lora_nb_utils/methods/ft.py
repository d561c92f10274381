"""Full fine-tuning: the model unchanged, every parameter trains. The baseline the LoRA paper compares with."""
from __future__ import annotations

from . import register_method


def unchanged(cfg, model):
    return model


def every_parameter(name: str) -> bool:
    return True


register_method(name="ft", title="FT", changes_model=unchanged, trains=every_parameter, trains_adapter=False)
