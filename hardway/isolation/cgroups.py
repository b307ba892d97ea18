"""hardway.isolation.cgroups
~~~~~~~~~~~~~~~~~~~~~~~~~

Control groups limit what a group of processes may use (memory, CPU time, process
count). Linux has two designs of the same idea, and a machine can mount either or both:

* **v1**: one hierarchy per controller (``/sys/fs/cgroup/memory``, ``…/cpu``, …), each
  its own ``cgroup`` mount whose super-options name the controllers it carries;
* **v2**: one unified ``cgroup2`` hierarchy at ``/sys/fs/cgroup``; its
  ``cgroup.controllers`` lists the controllers, ``cgroup.subtree_control`` the ones
  handed down to child groups;
* **hybrid**: v1 hierarchies plus a (usually controller-less) ``cgroup2`` mount at
  ``/sys/fs/cgroup/unified`` that systemd uses only to track processes.

So before limiting anything, chapter 03 asks the kernel which one it has: by reading
``/proc/self/mountinfo`` (:func:`detect`, a pure function of that text and of the files
under *root*), then by actually creating and removing a test group per controller
(:func:`usable_controllers`). Both take the cgroup root as a parameter, so the tests can
hand them a fake tree.

Then the limits: a :class:`Group` (a context manager) is made with
:class:`~hardway.isolation.limits.Limits` for memory, CPU and process count, takes processes, and
reads back what the kernel counted (:class:`Stats`: OOM kills, throttled periods, forks
refused). Its files, too, are all under the root it was given. Without root, groups
can only be made in a sub-tree systemd delegated to the user (cgroup v2 only):
:func:`find_delegation` looks for one and :func:`require_delegation` explains how to
get one when there is none.
"""

from __future__ import annotations

import contextlib
import errno
import html
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hardway.errors import CgroupError, DelegationError
from hardway.isolation.limits import Limits, cpu_max, cpu_quota, parse_keyed, weight_to_shares
from hardway.sys.mountinfo import parse_mountinfo
from hardway.sys.state import session_from_env

__all__ = [
    "CONTROLLERS",
    "DEFAULT_ROOT",
    "PREFIX",
    "CgroupMode",
    "Group",
    "Limits",
    "Stats",
    "detect",
    "find_delegation",
    "find_groups",
    "group_name",
    "in_session",
    "own_cgroups",
    "remove_group",
    "require_delegation",
    "usable_controllers",
]

#: where every distribution mounts cgroups
DEFAULT_ROOT = Path("/sys/fs/cgroup")

#: v1 super-options that are not controller names
_V1_FLAGS = frozenset(
    {"rw", "ro", "nosuid", "nodev", "noexec", "relatime", "noatime", "xattr", "noprefix"}
    | {"clone_children", "cpuset_v2_mode", "favordynmods"}
)

Version = Literal["v1", "v2", "hybrid", "none"]


@dataclass(frozen=True)
class CgroupMode:
    """Which cgroup design this machine mounts, and where.

    ``v1_controllers`` maps each v1 controller to its hierarchy (``cpu`` and ``cpuacct``
    map to the same directory when co-mounted); ``v2_controllers`` lists what the
    ``cgroup2`` root offers (empty in the usual hybrid setup).
    """

    version: Version
    root: Path  #: the cgroup tree's top (``/sys/fs/cgroup``, or a fake one in tests)
    v1_controllers: dict[str, Path] = field(default_factory=dict)
    v2_controllers: tuple[str, ...] = ()
    v2_path: Path | None = None  #: where the ``cgroup2`` hierarchy is mounted
    v1_named: tuple[str, ...] = ()  #: controller-less v1 hierarchies (``name=systemd``)

    @property
    def controllers(self) -> dict[str, str]:
        """Every controller available, mapped to the design that carries it.

        >>> mode = CgroupMode("hybrid", DEFAULT_ROOT, {"pids": DEFAULT_ROOT / "pids"}, ("hugetlb",))
        >>> mode.controllers
        {'hugetlb': 'v2', 'pids': 'v1'}
        """
        both = dict.fromkeys(self.v2_controllers, "v2") | dict.fromkeys(self.v1_controllers, "v1")
        return dict(sorted(both.items()))

    def describe(self) -> str:
        """One line for a report.

        >>> CgroupMode("none", DEFAULT_ROOT).describe()
        'no cgroup filesystem mounted'
        """
        if self.version == "none":
            return "no cgroup filesystem mounted"
        parts = []
        if self.v1_controllers:
            parts.append(f"v1 controllers {', '.join(sorted(self.v1_controllers))}")
        if self.v2_path is not None:
            offered = ", ".join(self.v2_controllers) or "no controllers"
            parts.append(f"cgroup2 at {self.v2_path} with {offered}")
        return f"{self.version}: " + "; ".join(parts)


