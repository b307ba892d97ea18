"""hardway.sys.linux
~~~~~~~~~~~~~~~~~

A container is an ordinary process that the kernel has been asked to isolate, and the
asking is done with a handful of system calls: ``unshare`` and ``setns`` for namespaces,
``mount``/``umount2`` and ``pivot_root`` for the filesystem, ``sethostname`` for the UTS
namespace. Python's :mod:`os` wraps only some of them, so this module calls the C
library directly through :mod:`ctypes` and keeps C's semantics: the same names, the
same flag constants, and an ``errno`` that becomes an :class:`OSError` (``EPERM`` a
:class:`~hardway.errors.PrivilegeError` that says which privilege is missing).

**Call these only in a child process, never in the Jupyter kernel.** A kernel that
unshares its mount or PID namespace, or pivots its root, cannot be put back, and
``unshare(CLONE_NEWUSER)`` fails with ``EINVAL`` in a multi-threaded process (a Jupyter
kernel always has threads). The notebooks fork a child (or start ``python -c …``) and
call these there.

>>> hex(CLONE_NEWNS | CLONE_NEWUTS)
'0x4020000'
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from hardway.errors import DOCTOR_HINT, PrivilegeError

__all__ = [
    "CAPABILITIES",
    "CLONE_NEWCGROUP",
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "DOCKER_DEFAULT_CAPS",
    "MNT_DETACH",
    "MNT_EXPIRE",
    "MNT_FORCE",
    "MS_BIND",
    "MS_MOVE",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_REMOUNT",
    "MS_SHARED",
    "MS_SLAVE",
    "MS_UNBINDABLE",
    "NAMESPACES",
    "PR_CAPBSET_DROP",
    "PR_CAPBSET_READ",
    "PR_SET_CHILD_SUBREAPER",
    "PR_SET_DUMPABLE",
    "PR_SET_NO_NEW_PRIVS",
    "PR_SET_PDEATHSIG",
    "PR_SET_SECCOMP",
    "UMOUNT_NOFOLLOW",
    "bounding_set",
    "capability_mask",
    "clear_ambient",
    "drop_bounding_set",
    "flag_names",
    "gethostname",
    "mount",
    "namespace_flags",
    "pivot_root",
    "raise_ambient",
    "set_capabilities",
    "set_child_subreaper",
    "set_dumpable",
    "set_no_new_privs",
    "set_parent_death_signal",
    "set_seccomp_filter",
    "sethostname",
    "setns",
    "umount2",
    "unshare",
]

# <sched.h>: one bit per namespace type, for unshare(2), setns(2) and clone(2).
CLONE_NEWNS = 0x00020000  #: mount namespace (the first one, hence the generic name)
CLONE_NEWCGROUP = 0x02000000  #: cgroup namespace
CLONE_NEWUTS = 0x04000000  #: hostname and NIS domain name
CLONE_NEWIPC = 0x08000000  #: System V IPC and POSIX message queues
CLONE_NEWUSER = 0x10000000  #: user and group ids, capabilities
CLONE_NEWPID = 0x20000000  #: process ids (applies to the *children* of the caller)
CLONE_NEWNET = 0x40000000  #: network devices, addresses, routes, firewall

#: the short names ``/proc/<pid>/ns/`` uses, mapped to their flag
NAMESPACES: dict[str, int] = {
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "pid": CLONE_NEWPID,
    "mnt": CLONE_NEWNS,
    "net": CLONE_NEWNET,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
}

# <sys/mount.h>: mount(2) flags.
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

# umount2(2) flags.
MNT_FORCE = 1
MNT_DETACH = 2  #: lazy unmount: detach now, clean up when no longer busy
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36
PR_SET_DUMPABLE = 4  # <linux/prctl.h>
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
#: capset(2)'s header version for 64-bit sets (two 32-bit halves)
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

#: <linux/capability.h>: each capability is one bit number
CAPABILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        [
            "CHOWN",
            "DAC_OVERRIDE",
            "DAC_READ_SEARCH",
            "FOWNER",
            "FSETID",
            "KILL",
            "SETGID",
            "SETUID",
            "SETPCAP",
            "LINUX_IMMUTABLE",
            "NET_BIND_SERVICE",
            "NET_BROADCAST",
            "NET_ADMIN",
            "NET_RAW",
            "IPC_LOCK",
            "IPC_OWNER",
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_CHROOT",
            "SYS_PTRACE",
            "SYS_PACCT",
            "SYS_ADMIN",
            "SYS_BOOT",
            "SYS_NICE",
            "SYS_RESOURCE",
            "SYS_TIME",
            "SYS_TTY_CONFIG",
            "MKNOD",
            "LEASE",
            "AUDIT_WRITE",
            "AUDIT_CONTROL",
            "SETFCAP",
            "MAC_OVERRIDE",
            "MAC_ADMIN",
            "SYSLOG",
            "WAKE_ALARM",
            "BLOCK_SUSPEND",
            "AUDIT_READ",
            "PERFMON",
            "BPF",
            "CHECKPOINT_RESTORE",
        ]
    )
}
#: the capabilities Docker (and runc's default spec) leave a container's root
DOCKER_DEFAULT_CAPS = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
)

#: pivot_root has no glibc wrapper: its system call number per architecture
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

_ADMIN = "root (CAP_SYS_ADMIN)"
_USERNS = "permission to create user namespaces (root, or unprivileged user namespaces enabled)"

Pathish = str | os.PathLike[str]


def namespace_flags(*names: str) -> int:
    """The ``CLONE_NEW*`` bits for namespace names as ``/proc/<pid>/ns/`` spells them.

    >>> namespace_flags("uts", "pid") == CLONE_NEWUTS | CLONE_NEWPID
    True
    """
    try:
        return sum({NAMESPACES[name] for name in names})
    except KeyError as exc:
        known = ", ".join(NAMESPACES)
        raise ValueError(f"unknown namespace {exc.args[0]!r}; known: {known}") from None


def flag_names(flags: int) -> str:
    """``CLONE_NEWUTS|CLONE_NEWPID`` for the namespace bits in *flags*.

    >>> flag_names(CLONE_NEWUTS | CLONE_NEWPID)
    'CLONE_NEWUTS|CLONE_NEWPID'
    """
    names = [n for n, v in globals().items() if n.startswith("CLONE_NEW") and flags & v]
    return "|".join(names) or hex(flags)


def _check(result: int, call: str, needs: str = _ADMIN, hint: str = "") -> None:
    """Turn C's ``-1`` + ``errno`` into an exception; any other result is success."""
    if result != -1:
        return
    err = ctypes.get_errno()
    if err == errno.EPERM:
        who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
        exc = PrivilegeError(
            f"{call} was refused (EPERM): it needs {needs}, and this process ({who}) "
            "does not have it here",
            fix=DOCTOR_HINT,
        )
        exc.errno, exc.strerror = errno.EPERM, os.strerror(errno.EPERM)
        raise exc
    # OSError(errno, …) picks the subclass itself: ENOENT → FileNotFoundError, …
    raise OSError(err, f"{call}: {os.strerror(err)}{hint}")


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces, one per ``CLONE_NEW*`` bit in *flags*.

    Caveats from unshare(2): every type but ``CLONE_NEWUSER`` needs ``CAP_SYS_ADMIN``
    (root, or root *inside* a user namespace created in the same call);
    ``CLONE_NEWUSER`` fails with ``EINVAL`` in a multi-threaded process;
    ``CLONE_NEWPID`` does not move the caller, only its next child, which becomes PID 1
    (when PID 1 exits, the namespace's other processes are killed);
    ``CLONE_NEWNS`` copies the mount table, and mounts stay *shared* with the host until
    you make them private (``mount(None, "/", None, MS_REC | MS_PRIVATE)``).
    """
    call = f"unshare({flag_names(flags)})"
    needs = _USERNS if flags == CLONE_NEWUSER else _ADMIN
    hint = ""
    if flags & CLONE_NEWUSER:
        hint = " (unshare(CLONE_NEWUSER) fails with EINVAL in a multi-threaded process)"
    _check(_libc.unshare(ctypes.c_int(flags)), call, needs, hint)


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace that *fd* refers to (an open ``/proc/<pid>/ns/<type>`` file).

    *nstype* ``0`` accepts any type; a ``CLONE_NEW*`` value insists on that one.
    Caveats from setns(2): needs ``CAP_SYS_ADMIN`` in the target namespace's owning user
    namespace; joining a PID namespace affects only later children; a multi-threaded
    process cannot join a user or mount namespace.
    """
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns({fd}, {nstype:#x})")


def _path(path: Pathish | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def mount(
    source: Pathish | None,
    target: Pathish,
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """Attach a filesystem (or change a mount's propagation, or bind-mount) at *target*.

    ``mount("proc", "/proc", "proc")`` mounts a new procfs;
    ``mount(None, "/", None, MS_REC | MS_PRIVATE)`` stops mount events propagating back
    to the host; ``mount(src, dst, None, MS_BIND | MS_REC)`` bind-mounts a tree.
    *data* holds filesystem options (overlay's ``lowerdir=…,upperdir=…,workdir=…``).
    Needs ``CAP_SYS_ADMIN`` in the user namespace owning the current mount namespace.
    """
    _check(
        _libc.mount(
            _path(source),
            _path(target),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        f"mount({source!r}, {os.fspath(target)!r}, {fstype!r})",
    )


def umount2(target: Pathish, flags: int = 0) -> None:
    """Detach the filesystem mounted at *target*; ``MNT_DETACH`` does it lazily.

    Fails with ``EBUSY`` while a process uses the mount (its cwd, an open file) unless
    ``MNT_DETACH`` is given. Needs ``CAP_SYS_ADMIN``.
    """
    _check(_libc.umount2(_path(target), ctypes.c_int(flags)), f"umount2({os.fspath(target)!r})")


def sethostname(name: str) -> None:
    """Set the hostname: of the host, unless the caller is in its own UTS namespace.

    Needs ``CAP_SYS_ADMIN`` in the user namespace owning the UTS namespace; names longer
    than 64 bytes fail with ``EINVAL``.
    """
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), f"sethostname({name!r})")


def pivot_root(new_root: Pathish, put_old: Pathish) -> None:
    """Make *new_root* the root filesystem of the calling mount namespace; the old root
    moves to *put_old*, from where it can be unmounted (``umount2(put_old, MNT_DETACH)``).

    Requirements from pivot_root(2): *new_root* must be a mount point of its own
    (bind-mount a plain directory onto itself first), else ``EBUSY`` when it sits on the
    current root's mount or ``EINVAL``; *put_old* must be at or under *new_root*; the
    current root and *new_root*'s parent must not have *shared* propagation (make ``/``
    private first, in a new mount namespace); the current root must be a mount point
    (not true in an initramfs, where ``switch_root`` is used instead); these are
    ``EINVAL``. Needs ``CAP_SYS_ADMIN``. Afterwards ``chdir("/")``: the cwd is not moved.
    """
    call = f"pivot_root({os.fspath(new_root)!r}, {os.fspath(put_old)!r})"
    new, old = _path(new_root), _path(put_old)
    libc_pivot = getattr(_libc, "pivot_root", None)
    if libc_pivot is not None:
        _check(libc_pivot(new, old), call)
        return
    machine = platform.machine()
    if machine not in _SYS_PIVOT_ROOT:
        raise OSError(errno.ENOSYS, f"{call}: no system call number known for {machine}")
    nr = ctypes.c_long(_SYS_PIVOT_ROOT[machine])
    _check(_libc.syscall(nr, ctypes.c_char_p(new), ctypes.c_char_p(old)), call)


def set_dumpable(dumpable: bool = True) -> None:
    """``prctl(PR_SET_DUMPABLE)``: after a process drops from root with ``setuid``, the
    kernel marks it non-dumpable and its ``/proc/self/*`` files stay owned by root, so it
    cannot write its own ``uid_map``; marking it dumpable again gives them back.
    """
    _check(_libc.prctl(ctypes.c_int(PR_SET_DUMPABLE), ctypes.c_ulong(int(dumpable))), "prctl")


def set_parent_death_signal(signum: int) -> None:
    """``prctl(PR_SET_PDEATHSIG)``: the kernel sends *signum* to this process when its
    parent dies, so a container's process never outlives whoever started it.

    Caveats from prctl(2): "parent" is the *thread* that forked us; the setting is
    cleared in a forked child and when executing a set-user-ID program, but kept
    across an ordinary ``execve``. Check ``os.getppid()`` afterwards: the parent may
    have died before the call.
    """
    _check(_libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signum)), "prctl")


def set_child_subreaper() -> None:
    """``prctl(PR_SET_CHILD_SUBREAPER, 1)``: an orphan among this process's descendants is
    re-parented to this process instead of to init — even one that left its process
    group with ``setsid`` — so this process can find and reap (or kill) it.

    Caveats from prctl(2): the setting is not inherited by ``fork``'s children, but it is
    kept across ``execve``.
    """
    _check(_libc.prctl(ctypes.c_int(PR_SET_CHILD_SUBREAPER), ctypes.c_ulong(1), 0, 0, 0), "prctl")


def set_no_new_privs() -> None:
    """``prctl(PR_SET_NO_NEW_PRIVS, 1)``: from now on no ``execve`` can grant privileges —
    set-user-ID bits and file capabilities are ignored. It cannot be unset, and it is
    inherited by every child: what Docker's ``no-new-privileges`` and runc's
    ``noNewPrivileges`` do.
    """
    _check(_libc.prctl(ctypes.c_int(PR_SET_NO_NEW_PRIVS), ctypes.c_ulong(1), 0, 0, 0), "prctl")


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return max(CAPABILITIES.values())


def bounding_set() -> list[str]:
    """The capabilities still in this thread's bounding set (``PR_CAPBSET_READ``)."""
    names = {n: name for name, n in CAPABILITIES.items()}
    kept = []
    for number in range(_last_cap() + 1):
        if _libc.prctl(ctypes.c_int(PR_CAPBSET_READ), ctypes.c_ulong(number), 0, 0, 0) == 1:
            kept.append(names.get(number, f"CAP_{number}"))
    return kept


def drop_bounding_set(keep: Sequence[str]) -> None:
    """Drop every capability but *keep* from the bounding set (``PR_CAPBSET_DROP``).

    The bounding set caps what any later ``execve`` may grant: root executing a program
    gets exactly the bounding set as its permitted and effective capabilities. Dropping
    needs ``CAP_SETPCAP`` and cannot be undone; do it last, just before ``execve``.
    """
    unknown = [name for name in keep if name not in CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown capability {unknown[0]!r}; names are like 'NET_RAW'")
    wanted = {CAPABILITIES[name] for name in keep}
    for number in range(_last_cap() + 1):
        if number not in wanted:
            result = _libc.prctl(ctypes.c_int(PR_CAPBSET_DROP), ctypes.c_ulong(number), 0, 0, 0)
            _check(result, f"prctl(PR_CAPBSET_DROP, {number})", "CAP_SETPCAP")


def capability_mask(names: Sequence[str]) -> int:
    """The bit mask of *names*, as ``/proc/<pid>/status`` shows it in ``CapEff``.

    >>> f"{capability_mask(DOCKER_DEFAULT_CAPS):016x}"
    '00000000a80425fb'
    """
    return sum(1 << CAPABILITIES[name] for name in set(names))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]


def set_capabilities(
    effective: Sequence[str], permitted: Sequence[str], inheritable: Sequence[str]
) -> None:
    """``capset(2)``: this thread's effective, permitted and inheritable sets, exactly.

    Caveats from capabilities(7): a set may only shrink — *permitted* within the
    current permitted set, *effective* within the new *permitted*, *inheritable*
    within permitted plus the bounding set (``EPERM`` otherwise). The sets of root
    are recomputed at every ``execve`` (from the bounding set); those of any other
    user are emptied by ``setuid`` to it unless ``SECBIT_KEEP_CAPS`` is set.
    """
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    masks = [capability_mask(names) for names in (effective, permitted, inheritable)]
    data = (_CapData * 2)(
        _CapData(*(m & 0xFFFFFFFF for m in masks)), _CapData(*(m >> 32 for m in masks))
    )
    _check(_libc.capset(ctypes.byref(header), data), "capset", "CAP_SETPCAP")


def clear_ambient() -> None:
    """``prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)``: empty the ambient set, the
    capabilities an ``execve`` of an ordinary (not set-user-ID) program keeps for a
    non-root user."""
    call = _libc.prctl(
        ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0
    )
    _check(call, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")


def raise_ambient(name: str) -> None:
    """``prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)``: the capability must already
    be in both the permitted and the inheritable set (``EPERM`` otherwise)."""
    number = ctypes.c_ulong(CAPABILITIES[name])
    call = _libc.prctl(
        ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_RAISE), number, 0, 0
    )
    _check(
        call, f"prctl(PR_CAP_AMBIENT_RAISE, CAP_{name})", "it in the permitted and inheritable sets"
    )


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def set_seccomp_filter(program: bytes) -> None:
    """``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)``: from now on the kernel runs
    the classic-BPF *program* (an array of 8-byte ``struct sock_filter``, see
    :mod:`hardway.isolation.seccomp`) on every system call of this thread and its
    children, and does what it returns.

    Caveats from seccomp(2): needs ``no_new_privs`` set first, or ``CAP_SYS_ADMIN``
    (``EACCES`` otherwise: a filter could otherwise trick a set-user-ID program);
    a filter can never be removed, only more filters added; ``EINVAL`` for a program
    the kernel's verifier rejects (a jump out of the program, more than 4096
    instructions, no final ``ret``).
    """
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    call = _libc.prctl(
        ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog), 0, 0
    )
    _check(call, "prctl(PR_SET_SECCOMP)", "no_new_privs or CAP_SYS_ADMIN")


def gethostname() -> str:
    """The hostname as this process's UTS namespace sees it (``os.uname().nodename``)."""
    return os.uname().nodename


if __name__ == "__main__":  # a demo that is safe to run: it forks first
    pid = os.fork()
    if pid == 0:
        unshare(CLONE_NEWUTS)
        sethostname("demo-container")
        print("child sees hostname", gethostname(), "in", Path("/proc/self/ns/uts").readlink())
        os._exit(0)
    os.waitpid(pid, 0)
    print("parent still sees  ", gethostname(), "in", Path("/proc/self/ns/uts").readlink())
