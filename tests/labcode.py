"""A lab's code as a learner's kernel would have it, for the tests that feed the labs'
checks the solution, the blank lab and realistic wrong answers.

Two ways to get a namespace, because the labs' notebooks are of two kinds:

* labs 01–04 name their cells (``imports``, ``carry``, ``ex-…``): :func:`lab_namespace`
  runs those cells as the kernel would, :func:`solution_with` the same with edits made;
* every lab: :func:`namespace` (a notebook) and :func:`defined` (a source) keep only what
  the cells define, as :func:`hardway.course.carry.carry` takes a notebook's functions —
  no cell that acts (a try-it, a demo) runs.

A wrong answer is the solution with small edits (:func:`solution_with`,
:func:`edited_solution`, :func:`edited`) or a learner's cell run over a namespace
(:func:`wrong`); :func:`failed` and :func:`fails` run a check on it, which must fail with
a message naming the mistake.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import textwrap
from pathlib import Path

import nbformat

from hardway.course import labgen
from hardway.course.carry import definitions
from hardway.course.checks.child import in_child
from hardway.course.grading import exercises, run_check

ROOT = Path(__file__).resolve().parents[1]
#: the file name a learner's cell gets, as IPython compiles it (the grader treats it as theirs)
CELL_FILE = "<ipython-input-1-learner>"


# -- a lab's code -------------------------------------------------------------------------------


def _code_cells(folder: str, lab: str) -> list[tuple[str, str]]:
    """``(id, source)`` of every code cell of ``folder/LAB-*.ipynb``, in order.

    ``"labs"`` is made from the solution as ``python -m hardway labs`` makes it (the VM's
    copy of the checkout has no ``labs/``; tests/test_labgen.py keeps the two in sync)."""
    (path,) = (ROOT / "solutions" if folder == "labs" else ROOT / folder).glob(f"{lab}-*.ipynb")
    notebook = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    if folder == "labs":
        notebook = labgen.lab_notebook(notebook)
    return [(c.get("id", ""), c.source) for c in notebook.cells if c.cell_type == "code"]


def solution_source(lab: str, folder: str = "solutions") -> str:
    """Every code cell of ``solutions/LAB-*.ipynb`` (or the lab's), joined in order."""
    return "\n\n".join(source for _, source in _code_cells(folder, lab))


def lab_source(folder: str, lab: str) -> str:
    """The ``imports``, ``carry`` and ``ex-…`` cells of ``folder/LAB-*.ipynb``, joined."""
    cells = _code_cells(folder, lab)
    kept = [s for id_, s in cells if id_ in ("imports", "carry") or id_.startswith("ex-")]
    return "\n\n".join(kept)


def solution_cell(lab: str, starts: str) -> str:
    """The source of the solution's code cell that begins with ``starts`` ("def my_pull")."""
    for _, source in _code_cells("solutions", lab):
        if source.startswith(starts):
            return source
    raise LookupError(f"no cell of solutions/{lab} starts with {starts!r}")


def _edit(source: str, edits: tuple[tuple[str, str], ...], what: str, count: int = -1) -> str:
    """``source`` with each ``(old, new)`` made (``count`` times; -1: everywhere); ``old``
    must occur, or the test has gone stale."""
    for old, new in edits:
        assert old in source, f"{old!r} is not in {what}"
        source = source.replace(old, new, count)
    return source


def edited(lab: str, starts: str, *changes: tuple[str, str]) -> str:
    """That cell with each ``(old, new)`` made once — a learner's near miss, as a cell."""
    return _edit(solution_cell(lab, starts), changes, f"the solution's cell {starts!r}", 1)


# -- namespaces ---------------------------------------------------------------------------------


def learner(source: str) -> dict:
    """The namespace after running ``source`` as one notebook cell."""
    found: dict = {"__name__": "__main__"}
    exec(compile(source, CELL_FILE, "exec"), found)
    return found


def lab_namespace(folder: str, lab: str) -> dict:
    """What running the ``imports``, ``carry`` and ``ex-…`` cells of ``folder/LAB`` leaves."""
    return learner(lab_source(folder, lab))


def solution_with(lab: str, *edits: tuple[str, str]) -> dict:
    """:func:`lab_namespace` of the solution with each ``(old, new)`` made: one mistake."""
    return learner(_edit(lab_source("solutions", lab), edits, f"solutions/{lab}"))


def defined(source: str) -> dict:
    """What the definitions in ``source`` define, statement by statement as
    :func:`~hardway.course.carry.carry` runs them (one that fails defines nothing)."""
    tree = definitions(source)
    # a cell's os.environ[...] = ... is the notebook's business, not the test process's
    tree.body = [
        node
        for node in tree.body
        if not (isinstance(node, ast.Assign) and not all(map(_names_only, node.targets)))
    ]
    scope: dict = {"__name__": "learner"}
    with contextlib.redirect_stdout(io.StringIO()):  # carry() says whose each function is
        for node in tree.body:
            with contextlib.suppress(Exception):
                exec(compile(ast.Module(body=[node], type_ignores=[]), CELL_FILE, "exec"), scope)
    return scope


def _names_only(target: ast.expr) -> bool:
    """Does this assignment target bind plain names (``a``, ``a, b = …``), nothing else's?"""
    if isinstance(target, ast.Tuple | ast.List):
        return all(map(_names_only, target.elts))
    if isinstance(target, ast.Starred):
        return _names_only(target.value)
    return isinstance(target, ast.Name)


def namespace(folder: str, lab: str) -> dict:
    """What the definitions of ``folder/LAB-*.ipynb`` define (no cell that acts runs)."""
    return defined(solution_source(lab, folder))


def edited_solution(lab: str, *edits: tuple[str, str], extra: str = "") -> dict:
    """:func:`namespace` of the solution with each ``(old, new)`` made, then ``extra`` (a
    learner's other version of a function) appended: a wrong answer."""
    source = _edit(solution_source(lab), edits, f"solutions/{lab}")
    return defined(source + "\n\n" + extra)


def wrong(base: dict, source: str) -> dict:
    """``base`` with a learner's (wrong) cell ``source`` run over it."""
    found = dict(base)
    exec(compile(textwrap.dedent(source), CELL_FILE, "exec"), found)
    return found


# -- verdicts -----------------------------------------------------------------------------------


def failed(exercise: str, learner_namespace: dict, *words: str) -> str:
    """Run the check on ``learner_namespace``: it must fail, with each of ``words`` in its
    message (the mistake named); returns the message."""
    result = run_check(exercise, learner_namespace)
    assert result.status == "failed", result.line
    for word in words:
        assert word in result.message, (word, result.line)
    return result.message


def fails(exercise: str, base: dict, source: str, *words: str) -> str:
    """:func:`failed` for ``base`` with the learner's cell ``source`` run over it."""
    return failed(exercise, wrong(base, source), *words)


def statuses(lab: str, found: dict) -> tuple[list[str], int]:
    """The status of every exercise of ``lab`` against ``found``, and the points."""
    results = [run_check(e.id, found) for e in exercises(lab)]
    return [r.status for r in results], sum(r.points for r in results)


def statuses_as_nobody(lab: str, found: dict) -> list[str]:
    """The statuses of ``lab``'s exercises when the checks run as uid 65534 (in a child)."""

    def unprivileged() -> list[str]:
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        os.chdir("/")
        return statuses(lab, found)[0]

    return in_child(unprivileged, timeout=120, what="the checks as nobody")


def assert_full_and_blank(lab: str) -> None:
    """The solution passes every exercise of ``lab`` with all its points; the generated
    lab (stubs) is not attempted anywhere, 0 points."""
    solved, blank = namespace("solutions", lab), namespace("labs", lab)
    for ex in exercises(lab):
        result = run_check(ex.id, solved)
        assert (result.status, result.points) == ("passed", ex.points), result.line
        result = run_check(ex.id, blank)
        assert (result.status, result.points) == ("not attempted", 0), result.line
