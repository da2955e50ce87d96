"""Where things live: the repository, the venv, the tools cache and the data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TOOLS_BIN = REPO / ".tools" / "bin"
DATA = Path(os.environ.get("CINEMA_DATA_DIR", REPO / ".data"))


def venv_tool(name: str) -> Path:
    """A console script or binary installed into the venv by a PyPI wheel."""
    path = VENV_BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed in {VENV_BIN}: run scripts/bootstrap")
    return path


def go_tool(name: str) -> Path:
    """A Go binary built by scripts/bootstrap into .tools/bin."""
    path = TOOLS_BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not built in {TOOLS_BIN}: run scripts/bootstrap")
    return path
