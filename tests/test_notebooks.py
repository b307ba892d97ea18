"""Notebooks stay clean in git and follow the course's skeleton.

nbval re-executes notebooks/ and solutions/ and compares their stored outputs, so those
outputs must be small, deterministic and free of anything that belongs to one machine
(absolute paths, secrets, widget state). labs/ carry no outputs at all.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
TAUGHT = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))
LABS = sorted((ROOT / "labs").glob("*.ipynb"))
MACHINE_SPECIFIC = re.compile(r"(/work/|/root/|/home/|/tmp/|token=[0-9a-f]{8,}|/\.venv/)")
NAME = re.compile(r"^\d\d-[a-z0-9-]+\.ipynb$")


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def test_there_are_notebooks() -> None:
    assert TAUGHT, "no notebooks found under notebooks/ or solutions/"


@pytest.mark.parametrize("path", TAUGHT + LABS, ids=ids(TAUGHT + LABS))
def test_notebook_is_valid_and_clean(path: Path) -> None:
    assert NAME.match(path.name), f"{path.name}: name notebooks NN-topic.ipynb"
    raw = json.loads(path.read_text())  # nbformat.read would fill in missing ids, quietly
    cell_ids = [cell.get("id") for cell in raw["cells"]]
    assert None not in cell_ids, f"cell {cell_ids.index(None)} has no id (nbformat 4.5)"
    assert len(set(cell_ids)) == len(cell_ids), "two cells share an id"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
        "kernelspec must be python3 (nbval and the grader start that kernel)"
    )
    assert "widgets" not in nb.metadata, "widget state is stored: strip it (nbstripout)"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "start with a # title"
    assert "Next" in nb.cells[-1].source, "end with a 'Next:' pointer"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.outputs:
            assert cell.execution_count is not None, f"cell {index}: outputs but no count (nbval)"
        text = json.dumps(cell.outputs)
        assert not MACHINE_SPECIFIC.search(text), (
            f"cell {index}: machine-specific output: " + (MACHINE_SPECIFIC.search(text)[0])
        )


@pytest.mark.parametrize("path", LABS, ids=ids(LABS))
def test_labs_have_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"cell {index} has output"


@pytest.mark.parametrize("path", TAUGHT, ids=ids(TAUGHT))
def test_taught_notebooks_were_executed(path: Path) -> None:
    """Every code cell has a count: nbval skips comparing unexecuted cells silently."""
    nb = nbformat.read(path, as_version=4)
    unrun = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count is None
    ]
    assert not unrun, f"cells {unrun} were never executed; re-run the notebook before committing"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")))
def test_teaching_cells_are_short(path: Path) -> None:
    """Prose first: a code cell of the teaching notebooks fits on a screen (7 lines)."""
    nb = nbformat.read(path, as_version=4)
    long = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and len(c.source.splitlines()) > 7
    ]
    assert not long, f"cells {long} are longer than 7 lines: split them and explain each part"


@pytest.mark.parametrize(
    ("folder", "flags"),
    [
        ("notebooks", ["--keep-output", "--keep-count", "--keep-id"]),
        ("solutions", ["--keep-output", "--keep-count", "--keep-id"]),
        ("labs", ["--keep-id"]),
    ],
)
def test_nbstripout_hook_would_change_nothing(folder: str, flags: list[str]) -> None:
    """The committed notebooks are already what the pre-commit hook would leave."""
    paths = [str(p) for p in sorted((ROOT / folder).glob("*.ipynb"))]
    if not paths:
        pytest.skip(f"no notebooks in {folder}/ yet")
    result = subprocess.run(
        [str(ROOT / ".venv/bin/nbstripout"), "--verify", *flags, *paths],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        f"nbstripout would strip: {result.stdout.strip()} — "
        "execute with tools/execute_notebook.py, which commits only what nbval needs"
    )
