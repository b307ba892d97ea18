"""hardway.distribution.server.process
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

A server of the course — the registry, the token service — as a *detached* process with
a pid file and a log: started in a session of its own, so that Ctrl-C in a terminal or
the end of the notebook kernel that started it does not take it down, and stopped later
by whichever process asks (a notebook, ``registry stop`` in another terminal, cleanup).

Why a pid file that is checked against ``/proc``: the process that stops a server is
often not the one that started it, and a stale pid must never lead to killing a
stranger, so :func:`stop` asks ``is_ours`` about the process behind a pidfd
(:func:`hardway.sys.proc.terminate`). Children of this Python process are remembered, so
that stopping one also reaps it (no zombies).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from hardway.sys.atomic import write_atomic
from hardway.sys.proc import terminate

__all__ = ["log_tail", "read_pid", "reap_finished", "spawn", "stop", "wait_ready"]

#: children this Python process started, so that :func:`stop` can reap them (no zombies)
_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn(
    argv: list[str], *, log: Path, pid_file: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv`` detached, in its own session, in the directory of ``log``, with its
    output appended to ``log``; write its pid to ``pid_file``.

    :returns: the child, and the offset in ``log`` where its output begins
    """
    with open(log, "ab") as out:
        offset = out.seek(0, os.SEEK_END)
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            close_fds=True,
            start_new_session=True,
            cwd=log.parent,
            env=env,
        )
    _children[child.pid] = child
    write_atomic(pid_file, f"{child.pid}\n".encode())
    return child, offset


def wait_ready(
    child: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float
) -> tuple[bool, int | None]:
    """Wait until ``ready()``, the child exits, or ``timeout`` seconds pass.

    :returns: ``(True, None)`` once ready; else ``(False, code)``, with the exit status
        of a child that exited, or ``None`` for one that was still running, which is then
        killed. Either way a child that is not ready is reaped and forgotten.
    """
    deadline = time.monotonic() + timeout
    while (code := child.poll()) is None and time.monotonic() < deadline:
        if ready():
            return True, None
        time.sleep(0.05)
    if code is None:
        child.kill()
    child.wait()
    _children.pop(child.pid, None)
    return False, code


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file``; ``None`` if it is missing or holds no number."""
    try:
        text = pid_file.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def stop(pid_file: Path, is_ours: Callable[[int], bool], *, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after ``timeout`` seconds, the process in ``pid_file`` if
    ``is_ours(pid)``; ``True`` if it was running. The pid file is removed either way (a
    stale one too), and a child of ours is reaped.

    :raises TimeoutError: it did not exit, even after SIGKILL (the pid file stays)
    """
    pid = read_pid(pid_file)
    stopped = pid is not None and terminate(pid, is_ours, timeout=timeout)
    if stopped:
        _reap(pid)
    pid_file.unlink(missing_ok=True)
    return stopped


def _reap(pid: int) -> None:
    if (child := _children.pop(pid, None)) is not None:
        child.wait()
        return
    with contextlib.suppress(ChildProcessError):  # not our child: its parent reaps it
        os.waitpid(pid, os.WNOHANG)


def reap_finished() -> None:
    """Reap children of ours that died on their own (a crash, a kill from elsewhere)."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


def log_tail(log: Path, offset: int, lines: int = 10) -> str:
    """The last ``lines`` lines written to ``log`` after ``offset``, indented for a message."""
    with open(log, "rb") as out:
        out.seek(offset)
        text = out.read().decode(errors="replace")
    return "\n".join(f"    {line[:300]}" for line in text.splitlines()[-lines:])
