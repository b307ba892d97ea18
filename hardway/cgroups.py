"""hardway.cgroups
~~~~~~~~~~~~~~~

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
hand them a fake tree. A later chapter adds the limits themselves.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["DEFAULT_ROOT", "CgroupMode", "Mount", "detect", "parse_mountinfo", "usable_controllers"]

#: where every distribution mounts cgroups
DEFAULT_ROOT = Path("/sys/fs/cgroup")

#: v1 super-options that are not controller names
_V1_FLAGS = frozenset(
    {"rw", "ro", "nosuid", "nodev", "noexec", "relatime", "noatime", "xattr", "noprefix"}
    | {"clone_children", "cpuset_v2_mode", "favordynmods"}
)

Version = Literal["v1", "v2", "hybrid", "none"]


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/<pid>/mountinfo``: the fields this module needs."""

    mount_point: Path
    root: str  #: the directory of the filesystem that is mounted there
    fstype: str
    super_options: tuple[str, ...]


def _unescape(field: str) -> str:
    r"""The kernel writes space, tab, newline and backslash in paths as octal escapes.

    >>> _unescape(r"/mnt/my\040disk")
    '/mnt/my disk'
    """
    for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, char)
    return field


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse mountinfo text: ``ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS…] - TYPE SOURCE SUPER``.

    >>> m = parse_mountinfo("35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory")
    >>> m[0].fstype, m[0].mount_point, m[0].super_options
    ('cgroup', PosixPath('/sys/fs/cgroup/memory'), ('rw', 'memory'))
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue  # not a mountinfo line
        dash = fields.index("-", 6)
        fstype = fields[dash + 1]
        super_options = fields[dash + 3] if len(fields) > dash + 3 else ""
        point, root = Path(_unescape(fields[4])), _unescape(fields[3])
        mounts.append(Mount(point, root, fstype, tuple(super_options.split(","))))
    return mounts


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


if __name__ == "__main__":
    found = detect()
    print(found.describe())
    print(usable_controllers(found, ("memory", "cpu", "pids")))
