"""hardway.course.carry
~~~~~~~~~~~~~~~~~~~~

The labs are one thread: the learner's ``my_pivot_root`` of lab 01 is called by their
``my_spawn`` of lab 02, which their ``my_run`` of lab 04 calls, and so on to the
capstone. :func:`carry` brings a lab's functions into a later lab's notebook::

    my_rootfs, my_pivot_root = carry("01", "my_rootfs", "my_pivot_root")
    my_rootfs: yours, from 01-rootfs.ipynb
    my_pivot_root: the course's (01-rootfs.ipynb does not define it yet)

It reads the learner's own notebook of that lab, next to the one running (``labs/`` for
a learner, ``solutions/`` in CI, the learner's folder for the grader), and takes the
definitions from it — imports, ``def``, ``class``, and assignments that call nothing
(``MS_PRIVATE = 1 << 18``) — never the cells that *do* something. A function that still
raises ``NotImplementedError`` (the lab's stub) is replaced by the course's version,
declared in the lab's check module as ``REFERENCE``, so a learner stuck on lab 01 can
still do lab 04: ``carry(..., course=True)`` asks for the course's version outright.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path

from hardway.errors import NotebookError

__all__ = ["carry", "definitions", "is_stub"]

#: the nodes carried from a notebook: what defines names without running the learner's work
_DEFINING = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
#: what an assignment may not contain to be carried (it would run something)
_ACTING = (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr, ast.Lambda)


def carry(lab: str, *names: str, course: bool = False, folder: Path | None = None) -> object:
    """The named functions of lab ``lab`` ("01"): the learner's, or the course's in their place.

    Prints one line per name saying whose it is. One name gives the object, several a
    tuple in the same order.
    """
    if not names:
        raise TypeError("name at least one function to carry, e.g. carry('01', 'my_rootfs')")
    reference = _reference(lab)
    unknown = [name for name in names if name not in reference]
    if unknown:
        raise NotebookError(
            f"lab {lab} has no {', '.join(unknown)} to carry",
            fix=f"carry one of: {', '.join(sorted(reference))}",
        )
    found: dict[str, object] = {}
    source = ""
    if not course:
        notebook = _notebook(lab, folder or Path.cwd())
        if notebook is not None:
            source = notebook.name
            found = _load(lab, notebook)
    picked = []
    for name in names:
        theirs = found.get(name)
        if theirs is not None and not is_stub(theirs):
            print(f"{name}: yours, from {source}")
            picked.append(theirs)
            continue
        why = (
            "as you asked"
            if course
            else f"{source or f'lab {lab}'} does not define it yet"
            if theirs is None
            else f"yours in {source} still raises NotImplementedError"
        )
        print(f"{name}: the course's ({why})")
        picked.append(reference[name])
    return picked[0] if len(picked) == 1 else tuple(picked)


def _reference(lab: str) -> dict[str, Callable[..., object]]:
    """The course's version of every function lab ``lab`` hands on (its check module's)."""
    try:
        module = importlib.import_module(f"hardway.course.checks.lab{lab}")
    except ModuleNotFoundError:
        raise NotebookError(
            f"there is no lab {lab!r} in this course", fix="use '01' … '10'"
        ) from None
    return dict(getattr(module, "REFERENCE", {}))


def _notebook(lab: str, folder: Path) -> Path | None:
    """The lab's notebook next to the running one (``01-rootfs.ipynb``), if there is one."""
    found = sorted(folder.glob(f"{lab}-*.ipynb"))
    return found[0] if found else None


def _load(lab: str, notebook: Path) -> dict[str, object]:
    """Execute the notebook's definitions in a module of their own; the names it defines."""
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError) as exc:
        raise NotebookError(
            f"{notebook.name} cannot be read ({exc})",
            fix="open it in JupyterLab and save it again, or use carry(..., course=True)",
        ) from None
    module = types.ModuleType(f"hardway_carried_lab{lab}")
    sys.modules[module.__name__] = module  # dataclasses and pickling look modules up here
    for cell in cells:  # a broken cell defines nothing, and the others still count
        if cell.get("cell_type") != "code":
            continue
        text = "".join(cell.get("source", []))
        tree = definitions(text)
        if not tree.body:
            continue
        # a carried lab carries from earlier ones in turn: its lines are not shown
        with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
            exec(compile(tree, f"<{notebook.name}>", "exec"), module.__dict__)
    return {k: v for k, v in module.__dict__.items() if not k.startswith("__")}


def definitions(source: str) -> ast.Module:
    """The top-level statements of a cell that define names without doing the work.

    IPython's ``%magic`` and ``!shell`` lines are dropped first; a cell that does not
    parse defines nothing. An assignment whose value calls ``carry(...)`` is kept: it is
    how a lab hands an earlier lab's functions on.

    >>> tree = definitions("import os\\nX = 1 << 18\\nos.mkdir('/x')\\ndef f():\\n    pass\\n")
    >>> [type(node).__name__ for node in tree.body]
    ['Import', 'Assign', 'FunctionDef']
    """
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])
    kept = [node for node in tree.body if _defines(node)]
    return ast.Module(body=kept, type_ignores=[])


def _defines(node: ast.stmt) -> bool:
    if isinstance(node, _DEFINING):
        return True
    if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
        if _calls_carry(node.value):
            return True
        return not any(isinstance(inner, _ACTING) for inner in ast.walk(node.value))
    return False


def _calls_carry(value: ast.expr) -> bool:
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    return (isinstance(func, ast.Name) and func.id == "carry") or (
        isinstance(func, ast.Attribute) and func.attr == "carry"
    )


def is_stub(func: object) -> bool:
    """Whether ``func`` is still the lab's stub: its body only raises NotImplementedError.

    >>> def todo():
    ...     # YOUR CODE HERE
    ...     raise NotImplementedError()
    >>> is_stub(todo), is_stub(is_stub)
    (True, False)
    """
    code = getattr(func, "__code__", None)
    if code is None:
        return False
    names, consts = set(code.co_names), set(code.co_consts) - {None}
    docstring = getattr(func, "__doc__", None)
    return names == {"NotImplementedError"} and consts <= {docstring}
