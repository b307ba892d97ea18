"""hardway.sys.atomic
~~~~~~~~~~~~~~~~~~

Write a file so that nobody ever sees half of it: write a temporary file in the *same*
directory (a rename cannot cross filesystems), flush it (to disk too, with ``sync``),
then ``os.replace`` it over the final name. A rename is atomic: a reader opens either
the old file or the whole new one, and two writers of the same name both succeed (the
last rename wins).

If anything goes wrong before the rename — an exception, ``Ctrl-C`` — the temporary
file is removed. Only ``SIGKILL`` (or a power cut) can leave one behind; its name
starts with ``.tmp-<pid>-`` so a cleaner can tell whose it was (:func:`stale`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["PREFIX", "stale", "temporary_file", "write_atomic"]

#: every temporary file starts with this, then the writer's pid and a dash
PREFIX = ".tmp-"


@contextlib.contextmanager
def temporary_file(directory: Path | str, suffix: str = "") -> Iterator[tuple[str, BinaryIO]]:
    """``(name, file)`` of a new temporary file in ``directory``, removed on the way out
    unless the caller renamed it (on success *and* on any exception, ``Ctrl-C`` too).

    Not :func:`tempfile.mkstemp`: a ``KeyboardInterrupt`` landing after ``mkstemp`` made
    the file but before a ``try`` began would leave it behind; here the name is chosen
    first, so the ``finally`` always knows what to remove.
    """
    name = os.path.join(directory, f"{PREFIX}{os.getpid()}-{secrets.token_hex(8)}{suffix}")
    try:
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            name = ""  # somebody else's file: not ours to remove
            raise
        with os.fdopen(fd, "wb") as out:
            yield name, out
    finally:
        if name:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


def write_atomic(target: Path | str, data: bytes, *, mode: int = 0o644, sync: bool = False) -> None:
    """Replace ``target`` by a file holding ``data``, all at once (``sync``: fsync first)."""
    target = Path(target)
    with temporary_file(target.parent) as (tmp, out):
        out.write(data)
        out.flush()
        if sync:
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)


def stale(path: Path) -> bool:
    """Whether ``path`` is a temporary file whose writer is gone (killed before its rename).

    >>> stale(Path(f".tmp-{os.getpid()}-x")), stale(Path("blob"))
    (False, False)
    """
    name = path.name
    if not name.startswith(PREFIX):
        return False
    pid = name[len(PREFIX) :].split("-", 1)[0]
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False
