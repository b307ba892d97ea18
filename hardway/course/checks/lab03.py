"""hardway.course.checks.lab03
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 03, cgroups by hand. Each one runs the learner's code against the
kernel's cgroup filesystem, in a child with a time limit
(:func:`~hardway.course.checks.child.in_child`), under a parent group the check makes and
removes with everything in it (:mod:`hardway.course.checks.cgroupbox`):

* 03.1 ``cgroup_version(mounts) -> "v2" | "v1"``: read from ``/proc/self/mounts`` text
  (pure v2, hybrid, pure v1 built in a scratch directory, then this machine's);
* 03.2 ``my_cgroup(name, *, memory, cpus, pids) -> Path``: the group made, the limits
  in the files of this machine's version, read back;
* 03.3 ``my_cgroup_add(cgroup, pid)``: ``/proc/PID/cgroup`` of a sleeping process;
* 03.4 ``my_cgroup_remove(cgroup)``: a group with processes still inside is gone;
* 03.5 ``run_in_cgroup(cgroup, argv)`` and ``oom_kills(cgroup)``: a memory hog in the
  learner's cgroup is OOM-killed, and the learner reads the kill from the kernel;
* 03.6 a fork bomb in the learner's cgroup stops at the learner's ``pids.max``;
* 03.7 ``cpu_stat(cgroup) -> dict``: a busy loop in the learner's group with a CPU limit
  is throttled, and the learner reads the counters from the right hierarchy.

``REFERENCE`` hands ``my_cgroup``, ``my_cgroup_add`` and ``my_cgroup_remove`` on to lab
04 (thin adapters over :class:`hardway.isolation.group.Group`).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from hardway.course.checks import cgroupbox, fresh_rng, scratch
from hardway.course.checks.child import in_child
from hardway.course.grading import exercise, expect
from hardway.isolation.cgroups import detect
from hardway.isolation.group import Group
from hardway.isolation.limits import Limits, cpu_max, cpu_quota, parse_keyed

__all__ = [
    "REFERENCE",
    "bomb_stopped",
    "cpu_throttled",
    "group_made",
    "group_removed",
    "oom_seen",
    "process_moved",
    "version_told",
]

# -- the course's version, handed on to lab 04 -----------------------------------------------


def _directories(cgroup: Path) -> list[Path]:
    """The group's directories: itself on v2; the same name in each hierarchy on v1."""
    mode = detect()
    memory = mode.v1_controllers.get("memory")
    if memory is None or not Path(cgroup).is_relative_to(memory):
        return [Path(cgroup)]
    name = Path(cgroup).relative_to(memory)
    return [mode.v1_controllers[c] / name for c in cgroupbox.HIERARCHIES]


def reference_cgroup(
    name: str, *, memory: int | None = None, cpus: float | None = None, pids: int | None = None
) -> Path:
    """The course's ``my_cgroup``: a :class:`Group` named *name* (a path below the top)."""
    mode = detect()
    above, _, leaf = name.strip("/").rpartition("/")
    if cgroupbox.version(mode) == "v2":
        assert mode.v2_path is not None
        parent: str | Path = mode.v2_path / above
    else:
        parent = "/" + above
    group = Group(Limits(memory=memory, cpus=cpus, pids=pids), mode=mode, parent=parent, name=leaf)
    group.create()
    return group.paths["memory"]


def reference_cgroup_add(cgroup: Path, pid: int) -> None:
    """The course's ``my_cgroup_add``: *pid* into each of the group's directories."""
    for directory in _directories(cgroup):
        (directory / "cgroup.procs").write_text(f"{pid}\n")


def reference_cgroup_remove(cgroup: Path) -> None:
    """The course's ``my_cgroup_remove``: kill what is inside, remove the directories —
    on v1 in every hierarchy that has one (a :class:`Group` has ``cpuacct`` too where it
    is a hierarchy of its own)."""
    mode = detect()
    directories = _directories(cgroup)
    if len(directories) > 1:
        name = Path(cgroup).relative_to(mode.v1_controllers["memory"])
        directories = sorted({top / name for top in mode.v1_controllers.values()})
    for directory in directories:
        cgroupbox.remove_tree(directory)


