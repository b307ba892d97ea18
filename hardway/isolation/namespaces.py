"""hardway.isolation.namespaces
~~~~~~~~~~~~~~~~~~~~~~~~~~~~

A namespace gives a process its own view of one kind of resource; a container is a
process with its own view of all of them. Linux has seven kinds that matter here:

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

An :class:`Isolation` says which ones a container gets, plus its hostname, its root
directory (entered by ``chroot`` or ``pivot_root``), whether it mounts its own
``/proc``, its uid/gid maps, a veth pair, its environment and working directory.
:func:`run` starts a command that way and returns a :class:`Completed` (exit status,
stdout, stderr); :func:`start` leaves it running as a :class:`Container` to look at,
``exec`` into (``setns``, like ``nsenter``) and stop; :func:`call` runs a Python
function inside and returns its result.

All the privileged work happens in a child process (:mod:`hardway.isolation.launch`), never in
the caller, which may be a Jupyter kernel. Whatever a container creates — processes,
mounts, the veth pair — is gone when :func:`run` returns or the ``with`` block of
:func:`start` ends, also after an error or a KeyboardInterrupt.

>>> Isolation({"pid", "uts"}, hostname="box").namespaces
('uts', 'pid')
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import inspect
import json
import os
import pwd
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hardway.errors import (
    DOCTOR_HINT,
    ContainerError,
    ContainerTimeoutError,
    IsolationError,
    NetworkError,
    PrivilegeError,
)
from hardway.isolation import network
from hardway.sys import linux
from hardway.sys.state import child_pythonpath

__all__ = [
    "DEFAULT_ENV",
    "FEATURES",
    "KINDS",
    "Completed",
    "Container",
    "IdMap",
    "Isolation",
    "call",
    "clone_flags",
    "compare",
    "host_id",
    "ns_inodes",
    "rootless_map",
    "run",
    "shared_namespaces",
    "start",
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
#: seconds the child may take from start to running the command
SETUP_TIMEOUT = 15.0
DEFAULT_TIMEOUT = 30.0

#: ``python -m`` names of the launcher: the first is the one started; the second, its name
#: before the package took its parts' layout (December 2026), is still recognised by
#: ``python -m hardway cleanup`` for one release, as a leftover of an older checkout
LAUNCHER_MODULES = ("hardway.isolation.launch", "hardway.launch")


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
        (chapter 03: :attr:`hardway.isolation.cgroups.Group.procs_files`), so that every process
        of the container is born in that cgroup
    :param capabilities: (optional) the only capabilities left in the bounding set
        before ``execve`` (chapter 04; e.g. :data:`hardway.sys.linux.DOCKER_DEFAULT_CAPS`)
    :param no_new_privs: set ``PR_SET_NO_NEW_PRIVS`` before ``execve`` (chapter 04)
    :param run_as: (optional) ``(uid, gid)`` to become inside, last, before ``execve``
    :param make_cwd: create *cwd* inside the root when it is missing, as Docker does
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

    def __post_init__(self) -> None:
        kinds = set(self.namespaces)
        unknown = kinds - set(KINDS)
        if unknown:
            raise IsolationError(f"unknown namespace {sorted(unknown)[0]!r}; known: {KINDS}")
        set_ = object.__setattr__
        set_(self, "namespaces", tuple(k for k in KINDS if k in kinds))
        set_(self, "tmpfs", tuple(self.tmpfs))
        set_(self, "uid_map", tuple(self.uid_map))
        set_(self, "gid_map", tuple(self.gid_map))
        set_(self, "cgroup_procs", tuple(os.fspath(p) for p in self.cgroup_procs))
        if self.capabilities is not None:
            set_(self, "capabilities", tuple(self.capabilities))
        if self.root is not None:
            set_(self, "root", os.path.abspath(os.fspath(self.root)))
            if self.how is None:
                set_(self, "how", "pivot_root" if "mnt" in kinds else "chroot")
        mounts = self.how == "pivot_root" or self.proc or self.dev or bool(self.tmpfs)
        needs = {
            "uts": ("a hostname", self.hostname is not None),
            "mnt": ("pivot_root, /proc, /dev or tmpfs", mounts),
            "user": ("uid_map and gid_map", bool(self.uid_map or self.gid_map)),
            "net": ("a veth pair", self.veth),
        }
        for kind, (what, wanted) in needs.items():
            if wanted and kind not in kinds:
                raise IsolationError(f"{what} needs a {kind} namespace: add {kind!r}")
        if self.how not in (None, "chroot", "pivot_root"):
            raise IsolationError(f"how is 'chroot' or 'pivot_root', not {self.how!r}")
        if self.root is None and (self.how is not None or self.dev):
            what = "dev=True" if self.dev else f"how={self.how!r}"
            raise IsolationError(f"{what} needs a root directory")

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


# -- what came back ----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Completed:
    """A finished command: its argv, exit status and output. The repr reads like a
    terminal: the command, what it printed (stdout, then stderr), a non-zero status."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> Completed:
        """Return self, or raise :class:`ContainerError` for a non-zero exit status."""
        if not self.ok:
            raise ContainerError(
                f"{shlex.join(self.argv)} exited with status {self.returncode}: "
                f"{self.stderr.strip() or self.stdout.strip()}",
                step="exit",
            )
        return self

    def __repr__(self) -> str:
        lines = [f"$ {shlex.join(self.argv)}"]
        lines += [text.rstrip("\n") for text in (self.stdout, self.stderr) if text]
        if self.returncode:
            lines.append(f"[exit status {self.returncode}]")
        return "\n".join(lines)

    __str__ = __repr__


