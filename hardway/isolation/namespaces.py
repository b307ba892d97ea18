"""hardway.isolation.namespaces
~~~~~~~~~~~~~~~~~~~~~~~~~~~~

A namespace gives a process its own view of one kind of resource; a container is a
process with its own view of all of them. Linux has eight kinds (``time``, since 5.6,
only shifts the monotonic and boot-time clocks, and runtimes rarely use it); the seven
that matter here:

=========  ==============================================  =================
kind       what the process gets its own copy of           flag
=========  ==============================================  =================
``uts``    hostname (and NIS domain name)                  ``CLONE_NEWUTS``
``pid``    process ids: its first process is PID 1         ``CLONE_NEWPID``
``mnt``    the mount table                                 ``CLONE_NEWNS``
``ipc``    System V IPC objects, POSIX message queues      ``CLONE_NEWIPC``
``net``    network devices, addresses, routes, ports       ``CLONE_NEWNET``
``user``   user and group ids, and capabilities            ``CLONE_NEWUSER``
``cgroup`` where the cgroup tree seems to start            ``CLONE_NEWCGROUP``
=========  ==============================================  =================

This module says *what* to isolate; it starts nothing. An :class:`Isolation` says
which namespaces a container gets, plus its hostname, its root directory (entered by
``chroot`` or ``pivot_root``), whether it mounts its own ``/proc``, its uid/gid maps
(:class:`IdMap`: who is who inside a user namespace), a veth pair, its environment and
working directory. It is a plain value, checked when it is made: an isolation that
cannot work (a hostname without a ``uts`` namespace) is refused before any process
starts. :mod:`hardway.isolation.container` runs a command that way (``run``, ``start``,
``call``), and :func:`ns_inodes` tells afterwards which namespaces two processes share.

>>> Isolation({"pid", "uts"}, hostname="box").namespaces
('uts', 'pid')
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hardway.errors import IsolationError
from hardway.sys import linux

__all__ = [
    "DEFAULT_ENV",
    "FEATURES",
    "KINDS",
    "IdMap",
    "Isolation",
    "clone_flags",
    "compare",
    "host_id",
    "ns_inodes",
    "rootless_map",
    "shared_namespaces",
]

#: the namespace kinds, in the order this module lists them
KINDS = ("uts", "pid", "mnt", "ipc", "net", "user", "cgroup")
#: what a container's processes find in their environment unless told otherwise;
#: ``container=…`` is the convention by which a program learns it runs in one
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "container": "hardway",
}


# -- ids: who is who inside a user namespace --------------------------------------------------


@dataclass(frozen=True)
class IdMap:
    """One line of ``/proc/<pid>/uid_map`` or ``gid_map``: ``count`` ids starting at
    ``inside`` in the namespace are ids starting at ``outside`` in its parent."""

    inside: int
    outside: int
    count: int = 1

    def __str__(self) -> str:
        return f"{self.inside} {self.outside} {self.count}"

    @classmethod
    def parse(cls, text: str) -> tuple[IdMap, ...]:
        """Every line of a map file.

        >>> IdMap.parse("0 1000 1\\n1 100000 65536")
        (IdMap(inside=0, outside=1000, count=1), IdMap(inside=1, outside=100000, count=65536))
        """
        return tuple(cls(*map(int, line.split())) for line in text.splitlines() if line.strip())


def rootless_map(uid: int, subordinate: tuple[int, int]) -> str:
    """The map a rootless runtime writes: root inside is *uid* outside, and ids 1, 2, …
    are the user's *subordinate* ids ``(start, count)`` from ``/etc/subuid``.

    >>> print(rootless_map(1000, (100000, 65536)), end="")
    0 1000 1
    1 100000 65536
    """
    start, count = subordinate
    return f"0 {uid} 1\n1 {start} {count}\n"


def host_id(id_map: str, inside: int) -> int | None:
    """The id outside that *inside* maps to under *id_map*; ``None`` if unmapped (the
    kernel then shows it as the overflow id 65534, "nobody").

    >>> host_id("0 1000 1\\n1 100000 65536", 33)
    100032
    """
    for line in IdMap.parse(id_map):
        if line.inside <= inside < line.inside + line.count:
            return line.outside + inside - line.inside
    return None


# -- which namespaces ---------------------------------------------------------------------------

#: what a learner asks to isolate, and the namespace kind that does it
FEATURES = {
    "hostname": "uts",
    "process ids": "pid",
    "mounts": "mnt",
    "ipc": "ipc",
    "network": "net",
    "user ids": "user",
    "cgroup view": "cgroup",
}


def clone_flags(features: Iterable[str]) -> int:
    """The ``CLONE_NEW*`` flags that isolate *features* (keys of :data:`FEATURES`).

    >>> clone_flags(["hostname", "process ids"]) == linux.CLONE_NEWUTS | linux.CLONE_NEWPID
    True
    """
    try:
        return linux.namespace_flags(*(FEATURES[f] for f in features))
    except KeyError as exc:
        raise ValueError(f"unknown feature {exc.args[0]!r}; known: {', '.join(FEATURES)}") from None


def ns_inodes(pid: int | str = "self") -> dict[str, int]:
    """The inode number of each of *pid*'s namespaces: equal numbers, same namespace."""
    return {kind: os.stat(f"/proc/{pid}/ns/{kind}").st_ino for kind in KINDS}


