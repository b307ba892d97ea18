"""hardway.course.grades
~~~~~~~~~~~~~~~~~~~~~~

A notebook's grades and the forms they are reported in: a plain-text table per notebook,
one summary line per notebook, a learner × lab table for a room, CSV, and JSON in GitHub
Classroom's autograding result shape::

    {"version": 1, "status": "pass|fail|error", "max_score": 6,
     "tests": [{"name": "00.1 …", "status": "pass", "score": 2, "max_score": 2,
                "message": "✅ 00.1 passed (2/2)", "test_code": "check(\\"00.1\\")",
                "filename": "labs/00-warmup.ipynb", "line_no": 13, "duration": 41}]}

``line_no`` is the number (from 1) of the exercise's check cell and ``duration`` is in
milliseconds. An exercise whose check could not run on this machine, for a reason
outside the learner's code (:class:`~hardway.course.grading.NotGraded`), is *not graded*:
its test has ``"status": "error"`` and ``"score": null`` (never 0), its message says
why, and its points are left out of ``max_score``; the document's status is then
``error``. The table shows it as ``not graded  –/2``. Several notebooks make one wrapper
document instead::

    {"version": 1, "status": …, "score": …, "max_score": …,
     "notebooks": [{"notebook": …, "learner": …, "lab": …, "score": …,
                    "version": 1, "status": …, "max_score": …, "tests": […]}, …]}

:mod:`hardway.course.autograde` produces the grades; this module only shapes them.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardway.course.grading import Exercise, Result, Summary, exercises

__all__ = [
    "NotebookGrade",
    "classroom_document",
    "format_room",
    "format_summary",
    "format_table",
    "lab_exercises",
    "write_csv",
]

_CLASSROOM_STATUS = {
    "passed": "pass",
    "failed": "fail",
    "not attempted": "fail",
    "error": "error",
    "not graded": "error",
}


def lab_exercises(lab: str) -> list[Exercise]:
    """The exercises of ``lab``; none when its checks cannot be loaded (the grades are
    still reported, without titles)."""
    try:
        return exercises(lab)
    except Exception:
        return []


@dataclass(frozen=True)
class NotebookGrade:
    """The grades of one notebook: one :class:`~hardway.course.grading.Result` per exercise."""

    notebook: Path
    lab: str
    results: tuple[Result, ...]
    learner: str | None = None
    #: exercise id → seconds its check took
    durations: dict[str, float] = field(default_factory=dict)
    #: exercise id → number (from 1) of its check cell in the notebook
    check_cells: dict[str, int] = field(default_factory=dict)
    #: why the notebook could not be run to the end, if it could not
    error: str | None = None

    @property
    def summary(self) -> Summary:
        """The results as a :class:`~hardway.course.grading.Summary`, which does the totals."""
        return Summary(self.lab, self.results)

    @property
    def points(self) -> int:
        return self.summary.points

    @property
    def max_points(self) -> int:
        return self.summary.max_points

    @property
    def not_graded(self) -> tuple[str, ...]:
        """The exercises that could not be graded on this machine (not the learner's doing)."""
        return self.summary.not_graded

    @property
    def status(self) -> str:
        """``pass``, ``fail`` or ``error``, as GitHub Classroom spells them (``error`` also
        when an exercise could not be graded: the grade is incomplete)."""
        if self.error or self.not_graded:
            return "error"
        return "pass" if all(r.status == "passed" for r in self.results) else "fail"

    def to_classroom(self) -> dict[str, Any]:
        """This notebook as one GitHub Classroom autograding result document."""
        titles = {e.id: e.title.rstrip(".") for e in lab_exercises(self.lab)}
        tests = [
            {
                "name": f"{r.exercise} {titles.get(r.exercise, '')}".strip(),
                "status": _CLASSROOM_STATUS.get(r.status, "error"),
                "score": None if r.status == "not graded" else r.points,
                "max_score": r.max_points,
                "message": r.line,
                "test_code": f'check("{r.exercise}")',
                "filename": str(self.notebook),
                "line_no": self.check_cells.get(r.exercise, 0),
                "duration": round(self.durations.get(r.exercise, 0.0) * 1000),
            }
            for r in self.results
        ]
        return {
            "version": 1,
            "status": self.status,
            "max_score": self.max_points,
            "tests": tests,
        }


# --- reports --------------------------------------------------------------------------


def format_table(grade: NotebookGrade) -> str:
    """A plain-text table of one notebook's grades and its total."""
    who = f" ({grade.learner})" if grade.learner else ""
    lines = [f"{grade.notebook}{who}: lab {grade.lab}"]
    if grade.error:
        lines.append(f"  ! {grade.error}")
    lines.append(f"  {'exercise':<9} {'status':<14} {'points':>6}  message")
    for r in grade.results:
        message = "" if r.status == "passed" else r.message.split(" Hint: ")[0]
        points = "–" if r.status == "not graded" else r.points
        lines.append(f"  {r.exercise:<9} {r.status:<14} {points:>3}/{r.max_points:<2}  {message}")
    total = f"  {'total':<9} {'':<14} {grade.points:>3}/{grade.max_points:<2}"
    lines.append(total + _not_graded_note(grade))
    return "\n".join(lines)


def _not_graded_note(grade: NotebookGrade) -> str:
    if not grade.not_graded:
        return ""
    points = sum(r.max_points for r in grade.results if r.status == "not graded")
    return f"  ({points} more not graded: {', '.join(grade.not_graded)})"


def format_summary(grades: Sequence[NotebookGrade]) -> str:
    """One line per graded notebook: learner, notebook, points."""
    width = max([len(g.learner or "-") for g in grades] + [7])
    lines = [f"{'learner':<{width}}  {'points':>7}  notebook"]
    for g in grades:
        line = f"{g.learner or '-':<{width}}  {g.points:>3}/{g.max_points:<3}  {g.notebook}"
        lines.append(line + _not_graded_note(g))
    total, most = sum(g.points for g in grades), sum(g.max_points for g in grades)
    lines.append(f"{'total':<{width}}  {total:>3}/{most:<3}")
    return "\n".join(lines)


def format_room(grades: Sequence[NotebookGrade]) -> str:
    """A learner × lab table: points per lab (``!`` where the notebook could not run to
    its end), each learner's total — a room's submissions at a glance. A learner who
    handed in a lab twice (``05-layers-Copy1.ipynb``) counts with the better notebook.

    >>> from hardway.course.grading import Result
    >>> g = lambda who, lab, p: NotebookGrade(Path(f"{lab}.ipynb"), lab,
    ...     (Result(f"{lab}.1", "passed" if p else "failed", p, 2, ""),), who)
    >>> print(format_room([g("ann", "00", 2), g("bo", "00", 0), g("ann", "05", 2),
    ...                    g("bo", "00", 2), g("bo", "00", 0)]))
    learner     00     05   total
    ann        2/2    2/2     4/4
    bo         2/2      –     2/2
    """
    labs = sorted({g.lab for g in grades})
    learners = list(dict.fromkeys(g.learner or "-" for g in grades))
    best: dict[tuple[str, str], NotebookGrade] = {}
    for g in grades:
        key = (g.learner or "-", g.lab)
        if key not in best or g.points > best[key].points:
            best[key] = g
    cells = {
        key: f"{'!' if g.error else ''}{g.points}/{g.max_points}{'*' if g.not_graded else ''}"
        for key, g in best.items()
    }
    totals = dict.fromkeys(learners, (0, 0))
    for (who, _), g in best.items():
        points, most = totals[who]
        totals[who] = (points + g.points, most + g.max_points)
    width = max([len(name) for name in learners] + [7])
    lines = [f"{'learner':<{width}}" + "".join(f"{lab:>7}" for lab in labs) + f"{'total':>8}"]
    for who in learners:
        row = "".join(f"{cells.get((who, lab), '–'):>7}" for lab in labs)
        lines.append(f"{who:<{width}}{row}{'/'.join(map(str, totals[who])):>8}")
    if any(g.not_graded for g in best.values()):
        lines.append(
            "* some exercises could not be graded on this machine: see that notebook's table"
        )
    return "\n".join(lines)


def classroom_document(grades: Sequence[NotebookGrade]) -> dict[str, Any]:
    """The JSON to write: one Classroom document for one notebook, a wrapper for several."""
    if len(grades) == 1:
        return grades[0].to_classroom()
    statuses = {g.status for g in grades}
    status = "error" if "error" in statuses else "fail" if "fail" in statuses else "pass"
    return {
        "version": 1,
        "status": status,
        "score": sum(g.points for g in grades),
        "max_score": sum(g.max_points for g in grades),
        "notebooks": [
            {
                "notebook": str(g.notebook),
                "learner": g.learner,
                "lab": g.lab,
                "score": g.points,
                **g.to_classroom(),
            }
            for g in grades
        ],
    }


def write_csv(grades: Sequence[NotebookGrade], path: Path) -> None:
    """One row per notebook: learner, notebook, lab, points, max_points, status and the
    exercises that could not be graded (space-separated ids)."""
    with Path(path).open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        header = ["learner", "notebook", "lab", "points", "max_points", "status", "not_graded"]
        writer.writerow(header)
        for g in grades:
            row = [g.learner or "", str(g.notebook), g.lab, g.points, g.max_points, g.status]
            writer.writerow([*row, " ".join(g.not_graded)])
