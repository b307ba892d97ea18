"""ruff keeps the Python code of the course in one style (config: pyproject.toml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["hardway", "tests", "tools", "bench", "conftest.py"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(command: list[str]) -> None:
    targets = [t for t in TARGETS if (ROOT / t).exists()]
    result = subprocess.run(
        [str(ROOT / ".venv/bin/ruff"), *command, *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        f"ruff {' '.join(command)}: fix with `make lint`\n{result.stdout}"
    )
