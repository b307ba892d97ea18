"""hardway.course.autograde
~~~~~~~~~~~~~~~~~~~~~~~~

Headless grading: ``python -m hardway grade labs/00-warmup.ipynb --json out.json``.

A learner's notebook is read into memory (the file is never written) and executed in a
fresh ``python3`` kernel by nbclient, with errors allowed and a per-cell timeout that
interrupts the kernel, so neither a stub, nor an exception, nor an endless loop in one
exercise stops the others from being graded. After the learner's cells, the grader runs
one extra cell per exercise of the lab; each calls :func:`hardway.course.grading.run_check` on
the kernel's globals and prints its result as one JSON line behind a marker that holds
a fresh random nonce, so nothing the learner's code prints can pass for a result.

The scores come out as a table, as JSON in GitHub Classroom's autograding result shape
and, for a folder of submissions, as CSV and a learner × lab table: the grades and their
forms are :mod:`hardway.course.grades`.

The grader is for practice feedback, not for exams: the learner's code shares the
kernel with the checks and could tamper with them.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hardway.course.grades import (
    NotebookGrade,
    classroom_document,
    format_room,
    format_summary,
    format_table,
    write_csv,
)
from hardway.course.grading import Exercise, Result, exercises
from hardway.errors import NotebookError

if TYPE_CHECKING:
    from nbformat import NotebookNode

# nbformat and nbclient are imported where they are used: they take a second to import,
# and every command of ``python -m hardway`` imports this module to register ``grade``.

__all__ = ["find_submissions", "grade_notebook", "lab_of", "register"]

DEFAULT_TIMEOUT = 60
#: the limit of a check that runs the learner's code for real: such checks bound it
#: themselves (in a child, up to 300 s) and say so in the learner's terms, so the grader
#: only stops one that is itself stuck; a pure check runs in the kernel and keeps ``timeout``
REAL_CHECK_TIMEOUT = 330
_TIMEOUT_ENAME = "HardwayGraderTimeout"
_CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](\d\d\.\d+)["']""")
#: a line of the learner's notebook that only asks for feedback: ``check("NN.M")`` or
#: ``summary("NN")``. The grader's own cells run the same checks once more, so in a graded
#: run the line is skipped: a hanging answer then costs its time limit once, not three times.
_FEEDBACK_LINE = re.compile(
    r"""^(?:check\(\s*["']\d\d\.\d+["']\s*\)|summary\(\s*["']\d\d["']\s*\))[ \t]*$""",
    re.MULTILINE,
)
_LAB_IN_NAME = re.compile(r"^(\d\d)-")
_MAX_RUNS = 4  # one run, plus one more for each cell that kills the kernel (at most 3)
#: kernel stderr lines that say nothing about why it died
_NOISE = re.compile(r"running over TCP without encryption|^\s*$")


# --- grading one notebook -------------------------------------------------------------


def lab_of(path: Path, nb: NotebookNode | None = None) -> str:
    """The lab a notebook belongs to: ``NN`` from its name ``NN-…``, else from its checks.

    >>> lab_of(Path("labs/05-layers.ipynb"))
    '05'
    """
    if match := _LAB_IN_NAME.match(Path(path).name):
        return match[1]
    if nb is not None:
        labs = {
            m[1][:2]
            for c in nb.cells
            if c.cell_type == "code"
            for m in _CHECK_CALL.finditer(c.source)
        }
        if len(labs) == 1:
            return labs.pop()
    raise NotebookError(
        f"cannot tell which lab {path} is: its name does not start with NN- "
        "and its check(...) cells do not name exactly one lab",
        fix="pass --lab NN, or rename the notebook NN-topic.ipynb",
    )


def _read(path: Path) -> NotebookNode:
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise NotebookError(f"no notebook at {path}", fix="check the path") from None
    except (OSError, ValueError) as exc:
        raise NotebookError(
            f"{path} is not a readable notebook: {exc}",
            fix="open it in JupyterLab; if it will not open, restore it from git",
        ) from exc


