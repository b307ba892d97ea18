"""hardway.state
~~~~~~~~~~~~~

Where the helper keeps what it creates at run time (registry storage, configs, pid
files, logs): a git-ignored ``.state/`` directory in the course checkout, so that
``make clean`` removes everything and nothing lands in a learner's home directory.

``HARDWAY_STATE_DIR`` overrides it (tests use a temporary directory); an installed
copy of the package outside a checkout falls back to ``$XDG_STATE_HOME/hardway``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_root", "state_dir"]


def project_root() -> Path | None:
    """The course checkout this package lives in, or ``None`` when installed elsewhere."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").is_file() and (here / "hardway").is_dir():
        return here
    return None


def state_dir() -> Path:
    """The directory for run-time state (created on first use)."""
    if env := os.environ.get("HARDWAY_STATE_DIR"):
        path = Path(env)
    elif (root := project_root()) is not None:
        path = root / ".state"
    else:
        xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        path = Path(xdg) / "hardway"
    path.mkdir(parents=True, exist_ok=True)
    return path
