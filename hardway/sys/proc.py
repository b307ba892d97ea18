"""hardway.sys.proc
~~~~~~~~~~~~~~~~

Reading other processes through ``/proc``, and stopping one safely.

Cleanup, the registry's start and stop, and the leftovers check all ask the same
questions of a pid: what is its command line, its environment, its state and parent,
when did it start (a pid and its start tick tell a process from a later one that reuses
the pid)? Each reader here answers "nothing" (``b""``, ``[]``, ``{}``) for a process that
is gone meanwhile or not ours to read, because that race is normal, not an error.

:func:`terminate` stops a process through a *pidfd*, opened before anything about the
pid is checked: if the process dies and its pid is reused in between, the pidfd still
names the dead one, so a stranger never receives the signal.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable

from hardway.sys.state import SESSION_VARIABLE

__all__ = [
    "argv_of",
    "environ_of",
    "read_proc",
    "runs_module",
    "session_of",
    "start_tick",
    "stat_of",
    "terminate",
]


def read_proc(path: str) -> bytes:
    """The bytes of a ``/proc`` file; ``b""`` if the process is gone or not ours to read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def argv_of(pid: int | str) -> list[str]:
    """The command line of ``pid``; ``[]`` for a zombie or a process gone meanwhile."""
    raw = read_proc(f"/proc/{pid}/cmdline")
    return [a.decode(errors="surrogateescape") for a in raw.split(b"\0")[:-1]]


def environ_of(pid: int | str) -> dict[str, str]:
    """The environment ``pid`` started with; ``{}`` if unreadable."""
    pairs = (item.partition(b"=") for item in read_proc(f"/proc/{pid}/environ").split(b"\0"))
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs if k}


def stat_of(pid: int | str) -> tuple[str, int, str]:
    """(state, parent pid, start tick) from ``/proc/<pid>/stat``; ``("", 0, "")`` if gone.

    The command name in parentheses may itself hold spaces and parentheses, so the
    fields are counted from the *last* ``)``.
    """
    text = read_proc(f"/proc/{pid}/stat").decode(errors="replace")
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return "", 0, ""
    return fields[0], int(fields[1]), fields[19]


def start_tick(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot); ``""`` when it is gone."""
    return stat_of(pid)[2]


def session_of(pid: int) -> str | None:
    """The session ``pid`` belongs to: the first ``HARDWAY_SESSION`` in its own or its
    ancestors' environment; ``None`` for a process of no session (a learner's container
    is never a test run's)."""
    seen = 0
    while pid > 1 and seen < 64:
        found = environ_of(pid).get(SESSION_VARIABLE)
        if found is not None:
            return found
        pid, seen = stat_of(pid)[1], seen + 1
    return None


def runs_module(argv: list[str], modules: tuple[str, ...]) -> bool:
    """Is ``argv`` ``python -m M …`` for one of ``modules``? Only the program's own
    arguments count: a ``grep hardway.isolation.launch`` or an editor on a file of that
    name runs no such module.

    >>> launcher = ("hardway.isolation.launch",)
    >>> runs_module(["/v/bin/python3", "-m", "hardway.isolation.launch", "5"], launcher)
    True
    >>> runs_module(["grep", "-rn", "hardway.isolation.launch", "."], launcher)
    False
    >>> runs_module(["sh", "-c", "python -m hardway.isolation.launch"], launcher)
    False
    >>> runs_module(["grep", "-m", "hardway.isolation.launch", "x"], launcher)  # max count
    False
    """
    return (
        len(argv) >= 3
        and os.path.basename(argv[0]).startswith("python")
        and argv[1] == "-m"
        and argv[2] in modules
    )


def _wait_exit(pidfd: int, timeout: float) -> bool:
    """Wait until the process behind ``pidfd`` exits; a pidfd polls readable then."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def terminate(pid: int, is_ours: Callable[[int], bool], *, timeout: float = 5.0) -> bool:
    """SIGTERM ``pid``, then SIGKILL after ``timeout`` seconds; ``True`` once it exited.

    ``False`` (nothing sent) when there is no such process or ``is_ours(pid)`` says it is
    not the one meant: ``is_ours`` is asked *after* the pidfd is open, so its answer is
    about the process the signals go to. An exited child of ours stays a zombie until
    its caller reaps it (a ``Popen`` it holds wants to do that itself).

    :raises TimeoutError: it is still there 5 s after SIGKILL (a process stuck in an
        uninterruptible sleep, state D, waits on I/O)
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not is_ours(pid):
            return False
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except ProcessLookupError:
                break
            if _wait_exit(pidfd, wait):
                break
        else:
            raise TimeoutError(f"process {pid} did not exit, even after SIGKILL")
    finally:
        os.close(pidfd)
    return True
