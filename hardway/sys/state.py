"""hardway.sys.state
~~~~~~~~~~~~~~~~~

Where the helper keeps what it creates at run time (registry storage, configs, pid
files, logs): a git-ignored ``.state/`` directory in the course checkout, so that
``make clean`` removes everything and nothing lands in a learner's home directory.

``HARDWAY_STATE_DIR`` overrides it (tests use a temporary directory); an installed
copy of the package outside a checkout falls back to ``$XDG_STATE_HOME/hardway``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "SESSION_VARIABLE",
    "child_pythonpath",
    "package_parent",
    "project_root",
    "session_from_env",
    "state_dir",
]

#: names the run (a test session, a grading run) that made a cgroup, a process or a
#: registry, so that a concurrent run on the same machine never counts or removes it
SESSION_VARIABLE = "HARDWAY_SESSION"


def session_from_env() -> str | None:
    """This process's session (``HARDWAY_SESSION``), or ``None`` outside any."""
    return os.environ.get(SESSION_VARIABLE)


def package_parent() -> Path:
    """The directory that holds the ``hardway`` package (a checkout, or site-packages)."""
    return Path(__file__).resolve().parents[2]


def child_pythonpath() -> str:
    """``PYTHONPATH`` for a fresh Python child that must import ``hardway``: the package's
    parent first, then what this process was given (the child may not have our venv's
    ``.pth`` files, e.g. when it runs as another user)."""
    return os.pathsep.join(p for p in (str(package_parent()), os.environ.get("PYTHONPATH")) if p)


def project_root() -> Path | None:
    """The course checkout this package lives in, or ``None`` when installed elsewhere."""
    here = package_parent()
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