REFERENCE: dict[str, Callable[..., object]] = {
    "my_cgroup": reference_cgroup,
    "my_cgroup_add": reference_cgroup_add,
    "my_cgroup_remove": reference_cgroup_remove,
}

# -- what the learner's mistakes look like ------------------------------------------------------

#: the files only one version has
_V2_LIMITS = {"memory.max", "cpu.max", "pids.max", "memory.swap.max"}
_V2_ONLY = {"memory.max", "cpu.max", "memory.events", "memory.swap.max", "cgroup.kill"}
_V1_ONLY = {"memory.limit_in_bytes", "cpu.cfs_quota_us", "cpu.cfs_period_us", "memory.oom_control"}


def _explain(exc: OSError, version: str) -> str | None:
    """A message naming the mistake behind an OSError of the learner's cgroup code."""
    file = Path(str(exc.filename or ""))
    base = file.name
    wrong = _V1_ONLY if version == "v2" else _V2_ONLY
    if base in wrong:
        right = (
            "memory.max, cpu.max and pids.max"
            if version == "v2"
            else ("memory.limit_in_bytes, cpu.cfs_quota_us/cpu.cfs_period_us and pids.max")
        )
        return (
            f"{base} is a cgroup {'v1' if version == 'v2' else 'v2'} file, and this machine "
            f"has memory, cpu and pids on {version}: there the files are {right}"
        )
    v1_tree = any(f"/sys/fs/cgroup/{c}/" in f"{file}/" for c in cgroupbox.HIERARCHIES)
    if version == "v2" and exc.errno == errno.ENOENT and v1_tree:
        return (
            f"{file} does not exist: /sys/fs/cgroup/memory, …/cpu and …/pids are cgroup v1 "
            "hierarchies, and this machine has memory, cpu and pids on v2 — one directory "
            "per group, with memory.max, cpu.max and pids.max"
        )
    if version == "v2" and exc.errno in (errno.ENOENT, errno.EACCES) and base in _V2_LIMITS:
        return (
            f"your group has no {base}: the parent hands no controller down — write "
            "'+memory +cpu +pids' to the parent's cgroup.subtree_control before mkdir"
        )
    if base in ("cpu.max", "cpu.cfs_quota_us") and exc.errno == errno.EINVAL:
        return (
            f"the kernel refused what you wrote to {base} (EINVAL): a CPU limit is a quota "
            "of microseconds per period — cpu.max takes one line 'QUOTA PERIOD' (e.g. "
            "'50000 100000' for half a CPU), cpu.cfs_quota_us the quota alone, an integer"
        )
    if base == "cgroup.procs" and exc.errno == errno.EBUSY:
        return (
            f"writing to {file} was refused (EBUSY): on v2 a group that hands controllers "
            "down to its children may hold no process itself — is that the parent? Move "
            "the process into the child cgroup"
        )
    return None


def _naming_files(func: Callable[[], object]) -> Callable[[], object]:
    """*func*, whose OSErrors name the file last opened when they name none: a
    ``write`` the kernel refuses (``EINVAL``) says nothing of where it went. Runs in the
    check's child, so the patched ``open`` dies with it."""

    def traced() -> object:
        last: dict[str, object] = {}
        real_io_open, real_os_open = io.open, os.open

        def io_open(file: object, *args: object, **kwargs: object) -> object:
            last["file"] = file
            return real_io_open(file, *args, **kwargs)  # type: ignore[call-overload]

        def os_open(path: object, *args: object, **kwargs: object) -> int:
            last["file"] = path
            return real_os_open(path, *args, **kwargs)  # type: ignore[arg-type]

        io.open = builtins.open = io_open  # type: ignore[assignment]
        os.open = os_open  # type: ignore[assignment]
        try:
            return func()
        except OSError as exc:
            if exc.filename is not None or "file" not in last:
                raise
            named = OSError(exc.errno, exc.strerror, os.fspath(last["file"]))  # type: ignore[arg-type]
            raise named.with_traceback(exc.__traceback__) from None

    return traced


