"""hardway.isolation.group
~~~~~~~~~~~~~~~~~~~~~~~

A cgroup is a directory: ``mkdir`` makes one, writing a pid to its ``cgroup.procs``
moves a process in (and its future children are born there), writing to its interface
files sets limits, and ``rmdir`` removes it once no process is left. A :class:`Group`
is one such cgroup for one container, in whichever design the machine has
(:mod:`hardway.isolation.cgroups` tells which): it is made with
:class:`~hardway.isolation.limits.Limits` for memory, CPU and process count, takes
processes, reads back what the kernel counted (:mod:`hardway.isolation.stats`) and is
removed at the end of its ``with`` block, with whatever is still running in it.

The order matters, and :meth:`Group.create` keeps it: on v2 a controller must be
enabled in the parent's ``cgroup.subtree_control`` before a child group can use it,
and a limit is written before any process joins — a container must never run a moment
unlimited.

>>> v2 = CgroupMode("v2", Path("/c"), {}, ("memory", "cpu", "pids"), Path("/c"))
>>> group = Group(Limits(pids=8), label="demo", mode=v2, parent="/c")
>>> group.version, group.procs_files[0].startswith("/c/hardway-demo-")
('v2', True)
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from pathlib import Path

from hardway.errors import CgroupError
from hardway.isolation.cgroups import (
    CONTROLLERS,
    CgroupMode,
    detect,
    group_name,
    own_cgroups,
    read_words,
    remove_dir,
    require_delegation,
)
from hardway.isolation.limits import Limits, cpu_max, cpu_quota, weight_to_shares
from hardway.isolation.stats import Stats, read_stats

__all__ = ["Group"]


class Group:
    """One cgroup for one container, in whichever design the machine has.

    v2 makes one directory in the unified tree and turns on ``memory``, ``cpu`` and
    ``pids`` for it in the parent's ``cgroup.subtree_control``; v1 (and hybrid, where the
    controllers live on v1) makes one directory of the same name in each controller's
    hierarchy — one for ``cpu`` and ``cpuacct`` where they are co-mounted, as on most
    distributions. Every file read or written is under the *mode*'s root, so tests hand in
    a fake tree.

    >>> with Group(Limits(memory="64M", pids=32), label="demo") as group:   # doctest: +SKIP
    ...     run(Isolation(cgroup_procs=group.procs_files), [...])
    ...     print(group.stats())

    :param limits: what to limit; the group is made in all three controllers anyway
    :param label: (optional) part of the name, e.g. ``"hog"``
    :param mode: (optional) default: :func:`detect`
    :param parent: (optional) make the group here (v2) or under this path inside each
        hierarchy (v1); default: the root for root (v2), this process's own cgroup (v1),
        the delegated sub-tree without root (:func:`require_delegation`)
    :param name: (optional) the group's own name; default: a fresh ``hardway-LABEL-…``
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        label: str = "box",
        mode: CgroupMode | None = None,
        parent: Path | str | None = None,
        proc_self_cgroup: str | None = None,
        name: str | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.mode = mode if mode is not None else detect()
        self.name = name if name is not None else group_name(label)
        self.version = self._choose_version()
        self.paths = self._paths(parent, proc_self_cgroup)
        self.created = False

    def __repr__(self) -> str:
        return f"<Group {self.name} ({self.version}) {self.limits!r}>"

    def _choose_version(self) -> str:
        mode = self.mode
        if mode.v2_path is not None and all(c in mode.v2_controllers for c in CONTROLLERS):
            return "v2"
        if all(c in mode.v1_controllers for c in CONTROLLERS):
            return "v1"
        have = ", ".join(mode.controllers) or "none"
        raise CgroupError(
            f"memory, cpu and pids must all be on cgroup v1 or all on v2; this machine "
            f"({mode.version}) offers: {have}",
            fix="python -m hardway doctor   (it shows the cgroup setup and how to change it)",
        )

    def _paths(self, parent: Path | str | None, proc_self_cgroup: str | None) -> dict[str, Path]:
        mode = self.mode
        if self.version == "v2":
            assert mode.v2_path is not None
            if parent is None:
                parent = mode.v2_path if os.geteuid() == 0 else require_delegation(mode)
            return dict.fromkeys(CONTROLLERS, Path(parent) / self.name)
        if os.geteuid() != 0 and parent is None:
            require_delegation(mode)  # raises: v1 is never delegated
        own = own_cgroups(proc_self_cgroup) if parent is None else {}
        paths = {}
        for controller in (*CONTROLLERS, "cpuacct"):
            if controller not in mode.v1_controllers:
                continue
            hierarchy = mode.v1_controllers[controller]
            inside = str(parent) if parent is not None else own.get(controller, "/")
            top = hierarchy / inside.strip("/")
            paths[controller] = (top if top.is_dir() else hierarchy) / self.name
        return paths

    @property
    def directories(self) -> list[Path]:
        """Each directory of this group (one on v2; one per hierarchy on v1)."""
        return sorted(set(self.paths.values()))

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes its pid to, to join the group."""
        return [str(d / "cgroup.procs") for d in self.directories]

    # -- lifecycle

    def __enter__(self) -> Group:
        return self.create()

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def create(self) -> Group:
        """Make the directories and write the limits; on an error, nothing stays."""
        try:
            if self.version == "v2":
                self._enable_v2_controllers()
            for directory in self.directories:
                directory.mkdir()
                self.created = True
            self._write_limits()
        except OSError as exc:
            self.remove()
            raise CgroupError(
                f"cannot set up cgroup {self.name}: {exc.strerror or exc} ({exc.filename or ''})",
                fix="python -m hardway doctor",
            ) from exc
        except BaseException:  # a KeyboardInterrupt between two steps: __exit__ won't run
            self.remove()
            raise
        return self

    def _enable_v2_controllers(self) -> None:
        subtree = self.paths["memory"].parent / "cgroup.subtree_control"
        missing = [c for c in CONTROLLERS if c not in read_words(subtree)]
        if missing:
            subtree.write_text(" ".join(f"+{c}" for c in missing))

    def _write(self, controller: str, name: str, value: object) -> None:
        (self.paths[controller] / name).write_text(f"{value}\n")

    def _write_limits(self) -> None:
        limits = self.limits
        if self.version == "v2":
            if limits.memory is not None:
                self._write("memory", "memory.max", limits.memory)
                if (self.paths["memory"] / "memory.swap.max").exists():
                    self._write("memory", "memory.swap.max", 0)  # OOM, not swap
            if limits.cpus is not None:
                self._write("cpu", "cpu.max", cpu_max(limits.cpus, limits.period))
            if limits.cpu_weight is not None:
                self._write("cpu", "cpu.weight", limits.cpu_weight)
            if limits.pids is not None:
                self._write("pids", "pids.max", limits.pids)
            return
        if limits.memory is not None:
            self._write("memory", "memory.limit_in_bytes", limits.memory)
            if (self.paths["memory"] / "memory.memsw.limit_in_bytes").exists():
                self._write("memory", "memory.memsw.limit_in_bytes", limits.memory)
        if limits.cpus is not None:
            quota, period = cpu_quota(limits.cpus, limits.period)
            self._write("cpu", "cpu.cfs_period_us", period)
            self._write("cpu", "cpu.cfs_quota_us", quota)
        if limits.cpu_weight is not None:
            self._write("cpu", "cpu.shares", weight_to_shares(limits.cpu_weight))
        if limits.pids is not None:
            self._write("pids", "pids.max", limits.pids)

    def add(self, pid: int) -> None:
        """Move process *pid* into the group (its future children are born in it)."""
        for procs in self.procs_files:
            Path(procs).write_text(f"{pid}\n")

    def pids(self) -> list[int]:
        """The processes in the group now."""
        found: set[int] = set()
        for directory in self.directories:
            found |= {int(p) for p in read_words(directory / "cgroup.procs")}
        return sorted(found)

    def stats(self) -> Stats:
        """Read the kernel's counters (see :class:`~hardway.isolation.stats.Stats`)."""
        return read_stats(self.version, self.paths)

    def kill(self) -> None:
        """SIGKILL every process in the group (v2: through ``cgroup.kill`` when the
        kernel has it, which also catches processes forking right now)."""
        kill_file = self.paths["pids"] / "cgroup.kill"
        if self.version == "v2" and kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1\n")
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left inside, then remove every directory; idempotent."""
        deadline = time.monotonic() + timeout
        for directory in reversed(self.directories):
            while directory.exists():
                self.kill()
                try:
                    remove_dir(directory)
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CgroupError(
                            f"cannot remove cgroup {directory}: {exc.strerror}",
                            fix="python -m hardway cleanup",
                        ) from exc
                    time.sleep(0.01)
        self.created = False
