"""Small tables and plots the notebooks show (pandas / seaborn), so that notebook cells stay one line."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..runs import rundir
from ..config import RunConfig
from ..methods.lora import count_parameters
from ..paper import paper_trainable_params


def parameter_table(model, cfg: RunConfig) -> pd.DataFrame:
    """Our parameter counts beside the paper's published figure for this model and method."""
    counts = count_parameters(model)
    paper = paper_trainable_params(cfg.model, cfg.method)
    rows = [("LoRA matrices", counts["lora"]), ("classification head (+ pooler)", counts["head"]),
            ("trainable in total", counts["total_trainable"]), ("model without LoRA", counts["base"])]
    table = pd.DataFrame(rows, columns=["what", "parameters"]).set_index("what")
    table["parameters"] = table["parameters"].map("{:,}".format)
    if paper:
        table.loc["the paper's figure (LoRA only for LoRA rows)"] = paper
    return table


def epochs_frame(run_dir) -> pd.DataFrame:
    """The run's epochs.csv as a DataFrame (empty before the first epoch ends)."""
    path = Path(run_dir) / rundir.EPOCHS
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def summary(metrics: dict) -> pd.DataFrame:
    """The best epoch's metrics (x100, as the paper prints them) with status and timing."""
    rows = {f"{k} (x100)": round(100 * v, 2) for k, v in metrics["best"].items()}
    rows.update(status=metrics["status"], best_epoch=metrics["best_epoch"],
                train_minutes=round(metrics["train_seconds"] / 60, 2), peak_memory_mb=round(metrics["peak_memory_mb"]))
    return pd.DataFrame.from_dict(rows, orient="index", columns=["value"])


def plot_epochs(run_dir, metric: str | None = None):
    """Training loss and the task metric per epoch."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    frame = epochs_frame(run_dir)
    if frame.empty:
        print("no finished epoch yet")
        return None
    metric = metric or rundir.read_json(Path(run_dir) / rundir.METRICS)["primary_metric"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    sns.lineplot(data=frame, x="epoch", y="train_loss", marker="o", ax=axes[0]).set_title("training loss")
    sns.lineplot(data=frame, x="epoch", y=metric, marker="o", ax=axes[1]).set_title(f"validation {metric}")
    fig.tight_layout()
    return fig