def _run(
    func: Callable[[], object],
    what: str,
    version: str,
    timeout: float = 20.0,
    inside: cgroupbox.Parent | None = None,
) -> object:
    """``in_child(func)``, with the learner's cgroup OSErrors turned into named mistakes;
    *inside* the check's parent group when it runs a program (the safety net)."""

    def contained() -> object:
        if inside is not None:
            inside.enter()
        return func()

    try:
        return in_child(_naming_files(contained), timeout=timeout, what=what)
    except OSError as exc:
        message = _explain(exc, version)
        if message is None:
            raise
        raise AssertionError(message) from None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return "(missing)"


def _in_groups(pid: int) -> dict[str, str]:
    """Process *pid*'s group per controller (``""`` for v2) from ``/proc/PID/cgroup``."""
    found: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        for name in [""] if hierarchy == "0" else controllers.split(","):
            found.setdefault(name, path)
    return found


def _where(pid: int, version: str) -> dict[str, str]:
    groups = _in_groups(pid)
    if version == "v2":
        return {"v2": groups.get("", "?")}
    return {c: groups.get(c, "?") for c in cgroupbox.HIERARCHIES}


def _sleeper(cgroup: Path | None = None, *, seconds: int = 60) -> subprocess.Popen[bytes]:
    """A sleeping process (a shell with a child of its own), in *cgroup* if given."""

    def join() -> None:  # runs in the new process, before exec: it is born in the group
        if cgroup is not None:
            reference_cgroup_add(cgroup, 0)

    return subprocess.Popen(
        ["sh", "-c", f"sleep {seconds} & sleep {seconds}; wait"],
        preexec_fn=join,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 9)
    process.wait(10)


# -- 03.1 --------------------------------------------------------------------------------------


def _mounts_line(device: str, point: Path | str, fstype: str, options: str) -> str:
    return f"{device} {point} {fstype} {options} 0 0"


def _fake_machines(tmp: Path) -> dict[str, tuple[str, str]]:
    """Mounts text of a pure-v2, a hybrid, a pure-v1 and a half-v2 machine, their answers;
    each cgroup2 mount point is a directory here with its ``cgroup.controllers``."""
    rng = fresh_rng()
    points = {
        "full": "cpuset cpu io memory hugetlb pids rdma misc",
        "unified": "",
        "nopids": "cpuset cpu io memory hugetlb",
    }
    for name, controllers in points.items():
        (tmp / name).mkdir()
        (tmp / name / "cgroup.controllers").write_text(controllers + "\n")
    common = [
        _mounts_line("proc", "/proc", "proc", "rw,nosuid,nodev,noexec,relatime"),
        _mounts_line("sysfs", "/sys", "sysfs", "rw,nosuid,nodev,noexec,relatime"),
    ]
    v1 = [
        _mounts_line("cgroup", f"/sys/fs/cgroup/{c}", "cgroup", f"rw,nosuid,nodev,noexec,{c}")
        for c in rng.sample(["memory", "cpu,cpuacct", "pids", "blkio", "devices"], 5)
    ]
    v2 = "rw,nosuid,nodev,noexec,relatime,nsdelegate"
    tmpfs = _mounts_line("tmpfs", "/sys/fs/cgroup", "tmpfs", "ro,nosuid,nodev,noexec,mode=755")
    return {
        "pure v2": (
            "\n".join([*common, _mounts_line("cgroup2", tmp / "full", "cgroup2", v2)]),
            "v2",
        ),
        "hybrid (cgroup2 mounted too, but without controllers)": (
            "\n".join(
                [*common, tmpfs, _mounts_line("cgroup2", tmp / "unified", "cgroup2", v2), *v1]
            ),
            "v1",
        ),
        "pure v1": ("\n".join([*common, tmpfs, *v1]), "v1"),
        "v2 without the pids controller, v1 with all three": (
            "\n".join([*common, _mounts_line("cgroup2", tmp / "nopids", "cgroup2", v2), *v1]),
            "v1",
        ),
    }


