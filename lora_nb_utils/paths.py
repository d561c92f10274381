"""Where the source checkout is: the folder that holds notebooks/ (and params/) beside lora_nb_utils."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root(start=None) -> Path:
    """The repository root: the nearest folder holding notebooks/ above `start` (a grid file, a run folder), else
    the checkout this package runs from."""
    if start is not None:
        for parent in Path(start).resolve().parents:
            if (parent / "notebooks").is_dir():
                return parent
    return PACKAGE_DIR.parent
