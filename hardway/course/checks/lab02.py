"""hardway.course.checks.lab02
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 02, namespaces. Every one runs the learner's code for real, in a
forked child with a time limit, and looks from outside at what it did:

* 02.1 ``my_spawn(target, *, namespaces, uid=0, hostname=None) -> int``: the check's
  ``target`` reports from inside (its PID, namespaces, ids, maps, hostname), and the
  check watches who writes ``uid_map``/``gid_map``/``setgroups`` and in which order;
* 02.2 ``my_mount_proc()``: called as PID 1 of a PID and mount namespace the check
  makes, behind the mount safety net (:mod:`hardway.course.checks.mounts`);
* 02.3 ``my_container(target) -> int``: the learner's two functions put together —
  ``target`` must be PID 1 with a ``/proc`` that shows only its own processes;
* 02.4 ``my_enter(pid, kinds)``: what ``nsenter`` does, into a running container;
* 02.5 ``my_exec_in(pid, kinds, target) -> int``: ``nsenter --all``, PID namespace
  included (a fork after ``setns``), the caller left where it was;
* 02.6 ``my_veth(pid, name, host_address, container_address)``: a veth pair between a
  stand-in "host" network namespace the check makes and a process of its own — nothing
  on this machine's own network changes, and everything goes when the namespaces go.

``REFERENCE`` holds the course's ``my_spawn`` and ``my_mount_proc`` for the labs that
carry them (:func:`hardway.course.carry.carry`).
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from hardway.course.checks import fresh_rng
from hardway.course.checks.child import in_child
from hardway.course.checks.mounts import sandboxed
from hardway.course.grading import exercise, expect
from hardway.errors import HardwayError, MissingToolError, PrivilegeError
from hardway.isolation import namespaces
from hardway.isolation.child import write_id_maps
from hardway.isolation.container import start
from hardway.isolation.namespaces import KINDS, IdMap, Isolation
from hardway.sys import linux

__all__ = [
    "REFERENCE",
    "container_has_proc",
    "exec_in_joins",
    "namespaces_entered",
    "proc_is_fresh",
    "spawn_isolates",
    "veth_connects",
]

#: the kinds my_spawn must handle (cgroup is chapter 03's)
SPAWN_KINDS = ("uts", "pid", "mnt", "ipc", "net", "user")
#: the unprivileged user the rootless case of 02.1 runs as
_NOBODY = 65534
_PROC_FLAGS = {"nosuid": linux.MS_NOSUID, "nodev": linux.MS_NODEV, "noexec": linux.MS_NOEXEC}


def _read(path: str) -> str:
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
        return f.read()
    return ""


def _report(fd: int, facts: dict[str, Any]) -> None:
    """Send what a probe saw to the check: one JSON line on a pipe."""
    os.write(fd, (json.dumps(facts) + "\n").encode())


def _collect(fd: int) -> list[dict[str, Any]]:
    """Every JSON line waiting in a pipe (non-blocking: a process left running keeps it open)."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def _inside_facts() -> dict[str, Any]:
    """What a process sees of itself: the namespaces, ids and maps a runtime gave it."""
    return {
        "pid": os.getpid(),
        "hostname": os.uname().nodename,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "ns": {kind: os.stat(f"/proc/self/ns/{kind}").st_ino for kind in KINDS},
        "uid_map": _read("/proc/self/uid_map").split(),
        "gid_map": _read("/proc/self/gid_map").split(),
        "setgroups": _read("/proc/self/setgroups").strip(),
    }


# -- 02.1 my_spawn -----------------------------------------------------------------------------

_MAP_FILE = re.compile(r"^/proc/(\d+|self)/(uid_map|gid_map|setgroups)$")