@exercise(
    "03.1",
    points=2,
    hints=(
        "a hybrid machine mounts cgroup2 too (at /sys/fs/cgroup/unified) but with no "
        "controller on it: finding a cgroup2 line is not enough.",
        "for each line of the mounts text, split it: point, fstype, options are fields "
        "1, 2, 3. A cgroup2 mount counts when its cgroup.controllers (at that point) lists "
        "memory, cpu and pids; else v1 when the cgroup lines' options name all three.",
        "for a cgroup2 line: Path(point, 'cgroup.controllers').read_text().split(); for a "
        "cgroup line: collect fields[3].split(','); return 'v2', 'v1', or raise.",
    ),
)
def version_told(cgroup_version: Callable[[str], str]) -> None:
    """cgroup_version tells v2 from v1 (and a hybrid machine, which is v1 here)."""
    with scratch("03") as tmp:
        for machine, (text, want) in _fake_machines(tmp).items():
            try:
                got = cgroup_version(text)
            except NotImplementedError:
                raise
            except Exception as exc:  # an answerable machine: raising is the mistake
                got = f"an exception ({type(exc).__name__}: {exc})"
            got = got if got.startswith("an exception") else repr(got)
            expect(
                got == repr(want),
                f"on a {machine} machine your cgroup_version says {got}, expected {want!r}"
                + (
                    " (read cgroup.controllers at the mount point the cgroup2 line names)"
                    if " cgroup2 " in text
                    else ""
                ),
            )
    here = cgroup_version(Path("/proc/self/mounts").read_text())
    want = cgroupbox.version()
    expect(here == want, f"on this machine your cgroup_version says {here!r}, expected {want!r}")


# -- 03.2 --------------------------------------------------------------------------------------


def _limits_seen(parent: cgroupbox.Parent, leaf: str) -> dict[str, str]:
    """The limit files of the group ``leaf`` under *parent*, as the kernel shows them."""
    if parent.version == "v2":
        here = parent.child(leaf)
        return {name: _read(here / name) for name in ("memory.max", "cpu.max", "pids.max")}
    return {
        "memory.limit_in_bytes": _read(parent.child(leaf, "memory") / "memory.limit_in_bytes"),
        "cpu.cfs_quota_us": _read(parent.child(leaf, "cpu") / "cpu.cfs_quota_us"),
        "cpu.cfs_period_us": _read(parent.child(leaf, "cpu") / "cpu.cfs_period_us"),
        "pids.max": _read(parent.child(leaf, "pids") / "pids.max"),
    }


def _limits_wanted(version: str, memory: int | None, cpus: float | None, pids: int | None) -> dict:
    if version == "v2":
        return {
            "memory.max": "max" if memory is None else str(memory),
            "cpu.max": cpu_max(cpus),
            "pids.max": "max" if pids is None else str(pids),
        }
    quota, period = cpu_quota(cpus) if cpus is not None else (-1, 100_000)
    want = {"cpu.cfs_quota_us": str(quota), "cpu.cfs_period_us": str(period)}
    if memory is not None:
        want["memory.limit_in_bytes"] = str(memory)
    want["pids.max"] = "max" if pids is None else str(pids)
    return want


