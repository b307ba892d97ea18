"""hardway.leftovers
~~~~~~~~~~~~~~~~~

What the course's containers could leave behind on the host if cleaning up went
wrong: a process still running, a veth pair, a mount, a named network namespace.
Everything the course creates carries a name to recognise it by:

* processes: ``container=hardway`` in the environment (every container gets it) or
  ``hardway.launch`` on the command line (the launcher);
* network devices: ``hw-…`` (the host end of a veth pair; alias ``hardway owner PID``);
* mounts and named network namespaces: ``hardway`` or ``hw-`` in the name.

:func:`snapshot` lists what exists now; :func:`left_behind` compares a snapshot taken
before a run with one taken after. The test suite does that around the whole session.
A concurrent run (another ``pytest`` on the same machine) may own some of these
things: a process whose ancestors carry another ``HARDWAY_SESSION`` in their
environment, or a veth whose owner does, is not counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Snapshot", "left_behind", "snapshot"]

SESSION_VARIABLE = "HARDWAY_SESSION"


@dataclass(frozen=True)
class Snapshot:
    """Things the course may have created, each as a one-line description."""

    processes: frozenset[str]
    links: frozenset[str]
    mounts: frozenset[str]
    netns: frozenset[str]


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
    )


def left_behind(before: Snapshot, after: Snapshot) -> list[str]:
    """Everything in *after* that was not in *before*, sorted by kind."""
    return [
        *sorted(after.processes - before.processes),
        *sorted(after.links - before.links),
        *sorted(after.mounts - before.mounts),
        *sorted(after.netns - before.netns),
    ]
