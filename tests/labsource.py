"""A lab's code as source text, for the tests that feed a check realistic wrong answers
made by editing the solution: the imports cell, the carry cell (labs that build on an
earlier one) and every exercise cell (``ex-…``), run into one namespace as a learner's
kernel would have them (tests/labcells.py runs the cells without editing them)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from hardway.course import labgen
from hardway.course.grading import run_check

ROOT = Path(__file__).resolve().parent.parent


def lab_source(folder: str, lab: str) -> str:
    """The source of the ``imports``, ``carry`` and ``ex-…`` cells of ``folder/LAB-*.ipynb``.

    ``"labs"`` is made from the solution as ``python -m hardway labs`` makes it (the VM's
    copy of the checkout has no ``labs/``; tests/test_labgen.py keeps the two in sync)."""
    path = next((ROOT / "solutions").glob(f"{lab}-*.ipynb"))
    cells = json.loads(path.read_text())["cells"]
    if folder == "labs":
        cells = labgen.lab_notebook(nbformat.reads(path.read_text(), as_version=4)).cells
    kept = [
        "".join(c["source"])  # a string in a NotebookNode, a list of lines in JSON
        for c in cells
        if c["cell_type"] == "code"
        and (c.get("id") in ("imports", "carry") or c.get("id", "").startswith("ex-"))
    ]
    return "\n\n".join(kept)


def learner(source: str) -> dict:
    """The namespace after running ``source`` as a notebook cell."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(source, "<ipython-input-lab>", "exec"), namespace)
    return namespace


def solution_with(lab: str, *edits: tuple[str, str]) -> dict:
    """The solution of ``lab`` with each (old, new) edit made: one realistic mistake."""
    source = lab_source("solutions", lab)
    for old, new in edits:
        assert old in source, old
        source = source.replace(old, new)
    return learner(source)


def failed(exercise: str, namespace: dict, *words: str) -> str:
    """Run the check; it must fail with a message holding each of ``words``."""
    result = run_check(exercise, namespace)
    assert result.status == "failed", result.line
    for word in words:
        assert word in result.message, (word, result.line)
    return result.message