@exercise(
    "03.2",
    points=3,
    against=("kernel",),
    hints=(
        "ask cgroup_version which files to write: v2 has memory.max, cpu.max, pids.max in "
        "one directory; v1 has memory.limit_in_bytes, cpu.cfs_quota_us/cpu.cfs_period_us and "
        "pids.max, each in its own hierarchy.",
        "v2: write '+memory +cpu +pids' to the parent's cgroup.subtree_control (else the "
        "child has no memory.max), mkdir, then the limits; cpu.max is 'QUOTA PERIOD'. v1: "
        "mkdir the same name under /sys/fs/cgroup/memory, /cpu and /pids, then the limits.",
        "quota = round(cpus * 100_000); v2: (path / 'cpu.max').write_text(f'{quota} 100000'); "
        "return /sys/fs/cgroup/NAME on v2, /sys/fs/cgroup/memory/NAME on v1.",
    ),
)
def group_made(my_cgroup: Callable[..., Path]) -> None:
    """my_cgroup makes the group and writes its limits in this machine's files."""
    rng = fresh_rng()
    with cgroupbox.parent() as parent:
        version = parent.version
        memory = rng.randrange(24, 256) << 20
        cpus = rng.choice([0.25, 0.5, 0.75, 1.5])
        pids = rng.randrange(8, 48)
        cases = [("box", memory, cpus, pids), ("only-pids", None, None, rng.randrange(4, 32))]
        for leaf, mem, cpu, pid in cases:
            name = f"{parent.name}/{leaf}"
            got = _run(
                lambda n=name, m=mem, c=cpu, p=pid: my_cgroup(n, memory=m, cpus=c, pids=p),
                "your my_cgroup",
                version,
            )
            want_path = parent.child(leaf)
            expect(
                got is not None and Path(got) != parent.directory(),
                f"my_cgroup({name!r}) returned the parent {parent.directory()}, not the new group",
            )
            expect(
                Path(got) == want_path,
                f"my_cgroup({name!r}) returned {got}, expected {want_path}"
                + (
                    " (on v1 return the group's directory in the memory hierarchy)"
                    if version == "v1"
                    else ""
                ),
            )
            for controller in cgroupbox.HIERARCHIES if version == "v1" else ("memory",):
                directory = parent.child(leaf, controller)
                expect(
                    directory.is_dir(),
                    f"there is no {directory}: on v1 make the group in the memory, cpu and "
                    "pids hierarchies",
                )
            if version == "v2":
                handed = _read(parent.directory() / "cgroup.subtree_control").split()
                expect(
                    all(c in handed for c in cgroupbox.HIERARCHIES),
                    f"the parent hands down only {handed or 'no controller'}: without "
                    "'+memory +cpu +pids' in the parent's cgroup.subtree_control your group "
                    "has no memory.max, cpu.max or pids.max",
                )
            seen = _limits_seen(parent, leaf)
            for file, value in _limits_wanted(version, mem, cpu, pid).items():
                asked = f"memory={mem}, cpus={cpu}, pids={pid}"
                expect(
                    seen[file] == value,
                    f"with {asked}, {file} of your group reads {seen[file]!r}, expected "
                    f"{value!r}" + _why(file, seen[file]),
                )


def _why(file: str, seen: str) -> str:
    if file == "cpu.max" and seen.startswith("max "):
        return " (no CPU limit was written)"
    if seen == "max":
        return " (nothing was written to it)"
    return ""


# -- 03.3 --------------------------------------------------------------------------------------