@contextlib.contextmanager
def _watching_map_writes(log: int) -> Iterator[None]:
    """In the check's child: note every write to a uid_map, gid_map or setgroups file
    (who, which, in what order) on the pipe *log*, and hold a parent's uid_map write back
    a little, so that a child that does not wait for its maps runs without them."""
    real_open, real_os_open, caller = builtins.open, os.open, os.getpid()

    def note(path: object, writing: bool) -> None:
        match = _MAP_FILE.match(os.fsdecode(path)) if isinstance(path, str | bytes) else None
        if not (match and writing):
            return
        os.write(log, (json.dumps({"by": os.getpid(), "file": match[2]}) + "\n").encode())
        if match[2] == "uid_map" and os.getpid() == caller:
            time.sleep(0.3)

    def watched_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        note(file if not isinstance(file, os.PathLike) else os.fspath(file), "r" not in mode)
        return real_open(file, mode, *args, **kwargs)

    def watched_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        target = os.fspath(path) if isinstance(path, os.PathLike) else path
        note(target, bool(flags & (os.O_WRONLY | os.O_RDWR)))
        return real_os_open(path, flags, *args, **kwargs)

    builtins.open = io.open = watched_open  # type: ignore[assignment]
    os.open = watched_os_open  # type: ignore[assignment]
    try:
        yield
    finally:
        builtins.open = io.open = real_open
        os.open = real_os_open


def _spawn_once(
    my_spawn: Callable[..., int],
    kinds: list[str],
    uid: int,
    hostname: str | None,
    as_user: int | None = None,
) -> dict[str, Any]:
    """In the check's child: my_spawn a probe, and return what it and the watch saw.
    With *as_user*, the check drops to that unprivileged uid first, as a rootless
    runtime runs: then the kernel itself refuses maps written the wrong way."""
    if as_user is not None:
        os.setgroups([])
        os.setresgid(as_user, as_user, as_user)
        os.setresuid(as_user, as_user, as_user)
        linux.set_dumpable(True)  # else /proc/PID of its children stays root's
    facts_r, facts_w = os.pipe()
    log_r, log_w = os.pipe()
    code = secrets.randbelow(90) + 5

    def probe() -> int:
        _report(facts_w, _inside_facts())
        return code

    outside = {
        "pid": os.getpid(),
        "hostname": os.uname().nodename,
        "ns": namespaces.ns_inodes(),
        "uid": os.getuid(),
        "gid": os.getgid(),
    }
    try:
        with _watching_map_writes(log_w):
            status = my_spawn(probe, namespaces=list(kinds), uid=uid, hostname=hostname)
    except PermissionError:
        os.close(log_w)
        order = [w["file"] for w in _collect(log_r)]
        if "setgroups" in order and "gid_map" in order[: order.index("setgroups")]:
            raise AssertionError(
                "writing setgroups was refused (EPERM) because gid_map was already written: "
                "write 'deny' to setgroups *before* gid_map"
            ) from None
        if as_user is not None and order:
            rootless = f"(this case runs my_spawn as uid {as_user}, as a rootless runtime runs)"
            if order[-1] == "gid_map" and "setgroups" not in order:
                raise AssertionError(
                    f"writing gid_map was refused (EPERM) {rootless}: an unprivileged parent "
                    "must write 'deny' to /proc/PID/setgroups before gid_map"
                ) from None
            if order[-1] in ("uid_map", "gid_map"):
                raise AssertionError(
                    f"writing {order[-1]} was refused (EPERM) {rootless}: an unprivileged "
                    "parent may map only its own id, one line: inside id, os.getuid() (or "
                    "os.getgid()), 1"
                ) from None
        raise
    finally:
        os.close(facts_w)
        with contextlib.suppress(OSError):
            os.close(log_w)
    seen = _collect(facts_r)
    writes = _collect(log_r)
    return {"status": status, "code": code, "seen": seen, "writes": writes, "outside": outside}


def _judge_spawn(run: dict[str, Any], kinds: list[str], uid: int, hostname: str | None) -> None:
    call_text = f"my_spawn(target, namespaces={kinds}, uid={uid}, hostname={hostname!r})"
    seen, outside, code = run["seen"], run["outside"], run["code"]
    expect(
        seen,
        f"{call_text}: target never ran (or had not finished when my_spawn returned): run "
        "target() in the child, and wait for the child before returning",
    )
    inside = seen[0]
    if "pid" in kinds:
        expect(
            inside["pid"] == 1,
            f"{call_text}: target ran as PID {inside['pid']}, not 1: unshare(CLONE_NEWPID) "
            "moves only the *children* of the caller into the new namespace — fork after it, "
            "and run target in that child",
        )
    for kind in SPAWN_KINDS:
        own = inside["ns"][kind] != outside["ns"][kind]
        if kind in kinds:
            expect(own, f"{call_text}: target is still in the caller's {kind} namespace")
        else:
            expect(not own, f"{call_text}: target has a {kind} namespace of its own, not asked for")
    want_host = hostname if hostname is not None else outside["hostname"]
    expect(
        inside["hostname"] == want_host,
        f"{call_text}: target sees the hostname {inside['hostname']!r}, not {want_host!r}",
    )
    if "user" in kinds:
        _judge_maps(run, inside, uid, call_text)
    expect(
        run["status"] == code,
        f"{call_text} returned {run['status']!r}, but target returned {code}: wait for the "
        "child and return its exit status (os.waitstatus_to_exitcode of what os.waitpid gives)",
    )


