"""The report's figures (seaborn), each from the runs: scores per task with seeds as dots, the rank ablation,
convergence curves against optimizer steps and training time, score against cost (trainable parameters, peak
memory, training time) with the Pareto front, and a sweep grid's held-out score against the learning rate. Each plot_* returns a matplotlib figure, or None with nothing to plot.
Sizes fit the printed page (A4 portrait, 7.2 inches of text width); render.show_figure displays them.

matplotlib and seaborn are optional (not package dependencies): imported where used, in the notebook kernel."""
from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd

from ..glue.tasks import TASK_LABELS
from .fair_comparison import sweep_candidates
from .format import config_key, config_labels, message, method_label, model_label, task_order
from .select import main_runs
from .stats import aggregate, cost_table, rank_ablation, training_curves

WIDTH = 7.2  # inches: the printed page's text width
FIXED_COLORS = {"FT": "#3a3a3a", "LoRA r=8": "#1f77b4", "AdaLoRA": "#ff7f0e", "SoRA": "#2ca02c", "rsLoRA": "#17becf",
                "LoRA+": "#9467bd", "DoRA": "#d62728", "PiSSA": "#8c564b", "VeRA": "#e377c2"}
STYLE = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5,
         "legend.fontsize": 7.5, "legend.title_fontsize": 8, "figure.dpi": 96, "axes.spines.top": False,
         "axes.spines.right": False}


def palette(configs) -> dict:
    """One colour per configuration: FT grey, LoRA blue (several ranks: light to dark blue by rank), AdaLoRA
    orange, SoRA green, and one each for the LoRA family."""
    import seaborn as sns
    configs = sorted(set(configs), key=config_key)
    ranks = [c for c in configs if c.startswith("LoRA r=")]
    blues = dict(zip(ranks, sns.color_palette("Blues", len(ranks) + 1)[1:])) if len(ranks) > 1 else {}
    return {c: blues.get(c) or FIXED_COLORS.get(c) or FIXED_COLORS.get(c.split(" ")[0]) or "#7f7f7f"
            for c in configs}


def _style():
    import matplotlib.pyplot as plt
    return plt.rc_context(STYLE)


