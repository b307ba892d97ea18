"""hardway.course.leftovers
~~~~~~~~~~~~~~~~~~~~~~~~

What the course could leave behind on the host if cleaning up went wrong (a kernel
killed in the middle of a container, a push or an unpack): a process still running, a
veth pair, a mount, a named network namespace, a cgroup, a registry, a temporary
directory. Everything the course creates carries a name to recognise it by:

* processes: ``container=hardway`` in the environment (every container gets it) or
  ``python -m hardway.isolation.launch`` (the launcher);
* network devices: ``hw-…`` (the host end of a veth pair; alias ``hardway owner PID``),
  and the course's bridge ``hw-br0`` (chapter 04) once nothing is plugged into it;
* mounts: a mount point inside a ``hardway…`` or ``hw-…`` directory; named network
  namespaces: ``hardway…`` or ``hw-…``;
* cgroups and runc containers (chapters 03–04): ``hardway-…`` (a ``.sSESSION`` suffix
  names the test run that made them);
* registries and token services (chapters 07–08): their command line names their state
  directory ``…/registry/<port>/``, whose ``owner`` file says who started them
  (:func:`~hardway.distribution.server.services.record_owner`);
* temporary directories: ``hardway-*`` in the temporary directory (the notebooks'
  ``hardway-NN-…``, the labs' ``hardway-labNN-…``, a test run's ``hardway-pytest-PID-…``).

:mod:`hardway.course.cleanup` removes them (``python -m hardway cleanup``). The rules
for what is still someone's: a registry stays while the process that started it lives, and always
when it is the shared one on the default port or was started to stay (``registry
start``, ``make lab``) — ``--registries`` (``make clean``) stops those too; a temporary
directory stays while a process works in it or a kernel that may hold it lives
(:func:`stale_temp_dirs`).

:func:`snapshot` lists what exists now; :func:`left_behind` compares a snapshot taken
before a run with one taken after (:func:`settle`: after teardown has had a moment). The
test suite does that around the whole session.
A concurrent run (another ``pytest`` on the same machine) may own some of these
things: a process whose ancestors carry another ``HARDWAY_SESSION`` in their
environment, or a veth whose owner does, is not counted; with a session, nothing of
no session is counted either.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hardway.distribution.server.services import Service, owner_gone, services
from hardway.errors import HardwayError
from hardway.isolation import bridge, cgroups
from hardway.isolation.child import LAUNCHER_MODULES
from hardway.sys.mountinfo import read_mountinfo
from hardway.sys.proc import argv_of, environ_of, read_proc, runs_module, session_of, stat_of
from hardway.sys.state import session_from_env

__all__ = [
    "Snapshot",
    "cgroup_paths",
    "left_behind",
    "links",
    "mount_points",
    "netns",
    "process_ids",
    "runc_containers",
    "snapshot",
    "stale_services",
    "stale_temp_dirs",
]


@dataclass(frozen=True)
class Snapshot:
    """Things the course may have created, each as a one-line description."""

    processes: frozenset[str]
    links: frozenset[str]
    mounts: frozenset[str]
    netns: frozenset[str]
    cgroups: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()


def _processes(session: str | None) -> set[str]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        cmdline = read_proc(f"/proc/{entry}/cmdline").replace(b"\0", b" ").decode(errors="replace")
        ours = _launcher(argv_of(entry)) or environ_of(entry).get("container") == "hardway"
        state, _, started = stat_of(entry)
        if not ours or state in ("", "Z", "X") or session_of(int(entry)) != session:
            continue
        found.add(f"process {entry} (started at tick {started}): {cmdline.strip()[:120]}")
    return found


def _launcher(argv: list[str]) -> bool:
    """Is this the course's launcher (``python -m hardway.isolation.launch …``)?"""
    return runs_module(argv, LAUNCHER_MODULES)


