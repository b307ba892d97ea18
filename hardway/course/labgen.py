"""hardway.course.labgen
~~~~~~~~~~~~~~~~~~~~~

Labs are generated from solutions, so the two can never drift apart: ``solutions/`` is the
only exercise source anyone edits, and ``labs/`` is what :func:`generate` makes of it.
The markers are nbgrader's, so ``nbgrader generate_assignment`` remains a drop-in
fallback:

* in a code cell, the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION``
  become ``# YOUR CODE HERE`` and ``raise NotImplementedError()``, indented like the
  BEGIN marker; in a markdown cell they become ``YOUR ANSWER HERE``;
* ``### BEGIN HIDDEN TESTS`` … ``### END HIDDEN TESTS`` regions disappear;
* cells tagged ``solution-only`` disappear;
* outputs, execution counts, timing metadata and widget state are cleared.

Markers must be whole lines, closed in the cell that opens them, and never nested;
anything else is a :class:`~hardway.errors.MarkerError` that names the file, the cell
and the line. The output is byte-for-byte deterministic: generating twice gives the
same file, which is what ``python -m hardway labs --check`` relies on.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hardway.errors import MarkerError, NotebookError
from hardway.sys.state import project_root

if TYPE_CHECKING:
    from nbformat import NotebookNode

# nbformat is imported where it is used: it takes a second to import, and every command of
# ``python -m hardway`` imports this module to register ``labs``.

__all__ = [
    "generate",
    "generate_all",
    "lab_notebook",
    "lab_text",
    "learner_lines",
    "orphan_labs",
    "register",
    "stale_labs",
    "strip_cell",
]

#: a lab or solution notebook: ``NN-topic.ipynb``
NOTEBOOK_GLOB = "[0-9][0-9]-*.ipynb"
SOLUTION_ONLY_TAG = "solution-only"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = ("YOUR ANSWER HERE",)


@dataclass(frozen=True)
class _Region:
    """One kind of marked region: what opens it, what closes it, what replaces it."""

    name: str
    begin: str
    end: str
    keep_stub: bool


_REGIONS = (
    _Region("SOLUTION", "### BEGIN SOLUTION", "### END SOLUTION", keep_stub=True),
    _Region("HIDDEN TESTS", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS", keep_stub=False),
)
_INDENT = re.compile(r"[ \t]*")


def strip_cell(source: str, cell_type: str, *, where: str = "cell") -> str:
    """The learner's version of one cell's source.

    ``where`` names the cell in error messages ("solutions/05-layers.ipynb, cell 7 …").

    >>> solution = ["def f():", "    ### BEGIN SOLUTION", "    return 1", "    ### END SOLUTION"]
    >>> print(strip_cell("\\n".join(solution), "code"))
    def f():
        # YOUR CODE HERE
        raise NotImplementedError()
    """
    out: list[str] = []
    open_region: _Region | None = None
    opened_at = 0
    for number, line in enumerate(source.split("\n"), start=1):
        marker = line.strip()
        begins = next((r for r in _REGIONS if marker == r.begin), None)
        ends = next((r for r in _REGIONS if marker == r.end), None)
        if begins:
            if open_region:
                raise _marker_error(
                    where,
                    number,
                    f"{begins.begin!r} inside the {open_region.name} region opened on "
                    f"line {opened_at}: markers cannot be nested",
                )
            open_region, opened_at = begins, number
            if begins.keep_stub:
                indent = _INDENT.match(line)[0] if cell_type == "code" else ""
                stub = CODE_STUB if cell_type == "code" else MARKDOWN_STUB
                out.extend(indent + text for text in stub)
        elif ends:
            if open_region is not ends:
                opened = f"the open region is {open_region.name}" if open_region else "none is open"
                raise _marker_error(
                    where, number, f"{ends.end!r} without its {ends.begin!r} ({opened})"
                )
            open_region = None
        elif open_region is None:
            out.append(line)
    if open_region:
        raise _marker_error(
            where, opened_at, f"{open_region.begin!r} is never closed by {open_region.end!r}"
        )
    return "\n".join(out)


def lab_notebook(solution: NotebookNode, *, name: str = "notebook") -> NotebookNode:
    """The lab made from a solution notebook (a new object; ``solution`` is untouched)."""
    import nbformat

    lab = nbformat.from_dict(solution)
    lab.metadata.pop("widgets", None)
    lab.nbformat, lab.nbformat_minor = 4, max(5, lab.get("nbformat_minor", 5))
    cells = []
    for index, cell in enumerate(lab.cells):
        cell_id = cell.get("id") or _stable_id(name, index)
        if SOLUTION_ONLY_TAG in cell.metadata.get("tags", []):
            continue
        where = f"{name}, cell {index + 1} (id {cell_id})"
        cell.source = strip_cell(cell.source, cell.cell_type, where=where)
        cell.id = cell_id
        for noisy in ("execution", "collapsed", "scrolled"):
            cell.metadata.pop(noisy, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    lab.cells = cells
    return lab


def lab_text(src: Path) -> str:
    """The exact text :func:`generate` writes for the solution ``src``."""
    import nbformat

    src = Path(src)
    try:
        solution = nbformat.read(src, as_version=4)
    except (OSError, ValueError) as exc:
        raise NotebookError(
            f"cannot read {src}: {exc}", fix="open it in JupyterLab to repair it"
        ) from exc
    text = nbformat.writes(lab_notebook(solution, name=_display(src)))
    return text if text.endswith("\n") else text + "\n"  # exactly what nbformat.write adds


def generate(src: Path, dst: Path) -> None:
    """Write the lab for solution ``src`` to ``dst``."""
    text = lab_text(src)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_text(text, encoding="utf-8")


def generate_all(solutions_dir: Path, labs_dir: Path) -> list[Path]:
    """Generate every lab; remove labs whose solution is gone. Return the labs written."""
    solutions_dir, labs_dir = Path(solutions_dir), Path(labs_dir)
    texts = {src.name: lab_text(src) for src in _solutions(solutions_dir)}  # all or nothing
    for orphan in orphan_labs(solutions_dir, labs_dir):
        orphan.unlink()
    written = []
    for name, text in texts.items():
        dst = labs_dir / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.is_file() or dst.read_text(encoding="utf-8") != text:
            dst.write_text(text, encoding="utf-8")
        written.append(dst)
    return written


def orphan_labs(solutions_dir: Path, labs_dir: Path) -> list[Path]:
    """Labs with no solution of the same name (left behind by a rename or a removal)."""
    names = {src.name for src in _solutions(Path(solutions_dir))}
    return [lab for lab in sorted(Path(labs_dir).glob(NOTEBOOK_GLOB)) if lab.name not in names]


def stale_labs(solutions_dir: Path, labs_dir: Path) -> list[str]:
    """Every lab that differs from what :func:`generate` would write, with the reason.

    Missing labs and orphan labs count as stale too; an empty list means all is in step.
    """
    solutions_dir, labs_dir = Path(solutions_dir), Path(labs_dir)
    stale = []
    for src in _solutions(solutions_dir):
        dst = labs_dir / src.name
        if not dst.is_file():
            stale.append(f"{_display(dst)} (missing)")
        elif dst.read_text(encoding="utf-8") != lab_text(src):
            stale.append(f"{_display(dst)} (out of date with {_display(src)})")
    stale += [
        f"{_display(lab)} (no solution of that name)"
        for lab in orphan_labs(solutions_dir, labs_dir)
    ]
    return stale


def learner_lines(src: Path) -> int:
    """How many lines the learner writes in a solution: code lines inside the solution
    regions of code cells, blank lines and comments left out (the labs issue's measure).
    """
    import json

    count = 0
    for cell in json.loads(Path(src).read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        inside = False
        for line in "".join(cell["source"]).splitlines():
            marker = line.strip()
            if marker in (_REGIONS[0].begin, _REGIONS[0].end):
                inside = marker == _REGIONS[0].begin
            elif inside and marker and not marker.startswith("#"):
                count += 1
    return count


def _solutions(solutions_dir: Path) -> list[Path]:
    return sorted(solutions_dir.glob(NOTEBOOK_GLOB))


def _stable_id(name: str, index: int) -> str:
    """A cell id for old notebooks that have none: the same on every run."""
    return hashlib.sha256(f"{Path(name).name}:{index}".encode()).hexdigest()[:8]


def _marker_error(where: str, line: int, problem: str) -> MarkerError:
    return MarkerError(
        f"{where}, line {line}: {problem}",
        fix="close every '### BEGIN …' with its '### END …' in the same cell, without nesting",
    )


def _display(path: Path) -> str:
    """``path`` relative to the course checkout when it is inside it (shorter messages)."""
    root = project_root()
    try:
        return str(Path(path).resolve().relative_to(root)) if root else str(path)
    except ValueError:
        return str(path)


# --- command line -----------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``labs [--check] [--solutions DIR] [--labs DIR]``."""
    root = project_root() or Path.cwd()
    parser = subparsers.add_parser(
        "labs",
        help="generate labs/ from solutions/ (or --check that they are in step)",
        description="Generate labs/NN-*.ipynb from solutions/NN-*.ipynb: solution regions "
        "become stubs, hidden tests and solution-only cells go, outputs are cleared.",
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    parser.add_argument(
        "--count",
        action="store_true",
        help="change nothing; print each lab's learner-written lines and points",
    )
    parser.add_argument("--solutions", type=Path, default=root / "solutions", metavar="DIR")
    parser.add_argument("--labs", type=Path, default=root / "labs", metavar="DIR")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if not args.solutions.is_dir():
        raise NotebookError(f"no solutions folder at {args.solutions}", fix="pass --solutions DIR")
    if args.count:
        _print_counts(args.solutions)
        return 0
    if args.check:
        stale = stale_labs(args.solutions, args.labs)
        for entry in stale:
            print(f"stale: {entry}")
        if stale:
            print("labs/ is out of step with solutions/.\n  To fix: make labs")
            return 1
        print(f"labs: {len(_solutions(args.solutions))} lab(s) in step with solutions")
        return 0
    for orphan in orphan_labs(args.solutions, args.labs):
        print(f"removed {_display(orphan)} (no solution of that name)")
    for dst in generate_all(args.solutions, args.labs):
        print(f"wrote {_display(dst)}")
    return 0


def _print_counts(solutions_dir: Path) -> None:
    """Per lab: the lines a learner writes, the points, and the points of checks that run
    the learner's code against something real (the kernel, the registry, a tool)."""
    from hardway.course.grading import exercises

    print(f"{'lab':<24} {'lines':>5} {'points':>6} {'real':>5}")
    for src in _solutions(solutions_dir):
        found = exercises(src.name[:2])
        points = sum(e.points for e in found)
        real = sum(e.points for e in found if e.against)
        print(f"{src.name:<24} {learner_lines(src):>5} {points:>6} {real:>5}")
