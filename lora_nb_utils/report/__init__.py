"""The report: our runs beside the LoRA paper's Table 2 and the AdaLoRA and SoRA papers, as tables, sentences and
figures that notebooks/05_report.ipynb shows and `lora-nb report` exports to HTML and PDF. One job a module:

    select.py           which runs count, and with which score
    format.py           names and value text (counts, differences, labels); NothingToShow
    stats.py            per configuration over seeds, the rank ablation, LoRA vs FT; per run curves and cost
    table2.py           our medians beside the paper's Table 2
    verdicts.py         the tolerance, verdict words and claim rows
    tables.py           the tables for people
    claims.py           the paper's claims, each with a verdict (the summary)
    prose.py            what was run, why our numbers differ, where training was still improving
    methods.py          FT, LoRA, AdaLoRA and SoRA on our runs; references.py the AdaLoRA and SoRA papers' tables
    fair_comparison.py  what each sweep chose on held-out data, and what it cost
    gaps.py             where a method misses its reference, what the sweep, the seeds and the curves show
    section7.py         Section 7 (notebooks/04_low_rank_analysis.ipynb's outputs)
    figures.py          the figures; render.py shows tables and figures in the notebook
    export.py           notebook -> HTML -> PDF (`lora-nb report`)
    run_view.py         one run's tables and plot (notebooks 01-03)
"""
from .format import NO_RESULTS, NothingToShow, config_labels, human_count, message, method_label, model_label
from .references import reference_table
from .select import EXCLUDED, PAPER_RANK, main_runs, reported_scores, sora_sweep, table2_runs
from .stats import aggregate, cost_table, lora_vs_ft, rank_ablation, still_improving, training_curves
from .table2 import compare_to_paper, table2_layout
from .verdicts import FT_TOLERANCE, VERDICTS

__all__ = ["NO_RESULTS", "NothingToShow", "config_labels", "human_count", "message", "method_label", "model_label",
           "reference_table", "EXCLUDED", "PAPER_RANK", "main_runs", "reported_scores", "sora_sweep", "table2_runs",
           "aggregate", "cost_table", "lora_vs_ft", "rank_ablation", "still_improving", "training_curves",
           "compare_to_paper", "table2_layout", "FT_TOLERANCE", "VERDICTS"]
