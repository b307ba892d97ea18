"""hardway.image.overlay
~~~~~~~~~~~~~~~~~~~~~~

A container engine does not diff two snapshots to find what a build step changed: it
runs the step on an overlayfs mount, and the mount's *upper directory* holds exactly the
changes. Only deletions are spelled differently: overlayfs records a deleted file as a
character device 0/0 and a directory replaced wholesale by the xattr
``trusted.overlay.opaque=y`` (``user.overlay.opaque`` when mounted with ``userxattr``).
:func:`overlay_entries` reads an upper directory as a layer's entries, turning those into
``.wh.`` whiteouts and ``.wh..wh..opq`` markers (:mod:`hardway.image.whiteouts`);
:func:`overlay_layer` writes them (``python -m hardway layer overlay``).

Renamed directories (``redirect_dir``) and metadata-only copies (``metacopy``) point
into the lower layers instead of holding the files, so they cannot become a layer and
are refused: mount with both off.

>>> import tempfile; tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name)
>>> (d / "etc").mkdir(); (d / "etc" / "motd").touch()
>>> [e.name for e in overlay_entries(d)]
['etc', 'etc/motd']
>>> tmp.cleanup()
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from hardway.errors import LayerError
from hardway.image.entries import Entry, children, tree_entries
from hardway.image.layers import LayerInfo, write_entries
from hardway.image.whiteouts import opaque_name, whiteout_name

__all__ = ["overlay_entries", "overlay_layer"]

_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_UNSUPPORTED_XATTRS = ("redirect", "metacopy")


def _overlay_xattr(path: str | Path, names: Iterable[str]) -> bytes | None:
    for name in names:
        with contextlib.suppress(OSError):
            return os.getxattr(path, name, follow_symlinks=False)
    return None


def overlay_entries(upper: Path) -> Iterator[Entry]:
    """The OCI entries of an overlayfs upper directory.

    overlayfs records a deletion as a character device 0/0 and a directory replaced
    wholesale by the xattr ``trusted.overlay.opaque=y``; they become ``.wh.`` whiteouts
    and ``.wh..wh..opq`` markers. Renamed directories (``redirect_dir``) and
    metadata-only copies (``metacopy``) point into the lower layers and are refused.
    """
    return tree_entries(Path(upper), _overlay_children)


def _overlay_children(directory: str | Path, prefix: str) -> list[Entry]:
    marks, rest = [], []
    if prefix and _overlay_xattr(directory, _OPAQUE_XATTRS) == b"y":
        marks.append(Entry(opaque_name(prefix)))
    for entry in children(directory, prefix):
        st = entry.st
        for kind in _UNSUPPORTED_XATTRS:
            if _overlay_xattr(entry.path, (f"trusted.overlay.{kind}", f"user.overlay.{kind}")):
                raise LayerError(
                    f"{entry.name}: overlayfs {kind} entries cannot become an OCI layer",
                    fix=f"mount the overlay with {kind}=off",
                )
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            marks.append(Entry(whiteout_name(entry.name)))
        else:
            rest.append(entry)
    return marks + rest


def overlay_layer(upper: Path, out: Path | BinaryIO, **kw: object) -> LayerInfo:
    """Write an overlayfs upper directory as an OCI layer (see :func:`overlay_entries`).

    ``kw`` are :func:`~hardway.image.layers.write_entries`' options.

    >>> import io, tempfile; tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name)
    >>> (d / "new").touch()
    >>> overlay_layer(d, io.BytesIO(), compression="zstd").compression
    'zstd'
    >>> tmp.cleanup()
    """
    return write_entries(overlay_entries(Path(upper)), out, **kw)
