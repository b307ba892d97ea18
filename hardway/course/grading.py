"""hardway.course.grading
~~~~~~~~~~~~~~~~~~~~~~

Self-checks. After each exercise a cell calls ``check("05.2")`` and gets one line of
plain-text feedback, readable in JupyterLab, in a CI log and by nbval alike::

    ⏳ 05.2 not attempted yet
    ❌ 05.2: diff_id is the sha256 of the gzip, not of the tar. Hint: …
    💥 05.2: your code raised KeyError: 'size' (in write_layer, line 4)
    ⏸ 07.6 not graded (2 points): the course's registry could not be used here: … To fix: …
    ✅ 05.2 passed (2/2)

Hints come in steps, one at a time, as a tutor gives them: a failure shows the first (a
nudge), and ``hint("05.2")`` shows the next one on each call (the idea, then the near-answer)::

    💡 05.2 hint 2/3: the gzip stream and the tar stream are different bytes …

The checks of lab NN live in :mod:`hardway.course.checks.labNN`, one function per exercise,
declared with :func:`exercise`. As in otter-grader, a check's parameters *name* the
learner's objects: ``def digest_of_bytes(digest_of)`` receives the learner's
``digest_of`` from the notebook. A check raises ``AssertionError`` (through
:func:`expect`) with a message that teaches; anything else that escapes the learner's
code is reported by type and message only, never with a traceback, and a bug in a check
itself is reported as such. Checks build fresh random inputs and compare against the
helper's reference modules, so a hard-coded answer fails.

A check that cannot run *here*, for a reason outside the learner's code — the course's
registry unusable, a tool missing, no root — raises :class:`NotGraded` (the check's own
:class:`~hardway.errors.MissingToolError`, :class:`~hardway.errors.PrivilegeError`,
:class:`~hardway.errors.RegistryServerError` and ``PermissionError`` count as one). The
exercise is then *not graded*, with the reason and its fix: it earns no points, and its
points leave the maximum too, so it costs the learner nothing and blames no one.

:func:`run_check` needs no IPython: the headless grader (:mod:`hardway.course.autograde`) and
the tests call it with a plain ``dict`` namespace.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import json
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from hardway.errors import HardwayError, MissingToolError, PrivilegeError, RegistryServerError
from hardway.sys.state import package_parent

__all__ = [
    "STATUSES",
    "Exercise",
    "NotGraded",
    "Result",
    "Summary",
    "check",
    "check_all",
    "emit",
    "exercise",
    "exercises",
    "expect",
    "hint",
    "run_check",
    "summary",
]

STATUSES = ("passed", "failed", "not attempted", "error", "not graded")
_ICONS = {"passed": "✅", "failed": "❌", "not attempted": "⏳", "error": "💥", "not graded": "⏸"}
#: raised by a check's own code (not the learner's), these say the machine cannot run it
_ENVIRONMENT = (MissingToolError, PrivilegeError, RegistryServerError, PermissionError)
_EXERCISE_ID = re.compile(r"(\d\d)\.(\d+)")


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: its id (``"05.2"``), check function, points and hints.

    ``hints`` go from a nudge to the idea to the near-answer; a failure shows the first.
    ``against`` names what the check runs the learner's code against for real ("kernel",
    "registry", "skopeo", …), empty for a check of a pure function.
    """

    id: str
    func: Callable[..., object]
    points: int
    hints: tuple[str, ...] = ()
    against: tuple[str, ...] = ()

    @property
    def hint(self) -> str:
        """The first hint, shown after every failure message ("" when there is none)."""
        return self.hints[0] if self.hints else ""

    @property
    def lab(self) -> str:
        return self.id.split(".")[0]

    @property
    def title(self) -> str:
        """The first line of the check's docstring."""
        return (inspect.getdoc(self.func) or self.func.__name__).splitlines()[0]


#: every exercise declared so far, by id (filled in as hardway.course.checks.labNN modules load)
_REGISTRY: dict[str, Exercise] = {}


def exercise(
    exercise_id: str,
    *,
    points: int = 1,
    hint: str = "",
    hints: tuple[str, ...] = (),
    against: tuple[str, ...] = (),
) -> Callable:
    """Declare the decorated function as the check of ``exercise_id``.

    ``hints`` are given one at a time — a nudge, the idea, the near-answer — so write the
    first to teach, not to give the answer away; the first is shown after every failure
    message. ``hint`` is the short form for a single one. ``against`` says what real
    thing the check runs the learner's code against (the kernel, the registry, a tool).
    """
    if not _EXERCISE_ID.fullmatch(exercise_id):
        raise ValueError(f"exercise ids look like '05.2', not {exercise_id!r}")
    if hint and hints:
        raise ValueError("give hint or hints, not both")
    steps = tuple(hints) or ((hint,) if hint else ())

    def decorate(func: Callable[..., object]) -> Callable[..., object]:
        _REGISTRY[exercise_id] = Exercise(exercise_id, func, points, steps, tuple(against))
        return func

    return decorate


