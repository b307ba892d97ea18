"""hardway.sys.importable
~~~~~~~~~~~~~~~~~~~~~~~

Letting another user import ``hardway``. Some Python children run as an unprivileged
user — ``nobody`` in the rootless tests — and find the package through ``PYTHONPATH``,
which names the directory that holds it. When the checkout lies in a directory only its
owner may enter (``/root`` is mode 0700, and so is every ``mktemp -d``), that user gets
``ModuleNotFoundError: No module named 'hardway'``.

:func:`importable_for` gives a directory to put on ``PYTHONPATH`` for a uid: the
checkout itself when that uid can read the package there, else a read-only copy of the
package (its ``.py`` files) in a temporary directory the uid can reach, removed when the
``with`` block ends. :func:`can_read` is the permission rule it uses: the owner, group
and other bits of every directory on the way, as the kernel checks them (ACLs aside).

A child that starts as root and drops its privileges *after* its imports (the probes of
``doctor``, the container launcher) needs none of this.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path

from hardway.errors import HardwayError
from hardway.sys.state import package_parent

__all__ = ["can_read", "importable_for"]

_READ, _SEARCH = 4, 1
#: where a copy may go when ``tempfile.gettempdir()`` is out of the uid's reach
_FALLBACK_TEMP = ("/tmp", "/var/tmp", "/dev/shm")


def _allows(st: os.stat_result, uid: int, gids: Collection[int], want: int) -> bool:
    if uid == 0:
        return True
    if st.st_uid == uid:
        bits = st.st_mode >> 6
    elif st.st_gid in gids:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & want == want


def can_read(path: Path | str, uid: int, gids: Collection[int] = ()) -> bool:
    """May ``uid`` (in groups ``gids``) reach ``path`` and read it — every directory above
    it searchable, the path readable (and searchable, if a directory)?

    >>> can_read("/", 65534, [65534])
    True
    """
    path = Path(path).resolve()
    try:
        for directory in reversed(path.parents):
            if not _allows(directory.stat(), uid, gids, _SEARCH):
                return False
        st = path.stat()
    except OSError:
        return False
    want = _READ | _SEARCH if stat.S_ISDIR(st.st_mode) else _READ
    return _allows(st, uid, gids, want)


def _package_readable(package: Path, uid: int, gids: Collection[int]) -> bool:
    if not can_read(package, uid, gids):
        return False
    for directory, subdirs, files in os.walk(package):
        subdirs[:] = [d for d in subdirs if d != "__pycache__"]
        for name in [*subdirs, *(f for f in files if f.endswith(".py"))]:
            if not _allows(os.stat(os.path.join(directory, name)), uid, gids, _READ):
                return False
    return True


def _groups_of(uid: int, gid: int | None) -> list[int]:
    if gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = uid
    return [gid]


def _copy_package(package: Path, uid: int, gids: Collection[int]) -> Path:
    """A temporary directory, reachable by ``uid``, holding a read-only copy of the package."""
    places = dict.fromkeys([tempfile.gettempdir(), *_FALLBACK_TEMP])
    for place in places:
        if not (can_read(place, uid, gids) and os.access(place, os.W_OK | os.X_OK)):
            continue
        top = Path(tempfile.mkdtemp(prefix="hardway-import-", dir=place))
        try:
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(package, top / package.name, ignore=ignore)
            for directory, _, files in os.walk(top):
                os.chmod(directory, 0o755)
                for name in files:
                    os.chmod(os.path.join(directory, name), 0o644)
        except BaseException:
            shutil.rmtree(top, ignore_errors=True)
            raise
        return top
    raise HardwayError(
        f"uid {uid} cannot read {package}, and none of {', '.join(places)} is a temporary "
        "directory it can reach, for a copy",
        fix="clone the course where every user may read it (e.g. /opt/course), or set "
        "TMPDIR to a directory that user can reach",
    )


@contextlib.contextmanager
def importable_for(uid: int, gid: int | None = None) -> Iterator[Path]:
    """A directory from which ``uid`` can import ``hardway``, for its ``PYTHONPATH``.

    The package's own parent when ``uid`` can read the package there; otherwise a
    read-only copy in a temporary directory, removed when the block ends.

    :param gid: (optional) the uid's group; default: its group in ``/etc/passwd``
    :raises HardwayError: no temporary directory the uid can reach, with the fix
    """
    package = package_parent() / "hardway"
    gids = _groups_of(uid, gid)
    if _package_readable(package, uid, gids):
        yield package.parent
        return
    copy = _copy_package(package, uid, gids)
    try:
        yield copy
    finally:
        shutil.rmtree(copy, ignore_errors=True)