@exercise(
    "03.3",
    points=2,
    against=("kernel",),
    hints=(
        "a process joins a group when its pid is written to the group's cgroup.procs; its "
        "children are then born inside.",
        "v2: one file, cgroup/'cgroup.procs'. v1: the same name in each hierarchy — memory, "
        "cpu and pids — each has its own cgroup.procs.",
        "for directory in (the group's directories): (directory / 'cgroup.procs')"
        ".write_text(str(pid))",
    ),
)
def process_moved(my_cgroup_add: Callable[[Path, int], None]) -> None:
    """my_cgroup_add moves a running process into the group, in every hierarchy."""
    with cgroupbox.parent() as parent:
        version = parent.version
        cgroup = reference_cgroup(f"{parent.name}/box", pids=32)
        process = _sleeper()
        try:
            _run(lambda: my_cgroup_add(cgroup, process.pid), "your my_cgroup_add", version)
            where = _where(process.pid, version)
            inside = "/" + (
                str(cgroup.relative_to(parent.root)) if version == "v2" else f"{parent.name}/box"
            )
            for hierarchy, path in where.items():
                expect(
                    path != "/" + str(Path(inside).parent).lstrip("/"),
                    f"the process is in the parent {path} ({hierarchy}), not in your group "
                    f"{inside}: write its pid to the group's own cgroup.procs",
                )
                expect(
                    path == inside,
                    f"after my_cgroup_add the process is in {path} for {hierarchy}, expected "
                    f"{inside}"
                    + (
                        ": on v1 write the pid in every hierarchy (memory, cpu, pids)"
                        if version == "v1"
                        else ""
                    ),
                )
        finally:
            _stop(process)


# -- 03.4 --------------------------------------------------------------------------------------


@exercise(
    "03.4",
    points=2,
    against=("kernel",),
    hints=(
        "rmdir of a group that still holds a process fails with EBUSY: empty it first.",
        "kill what is inside (v2: write 1 to cgroup.kill; or SIGKILL every pid of "
        "cgroup.procs), wait until cgroup.procs is empty, then rmdir — in every hierarchy "
        "on v1.",
        "while (directory / 'cgroup.procs').read_text().split(): kill each pid, "
        "time.sleep(0.01); then directory.rmdir()",
    ),
)
def group_removed(my_cgroup_remove: Callable[[Path], None]) -> None:
    """my_cgroup_remove removes a group that still has processes inside."""
    with cgroupbox.parent() as parent:
        version = parent.version
        cgroup = reference_cgroup(f"{parent.name}/busy", pids=32)
        process = _sleeper(cgroup)
        try:
            try:
                _run(lambda: my_cgroup_remove(cgroup), "your my_cgroup_remove", version)
            except OSError as exc:
                expect(
                    exc.errno not in (errno.EBUSY, errno.ENOTEMPTY),
                    f"your my_cgroup_remove failed with {errno.errorcode.get(exc.errno or 0)}:"
                    " the cgroup was not removed because processes were still inside — kill "
                    "them and wait until cgroup.procs is empty before rmdir",
                )
                raise
            left = [d for d in cgroupbox.HIERARCHIES if parent.child("busy", d).exists()]
            expect(
                not left,
                f"after my_cgroup_remove the group is still there in {', '.join(left)}"
                + (" (on v1 remove it from every hierarchy)" if version == "v1" else ""),
            )
            expect(
                process.poll() is not None or _stopped(process),
                "the group is gone but its processes still run: kill them before rmdir",
            )
        finally:
            _stop(process)


def _stopped(process: subprocess.Popen[bytes]) -> bool:
    try:
        process.wait(3)
    except subprocess.TimeoutExpired:
        return False
    return True


# -- 03.5 --------------------------------------------------------------------------------------

#: a program that says where it is, then takes *size* MiB of memory and touches all of it
_HOG = textwrap.dedent(
    """
    import sys
    open(sys.argv[1], "w").write(open("/proc/self/cgroup").read())
    block = bytearray(int(sys.argv[2]) << 20)
    print("survived", len(block))
    """
)


def _oom_kills_here(cgroup: Path, version: str) -> int:
    name = "memory.events" if version == "v2" else "memory.oom_control"
    return parse_keyed(_read(cgroup / name)).get("oom_kill", 0)


