"""hardway.build.copyplan
~~~~~~~~~~~~~~~~~~~~~~

What a ``COPY`` copies, decided before anything is copied. Its sources are names in the
build context (or, with ``--from``, in an earlier stage's root filesystem), matched and
resolved *inside* that root (:mod:`hardway.build.inroot`); Docker's rules then say where
each one goes (:func:`copy_plan`). What they are — names, modes, link targets and bytes,
never times or owners — is hashed into the step's cache key (:func:`tree_hash`,
:func:`copy_content`), so a changed file misses the cache from its ``COPY`` on.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hardway.build import inroot
from hardway.errors import BuildError

__all__ = ["CopyItem", "copy_content", "copy_plan", "is_archive", "tree_hash"]


@dataclass(frozen=True)
class CopyItem:
    """One source of a ``COPY``: the file or directory on this machine, and where it
    goes in the image (a directory's *contents* go into ``dest``)."""

    source: str
    dest: str
    is_dir: bool
    #: the name the copy gets in an existing directory (the source's, not its link target's)
    name: str = ""
    #: ``ADD`` of a tar archive: unpack it into ``dest`` instead of copying it
    unpack: bool = False


def copy_plan(
    root: Path, sources: Sequence[str], dest: str, workdir: str, *, where: str
) -> list[CopyItem]:
    """Docker's ``COPY`` rules, decided before anything is copied.

    Sources are relative to *root* (the build context, or a stage's root filesystem)
    and may not leave it — not with ``..``, nor through a symlink: links are followed
    *inside* *root*, as if it were ``/``; wildcards match; a directory's contents are
    copied, not the directory; several sources need a destination ending in ``/``; a
    destination ending in ``/`` (or a directory) gets the source's base name; a relative
    destination is relative to ``WORKDIR``.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("a.txt", "b.txt"): (root / name).touch()
    >>> [(i.dest, i.name) for i in copy_plan(root, ["*.txt"], "/docs/", "/app", where="here")]
    [('/docs/a.txt', 'a.txt'), ('/docs/b.txt', 'b.txt')]
    >>> [i.dest for i in copy_plan(root, ["a.txt"], "x", "/app", where="here")]
    ['/app/x']
    >>> import shutil; shutil.rmtree(root)
    """
    if not dest.startswith("/"):
        dest = os.path.join(workdir or "/", dest) + ("/" if dest.endswith("/") else "")
    matched: list[tuple[str, str]] = []  # (name as written, resolved inside root)
    for source in sources:
        clean = os.path.normpath("/" + source).lstrip("/") or "."
        if os.path.normpath(source).split("/")[0] == ".." and not source.startswith("/"):
            raise BuildError(f"COPY {source}: outside {where}", fix="copy files inside it")
        hits = inroot.glob(root, clean) or [clean]
        found = [(hit, real) for hit in hits if (real := inroot.lookup(root, hit))]
        if not found:
            raise BuildError(
                f"COPY failed: {source!r} not found in {where}",
                fix="check the name (it is relative to the context directory, and a "
                "symlink is followed inside it, never out of it)",
            )
        matched += found
    if len(matched) > 1 and not dest.endswith("/"):
        raise BuildError(
            f"COPY with several sources ({', '.join(m[0] for m in matched)}) needs a "
            "directory as the destination, ending in /",
            fix=f"write {dest}/",
        )
    items = []
    for name, path in matched:
        is_dir = os.path.isdir(path)
        target = dest
        if not is_dir and dest.endswith("/"):
            target = os.path.join(dest, os.path.basename(name))
        items.append(CopyItem(path, target, is_dir, os.path.basename(name)))
    return items


def tree_hash(path: Path, follow: bool = True) -> str:
    """sha256 over names, modes, link targets and contents below *path* (a file or a
    directory): what ``COPY`` copies, and nothing it does not (no times, no owners)."""
    digest = hashlib.sha256()
    top = os.stat(path) if follow else os.lstat(path)
    items = [("", path, top)]
    while items:
        name, where, st = items.pop()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            digest.update(f"l {name} {os.readlink(where)}\n".encode())
        elif stat.S_ISDIR(st.st_mode):
            digest.update(f"d {name} {mode:o}\n".encode())
            for child in sorted(os.listdir(where), reverse=True):
                sub = os.path.join(where, child)
                items.append((f"{name}/{child}", sub, os.lstat(sub)))
        elif stat.S_ISREG(st.st_mode):
            with open(where, "rb") as fh:
                content = hashlib.file_digest(fh, "sha256").hexdigest()
            digest.update(f"f {name} {mode:o} {content}\n".encode())
        else:
            digest.update(f"o {name} {mode:o}\n".encode())
    return digest.hexdigest()


def copy_content(items: Sequence[CopyItem]) -> str:
    """What a ``COPY`` of *items* puts in its cache key: ``file:`` or ``dir:`` and a hash
    of each item's :func:`tree_hash` and destination (and, for a file copied to a
    destination that may be a directory, the name it lands under there)."""
    hashes = [f"{tree_hash(Path(i.source))} {i.dest} {int(i.is_dir)}" for i in items]
    hashes += [f"unpack {i.dest}" for i in items if i.unpack]
    hashes += [f"name {i.name}" for i in items if _may_rename(i)]
    content = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    return f"{'dir' if any(i.is_dir for i in items) else 'file'}:{content}"


def _may_rename(item: CopyItem) -> bool:
    """Whether the name *item* gets depends on its source's name (``COPY a.txt /dir``)."""
    return not item.is_dir and item.name != os.path.basename(item.dest)


def is_archive(item: CopyItem) -> bool:
    """Whether *item* is a tar archive, plain or compressed, which ``ADD`` unpacks (by its
    content, as Docker decides, never by its name)."""
    if item.is_dir:
        return False
    try:
        return tarfile.is_tarfile(item.source)
    except (OSError, EOFError, tarfile.TarError):  # a damaged compressed file: not a tar
        return False
