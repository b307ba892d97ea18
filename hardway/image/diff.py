"""hardway.image.diff
~~~~~~~~~~~~~~~~~~~

A layer on top of another holds only what changed, so building one means comparing two
snapshots of a tree: ``lower`` (what the layers below give) and ``upper`` (what it should
become). :func:`diff_entries` walks both and yields the layer's entries:

* an entry that is new, or differs in type, mode, owner (with ``keep_owners``), xattrs,
  mtime in whole seconds or content, comes with its parent directories;
* a directory's own mtime does not count: it changes whenever its content does;
* a deletion becomes a whiteout (``dir/.wh.name``), and a directory none of whose lower
  children survive becomes opaque (``dir/.wh..wh..opq``, see :mod:`hardway.image.whiteouts`);
* hard links stay hard links: every name of an inode whose links changed goes in.

:func:`diff_layer` writes those entries as a layer (``python -m hardway layer diff``).

>>> import shutil, tempfile; tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name)
>>> lower, upper = d / "lower", d / "upper"; lower.mkdir()
>>> (lower / "issue").touch(); (lower / "motd").touch(); _ = shutil.copytree(lower, upper)
>>> (upper / "motd").unlink(); (upper / "hostname").touch()
>>> [e.name for e in diff_entries(lower, upper)]  # issue is unchanged: not in the layer
['.wh.motd', 'hostname']
>>> tmp.cleanup()
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from hardway.errors import LayerError
from hardway.image.compression import GZIP
from hardway.image.entries import Entry, children, sort_key, tree_entries, xattrs
from hardway.image.layers import LayerInfo, write_entries
from hardway.image.whiteouts import opaque_name, whiteout_name

__all__ = ["diff_entries", "diff_layer"]

#: files are compared in blocks this big
_CHUNK = 1 << 20


def _same_content(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            block = fa.read(_CHUNK)
            if block != fb.read(_CHUNK):
                return False
            if not block:
                return True


def _same(low: Entry, up: Entry, keep_owners: bool) -> bool:
    """Whether ``up`` equals ``low`` in all a layer records (a directory's mtime aside)."""
    a, b = low.st, up.st
    if a.st_mode != b.st_mode or (keep_owners and (a.st_uid, a.st_gid) != (b.st_uid, b.st_gid)):
        return False
    kind = stat.S_IFMT(a.st_mode)
    if kind != stat.S_IFDIR and int(a.st_mtime) != int(b.st_mtime):
        return False
    if xattrs(low.path) != xattrs(up.path):
        return False
    if kind == stat.S_IFREG:
        return a.st_size == b.st_size and _same_content(low.path, up.path)
    if kind == stat.S_IFLNK:
        return os.readlink(low.path) == os.readlink(up.path)
    if kind in (stat.S_IFCHR, stat.S_IFBLK):
        return a.st_rdev == b.st_rdev
    return True


def _link_groups(tree: Path) -> dict[str, frozenset[str]]:
    """For each name with several hard links in ``tree``: all names of that inode."""
    inodes: dict[tuple[int, int], list[str]] = {}
    for entry in tree_entries(tree):
        if not stat.S_ISDIR(entry.st.st_mode) and entry.st.st_nlink > 1:
            inodes.setdefault((entry.st.st_dev, entry.st.st_ino), []).append(entry.name)
    return {name: frozenset(names) for names in inodes.values() for name in names}


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _relinked(lower: Path, upper: Path, keep_owners: bool) -> set[str]:
    """Names of ``upper`` whose hard links changed, or that share an inode with a change.

    All names of such an inode go into the layer, so links survive the round trip.
    """
    ups, lows = _link_groups(upper), _link_groups(lower)
    dirty: set[str] = set()
    for name in ups.keys() | lows.keys():
        if _lstat(upper / name) is None:
            continue
        now = ups.get(name, frozenset([name]))
        before = frozenset(m for m in lows.get(name, [name]) if _lstat(upper / m) is not None)
        if now != before:
            dirty |= now
    for group in set(ups.values()) - {ups[n] for n in dirty if n in ups}:
        for name in group:
            st = _lstat(lower / name)
            low, up = Entry(name, lower / name, st), Entry(name, upper / name, _lstat(upper / name))
            if st is None or not _same(low, up, keep_owners):
                dirty |= group
                break
    return dirty


def diff_entries(lower: Path, upper: Path, *, keep_owners: bool = False) -> Iterator[Entry]:
    """The entries of a layer that turns snapshot ``lower`` into snapshot ``upper``.

    Changed and added entries come with their parent directories; a deletion becomes a
    whiteout; a directory none of whose lower children survive becomes opaque. Entries
    are compared by type, mode, owner (with ``keep_owners``), xattrs, mtime in whole
    seconds (not for directories: theirs change with their content) and content.
    """
    lower, upper = Path(lower), Path(upper)
    dirty = _relinked(lower, upper, keep_owners)
    yield from _diff_dir(lower, upper, "", True, [], dirty, keep_owners)


def _emit(pending: list[Entry], entry: Entry) -> Iterator[Entry]:
    yield from pending
    pending.clear()
    yield entry


def _diff_dir(
    lower: Path,
    upper: Path,
    rel: str,
    has_lower: bool,
    pending: list[Entry],
    dirty: set[str],
    keep_owners: bool,
) -> Iterator[Entry]:
    ups = list(children(upper / rel, rel))
    lows = {e.name: e for e in children(lower / rel, rel)} if has_lower else {}
    if lows and not lows.keys() & {e.name for e in ups}:  # replaced wholesale
        yield from _emit(pending, Entry(opaque_name(rel)))
        lows = {}
    names = {e.name for e in ups}
    for name in sorted(lows.keys() - names, key=sort_key):
        yield from _emit(pending, Entry(whiteout_name(name)))
    for up in ups:
        low = lows.get(up.name)
        is_dir = stat.S_ISDIR(up.st.st_mode)
        if is_dir and low is not None and stat.S_ISDIR(low.st.st_mode):
            if _same(low, up, keep_owners):
                pending.append(up)
            else:
                yield from _emit(pending, up)
            yield from _diff_dir(lower, upper, up.name, True, pending, dirty, keep_owners)
            if pending and pending[-1] is up:
                pending.pop()
        elif is_dir:
            yield from _emit(pending, up)
            yield from _diff_dir(lower, upper, up.name, False, pending, dirty, keep_owners)
        elif low is None or up.name in dirty or not _same(low, up, keep_owners):
            yield from _emit(pending, up)


def diff_layer(
    lower: Path, upper: Path, out: Path | BinaryIO, *, compression: str = GZIP, **kw: object
) -> LayerInfo:
    """Write the layer that turns directory ``lower`` into directory ``upper``.

    ``kw`` are :func:`~hardway.image.layers.write_entries`' options.

    >>> import io, tempfile; tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name)
    >>> (d / "lower").mkdir(); (d / "upper").mkdir(); (d / "upper" / "new").touch()
    >>> out = io.BytesIO(); info = diff_layer(d / "lower", d / "upper", out, compression="none")
    >>> import tarfile; tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    ['new']
    >>> tmp.cleanup()
    """
    for tree in (lower, upper):
        if not Path(tree).is_dir():
            raise LayerError(f"{tree} is not a directory", fix="diff_layer compares two trees")
    keep = bool(kw.get("keep_owners", False))
    return write_entries(
        diff_entries(lower, upper, keep_owners=keep), out, compression=compression, **kw
    )