def grade_notebook(
    path: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    lab: str | None = None,
    learner: str | None = None,
    only: Sequence[str] = (),
    kernel_name: str = "python3",
) -> NotebookGrade:
    """Execute a copy of the notebook at ``path`` in a fresh kernel and grade every exercise.

    :param timeout: seconds any one cell may run before the kernel is interrupted
    :param lab: (optional) the lab id, when the file name does not say it
    :param only: (optional) grade just these exercise ids
    """
    path = Path(path)
    nb = _read(path)
    lab = lab or lab_of(path, nb)
    try:
        todo = exercises(lab)
    except ModuleNotFoundError:
        raise NotebookError(
            f"lab {lab} has no checks in this course (for {path})", fix="pass --lab NN"
        ) from None
    except Exception as exc:
        raise NotebookError(
            f"the checks of lab {lab} could not load: {type(exc).__name__}: {exc}",
            fix=f"this is a bug in hardway/course/checks/lab{lab}.py: please report it",
        ) from exc
    if only:
        unknown = set(only) - {e.id for e in todo}
        if unknown:
            raise NotebookError(
                f"lab {lab} has no exercise {', '.join(sorted(unknown))}",
                fix=f"--only takes one of {', '.join(e.id for e in todo)}",
            )
        todo = [e for e in todo if e.id in set(only)]
    learner_cells = len(nb.cells)
    check_cells = _check_cells(nb)
    prefix = f"@@hardway-grade-{secrets.token_hex(16)}@@ "
    from nbformat.v4 import new_code_cell

    real = frozenset(e.id for e in todo if e.against)
    for cell in nb.cells:  # the learner's cells: the grader's are appended below
        if cell.cell_type == "code":
            cell.source = without_feedback(cell.source)
    for ex in todo:
        nb.cells.append(new_code_cell(_grader_source(ex.id, prefix)))

    # A cell that kills the kernel (os._exit, a segfault) is blanked and the notebook
    # run again, so that it costs only its own exercise.
    killers: list[int] = []
    for _attempt in range(_MAX_RUNS):
        work = copy.deepcopy(nb)
        for index in killers:
            work.cells[index].source = ""
        run = _execute(work, path, timeout=timeout, kernel_name=kernel_name, real=real)
        if run.died_in is None or run.died_in in killers:
            break
        killers.append(run.died_in)

    timed_out = {i for i, reply in run.replies.items() if reply.get("ename") == _TIMEOUT_ENAME}
    results, durations = [], {}
    for offset, ex in enumerate(todo):
        index = learner_cells + offset
        result = _parse(work.cells[index], ex, prefix, run.error)
        if index in timed_out:
            limit = _limit(work.cells[index].source, timeout, real)
            result = _failed(ex, f"timed out after {limit:g} s")
        elif index in killers:
            result = _failed(ex, "the kernel died while this exercise was checked")
        elif (cell := _cell_in_stretch(ex.id, check_cells, timed_out, learner_cells)) is not None:
            result = _failed(ex, f"timed out after {timeout:g} s (cell {cell + 1})")
        elif (
            cell := _cell_in_stretch(ex.id, check_cells, set(killers), learner_cells)
        ) is not None:
            result = _failed(ex, f"the kernel died in cell {cell + 1}")
        results.append(result)
        durations[ex.id] = run.took.get(index, 0.0)
    return NotebookGrade(
        notebook=path,
        lab=lab,
        results=tuple(results),
        learner=learner,
        durations=durations,
        check_cells={k: v + 1 for k, v in check_cells.items()},
        error=run.error if run.died_in is not None or not run.replies else None,
    )


def without_feedback(source: str) -> str:
    """A learner's cell as the grader runs it: each line that is only ``check("NN.M")`` or
    ``summary("NN")`` becomes ``pass`` (the grader's own cells run those checks)."""
    return _FEEDBACK_LINE.sub("pass  # the grader checks it", source)