def _judge_maps(run: dict[str, Any], inside: dict[str, Any], uid: int, call_text: str) -> None:
    outside, writes = run["outside"], run["writes"]
    by_child = sorted({w["file"] for w in writes if w["by"] != outside["pid"]})
    by_child = [name for name in by_child if name != "setgroups"]
    expect(
        not by_child,
        f"{call_text}: {' and '.join(by_child)} was written by the child itself: write it "
        "from the parent, outside the new user namespace (the child may map only its own "
        "id, and a rootless runtime needs more than that)",
    )
    want_uid = [str(uid), str(outside["uid"]), "1"]
    expect(
        inside["uid_map"],
        f"{call_text}: target started before its uid_map was written (it ran as uid "
        f"{inside['uid']}, the overflow id): make the child wait on a pipe until the parent "
        "has written the maps",
    )
    expect(
        inside["uid_map"] == want_uid,
        f"{call_text}: uid_map is {' '.join(inside['uid_map'])!r}, expected "
        f"{' '.join(want_uid)!r} (inside, outside, count)",
    )
    expect(
        inside["setgroups"] == "deny",
        f"{call_text}: setgroups is {inside['setgroups']!r}: write 'deny' to /proc/PID/setgroups "
        "before gid_map (an unprivileged parent may not write gid_map without it)",
    )
    order = [w["file"] for w in writes]
    if "setgroups" in order and "gid_map" in order:
        expect(
            order.index("setgroups") < order.index("gid_map"),
            f"{call_text}: setgroups was written after gid_map: deny setgroups first",
        )
    want_gid = [str(uid), str(outside["gid"]), "1"]
    expect(
        inside["gid_map"] == want_gid,
        f"{call_text}: gid_map is {' '.join(inside['gid_map'])!r}, expected {' '.join(want_gid)!r}",
    )
    expect(
        inside["uid"] == uid,
        f"{call_text}: target runs as uid {inside['uid']}, not {uid}",
    )


@exercise(
    "02.1",
    points=6,
    against=("kernel",),
    hints=(
        "two processes take part: the child unshares, the parent (outside the new user "
        "namespace) writes the child's maps, and the child waits until it has.",
        "fork; in the child: unshare(all the flags), tell the parent through a pipe, read "
        "another pipe until the parent says the maps are written, sethostname, then — for "
        "a PID namespace — fork again and run target in that grandchild (PID 1). In the "
        "parent: wait for the first message, write setgroups 'deny', uid_map, gid_map, say "
        "go, and return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]).",
        "the maps are one line each: f'{uid} {os.getuid()} 1' to /proc/PID/uid_map and "
        "f'{uid} {os.getgid()} 1' to gid_map, after 'deny' to /proc/PID/setgroups; the "
        "child ends with os._exit(code), never by returning into the caller's code.",
    ),
)
def spawn_isolates(my_spawn: Callable[..., int]) -> None:
    """my_spawn(target, ...) runs target in new namespaces, maps written by the parent."""
    rng = fresh_rng()
    extra = rng.sample(["uts", "ipc", "net", "mnt"], rng.randint(1, 3))
    cases = [  # named cases every time, then a random one
        (list(SPAWN_KINDS), 0, f"lab02-{secrets.token_hex(3)}"),
        (["user", "pid", "uts"], rng.randint(1000, 60000), None),
        (sorted(set(extra) | ({"pid"} if rng.random() < 0.5 else set())), 0, None),
    ]
    for kinds, uid, hostname in cases:
        run = sandboxed(
            lambda k=kinds, u=uid, h=hostname: _spawn_once(my_spawn, k, u, h),
            timeout=20,
            what="your my_spawn",
        )
        _judge_spawn(run, kinds, uid, hostname)
    # rootless: the kernel refuses what root may get away with (no setgroups deny, …)
    kinds = ["user", "uts", "pid"]
    run = sandboxed(
        lambda: _spawn_once(my_spawn, kinds, 0, "rootless", as_user=_NOBODY),
        timeout=20,
        what="your my_spawn",
    )
    _judge_spawn(run, kinds, 0, "rootless")


