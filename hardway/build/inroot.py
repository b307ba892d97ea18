"""hardway.build.inroot
~~~~~~~~~~~~~~~~~~~~

Paths of a build, resolved inside their root. A Dockerfile build reads from a build
context or an earlier stage's root filesystem (``COPY`` and ``COPY --from``) and writes
into an image's root filesystem (``COPY``, ``WORKDIR``). Both are strangers' trees: a
base image may hold ``app -> /home/you`` and a cloned context ``docs -> ../../..``. So
every path is resolved the way the kernel would after ``chroot(root)``, through
:mod:`hardway.sys.securejoin`: a link is followed *inside* the root (an absolute target
starts again at the root, ``..`` stops there), and every file is then made, replaced or
read relative to a directory descriptor, never by a host path that a link could lead
out of.

Reading: :func:`lookup` (a name, its links followed inside the root) and :func:`glob`
(wildcards, matched inside the root). Writing, in a step's child process:
:func:`make_workdir` and :func:`copy_in`. A link *at* the destination of a ``COPY`` is
followed inside the root, as BuildKit does; a link met *below* it, where the copied tree
has a file or a link, is replaced, as unpacking a layer would.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob as globbing
import os
import shutil
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from hardway.sys.securejoin import close_dir, open_dir, resolve_at

__all__ = ["copy_in", "glob", "lookup", "make_workdir"]

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: should a FIFO take a file's place after the check, it opens at once, not when written to
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def _root(root: str | os.PathLike[str]) -> Iterator[int]:
    """*root* open as a directory descriptor, for :mod:`~hardway.sys.securejoin`."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _dir(root_fd: int, path: str, *, create: bool = False, mode: int = 0o755) -> Iterator[int]:
    """Directory *path* inside the root, open (with *create*, made if missing)."""
    fd, _ = open_dir(root_fd, path, create=create, mode=mode)
    try:
        yield fd
    finally:
        close_dir(fd)


# -- reading: a context or a stage ----------------------------------------------------------


def _exists(root_fd: int, rel: str) -> bool:
    head, _, name = rel.rpartition("/")
    if not name:
        return True  # the root itself
    try:
        with _dir(root_fd, head) as fd:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def lookup(root: str | os.PathLike[str], name: str) -> str | None:
    """*name* in *root* with its links followed inside *root*, as a host path; ``None``
    if it is not there (or its links loop).

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.mkdir(f"{root}/etc"); os.symlink("/etc", f"{root}/conf")
    >>> lookup(root, "conf") == f"{root}/etc", lookup(root, "conf/passwd")
    (True, None)
    >>> shutil.rmtree(root)
    """
    with _root(root) as fd:
        try:
            rel = resolve_at(fd, name)
        except OSError:  # a symlink loop
            return None
        return os.path.join(root, rel) if _exists(fd, rel) else None


def _listdir(root_fd: int, rel: str) -> list[str]:
    """The names in directory *rel* of the root (links followed inside it), or none."""
    try:
        with _dir(root_fd, rel) as where:
            fd = os.open(".", _OPEN_DIR, dir_fd=where)
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def glob(root: str | os.PathLike[str], pattern: str) -> list[str]:
    """The names in *root* that *pattern* (``*``, ``?``, ``[…]``; hidden names too)
    matches, sorted — :func:`glob.glob` with ``root_dir=root``, except that a directory
    reached through a link is listed *inside* *root*. A pattern without wildcards is
    returned as it is.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> for name in ("a.md", "b.md", ".c.md"): open(f"{root}/{name}", "w").close()
    >>> os.symlink("/", f"{root}/top")
    >>> glob(root, "*.md"), glob(root, "top/?.md"), glob(root, "plain")
    (['.c.md', 'a.md', 'b.md'], ['top/a.md', 'top/b.md'], ['plain'])
    >>> shutil.rmtree(root)
    """
    parts = pattern.split("/")
    if not any(globbing.has_magic(part) for part in parts):
        return [pattern]
    found = [""]
    with _root(root) as fd:
        for part in parts:
            if globbing.has_magic(part):
                found = [
                    f"{prefix}{name}"
                    for prefix in found
                    for name in fnmatch.filter(_listdir(fd, prefix), part)
                ]
            else:
                found = [f"{prefix}{part}" for prefix in found]
            found = [f"{name}/" for name in found]
    return sorted(name.rstrip("/") for name in found)


# -- writing: an image's root filesystem, in a step's child ---------------------------------


def make_workdir(root: str, path: str) -> bool:
    """``WORKDIR``'s directory *path*, made inside *root* if missing (as ``mkdir -p``
    does: mode 0777 minus the umask). Returns whether it was made."""
    with _root(root) as fd:
        try:
            with _dir(fd, path):
                return False
        except FileNotFoundError:
            with _dir(fd, path, create=True, mode=0o777):
                return True