def _failed(ex: Exercise, message: str) -> Result:
    return Result(ex.id, "failed", 0, ex.points, message)


@dataclass
class _Run:
    """What one execution of a notebook left behind."""

    replies: dict[int, dict] = field(default_factory=dict)  # cell index → execute_reply content
    took: dict[int, float] = field(default_factory=dict)  # cell index → seconds
    died_in: int | None = None  # the cell that was running when the kernel died
    error: str | None = None


def _execute(
    nb: NotebookNode, path: Path, *, timeout: float, kernel_name: str, real: frozenset[str]
) -> _Run:
    """Run every cell of ``nb`` (in place) in a fresh kernel; never raises."""
    from nbclient import NotebookClient  # here: slow to import, and checks do not need it

    run, started = _Run(), {}

    def on_execute(cell: NotebookNode, cell_index: int) -> None:
        started[cell_index] = time.monotonic()

    def on_executed(cell: NotebookNode, cell_index: int, execute_reply: dict | None) -> None:
        run.took[cell_index] = time.monotonic() - started.pop(cell_index)
        run.replies[cell_index] = (execute_reply or {}).get("content", {})

    def limit(cell: NotebookNode) -> float:
        return _limit(cell.source, timeout, real)

    client = NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=timeout,
        timeout_func=limit,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={
            "ename": _TIMEOUT_ENAME,
            "evalue": "timed out: the cell ran past its time limit",
            "traceback": [],
        },
        store_widget_state=False,
        record_timing=False,
        resources={"metadata": {"path": str(path.resolve().parent)}},
        on_cell_execute=on_execute,
        on_cell_executed=on_executed,
    )
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as kernel_log:
        try:
            client.execute(stderr=kernel_log)
        except Exception as exc:  # a dead kernel, a kernel that will not start, …
            kernel_log.seek(0)
            said = [
                ln for ln in kernel_log.read().splitlines() if ln.strip() and not _NOISE.search(ln)
            ]
            run.died_in = max(started, default=None)
            where = f" in cell {run.died_in + 1}" if run.died_in is not None else ""
            run.error = f"the notebook could not be run{where}: {type(exc).__name__}: {exc}"
            run.error += f" (the kernel said: {' | '.join(said[-3:])})" if said else ""
    return run


_GRADER_CELL = "import hardway.course.grading as _hardway_grading"
_GRADER_EMIT = re.compile(r"_hardway_grading\.emit\('(\d\d\.\d+)'")


def _limit(source: str, timeout: float, real: frozenset[str]) -> float:
    """A cell's time limit: longer for the grader's cell of a check in ``real``."""
    found = _GRADER_EMIT.search(source)
    return max(timeout, REAL_CHECK_TIMEOUT) if found and found[1] in real else timeout


def _grader_source(exercise_id: str, prefix: str) -> str:
    return f"{_GRADER_CELL}\n_hardway_grading.emit({exercise_id!r}, globals(), {prefix!r})"


def _check_cells(nb: NotebookNode) -> dict[str, int]:
    """Exercise id → index of the first cell that calls ``check("NN.M")`` for it."""
    found: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for match in _CHECK_CALL.finditer(cell.source):
                found.setdefault(match[1], index)
    return found


def _cell_in_stretch(
    exercise_id: str, check_cells: dict[str, int], cells: set[int], learner_cells: int
) -> int | None:
    """The first of ``cells`` in this exercise's stretch of the learner's notebook.

    An exercise's stretch runs from the cell after the previous check cell to its own.
    """
    end = check_cells.get(exercise_id)
    if end is None:
        return None
    start = max((i for i in check_cells.values() if i < end), default=-1) + 1
    hits = sorted(i for i in cells if start <= i <= end and i < learner_cells)
    return hits[0] if hits else None