def _rebase(mount_point: Path, root: Path) -> Path:
    """Read a mount point under the standard ``/sys/fs/cgroup`` relative to *root*."""
    if mount_point.is_relative_to(DEFAULT_ROOT):
        return root / mount_point.relative_to(DEFAULT_ROOT)
    return mount_point


def _read_words(path: Path) -> tuple[str, ...]:
    try:
        return tuple(path.read_text().split())
    except OSError:
        return ()


def detect(mountinfo: str | None = None, root: Path = DEFAULT_ROOT) -> CgroupMode:
    """Tell v1, v2, hybrid and none apart from mountinfo text (default: this process's).

    Mount points under ``/sys/fs/cgroup`` are looked up relative to *root*, where the
    v2 hierarchy's ``cgroup.controllers`` is read; tests pass a fake tree.

    >>> detect("40 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw", Path("/nowhere")).version
    'v2'
    """
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    v1: dict[str, Path] = {}
    named: list[str] = []
    v2_path: Path | None = None
    for mount in parse_mountinfo(mountinfo):
        if mount.fstype == "cgroup2" and v2_path is None:
            v2_path = _rebase(mount.mount_point, root)
        elif mount.fstype == "cgroup":
            names = [o for o in mount.super_options if o not in _V1_FLAGS and "=" not in o]
            named += [o.removeprefix("name=") for o in mount.super_options if o.startswith("name=")]
            for name in names:
                v1.setdefault(name, _rebase(mount.mount_point, root))
    version: Version = (
        ("hybrid" if v2_path else "v1") if v1 or named else ("v2" if v2_path else "none")
    )
    v2 = _read_words(v2_path / "cgroup.controllers") if v2_path else ()
    return CgroupMode(version, root, v1, v2, v2_path, tuple(named))


def _can_make_group(parent: Path) -> bool:
    """Create and remove a test group under *parent*: the only sure test of permission."""
    probe = parent / f"hardway-probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        probe.mkdir()
    except OSError:
        return False
    with contextlib.suppress(OSError):  # made but busy: it still proves the point
        probe.rmdir()
    return True


def usable_controllers(mode: CgroupMode, wanted: tuple[str, ...] | None = None) -> dict[str, bool]:
    """For each controller (default: all that *mode* knows), can we make a group with it?

    v1: a test group made and removed in the controller's hierarchy. v2: the controller
    is offered at the ``cgroup2`` root, is enabled for children in
    ``cgroup.subtree_control`` (or we may enable it there), and a test group can be
    made. Only the top of each hierarchy is tried; delegated sub-trees (rootless cgroup
    v2) are a later chapter's business. Nothing is left behind.
    """
    names = wanted if wanted is not None else tuple(mode.controllers)
    v2_ok: bool | None = None  # one test group answers for every v2 controller
    usable: dict[str, bool] = {}
    for name in names:
        if name in mode.v1_controllers:
            usable[name] = _can_make_group(mode.v1_controllers[name])
        elif name in mode.v2_controllers and mode.v2_path is not None:
            subtree = mode.v2_path / "cgroup.subtree_control"
            enabled = name in _read_words(subtree) or os.access(subtree, os.W_OK)
            if v2_ok is None:
                v2_ok = _can_make_group(mode.v2_path)
            usable[name] = enabled and v2_ok
        else:
            usable[name] = False
    return usable


# -- groups: make one, limit it, put processes in, read what happened, remove it -----------