def links(session: str | None) -> set[str]:
    found = set()
    for name in os.listdir("/sys/class/net"):
        if not name.startswith("hw-"):
            continue
        if bridge.is_bridge(name):  # shared: a leftover only once no container uses it
            if not bridge.ports(name):
                found.add(f"network device {name} (an empty bridge)")
            continue
        alias = read_proc(f"/sys/class/net/{name}/ifalias").decode(errors="replace").strip()
        owner = alias.rpartition(" ")[2]
        if (
            owner.isdigit()
            and Path(f"/proc/{owner}").exists()
            and session_of(int(owner)) != session
        ):
            continue
        found.add(f"network device {name} ({alias or 'no alias'})")
    return found


def _course_mount(point: str) -> bool:
    """Is this mount point the course's: inside a ``hardway…`` or ``hw-…`` directory (the
    notebooks' and tests' temporary directories, ``/run/netns/hw-…``)? Only the mount
    point counts, never its source or options: cleanup runs as root, and a learner's own
    mount of something merely *named* hardway is not ours to detach.

    >>> _course_mount("/tmp/hardway-03-x/rootfs/proc"), _course_mount("/run/netns/hw-1a")
    (True, True)
    >>> _course_mount("/mnt/usb"), _course_mount("/home/me/myhardway")
    (False, False)
    """
    return any(part.startswith(("hardway", "hw-")) for part in Path(point).parts)


def mount_points() -> dict[str, str]:
    """The course's mount points (:func:`_course_mount`), unescaped, each with its
    filesystem type, source and options."""
    return {
        str(m.mount_point): f"{m.fstype} {m.source} {','.join(m.super_options)}"
        for m in read_mountinfo()
        if _course_mount(str(m.mount_point))
    }


def _mounts() -> set[str]:
    return {f"mount {point!a} ({kind})" for point, kind in mount_points().items()}


def netns() -> set[str]:
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return set()
    return {f"network namespace {n}" for n in names if n.startswith(("hw-", "hardway"))}


def snapshot(session: str | None = None) -> Snapshot:
    """What exists now that the course may have created (not owned by another session).

    :param session: (optional) this run's ``HARDWAY_SESSION``; default: the environment's
    """
    session = session if session is not None else session_from_env()
    return Snapshot(
        frozenset(_processes(session)),
        frozenset(links(session)),
        frozenset(_mounts()),
        frozenset(netns()),
        frozenset(f"cgroup {path}" for path in cgroup_paths(session)),
        frozenset(str(service) for service in services(session)),
    )


# --- registries and token services (chapters 07-08) ------------------------------------


def stale_services(session: str | None, everything: bool) -> list[Service]:
    """Registries to stop: those whose owner is gone; with ``everything``, all of them.

    The registry on the default port of the default state directory is the one the
    learner's notebooks share: it stays unless ``everything``.
    """
    from hardway.distribution.server.config import default_port
    from hardway.distribution.server.paths import RegistryPaths

    if everything:
        return services(session)
    try:
        shared: Path | None = RegistryPaths.for_port(default_port()).root
    except (HardwayError, OSError):
        shared = None
    return [s for s in services(session) if s.root != shared and owner_gone(s.root)]


# --- temporary directories ------------------------------------------------------------

_PYTEST_TMP = re.compile(r"^hardway-pytest-(\d+)-")


def _started_at(pid: int | str) -> float:
    """When ``pid`` started, in seconds since the epoch (0 if gone); to 1/100 s, since
    ``/proc/<pid>/stat`` counts clock ticks since boot."""
    tick = stat_of(pid)[2]
    if not tick:
        return 0.0
    booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return booted + int(tick) / os.sysconf("SC_CLK_TCK")


#: programs that may hold a directory they made in a variable (``python -m NAME`` too)
_KERNELS = {"ipykernel_launcher", "ipykernel", "pytest", "py.test"}


