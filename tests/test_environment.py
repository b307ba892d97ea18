"""The three places that pin the course environment agree with each other.

pyproject.toml is the source; environment.yml (conda users) and requirements.lock
(everything `make setup` installs) must carry the same versions, or learners on conda
and learners on the .venv would run different code.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: conda-forge names that differ from PyPI's
CONDA_NAMES = {"python-isal": "isal"}
PIN = re.compile(r"^([A-Za-z0-9_.-]+)\s*(==|=)\s*([A-Za-z0-9_.+-]+)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs.extend(extra)
    pins = {}
    for spec in specs:
        match = PIN.match(spec.replace(" ", ""))
        assert match and match[2] == "==", f"pyproject.toml: {spec!r} is not pinned with =="
        pins[canonical(match[1])] = match[3]
    return pins


def environment_yml_pins() -> tuple[dict[str, str], str]:
    pins, python = {}, ""
    for line in (ROOT / "environment.yml").read_text().splitlines():
        item = line.strip()
        if not item.startswith("- ") or line.startswith("      "):
            continue  # comments, keys, and the pip: sub-list
        match = PIN.match(item[2:].split("#")[0].strip())
        if match is None:
            continue
        if match[1] == "python":
            python = match[3]
        else:
            pins[CONDA_NAMES.get(match[1], canonical(match[1]))] = match[3]
    return pins, python


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if match := PIN.match(line.strip()):
            pins[canonical(match[1])] = match[3]
    return pins


def test_environment_yml_matches_pyproject() -> None:
    conda, python = environment_yml_pins()
    assert conda == pyproject_pins()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={python}", "environment.yml's python and requires-python differ"


def test_lock_contains_every_direct_pin() -> None:
    lock = lock_pins()
    wrong = {n: (v, lock.get(n)) for n, v in pyproject_pins().items() if lock.get(n) != v}
    assert not wrong, (
        f"requirements.lock disagrees with pyproject.toml (name: (pyproject, lock)): {wrong}"
    )


def test_installed_venv_matches_the_lock() -> None:
    """What `make setup` installed is what the lock says (catches a stale .venv)."""
    out = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {canonical(m[1]): m[3] for line in out.splitlines() if (m := PIN.match(line))}
    lock = lock_pins()
    differ = {n: (v, installed.get(n)) for n, v in lock.items() if installed.get(n) != v}
    assert not differ, f"the .venv differs from requirements.lock (name: (lock, venv)): {differ}"