@contextlib.contextmanager
def _fixed_jitter(seed: int = 0):
    """seaborn's stripplot jitters with numpy's global generator: fixed here (and restored after), so the same runs
    give the same figure, byte for byte."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _task_blocks(n_tasks: int, per_task: int, height: float, max_cols: int = 5, top: float = 0.3):
    """Tasks in columns (at most max_cols to a row of tasks), `per_task` panels under each, `top` inches for a
    legend: the figure and axes[k][j] (task k, panel j), with the unused slots of the last row of tasks hidden."""
    import matplotlib.pyplot as plt
    cols = min(n_tasks, max_cols)
    rows = -(-n_tasks // cols) * per_task
    fig, grid = plt.subplots(rows, cols, figsize=(WIDTH, height * rows + top), squeeze=False)
    axes = [[grid[(k // cols) * per_task + j, k % cols] for j in range(per_task)] for k in range(n_tasks)]
    used = {id(ax) for panels in axes for ax in panels}
    for ax in grid.flat:
        ax.set_visible(id(ax) in used)
    return fig, axes


def _task_title(ax, task: str, metric: str | None = None) -> None:
    ax.set_title(TASK_LABELS.get(task, task) + (f" ({metric})" if metric else ""))


def _legend_and_layout(fig, pal: dict, line: bool = True) -> None:
    """A one-line legend of the configurations across the top of the figure, the panels below it."""
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=c, marker="o", linestyle="-" if line else "", markersize=4) for c in pal.values()]
    fig.legend(handles, list(pal), loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(pal), 7),
               frameon=False, handlelength=1.5 if line else 0.8, columnspacing=1.2)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))


METRIC_SHORT = {"accuracy": "acc.", "matthews_corr": "MCC", "pearson": "Pearson", "f1": "F1"}


def plot_scores(results: pd.DataFrame):
    """The summary figure: per task, each configuration's reported score x100 (FT, LoRA at the paper's rank,
    AdaLoRA, SoRA), one dot per seed and a bar at the median."""
    import seaborn as sns
    ok = main_runs(results)
    if ok.empty:
        return None
    ok = ok.assign(config=config_labels(ok))
    pal = palette(ok["config"])
    order = list(pal)
    tasks = task_order(ok["task"])
    models = sorted(ok["model"].unique())
    with _style(), _fixed_jitter():
        fig, axes = _task_blocks(len(tasks) * len(models), 1, 1.9, top=0)
        for (ax,), (model, task) in zip(axes, [(m, t) for m in models for t in tasks]):
            d = ok[(ok["model"] == model) & (ok["task"] == task)]
            sns.stripplot(data=d, x="config", y="score100", hue="config", order=order, hue_order=order, palette=pal,
                          size=4.5, jitter=0.12, legend=False, ax=ax, alpha=0.85)
            med = d.groupby("config")["score100"].median()
            for i, c in enumerate(order):
                if c in med:
                    ax.plot([i - 0.32, i + 0.32], [med[c]] * 2, color=pal[c], linewidth=2)
            _task_title(ax, task, METRIC_SHORT.get(d["primary_metric"].iloc[0]) if len(d) else None)
            ax.set(xlabel="", ylabel="score x100" if ax.get_subplotspec().is_first_col() else "")
            short = len(order) > 2  # the names without the rank, turned, when there are more than two
            ax.set_xticks(range(len(order)), [c.split(" ")[0] if short else c for c in order],
                          rotation=90 if short else 0)
            ax.margins(x=0.15, y=0.15)
            if len(models) > 1:
                ax.set_title(f"{model_label(model)} {ax.get_title()}")
        fig.tight_layout()
    return fig


def plot_rank_ablation(results: pd.DataFrame):
    """Score vs LoRA rank per task: median over seeds, bars from the worst to the best seed; FT's median dashed."""
    ra = rank_ablation(results)
    if message(ra):
        return None
    keys = list(ra.groupby(["model", "task"], sort=False).groups)
    agg = aggregate(results)
    with _style():
        fig, axes = _task_blocks(len(keys), 1, 2.3, max_cols=3)
        for (ax,), (model, task) in zip(axes, keys):
            g = ra[(ra["model"] == model) & (ra["task"] == task)]
            ax.errorbar(g["lora_r"], g["median"], yerr=[g["median"] - g["min"], g["max"] - g["median"]], marker="o",
                        markersize=4, capsize=3, color=FIXED_COLORS["LoRA r=8"],
                        label="LoRA: median, worst to best seed")
            ft = agg[(agg["model"] == model) & (agg["task"] == task) & (agg["method"] == "ft") & (agg["n"] > 0)]
            if len(ft):
                ax.axhline(ft["median"].iloc[0], color=FIXED_COLORS["FT"], linestyle="--", linewidth=1,
                           label="FT: median")
            ax.set_xscale("log", base=2)
            ax.set_xticks(g["lora_r"], [str(r) for r in g["lora_r"]])
            ax.minorticks_off()
            _task_title(ax, task)
            ax.set(xlabel="LoRA rank r", ylabel="score x100")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    return fig


def plot_convergence(results: pd.DataFrame):
    """The reported score x100 after every epoch, against optimizer steps (top row of each task pair) and cumulative
    training time (bottom), one line per run (seed), FT / LoRA at the paper's rank / AdaLoRA / SoRA. A line that still
    rises at its right end was still improving when training stopped (hollow marker: the run's last epoch)."""
    import seaborn as sns
    curves = training_curves(results)
    if message(curves):
        return None
    curves = curves.assign(config=curves["config"].astype(str))
    pal = palette(curves["config"])
    keys = [(m, t) for m in sorted(curves["model"].unique()) for t in task_order(curves["task"])]
    xs = [(x, label) for x, label in (("step", "optimizer steps"), ("minutes", "training minutes"))
          if curves[x].notna().any()]
    if not xs:
        return None
    with _style():
        import matplotlib.pyplot as plt
        fig, axes = _task_blocks(len(keys), len(xs), 1.7)
        for k, (model, task) in enumerate(keys):
            d = curves[(curves["model"] == model) & (curves["task"] == task)]
            for j, (x, label) in enumerate(xs):
                ax = axes[k][j]
                sns.lineplot(data=d, x=x, y="value", hue="config", hue_order=list(pal), palette=pal, units="run",
                             estimator=None, marker="o", markersize=3.5, linewidth=1, legend=False, ax=ax)
                last = d[d["last"]]
                ax.scatter(last[x], last["value"], s=22, facecolors="white",
                           edgecolors=[pal[c] for c in last["config"]], zorder=3, linewidths=1)
                ax.set(xlabel=label, ylabel="score x100" if k % 5 == 0 else "")
                if j == 0:
                    _task_title(ax, task, METRIC_SHORT.get(d["metric"].iloc[0]))
                ax.xaxis.set_major_locator(plt.MaxNLocator(3, integer=True))
        _legend_and_layout(fig, pal)
    return fig


