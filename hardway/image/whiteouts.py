"""hardway.image.whiteouts
~~~~~~~~~~~~~~~~~~~~~~~

A layer is a tar of *changes*, and a tar can add files but has no way to say "delete
this one". The OCI image spec (``layer.md``, inherited from AUFS) borrows names for it:

* ``dir/.wh.name`` — a *whiteout*: ``dir/name`` of the lower layers is gone;
* ``dir/.wh..wh..opq`` — an *opaque* marker: every child of ``dir`` from the lower
  layers is gone, and ``dir`` holds only what this layer puts in it.

Whiteouts act on the layers *below* only: an entry that the same layer adds is never
removed by it, whatever the order inside the tar, and the whiteout files themselves
never appear in the unpacked tree. A bare ``.wh.`` (no name) is an error.

This module holds the naming rules and a model of applying a layer to a *set of paths*
(no files at all), which lab 05 builds and :mod:`hardway.image.apply` follows on disk.
"""

from __future__ import annotations

from collections.abc import Iterable

from hardway.errors import UnsafeLayerError

__all__ = [
    "OPAQUE",
    "WHITEOUT_PREFIX",
    "apply_names",
    "is_opaque",
    "opaque_name",
    "whiteout_name",
    "whiteout_target",
    "whiteouts_for",
]

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
#: AUFS's own bookkeeping names (``.wh..wh.plnk``, ``.wh..wh.aufs``): skipped on apply
META_PREFIX = ".wh..wh."


def _split(path: str) -> tuple[str, str]:
    parent, _, base = path.rstrip("/").rpartition("/")
    return parent, base


def _join(parent: str, base: str) -> str:
    return f"{parent}/{base}" if parent else base


def whiteout_name(path: str) -> str:
    """The entry that deletes ``path``: its base name behind ``.wh.``.

    >>> whiteout_name("etc/motd"), whiteout_name("tmp/")
    ('etc/.wh.motd', '.wh.tmp')
    """
    parent, base = _split(path)
    return _join(parent, WHITEOUT_PREFIX + base)


def opaque_name(directory: str) -> str:
    """The entry that hides every lower child of ``directory``.

    >>> opaque_name("var/cache/"), opaque_name("")
    ('var/cache/.wh..wh..opq', '.wh..wh..opq')
    """
    return _join(directory.rstrip("/"), OPAQUE)


def is_opaque(name: str) -> bool:
    """Whether the entry ``name`` is an opaque marker.

    >>> is_opaque("a/.wh..wh..opq"), is_opaque("a/.wh.b")
    (True, False)
    """
    return _split(name)[1] == OPAQUE


def whiteout_target(name: str) -> str | None:
    """The path an entry deletes, or ``None`` if it is not a whiteout (opaque included).

    Raises :class:`~hardway.errors.UnsafeLayerError` for a bare ``.wh.`` and for
    ``.wh..``, which would delete the directory above.

    >>> whiteout_target("etc/.wh.motd"), whiteout_target("etc/motd")
    ('etc/motd', None)
    """
    parent, base = _split(name)
    if not base.startswith(WHITEOUT_PREFIX) or base.startswith(META_PREFIX):
        return None
    target = base[len(WHITEOUT_PREFIX) :]
    if target in ("", ".", ".."):
        problem = f"a whiteout must name a file in its directory, not {target!r}"
        raise UnsafeLayerError(name, problem)
    return _join(parent, target)


def _with_parents(paths: Iterable[str]) -> set[str]:
    """``paths`` (trailing slashes dropped) plus every directory above them."""
    out: set[str] = set()
    for path in paths:
        parts = path.strip("/").split("/")
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)) if parts[0])
    return out


def whiteouts_for(lower: Iterable[str], upper: Iterable[str]) -> list[str]:
    """The fewest whiteouts that delete what ``lower`` has and ``upper`` lacks, sorted.

    A deleted directory needs one whiteout, not one per file in it.

    >>> whiteouts_for({"a/b/c", "a/d", "e"}, {"a/d"})
    ['.wh.e', 'a/.wh.b']
    """
    low, up = _with_parents(lower), _with_parents(upper)
    gone = low - up
    return sorted(whiteout_name(p) for p in gone if _split(p)[0] not in gone)


def apply_names(lower: Iterable[str], layer: Iterable[str]) -> set[str]:
    """The paths present after applying a layer with entries ``layer`` on top of ``lower``.

    A model of the OCI rules on names alone: entries add themselves and their parents,
    ``.wh.x`` removes ``x`` and everything below it, ``.wh..wh..opq`` removes every
    lower path below its directory — but never what this layer adds, in any order.

    >>> sorted(apply_names({"a/x", "a/y", "b"}, ["a/.wh..wh..opq", "a/z", ".wh.b"]))
    ['a', 'a/z']
    """
    tree = _with_parents(lower)
    ours: set[str] = set()
    hidden: list[str] = []  # directories whose lower content goes (opaque) or paths (whiteout)
    for name in layer:
        parent, base = _split(name)
        if base == OPAQUE:
            hidden.append(parent + "/" if parent else "")
        elif (target := whiteout_target(name)) is not None:
            hidden.append(target)
        elif not base.startswith(META_PREFIX):
            ours |= _with_parents([name])
    for gone in hidden:
        tree = {p for p in tree if not _below(p, gone) or p in ours}
    return tree | ours


def _below(path: str, gone: str) -> bool:
    """Whether ``path`` is ``gone`` or under it (``gone`` ending in ``/``: strictly under)."""
    if gone.endswith("/") or gone == "":
        return path.startswith(gone)
    return path == gone or path.startswith(gone + "/")