@exercise(
    "03.5",
    points=3,
    against=("kernel",),
    hints=(
        "the child must join the group before it runs the program: fork, join in the child, "
        "then exec; the parent waits and returns the status.",
        "run_in_cgroup: pid = os.fork(); in the child my_cgroup_add(cgroup, os.getpid()) then "
        "os.execvp(argv[0], argv); in the parent os.waitpid and os.waitstatus_to_exitcode. "
        "oom_kills: the 'oom_kill' line of memory.events (v2) or memory.oom_control (v1).",
        "a process killed by SIGKILL gives -9; for line in (cgroup / 'memory.events')"
        ".read_text().splitlines(): key, value = line.split() …",
    ),
)
def oom_seen(
    my_cgroup: Callable[..., Path],
    run_in_cgroup: Callable[[Path, list[str]], int],
    oom_kills: Callable[[Path], int],
) -> None:
    """A memory hog in your group is OOM-killed, and oom_kills reads it from the kernel."""
    rng = fresh_rng()
    with cgroupbox.parent() as parent, scratch("03") as tmp:
        version = parent.version
        limit = rng.randrange(40, 64) << 20
        cgroup = _run(
            lambda: my_cgroup(f"{parent.name}/hog", memory=limit, pids=16),
            "your my_cgroup",
            version,
        )
        cgroup = Path(cgroup)  # type: ignore[arg-type]
        where = tmp / "where"
        hog = [sys.executable, "-c", _HOG, str(where), str(rng.randrange(160, 300))]
        status = _run(lambda: run_in_cgroup(cgroup, hog), "your run_in_cgroup", version, 60, parent)
        seen = where.read_text() if where.exists() else ""
        box = f"{parent.name}/hog"
        expect(seen, "the program never ran: run_in_cgroup must fork, join, then exec argv")
        expect(
            box in seen,
            f"the program ran outside your group (its /proc/self/cgroup: {seen.split()}): "
            "the child must join the group itself, with its own pid, before exec",
        )
        expect(
            status == -9,
            f"a program taking more memory than memory limit {limit >> 20} MiB ended with "
            f"status {status!r}, expected -9 (SIGKILL from the OOM killer): "
            + (
                "return os.waitstatus_to_exitcode(status), -N for a signal N"
                if isinstance(status, int) and status in (137, 9, 0x9)
                else "was the limit written, and did the program run in your group?"
            ),
        )
        kills = _oom_kills_here(cgroup, version)
        got = _run(lambda: oom_kills(cgroup), "your oom_kills", version)
        expect(got == kills, f"oom_kills says {got!r}; the kernel counts {kills} OOM kill(s)")
        small = [sys.executable, "-c", _HOG, str(where), "1"]
        again = _run(
            lambda: run_in_cgroup(cgroup, small), "your run_in_cgroup", version, 60, parent
        )
        expect(again == 0, f"a small program in the group ended with status {again!r}, not 0")
        got = _run(lambda: oom_kills(cgroup), "your oom_kills", version)
        expect(got == kills, f"after a run without OOM, oom_kills says {got!r}, expected {kills}")


# -- 03.6 --------------------------------------------------------------------------------------

#: a fork bomb that ends by itself: every process forks until the deadline, then exits
_BOMB = textwrap.dedent(
    """
    import os, sys, time
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        try:
            os.fork()
        except OSError:
            pass
        time.sleep(0.05)
    """
)


def _pids_events(directory: Path) -> int:
    return parse_keyed(_read(directory / "pids.events")).get("max", 0)


