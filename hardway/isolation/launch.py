"""hardway.isolation.launch
~~~~~~~~~~~~~~~~~~~~~~~~

The child side of every container. :mod:`hardway.isolation.child` starts this module as a
fresh, single-threaded Python process (``python -m hardway.isolation.launch SPEC STATUS CONTROL``,
three pipe descriptors), because a Jupyter kernel must never unshare anything itself:
``unshare(CLONE_NEWUSER)`` fails in a process with threads, and a kernel that moved
into a new mount or PID namespace could not be put back.

A new container ("create") takes these steps, in this order, and each has a name that
an error report carries back to the parent:

1. *drop to the host user* — only for a rootless start simulated as root;
2. *unshare* every requested namespace but PID in one call (the kernel creates the
   user namespace first and makes it own the others);
3. *wait for the parent*, which writes ``uid_map``/``gid_map`` and creates the veth
   pair — things only a process *outside* the new namespaces may do;
4. *network*: raise ``lo``, rename and address the veth end;
5. *unshare the PID namespace and fork*: the next child is PID 1 of it (so nothing
   may be started between the two), and this process stays outside to wait for it
   and pass its exit status on;
6. *mounts and root*: make every mount private, make the missing mount points
   inside the root, give the root a ``/dev`` (and a read-only ``/sys``), ``chroot``
   or ``pivot_root``, mount ``/proc`` and tmpfs, mask and make read-only what
   chapter 04's hardening lists, unmount the old root, remount the root ``nodev``;
   *sethostname*; *chdir*;
7. *drop privileges* (chapter 04): the capability bounding set, ``no_new_privs``, the
   user, the other capability sets, the seccomp filter;
8. *exec* the command (or call a Python function and report what it returned) — or,
   with an *init* (``run --init``), stay PID 1 as the reaper and fork the command
   (:func:`reap`).

Before all of these, the launcher joins the cgroups named in the plan (chapter 03), so
that the container's every process is born inside them.

Entering a running container ("join") is what ``nsenter`` does: open the target's
``/proc/<pid>/ns/*`` files first, then ``setns`` into each, then take its root.

Progress goes to the parent as JSON lines on the status pipe — ``unshared``, ``pid``,
``running``, ``result``, ``error`` — and the pipe closes itself at ``execve``, so its end
means "the command is running". Nothing is printed: stdout and stderr belong to the
container.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hardway.errors import HardwayError, PrivilegeError

# every import happens at the start: after dropping to an unprivileged host user the
# Python installation may be unreadable, and after chroot it is not there at all;
# hardway.isolation.network (a fifth of the start-up) only when the plan asks for a network, in
# main()
from hardway.isolation.mounts import (
    mask_path,
    mount_dev,
    mount_point,
    mount_sys,
    readonly_path,
)
from hardway.sys import linux

__all__ = ["chroot_into", "join_namespaces", "main", "pivot_into"]

#: the order namespaces are joined in: the user namespace first, because it grants
#: the capabilities the other ``setns`` calls need; the mount namespace last, because
#: it changes what ``/proc`` shows
JOIN_ORDER = ("user", "ipc", "uts", "net", "pid", "cgroup", "mnt")
#: what a function sent as source code finds already imported
SOURCE_GLOBALS = {"os": os, "errno": errno, "linux": linux, "Path": Path}
#: the signals an init passes on to the command (tini's list, less the job-control ones)
FORWARDED = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM,
    signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH,
)  # fmt: skip


# -- the building blocks (the labs ask you to write these yourself) --------------------------


def chroot_into(new_root: str) -> None:
    """Make *new_root* this process's root directory; the mount table is untouched."""
    os.chdir(new_root)
    os.chroot(".")
    os.chdir("/")


def pivot_into(new_root: str) -> None:
    """Make *new_root* the root of this mount namespace, with the old root still
    stacked on top of it; ``umount2(".", MNT_DETACH)`` then removes the old root.

    Needs a mount namespace of its own whose mounts are private. ``pivot_root(".", ".")``
    needs no ``put_old`` directory: the old root lands on the same mount point (the
    trick pivot_root(2) describes, and the one runc uses).
    """
    linux.mount(new_root, new_root, None, linux.MS_BIND | linux.MS_REC)  # a mount point
    os.chdir(new_root)
    linux.pivot_root(".", ".")


