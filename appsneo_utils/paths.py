"""Paths anchored at the repository root, never the current directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "data"
MINI_DIR = DATA_DIR / "mini"
NOTEBOOKS_DIR = ROOT / "notebooks"
# Rendered figures, one folder per notebook; APPSNEO_FIGURES moves them (the tests use a temporary one).
FIGURES_DIR = Path(os.environ.get("APPSNEO_FIGURES", ROOT / "figures"))
# Executed notebooks, checkpoints and results; APPSNEO_RUNS moves them (e.g. to a Drive folder on Colab).
RUNS_DIR = Path(os.environ.get("APPSNEO_RUNS", ROOT / "runs"))
# Third-party test data beside the project (never copied into it).
SHARED_DATA = ROOT.parent / "shared" / "data"


def figures_dir(notebook: str) -> Path:
    """`figures/<notebook>/`, created on demand."""
    path = FIGURES_DIR / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, obj) -> Path:
    """Write `obj` as JSON through a temporary file and a rename: a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)
    return path


def runs_dir(*parts: str) -> Path:
    """`runs/<parts...>/`, created on demand."""
    path = RUNS_DIR.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