# -- 02.2 my_mount_proc ----------------------------------------------------------------------


def _proc_facts() -> dict[str, Any]:
    """What /proc shows to the process reading it."""
    mounts = [line.split() for line in _read("/proc/self/mountinfo").splitlines()]
    on_proc = [m for m in mounts if len(m) > 4 and m[4] == "/proc"]
    last = on_proc[-1] if on_proc else []
    dash = last.index("-") if "-" in last else -1
    return {
        "pid": os.getpid(),
        "self": os.readlink("/proc/self") if os.path.lexists("/proc/self") else None,
        "pids": sorted(int(n) for n in os.listdir("/proc") if n.isdigit()),
        "fstype": last[dash + 1] if dash > 0 else None,
        "options": last[5].split(",") if last else [],
    }


def _pid_one_mounting(my_mount_proc: Callable[[], None]) -> dict[str, Any]:
    """In the check's child: a PID and mount namespace of the check's (its mounts still
    shared, as a runtime finds them); its PID 1 calls my_mount_proc and looks at /proc."""
    linux.unshare(linux.CLONE_NEWPID | linux.CLONE_NEWNS)

    def pid_one() -> dict[str, Any]:
        my_mount_proc()
        return _proc_facts()

    return in_child(pid_one, timeout=15, what="your my_mount_proc")


@exercise(
    "02.2",
    points=3,
    against=("kernel",),
    hints=(
        "a procfs shows the PID namespace of whoever mounts it — and a mount in a namespace "
        "that is still shared also lands on the host.",
        "make / private recursively first, then mount a *new* filesystem of type 'proc' on "
        "/proc (not a bind mount of the old one), with the flags runc uses.",
        "linux.mount(None, '/', None, linux.MS_REC | linux.MS_PRIVATE); "
        "linux.mount('proc', '/proc', 'proc', linux.MS_NOSUID | linux.MS_NODEV | "
        "linux.MS_NOEXEC).",
    ),
)
def proc_is_fresh(my_mount_proc: Callable[[], None]) -> None:
    """my_mount_proc(), called as PID 1, gives it a /proc of its own PID namespace."""
    facts = sandboxed(
        lambda: _pid_one_mounting(my_mount_proc), timeout=20, what="your my_mount_proc"
    )
    expect(
        facts["fstype"] == "proc",
        f"/proc is a {facts['fstype']} mount, not a procfs: mount('proc', '/proc', 'proc', …)",
    )
    expect(
        facts["self"] == "1" and facts["pids"] == [1],
        f"the new /proc shows {len(facts['pids'])} processes and /proc/self is "
        f"{facts['self']!r}, not '1': it is a procfs of another PID namespace (a bind mount of "
        "the old /proc?) — mount a new one, from inside the new namespace",
    )
    missing = [name for name in _PROC_FLAGS if name not in facts["options"]]
    expect(
        not missing,
        f"/proc is mounted without {', '.join(missing)}: pass MS_NOSUID | MS_NODEV | "
        "MS_NOEXEC, as runc does",
    )


# -- 02.3 my_container -----------------------------------------------------------------------


def _container_once(my_container: Callable[[Callable[[], int]], int]) -> dict[str, Any]:
    facts_r, facts_w = os.pipe()
    code = secrets.randbelow(90) + 5
    before = (os.stat("/proc").st_dev, sorted(_read("/proc/self/mountinfo").splitlines()))

    def probe() -> int:
        _report(facts_w, _proc_facts())
        return code

    try:
        status = my_container(probe)
    finally:
        os.close(facts_w)
    seen = _collect(facts_r)
    after = (os.stat("/proc").st_dev, sorted(_read("/proc/self/mountinfo").splitlines()))
    return {"status": status, "code": code, "seen": seen, "caller_changed": before != after}


