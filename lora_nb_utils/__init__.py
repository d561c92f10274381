"""lora_nb_utils: LoRA (and full fine-tuning, AdaLoRA, SoRA) on GLUE, for notebooks, a papermill runner and a report.

The spine, one run end to end: config.py (RunConfig, the one set of parameters) -> experiment.py (data -> model ->
train -> record) -> train.py (the training step and the evaluation loop); cli.py (`lora-nb`), models.py (the model
registry), paper.py (the published numbers), errors.py, paths.py. Folders, by the question they answer:
glue/ (where data loads), methods/ (where LoRA is injected: the method registry), adapters/ (adapter files in and
out), runs/ (where a run is recorded; grids and the runner), report/ (the report), bench/ (speed, memory, cost);
low_rank.py (the paper's Section 7 analyses).
"""
from .adapters import init_from_mnli, load_trainable, save_trainable
from .config import RunConfig
from .errors import LoraNbError
from .experiment import build_model, count_parameters_for, prepare_data, run_experiment, train_and_record
from .methods.lora import count_parameters, inject_lora, mark_trainable, merge_lora
from .glue.metrics import compute_metrics
from .glue.tasks import GLUE_TASKS, get_task

__all__ = ["RunConfig", "LoraNbError", "GLUE_TASKS", "get_task", "compute_metrics", "inject_lora", "mark_trainable",
           "count_parameters", "merge_lora", "save_trainable", "load_trainable", "init_from_mnli", "prepare_data",
           "build_model", "train_and_record", "run_experiment", "count_parameters_for"]
