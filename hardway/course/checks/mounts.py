"""hardway.course.checks.mounts
~~~~~~~~~~~~~~~~~~~~~~~~~~~~

The safety net of the checks that run a learner's *mount* code: ``pivot_root``, a fresh
``/proc``, a runtime's ``/dev``. A learner who forgets ``mount(None, "/", None,
MS_REC | MS_PRIVATE)`` in a namespace whose mounts are *shared* (as systemd leaves them
on most machines) sends every mount and unmount back to the host: a bind mount appears
in the host's table, a ``/proc`` covers the host's. The check must say so, and must not
let it happen. :func:`sandboxed` runs the check's code in two nested children:

1. the **stand-in**: a child with a mount namespace of its own, made *private* (cut off
   from the host's in both directions: nothing goes out, and the host's own mount
   activity — other tests, other learners — cannot come in and look like a leak),
   then *shared* again, so it is laid out as the host usually is; ``setup`` runs here
   (e.g. a tmpfs for the check's root filesystem, which every later namespace sees);
2. the **learner's child**: it unshares the mount namespace once more, so its mounts
   are propagation *peers* of the stand-in's, exactly as a container's are peers of the
   host's before ``MS_PRIVATE``; ``func`` (the check, calling the learner's code) runs
   here, in :func:`~hardway.course.checks.child.in_child` with the time limit. The
   stand-in is a child subreaper: whatever the learner's code leaves running, even in a
   session of its own, comes back to it, and it kills all of it before it ends.

When the learner's child is done, the stand-in compares its own mount table with the
one it had: every difference came from the learner's namespace through propagation,
and :class:`Propagated` (an ``AssertionError``, so the exercise fails) names it —
"your unmount of the old root propagated to the host's mount namespace: make / private
first". It takes precedence over what the learner's code raised (a shared mount makes
``pivot_root`` fail with ``EINVAL``; the propagation is the cause). Both namespaces die
with their processes, so nothing leaked anywhere.

API: :func:`sandboxed` (and :func:`changes`, the pure comparison, with :class:`Leak`).
Needs root (``CAP_SYS_ADMIN``): without it :class:`~hardway.errors.PrivilegeError` comes
back, which :func:`~hardway.course.grading.run_check` reports as *not graded*.

>>> a = "36 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw"
>>> b = a + "\\n90 36 0:50 / /tmp/x rw shared:1 - tmpfs tmpfs rw"
>>> [leak.describe() for leak in changes(a, b)]
['your mount on /tmp/x (tmpfs)']
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from hardway.course.checks.child import in_child
from hardway.sys import linux
from hardway.sys.mountinfo import unescape_mount_path

__all__ = ["Leak", "Propagated", "changes", "sandboxed"]

T = TypeVar("T")

#: what to tell a learner whose mount events reached the stand-in
FIX = "make / private first: mount(None, '/', None, MS_REC | MS_PRIVATE)"


@dataclass(frozen=True)
class Leak:
    """One mount that appeared (``"mount"``) or disappeared (``"unmount"``) in the stand-in
    for the host's namespace while the learner's code ran."""

    change: str  # "mount" or "unmount"
    mount_point: str
    fstype: str

    def describe(self) -> str:
        """``your unmount of the old root`` / ``your mount on /tmp/x (tmpfs)``."""
        if self.change == "unmount":
            what = "the old root" if self.mount_point == "/" else self.mount_point
            return f"your unmount of {what}"
        return f"your mount on {self.mount_point} ({self.fstype})"


class Propagated(AssertionError):
    """The learner's mounts or unmounts propagated to (a stand-in for) the host's namespace."""

    def __init__(self, leaks: tuple[Leak, ...] | list[Leak]) -> None:
        first = leaks[0].describe()
        more = f" (and {len(leaks) - 1} more)" if len(leaks) > 1 else ""
        super().__init__(
            f"{first}{more} propagated to the host's mount namespace — the check caught it "
            f"in a stand-in, nothing leaked: {FIX}"
        )
        self.leaks = tuple(leaks)

    def __reduce__(self) -> tuple[object, ...]:  # in_child pickles it back to the check
        return (type(self), (self.leaks,))


def _entries(mountinfo: str) -> dict[str, tuple[str, str]]:
    """mount id → (mount point, fstype) for each line of a mountinfo text."""
    found = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        found[fields[0]] = (unescape_mount_path(fields[4]), fields[dash + 1])
    return found


def changes(before: str, after: str) -> list[Leak]:
    """The mounts that disappeared from, then those that appeared in, a mountinfo text.

    Mount ids tell two mounts on one point apart (a propagated bind mount on a
    directory that was already a mount point).
    """
    old, new = _entries(before), _entries(after)
    gone = [Leak("unmount", *old[i]) for i in old if i not in new]
    came = [Leak("mount", *new[i]) for i in new if i not in old]
    return gone + came


def _mountinfo(proc: int) -> str:
    """The mount table, through a procfs opened before the learner's code ran: a ``/proc``
    of theirs that propagated would cover the stand-in's own."""
    fd = os.open("self/mountinfo", os.O_RDONLY, dir_fd=proc)
    with open(fd, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def _kill_orphans(proc: int) -> None:
    """Kill and reap every child this (subreaper) process still has: processes the
    learner's code left running, even outside the process group ``in_child`` kills."""
    me = str(os.getpid())
    for _ in range(100):
        children = []
        for name in os.listdir(proc):
            if name.isdigit():
                try:
                    fd = os.open(f"{name}/stat", os.O_RDONLY, dir_fd=proc)
                    with open(fd, "rb") as f:
                        stat = f.read().decode(errors="replace")
                except OSError:
                    continue
                if stat.rpartition(")")[2].split()[1] == me:
                    children.append(int(name))
        if not children:
            return
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _learners_child(func: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        # dies with the stand-in, whatever kills it
        linux.set_parent_death_signal(signal.SIGKILL)
        linux.unshare(linux.CLONE_NEWNS)  # a peer of the stand-in's shared mounts
        return func()

    return run


def sandboxed(
    func: Callable[[], T],
    *,
    timeout: float = 30.0,
    what: str = "your code",
    setup: Callable[[], object] | None = None,
) -> T:
    """Run ``func()`` in a mount namespace that is a propagation peer of a stand-in for the
    host's; return what it returned, or raise what it raised.

    :param func: the check's code that calls the learner's (run in the learner's child,
        which already has its own mount namespace, still *shared* with the stand-in)
    :param timeout: seconds the learner's child may take (see ``in_child``)
    :param what: names the learner's code in the messages ("your my_pivot_root")
    :param setup: (optional) run in the stand-in first — mounts made here are shared,
        so the learner's child sees them, and they are never counted as leaks
    :raises Propagated: a mount or unmount of the learner's reached the stand-in
    """

    def stand_in() -> T:
        linux.set_child_subreaper()  # what the learner's code leaves running comes back here
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)  # the host is safe
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_SHARED)  # laid out like it
        proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
        if setup is not None:
            setup()
        before = _mountinfo(proc)
        try:
            result = in_child(_learners_child(func), timeout=timeout, what=what)
        except BaseException:
            leaks = changes(before, _mountinfo(proc))
            if leaks:
                raise Propagated(leaks) from None
            raise
        finally:
            _kill_orphans(proc)
        leaks = changes(before, _mountinfo(proc))
        if leaks:
            raise Propagated(leaks)
        return result

    return in_child(stand_in, timeout=timeout + 10, what=what)


if __name__ == "__main__":  # a demo: the same bind mount, without and with MS_PRIVATE
    import tempfile

    target = tempfile.mkdtemp(prefix="hardway-mounts-")

    def bind(private: bool) -> Callable[[], str]:
        def run() -> str:
            if private:
                linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
            linux.mount(target, target, None, linux.MS_BIND)
            return "bound"

        return run

    for private in (False, True):
        try:
            print(f"private={private}:", sandboxed(bind(private)))
        except Propagated as exc:
            print(f"private={private}:", exc)
    os.rmdir(target)