def expect(condition: object, message: str) -> None:
    """Fail the check with ``message`` unless ``condition`` holds (immune to ``python -O``)."""
    if not condition:
        raise AssertionError(message)


class NotGraded(Exception):
    """Raised by a check that cannot run here for a reason outside the learner's code.

    The exercise is reported as *not graded* with ``reason`` and ``fix``: neither 0
    points nor a failure, nor a bug in the check.
    """

    def __init__(self, reason: str, *, fix: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.fix = reason, fix


@dataclass(frozen=True, repr=False)
class Result:
    """The outcome of one check. Its repr is the feedback line, so a cell shows it once."""

    exercise: str
    status: str  # one of STATUSES
    points: int
    max_points: int
    message: str  # the detail: what went wrong and the hint, or "passed"

    @property
    def line(self) -> str:
        """One line of feedback, e.g. ``✅ 00.1 passed (2/2)``."""
        icon = _ICONS.get(self.status, "?")
        if self.status == "passed":
            return f"{icon} {self.exercise} passed ({self.points}/{self.max_points})"
        if self.status == "not attempted":
            extra = f": {self.message}" if self.message else ""
            return f"{icon} {self.exercise} not attempted yet{extra}"
        if self.status == "not graded":
            return f"{icon} {self.exercise} not graded ({self.max_points} points): {self.message}"
        return f"{icon} {self.exercise}: {self.message}"

    def __repr__(self) -> str:
        return self.line

    __str__ = __repr__

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "line": self.line}


@dataclass(frozen=True, repr=False)
class Summary:
    """The results of a whole lab; its repr is one line per exercise and a total."""

    lab: str
    results: tuple[Result, ...]

    @property
    def points(self) -> int:
        return sum(r.points for r in self.results)

    @property
    def max_points(self) -> int:
        """The points of the exercises that were graded (not graded ones count in neither)."""
        return sum(r.max_points for r in self.results if r.status != "not graded")

    @property
    def not_graded(self) -> tuple[str, ...]:
        """The exercises that could not be graded here (see each one's message)."""
        return tuple(r.exercise for r in self.results if r.status == "not graded")

    def __repr__(self) -> str:
        lines = [r.line for r in self.results]
        done = self.results and all(r.status == "passed" for r in self.results)
        rest = all(r.status in ("passed", "not graded") for r in self.results)
        end = "all done, well done!" if done else "fix the others and run their cells again"
        total = f"{self.points}/{self.max_points} points"
        if self.not_graded:
            skipped = sum(r.max_points for r in self.results if r.status == "not graded")
            total += f", {skipped} not graded"
            end = (
                f"{', '.join(self.not_graded)} could not be graded here: see above" if rest else end
            )
        lines.append(f"Lab {self.lab}: {total} — {end}")
        return "\n".join(lines)

    __str__ = __repr__


# --- finding the checks ---------------------------------------------------------------


def exercises(lab: str) -> list[Exercise]:
    """The exercises of ``lab`` ("00"), in order; imports ``hardway.course.checks.labNN``."""
    try:
        importlib.import_module(f"hardway.course.checks.lab{lab}")
    except ModuleNotFoundError as exc:
        # exercises declared outside hardway.course.checks (tests, an instructor's extras) are fine
        if exc.name != f"hardway.course.checks.lab{lab}" or not any(
            e.lab == lab for e in _REGISTRY.values()
        ):
            raise
    found = [e for e in _REGISTRY.values() if e.lab == lab]
    return sorted(found, key=lambda e: int(e.id.split(".")[1]))


def _find(exercise_id: str) -> Exercise | Result:
    """The exercise, or an ``error`` Result that says why there is none."""
    match = _EXERCISE_ID.fullmatch(str(exercise_id))
    if not match:
        return _error(str(exercise_id), f"exercise ids look like '00.1', not {exercise_id!r}")
    lab = match[1]
    try:
        known = exercises(lab)
    except ModuleNotFoundError as exc:
        if exc.name != f"hardway.course.checks.lab{lab}":
            return _error(exercise_id, f"the checks of lab {lab} could not load: {_describe(exc)}")
        return _error(exercise_id, f"there are no checks for lab {lab} in this course")
    except Exception as exc:
        return _error(exercise_id, f"the checks of lab {lab} could not load: {_describe(exc)}")
    for found in known:
        if found.id == exercise_id:
            return found
    names = ", ".join(e.id for e in known) or "none"
    return _error(exercise_id, f"there is no exercise {exercise_id}; lab {lab} has {names}")