def join_namespaces(pid: int, kinds: Sequence[str]) -> None:
    """Move this process into the *kinds* namespaces of process *pid*, like nsenter.

    Every ``/proc/<pid>/ns/<kind>`` is opened *before* the first ``setns``: once in the
    container's mount namespace, ``/proc`` is the container's, where *pid* means
    another process or none. A PID namespace applies to children only (fork after).
    """
    ordered = sorted(kinds, key=JOIN_ORDER.index)
    fds = [(kind, os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)) for kind in ordered]
    try:
        for kind, fd in fds:
            linux.setns(fd, linux.NAMESPACES[kind])
            if kind == "user":
                _become_root_inside()
    finally:
        for _, fd in fds:
            os.close(fd)


def _become_root_inside() -> None:
    """After joining a user namespace: take uid and gid 0 of it, as nsenter -U does."""
    with contextlib.suppress(OSError):  # denied where setgroups is "deny"
        os.setgroups([])
    with contextlib.suppress(OSError):  # 0 may not be mapped at all
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)


# -- reporting to the parent --------------------------------------------------------------


class _Failed(Exception):
    """A named step failed; carries what the parent needs to raise the right error."""

    def __init__(self, step: str, exc: BaseException) -> None:
        super().__init__(step)
        self.step, self.exc = step, exc

    def report(self) -> dict[str, Any]:
        exc = self.exc
        number = getattr(exc, "errno", None)
        if isinstance(exc, HardwayError):
            message = exc.message
        elif isinstance(exc, OSError) and exc.strerror:
            message = exc.strerror + (f": {exc.filename!r}" if exc.filename else "")
        else:
            message = str(exc) or type(exc).__name__
        privilege = isinstance(exc, PrivilegeError) or number == errno.EPERM
        return {
            "step": self.step,
            "type": type(exc).__name__,
            "errno": number,
            "message": message,
            "fix": getattr(exc, "fix", None),
            "privilege": privilege,
        }


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    try:
        yield
    except _Failed:
        raise
    except Exception as exc:
        raise _Failed(name, exc) from exc