def _kernels(temp: Path) -> list[float]:
    """Start times of the live Jupyter kernels and test runs whose temporary directory is
    ``temp``: each may hold a directory it made there in a variable."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _KERNELS & {os.path.basename(a) for a in argv_of(entry)[:3]}:
            env = environ_of(entry)
            if Path(env.get("TMPDIR") or "/tmp").resolve() == temp and stat_of(entry)[0] not in (
                "",
                "Z",
            ):
                found.append(_started_at(entry))
    return found


def _in_use(temp: Path) -> set[Path]:
    """``hardway-*`` directories of ``temp`` that a live process is in: its working
    directory, root, an open file or a mapped file."""
    used = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        links = [f"/proc/{entry}/cwd", f"/proc/{entry}/root"]
        with contextlib.suppress(OSError):
            links += [f"/proc/{entry}/fd/{fd}" for fd in os.listdir(f"/proc/{entry}/fd")]
        maps = read_proc(f"/proc/{entry}/maps").decode(errors="replace").split()
        for target in [*_readlinks(links), *(m for m in maps if m.startswith("/"))]:
            used.add(_top(temp, target))
    for point in mount_points():
        used.add(_top(temp, point))
    return used


def _top(temp: Path, path: str) -> Path:
    """The entry of ``temp`` that ``path`` is in (``temp`` itself if it is not in one)."""
    with contextlib.suppress(ValueError, IndexError):
        return temp / Path(path).relative_to(temp).parts[0]
    return temp


def _readlinks(links: list[str]) -> list[str]:
    found = []
    for link in links:
        with contextlib.suppress(OSError):
            found.append(os.readlink(link))
    return found


def stale_temp_dirs(temp: Path | str | None = None) -> list[Path]:
    """The course's temporary directories (``hardway-*``) that nobody can still use.

    Kept: a test run's ``hardway-pytest-<pid>-*`` while that pytest lives; a directory a
    live process works in, has open or has a mount in; one made after a live Jupyter
    kernel or pytest (with the same temporary directory) started, since that process may
    hold it in a variable. Everything else was left by a process that is gone.

    :param temp: (optional) default :func:`tempfile.gettempdir`
    """
    temp = Path(temp or tempfile.gettempdir()).resolve()
    run = _PYTEST_TMP.match(temp.parent.name) if temp.name == "tmp" else None
    if run and Path(f"/proc/{run[1]}").exists():
        return []  # the TMPDIR of a live test run (conftest.py): all of it is the run's
    candidates = sorted(p for p in temp.glob("hardway-*") if p.is_dir() and not p.is_symlink())
    if not candidates:
        return []
    used, kernels = _in_use(temp), _kernels(temp)
    stale = []
    for path in candidates:
        if owner := _PYTEST_TMP.match(path.name):
            if Path(f"/proc/{owner[1]}").exists():
                continue
        elif path in used or any(started <= path.stat().st_ctime for started in kernels):
            continue
        stale.append(path)
    return stale


def left_behind(before: Snapshot, after: Snapshot) -> list[str]:
    """Everything in *after* that was not in *before*, sorted by kind."""
    return [
        *sorted(after.processes - before.processes),
        *sorted(after.links - before.links),
        *sorted(after.mounts - before.mounts),
        *sorted(after.netns - before.netns),
        *sorted(after.cgroups - before.cgroups),
        *sorted(after.services - before.services),
    ]


def settle(before: Snapshot, *, within: float = 5.0, session: str | None = None) -> list[str]:
    """What is still :func:`left_behind` since ``before`` once teardown has had up to
    ``within`` seconds: a network namespace, its veth and its cgroup go only after the
    kernel has reaped their last process, a moment after the code that ended it returned."""
    deadline = time.monotonic() + within
    while (left := left_behind(before, snapshot(session))) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def cgroup_paths(session: str | None) -> list[Path]:
    try:
        return cgroups.find_groups(session=session or "")
    except OSError:
        return []


def process_ids(session: str | None) -> list[int]:
    mine = {os.getpid(), *_ancestors(os.getpid())}
    return sorted(
        int(entry.split()[1]) for entry in _processes(session) if int(entry.split()[1]) not in mine
    )


def _ancestors(pid: int) -> list[int]:
    found = []
    while pid > 1 and len(found) < 64:
        pid = stat_of(pid)[1]
        found.append(pid)
    return found


def runc_containers(session: str | None) -> list[str]:
    if shutil.which("runc") is None:
        return []
    listed = subprocess.run(["runc", "list", "-q"], capture_output=True, text=True, check=False)
    names = listed.stdout.split() if listed.returncode == 0 else []
    return [n for n in names if n.startswith(cgroups.PREFIX) and cgroups.in_session(n, session)]