def shared_namespaces(a: Mapping[str, int], b: Mapping[str, int]) -> list[str]:
    """The kinds in which two processes share a namespace, sorted.

    >>> shared_namespaces({"uts": 1, "pid": 2, "net": 3}, {"uts": 1, "pid": 5, "net": 3})
    ['net', 'uts']
    """
    return sorted(kind for kind in a.keys() & b.keys() if a[kind] == b[kind])


def compare(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, str]:
    """``"same"`` or ``"different"`` per kind: inode numbers made readable."""
    return {kind: "same" if a[kind] == b[kind] else "different" for kind in KINDS if kind in a}


# -- the specification ------------------------------------------------------------------------


@dataclass(frozen=True)
class Isolation:
    """How to isolate a container: a plain value, checked when it is made.

    :param namespaces: kinds from :data:`KINDS` (any iterable)
    :param root: (optional) the root filesystem directory
    :param how: ``"pivot_root"`` (needs ``mnt``) or ``"chroot"``; default: pivot_root
        when there is a mount namespace
    :param hostname: (optional) needs ``uts``
    :param proc: mount a fresh ``/proc`` (needs ``mnt``; with ``pid`` it shows only
        the container's processes)
    :param dev: mount a minimal ``/dev`` in the root: ``null``, ``zero``, ``tty``, …
        (needs ``mnt`` and a root)
    :param tmpfs: paths inside the container to mount an empty tmpfs on (needs ``mnt``)
    :param uid_map: (optional) with ``user``; default: root inside is you outside
    :param gid_map: (optional) likewise
    :param host_user: (optional) become this unprivileged uid first — how a root
        notebook shows the rootless path
    :param veth: connect the container to the host by a veth pair (needs ``net``, root)
    :param env: the environment; default :data:`DEFAULT_ENV`, which *env* updates
    :param cwd: the working directory inside
    :param unmount_old_root: after ``pivot_root``, detach the old root (chapter 01
        turns this off once, to show why it matters)
    :param cgroup_procs: ``cgroup.procs`` files the launcher writes its pid to first
        (chapter 03: :attr:`hardway.isolation.group.Group.procs_files`), so that every process
        of the container is born in that cgroup
    :param capabilities: (optional) the only capabilities left in the bounding set
        before ``execve`` (chapter 04; e.g. :data:`hardway.sys.linux.DOCKER_DEFAULT_CAPS`)
    :param no_new_privs: set ``PR_SET_NO_NEW_PRIVS`` before ``execve`` (chapter 04)
    :param run_as: (optional) ``(uid, gid)`` to become inside, last, before ``execve``
    :param make_cwd: create *cwd* inside the root when it is missing, as Docker does
    :param sys: mount a read-only ``/sys`` (needs ``mnt`` and a root)
    :param masked_paths: paths hidden under ``/dev/null`` or an empty tmpfs (chapter
        04: :data:`hardway.isolation.hardening.MASKED_PATHS`; needs *dev*)
    :param readonly_paths: paths remounted read-only (chapter 04:
        :data:`hardway.isolation.hardening.READONLY_PATHS`)
    :param seccomp: (optional) system calls refused with ``EPERM`` by a seccomp filter
        installed last (chapter 04: :data:`hardway.isolation.seccomp.DENY`)
    :param nodev: remount the root ``nodev``: a device node in it cannot be opened
        (needs ``pivot_root``)
    :param bridge: plug the veth pair into the course's bridge
        (:mod:`~hardway.isolation.bridge`) instead of a ``/30`` of its own; implies *veth*
    :param init: PID 1 is a small init (the launcher itself) that starts the command,
        passes signals on to it and reaps every orphan (chapter 04; needs ``pid``)

    With *capabilities* given, all five capability sets are set after the user
    (:func:`hardway.isolation.hardening.capability_sets`), not only the bounding set.
    """

    namespaces: Iterable[str] = ()
    root: str | os.PathLike[str] | None = None
    how: str | None = None
    hostname: str | None = None
    proc: bool = False
    dev: bool = False
    tmpfs: Sequence[str] = ()
    uid_map: Sequence[IdMap] = ()
    gid_map: Sequence[IdMap] = ()
    host_user: int | None = None
    veth: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    unmount_old_root: bool = True
    cgroup_procs: Sequence[str] = ()
    capabilities: Sequence[str] | None = None
    no_new_privs: bool = False
    run_as: tuple[int, int] | None = None
    make_cwd: bool = False
    sys: bool = False
    masked_paths: Sequence[str] = ()
    readonly_paths: Sequence[str] = ()
    seccomp: Sequence[str] | None = None
    nodev: bool = False
    bridge: bool = False
    init: bool = False

    def __post_init__(self) -> None:
        kinds = set(self.namespaces)
        unknown = kinds - set(KINDS)
        if unknown:
            raise IsolationError(f"unknown namespace {sorted(unknown)[0]!r}; known: {KINDS}")
        set_ = object.__setattr__
        if self.bridge:
            set_(self, "veth", True)
        set_(self, "namespaces", tuple(k for k in KINDS if k in kinds))
        set_(self, "tmpfs", tuple(self.tmpfs))
        set_(self, "uid_map", tuple(self.uid_map))
        set_(self, "gid_map", tuple(self.gid_map))
        set_(self, "cgroup_procs", tuple(os.fspath(p) for p in self.cgroup_procs))
        if self.capabilities is not None:
            set_(self, "capabilities", tuple(self.capabilities))
        if self.seccomp is not None:
            set_(self, "seccomp", tuple(self.seccomp))
        set_(self, "masked_paths", tuple(self.masked_paths))
        set_(self, "readonly_paths", tuple(self.readonly_paths))
        if self.root is not None:
            set_(self, "root", os.path.abspath(os.fspath(self.root)))
            if self.how is None:
                set_(self, "how", "pivot_root" if "mnt" in kinds else "chroot")
        hardened = self.sys or bool(self.masked_paths or self.readonly_paths)
        mounts = self.how == "pivot_root" or self.proc or self.dev or bool(self.tmpfs)
        needs = {
            "uts": ("a hostname", self.hostname is not None),
            "mnt": ("pivot_root, /proc, /dev, /sys, tmpfs or masks", mounts or hardened),
            "user": ("uid_map and gid_map", bool(self.uid_map or self.gid_map)),
            "net": ("a veth pair", self.veth),
            "pid": ("an init", self.init),
        }
        for kind, (what, wanted) in needs.items():
            if wanted and kind not in kinds:
                raise IsolationError(f"{what} needs a {kind} namespace: add {kind!r}")
        if self.how not in (None, "chroot", "pivot_root"):
            raise IsolationError(f"how is 'chroot' or 'pivot_root', not {self.how!r}")
        if self.root is None and (self.how is not None or self.dev or self.sys):
            what = "dev=True" if self.dev else "sys=True" if self.sys else f"how={self.how!r}"
            raise IsolationError(f"{what} needs a root directory")
        if self.masked_paths and not self.dev:
            raise IsolationError("masked_paths hide files under /dev/null: add dev=True")
        if self.nodev and self.how != "pivot_root":
            raise IsolationError("nodev remounts the root after pivot_root: add 'mnt'")

    @property
    def environment(self) -> dict[str, str]:
        """What the container's processes find in their environment: :data:`DEFAULT_ENV`,
        updated by *env*.

        >>> Isolation(env={"HOME": "/home/me"}).environment["HOME"]
        '/home/me'
        """
        return {**DEFAULT_ENV, **self.env}

    @classmethod
    def container(
        cls,
        root: str | os.PathLike[str],
        hostname: str = "container",
        *,
        rootless: bool = False,
        **options: Any,
    ) -> Isolation:
        """What a runtime gives a container: every namespace but ``user`` (unless
        *rootless*), ``pivot_root`` into *root*, its own ``/proc``, ``/dev`` and hostname."""
        kinds = {"uts", "pid", "mnt", "ipc", "net", "cgroup"} | ({"user"} if rootless else set())
        return cls(kinds, root=root, hostname=hostname, proc=True, dev=True, **options)
