"""hardway.leftovers
~~~~~~~~~~~~~~~~~

What the course's containers could leave behind on the host if cleaning up went
wrong: a process still running, a veth pair, a mount, a named network namespace.
Everything the course creates carries a name to recognise it by:

* processes: ``container=hardway`` in the environment (every container gets it) or
  ``hardway.launch`` on the command line (the launcher);
* network devices: ``hw-…`` (the host end of a veth pair; alias ``hardway owner PID``);
* mounts and named network namespaces: ``hardway`` or ``hw-`` in the name;
* cgroups and runc containers (chapters 03–04): ``hardway-…`` (a ``.sSESSION`` suffix
  names the test run that made them).

:func:`cleanup` removes all of these (``python -m hardway cleanup``), for the day a
kernel crashed in the middle of a container.

:func:`snapshot` lists what exists now; :func:`left_behind` compares a snapshot taken
before a run with one taken after. The test suite does that around the whole session.
A concurrent run (another ``pytest`` on the same machine) may own some of these
things: a process whose ancestors carry another ``HARDWAY_SESSION`` in their
environment, or a veth whose owner does, is not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hardway import cgroups, linux
from hardway.errors import HardwayError

__all__ = ["Snapshot", "cleanup", "left_behind", "register", "snapshot"]

SESSION_VARIABLE = "HARDWAY_SESSION"


@dataclass(frozen=True)
class Snapshot:
    """Things the course may have created, each as a one-line description."""

    processes: frozenset[str]
    links: frozenset[str]
    mounts: frozenset[str]
    netns: frozenset[str]
    cgroups: frozenset[str] = frozenset()


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone meanwhile, or not ours to read
        return b""


def _environ(pid: int | str) -> dict[str, str]:
    pairs = (item.partition(b"=") for item in _read(f"/proc/{pid}/environ").split(b"\0"))
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs if k}


def _stat(pid: int | str) -> tuple[str, int, str]:
    """(state, parent pid, start time) from ``/proc/<pid>/stat``; ``("", 0, "")`` if gone."""
    text = _read(f"/proc/{pid}/stat").decode(errors="replace")
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return "", 0, ""
    return fields[0], int(fields[1]), fields[19]


def _foreign(pid: int, session: str | None) -> bool:
    """Does *pid* or an ancestor belong to another session than *session*?"""
    seen = 0
    while pid > 1 and seen < 64:
        other = _environ(pid).get(SESSION_VARIABLE)
        if other is not None:
            return other != session
        pid, seen = _stat(pid)[1], seen + 1
    return False


def _processes(session: str | None) -> set[str]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        cmdline = _read(f"/proc/{entry}/cmdline").replace(b"\0", b" ").decode(errors="replace")
        ours = "hardway.launch" in cmdline or _environ(entry).get("container") == "hardway"
        state, _, started = _stat(entry)
        if not ours or state in ("", "Z", "X") or _foreign(int(entry), session):
            continue
        found.add(f"process {entry} (started at tick {started}): {cmdline.strip()[:120]}")
    return found


def _links(session: str | None) -> set[str]:
    found = set()
    for name in os.listdir("/sys/class/net"):
        if not name.startswith("hw-"):
            continue
        alias = _read(f"/sys/class/net/{name}/ifalias").decode(errors="replace").strip()
        owner = alias.rpartition(" ")[2]
        if owner.isdigit() and Path(f"/proc/{owner}").exists() and _foreign(int(owner), session):
            continue
        found.add(f"network device {name} ({alias or 'no alias'})")
    return found


def _mounts() -> set[str]:
    found = set()
    for line in _read("/proc/self/mountinfo").decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) > 4 and ("hardway" in line or "/hw-" in line):
            found.add(f"mount {fields[4]} ({line.split(' - ', 1)[-1]})")
    return found


def _netns() -> set[str]:
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return set()
    return {f"network namespace {n}" for n in names if n.startswith(("hw-", "hardway"))}


def snapshot(session: str | None = None) -> Snapshot:
    """What exists now that the course may have created (not owned by another session).

    :param session: (optional) this run's ``HARDWAY_SESSION``; default: the environment's
    """
    session = session if session is not None else os.environ.get(SESSION_VARIABLE)
    return Snapshot(
        frozenset(_processes(session)),
        frozenset(_links(session)),
        frozenset(_mounts()),
        frozenset(_netns()),
        frozenset(f"cgroup {path}" for path in _cgroups(session)),
    )


def left_behind(before: Snapshot, after: Snapshot) -> list[str]:
    """Everything in *after* that was not in *before*, sorted by kind."""
    return [
        *sorted(after.processes - before.processes),
        *sorted(after.links - before.links),
        *sorted(after.mounts - before.mounts),
        *sorted(after.netns - before.netns),
        *sorted(after.cgroups - before.cgroups),
    ]


def _mine(name: str, session: str | None) -> bool:
    """A ``hardway-…`` cgroup or runc container of this session (or of none)?"""
    _, _, tag = name.rpartition(".s")
    return "." not in name or not session or tag == session[:8]


def _cgroups(session: str | None) -> list[Path]:
    try:
        found = cgroups.find_groups()
    except OSError:
        return []
    return [path for path in found if _mine(path.name, session)]


def _process_ids(session: str | None) -> list[int]:
    mine = {os.getpid(), *_ancestors(os.getpid())}
    return sorted(
        int(entry.split()[1]) for entry in _processes(session) if int(entry.split()[1]) not in mine
    )


def _ancestors(pid: int) -> list[int]:
    found = []
    while pid > 1 and len(found) < 64:
        pid = _stat(pid)[1]
        found.append(pid)
    return found


def _runc_containers(session: str | None) -> list[str]:
    if shutil.which("runc") is None:
        return []
    listed = subprocess.run(["runc", "list", "-q"], capture_output=True, text=True, check=False)
    names = listed.stdout.split() if listed.returncode == 0 else []
    return [n for n in names if n.startswith(cgroups.PREFIX) and _mine(n, session)]


def cleanup(session: str | None = None, *, dry_run: bool = False) -> list[str]:
    """Remove what a crashed kernel or test run left behind; say what was removed.

    In this order: runc containers named ``hardway-…``; processes of the course
    (``container=hardway``, the launcher), never this process or its ancestors; veth
    host ends ``hw-…``; mounts with ``hardway`` in their path (deepest first); named
    network namespaces; ``hardway-…`` cgroups (their processes are killed first).

    :param session: (optional) only this ``HARDWAY_SESSION``'s leftovers (and those of
        no session); default: everything of the course's
    :param dry_run: only list what would go
    """
    removed: list[str] = []

    def act(what: str, action: Callable[[], object]) -> None:
        if not dry_run:
            with contextlib.suppress(OSError, subprocess.SubprocessError, HardwayError):
                action()
        removed.append(what)

    for name in _runc_containers(session):
        act(f"runc container {name}", lambda n=name: _runc_delete(n))
    for pid in _process_ids(session):
        act(f"process {pid}", lambda p=pid: os.kill(p, signal.SIGKILL))
    for entry in sorted(_links(session)):
        name = entry.split()[2]
        act(f"network device {name}", lambda n=name: _ip("link", "delete", n))
    points = sorted((e.split()[1] for e in _mounts()), key=len, reverse=True)
    for point in points if session is None else ():
        act(f"mount {point}", lambda p=point: linux.umount2(p, linux.MNT_DETACH))
    for entry in sorted(_netns()):
        name = entry.rsplit(" ", 1)[1]
        act(f"network namespace {name}", lambda n=name: _ip("netns", "delete", n))
    for path in _cgroups(session):
        act(f"cgroup {path}", lambda p=path: cgroups.remove_group(p))
    return removed


def _runc_delete(name: str) -> None:
    subprocess.run(["runc", "delete", "--force", name], capture_output=True, check=False)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, check=False)


def _command(args: argparse.Namespace) -> int:
    session = os.environ.get(SESSION_VARIABLE) if args.this_session else None
    removed = cleanup(session, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for item in removed:
        print(f"{verb} {item}")
    print(f"{verb} {len(removed)} leftover(s)" if removed else "nothing left over")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cleanup",
        help="remove leftovers of crashed containers (processes, veths, mounts, cgroups, runc)",
        description="Find and remove what the course's containers left behind: runc "
        "containers and cgroups named hardway-…, the course's processes, hw-… veth "
        "devices, hardway mounts and network namespaces. Prints what it removed.",
    )
    parser.add_argument("--dry-run", action="store_true", help="only list what would go")
    parser.add_argument(
        "--this-session", action="store_true", help="only this HARDWAY_SESSION's leftovers"
    )
    parser.set_defaults(func=_command)
