"""hardway.course.cleanup
~~~~~~~~~~~~~~~~~~~~~~~

``python -m hardway cleanup`` (chapter 11, and ``make clean``): remove what a crashed
kernel or test run left behind, as :mod:`hardway.course.leftovers` finds it — in an
order that works (a cgroup can go only once its processes are gone, a mount only
deepest first) and never touching what is still someone's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from hardway.course import leftovers
from hardway.distribution.server.services import Service
from hardway.errors import HardwayError
from hardway.isolation import bridge, cgroups
from hardway.sys import linux
from hardway.sys.state import session_from_env

__all__ = ["cleanup", "register"]


def cleanup(
    session: str | None = None,
    *,
    dry_run: bool = False,
    registries: bool = False,
    temp: Path | str | None = None,
    failed: list[str] | None = None,
) -> list[str]:
    """Remove what a crashed kernel or test run left behind; say what was removed.

    In this order: runc containers named ``hardway-…``; processes of the course
    (``container=hardway``, the launcher), never this process or its ancestors; veth
    host ends ``hw-…``, then the course's bridge if nothing is plugged into it; mounts
    inside ``hardway…``/``hw-…`` directories (deepest first); named network namespaces;
    ``hardway-…`` cgroups (their processes are killed first); registries and token
    services whose owner is gone
    (:func:`~hardway.distribution.server.services.record_owner`); stale
    ``hardway-*`` temporary directories (:func:`stale_temp_dirs`).

    :param session: (optional) only this ``HARDWAY_SESSION``'s leftovers (never those of
        no session or of another one); then no named netns, only mounts inside the
        temporary directory, and temporary directories only when ``temp`` is given;
        default: everything of the course's
    :param dry_run: only list what would go
    :param registries: stop every registry and token service of the course, also the
        shared one on the default port and those started to stay (``make clean``)
    :param temp: (optional) the temporary directory to look in; default
        :func:`tempfile.gettempdir`
    :param failed: (optional) gets ``"WHAT: why"`` for each thing that could not be
        removed (say, without root); those are not in the list returned
    """
    removed: list[str] = []

    def act(what: str, action: Callable[[], object]) -> None:
        if not dry_run:
            try:
                action()
            except (ProcessLookupError, FileNotFoundError):
                pass  # gone by itself meanwhile: as good as removed
            except (OSError, subprocess.SubprocessError, HardwayError) as exc:
                if failed is not None:
                    failed.append(f"{what}: {getattr(exc, 'strerror', None) or exc}")
                return
        removed.append(what)

    for name in leftovers.runc_containers(session):
        act(f"runc container {name}", lambda n=name: _runc_delete(n))
    for pid in leftovers.process_ids(session):
        act(f"process {pid}", lambda p=pid: os.kill(p, signal.SIGKILL))
    for entry in sorted(leftovers.links(session)):
        name = entry.split()[2]
        if not bridge.is_bridge(name):
            act(f"network device {name}", lambda n=name: _ip("link", "delete", n))
    for entry in sorted(leftovers.links(session)):  # a bridge the pairs above emptied, too
        name = entry.split()[2]
        if bridge.is_bridge(name):  # under the bridge's lock, in case a run plugs in now
            act(f"network device {name}", lambda n=name: bridge.remove_if_unused(n))
    inside = Path(temp or tempfile.gettempdir()).resolve()
    points = sorted(leftovers.mount_points(), key=len, reverse=True)
    for point in [p for p in points if session is None or Path(p).is_relative_to(inside)]:
        act(f"mount {point!a}", lambda p=point: linux.umount2(p, linux.MNT_DETACH))
    for entry in sorted(leftovers.netns()) if session is None else ():  # no owner to tell by
        name = entry.rsplit(" ", 1)[1]
        act(f"network namespace {name}", lambda n=name: _ip("netns", "delete", n))
    for path in leftovers.cgroup_paths(session):
        act(f"cgroup {path}", lambda p=path: cgroups.remove_group(p))
    for service in leftovers.stale_services(session, registries):
        act(str(service), lambda s=service: _stop_service(s))
    for path in leftovers.stale_temp_dirs(temp) if session is None or temp is not None else ():
        act(f"temporary directory {path}", lambda p=path: shutil.rmtree(p))
    return removed


def _runc_delete(name: str) -> None:
    subprocess.run(["runc", "delete", "--force", name], capture_output=True, check=False)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], capture_output=True, check=False)


def _command(args: argparse.Namespace) -> int:
    session = session_from_env() if args.this_session else None
    # a session's temporary directories are only those in its own TMPDIR
    temp = tempfile.gettempdir() if session is None or os.environ.get("TMPDIR") else None
    failed: list[str] = []
    removed = cleanup(
        session, dry_run=args.dry_run, registries=args.registries, temp=temp, failed=failed
    )
    verb = "would remove" if args.dry_run else "removed"
    for item in removed:
        print(f"{verb} {item}")
    print(f"{verb} {len(removed)} leftover(s)" if removed or failed else "nothing left over")
    for item in failed:
        print(f"could not remove {item}", file=sys.stderr)
    if failed:
        fix = (
            "sudo .venv/bin/python -m hardway cleanup"
            if os.geteuid()
            else "see why above, then remove them by hand"
        )
        print(f"{len(failed)} leftover(s) remain; to fix: {fix}", file=sys.stderr)
        return 1
    return 0


def _stop_service(service: Service) -> None:
    from hardway.distribution.server import local_registry
    from hardway.distribution.server.modes import stop_token_service

    if not service.root.is_dir():  # its state is gone (rm -rf .state): no pid file to use
        os.kill(service.pid, signal.SIGTERM)
    elif service.kind == "registry":
        local_registry.stop_at(service.root)
    else:
        stop_token_service(service.root)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cleanup",
        help="remove what crashed containers and kernels left (processes, veths, mounts, "
        "cgroups, runc, registries, temp dirs)",
        description="Find and remove what the course left behind: runc containers and "
        "cgroups named hardway-…, the course's processes, hw-… veth devices, hardway "
        "mounts and network namespaces, registries and token services whose notebook or "
        "test run is gone, and hardway-* temporary directories nobody uses. The registry "
        "on the default port, and those started with `registry start`, keep running "
        "unless --registries. Prints what it removed.",
    )
    parser.add_argument("--dry-run", action="store_true", help="only list what would go")
    parser.add_argument(
        "--registries",
        action="store_true",
        help="also stop every course registry and token service (make clean does)",
    )
    parser.add_argument(
        "--this-session", action="store_true", help="only this HARDWAY_SESSION's leftovers"
    )
    parser.set_defaults(func=_command)
