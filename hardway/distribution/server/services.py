"""hardway.distribution.server.services
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

The course's registries and token services, found by their command lines, and who owns
each of them.

Every registry the course starts serves ``…/registry/<port>/config.yml`` and every token
service reads ``…/registry/<port>/htpasswd``, so ``/proc`` alone tells which of the
running processes are the course's, on which port, with which state directory — even
those of a checkout whose kernel crashed. The state directory's ``owner`` file says who
started them: a process (a notebook kernel, a test run) whose exit makes them leftovers,
or nobody (``registry start``, ``make lab``), meaning "keep running".

:func:`registries_on` finds every course registry serving a port, whatever checkout or
state directory started it — a second checkout on the same machine (an instructor's
``/opt/course`` next to a learner's clone) meets the first one's registry there, and
:func:`describe` and :func:`stop_command` say whose it is and how to free the port.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hardway.sys.atomic import write_atomic
from hardway.sys.proc import argv_of, read_proc, runs_module, session_of, start_tick, stat_of
from hardway.sys.state import session_from_env

__all__ = [
    "OWNER_FILE",
    "TOKEN_SERVICE_MODULES",
    "Service",
    "checkout_of",
    "describe",
    "owner_gone",
    "record_owner",
    "registries_on",
    "service_of",
    "services",
    "stop_command",
]

#: a registry's state directory ``…/registry/<port>`` names the file that says who owns it
OWNER_FILE = "owner"
#: ``python -m`` names of the token service: the first is the one started; the second,
#: its name before the package took its parts' layout (December 2026), is still
#: recognised (stop, cleanup) for one release, as a leftover of an older checkout
TOKEN_SERVICE_MODULES = ("hardway.distribution.server.tokenserver", "hardway.tokenserver")
_REGISTRY_CONFIG = re.compile(r"/registry/(\d+)/config\.yml$")
_TOKEN_HTPASSWD = re.compile(r"/registry/(\d+)/htpasswd$")


def record_owner(root: Path, owner: int | None) -> None:
    """Write who owns the registry (and token service) whose state is ``root``.

    ``owner`` is the process that started it for its own use (a notebook kernel, a test
    run): once that process is gone, ``python -m hardway cleanup`` stops what it left.
    ``None`` means started to stay (``python -m hardway registry start``, ``make lab``):
    only ``cleanup --registries`` (``make clean``) stops it.
    """
    text = "detached\n" if owner is None else f"{owner} {start_tick(owner)}\n"
    write_atomic(root / OWNER_FILE, text.encode())


def owner_gone(root: Path) -> bool:
    """Did the process that owns the registry in ``root`` exit? A file saying "detached",
    or a missing or unreadable one, counts as "keep"."""
    words = read_proc(str(root / OWNER_FILE)).decode(errors="replace").split()
    if len(words) != 2 or not words[0].isdigit():
        return False
    return start_tick(int(words[0])) != words[1]


@dataclass(frozen=True)
class Service:
    """A running registry or token service of the course, found by its command line."""

    kind: str  # "registry" or "token service"
    pid: int
    port: int
    root: Path  # its state directory, ``…/registry/<port>``

    def __str__(self) -> str:
        return f"{self.kind} on port {self.port} (pid {self.pid}, state {self.root})"


def service_of(pid: int, argv: list[str]) -> Service | None:
    """The course's service that ``argv`` (the command line of ``pid``) runs, if any.

    >>> service_of(7, ["/usr/bin/docker-registry", "serve", "/s/registry/5000/config.yml"])
    Service(kind='registry', pid=7, port=5000, root=PosixPath('/s/registry/5000'))
    >>> service_of(7, ["grep", "-m", "hardway.tokenserver", "serve", "--htpasswd", "x"])
    """
    if len(argv) == 3 and argv[1] == "serve" and (m := _REGISTRY_CONFIG.search(argv[2])):
        return Service("registry", pid, int(m[1]), Path(argv[2]).parent)
    if (
        runs_module(argv, TOKEN_SERVICE_MODULES)
        and argv[3:4] == ["serve"]
        and "--htpasswd" in argv[:-1]
    ):
        htpasswd = argv[argv.index("--htpasswd") + 1]
        if m := _TOKEN_HTPASSWD.search(htpasswd):
            return Service("token service", pid, int(m[1]), Path(htpasswd).parent)
    return None


def _running() -> Iterator[Service]:
    """Every service of the course alive now (zombies and exited ones left out)."""
    for entry in os.listdir("/proc"):
        service = service_of(int(entry), argv_of(entry)) if entry.isdigit() else None
        if service and stat_of(entry)[0] not in ("", "Z", "X"):
            yield service


def services(session: str | None = None) -> list[Service]:
    """The course's registries and token services running now (not another session's).

    :param session: (optional) default: the environment's ``HARDWAY_SESSION``
    """
    session = session if session is not None else session_from_env()
    found = [service for service in _running() if session_of(service.pid) == session]
    return sorted(found, key=lambda s: (s.port, s.kind, s.pid))


def registries_on(port: int) -> list[Service]:
    """The course's registries serving ``port`` now, started by any checkout, state
    directory or session (their state directories tell them apart)."""
    found = [s for s in _running() if s.kind == "registry" and s.port == port]
    return sorted(found, key=lambda s: s.pid)


def checkout_of(service: Service) -> Path | None:
    """The course checkout whose ``.state/`` holds ``service``'s state, if it is one.

    >>> checkout_of(Service("registry", 7, 5000, Path("/nowhere/.state/registry/5000")))
    """
    state = service.root.parent.parent  # <state>/registry/<port>
    if state.name == ".state" and (state.parent / "pyproject.toml").is_file():
        return state.parent
    return None


def describe(service: Service) -> str:
    """Whose ``service`` is, for a message: its checkout, else its state directory.

    >>> describe(Service("registry", 7, 5000, Path("/tmp/s/registry/5000")))
    "the course's registry of the state directory /tmp/s (pid 7)"
    """
    checkout = checkout_of(service)
    whose = (
        f"the checkout {checkout}"
        if checkout
        else f"the state directory {service.root.parent.parent}"
    )
    return f"the course's {service.kind} of {whose} (pid {service.pid})"


def stop_command(service: Service) -> str:
    """The command that stops ``service``, from any checkout.

    >>> stop_command(Service("registry", 7, 5000, Path("/opt/course/.state/registry/5000")))
    'HARDWAY_STATE_DIR=/opt/course/.state python -m hardway registry stop --port 5000'
    """
    state = shlex.quote(str(service.root.parent.parent))
    return f"HARDWAY_STATE_DIR={state} python -m hardway registry stop --port {service.port}"