#: every group this course makes is named ``hardway-…``, so cleanup can find it
PREFIX = "hardway-"
#: the controllers a group is made in (whether or not a limit is set: their usage is read)
CONTROLLERS = ("memory", "cpu", "pids")


def group_name(label: str = "box", session: str | None = None) -> str:
    """A fresh, recognisable group name: ``hardway-LABEL-RANDOM[.sSESSION]``.

    The session tag (from ``HARDWAY_SESSION``) tells one test run's groups from another's.

    >>> group_name("hog", session="0123456789abcdef").startswith("hardway-hog-")
    True
    >>> group_name("hog", session="0123456789abcdef").endswith(".s01234567")
    True
    """
    session = session if session is not None else session_from_env() or ""
    tag = f".s{session[:8]}" if session else ""
    return f"{PREFIX}{label}-{secrets.token_hex(4)}{tag}"


def own_cgroups(text: str | None = None) -> dict[str, str]:
    """This process's cgroup per controller, from ``/proc/self/cgroup`` text; v2 is ``""``.

    >>> own_cgroups("4:memory:/a/b\\n1:cpu,cpuacct:/\\n0::/user.slice")
    {'memory': '/a/b', 'cpu': '/', 'cpuacct': '/', '': '/user.slice'}
    """
    if text is None:
        text = Path("/proc/self/cgroup").read_text()
    found: dict[str, str] = {}
    for line in text.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        names = [""] if hierarchy == "0" else controllers.split(",")
        for name in names:
            found.setdefault(name, path)
    return found


def find_delegation(
    mode: CgroupMode, proc_self_cgroup: str | None = None, uid: int | None = None
) -> Path | None:
    """The cgroup v2 sub-tree that systemd delegated to *uid* and this process sits in.

    Without root, a cgroup can only be made where the files that matter belong to you.
    systemd hands each user such a sub-tree, ``user@UID.service`` (``Delegate=yes``): the
    directory, its ``cgroup.procs`` and ``cgroup.subtree_control`` are chowned to the
    user. Only processes *inside* it may use it (moving a process needs write access to
    the ``cgroup.procs`` of the common ancestor), so a notebook started from a login
    session (``session-N.scope``) is not, and one started with
    ``systemd-run --user --scope …`` is. v1 is never delegated: ``None``.
    """
    if mode.v2_path is None or mode.version != "v2":
        return None
    uid = os.geteuid() if uid is None else uid
    path = own_cgroups(proc_self_cgroup).get("")
    if path is None:
        return None
    found = None
    here = mode.v2_path / path.strip("/")
    while here != mode.v2_path and here.is_relative_to(mode.v2_path):
        try:
            owned = all(
                (here / name).stat().st_uid == uid
                for name in (".", "cgroup.procs", "cgroup.subtree_control")
            )
        except OSError:
            owned = False
        if owned:
            found = here  # keep climbing: the top of the delegated sub-tree wins
        elif found is not None:
            break
        here = here.parent
    return found


_DELEGATE_FIX = (
    "run as root, or on a cgroup v2 machine start Jupyter inside your delegated sub-tree: "
    "systemd-run --user --scope -p Delegate=yes jupyter lab   (for cpu too, add "
    "/etc/systemd/system/user@.service.d/delegate.conf with [Service] "
    "Delegate=cpu cpuset io memory pids, then systemctl daemon-reload)"
)


def require_delegation(mode: CgroupMode, proc_self_cgroup: str | None = None) -> Path:
    """The delegated parent for a rootless group, or a :class:`DelegationError` saying why
    there is none and how to get one."""
    if mode.version in ("v1", "hybrid") and not mode.v2_controllers:
        raise DelegationError(
            f"this machine uses cgroup {mode.version} for memory, cpu and pids, and v1 "
            "cannot be delegated to an unprivileged user: only root can limit a container here",
            fix=_DELEGATE_FIX,
        )
    found = find_delegation(mode, proc_self_cgroup)
    if found is None:
        raise DelegationError(
            "no cgroup is delegated to you: this process is not inside a sub-tree whose "
            "cgroup.procs and cgroup.subtree_control belong to you",
            fix=_DELEGATE_FIX,
        )
    offered = set(_read_words(found / "cgroup.controllers"))
    missing = [c for c in CONTROLLERS if c not in offered]
    if missing:
        raise DelegationError(
            f"the delegated cgroup {found} lacks the controller(s) {', '.join(missing)}",
            fix=_DELEGATE_FIX,
        )
    return found


