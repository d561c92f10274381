"""The benchmarks' settings: BenchConfig (model, device, precision, batch, repetitions, the padding part's data) and
its presets (full, --quick, --tiny), and TINY, the small architecture of the tiny preset and of the tests."""
from __future__ import annotations

from dataclasses import dataclass, field

# A small randomly initialised model with the real architecture's code path: bench --tiny and the tests' tiny_model.
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, pooler_hidden_size=32)


@dataclass
class BenchConfig:
    model: str = "minilm"
    weights: str = "auto"  # auto: pretrained for minilm, random for the others (time does not depend on values)
    tokenizer: str | None = None  # folder or hub id when not the model's own
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast in every timed forward, as train.train (fp16: CUDA only)
    batch_size: int = 16
    seq_len: int = 128
    lora_r: int = 8
    lora_alpha: float = 16.0
    targets: str = "query,value"
    warmup: int = 1  # untimed rounds per variant
    reps: int = 5  # timed rounds per variant (median)
    steps_per_rep: int = 1
    memory_steps: int = 3
    padding_tasks: tuple = ("sst2", "rte")
    padding_train_samples: int = 0  # 0 = the whole training split (one epoch)
    padding_eval_samples: int = 0  # 0 = the whole validation split
    padding_batch_size: int = 16
    padding_max_length: int = 512
    throughput_seq_lens: tuple = (128,)
    glue_dir: str | None = None
    runs: str | None = None  # a folder of run directories (manifest.json + metrics.json) for pipeline overhead
    config_overrides: dict = field(default_factory=dict)  # architecture overrides (tiny test models)
    seed: int = 0

    @classmethod
    def preset(cls, model="minilm", quick=False, tiny=False, **kw) -> "BenchConfig":
        if tiny:
            base = dict(model="roberta-base", weights="random", batch_size=4, seq_len=32, warmup=1, reps=1,
                        memory_steps=1, padding_train_samples=4, padding_eval_samples=4, padding_batch_size=4,
                        padding_tasks=("rte",),
                        throughput_seq_lens=(32,), config_overrides=dict(TINY))
        elif quick:
            small = model == "minilm"
            base = dict(model=model, reps=7, steps_per_rep=2, memory_steps=2, batch_size=16 if small else 8,
                        padding_train_samples=64 if small else 8, padding_eval_samples=128 if small else 16,
                        padding_batch_size=16 if small else 4,
                        throughput_seq_lens=(128,))
        else:
            base = dict(model=model, reps=7, memory_steps=3, throughput_seq_lens=(64, 128, 256, 512))
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)

    @property
    def weights_kind(self) -> str:
        """'pretrained' or 'random': what `weights` means for this model."""
        if self.weights != "auto":
            return self.weights
        return "pretrained" if self.model == "minilm" else "random"
