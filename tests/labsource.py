"""A lab's code as the learner's kernel would have it, for the tests that feed a check
realistic wrong answers: the namespace a notebook's definitions give (a solution, or the
generated lab with its stubs), a wrong cell exec'd over it, or the solution with one
edit made (tests/labcells.py runs the cells without editing them)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import nbformat

from hardway.course import labgen
from hardway.course.carry import definitions
from hardway.course.grading import run_check

ROOT = Path(__file__).resolve().parents[1]
#: the file name a learner's cell gets, as IPython compiles it (the grader treats it as theirs)
CELL_FILE = "<ipython-input-1-learner>"


def namespace(folder: str, lab: str) -> dict:
    """What running the definitions of ``folder/lab-*.ipynb`` leaves in a namespace."""
    (notebook,) = (ROOT / folder).glob(f"{lab}-*.ipynb")
    found: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):  # carry() says whose each function is
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] == "code":
                tree = definitions("".join(cell["source"]))
                with contextlib.suppress(NameError):  # a try-it line such as x.y = 1
                    exec(compile(tree, CELL_FILE, "exec"), found)
    return found


def wrong(base: dict, source: str) -> dict:
    """``base`` with the learner's (wrong) cell ``source`` run over it."""
    found = dict(base)
    exec(compile(source, CELL_FILE, "exec"), found)
    return found


def solution_cell(lab: str, starts: str) -> str:
    """The source of the solution's code cell that begins with ``starts`` ("def my_pull")."""
    (notebook,) = (ROOT / "solutions").glob(f"{lab}-*.ipynb")
    for cell in json.loads(notebook.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith(starts):
            return source
    raise LookupError(f"no cell of solutions/{lab} starts with {starts!r}")


def edited(lab: str, starts: str, *changes: tuple[str, str]) -> str:
    """That cell with each ``(old, new)`` replaced once — a learner's near miss."""
    source = solution_cell(lab, starts)
    for old, new in changes:
        assert old in source, f"{old!r} is not in the solution's cell {starts!r}"
        source = source.replace(old, new, 1)
    return source


def failure(exercise: str, base: dict, source: str) -> str:
    """The message of ``exercise``'s check on ``base`` with ``source`` run over it; the
    check must fail."""
    result = run_check(exercise, wrong(base, source))
    assert result.status == "failed", result.line
    return result.message


def assert_full_and_blank(lab: str) -> None:
    """The solution passes every exercise of ``lab`` with all its points; the generated
    lab (stubs) is not attempted anywhere, 0 points."""
    from hardway.course.grading import exercises, run_check

    solved, blank = namespace("solutions", lab), namespace("labs", lab)
    for ex in exercises(lab):
        result = run_check(ex.id, solved)
        assert (result.status, result.points) == ("passed", ex.points), result.line
        result = run_check(ex.id, blank)
        assert (result.status, result.points) == ("not attempted", 0), result.line


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