@exercise(
    "03.6",
    points=2,
    against=("kernel",),
    hints=(
        "a fork bomb is stopped by the pids controller: every fork beyond pids.max fails.",
        "my_cgroup(name, pids=N) must write N to pids.max, and run_in_cgroup must put the "
        "bomb's first process in that very group before exec, so every process it forks "
        "is born there.",
        "if this fails and 03.2 and 03.5 pass, look at what run_in_cgroup writes where.",
    ),
)
def bomb_stopped(my_cgroup: Callable[..., Path], run_in_cgroup: Callable[..., int]) -> None:
    """A fork bomb run in your group with pids stops at your pids.max."""
    rng = fresh_rng()
    with cgroupbox.parent() as parent:
        version = parent.version
        limit = rng.randrange(8, 20)
        cgroup = Path(
            _run(  # type: ignore[arg-type]
                lambda: my_cgroup(f"{parent.name}/bomb", pids=limit), "your my_cgroup", version
            )
        )
        pids_dir = parent.child("bomb", "pids")
        bomb = [sys.executable, "-c", _BOMB, "2.5"]
        try:
            _run(lambda: run_in_cgroup(cgroup, bomb), "your run_in_cgroup", version, 30, parent)
        finally:
            cgroupbox.kill_tree(parent.directory("pids"))
        written = _read(pids_dir / "pids.max")
        expect(
            written == str(limit),
            f"your group's pids.max reads {written!r}, not {limit}: only the check's safety "
            f"net ({cgroupbox.SAFETY_PIDS} processes) stopped the bomb",
        )
        expect(
            _pids_events(pids_dir) > 0,
            f"your pids.max of {limit} never refused a fork: did the bomb run in your group?",
        )


# -- 03.7 --------------------------------------------------------------------------------------

#: a program that keeps one CPU busy for *seconds* of wall-clock time
_BUSY = textwrap.dedent(
    """
    import sys, time
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        pass
    """
)


@exercise(
    "03.7",
    points=2,
    against=("kernel",),
    hints=(
        "cpu.stat is a flat keyed file, like memory.events; on v1 it lives in the cpu "
        "hierarchy, not in the memory one your my_cgroup returns.",
        "v2: cgroup / 'cpu.stat'; v1: the group's directory under /sys/fs/cgroup/cpu. Read "
        "each 'key value' line into a dict of ints.",
        "path = [d for d in cgroup_dirs(cgroup) if (d / 'cpu.stat').exists()][0] …",
    ),
)
def cpu_throttled(
    my_cgroup: Callable[..., Path],
    run_in_cgroup: Callable[..., int],
    cpu_stat: Callable[[Path], dict[str, int]],
) -> None:
    """A busy loop in your group with cpus=0.1 is throttled, and cpu_stat reads it."""
    with cgroupbox.parent() as parent:
        version = parent.version
        cgroup = Path(
            _run(  # type: ignore[arg-type]
                lambda: my_cgroup(f"{parent.name}/busy", cpus=0.1), "your my_cgroup", version
            )
        )
        busy = [sys.executable, "-c", _BUSY, "0.6"]
        _run(lambda: run_in_cgroup(cgroup, busy), "your run_in_cgroup", version, 30, parent)
        stat_file = parent.child("busy", "cpu") / "cpu.stat"
        kernel = parse_keyed(_read(stat_file))
        try:
            got = _run(lambda: cpu_stat(cgroup), "your cpu_stat", version)
        except FileNotFoundError as exc:
            raise AssertionError(
                f"there is no {exc.filename}: on v1 cpu.stat is in the cpu hierarchy "
                f"({parent.child('busy', 'cpu')}), not in the memory one"
            ) from None
        expect(isinstance(got, dict), f"cpu_stat returned a {type(got).__name__}, not a dict")
        assert isinstance(got, dict)
        expect(
            all(isinstance(v, int) for v in got.values()),
            "the values of cpu_stat are ints (int(value)), not strings",
        )
        expect(
            kernel.get("nr_throttled", 0) > 0,
            f"a busy loop with cpus=0.1 was never throttled (cpu.stat: {kernel}): was the "
            "CPU limit written, and did the loop run in your group?",
        )
        # the bandwidth timer may close one more period after the loop has exited: what
        # cpu_stat read lies between the check's reads before and after it
        later = parse_keyed(_read(stat_file))
        for key in ("nr_periods", "nr_throttled"):
            value = got.get(key)
            expect(
                isinstance(value, int) and kernel[key] <= value <= later[key],
                f"cpu_stat says {key} is {value!r}; cpu.stat says {later[key]}",
            )
