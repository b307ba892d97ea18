"""A shared registry for a workshop room: one account and one namespace per attendee.

    .venv/bin/python tools/room_registry.py ATTENDEES.txt [--port 5000] [--token-port 5001]
                                            [--state .state/room] [--credentials FILE]

ATTENDEES.txt holds one name a line (lowercase letters, digits, ``-``). The tool runs the
course's registry (Distribution, ``auth: token``) with the course's token service, whose
ACL gives each attendee ``pull,push,delete`` on ``NAME/*`` and ``pull`` on ``course/*``,
and the account ``instructor`` everything. Passwords are generated once and kept in the
credentials file (CSV, mode 0600: hand each line to its attendee); running the tool again
keeps them, and adds accounts for new names. It serves until Ctrl-C, then stops both.

Both listen on 127.0.0.1 only. Attendees reach them through an SSH tunnel of the two
ports (docs/instructors.md), so passwords never cross the network in clear and no TLS
certificate is needed: a client treats ``127.0.0.1:PORT`` as a local, plain-HTTP registry.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hardway.distribution.server import local_registry
from hardway.distribution.server.tokenserver import Rule, TokenService, write_htpasswd

NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
INSTRUCTOR = "instructor"
SHARED = "course"  # the namespace everyone may pull from: no attendee may own it


def read_attendees(path: Path) -> list[str]:
    """The names in *path*, in order, without blanks, comments and duplicates."""
    names: list[str] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if name in (INSTRUCTOR, SHARED):
            raise SystemExit(f"{path}:{number}: {name!r} is reserved: choose another name")
        if not NAME.match(name):
            raise SystemExit(f"{path}:{number}: {name!r} is not a usable name (a-z, 0-9, -)")
        if name not in names:
            names.append(name)
    return names


def room_acl(attendees: list[str]) -> tuple[Rule, ...]:
    """Each attendee owns ``NAME/*``; everyone logged in may pull ``course/*``."""
    own = [Rule(name, f"{name}/*", ("pull", "push", "delete")) for name in attendees]
    return (
        Rule(INSTRUCTOR, "*", ("pull", "push", "delete")),
        *own,
        Rule("*", f"{SHARED}/*", ("pull",)),
    )


def passwords(attendees: list[str], credentials: Path) -> dict[str, str]:
    """The password of every account: kept from *credentials*, made for new names."""
    known: dict[str, str] = {}
    if credentials.is_file():
        with credentials.open(newline="") as f:
            known = {row["account"]: row["password"] for row in csv.DictReader(f)}
    return {name: known.get(name) or secrets.token_urlsafe(12) for name in [INSTRUCTOR, *attendees]}


def write_credentials(users: dict[str, str], registry: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file that existed keeps its mode through O_CREAT
    with open(fd, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["account", "password", "registry", "repositories"])
        for name, password in users.items():
            repos = "*" if name == INSTRUCTOR else f"{name}/*"
            writer.writerow([name, password, registry, repos])


@dataclass
class Room:
    """A running room registry and its token service."""

    url: str
    port: int
    users: dict[str, str]
    service: TokenService

    def stop(self) -> None:
        try:
            local_registry.stop(self.port)
        finally:  # a registry that would not stop must not keep the token service alive
            self.service.stop()


def start_room(
    attendees: list[str], port: int, token_port: int, state: Path, credentials: Path
) -> Room:
    """Write the htpasswd file and credentials, start the token service and the registry."""
    state.mkdir(parents=True, exist_ok=True)
    users = passwords(attendees, credentials)
    htpasswd = write_htpasswd(state / "htpasswd", users)
    service = TokenService(htpasswd, acl=room_acl(attendees), lifetime=600)
    service.start(port=token_port)
    config = service.registry_config(port, state / "token.pem")
    try:
        status = local_registry.start(port, config=config)
    except BaseException:
        service.stop()
        raise
    write_credentials(users, f"127.0.0.1:{port}", credentials)
    return Room(status.url, port, users, service)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("attendees", type=Path)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--token-port", type=int, default=None, help="default: PORT + 1")
    parser.add_argument("--state", type=Path, default=Path(".state/room"))
    parser.add_argument(
        "--credentials", type=Path, default=None, help="default: STATE/credentials.csv"
    )
    args = parser.parse_args(argv)
    state = args.state.resolve()
    os.environ["HARDWAY_STATE_DIR"] = str(state)  # the registry's storage goes here too
    credentials = args.credentials or state / "credentials.csv"
    attendees = read_attendees(args.attendees)
    room = start_room(attendees, args.port, args.token_port or args.port + 1, state, credentials)
    print(f"room registry: {room.url} (token service {room.service.realm})")
    print(f"{len(attendees)} attendee(s); credentials in {credentials} (mode 0600)")
    print("Ctrl-C stops both.", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # like Ctrl-C: through finally
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        room.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
