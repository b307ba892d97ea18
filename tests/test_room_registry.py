"""tools/room_registry.py: a shared registry where each attendee owns NAME/* — checked
against the real registry and token service, with the course's own client."""

from __future__ import annotations

import csv
import stat
import sys
from pathlib import Path

import pytest

from hardway.distribution import registry
from hardway.distribution.credentials import Credentials
from hardway.distribution.errors import UnauthorizedError
from hardway.image.random import random_image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import room_registry


def test_read_attendees_skips_blanks_comments_and_repeats(tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("alice\n\n# the back row\nbob  # late\nalice\n")
    assert room_registry.read_attendees(names) == ["alice", "bob"]
    names.write_text("Alice Smith\n")
    with pytest.raises(SystemExit, match=r"names\.txt:1"):
        room_registry.read_attendees(names)
    for reserved in ("instructor", "course"):  # course/* is everyone's to pull, no one's own
        names.write_text(f"alice\n{reserved}\n")
        with pytest.raises(SystemExit, match=r"names\.txt:2: .* is reserved"):
            room_registry.read_attendees(names)


def test_passwords_are_kept_across_runs(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.csv"
    first = room_registry.passwords(["alice"], credentials)
    room_registry.write_credentials(first, "127.0.0.1:5000", credentials)
    again = room_registry.passwords(["alice", "bob"], credentials)
    assert again["alice"] == first["alice"] and again["instructor"] == first["instructor"]
    assert "bob" in again and again["bob"] != again["alice"]
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    credentials.chmod(0o644)  # e.g. copied around: writing again makes it private again
    room_registry.write_credentials(again, "127.0.0.1:5000", credentials)
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600


def test_each_attendee_owns_their_namespace(tmp_path: Path, free_port: int) -> None:
    from conftest import find_free_port

    credentials = tmp_path / "credentials.csv"
    room = room_registry.start_room(
        ["alice", "bob"], free_port, find_free_port(), tmp_path / "room", credentials
    )
    try:
        with credentials.open(newline="") as f:
            rows = {row["account"]: row for row in csv.DictReader(f)}
        assert rows["alice"]["repositories"] == "alice/*"

        def login(name: str) -> Credentials:
            return Credentials(name, rows[name]["password"])

        host = f"127.0.0.1:{room.port}"
        image = random_image(64, 1, seed=21)
        registry.push(image, f"{host}/alice/app:v1", credentials=login("alice"))
        with pytest.raises(UnauthorizedError):
            registry.push(image, f"{host}/bob/app:v1", credentials=login("alice"))
        with pytest.raises(UnauthorizedError):
            registry.pull(f"{host}/alice/app:v1", credentials=login("bob"))
        registry.push(image, f"{host}/course/base:v1", credentials=login("instructor"))
        pulled = registry.pull(f"{host}/course/base:v1", credentials=login("bob"))
        assert pulled.digest() == image.digest()
        with pytest.raises(UnauthorizedError):
            registry.push(image, f"{host}/course/base:v2", credentials=login("bob"))
        with pytest.raises(UnauthorizedError):
            registry.pull(f"{host}/course/base:v1", credentials=Credentials("bob", "wrong"))
    finally:
        room.stop()