def _parse(cell: NotebookNode, ex: Exercise, prefix: str, error: str | None) -> Result:
    """The Result that the grader cell printed behind ``prefix``."""
    for output in cell.get("outputs", []):
        if output.get("output_type") != "stream" or output.get("name") != "stdout":
            continue
        for line in output.get("text", "").splitlines():
            if not line.startswith(prefix):
                continue
            try:
                data = json.loads(line[len(prefix) :])
                data.pop("line", None)
                result = Result(**data)
            except (ValueError, TypeError):
                continue
            if result.exercise == ex.id:
                return result
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            why = f"{output.get('ename')}: {output.get('evalue', '')}".strip(": ")
            return Result(ex.id, "error", 0, ex.points, f"the check could not run ({why})")
    why = error or "the check printed no result"
    return Result(ex.id, "error", 0, ex.points, why)


# --- folders of submissions -------------------------------------------------------------


def find_submissions(directory: Path) -> list[tuple[str, Path]]:
    """``(learner, notebook)`` pairs in a folder of submissions.

    A notebook directly in ``directory`` is one learner's (named after the file); a
    sub-folder is one learner's (named after the folder), with all its notebooks.
    """
    found = []
    for child in sorted(Path(directory).iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_file() and child.suffix == ".ipynb":
            found.append((child.stem, child))
        elif child.is_dir():
            for nb in sorted(child.rglob("*.ipynb")):
                if not any(part.startswith(".") for part in nb.relative_to(child).parts):
                    found.append((child.name, nb))
    return found


def _targets(paths: Iterable[Path]) -> list[tuple[str | None, Path]]:
    targets: list[tuple[str | None, Path]] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = find_submissions(path)
            if not found:
                raise NotebookError(f"no notebooks in {path}", fix="check the folder")
            targets.extend(found)
        elif path.exists():
            targets.append((None, path))
        else:
            raise NotebookError(f"no notebook or folder at {path}", fix="check the path")
    return targets


# --- command line -----------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``grade NOTEBOOK_OR_DIR... [--json FILE] [--csv FILE] [--timeout S] …``."""
    parser = subparsers.add_parser(
        "grade",
        help="grade lab notebooks (or folders of submissions) in a fresh kernel",
        description="Execute a copy of each notebook in a fresh kernel, run every check "
        "of its lab, print a table and optionally write JSON (GitHub Classroom's "
        "autograding format) and CSV. A folder holds one notebook or one sub-folder "
        "per learner.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="NOTEBOOK_OR_DIR")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write one row per notebook")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds a cell may run before it is interrupted (default {DEFAULT_TIMEOUT})",
    )
    parser.add_argument("--lab", metavar="NN", help="the lab, when file names do not say it")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NN.M", help="grade only this exercise"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only the summaries, not each notebook's table"
    )
    parser.add_argument(
        "--fail-under",
        type=float,
        metavar="N",
        help="exit 1 when the total points are below N",
    )
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    grades = []
    for learner, path in _targets(args.paths):
        grade = grade_notebook(
            path, timeout=args.timeout, lab=args.lab, learner=learner, only=args.only
        )
        if not args.quiet:
            print(format_table(grade), flush=True)
        grades.append(grade)
    if len(grades) > 1:
        print()
        print(format_summary(grades))
    if len({g.learner for g in grades}) > 1:
        print()
        print(format_room(grades))
    if args.json:
        text = json.dumps(classroom_document(grades), indent=2, ensure_ascii=False)
        args.json.write_text(text + "\n", encoding="utf-8")
    if args.csv:
        write_csv(grades, args.csv)
    total = sum(g.points for g in grades)
    if args.fail_under is not None and total < args.fail_under:
        untold = sorted({e for g in grades for e in g.not_graded})
        why = f" ({', '.join(untold)} could not be graded here)" if untold else ""
        print(f"{total} points is below --fail-under {args.fail_under:g}{why}", file=sys.stderr)
        return 1
    return 0
