"""A lab's cells as a learner's kernel would have run them: the imports cell and every
exercise cell (``ex-…``) of a notebook, executed into one namespace, for the tests that
feed the checks the solution, the blank lab and realistic wrong answers."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import nbformat

from hardway.course.checks.child import in_child
from hardway.course.grading import exercises, run_check

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


def fails(exercise: str, base: dict[str, object], source: str, *words: str) -> str:
    """Check ``source`` run on top of ``base``: it must fail, with each of ``words`` in the
    message (the mistake named); returns the message."""
    result = run_check(exercise, with_answer(base, source))
    assert result.status == "failed", result
    for word in words:
        assert word in result.message, result.message
    return result.message


def statuses(lab: str, namespace: dict[str, object]) -> tuple[list[str], int]:
    """The status of every exercise of ``lab`` against ``namespace``, and the points."""
    results = [run_check(e.id, namespace) for e in exercises(lab)]
    return [r.status for r in results], sum(r.points for r in results)


def statuses_as_nobody(lab: str, namespace: dict[str, object]) -> list[str]:
    """The statuses of ``lab``'s exercises when the checks run as uid 65534 (in a child)."""

    def unprivileged() -> list[str]:
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        os.chdir("/")
        return statuses(lab, namespace)[0]

    return in_child(unprivileged, timeout=120, what="the checks as nobody")