def copy_in(root: str, item: Mapping, owner: tuple[int, int], chmod: str | None) -> None:
    """Copy one ``COPY`` source (a :class:`~hardway.build.copyplan.CopyItem` as a dict)
    into *root*: a directory's contents into ``dest``, a file to ``dest`` or, when
    ``dest`` is a directory, into it under its ``name``. Directories ``COPY`` makes are
    0755 and owned by *owner*, as Docker does; what it copies gets *owner* and *chmod*
    (octal) or its own mode."""
    mode = int(chmod, 8) if chmod else None
    with _root(root) as root_fd:
        if item.get("unpack"):
            top, rel = open_dir(root_fd, item["dest"], create=True, owner=owner)
            close_dir(top)
            return _unpack(item["source"], os.path.join(root, rel))
        if item["is_dir"]:
            top, rel = open_dir(root_fd, item["dest"], create=True, owner=owner)
            source = os.open(item["source"], _OPEN_DIR)
            try:
                _copy_tree(root_fd, source, top, rel, owner, mode)
            finally:
                os.close(source)
                close_dir(top)
            return
        dest = resolve_at(root_fd, item["dest"])
        try:
            parent, _ = open_dir(root_fd, dest)  # a directory: the file goes into it
            name = item["name"] or os.path.basename(item["source"])
        except (FileNotFoundError, NotADirectoryError):
            head, _, name = dest.rpartition("/")
            parent, _ = open_dir(root_fd, head, create=True, owner=owner)
        try:
            _copy_file(_open_regular(item["source"]), parent, name, owner, mode)
        finally:
            close_dir(parent)


def _unpack(archive: str, dest: str) -> None:
    """``ADD archive /dest``: the tar unpacked into *dest* (resolved inside the root
    already) by the layer applier (:func:`hardway.image.apply.apply_layer`), which
    keeps every entry, link and hard link inside *dest* and keeps the archive's owners,
    as Docker does. Unlike Docker's ``ADD``, an entry named ``.wh.NAME`` acts as a
    whiteout (removes ``NAME`` in *dest*) — still never outside it."""
    import bz2
    import lzma

    from hardway.image.apply import apply_layer, default_max_size

    with open(archive, "rb") as raw:
        limit = default_max_size(raw)  # the same guard against a tar bomb as for layers
        head = raw.read(6)
        raw.seek(0)
        opener = {b"BZh": bz2.BZ2File, b"\xfd7zXZ\x00": lzma.LZMAFile}
        for magic, wrap in opener.items():
            if head.startswith(magic):
                with wrap(raw) as stream:
                    return apply_layer(stream, Path(dest), compression="none", max_size=limit)
        return apply_layer(raw, Path(dest), max_size=limit)


def _copy_tree(
    root_fd: int, source: int, dest: int, rel: str, owner: tuple[int, int], mode: int | None
) -> None:
    """Everything in directory *source* into directory *dest* (*rel* in the root)."""
    for name in sorted(os.listdir(source)):
        st = os.stat(name, dir_fd=source, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            below = os.open(name, _OPEN_DIR, dir_fd=source)
            try:
                there, where = _subdirectory(root_fd, dest, rel, name, st, owner, mode)
                try:
                    _copy_tree(root_fd, below, there, where, owner, mode)
                finally:
                    close_dir(there)
            finally:
                os.close(below)
        elif stat.S_ISLNK(st.st_mode):
            _make_room(dest, name)
            os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=dest)
            os.chown(name, *owner, dir_fd=dest, follow_symlinks=False)
        else:
            _copy_file(_open_regular(name, source), dest, name, owner, mode)


def _subdirectory(
    root_fd: int,
    dest: int,
    rel: str,
    name: str,
    st: os.stat_result,
    owner: tuple[int, int],
    mode: int | None,
) -> tuple[int, str]:
    """Directory *name* in *dest*, opened: an existing one as it is (a link to one is
    followed inside the root), a new one with *owner* and *mode* (else the source's)."""
    try:
        os.stat(name, dir_fd=dest, follow_symlinks=False)
    except FileNotFoundError:
        os.mkdir(name, 0o700, dir_fd=dest)
        fd = os.open(name, _OPEN_DIR, dir_fd=dest)
        try:
            os.fchown(fd, *owner)
            os.fchmod(fd, stat.S_IMODE(st.st_mode) if mode is None else mode)
        finally:
            os.close(fd)
    return open_dir(root_fd, f"{rel}/{name}", create=True, owner=owner)


def _open_regular(name: str, dir_fd: int | None = None) -> int:
    """Open the regular file *name* for reading; anything else (a FIFO, a socket, a
    device) is refused, not waited on or read forever."""
    if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        raise ValueError(f"{name}: COPY copies files, directories and symlinks, not this")
    return os.open(name, _OPEN_FILE, dir_fd=dir_fd)


def _make_room(dest: int, name: str) -> None:
    """Remove a file or link *name* in *dest*; a directory is left (creating then fails)."""
    try:
        st = os.stat(name, dir_fd=dest, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dest)


def _copy_file(source: int, dest: int, name: str, owner: tuple[int, int], mode: int | None) -> None:
    """The open regular file *source* (closed here) as *name* in *dest*, replacing a
    file or link there."""
    with open(source, "rb") as src:
        st = os.fstat(src.fileno())
        _make_room(dest, name)
        with open(os.open(name, _CREATE_FILE, 0o600, dir_fd=dest), "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
            os.fchown(out.fileno(), *owner)
            os.fchmod(out.fileno(), stat.S_IMODE(st.st_mode) if mode is None else mode)
