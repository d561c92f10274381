"""The model notebooks' `parameters` cell, written from RunConfig (the one set of defaults, with its comments as the
help `papermill --help-notebook` prints) and params/smoke.yaml (the few values that make "Run All" a smoke run).

    python -m lora_nb_utils.notebook_parameters   # rewrite the cell in every model notebook (make notebook-parameters)

tests/test_notebook_parameters.py checks that each committed cell is exactly what this writes.
"""
from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path

import yaml

from .config import RUN_DEFAULTS, RunConfig, check_params
from .paths import repo_root

SMOKE_FILE = "params/smoke.yaml"
FIELD = re.compile(r"^    (\w+): (\w+) = .*?(?:  # (.*))?$")
SECTION = re.compile(r"^    # (.*)$")
HEADER = f"""\
# Parameters: papermill overrides them (`papermill --help-notebook` lists them). Written from RunConfig
# (lora_nb_utils/config.py, the one set of defaults) by `make notebook-parameters`: edit there, not here.
# Lines marked "smoke" take {SMOKE_FILE}'s value instead, so that Run All is a seconds-long run on 64 real rows;
# `lora-nb run` passes every parameter, and by hand pass e.g. -p max_train_samples 0 for the whole training set."""


def smoke_values(root: Path | None = None) -> dict:
    path = (root or repo_root()) / SMOKE_FILE
    return check_params(yaml.safe_load(path.read_text()) or {}, str(path))


def python_literal(value) -> str:
    """A default as the cell writes it: strings in double quotes, small floats as 5.0e-4 (papermill reads both)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and value != 0 and abs(value) < 1e-3:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return repr(value)


def parameters_cell(smoke: dict) -> str:
    """The cell: RunConfig's sections, fields and comments in order; a smoke value replaces the default and says
    which default it replaces."""
    lines = [HEADER]
    for line in inspect.getsource(RunConfig).splitlines():
        section, field = SECTION.match(line), FIELD.match(line)
        if field and field.group(1) in RUN_DEFAULTS:
            name, type_name, comment = field.groups()
            value = smoke.get(name, RUN_DEFAULTS[name])
            if name in smoke:
                comment = f"smoke (default {python_literal(RUN_DEFAULTS[name])}); {comment}"
            lines.append(f"{name}: {type_name} = {python_literal(value)}" + (f"  # {comment}" if comment else ""))
        elif section:
            lines.append(f"# {section.group(1)}")
        elif line.startswith("    def "):
            break
    return "\n".join(lines)


def model_notebooks(root: Path | None = None) -> list[Path]:
    """The notebooks that run one training run (they build their RunConfig with config_from_notebook)."""
    return [p for p in sorted(((root or repo_root()) / "notebooks").glob("*.ipynb"))
            if "config_from_notebook(" in p.read_text()]


def parameters_cell_in(nb: dict) -> dict:
    """The cell tagged `parameters` of a notebook's JSON."""
    return next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))


def parameters_cell_of(notebook: Path) -> dict:
    return parameters_cell_in(json.loads(Path(notebook).read_text()))


def write_parameters_cells(root: Path | None = None) -> list[Path]:
    """Rewrite the parameters cell of every model notebook that differs; returns the notebooks written."""
    text, written = parameters_cell(smoke_values(root)), []
    for path in model_notebooks(root):
        nb = json.loads(path.read_text())
        cell = parameters_cell_in(nb)
        if "".join(cell["source"]) != text:
            cell["source"] = text.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_parameters_cells(Path(sys.argv[1]) if len(sys.argv) > 1 else None):
        print(f"wrote {written_path}")