COSTS = (("trainable_params", "trainable parameters", True), ("peak_memory_mb", "peak memory (MB)", False),
         ("train_minutes", "training time (minutes)", False))


def _pareto(points: pd.DataFrame, x: str) -> pd.DataFrame:
    """The configurations no other beats on both cost (lower) and score (higher), by cost."""
    points = points.sort_values([x, "score100"], ascending=[True, False])
    return points[points["score100"] > points["score100"].cummax().shift(fill_value=-np.inf)]


def plot_cost_vs_score(results: pd.DataFrame):
    """Per task (columns), each configuration's median score x100 against its median cost (rows): trainable
    parameters (log scale), peak memory and training time; the Pareto front (nothing cheaper scores higher) grey."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    cost = cost_table(results)
    if message(cost):
        return None
    med = cost.groupby(["model", "task", "config"], as_index=False)[
        ["trainable_params", "peak_memory_mb", "train_minutes", "score100"]].median()
    pal = palette(med["config"])
    keys = [(m, t) for m in sorted(med["model"].unique()) for t in task_order(med["task"])]
    with _style():
        fig, axes = _task_blocks(len(keys), len(COSTS), 1.55)
        for k, (model, task) in enumerate(keys):
            d = med[(med["model"] == model) & (med["task"] == task)]
            for j, (x, label, log) in enumerate(COSTS):
                ax = axes[k][j]
                front = _pareto(d, x)
                ax.plot(front[x], front["score100"], color="#b0b0b0", linewidth=3, alpha=0.6, zorder=1)
                sns.scatterplot(data=d, x=x, y="score100", hue="config", hue_order=list(pal), palette=pal, s=30,
                                legend=False, ax=ax, zorder=2, edgecolor="white", linewidth=0.5)
                if log:
                    ax.set_xscale("log")
                ax.xaxis.set_major_locator(plt.MaxNLocator(3) if not log else ax.xaxis.get_major_locator())
                ax.set(xlabel=label, ylabel="score x100" if k % 5 == 0 else "")
                if j == 0:
                    _task_title(ax, task)
                ax.margins(x=0.15, y=0.2)
        _legend_and_layout(fig, pal, line=False)
    return fig


def plot_sweeps(selection: dict):
    """Per task, each method's held-out score x100 (the selection seed) against its learning rate (log scale): the
    curves selection read. Ringed: the chosen value; a cross: a run that collapsed to chance."""
    import seaborn as sns
    points = sweep_candidates(selection).dropna(subset=["score100"])
    if points.empty:
        return None
    points["config"] = [method_label(m, lora_r=r) for m, r in zip(points["method"], points["r"])]
    pal = palette(points["config"])
    keys = [(m, t) for m in sorted(points["model"].unique()) for t in task_order(points["task"])]
    with _style():
        fig, axes = _task_blocks(len(keys), 1, 2.1, max_cols=3)
        for (ax,), (model, task) in zip(axes, keys):
            d = points[(points["model"] == model) & (points["task"] == task)].sort_values("learning_rate")
            sns.lineplot(data=d, x="learning_rate", y="score100", hue="config", hue_order=list(pal), palette=pal,
                         marker="o", markersize=3.5, linewidth=1, legend=False, ax=ax)
            chosen, bad = d[d["chosen"]], d[d["status"] != "ok"]
            ax.scatter(chosen["learning_rate"], chosen["score100"], s=70, facecolors="none", zorder=3,
                       edgecolors=[pal[c] for c in chosen["config"]], linewidths=1.3)
            ax.scatter(bad["learning_rate"], bad["score100"], s=40, marker="x", color="black", zorder=4,
                       linewidths=1)
            ax.set_xscale("log")
            ax.set(xlabel="learning rate", ylabel="held-out score x100" if ax.get_subplotspec().is_first_col() else "")
            _task_title(ax, task)
            if len(keys) > len(task_order(points["task"])):
                ax.set_title(f"{model_label(model)} {ax.get_title()}")
        _legend_and_layout(fig, pal)
    return fig
