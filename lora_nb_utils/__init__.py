"""lora_nb_utils: LoRA (and full fine-tuning) on GLUE, for notebooks, a papermill runner and a report.

Where things are: tasks.py (task registry), metrics.py, data.py (GLUE loading, tokenization cache, batches),
models.py (model registry and loading), lora.py (LoRA injection, trainable set, counts, merge),
checkpoint.py (adapter files, MNLI initialisation), train.py (training loop), config.py (run parameters),
rundir.py (run-directory contract), experiment.py (one run, step by step), cli.py (`lora-nb`).
"""
from .adapters.checkpoint import init_from_mnli, load_trainable, save_trainable
from .config import RunConfig
from .errors import LoraNbError
from .experiment import build_model, count_parameters_for, prepare_data, run_experiment, train_and_record
from .methods.lora import count_parameters, inject_lora, mark_trainable, merge_lora
from .glue.metrics import compute_metrics
from .glue.tasks import GLUE_TASKS, get_task

__all__ = ["RunConfig", "LoraNbError", "GLUE_TASKS", "get_task", "compute_metrics", "inject_lora", "mark_trainable",
           "count_parameters", "merge_lora", "save_trainable", "load_trainable", "init_from_mnli", "prepare_data",
           "build_model", "train_and_record", "run_experiment", "count_parameters_for"]