# --- running a check ------------------------------------------------------------------


def run_check(exercise_id: str, namespace: Mapping[str, object]) -> Result:
    """Run one check against the learner's objects in ``namespace``; never raises.

    Output the learner's code prints while being checked is swallowed: the feedback
    stays one line.
    """
    found = _find(exercise_id)
    if isinstance(found, Result):
        return found
    ex = found
    try:
        params = inspect.signature(ex.func).parameters.values()
    except (TypeError, ValueError) as exc:
        return _checker_bug(ex, exc)
    kwargs, missing = {}, []
    for param in params:
        if param.name in namespace:
            kwargs[param.name] = _guard(param.name, namespace[param.name])
        elif param.default is inspect.Parameter.empty:
            missing.append(param.name)
    if missing:
        names = " and ".join(missing)
        return _result(ex, "not attempted", f"define {names} and run its cell first")
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            ex.func(**kwargs)
    except KeyboardInterrupt:
        message = "interrupted while your code was still running (an endless loop?)"
        return _result(ex, "failed", message)
    except (Exception, SystemExit) as exc:
        return _classify(ex, exc)
    return _result(ex, "passed", "passed")


def _classify(ex: Exercise, exc: BaseException) -> Result:
    """Who raised ``exc`` (the learner's code or the check) and what to tell the learner."""
    frames = _learner_frames(exc.__traceback__, check_file=_file_of(ex.func))
    guarded = getattr(exc, "_hardway_learner", None)
    if (guarded or frames) and isinstance(exc, NotImplementedError):
        deepest = frames[-1][0] if frames else guarded
        unfinished = deepest not in (guarded, "<module>", None)
        detail = f"{deepest}() still raises NotImplementedError" if unfinished else ""
        return _result(ex, "not attempted", detail)
    if guarded or frames:
        where = ""
        if frames:
            name, line = frames[-1]
            where = f" (line {line})" if name == "<module>" else f" (in {name}, line {line})"
        return _result(ex, "error", f"your code raised {_describe(exc)}{where}")
    if isinstance(exc, NotGraded):
        return _not_graded(ex, exc.reason, exc.fix)
    if isinstance(exc, _ENVIRONMENT):
        message = exc.message if isinstance(exc, HardwayError) else _describe(exc)
        return _not_graded(ex, message, getattr(exc, "fix", None))
    if isinstance(exc, AssertionError):
        message = str(exc).strip() or "the result is not right"
        if message[-1] not in ".!?":
            message += "."
        if not ex.hint:
            return _result(ex, "failed", message)
        more = f" (more: hint({ex.id!r}))" if len(ex.hints) > 1 else ""
        return _result(ex, "failed", f"{message} Hint: {ex.hint}{more}")
    return _checker_bug(ex, exc)


def _checker_bug(ex: Exercise, exc: BaseException) -> Result:
    return _result(
        ex,
        "error",
        f"could not be checked ({_describe(exc)}). If your code looks right, this is a bug "
        "in the course's check: please report it",
    )


def _not_graded(ex: Exercise, reason: str, fix: str | None) -> Result:
    """Not the learner's doing, nor a bug in the check: the machine could not run it."""
    message = f"{reason.rstrip('.')} (nothing to change in your code)"
    message += f". To fix: {fix}" if fix else ""
    return _result(ex, "not graded", message)


def _result(ex: Exercise, status: str, message: str) -> Result:
    points = ex.points if status == "passed" else 0
    return Result(ex.id, status, points, ex.points, message)


def _error(exercise_id: str, message: str) -> Result:
    return Result(exercise_id, "error", 0, 0, message)