@exercise(
    "02.3",
    points=2,
    against=("kernel",),
    hints=(
        "which process must mount /proc: the caller, the child that unshares, or PID 1?",
        "call your my_spawn with a target of your own that calls my_mount_proc() and then "
        "the real target — in PID 1 of the new PID namespace, in a mount namespace of its "
        "own (ask for 'pid' and 'mnt').",
        "def pid_one(): my_mount_proc(); return target() — then "
        "return my_spawn(pid_one, namespaces=['pid', 'mnt', 'uts', 'ipc'], hostname=…).",
    ),
)
def container_has_proc(my_container: Callable[[Callable[[], int]], int]) -> None:
    """my_container(target) runs target as PID 1 with a /proc of its own."""
    run = sandboxed(lambda: _container_once(my_container), timeout=20, what="your my_container")
    expect(run["seen"], "target never ran (or had not finished when my_container returned)")
    facts = run["seen"][0]
    expect(
        facts["pid"] == 1,
        f"target ran as PID {facts['pid']}, not 1: ask my_spawn for a 'pid' namespace",
    )
    expect(
        facts["self"] == "1" and facts["pids"] == [1],
        f"target's /proc shows {len(facts['pids'])} processes and /proc/self is "
        f"{facts['self']!r}: it belongs to another PID namespace — it was mounted before "
        "the fork into the new one; call my_mount_proc() inside, in PID 1",
    )
    expect(
        not run["caller_changed"],
        "my_container changed the caller's mount table: the /proc mount must happen in a "
        "mount namespace of the container's own — ask for 'mnt', and mount in target's "
        "process, not before my_spawn",
    )
    expect(
        run["status"] == run["code"],
        f"my_container returned {run['status']!r}, but target returned {run['code']}",
    )


# -- 02.4 my_enter -----------------------------------------------------------------------------


def probe_enter(enter: Callable[[int, Sequence[str]], None], pid: int, kinds: list[str]) -> Any:
    """Run inside a child: call ``enter(pid, kinds)``, then report where we are."""
    own = os.open("/proc/self/ns", os.O_RDONLY | os.O_DIRECTORY)  # our own, before we move
    enter(pid, kinds)
    inodes = {kind: os.stat(kind, dir_fd=own).st_ino for kind in KINDS}
    return {"inodes": inodes, "hostname": os.uname().nodename}


@exercise(
    "02.4",
    points=2,
    against=("kernel",),
    hints=(
        "once you are in the container's mount namespace, what does /proc/PID mean?",
        "open every /proc/PID/ns/KIND file first, then call linux.setns on each: once "
        "you are in the container's mount namespace, /proc is the container's and PID "
        "names another process (or none). Close the files afterwards.",
        "files = [os.open(f'/proc/{pid}/ns/{k}', os.O_RDONLY) for k in kinds]; then "
        "linux.setns(fd) for each, and os.close them in a finally.",
    ),
)
def namespaces_entered(my_enter: Callable[[int, Sequence[str]], None]) -> None:
    """my_enter(pid, kinds) joins those namespaces of a running container, like nsenter."""
    rng = fresh_rng()
    hostname = f"lab02-{secrets.token_hex(3)}"
    kinds = ["mnt", *rng.sample(["uts", "ipc", "net", "cgroup"], 3)]  # mnt first: a trap
    spec = Isolation({"pid", "mnt", "uts", "ipc", "net", "cgroup"}, hostname=hostname, proc=True)
    try:
        with start(spec, ["sleep", "30"]) as box:
            theirs = box.namespaces()
            try:
                seen = in_child(
                    lambda: probe_enter(my_enter, box.pid, kinds), timeout=15, what="your my_enter"
                )
            except (FileNotFoundError, ProcessLookupError) as exc:
                raise AssertionError(
                    f"my_enter({box.pid}, {kinds}) raised {type(exc).__name__}: {exc}: was a "
                    "/proc file opened after joining the mount namespace? Open them all first"
                ) from None
    except (PrivilegeError, MissingToolError):
        raise  # not graded here: the machine cannot start the container
    except HardwayError as exc:
        raise AssertionError(f"could not start a container to enter: {exc}") from None
    mine = namespaces.ns_inodes()
    for kind in KINDS:
        target = theirs if kind in kinds else mine
        where = "the container's" if kind in kinds else "still the host's"
        expect(
            seen["inodes"][kind] == target[kind],
            f"after my_enter(pid, {kinds}) the {kind} namespace is not {where}",
        )
    want = hostname if "uts" in kinds else os.uname().nodename
    expect(
        seen["hostname"] == want,
        f"after my_enter(pid, {kinds}) the hostname is {seen['hostname']!r}, not {want!r}",
    )


