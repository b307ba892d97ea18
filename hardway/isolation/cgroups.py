"""hardway.isolation.cgroups
~~~~~~~~~~~~~~~~~~~~~~~~~

Control groups limit what a group of processes may use (memory, CPU time, process
count). Linux has two designs of the same idea, and a machine can mount either or both:

* **v2**, the default of current distributions (Debian 12+, Ubuntu 22.04+): one unified
  ``cgroup2`` hierarchy at ``/sys/fs/cgroup``; its ``cgroup.controllers`` lists the
  controllers, ``cgroup.subtree_control`` the ones handed down to child groups;
* **v1**: a hierarchy per controller or per set of controllers mounted together
  (``/sys/fs/cgroup/memory``, and on most distributions ``cpu`` and ``cpuacct`` in one,
  ``…/cpu,cpuacct``), each its own ``cgroup`` mount whose super-options name the
  controllers it carries;
* **hybrid**: v1 hierarchies plus a (usually controller-less) ``cgroup2`` mount at
  ``/sys/fs/cgroup/unified`` that systemd uses only to track processes.

So before limiting anything, chapter 03 asks the kernel which one it has: by reading
``/proc/self/mountinfo`` (:func:`detect`, a pure function of that text and of the files
under *root*), then by actually creating and removing a test group per controller
(:func:`usable_controllers`). Both take the cgroup root as a parameter, so the tests can
hand them a fake tree.

Without root, groups can only be made in a sub-tree systemd delegated to the user
(cgroup v2 only): :func:`find_delegation` looks for one and :func:`require_delegation`
explains how to get one when there is none. Every group the course makes is named
``hardway-…`` (:func:`group_name`), so that :func:`find_groups` and
:func:`remove_group` find and remove what a crashed run left behind.

A group itself — made with limits, joined, counted, removed — is
:class:`hardway.isolation.group.Group`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hardway.errors import CgroupError, DelegationError
from hardway.sys.mountinfo import parse_mountinfo
from hardway.sys.state import session_from_env

__all__ = [
    "CONTROLLERS",
    "DEFAULT_ROOT",
    "PREFIX",
    "CgroupMode",
    "detect",
    "find_delegation",
    "find_groups",
    "group_name",
    "in_session",
    "own_cgroups",
    "read_words",
    "remove_dir",
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


def read_words(path: Path) -> tuple[str, ...]:
    """The words of a cgroup file (``cgroup.controllers``, ``cgroup.procs``, …); ``()``
    when it cannot be read."""
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
    v2 = read_words(v2_path / "cgroup.controllers") if v2_path else ()
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
            enabled = name in read_words(subtree) or os.access(subtree, os.W_OK)
            if v2_ok is None:
                v2_ok = _can_make_group(mode.v2_path)
            usable[name] = enabled and v2_ok
        else:
            usable[name] = False
    return usable


# -- delegation: where a group may be made without root ---------------------------------------

#: the controllers a group is made in (whether or not a limit is set: their usage is read)
CONTROLLERS = ("memory", "cpu", "pids")


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
    ``systemd-run --user --scope …`` is. v1 is never delegated: ``None``. Root needs no
    delegation: for uid 0 the answer is the whole v2 tree.
    """
    if mode.v2_path is None or mode.version != "v2":
        return None
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return mode.v2_path
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
    offered = set(read_words(found / "cgroup.controllers"))
    missing = [c for c in CONTROLLERS if c not in offered]
    if missing:
        raise DelegationError(
            f"the delegated cgroup {found} lacks the controller(s) {', '.join(missing)}",
            fix=_DELEGATE_FIX,
        )
    return found


# -- the course's groups: named so that cleanup finds them ----------------------------------------

#: every group this course makes is named ``hardway-…``, so cleanup can find it
PREFIX = "hardway-"


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


def remove_dir(directory: Path) -> None:
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
        for pid in read_words(path / "cgroup.procs"):
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            remove_dir(path)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise CgroupError(f"cannot remove cgroup {path}: {exc.strerror}") from exc
            time.sleep(0.02)


if __name__ == "__main__":
    found = detect()
    print(found.describe())
    print(usable_controllers(found, ("memory", "cpu", "pids")))
