"""hardway.course.checks.lab02
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 02, namespaces. Fresh random inputs are compared with
:mod:`hardway.isolation.namespaces`; the last two checks use real containers: inode numbers of
real namespaces, and a learner's ``enter`` run in a child that must end up in the
namespaces of a running container.

* 02.1 ``clone_flags(features) -> int``: the ``CLONE_NEW*`` flags for an isolation;
* 02.2 ``id_map_text(uid, sub_start, sub_count) -> str`` and
  ``host_id(id_map, inside) -> int | None``: rootless uid maps;
* 02.3 ``shared_namespaces(a, b) -> list[str]``: which namespaces two processes share;
* 02.4 ``enter(pid, kinds)``: what ``nsenter`` does, run inside a child.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hardway.course.checks import fresh_rng
from hardway.course.grading import exercise, expect
from hardway.errors import ContainerError, HardwayError
from hardway.isolation import namespaces
from hardway.isolation.container import call, start
from hardway.isolation.namespaces import KINDS, Isolation
from hardway.sys import linux

__all__ = ["flags_chosen", "id_maps_written", "inodes_compared", "namespaces_entered"]


@exercise(
    "02.1",
    points=1,
    hint="each feature names one namespace kind (the table above the exercise); the "
    "flags are bits, so combine them with | — asking twice for one thing sets one bit.",
)
def flags_chosen(clone_flags: Callable[[Sequence[str]], int]) -> None:
    """clone_flags(features) returns the CLONE_NEW* bits that isolate those features."""
    rng = fresh_rng()
    features = list(namespaces.FEATURES)
    for size in (1, 3, len(features)):
        wanted = rng.sample(features, size)
        if size == 3:
            wanted.append(wanted[0])  # twice: still one bit
        got = clone_flags(wanted)
        want = namespaces.clone_flags(wanted)
        expect(isinstance(got, int), f"clone_flags returned a {type(got).__name__}, not an int")
        expect(
            got == want,
            f"clone_flags({wanted}) is {linux.flag_names(got) if got else 0}, "
            f"expected {linux.flag_names(want)}",
        )
    expect(clone_flags([]) == 0, "no features, no new namespaces: 0")
    try:
        clone_flags(["hostname", "teleportation"])
    except ValueError:
        return
    except NotImplementedError:
        raise
    except Exception as exc:
        raise AssertionError(
            f"an unknown feature raised {type(exc).__name__}; raise ValueError"
        ) from None
    raise AssertionError("an unknown feature ('teleportation') should raise ValueError")


@exercise(
    "02.2",
    points=2,
    hint="a map line is 'inside outside count'. Root (0) inside is your uid outside, one "
    "id; ids 1, 2, … inside are your subordinate ids from sub_start on. To translate, "
    "find the line whose inside range holds the id and add the offset.",
)
def id_maps_written(
    id_map_text: Callable[[int, int, int], str], host_id: Callable[[str, int], int | None]
) -> None:
    """id_map_text writes a rootless uid_map; host_id translates through any map."""
    rng = fresh_rng()
    uid, start, count = rng.randint(1000, 60000), rng.randint(1, 9) * 100000, 65536
    text = id_map_text(uid, start, count)
    expect(isinstance(text, str), f"id_map_text returned a {type(text).__name__}, not a str")
    want = namespaces.rootless_map(uid, (start, count))
    got_lines = [line.split() for line in text.splitlines() if line.strip()]
    expect(
        got_lines == [line.split() for line in want.splitlines()],
        f"id_map_text({uid}, {start}, {count}) is {text!r}, expected {want!r}",
    )
    maps = [want, f"0 {uid} 1\n", f"{rng.randint(1, 50)} {start} {rng.randint(1, 5)}\n"]
    for id_map in maps:
        for inside in (0, 1, 2, 1000, count - 1, count, count + 1, rng.randint(0, 70000)):
            got = host_id(id_map, inside)
            expected = namespaces.host_id(id_map, inside)
            expect(
                got == expected,
                f"host_id({id_map!r}, {inside}) is {got!r}, expected {expected!r}"
                + (" (unmapped)" if expected is None else ""),
            )


@exercise(
    "02.3",
    points=2,
    hint="two processes share a namespace of a kind exactly when their inode numbers "
    "for that kind are equal; return the kinds, sorted.",
)
def inodes_compared(
    shared_namespaces: Callable[[Mapping[str, int], Mapping[str, int]], list[str]],
) -> None:
    """shared_namespaces(a, b) lists the kinds two processes share, from real inodes."""
    rng = fresh_rng()
    fake = {k: rng.randint(4026531800, 4026599999) for k in KINDS}
    other = {k: v if rng.random() < 0.5 else v + 1 for k, v in fake.items()}
    got = shared_namespaces(fake, other)
    want = namespaces.shared_namespaces(fake, other)
    expect(got == want, f"for {fake} and {other}: {got}, expected {want}")
    kinds = set(rng.sample([k for k in KINDS if k != "user"], rng.randint(1, 4)))
    try:
        with start(Isolation(kinds), ["sleep", "30"]) as box:
            theirs = box.namespaces()
    except HardwayError as exc:
        raise AssertionError(f"could not start a container to compare with: {exc}") from None
    mine = namespaces.ns_inodes()
    got = shared_namespaces(mine, theirs)
    want = sorted(set(KINDS) - kinds)
    expect(isinstance(got, list), f"shared_namespaces returned a {type(got).__name__}")
    expect(got == want, f"a container with its own {sorted(kinds)} shares {want}; you said {got}")


def probe_enter(enter: Callable[[int, Sequence[str]], None], pid: int, kinds: list[str]) -> Any:
    """Run inside a child: call ``enter(pid, kinds)``, then report where we are."""
    own = os.open("/proc/self/ns", os.O_RDONLY | os.O_DIRECTORY)  # our own, before we move
    enter(pid, kinds)
    inodes = {kind: os.stat(kind, dir_fd=own).st_ino for kind in KINDS}
    return {"inodes": inodes, "hostname": os.uname().nodename}


@exercise(
    "02.4",
    points=2,
    hint="open every /proc/PID/ns/KIND file first, then call linux.setns on each: once "
    "you are in the container's mount namespace, /proc is the container's and PID "
    "names another process (or none). Close the files afterwards.",
)
def namespaces_entered(enter: Callable[[int, Sequence[str]], None]) -> None:
    """enter(pid, kinds) joins those namespaces of a running container, like nsenter."""
    rng = fresh_rng()
    hostname = f"lab02-{secrets.token_hex(3)}"
    kinds = ["mnt", *rng.sample(["uts", "ipc", "net", "cgroup"], 3)]  # mnt first: a trap
    spec = Isolation({"pid", "mnt", "uts", "ipc", "net", "cgroup"}, hostname=hostname, proc=True)
    try:
        with start(spec, ["sleep", "30"]) as box:
            theirs = box.namespaces()
            try:
                seen = call(Isolation(), probe_enter, enter, box.pid, kinds)
            except ContainerError as exc:
                if exc.child == "NotImplementedError":
                    stub = NotImplementedError()
                    stub._hardway_learner = "enter"  # type: ignore[attr-defined]
                    raise stub from None
                raised = exc.message.partition(" raised ")[2] or exc.message
                message = f"enter({box.pid}, {kinds}) raised {raised}"
                if exc.child in ("FileNotFoundError", "ProcessLookupError"):
                    message += ": was a /proc file opened after joining the mount namespace?"
                raise AssertionError(message) from None
    except HardwayError as exc:
        raise AssertionError(f"could not start a container to enter: {exc}") from None
    mine = namespaces.ns_inodes()
    for kind in KINDS:
        target = theirs if kind in kinds else mine
        where = "the container's" if kind in kinds else "still the host's"
        expect(
            seen["inodes"][kind] == target[kind],
            f"after enter(pid, {kinds}) the {kind} namespace is not {where}",
        )
    want = hostname if "uts" in kinds else os.uname().nodename
    expect(
        seen["hostname"] == want,
        f"after enter(pid, {kinds}) the hostname is {seen['hostname']!r}, not {want!r}",
    )