# -- the parent's side of the launcher -----------------------------------------------------------


def _function_ref(func: Callable[..., Any]) -> dict[str, str]:
    """Name a function of hardway's (the child can import those); send any other —
    a notebook's, a test's — as its source code."""
    func = inspect.unwrap(func)
    module, name = getattr(func, "__module__", "") or "", getattr(func, "__qualname__", "")
    if module.split(".")[0] == "hardway" and "<" not in name:
        with contextlib.suppress(ImportError, AttributeError):
            obj: Any = __import__(module, fromlist=["_"])
            for part in name.split("."):
                obj = getattr(obj, part)
            if obj is func:
                return {"module": module, "name": name}
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError) as exc:
        raise IsolationError(f"cannot send {name or func!r} to the container: {exc}") from None
    return {"source": source, "name": func.__name__}


def _encode_arg(value: Any) -> Any:
    if callable(value) and not isinstance(value, type):
        return {"__function__": _function_ref(value)}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        return [_encode_arg(v) for v in value]
    return value


def _group_of(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return uid


def _plan(spec: Isolation, argv: Sequence[str] | None, call: tuple | None) -> dict[str, Any]:
    if spec.root is not None and not os.path.isdir(spec.root):
        raise IsolationError(f"the root {spec.root} is not a directory")
    if argv is not None and (isinstance(argv, str) or not argv):
        raise IsolationError("argv is a non-empty list of strings, e.g. ['hostname']")
    host_user = spec.host_user
    plan: dict[str, Any] = {
        "mode": "create",
        "parent": os.getpid(),
        "kinds": list(spec.namespaces),
        "flags": linux.namespace_flags(*spec.namespaces),
        "sync": "user" in spec.namespaces or spec.veth,
        "host_user": host_user,
        "host_group": None if host_user is None else _group_of(host_user),
        "root": spec.root,
        "how": spec.how,
        "unmount_old_root": spec.unmount_old_root,
        "proc": spec.proc,
        "dev": spec.dev,
        "tmpfs": list(spec.tmpfs),
        "hostname": spec.hostname,
        "cwd": spec.cwd,
        "env": {**DEFAULT_ENV, **spec.env},
        "argv": None if argv is None else [os.fspath(a) for a in argv],
        "cgroup_procs": list(spec.cgroup_procs),
        "capabilities": None if spec.capabilities is None else list(spec.capabilities),
        "no_new_privs": spec.no_new_privs,
        "run_as": None if spec.run_as is None else list(spec.run_as),
        "make_cwd": spec.make_cwd,
        "call": None,
    }
    if call is not None:
        func, args = call
        plan["call"] = {"function": _function_ref(func), "args": [_encode_arg(a) for a in args]}
    return plan


class _Child:
    """One launcher process seen from the parent: its pipes, events and cleanup."""

    def __init__(
        self, plan: dict[str, Any], *, stdin: Any, stdout: Any, stderr: Any, spec: Isolation
    ) -> None:
        self.plan, self.spec = plan, spec
        self._stderr = stderr  # a file when started in the background: read on failure
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.veth: network.Veth | None = None
        self.result: Any = None
        self.running = False
        self._buffer = b""
        spec_r, spec_w = os.pipe()
        self.status, status_w = os.pipe()
        control_r, self.control = os.pipe()
        fds = (spec_r, status_w, control_r)
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", LAUNCHER_MODULES[0], *map(str, fds)],
                pass_fds=fds,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # its own process group: one kill reaches all
                cwd="/",
                env=dict(os.environ, PYTHONPATH=child_pythonpath()),
            )
        except BaseException:
            for fd in (spec_w, self.status, self.control):
                os.close(fd)
            raise
        finally:
            for fd in (spec_r, status_w, control_r):
                os.close(fd)
        try:
            with os.fdopen(spec_w, "wb") as f:
                f.write(json.dumps(plan).encode())
        except BaseException:  # interrupted before any caller holds this child: kill it here
            self.close()
            raise

    # events

    def _event(self, deadline: float) -> dict[str, Any] | None:
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.status], [], [], left)[0]:
                raise ContainerTimeoutError(
                    f"the container was not set up within {SETUP_TIMEOUT:g} s", step="setup"
                )
            chunk = os.read(self.status, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def setup(self, *, until_running: bool) -> None:
        """Answer the child's events until the command runs (or, with *until_running*,
        until a called function starts); raise the child's error as ours."""
        deadline = time.monotonic() + SETUP_TIMEOUT
        while (event := self._event(deadline)) is not None:
            kind = event["event"]
            if kind == "unshared":
                self._prepare(event["pid"])
            elif kind == "pid":
                self.pid = event["pid"]
                with contextlib.suppress(OSError):
                    self.pidfd = os.pidfd_open(self.pid)
            elif kind == "error":
                raise _child_error(event, self.plan)
            elif kind == "running":
                self.running = True
                if until_running:
                    return
        if not self.running:
            code = self.popen.wait(5)
            said = self._stderr_text()  # a crash of the launcher itself
            said = ":\n" + "\n".join(said.splitlines()[-5:]) if said else ""
            raise ContainerError(
                f"the launcher exited with status {code} before the command ran{said}",
                step="launch",
            )

    def _stderr_text(self) -> str:
        if self.popen.stderr is not None:
            return self.popen.stderr.read().decode(errors="replace").strip()
        if hasattr(self._stderr, "seek"):
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace").strip()
        return ""

    def finish_call(self) -> Any:
        """After a called function's process has exited: its result or its error."""
        deadline = time.monotonic() + 5
        while (event := self._event(deadline)) is not None:
            if event["event"] == "error":
                raise _child_error(event, self.plan)
            if event["event"] == "result":
                self.result = event["value"]
                return self.result
        raise ContainerError("the function ended without a result (killed?)", step="call")

    def _prepare(self, pid: int) -> None:
        """The parent's part: id maps and the veth pair, then let the child go on."""
        spec = self.spec
        if "user" in spec.namespaces:
            outside = os.geteuid() if spec.host_user is None else spec.host_user
            group = os.getegid() if spec.host_user is None else _group_of(spec.host_user)
            write_id_maps(
                pid,
                spec.uid_map or (IdMap(0, outside),),
                spec.gid_map or (IdMap(0, group),),
            )
        veth = None
        if spec.veth:
            veth = network.allocate()
            network.create(veth, pid)
            self.veth = veth
        os.write(self.control, (json.dumps({"veth": veth and veth.to_json()}) + "\n").encode())

    # cleanup

    def kill(self) -> None:
        """Kill every process of the container and wait for the launcher; idempotent.

        The whole process group goes first, even when the launcher has ended: a
        container without a PID namespace may have left children running in it.
        """
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self.pidfd is not None:  # PID 1 of a PID namespace takes all the others along
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        if self.pidfd is not None:  # PID 1 is gone when its pidfd turns readable
            select.select([self.pidfd], [], [], 5)
        _wait_group_gone(self.popen.pid)

    def close(self) -> None:
        self.kill()
        if self.veth is not None:
            with contextlib.suppress(NetworkError):
                network.remove(self.veth)
            self.veth = None
        for fd in (self.status, self.control, self.pidfd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.status = self.control = -1
        self.pidfd = None
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


def _wait_group_gone(pgid: int, timeout: float = 5.0) -> None:
    """Wait until no process of group *pgid* is left.

    SIGKILL is delivered asynchronously, and the launcher's own exit says nothing about
    the children a container without a PID namespace started in the background: they
    are still dying (then reparented and reaped) for a moment after ``killpg`` returns.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:  # the group is gone and its number reused by another user
            return
        time.sleep(0.005)


def write_id_maps(pid: int, uid_map: Sequence[IdMap], gid_map: Sequence[IdMap]) -> None:
    """Write *pid*'s ``uid_map`` and ``gid_map`` — once each, as the kernel allows.

    Without root, the kernel accepts only one line mapping your own id, and a
    ``gid_map`` only after ``setgroups`` is set to ``deny`` (else dropping a group could
    grant access that a "deny" ACL for that group was meant to refuse).
    """
    proc = Path(f"/proc/{pid}")
    writes = [("uid_map", uid_map), ("gid_map", gid_map)]
    if os.geteuid() != 0:
        writes.insert(0, ("setgroups", "deny"))
    for name, content in writes:
        text = content if isinstance(content, str) else "".join(f"{m}\n" for m in content)
        try:
            (proc / name).write_text(text)
        except OSError as exc:
            message = f"writing {text.strip()!r} to /proc/PID/{name} was refused ({exc.strerror})"
            if exc.errno in (errno.EPERM, errno.EACCES):
                refused = PrivilegeError(
                    message + ": without root you may map only your own id, once", fix=DOCTOR_HINT
                )
                refused.errno = errno.EPERM
                raise refused from None
            raise ContainerError(message, step=name, errno=exc.errno) from None


def _child_error(event: dict[str, Any], plan: dict[str, Any]) -> Exception:
    """The exception the parent raises for an ``error`` event of the child."""
    step, message, number = event["step"], event["message"], event.get("errno")
    if event.get("privilege"):
        text = message if "EPERM" in message else f"{step}: {message} (EPERM): it needs root"
        exc = PrivilegeError(text, fix=event.get("fix") or DOCTOR_HINT)
        exc.errno = errno.EPERM
        return exc
    if step == "exec" and number == errno.ENOENT:
        name = plan["argv"][0]
        where = "in the root filesystem" if plan["root"] else "on this machine"
        return ContainerError(
            f"exec {name!r}: No such file or directory. Either it is not {where} (or "
            "not on PATH), or it is but its dynamic loader or a library is missing",
            fix="copy the program with its libraries: "
            "hardway.isolation.rootfs.add_binary(root, program)",
            step=step,
            errno=number,
            child=event["type"],
        )
    if step == "call":
        name = plan["call"]["function"]["name"]
        text = f"{name} raised {event['type']}: {message}"
    else:
        text = f"{step} failed: {message}"
    return ContainerError(text, fix=event.get("fix"), step=step, errno=number, child=event["type"])


# -- the three ways to run something -------------------------------------------------------------


def _communicate(child: _Child, input: str | None, timeout: float) -> tuple[str, str]:
    try:
        out, err = child.popen.communicate(
            None if input is None else input.encode(), timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise ContainerTimeoutError(
            f"still running after {timeout:g} s: killed", step="timeout"
        ) from None
    return out.decode(errors="replace"), err.decode(errors="replace")


def run(
    spec: Isolation,
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    input: str | None = None,
) -> Completed:
    """Run *argv* isolated as *spec* says, wait for it, return what it did.

    :param timeout: (optional) seconds before the whole container is killed
        (:class:`~hardway.errors.ContainerTimeoutError`)
    :param input: (optional) text for its stdin; default: no stdin at all
    :raises PrivilegeError: a step needs a privilege this process lacks
    :raises ContainerError: a step failed (``.step`` says which)
    """
    return _run_plan(_plan(spec, argv, None), spec, input=input, timeout=timeout)


def _run_plan(
    plan: dict[str, Any], spec: Isolation, *, input: str | None, timeout: float
) -> Completed:
    """Start a launcher for *plan*, wait for its command, and always clean it up."""
    stdin = subprocess.DEVNULL if input is None else subprocess.PIPE
    child = _Child(plan, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, spec=spec)
    try:
        child.setup(until_running=False)
        out, err = _communicate(child, input, timeout)
        return Completed(tuple(plan["argv"]), child.popen.returncode, out, err)
    finally:
        child.close()


def call(
    spec: Isolation, func: Callable[..., Any], *args: Any, timeout: float = DEFAULT_TIMEOUT
) -> Any:
    """Call ``func(*args)`` inside a container isolated as *spec*; return its result.

    *func* is a module-level function of :mod:`hardway`, or any other function (one
    defined in a notebook, say), which is sent as source code: it finds ``os``,
    ``errno``, ``Path`` and ``linux`` (:mod:`hardway.sys.linux`) imported, and nothing else
    of where it was defined. Arguments and the result travel as JSON; functions among
    the arguments are sent the same way.
    """
    plan = _plan(spec, None, (func, args))
    child = _Child(
        plan, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, spec=spec
    )
    try:
        child.setup(until_running=True)
        _communicate(child, None, timeout)
        return child.finish_call()
    finally:
        child.close()


class Container:
    """A running container from :func:`start`. Use it in a ``with`` block: whatever
    happens in the block, the container's processes and its veth pair are gone at
    its end.

    ``pid`` is its first process as the host sees it (PID 1 inside when it has a
    PID namespace); ``veth`` its pair, if any.
    """

    def __init__(self, child: _Child, argv: Sequence[str], logs: tuple[IO[bytes], IO[bytes]]):
        self._child, self._logs = child, logs
        self.spec: Isolation = child.spec
        self.argv = tuple(argv)
        self.pid: int = child.pid  # type: ignore[assignment]
        self.veth = child.veth
        self._finalizer = weakref.finalize(self, _close_all, child, logs)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Container {state}: {shlex.join(self.argv)}>"

    @property
    def running(self) -> bool:
        return self._finalizer.alive and self._child.popen.poll() is None

    def namespaces(self) -> dict[str, int]:
        """The inode number of each of the container's namespaces."""
        return ns_inodes(self.pid)

    def _join_plan(self, argv: Sequence[str] | None, call: tuple | None) -> dict[str, Any]:
        if not self.running:
            raise ContainerError("the container is not running", step="join")
        plan = _plan(dataclasses.replace(self.spec, veth=False), argv, call)
        plan.update(mode="join", pid=self.pid, sync=False, host_user=None)
        return plan

    def exec(
        self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, input: str | None = None
    ) -> Completed:
        """Run *argv* inside the running container — its namespaces (``setns``, as
        ``nsenter`` does), its root, its environment — and wait for it."""
        plan = self._join_plan(argv, None)
        spec = dataclasses.replace(self.spec, veth=False)
        return _run_plan(plan, spec, input=input, timeout=timeout)

    def logs(self) -> Completed:
        """What the container has printed so far (its exit status: -1 while running)."""
        texts = []
        for log in self._logs:
            log.flush()
            log.seek(0)
            texts.append(log.read().decode(errors="replace"))
        code = self._child.popen.poll()
        return Completed(self.argv, -1 if code is None else code, *texts)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container to end by itself; its exit status."""
        try:
            return self._child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ContainerTimeoutError(f"still running after {timeout:g} s") from None

    def stop(self) -> int | None:
        """Kill every process of the container, remove its veth pair; its exit status."""
        self._finalizer()
        return self._child.popen.returncode


def _close_all(child: _Child, logs: tuple[IO[bytes], IO[bytes]]) -> None:
    child.close()
    for log in logs:
        log.close()


def start(spec: Isolation, argv: Sequence[str]) -> Container:
    """Start *argv* isolated as *spec* says and return at once, while it runs.

    Its stdout and stderr go to anonymous temporary files (:meth:`Container.logs`).
    Use the result in a ``with`` block, or call :meth:`Container.stop`.
    """
    plan = _plan(spec, argv, None)
    # anonymous files (no name on disk), closed by the Container's finalizer
    logs = (tempfile.TemporaryFile(), tempfile.TemporaryFile())  # noqa: SIM115
    child = _Child(plan, stdin=subprocess.DEVNULL, stdout=logs[0], stderr=logs[1], spec=spec)
    try:
        child.setup(until_running=False)
        return Container(child, plan["argv"], logs)
    except BaseException:
        _close_all(child, logs)
        raise
