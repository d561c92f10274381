"""The GLUE task registry: one table used by data loading, metrics, notebooks, runner and report."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LoraNbError


@dataclass(frozen=True)
class Task:
    name: str
    text_columns: tuple[str, ...]  # one sentence or a sentence pair
    num_labels: int  # 1 means regression (STS-B)
    eval_splits: tuple[str, ...]  # GLUE validation split names; the first one selects the best epoch
    primary_metric: str  # the number the LoRA paper's Table 2 reports
    secondary_metrics: tuple[str, ...] = ()
    label: str = ""  # as the papers print it: SST-2, STS-B
    train_rows: int = 0  # rows of the GLUE training split

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1


GLUE_TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("cola", ("sentence",), 2, ("validation",), "matthews_corr", ("accuracy",), "CoLA", 8551),
        Task("sst2", ("sentence",), 2, ("validation",), "accuracy", (), "SST-2", 67349),
        Task("mrpc", ("sentence1", "sentence2"), 2, ("validation",), "accuracy", ("f1",), "MRPC", 3668),
        Task("qqp", ("question1", "question2"), 2, ("validation",), "accuracy", ("f1",), "QQP", 363846),
        Task("stsb", ("sentence1", "sentence2"), 1, ("validation",), "pearson", ("spearman",), "STS-B", 5749),
        Task("mnli", ("premise", "hypothesis"), 3, ("validation_matched", "validation_mismatched"), "accuracy", (),
             "MNLI", 392702),
        Task("qnli", ("question", "sentence"), 2, ("validation",), "accuracy", (), "QNLI", 104743),
        Task("rte", ("sentence1", "sentence2"), 2, ("validation",), "accuracy", (), "RTE", 2490),
    ]
}

TASK_ORDER = ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")  # the LoRA paper's Table 2 columns
TASK_LABELS = {name: GLUE_TASKS[name].label for name in TASK_ORDER}

# Tasks the paper initialised from the MNLI-trained LoRA weights (Appendix D).
MNLI_INIT_TASKS = ("mrpc", "rte", "stsb")


def get_task(name: str) -> Task:
    """Look up a GLUE task by name (case-insensitive); unknown names raise a LoraNbError listing the valid ones."""
    key = str(name).lower().replace("-", "")
    if key not in GLUE_TASKS:
        raise LoraNbError(f"Unknown GLUE task {name!r}. Choose one of: {', '.join(GLUE_TASKS)}.")
    return GLUE_TASKS[key]
