"""Benchmarks and the cost model (`lora-nb bench`, `lora-nb run --dry-run`'s hours):

    config.py     BenchConfig and its presets; TINY, the small architecture of --tiny and the tests
    variants.py   the base model, our LoRA / PEFT's LoRA / full fine-tuning, random batches, the timed training step
    timing.py     how things are measured: interleaved median times, per-process peak memory
    parts.py      the measured parts (step time, memory, latency, padding, tokenize cache, overhead, throughput)
    padding.py    the padding part: dynamic vs max-length vs length-grouped batches on real GLUE
    summary.py    a result's ratios for the terminal and as Markdown; throughput rows for the cost model
    costmodel.py  device-hours of a run, a Table 2 cell or a grid, from measured throughput
"""
