"""The code of a lab's solution, as a learner's cells would define it, and wrong answers
made from it by small edits — what the tests of the labs' checks feed the checks."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from hardway.course.carry import definitions

ROOT = Path(__file__).resolve().parent.parent


def solution_source(lab: str, folder: str = "solutions") -> str:
    """The code cells of ``solutions/NN-*.ipynb`` (or ``labs/``), joined in order."""
    notebook = next((ROOT / folder).glob(f"{lab}-*.ipynb"))
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return "\n\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")


def namespace(source: str) -> dict[str, object]:
    """What the definitions in ``source`` define, as a learner's kernel would have them."""
    import ast

    tree = definitions(source)
    # a cell's os.environ[...] = ... is the notebook's business, not the test process's
    tree.body = [
        node
        for node in tree.body
        if not (
            isinstance(node, ast.Assign) and not all(isinstance(t, ast.Name) for t in node.targets)
        )
    ]
    scope: dict[str, object] = {"__name__": "learner"}
    for node in tree.body:  # as carry() runs cells: one that fails defines nothing
        module = ast.Module(body=[node], type_ignores=[])
        with contextlib.suppress(Exception):
            exec(compile(module, "<learner>", "exec"), scope)
    return scope


def wrong(source: str, *edits: tuple[str, str], extra: str = "") -> dict[str, object]:
    """The solution with each ``(old, new)`` edit made (``old`` must occur), then ``extra``
    (a learner's other version of a function) appended: a wrong answer."""
    for old, new in edits:
        assert old in source, f"the solution no longer contains {old!r}"
        source = source.replace(old, new)
    return namespace(source + "\n\n" + extra)


def assert_fails_naming(exercise: str, learner: dict[str, object], words: str) -> None:
    """The check of ``exercise`` fails ``learner``'s answer with a message saying ``words``."""
    from hardway.course.grading import run_check

    result = run_check(exercise, learner)
    assert result.status == "failed", result
    assert words in result.message, result.message