@dataclass(frozen=True)
class Stats:
    """What the kernel counted for one group; ``None`` where this machine does not say.

    ``oom_kills`` and ``memory_limit_hits`` come from v2 ``memory.events`` (``oom_kill``,
    ``max``) or v1 ``memory.oom_control`` (``oom_kill``) and ``memory.failcnt``;
    ``nr_throttled``/``throttled_usec`` from ``cpu.stat`` in both versions (v1 counts
    ``throttled_time`` in ns); ``pids_refused`` from ``pids.events`` (``max``): forks
    refused at the limit.
    """

    version: str
    memory_current: int | None = None
    memory_max: int | None = None
    oom_kills: int = 0
    memory_limit_hits: int = 0
    cpu_usage_usec: int | None = None
    nr_periods: int = 0
    nr_throttled: int = 0
    throttled_usec: int = 0
    pids_current: int | None = None
    pids_max: int | None = None
    pids_refused: int = 0

    @property
    def oom_killed(self) -> bool:
        return self.oom_kills > 0

    @property
    def throttled(self) -> bool:
        return self.nr_throttled > 0

    @property
    def pids_limited(self) -> bool:
        return self.pids_refused > 0

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) pairs for a table."""

        def show(value: int | None, unit: str = "") -> str:
            return "–" if value is None else f"{value:,}{unit}"

        return [
            ("cgroup version", self.version),
            ("memory in use", show(self.memory_current, " B")),
            ("memory limit", show(self.memory_max, " B")),
            ("times the memory limit was hit", show(self.memory_limit_hits)),
            ("OOM kills", show(self.oom_kills)),
            ("CPU time used", show(self.cpu_usage_usec, " µs")),
            ("periods throttled / run", f"{self.nr_throttled:,} / {self.nr_periods:,}"),
            ("time throttled", show(self.throttled_usec, " µs")),
            ("processes now / limit", f"{show(self.pids_current)} / {show(self.pids_max)}"),
            ("forks refused at the limit", show(self.pids_refused)),
        ]

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self.rows())
        return "\n".join(f"{k:<{width}}  {v}" for k, v in self.rows())

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        cells = "".join(
            f"<tr><td style='text-align:left'>{html.escape(k)}</td>"
            f"<td style='text-align:right'>{html.escape(v)}</td></tr>"
            for k, v in self.rows()
        )
        return {"text/plain": str(self), "text/html": f"<table>{cells}</table>"}


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _keyed(path: Path) -> dict[str, int]:
    try:
        return parse_keyed(path.read_text())
    except OSError:
        return {}


_UNLIMITED_V1 = 1 << 62  # v1 writes "no limit" as a huge number (PAGE_COUNTER_MAX pages)


class Group:
    """One cgroup for one container, in whichever design the machine has.

    v2 makes one directory in the unified tree and turns on ``memory``, ``cpu`` and
    ``pids`` for it in the parent's ``cgroup.subtree_control``; v1 (and hybrid, where the
    controllers live on v1) makes one directory of the same name in each controller's
    hierarchy. Every file read or written is under the *mode*'s root, so tests hand in
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
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        label: str = "box",
        mode: CgroupMode | None = None,
        parent: Path | str | None = None,
        proc_self_cgroup: str | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.mode = mode if mode is not None else detect()
        self.name = group_name(label)
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
        missing = [c for c in CONTROLLERS if c not in _read_words(subtree)]
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
            found |= {int(p) for p in _read_words(directory / "cgroup.procs")}
        return sorted(found)

    def stats(self) -> Stats:
        """Read the kernel's counters (see :class:`Stats`)."""
        mem, cpu, pids = (self.paths[c] for c in CONTROLLERS)
        pid_counts = {
            "pids_current": _read_int(pids / "pids.current"),
            "pids_max": _read_int(pids / "pids.max"),
            "pids_refused": _keyed(pids / "pids.events").get("max", 0),
        }
        cpu_stat = _keyed(cpu / "cpu.stat")
        periods = {k: cpu_stat.get(k, 0) for k in ("nr_periods", "nr_throttled")}
        if self.version == "v2":
            events = _keyed(mem / "memory.events")
            return Stats(
                "v2",
                memory_current=_read_int(mem / "memory.current"),
                memory_max=_read_int(mem / "memory.max"),
                oom_kills=events.get("oom_kill", 0),
                memory_limit_hits=events.get("max", 0),
                cpu_usage_usec=cpu_stat.get("usage_usec"),
                throttled_usec=cpu_stat.get("throttled_usec", 0),
                **periods,
                **pid_counts,
            )
        limit = _read_int(mem / "memory.limit_in_bytes")
        usage_ns = _read_int(self.paths.get("cpuacct", cpu) / "cpuacct.usage")
        return Stats(
            "v1",
            memory_current=_read_int(mem / "memory.usage_in_bytes"),
            memory_max=None if limit is None or limit >= _UNLIMITED_V1 else limit,
            oom_kills=_keyed(mem / "memory.oom_control").get("oom_kill", 0),
            memory_limit_hits=_read_int(mem / "memory.failcnt") or 0,
            cpu_usage_usec=None if usage_ns is None else usage_ns // 1000,
            throttled_usec=cpu_stat.get("throttled_time", 0) // 1000,
            **periods,
            **pid_counts,
        )

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
                    _remove_dir(directory)
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CgroupError(
                            f"cannot remove cgroup {directory}: {exc.strerror}",
                            fix="python -m hardway cleanup",
                        ) from exc
                    time.sleep(0.01)
        self.created = False


