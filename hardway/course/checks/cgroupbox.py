"""hardway.course.checks.cgroupbox
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

The safety net of the cgroup checks (labs 03 and 04). A learner's ``my_cgroup`` makes a
real cgroup, so every check makes a *parent* of its own first — ``hardway-lab03-….sSESSION``,
found by ``python -m hardway cleanup`` if a run is killed — and hands the learner a name
under it. The parent carries limits of its own (memory, process count): a learner whose
limit is missing, written to the wrong file or set on the wrong group still runs inside
it, so a fork bomb or a memory hog stays bounded whatever the learner wrote. On the way
out, every process in the parent's sub-tree is killed and every group in it removed,
deepest first — also the ones the learner made and forgot.

On cgroup v2 the parent has ``memory``, ``cpu`` and ``pids`` available (enabled in its
own parent's ``cgroup.subtree_control``) but does *not* hand them down: that write is
the learner's. On v1 (and hybrid, where these controllers live on v1) the parent is one
directory of the same name at the top of the ``memory``, ``cpu`` and ``pids``
hierarchies, so a learner's name is the same path in each.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hardway.isolation.cgroups import CgroupMode, detect, read_words, remove_dir
from hardway.isolation.group import Group
from hardway.isolation.limits import Limits

__all__ = ["HIERARCHIES", "Parent", "kill_tree", "parent", "remove_tree", "version"]

#: the v1 hierarchies a lab's group lives in
HIERARCHIES = ("memory", "cpu", "pids")
#: the parent's own limits: the ceiling whatever the learner writes below it
SAFETY_MEMORY = 512 << 20
SAFETY_PIDS = 64
#: the leaf of the parent where a check's child runs (see :meth:`Parent.enter`)
RUNNER = "check"


def version(mode: CgroupMode | None = None) -> str:
    """``"v2"`` when memory, cpu and pids are all on the unified hierarchy, else ``"v1"``
    (the course's own rule, :class:`~hardway.isolation.group.Group`'s)."""
    mode = mode if mode is not None else detect()
    wanted = ("memory", "cpu", "pids")
    if mode.v2_path is not None and all(c in mode.v2_controllers for c in wanted):
        return "v2"
    return "v1"


@dataclass(frozen=True)
class Parent:
    """The check's parent group: where the learner's groups go."""

    version: str
    root: Path  #: v2: the cgroup2 mount; v1: ``/sys/fs/cgroup`` (the hierarchies' parent)
    name: str  #: the parent's path relative to each hierarchy's top
    group: Group

    def directory(self, controller: str = "memory") -> Path:
        """The parent's directory (v1: in *controller*'s hierarchy)."""
        return self.group.paths[controller]

    def child(self, leaf: str, controller: str = "memory") -> Path:
        """Where the learner's group named ``{name}/{leaf}`` is, in *controller*'s hierarchy."""
        return self.directory(controller) / leaf

    @property
    def directories(self) -> list[Path]:
        return self.group.directories

    def enter(self) -> None:
        """Move the calling process into the parent's ``check`` leaf, next to the
        learner's groups: whatever it starts — a learner's runtime that never joins its
        own group, a fork bomb — stays under the parent's limits (v2 forbids processes
        in the parent itself once it hands controllers down)."""
        for directory in self.directories:
            (directory / RUNNER / "cgroup.procs").write_text("0\n")


@contextlib.contextmanager
def parent(label: str = "lab03") -> Iterator[Parent]:
    """Make the check's parent group; kill and remove its whole sub-tree afterwards."""
    mode = detect()
    found = version(mode)
    safety = Limits(memory=SAFETY_MEMORY, pids=SAFETY_PIDS)
    group = Group(safety, label=label, mode=mode, parent=None if found == "v2" else "/")
    group.create()  # raises PrivilegeError/DelegationError-like errors: not graded
    try:
        if found == "v2":
            top = mode.v2_path
            assert top is not None
            swap = group.paths["memory"] / "memory.swap.max"
            if swap.exists():
                swap.write_text("0\n")  # an OOM, not swapping, below the parent
            name = str(group.paths["memory"].relative_to(top))
            root = top
        else:
            name = group.name
            root = mode.v1_controllers["memory"].parent
        for directory in group.directories:
            (directory / RUNNER).mkdir()
        yield Parent(found, root, name, group)
    finally:
        for directory in group.directories:
            remove_tree(directory)


def _descendants(directory: Path) -> list[Path]:
    """*directory* and every group below it, deepest first."""
    found = [Path(here) for here, _, _ in os.walk(directory)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def kill_tree(directory: Path) -> None:
    """SIGKILL every process in *directory*'s sub-tree (v2: ``cgroup.kill`` too, which
    also catches processes forking right now)."""
    kill_file = directory / "cgroup.kill"
    if kill_file.exists():
        with contextlib.suppress(OSError):
            kill_file.write_text("1\n")
    for _ in range(50):  # a fork bomb forks while we read: read until nobody is left
        pids = [p for d in _descendants(directory) for p in read_words(d / "cgroup.procs")]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.02)


def remove_tree(directory: Path, timeout: float = 10.0) -> None:
    """Kill what runs in *directory*'s sub-tree, then remove its groups, deepest first."""
    if not directory.exists():
        return
    kill_tree(directory)
    deadline = time.monotonic() + timeout
    for here in _descendants(directory):
        while here.exists():
            try:
                remove_dir(here)
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                    raise
                kill_tree(here)
                time.sleep(0.02)