class _Status:
    """The status pipe: one JSON object per line, written whole (no buffering)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, event: str, **fields: Any) -> None:
        if self.fd < 0:
            return
        data = (json.dumps({"event": event, **fields}) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _read_line(fd: int) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            raise RuntimeError("the parent went away before the setup was done")
        line += chunk
    return line


# -- functions called inside ------------------------------------------------------------------


def _load_function(ref: dict[str, str]) -> Callable[..., Any]:
    """A function named ``{"module", "name"}`` or sent as ``{"source", "name"}``; loaded
    *before* the root changes, because imports afterwards would look in the new root."""
    if "source" in ref:
        namespace = dict(SOURCE_GLOBALS)
        exec(compile(ref["source"], f"<{ref['name']}>", "exec"), namespace)
        return namespace[ref["name"]]
    obj: Any = importlib.import_module(ref["module"])
    for part in ref["name"].split("."):
        obj = getattr(obj, part)
    return obj


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "__function__" in value:
        return _load_function(value["__function__"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _prepare_call(plan: dict[str, Any]) -> tuple[Callable[..., Any], list[Any]] | None:
    call = plan.get("call")
    if call is None:
        return None
    with _step("load the function"):
        return _load_function(call["function"]), [_decode(a) for a in call["args"]]


def _drop_privileges(plan: dict[str, Any]) -> None:
    """Chapter 04: give up what the command does not need, in the only order that works —
    the bounding set first (that needs ``CAP_SETPCAP``), then no_new_privs, then the
    user (``setuid`` to a non-root user empties its capability sets), then the other
    four sets exactly, then the seccomp filter: last, so that nothing the launcher
    still does is refused, and after no_new_privs, which the kernel requires of a
    process without ``CAP_SYS_ADMIN`` — without no_new_privs it must go first,
    while the capabilities are still there (runc does the same)."""
    program = plan.get("seccomp")
    if program is not None and not plan.get("no_new_privs"):
        _install_seccomp(program)
    if plan.get("capabilities") is not None:
        with _step("drop capabilities"):
            linux.drop_bounding_set(plan["capabilities"])
    if plan.get("no_new_privs"):
        with _step("no_new_privs"):
            linux.set_no_new_privs()
    if plan.get("run_as") is not None:
        uid, gid = plan["run_as"]
        with _step("set the user"):
            os.setgroups([gid])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
    sets = plan.get("capability_sets")
    if sets is not None:
        with _step("capability sets"):
            linux.set_capabilities(sets["effective"], sets["permitted"], sets["inheritable"])
            linux.clear_ambient()
            for name in sets["ambient"]:
                linux.raise_ambient(name)
    if program is not None and plan.get("no_new_privs"):
        _install_seccomp(program)


def _install_seccomp(program: str) -> None:
    with _step("seccomp"):
        linux.set_seccomp_filter(bytes.fromhex(program))


def _join_cgroups(plan: dict[str, Any]) -> None:
    """Chapter 03: write our pid to each ``cgroup.procs`` first; children are born there."""
    for procs in plan.get("cgroup_procs") or ():
        with _step("join the cgroup"), open(procs, "w") as f:
            f.write(f"{os.getpid()}\n")


def _finish(plan: dict[str, Any], status: _Status, target: Any) -> None:
    """The last step: exec the command, or call the function and report its result."""
    _drop_privileges(plan)
    status.send("running")
    if target is not None:
        func, args = target
        with _step("call"):
            value = func(*args)
        status.send("result", value=value)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    argv = plan["argv"]
    if plan.get("init"):
        reap(argv, plan["env"], status)
    with _step("exec"):
        os.execvpe(argv[0], argv, plan["env"])


def reap(argv: Sequence[str], env: dict[str, str], status: _Status) -> None:
    """Be PID 1 as ``docker run --init`` (tini) is: fork the command, pass every signal
    of :data:`FORWARDED` on to it, reap every process that ends up ours, and exit as the
    command exits (``128 + N`` when signal N killed it). Never returns.

    Why an init: the kernel gives a namespace's PID 1 no default signal actions — a
    SIGINT or SIGTERM it has no handler for is dropped — and makes it the parent of
    every orphan, which stays a zombie until PID 1 waits for it. Most programs were
    never written to do either. This one is the launcher itself, so it needs no
    program in the root filesystem.
    """
    # blocked until the handlers are in place: a signal sent meanwhile waits, not lost
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    child = os.fork()
    if child == 0:
        for signum in FORWARDED:  # Python's handlers are not the command's
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        with _step("exec"):
            os.execvpe(argv[0], argv, env)
    status.close()  # the command's copy closes at its execve: "running"
    for signum in FORWARDED:
        signal.signal(signum, lambda s, _frame: _forward(child, s))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    while True:
        try:
            pid, wait_status = os.waitpid(-1, 0)  # any child: orphans are ours too
        except ChildProcessError:
            os._exit(1)
        if pid == child:
            code = os.waitstatus_to_exitcode(wait_status)
            os._exit(code if code >= 0 else 128 - code)  # the rest die with PID 1


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _supervise(child: int, status: _Status) -> None:
    """Stay outside the PID namespace: pass signals to PID 1, exit as it exits."""
    status.send("pid", pid=child)
    status.close()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda s, _frame: os.kill(child, s))
    while True:
        try:
            _, wait_status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(wait_status)
    os._exit(code if code >= 0 else 128 - code)


def _fork_pid_one(status: _Status) -> None:
    """Fork; the child returns (as the first process of the new PID namespace), this
    process stays outside as its supervisor and never returns."""
    child = os.fork()
    if child:
        _supervise(child, status)
    # getppid() is 0 here: the parent is outside this PID namespace, so it cannot be
    # checked; a parent killed before prctl took its process group (us) along
    _die_with_parent(None)


def _die_with_parent(parent: int | None) -> None:
    linux.set_parent_death_signal(signal.SIGKILL)
    if parent is not None and os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


# -- the two modes ----------------------------------------------------------------------------


def _become(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    linux.set_dumpable(True)  # else /proc/self/* stays root's and the parent cannot map us


def _enter_root(plan: dict[str, Any]) -> None:
    kinds, root = plan["kinds"], plan["root"]
    if "mnt" in kinds:
        with _step("make mounts private"):
            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    pivoted = root is not None and plan["how"] == "pivot_root"
    # where each mount goes: made inside the root if the image has no such directory
    where = {name: name for name in ("/proc", "/sys", *plan["tmpfs"])}
    if root is not None:
        for name in ("/proc", *plan["tmpfs"]) if plan["proc"] else plan["tmpfs"]:
            with _step(f"make the mount point {name}"):
                where[name] = mount_point(root, name)
    if plan["dev"]:
        with _step("mount /dev"):
            mount_dev(root, ipc="ipc" in kinds, userns="user" in kinds)
    if plan.get("sys"):
        with _step("mount /sys"):
            where["/sys"] = mount_sys(root)
    if root is not None:
        with _step(plan["how"]):
            (pivot_into if pivoted else chroot_into)(root)
    if plan["proc"]:  # before the old root goes: a user namespace may mount proc only
        with _step("mount /proc"):  # while a fully visible proc is still mounted
            flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
            linux.mount("proc", where["/proc"], "proc", flags)
    for target in plan["tmpfs"]:
        with _step(f"mount tmpfs on {target}"):
            flags = linux.MS_NOSUID | linux.MS_NODEV
            linux.mount("tmpfs", where[target], "tmpfs", flags, "mode=755")
    for path in plan.get("masked_paths") or ():
        with _step(f"mask {path}"):
            mask_path(_resolved(path, where))
    for path in plan.get("readonly_paths") or ():
        with _step(f"make {path} read-only"):
            readonly_path(_resolved(path, where))
    if pivoted and plan["unmount_old_root"]:
        with _step("unmount the old root"):
            linux.umount2(".", linux.MNT_DETACH)
    if pivoted and plan.get("nodev"):
        with _step("remount the root nodev"):
            flags = os.statvfs("/").f_flag & (linux.MS_NOSUID | linux.MS_NOEXEC | linux.MS_RDONLY)
            linux.mount(None, "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_NODEV | flags)
    if root is not None:
        os.chdir("/")
    if plan["hostname"] is not None:
        with _step("sethostname"):
            linux.sethostname(plan["hostname"])
    with _step("chdir"):
        if plan.get("make_cwd"):  # Docker creates a missing WorkingDir, inside the root
            os.makedirs(plan["cwd"], exist_ok=True)
        os.chdir(plan["cwd"])


def _resolved(path: str, where: dict[str, str]) -> str:
    """*path* under ``/proc`` or ``/sys`` where that filesystem really is mounted."""
    top, _, rest = path.partition("/")[2].partition("/")
    base = where.get("/" + top)
    return path if base is None else f"{base}/{rest}".rstrip("/")


def create(plan: dict[str, Any], status: _Status, control: int) -> None:
    """Start a new container as *plan* describes (see the module docstring)."""
    if plan["host_user"] is not None:
        with _step("drop to the host user"):
            _become(plan["host_user"], plan["host_group"])
    target = _prepare_call(plan)
    # the PID namespace comes last: the next child after unshare(CLONE_NEWPID) becomes
    # its PID 1, and that must be the container, not `ip` run to set up the network
    flags = plan["flags"] & ~linux.CLONE_NEWPID
    if flags:
        with _step("unshare"):
            linux.unshare(flags)
    go: dict[str, Any] = {}
    if plan["sync"]:
        status.send("unshared", pid=os.getpid())
        with _step("wait for the parent"):
            go = json.loads(_read_line(control))
    os.close(control)
    if "user" in plan["kinds"]:  # the maps are written now: take uid 0 of the namespace,
        _become_root_inside()  # in case the one we had is not mapped to it
    if "net" in plan["kinds"]:
        network = sys.modules["hardway.isolation.network"]  # imported by main(), while it could be
        with _step("loopback up"):
            network.loopback_up()
        if go.get("veth"):
            with _step("veth inside"):
                network.configure_inside(network.Veth.from_json(go["veth"]))
    if "pid" in plan["kinds"]:
        with _step("unshare"):
            linux.unshare(linux.CLONE_NEWPID)
        _fork_pid_one(status)
    else:
        status.send("pid", pid=os.getpid())
    _enter_root(plan)
    _finish(plan, status, target)


def join(plan: dict[str, Any], status: _Status) -> None:
    """Enter the namespaces and the root of running process ``plan["pid"]``, then run."""
    pid = plan["pid"]
    target = _prepare_call(plan)
    with _step("open the namespaces"):
        mine, theirs = (Path(f"/proc/{p}/ns") for p in ("self", pid))
        kinds = [k for k in JOIN_ORDER if (mine / k).stat().st_ino != (theirs / k).stat().st_ino]
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    with _step("setns"):
        join_namespaces(pid, kinds)
    with _step("enter the root"):
        os.fchdir(root)
        os.chroot(".")
        os.close(root)
    if "pid" in kinds:
        _fork_pid_one(status)
    else:
        status.send("pid", pid=os.getpid())
    with _step("chdir"):
        os.chdir(plan["cwd"])
    _finish(plan, status, target)


def main(argv: Sequence[str]) -> int:
    """``SPEC STATUS CONTROL``: read the plan from SPEC, report on STATUS."""
    spec_fd, status_fd, control_fd = (int(a) for a in argv)
    with os.fdopen(spec_fd, "rb") as spec:
        plan = json.loads(spec.read())
    for fd in (status_fd, control_fd):
        os.set_inheritable(fd, False)  # closed by execve: the parent reads "running"
    status = _Status(status_fd)
    if "net" in plan.get("kinds", ()):
        importlib.import_module("hardway.isolation.network")
    try:
        _die_with_parent(plan["parent"])
        _join_cgroups(plan)
        if plan["mode"] == "create":
            create(plan, status, control_fd)
        else:
            join(plan, status)
    except _Failed as failed:
        status.send("error", **failed.report())
        os._exit(126)
    return 0  # not reached: create and join end in exec or _exit


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
