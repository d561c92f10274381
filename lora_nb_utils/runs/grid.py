"""Grid files: expand a declared grid into planned runs, validated against the notebook's `parameters` cell.

A grid file (YAML):

    description: what this grid reproduces
    notebook: notebooks/01_roberta_base.ipynb   # relative to the grid file's repository root; a block may name its own
    output_root: runs/table2                    # one run directory per run under here
    blocks:                                     # each block: params_file + params + matrix (cartesian product)
      - params_file: params/roberta-base/{task}.yaml   # optional, formatted with the run's values
        params: {model: roberta-base}                   # fixed values
        matrix: {seed: [1, 2, 3, 4, 5], task: [mnli, sst2]}   # first key varies slowest
      - notebook: notebooks/02_roberta_large.ipynb     # this block's runs execute this notebook
        params_file: params/roberta-large/{task}.yaml
        matrix: {seed: [1, 2, 3, 4, 5], task: [mnli, sst2]}

Precedence: RunConfig's defaults (config.py; for a notebook's own extra parameters, the notebook's defaults) <
params_file < params < matrix. A run's parameters are validated by name against its notebook's `parameters` cell. `init_from: mnli` means "the MNLI run of this grid
with the same model, method, rank and seed": the runner resolves it and runs MNLI first.

A block may also sweep, select and confirm (selection.py): the sweep's values run on one selection seed, the value
with the best score on the held-out part (split holdout or sora; never the reported test part) is chosen per
group (the block's matrix point without its seed), and the block's other seeds then run at the chosen value:

      - params_file: params/minilm/{method}.yaml
        params: {split: holdout, epochs: 10, early_stopping_patience: 3}
        matrix: {task: [rte, mrpc], method: [lora], seed: [1, 2, 3]}
        sweep: {learning_rate: [5.0e-4, 1.0e-3, 2.0e-3]}     # cartesian product when several keys
        select: {seed: 1, tolerance: 0.0, prefer: fewest_params}   # all optional (seed: the matrix's first)
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import PARAMETER_NAMES, RUN_DEFAULTS, RunConfig, check_params, params_hash
from ..errors import LoraNbError, LoraNbWarning
from ..methods import METHODS
from ..paths import repo_root
from .selection import PREFER, Selection
from ..glue.tasks import get_task

NAME_KEYS = ("task", "method", "lora_r", "seed")  # always in the run name; matrix keys are added
SHORT = {"lora_r": "r", "learning_rate": "lr", "lora_alpha": "alpha", "lora_targets": "targets",
         "max_train_samples": "n"}
MUST_STATE = ("max_train_samples", "max_eval_samples")  # how much data: always explicit in a grid
MNLI_LINK = ("model", "method", "lora_r", "lora_alpha", "lora_targets", "seed", "weights")
_TYPE_CHECKS = {"str": str, "int": int, "float": (int, float), "bool": bool}


@dataclass
class PlannedRun:
    name: str  # <model>/<key=value,...>, e.g. "roberta-base/task=rte,method=lora,r=8,seed=1"; unique in a plan
    params: dict  # full parameters (defaults filled in), output_dir set
    run_dir: Path
    notebook: Path | None = None  # the notebook this run executes
    depends_on: str | None = None  # name of the MNLI run it initialises from
    source: str = ""  # grid file and block, for error messages
    stage: str = ""  # "sweep" (a candidate value on the selection seed) | "confirm" (the chosen value) | ""
    group: str = ""  # the selection group of a sweep / confirm run

    @property
    def hash(self) -> str:
        return params_hash(self.params)

    @property
    def hashes(self) -> tuple[str, ...]:
        """The hashes a finished run of these parameters may carry: today's, and the one written before init_from
        counted relative to the run (config.params_hash); is_finished accepts either."""
        return tuple(dict.fromkeys((self.hash, params_hash(self.params, legacy=True))))


@dataclass
class Plan:
    grid_file: Path
    notebook: Path | None  # the grid's notebook: the runs of blocks without their own
    output_root: Path
    description: str
    runs: list[PlannedRun] = field(default_factory=list)
    selections: list[Selection] = field(default_factory=list)  # sweep blocks: one per group, resolved by the runner


def notebook_parameters(notebook: Path) -> dict:
    """The notebook's `parameters` cell: name -> {default, inferred_type_name, help} (papermill's inspector)."""
    import papermill
    if not notebook.is_file():
        raise LoraNbError(f"Notebook {str(notebook)!r} does not exist. Fix: set the grid's 'notebook' to a notebook "
                          "path relative to the repository root, e.g. notebooks/01_roberta_base.ipynb.")
    params = papermill.inspect_notebook(str(notebook))
    if not params:
        raise LoraNbError(f"{notebook}: no cell tagged 'parameters'.")
    return params


def _default_value(spec: dict):
    return yaml.safe_load(spec["default"]) if spec["default"] != "None" else None


@dataclass
class NotebookSpec:
    """A notebook a grid runs: its path, its `parameters` cell and the defaults its runs start from (RunConfig's,
    the one set; a parameter of the notebook's own, e.g. an analysis notebook's, takes the notebook's default)."""
    path: Path
    params: dict
    defaults: dict

    @classmethod
    def read(cls, path: Path) -> "NotebookSpec":
        params = notebook_parameters(path)
        return cls(path, params, {k: RUN_DEFAULTS[k] if k in RUN_DEFAULTS else _default_value(v)
                                  for k, v in params.items()})


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
    method = METHODS.get(values.get("method"))
    if method and "lora_r" not in method.rank_parameters:  # ft; AdaLoRA's ranks are adalora_init_r / target_r
        keys.remove("lora_r")
    parts = [f"{SHORT.get(k, k)}={values[k]}" for k in keys if k in values and k != "model"]
    return ",".join(parts)


def load_plan(grid_file) -> Plan:
    """Read and expand a grid file; every run is validated before anything executes."""
    grid_file = Path(grid_file)
    spec = _read_grid(grid_file)
    unknown = set(spec) - {"description", "notebook", "output_root", "blocks"}
    if unknown or "blocks" not in spec:
        raise LoraNbError(f"{grid_file}: a grid needs 'blocks' and a 'notebook' (the grid's, or one per block; "
                          f"optional: description, output_root); unknown keys: {sorted(unknown)}.")
    if not isinstance(spec["blocks"], list) or not spec["blocks"]:
        raise LoraNbError(f"{grid_file}: 'blocks' must be a non-empty list of blocks (params_file, params, matrix); "
                          f"got {spec['blocks']!r}, which declares no runs.")
    root = repo_root(grid_file)
    notebooks: dict[str, NotebookSpec] = {}
    plan = Plan(grid_file, root / spec["notebook"] if spec.get("notebook") else None,
                root / spec.get("output_root", f"runs/{grid_file.stem}"), spec.get("description", ""))
    for b, block in enumerate(spec["blocks"]):
        source = f"{grid_file} (block {b + 1})"
        if not isinstance(block, dict) or not isinstance(block.get("matrix") or {}, dict):
            raise LoraNbError(f"{source}: a block maps params_file / params / matrix to values, and its matrix maps "
                              f"parameter names to lists; got {block!r}.")
        bad = set(block) - {"notebook", "params_file", "params", "matrix", "sweep", "select"}
        if bad:
            raise LoraNbError(f"{source}: unknown block keys {sorted(bad)} (use notebook, params_file, params, matrix, "
                              "sweep, select).")
        name = block.get("notebook") or spec.get("notebook")
        if not isinstance(name, str) or not name:
            raise LoraNbError(f"{source}: no notebook to run. Fix: set the grid's 'notebook' or the block's, a path "
                              "relative to the repository root, e.g. notebooks/00_minilm_cpu.ipynb.")
        nb = notebooks[name] = notebooks.get(name) or NotebookSpec.read(root / name)
        matrix = block.get("matrix") or {}
        for key, values in matrix.items():
            if not isinstance(values, list) or not values:
                raise LoraNbError(f"{source}: matrix entry {key!r} must be a non-empty list.")
        points = [dict(zip(matrix, combo)) for combo in itertools.product(*matrix.values())]
        if "sweep" in block:
            _add_sweep_block(plan, block, points, matrix, nb, root, source)
        else:
            plan.runs += [_point_run(plan, block, point, matrix, nb, root, source) for point in points]
    _check_unique(plan)
    _link_mnli(plan)
    return plan


def _read_grid(grid_file: Path) -> dict:
    """The grid file's YAML mapping, or one error naming the file and what is wrong with it."""
    if not grid_file.is_file():
        raise LoraNbError(f"Grid file {str(grid_file)!r} does not exist or is not a file. Fix: give a grid YAML file, "
                          "e.g. params/grids/demo.yaml.")
    try:
        spec = yaml.safe_load(grid_file.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        raise LoraNbError(f"{grid_file}: not valid YAML{f' (line {where.line + 1})' if where else ''}: "
                          f"{getattr(e, 'problem', None) or e}. Fix the file's syntax.") from None
    if not isinstance(spec, dict):
        raise LoraNbError(f"{grid_file}: a grid is a YAML mapping with 'notebook' and 'blocks', not a "
                          f"{type(spec).__name__}.")
    return spec



def _point_params(block: dict, point: dict, nb: NotebookSpec, root: Path, source: str) -> dict:
    """The full parameters of one matrix point: defaults < params_file < params < point, validated."""
    defaults, nb_params = nb.defaults, nb.params
    params, from_file = dict(defaults), {}
    if block.get("params_file"):
        pfile = root / block["params_file"].format(**{**defaults, **(block.get("params") or {}), **point})
        if not pfile.is_file():
            raise LoraNbError(f"{source}: params file {str(pfile)!r} does not exist.")
        from_file = yaml.safe_load(pfile.read_text()) or {}
        validate_against_notebook(from_file, nb_params, str(pfile))
        params.update(from_file)
    for part in (block.get("params") or {}, point):
        validate_against_notebook(part, nb_params, source)
        params.update(part)
    stated = {**from_file, **(block.get("params") or {}), **point}
    unstated = [k for k in MUST_STATE if k in nb_params and k not in stated]
    if unstated:  # how much data a run sees is part of what the grid reproduces: never left implicit
        raise LoraNbError(f"{source}: state {', '.join(unstated)} in the grid or its params file "
                          "(0 = the whole split).")
    try:
        get_task(params["task"])
        RunConfig.from_params({k: v for k, v in params.items() if k in PARAMETER_NAMES}, source)  # value ranges
    except LoraNbError as e:
        raise LoraNbError(f"{source}: {e}") from None
    return params


def _planned(plan: Plan, params: dict, name_keys, source: str, notebook: Path, **fields) -> PlannedRun:
    name = f'{str(params["model"]).replace("/", "--")}/{run_name(params, name_keys)}'
    run_dir = plan.output_root / name
    params = {**params, "output_dir": str(run_dir), "progress": "log"}
    return PlannedRun(name, params, run_dir, notebook=notebook, source=source, **fields)


def _point_run(plan, block, point, matrix, nb: NotebookSpec, root, source) -> PlannedRun:
    return _planned(plan, _point_params(block, point, nb, root, source), matrix, source, nb.path)


def _add_sweep_block(plan, block, points, matrix, nb: NotebookSpec, root, source) -> None:
    """Candidates (every sweep value on the selection seed) and one Selection per group; the group's confirm runs
    (its other seeds) are made by Selection.resolve once every candidate has finished."""
    sweep, select = block.get("sweep") or {}, block.get("select") or {}
    if not isinstance(sweep, dict) or not sweep:
        raise LoraNbError(f"{source}: 'sweep' must map parameter names to lists of values to try.")
    for key, values in sweep.items():
        if key in ("seed", *matrix) or not isinstance(values, list) or not values:
            raise LoraNbError(f"{source}: sweep entry {key!r} must be a non-empty list of a parameter that is not "
                              "the seed and not in the matrix.")
        for value in values:
            validate_against_notebook({key: value}, nb.params, f"{source} sweep")
    bad = set(select) - {"seed", "tolerance", "prefer"}
    if bad or select.get("prefer", "") not in PREFER:
        raise LoraNbError(f"{source}: select takes seed, tolerance (score points x100) and prefer "
                          f"({' or '.join(repr(p) for p in PREFER if p)}); got {select}.")
    groups: dict[str, Selection] = {}
    for point in points:
        params = _point_params(block, point, nb, root, source)
        if params.get("init_from") == "mnli":
            raise LoraNbError(f"{source}: init_from: mnli is not supported in a sweep block; sweep the MNLI runs in "
                              "a grid of their own and pass their adapter file as init_from.")
        if params.get("split") not in ("holdout", "sora"):
            raise LoraNbError(f"{source}: a sweep needs split 'holdout' or 'sora', so that the value is chosen on a "
                              f"held-out part and never on the reported set (split is {params.get('split')!r}).")
        seed_list = matrix.get("seed") or [params["seed"]]
        selection_seed = select.get("seed", seed_list[0])
        base = {**params, "seed": selection_seed}
        group_run = _planned(plan, {k: v for k, v in base.items() if k != "seed"}, matrix, source, nb.path)
        group = group_run.name
        if group not in groups:
            candidates = [_planned(plan, {**base, **dict(zip(sweep, combo))}, [*matrix, *sweep], source, nb.path,
                                   stage="sweep", group=group)
                          for combo in itertools.product(*sweep.values())]
            groups[group] = Selection(group, source, list(sweep), candidates, selection_seed,
                                      float(select.get("tolerance", 0.0)), select.get("prefer", ""),
                                      name_keys=[*matrix, *sweep])
            plan.runs += candidates
        if params["seed"] != selection_seed:
            groups[group].confirm_params.append(params)
    plan.selections += groups.values()


def resolve_selections(plan: Plan) -> list[PlannedRun]:
    """Choose the value of every group whose sweep runs have all finished and add its confirm runs (the other
    seeds at the chosen value) to the plan. Returns the runs added by this call."""
    known, added = {r.run_dir for r in plan.runs}, []
    for sel in plan.selections:
        if not sel.resolve():
            continue
        for params in sel.confirm_params:
            run = _planned(plan, {**params, **sel.chosen}, sel.name_keys, sel.source, sel.candidates[0].notebook,
                           stage="confirm", group=sel.group)
            if run.run_dir not in known:
                known.add(run.run_dir)
                added.append(run)
    plan.runs += added
    return added


def _check_unique(plan: Plan) -> None:
    seen, repeats = {}, []
    for run in plan.runs:
        if run.run_dir in seen and seen[run.run_dir].hash != run.hash:
            raise LoraNbError(f"{run.source}: two runs share the folder {run.run_dir} with different parameters; "
                              "put the differing parameter in the matrix so it is part of the run name.")
        if run.run_dir in seen:
            repeats.append(f"{run.name} ({run.source.rsplit(' (', 1)[-1][:-1]}, first in "
                           f"{seen[run.run_dir].source.rsplit(' (', 1)[-1][:-1]})")
        seen.setdefault(run.run_dir, run)
    if repeats:  # one line per grid
        more = f" and {len(repeats) - 3} more" if len(repeats) > 3 else ""
        warnings.warn(f"{plan.grid_file}: {len(repeats)} run(s) declared again with identical parameters, each run "
                      f"once: {'; '.join(repeats[:3])}{more}. Intended when blocks overlap (an ablation that "
                      "includes the main setting); otherwise remove the repeated declaration.",
                      LoraNbWarning, stacklevel=3)
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
