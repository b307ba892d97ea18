"""A lab's cells as a learner's kernel would have run them: the imports cell and every
exercise cell (``ex-…``) of a notebook, executed into one namespace, for the tests that
feed the checks the solution, the blank lab and realistic wrong answers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def lab_namespace(folder: str, lab: str) -> dict[str, object]:
    """Run the ``imports`` and ``ex-…`` cells of ``folder/LAB-*.ipynb`` ("solutions", "01")."""
    path = next((ROOT / folder).glob(f"{lab}-*.ipynb"))
    namespace: dict[str, object] = {"__name__": "__main__"}
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code" and (cell.id == "imports" or cell.id.startswith("ex-")):
            exec(compile(cell.source, f"<{cell.id}>", "exec"), namespace)
    return namespace


def with_answer(base: dict[str, object], source: str) -> dict[str, object]:
    """``base`` with a learner's cell run on top of it (a wrong answer, as source text)."""
    namespace = dict(base)
    exec(compile(textwrap.dedent(source), "<learner's cell>", "exec"), namespace)
    return namespace