# -- 02.5 my_exec_in ---------------------------------------------------------------------------


def _exec_in_once(my_exec_in: Callable[..., int], pid: int, kinds: list[str]) -> dict[str, Any]:
    """In the check's child (the caller): my_exec_in a probe into container *pid*."""
    facts_r, facts_w = os.pipe()
    host_proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)  # this side's, kept open
    code = secrets.randbelow(90) + 5

    def inodes() -> dict[str, int]:  # through this side's /proc: a moved caller sees another
        return {kind: os.stat(f"self/ns/{kind}", dir_fd=host_proc).st_ino for kind in KINDS}

    mine = inodes()

    def probe() -> int:
        ns = inodes()
        _report(
            facts_w,
            {
                "ns": ns,
                "hostname": os.uname().nodename,
                "pid": os.getpid(),
                "init": _read("/proc/1/comm").strip(),
            },
        )
        return code

    try:
        status = my_exec_in(pid, list(kinds), probe)
    finally:
        os.close(facts_w)
    moved = inodes() != mine
    return {"status": status, "code": code, "seen": _collect(facts_r), "moved": moved}


@exercise(
    "02.5",
    points=3,
    against=("kernel",),
    hints=(
        "two things stand between my_enter and `nsenter --all`: the caller must stay where "
        "it is, and a PID namespace only takes in children.",
        "fork; in the child: my_enter(pid, kinds), then — with 'pid' among the kinds — fork "
        "once more and run target in that grandchild, wait for it, and end with its status; "
        "the parent waits for the child and returns its exit status.",
        "in the child: my_enter(pid, kinds); grandchild = os.fork(); if grandchild == 0: "
        "os._exit(target()); os._exit(os.waitstatus_to_exitcode(os.waitpid(grandchild, "
        "0)[1])) — and the parent returns os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]).",
    ),
)
def exec_in_joins(my_exec_in: Callable[..., int]) -> None:
    """my_exec_in(pid, kinds, target) runs target inside a running container, like nsenter."""
    hostname = f"lab02-{secrets.token_hex(3)}"
    kinds = ["uts", "ipc", "net", "pid", "mnt"]
    spec = Isolation({"pid", "mnt", "uts", "ipc", "net"}, hostname=hostname, proc=True)
    try:
        with start(spec, ["sleep", "30"]) as box:
            theirs = box.namespaces()
            run = in_child(
                lambda: _exec_in_once(my_exec_in, box.pid, kinds),
                timeout=20,
                what="your my_exec_in",
            )
    except (PrivilegeError, MissingToolError):
        raise  # not graded here: the machine cannot start the container
    except HardwayError as exc:
        raise AssertionError(f"could not start a container to enter: {exc}") from None
    expect(
        not run["moved"],
        "my_exec_in moved its caller into the container's namespaces: fork first, and "
        "call my_enter in the child",
    )
    expect(run["seen"], "target never ran (or had not finished when my_exec_in returned)")
    facts = run["seen"][0]
    for kind in kinds:
        if kind == "pid":
            expect(
                facts["ns"]["pid"] == theirs["pid"],
                "target is not in the container's PID namespace: setns into a PID namespace "
                "applies only to the children of the caller — fork after joining, and run "
                "target in that child",
            )
        expect(
            facts["ns"][kind] == theirs[kind],
            f"target is not in the container's {kind} namespace",
        )
    expect(facts["hostname"] == hostname, f"target sees the hostname {facts['hostname']!r}")
    expect(
        facts["init"] == "sleep" and facts["pid"] != 1,
        f"target sees PID 1 as {facts['init']!r} and itself as PID {facts['pid']}: in the "
        "container, the container's command is PID 1",
    )
    expect(
        run["status"] == run["code"],
        f"my_exec_in returned {run['status']!r}, but target returned {run['code']}: wait "
        "for the child and return its exit status",
    )