def _remove_dir(directory: Path) -> None:
    """``rmdir`` a cgroup. A real one is removable with its interface files in it; a
    directory of the fake test tree is not, so those files go first (a childless
    cgroup never gives ``ENOTEMPTY``)."""
    try:
        directory.rmdir()
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
        for entry in directory.iterdir():
            if entry.is_file():
                entry.unlink()
        directory.rmdir()


def in_session(name: str, session: str | None) -> bool:
    """Is ``name`` (a group or runc container) tagged with ``session``? Any is, without one.

    >>> in_session("hardway-box-1a2b.s01234567", "0123456789ab"), in_session("hardway-x", "")
    (True, True)
    >>> in_session("hardway-box-1a2b.s76543210", "0123456789ab")
    False
    """
    _, _, tag = name.rpartition(".s")
    return not session or ("." in name and tag == session[:8])


def find_groups(
    mode: CgroupMode | None = None, depth: int = 4, *, session: str | None = None
) -> list[Path]:
    """Every ``hardway-…`` group in every hierarchy (not descending into them), sorted.

    Only ``session``'s groups (default: ``HARDWAY_SESSION``, when set): a test run or a
    notebook under nbval must not see another run's groups; ``session=""`` lists all.
    """
    mode = mode if mode is not None else detect()
    session = session if session is not None else session_from_env() or ""
    tops = {*mode.v1_controllers.values(), *([mode.v2_path] if mode.v2_path else [])}
    found: list[Path] = []
    for top in tops:
        base = len(top.parts)
        for here, dirs, _ in os.walk(top):
            at = Path(here)
            mine = [d for d in dirs if d.startswith(PREFIX)]
            found += [
                at / d
                for d in mine
                if not d.startswith(f"{PREFIX}probe-") and in_session(d, session)
            ]
            dirs[:] = [] if len(at.parts) - base >= depth else [d for d in dirs if d not in mine]
    return sorted(found)


def remove_group(path: Path, timeout: float = 5.0) -> None:
    """Kill the processes of one group directory found by :func:`find_groups`, remove it."""
    deadline = time.monotonic() + timeout
    while path.exists():
        for pid in _read_words(path / "cgroup.procs"):
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            _remove_dir(path)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise CgroupError(f"cannot remove cgroup {path}: {exc.strerror}") from exc
            time.sleep(0.02)


if __name__ == "__main__":
    found = detect()
    print(found.describe())
    print(usable_controllers(found, ("memory", "cpu", "pids")))