def _describe(exc: BaseException) -> str:
    """``TypeError: message``: the type and the message, nothing else."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _guard(name: str, obj: object) -> object:
    """Wrap a learner's function so that whatever escapes it is marked as the learner's.

    This tells "your function raised TypeError" (wrong signature, bad call) from "the
    check itself has a bug", even when no frame of the learner's code is on the stack.
    """
    if not (inspect.isfunction(obj) or inspect.ismethod(obj) or isinstance(obj, functools.partial)):
        return obj

    @functools.wraps(obj)
    def guarded(*args: object, **kwargs: object) -> object:
        try:
            return obj(*args, **kwargs)
        except Exception as exc:
            with contextlib.suppress(AttributeError, TypeError):
                exc._hardway_learner = name  # type: ignore[attr-defined]
            raise

    return guarded


_OURS = str(package_parent() / "hardway") + os.sep
_LIBRARIES = tuple(
    {
        os.path.realpath(p) + os.sep
        for p in (
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            *(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")),
        )
    }
)


def _file_of(func: Callable[..., object]) -> str:
    code = getattr(inspect.unwrap(func), "__code__", None)
    return os.path.realpath(code.co_filename) if code else ""


def _is_learner_file(filename: str, check_file: str = "") -> bool:
    """Code that is neither ours (hardway, the check's module) nor a library's."""
    if filename.startswith("<"):
        return not filename.startswith("<frozen")
    path = os.path.realpath(filename)
    if path == check_file:
        return False
    return not path.startswith(_OURS) and not path.startswith(_LIBRARIES)


def _learner_frames(tb: TracebackType | None, check_file: str = "") -> list[tuple[str, int]]:
    """``(function, line)`` of every frame of the learner's code in a traceback."""
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if _is_learner_file(code.co_filename, check_file):
            frames.append((code.co_name, tb.tb_lineno))
        tb = tb.tb_next
    return frames


# --- the notebook side ----------------------------------------------------------------

_last_lab: str | None = None


def _caller_namespace() -> Mapping[str, object]:
    """The globals of the notebook cell (or module) that called us."""
    frame = sys._getframe(2)
    return frame.f_globals


def check(exercise_id: str, namespace: Mapping[str, object] | None = None) -> Result:
    """Check one exercise against the notebook's variables; the cell shows one line.

    ``namespace`` defaults to the globals of the caller, which in a notebook are the
    IPython user namespace.
    """
    global _last_lab
    if namespace is None:
        namespace = _caller_namespace()
    result = run_check(exercise_id, namespace)
    if _EXERCISE_ID.fullmatch(str(exercise_id)):
        _last_lab = str(exercise_id)[:2]
    return result


def check_all(lab: str, namespace: Mapping[str, object] | None = None) -> list[Result]:
    """Run every check of ``lab`` ("00"); never raises."""
    if namespace is None:
        namespace = _caller_namespace()
    return _check_all(lab, namespace)


def _check_all(lab: str, namespace: Mapping[str, object]) -> list[Result]:
    try:
        known = exercises(lab)
    except Exception as exc:
        return [_error(f"{lab}.?", f"the checks of lab {lab} could not load: {_describe(exc)}")]
    return [run_check(e.id, namespace) for e in known]


def summary(lab: str | None = None, namespace: Mapping[str, object] | None = None) -> Summary:
    """All the results of a lab and the total: the Verification cell at a lab's end.

    ``lab`` defaults to the lab of the last :func:`check` in this session.
    """
    if namespace is None:
        namespace = _caller_namespace()
    lab = lab or _last_lab
    if lab is None:
        message = "no check has run yet: name the lab, e.g. summary('00')"
        return Summary("?", (_error("?", message),))
    return Summary(lab, tuple(_check_all(lab, namespace)))


#: how many hints of each exercise this session has shown through :func:`hint`
_hints_shown: dict[str, int] = {}


@dataclass(frozen=True, repr=False)
class Hint:
    """One step of an exercise's hints; its repr is the line a cell shows."""

    exercise: str
    step: int  # 1-based
    steps: int
    text: str

    def __repr__(self) -> str:
        if not self.steps:
            why = self.text or "its prompt and the check's message say it all"
            return f"💡 {self.exercise} has no hints: {why}"
        last = " (the last one)" if self.step == self.steps and self.steps > 1 else ""
        return f"💡 {self.exercise} hint {self.step}/{self.steps}{last}: {self.text}"

    __str__ = __repr__


def hint(exercise_id: str) -> Hint:
    """The next hint of an exercise: a nudge first, then the idea, then the near-answer.

    Each call shows one more step, and the last one again once all are shown.
    """
    found = _find(exercise_id)
    if isinstance(found, Result):
        return Hint(str(exercise_id), 0, 0, found.message)
    shown = min(_hints_shown.get(found.id, 0) + 1, len(found.hints))
    _hints_shown[found.id] = shown
    if not found.hints:
        return Hint(found.id, 0, 0, "")
    return Hint(found.id, shown, len(found.hints), found.hints[shown - 1])


def emit(exercise_id: str, namespace: Mapping[str, object], prefix: str) -> None:
    """Print ``prefix`` + the result as JSON on one line (for the headless grader)."""
    result = run_check(exercise_id, namespace)
    sys.stdout.write(prefix + json.dumps(result.to_dict(), ensure_ascii=True) + "\n")
    sys.stdout.flush()
