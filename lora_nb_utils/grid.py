"""Grid files: expand a declared grid into planned runs, validated against the notebook's `parameters` cell.

A grid file (YAML):

    description: what this grid reproduces
    notebook: notebooks/01_roberta_base.ipynb   # relative to the grid file's repository root
    output_root: runs/table2                    # one run directory per run under here
    blocks:                                     # each block: params_file + params + matrix (cartesian product)
      - params_file: params/roberta-base/{task}.yaml   # optional, formatted with the run's values
        params: {model: roberta-base}                   # fixed values
        matrix: {seed: [1, 2, 3, 4, 5], task: [mnli, sst2]}   # first key varies slowest

Precedence: notebook defaults < params_file < params < matrix. `init_from: mnli` means "the MNLI run of this grid
with the same model, method, rank and seed": the runner resolves it and runs MNLI first.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import check_params, params_hash
from .errors import LoraNbError
from .tasks import get_task

NAME_KEYS = ("task", "method", "lora_r", "seed")  # always in the run name; matrix keys are added
SHORT = {"lora_r": "r", "learning_rate": "lr", "lora_alpha": "alpha", "lora_targets": "targets",
         "max_train_samples": "n"}
MUST_STATE = ("max_train_samples", "max_eval_samples")  # how much data: always explicit in a grid
MNLI_LINK = ("model", "method", "lora_r", "lora_alpha", "lora_targets", "seed", "weights")
_TYPE_CHECKS = {"str": str, "int": int, "float": (int, float), "bool": bool}


@dataclass
class PlannedRun:
    name: str  # <model>/<key=value,...>, e.g. "roberta-base/task=rte,method=lora,r=8,seed=1"; unique in a plan
    params: dict  # full parameters (notebook defaults filled in), output_dir set
    run_dir: Path
    depends_on: str | None = None  # name of the MNLI run it initialises from
    source: str = ""  # grid file and block, for error messages

    @property
    def hash(self) -> str:
        return params_hash(self.params)


@dataclass
class Plan:
    grid_file: Path
    notebook: Path
    output_root: Path
    description: str
    runs: list[PlannedRun] = field(default_factory=list)


def notebook_parameters(notebook: Path) -> dict:
    """The notebook's `parameters` cell: name -> {default, inferred_type_name, help} (papermill's inspector)."""
    import papermill
    if not notebook.is_file():
        raise LoraNbError(f"Notebook {str(notebook)!r} does not exist.")
    params = papermill.inspect_notebook(str(notebook))
    if not params:
        raise LoraNbError(f"{notebook}: no cell tagged 'parameters'.")
    return params


def _default_value(spec: dict):
    return yaml.safe_load(spec["default"]) if spec["default"] != "None" else None


def validate_against_notebook(params: dict, nb_params: dict, source: str) -> None:
    """Unknown names and wrong types fail here, naming the source (file and block) and the key."""
    for key, value in params.items():
        if key not in nb_params:
            raise LoraNbError(f"{source}: {key!r} is not a parameter of the notebook "
                              f"(known: {', '.join(nb_params)}).")
        type_name = nb_params[key]["inferred_type_name"]
        allowed = [t.strip() for t in type_name.split("|")]
        if value is None and "None" in allowed:
            continue
        ok = any(t in _TYPE_CHECKS and isinstance(value, _TYPE_CHECKS[t]) and not
                 (t in ("int", "float") and isinstance(value, bool)) for t in allowed)
        if not ok:
            raise LoraNbError(f"{source}: {key!r} must be {type_name}, got {value!r} ({type(value).__name__}). "
                              "Write floats with a dot and exponent sign, e.g. 5.0e-4.")
    check_params(params, source)


def run_name(values: dict, matrix_keys) -> str:
    keys = list(dict.fromkeys([*NAME_KEYS, *matrix_keys]))
    if values.get("method") in ("ft", "adalora"):  # no lora_r (AdaLoRA's ranks are adalora_init_r / target_r)
        keys.remove("lora_r")
    parts = [f"{SHORT.get(k, k)}={values[k]}" for k in keys if k in values and k != "model"]
    return ",".join(parts)


def load_plan(grid_file) -> Plan:
    """Read and expand a grid file; every run is validated before anything executes."""
    grid_file = Path(grid_file)
    if not grid_file.is_file():
        raise LoraNbError(f"Grid file {str(grid_file)!r} does not exist.")
    spec = yaml.safe_load(grid_file.read_text()) or {}
    unknown = set(spec) - {"description", "notebook", "output_root", "blocks"}
    if unknown or "blocks" not in spec or "notebook" not in spec:
        raise LoraNbError(f"{grid_file}: a grid needs 'notebook' and 'blocks' (optional: description, output_root); "
                          f"unknown keys: {sorted(unknown)}.")
    root = _repo_root(grid_file)
    notebook = root / spec["notebook"]
    nb_params = notebook_parameters(notebook)
    defaults = {k: _default_value(v) for k, v in nb_params.items()}
    plan = Plan(grid_file, notebook, root / spec.get("output_root", f"runs/{grid_file.stem}"),
                spec.get("description", ""))
    for b, block in enumerate(spec["blocks"]):
        source = f"{grid_file} (block {b + 1})"
        bad = set(block) - {"params_file", "params", "matrix"}
        if bad:
            raise LoraNbError(f"{source}: unknown block keys {sorted(bad)} (use params_file, params, matrix).")
        matrix = block.get("matrix") or {}
        for key, values in matrix.items():
            if not isinstance(values, list) or not values:
                raise LoraNbError(f"{source}: matrix entry {key!r} must be a non-empty list.")
        for combo in itertools.product(*matrix.values()):
            point = dict(zip(matrix, combo))
            params, from_file = dict(defaults), {}
            if block.get("params_file"):
                pfile = root / block["params_file"].format(**{**defaults, **(block.get("params") or {}), **point})
                if not pfile.is_file():
                    raise LoraNbError(f"{source}: params file {str(pfile)!r} does not exist.")
                from_file = yaml.safe_load(pfile.read_text()) or {}
                validate_against_notebook(from_file, nb_params, str(pfile))
                params.update(from_file)
            for part, src in ((block.get("params") or {}, source), (point, source)):
                validate_against_notebook(part, nb_params, src)
                params.update(part)
            stated = {**from_file, **(block.get("params") or {}), **point}
            unstated = [k for k in MUST_STATE if k in nb_params and k not in stated]
            if unstated:  # the notebook defaults are a 64-row smoke run: never inherit them silently
                raise LoraNbError(f"{source}: state {', '.join(unstated)} in the grid or its params file "
                                  "(0 = the whole split); the notebook's defaults are a smoke run.")
            try:
                get_task(params["task"])
            except LoraNbError as e:
                raise LoraNbError(f"{source}: {e}") from None
            name = f'{str(params["model"]).replace("/", "--")}/{run_name(params, matrix)}'
            run_dir = plan.output_root / name
            params["output_dir"] = str(run_dir)
            params["progress"] = "log"
            plan.runs.append(PlannedRun(name, params, run_dir, source=source))
    _check_unique(plan)
    _link_mnli(plan)
    return plan


def _repo_root(path: Path) -> Path:
    """The folder holding notebooks/ above a grid file (grids live in params/ or params/grids/)."""
    for parent in path.resolve().parents:
        if (parent / "notebooks").is_dir():
            return parent
    return path.resolve().parent


def _check_unique(plan: Plan) -> None:
    seen = {}
    for run in plan.runs:
        if run.run_dir in seen and seen[run.run_dir] != run.hash:
            raise LoraNbError(f"{run.source}: two runs share the folder {run.run_dir} with different parameters; "
                              "put the differing parameter in the matrix so it is part of the run name.")
        seen[run.run_dir] = run.hash
    unique = {}
    for run in plan.runs:
        unique.setdefault(run.run_dir, run)
    plan.runs = list(unique.values())


def _link_mnli(plan: Plan) -> None:
    """Resolve `init_from: mnli` to the MNLI run with the same model, method, rank and seed; MNLI runs go first."""
    mnli = {tuple(r.params.get(k) for k in MNLI_LINK): r for r in plan.runs if r.params["task"] == "mnli"}
    for run in plan.runs:
        if run.params.get("init_from") != "mnli":
            continue
        key = tuple(run.params.get(k) for k in MNLI_LINK)
        if key not in mnli:
            raise LoraNbError(f"{run.source}: run {run.name} initialises from MNLI (init_from: mnli) but the grid "
                              f"has no MNLI run with the same {', '.join(MNLI_LINK)}. Add task mnli to the grid or "
                              "set init_from to an adapter file / run directory.")
        run.depends_on = mnli[key].name
        run.params["init_from"] = str(mnli[key].run_dir)
    plan.runs.sort(key=lambda r: r.params["task"] != "mnli")  # stable: MNLI first, order otherwise kept
