"""hardway.course.checks.child
~~~~~~~~~~~~~~~~~~~~~~~~~~~

A check runs the learner's mechanism for real — their ``unshare``, their mounts, their
cgroup writes — so it runs it in a *forked child* with a time limit, never in the
notebook's kernel: a learner's endless loop, fork, ``chdir``, ``unshare`` or ``setns``
must neither hang the check nor change the kernel the next exercise runs in.
:func:`in_child` forks, runs one function there, and hands back its return value or
the exception it raised (with the learner's part of the traceback, so the grader can
tell "your code raised" from "the check has a bug"). On a timeout, Ctrl-C or any other
way out, the child's whole process group is killed and reaped.

The child is a fork of the kernel, so closures and the learner's functions need no
pickling; only the result travels back, pickled through a pipe. The child's
``sys.stdout``/``sys.stderr`` and file descriptors 0–2 are redirected (a forked child of
a Jupyter kernel must never write to the kernel's ZeroMQ streams) and what it printed is
kept in :attr:`ChildFailed.output` and :attr:`TimeLimit.output`.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import select
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from hardway.course import grading

__all__ = ["ChildFailed", "TimeLimit", "in_child"]

T = TypeVar("T")

#: what a child prints is kept up to this many characters
_OUTPUT_LIMIT = 4000
#: True in a child: a nested in_child stays in the outer child's process group, so that
#: killing the outer group on its time limit kills the inner child and its descendants too
_nested = False


class TimeLimit(AssertionError):
    """The learner's code was still running at the time limit: a failure of the exercise."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class ChildFailed(AssertionError):
    """The child died without an answer (killed by a signal, ``os._exit``, ``exec``…)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def in_child(
    func: Callable[[], T],
    *,
    timeout: float = 30.0,
    what: str = "your code",
) -> T:
    """Run ``func()`` in a forked child and return what it returned (or raise what it raised).

    ``what`` names the learner's code in the messages ("your my_spawn"). An exception
    from the learner's code comes back marked as the learner's (see
    :func:`hardway.course.grading.run_check`); one the check raised in the child (an
    :func:`~hardway.course.grading.expect`) comes back as it was.
    """
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as output:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its outcome is what the parent tests
            os.close(read_end)
            _child(func, write_end, output.fileno())
        os.close(write_end)
        try:
            payload = _collect(read_end, pid, timeout, what, output)
        finally:
            os.close(read_end)
            _kill_group(pid)
        printed = _read(output)
    return _unpack(payload, what, printed)


def _child(func: Callable[[], object], write_end: int, output: int) -> None:  # pragma: no cover
    """The child's whole life: run ``func``, write the outcome, never return."""
    global _nested
    code = 0
    try:
        if not _nested:  # a group of its own: the parent kills all of it at the end
            os.setpgid(0, 0)
        _nested = True
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        sink = io.TextIOWrapper(os.fdopen(os.dup(1), "wb", buffering=0), write_through=True)
        sys.stdin, sys.stdout, sys.stderr = open(os.devnull), sink, sink  # noqa: SIM115
        try:
            outcome: tuple[str, object, object] = ("returned", func(), None)
        except BaseException as exc:
            frames = grading._learner_frames(exc.__traceback__, check_file=_check_file(func))
            outcome = ("raised", _portable(exc), frames)
        try:
            data = pickle.dumps(outcome)
        except Exception as exc:
            data = pickle.dumps(("unpicklable", f"{type(exc).__name__}: {exc}", None))
        with os.fdopen(write_end, "wb") as pipe:
            # the length first: a grandchild the learner left running keeps the pipe open
            pipe.write(len(data).to_bytes(8, "big") + data)
    except BaseException:
        code = 70
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        os._exit(code)


def _check_file(func: Callable[[], object]) -> str:
    code = getattr(func, "__code__", None)
    return os.path.realpath(code.co_filename) if code else ""


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError that keeps its type and text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _collect(read_end: int, pid: int, timeout: float, what: str, output: BinaryIO) -> bytes | int:
    """The pickled outcome, or the child's wait status when it sent none."""
    deadline = time.monotonic() + timeout
    received = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_group(pid)
                raise TimeLimit(
                    f"{what} was still running after {timeout:g} s and was stopped (an "
                    "endless loop? a read that never ends? a child that was never waited for?)",
                    _read(output),
                )
            ready, _, _ = select.select([read_end], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    break
                received += chunk
                if len(received) >= 8 and len(received) - 8 >= int.from_bytes(received[:8], "big"):
                    return received[8:]
    except KeyboardInterrupt:
        _kill_group(pid)
        raise
    _, status = os.waitpid(pid, 0)
    return status


def _kill_group(pid: int) -> None:
    """Kill the child's process group (its own children too) and reap the child.

    A nested child has no group of its own: the outermost one's kill reaches it.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if _nested:
            os.kill(pid, signal.SIGKILL)
        else:
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _read(output: BinaryIO) -> str:
    """What the child printed into ``output``, cut at ``_OUTPUT_LIMIT`` characters."""
    output.seek(0)
    text = output.read(_OUTPUT_LIMIT + 1).decode(errors="replace")
    return text if len(text) <= _OUTPUT_LIMIT else text[:_OUTPUT_LIMIT] + "…"


def _unpack(payload: bytes | int, what: str, output: str) -> T:  # type: ignore[type-var]
    if isinstance(payload, int):
        if os.WIFSIGNALED(payload):
            name = signal.Signals(os.WTERMSIG(payload)).name
            raise ChildFailed(f"{what} was killed by {name} before it finished", output)
        code = os.waitstatus_to_exitcode(payload)
        raise ChildFailed(
            f"{what} ended the process (exit code {code}) instead of returning: "
            "call os._exit or exec only in a child you forked yourself",
            output,
        )
    kind, value, frames = pickle.loads(payload)
    if kind == "returned":
        return value  # type: ignore[no-any-return]
    if kind == "unpicklable":
        raise RuntimeError(f"the result of {what} cannot be passed back to the check: {value}")
    exc = value
    if frames:
        with contextlib.suppress(AttributeError, TypeError):
            exc._hardway_learner = frames[-1][0]
    raise exc
