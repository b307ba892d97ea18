"""hardway.image.entries
~~~~~~~~~~~~~~~~~~~~~~

Before a layer is a tar it is a list of *entries*: names relative to the root of the
tree (``usr/bin/env``), each with the file its content and metadata come from. Every
source of a layer produces them — a whole directory (:func:`tree_entries`), the
difference of two snapshots (:mod:`hardway.image.diff`), an overlayfs upper directory
(:mod:`hardway.image.overlay`), the builder's cache — and one writer turns them into
tar (:func:`hardway.image.layers.write_entries`).

The order is part of the layer's digest, so it is fixed: a depth-first walk, each
directory before what it holds, the children of a directory sorted by their names as
bytes (not by locale, not by whole path). Sockets are left out: tar cannot hold them.
Extended attributes are read here too, minus the ones that describe the host rather
than the file (:data:`SKIPPED_XATTRS`).

>>> import tempfile; tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name)
>>> (d / "etc").mkdir(); (d / "etc" / "motd").touch()
>>> [(e.name, stat.S_ISDIR(e.st.st_mode)) for e in tree_entries(d)]
[('etc', True), ('etc/motd', False)]
>>> tmp.cleanup()
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SKIPPED_XATTRS", "Entry", "children", "sort_key", "tree_entries", "xattrs"]

#: xattrs that describe the host, not the file: never copied into a layer
SKIPPED_XATTRS = ("trusted.overlay.", "user.overlay.", "security.selinux")


@dataclass(frozen=True)
class Entry:
    """One member of a layer before it becomes a tar header.

    ``name`` is root-relative with ``/`` separators (``"usr/bin"``); ``path`` and ``st``
    say where its content and metadata come from — both ``None`` for a whiteout.

    >>> Entry("etc/.wh.motd")
    Entry(name='etc/.wh.motd', path=None, st=None)
    """

    name: str
    path: str | Path | None = None
    st: os.stat_result | None = None


def sort_key(name: str) -> bytes:
    """The order of names in a directory: by their bytes, whatever the locale.

    >>> sorted(["b", "B", "a-b", "a"], key=sort_key)
    ['B', 'a', 'a-b', 'b']
    """
    return os.fsencode(name)


def children(directory: str | Path, prefix: str) -> Iterator[Entry]:
    """The entries in ``directory``, sorted by name as bytes; sockets left out.

    ``prefix`` is the directory's own name in the layer (``""`` for the root). Only the
    names are held (a directory of 20,000 files costs a few MB); each entry is stat'ed
    as it is reached. Paths are plain strings: a :class:`~pathlib.Path` per file cost
    a tenth of a small-file layer's time.

    >>> import tempfile; tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name)
    >>> (d / "b").touch(); (d / "a").touch()
    >>> [e.name for e in children(d, "etc")]
    ['etc/a', 'etc/b']
    >>> tmp.cleanup()
    """
    names = os.listdir(directory)
    # ASCII sorts the same as str and as bytes; only other names need their bytes
    names.sort(key=None if all(n.isascii() for n in names) else sort_key)
    base = os.path.join(directory, "")
    for name in names:
        path = base + name
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            yield Entry(f"{prefix}/{name}" if prefix else name, path, st)


def tree_entries(
    root: str | Path, listing: Callable[[str | Path, str], Iterable[Entry]] = children
) -> Iterator[Entry]:
    """Every entry under ``root``, depth first, each directory before its contents.

    ``listing`` gives the entries of one directory (default: :func:`children`); another
    listing may add entries that are not files (whiteouts) or leave some out.

    >>> import tempfile; tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name)
    >>> (d / "a").mkdir(); (d / "a" / "x").touch(); (d / "a-b").touch()
    >>> [e.name for e in tree_entries(d)]  # a/x first: a walk, not a sort of whole paths
    ['a', 'a/x', 'a-b']
    >>> tmp.cleanup()
    """
    stack = [iter(listing(Path(root), ""))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        yield entry
        if entry.st is not None and stat.S_ISDIR(entry.st.st_mode):
            stack.append(iter(listing(entry.path, entry.name)))


def xattrs(path: str | Path) -> dict[str, bytes]:
    """The extended attributes of ``path`` (never followed if it is a symlink), sorted by
    name, minus :data:`SKIPPED_XATTRS`; ``{}`` on a filesystem without xattrs.

    >>> import tempfile; tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name)
    >>> xattrs(d)
    {}
    >>> tmp.cleanup()
    """
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    return {
        n: os.getxattr(path, n, follow_symlinks=False)
        for n in sorted(names)
        if not n.startswith(SKIPPED_XATTRS)
    }
