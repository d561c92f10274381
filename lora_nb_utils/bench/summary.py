"""What a benchmark run reports: the keys every run_bench result has, its ratios as lines for the terminal, several
results side by side as a Markdown table, and measured throughput appended to the cost model's CSV."""
from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

REQUIRED_KEYS = ("lora_vs_peft_step_time", "lora_vs_peft_peak_memory", "lora_vs_ft_step_time",
                 "lora_vs_ft_peak_memory", "merged_vs_base_latency", "unmerged_vs_base_latency",
                 "dynamic_vs_maxlen_padding_speedup", "device", "model")
RATIO_KEYS = ("lora_vs_peft_step_time", "lora_vs_peft_peak_memory", "lora_vs_peft_memory_increment",
              "lora_vs_ft_step_time", "lora_vs_ft_peak_memory", "lora_vs_ft_memory_increment",
              "merged_vs_base_latency", "unmerged_vs_base_latency", "dynamic_vs_maxlen_padding_speedup",
              "dynamic_vs_maxlen_padding_speedup_sst2", "dynamic_vs_maxlen_padding_speedup_rte",
              "grouped_vs_dynamic_speedup", "eval_sorted_vs_dynamic_speedup", "tokenize_cold_vs_warm",
              "pipeline_overhead_fraction_median")
CHECK_KEYS = ("padding_predictions_identical", "padding_metrics_identical", "eval_sorted_metrics_identical",
              "merged_equals_unmerged")  # what must hold (True), whatever the timings


def summary_lines(out: dict) -> list[str]:
    """A short human-readable summary of a run_bench result."""
    lines = [f"model {out['model']} ({out['weights']} weights, {out.get('config', {}).get('precision', 'fp32')}), "
             f"device {out['device']}"]
    lines += [f"{k:>40}: {out[k]:.3f}" for k in RATIO_KEYS if isinstance(out.get(k), (int, float))]
    for k in CHECK_KEYS:
        if k in out:
            lines.append(f"{k:>40}: {out[k]}")
    if "memory_measure" in out:
        lines.append(f"memory: {out['memory_measure']}")
    return lines


def ratios_markdown(outs: list[dict]) -> str:
    """A Markdown table of the ratios of several run_bench results side by side (one column per model)."""
    precisions = [o.get("config", {}).get("precision", "fp32") for o in outs]
    names = [o["model"] + ("" if p == "fp32" else f" ({p})") for o, p in zip(outs, precisions)]
    lines = ["| ratio | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(outs)]
    for k in (*RATIO_KEYS, *CHECK_KEYS):
        cells = [f"{o[k]:.3f}" if isinstance(o.get(k), float) else str(o.get(k, "—")) for o in outs]
        lines.append(f"| `{k}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def append_throughput_csv(rows: list[dict], path) -> None:
    """Add measured throughput rows to a CSV (the cost model reads lora_nb_utils/reference/throughput.csv)."""
    path = Path(path)
    new = not path.is_file()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["device", "model", "method", "seq_len", "batch_size", "samples_per_s",
                                           "measured", "note"])
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({**r, "samples_per_s": round(r["samples_per_s"], 3), "measured": date.today().isoformat(),
                        "note": r.get("note", "lora-nb bench")})