# -- 02.6 my_veth ------------------------------------------------------------------------------


def _links(pid: int | None = None) -> dict[str, dict[str, Any]]:
    """name → {"up", "addresses", "kind"} of the devices in this network namespace, or
    in *pid*'s (through nsenter)."""
    enter = ["nsenter", f"--net=/proc/{pid}/ns/net"] if pid else []
    done = subprocess.run(
        [*enter, "ip", "-j", "-d", "address", "show"], capture_output=True, text=True, timeout=10
    )
    if done.returncode != 0:
        raise AssertionError(f"ip address show failed: {done.stderr.strip()}")
    found = {}
    for link in json.loads(done.stdout or "[]"):
        found[link["ifname"]] = {
            "up": "UP" in link.get("flags", []),
            "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])],
            "kind": link.get("linkinfo", {}).get("info_kind", ""),
        }
    return found


def _listener(ready: int, token: bytes) -> None:  # pragma: no cover - a forked child
    """The container: its own network namespace, one TCP listener that sends *token*."""
    linux.set_parent_death_signal(signal.SIGKILL)
    linux.unshare(linux.CLONE_NEWNET)
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", 7777))
        server.listen(1)
        os.write(ready, b"r")
        while True:
            conn, _ = server.accept()
            with conn:
                conn.sendall(token)


def _veth_in_stand_in(my_veth: Callable[..., None]) -> None:
    """In the check's child: a stand-in host network namespace, a container process in a
    namespace of its own, the learner's my_veth between them; then look from both ends."""
    linux.unshare(linux.CLONE_NEWNET | linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    os.makedirs("/run/netns", exist_ok=True)  # `ip netns add` writes here: keep it ours
    linux.mount("tmpfs", "/run/netns", "tmpfs", 0, "size=64k")
    rng = fresh_rng()
    octets = (rng.randint(0, 255), rng.randint(0, 255), rng.randrange(0, 256, 4))
    subnet = IPv4Network(("10.{}.{}.{}".format(*octets), 30))
    host, inside = f"{subnet[1]}/30", f"{subnet[2]}/30"
    name = f"hw-{secrets.token_hex(3)}"
    token = secrets.token_hex(8).encode()
    ready_r, ready_w = os.pipe()
    container = os.fork()
    if container == 0:  # pragma: no cover
        try:
            _listener(ready_w, token)
        finally:
            os._exit(1)
    try:
        expect(os.read(ready_r, 1) == b"r", "the check's container did not start")
        call_text = f"my_veth({container}, {name!r}, {host!r}, {inside!r})"
        my_veth(container, name, host, inside)
        _judge_veth(call_text, container, name, host, inside, token, str(subnet[2]))
        _judge_cleanup(my_veth, name, host, inside)
    finally:
        os.kill(container, signal.SIGKILL)
        os.waitpid(container, 0)


def _judge_veth(
    call_text: str, container: int, name: str, host: str, inside: str, token: bytes, ip: str
) -> None:
    here, there = _links(), _links(container)
    expect(name in here, f"after {call_text} there is no device {name} on the host")
    stray = [n for n, link in here.items() if link["kind"] == "veth" and n != name]
    expect(
        "eth0" in there or not stray,
        f"after {call_text} the other end ({stray[0] if stray else ''}) is still on the host: "
        f"move it into the container's namespace: ip link set PEER netns {container}",
    )
    expect(
        "eth0" in there,
        f"after {call_text} the container has no eth0 (it has {sorted(there)}): rename the "
        "peer to eth0 inside",
    )
    expect(here[name]["up"], f"{name} is DOWN on the host: ip link set {name} up")
    expect(there["eth0"]["up"], "eth0 is DOWN in the container: ip link set eth0 up, inside")
    expect(there.get("lo", {}).get("up"), "lo is DOWN in the container: raise it too, inside")
    expect(host in here[name]["addresses"], f"{name} has no address {host} on the host")
    expect(inside in there["eth0"]["addresses"], f"eth0 has no address {inside} in the container")
    try:
        with socket.create_connection((ip, 7777), timeout=3) as conn:
            got = conn.recv(64)
    except OSError as exc:
        raise AssertionError(f"the host cannot reach {ip}:7777 in the container: {exc}") from None
    expect(got == token, "the host reached the container, but read another greeting")


def _judge_cleanup(my_veth: Callable[..., None], name: str, host: str, inside: str) -> None:
    """A step that fails must not leave the pair behind: a pid that is gone."""
    gone = os.fork()
    if gone == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(gone, 0)
    other = f"hw-{secrets.token_hex(3)}"
    try:
        my_veth(gone, other, host, inside)
    except Exception:
        pass
    else:
        raise AssertionError(
            f"my_veth({gone}, …) returned, but process {gone} does not exist: let a failed "
            "step raise (subprocess.run(…, check=True))"
        )
    expect(
        other not in _links(),
        f"my_veth({gone}, {other!r}, …) failed half-way and left {other} behind: delete the "
        "pair when a step fails (ip link delete NAME), so nothing is left on the host",
    )


@exercise(
    "02.6",
    points=4,
    against=("kernel",),
    hints=(
        "a veth pair is made on the host, and only then is one end moved into the "
        "container's namespace; some steps must run inside it.",
        "ip link add NAME type veth peer name PEER; ip link set PEER netns PID; address and "
        "raise NAME on the host; then inside (nsenter --target PID --net ip …): rename PEER "
        "to eth0, address it, raise it and lo. If a step fails, delete NAME and raise.",
        "subprocess.run(['ip', 'link', 'add', name, 'type', 'veth', 'peer', 'name', peer], "
        "check=True) … and for the steps inside: ['nsenter', f'--target={pid}', '--net', "
        "'ip', 'link', 'set', peer, 'name', 'eth0'] — wrap them in try/except that runs "
        "['ip', 'link', 'delete', name] before raising again.",
    ),
)
def veth_connects(my_veth: Callable[..., None]) -> None:
    """my_veth(pid, name, host_address, container_address) connects host and container."""
    for tool in ("ip", "nsenter"):
        if not any(Path(d, tool).exists() for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin")):
            raise MissingToolError(f"{tool} is not installed", fix="apt-get install iproute2")
    in_child(lambda: _veth_in_stand_in(my_veth), timeout=30, what="your my_veth")


# -- what later labs carry ----------------------------------------------------------------------


def reference_spawn(
    target: Callable[[], int],
    *,
    namespaces: Sequence[str],
    uid: int = 0,
    hostname: str | None = None,
) -> int:
    """The course's my_spawn: fork; the child unshares and waits for the parent's maps
    (:func:`hardway.isolation.child.write_id_maps`), then forks PID 1 if asked."""
    flags = linux.namespace_flags(*namespaces)
    unshared_r, unshared_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(unshared_r)
            os.close(go_w)
            linux.unshare(flags)
            os.write(unshared_w, b"u")
            if os.read(go_r, 1) == b"g":
                if hostname is not None:
                    linux.sethostname(hostname)
                code = _pid_one(target) if "pid" in namespaces else int(target())
        finally:
            os._exit(code)
    os.close(unshared_w)
    os.close(go_r)
    try:
        if os.read(unshared_r, 1) == b"u" and "user" in namespaces:
            Path(f"/proc/{pid}/setgroups").write_text("deny")
            write_id_maps(pid, [IdMap(uid, os.getuid())], [IdMap(uid, os.getgid())])
        os.write(go_w, b"g")
    finally:
        os.close(unshared_r)
        os.close(go_w)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _pid_one(target: Callable[[], int]) -> int:  # pragma: no cover - in the child
    child = os.fork()
    if child == 0:
        code = 1
        try:
            code = int(target())
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])


def reference_mount_proc() -> None:
    """The course's my_mount_proc: private mounts, then a procfs as runc mounts it."""
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)


#: the course's versions of what lab 02 hands on (carry("02", ...))
REFERENCE: dict[str, Callable[..., Any]] = {
    "my_spawn": reference_spawn,
    "my_mount_proc": reference_mount_proc,
}
