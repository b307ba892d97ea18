"""hardway.build.builder
~~~~~~~~~~~~~~~~~~~~~

An efficient image builder in the manner of Jib: an image is a base image plus a list
of **layer sources** — dependencies, resources, application code — each becoming one
layer. The ones that change least go first, so a change to one file rebuilds, and
re-uploads, one small layer::

    LayerSource("dependencies", project / "lib", "/app/lib")        changes rarely
    LayerSource("resources",    project / "static", "/app/static")  sometimes
    LayerSource("app",          project / "src", "/app/src")        on every edit

For each source the builder reads only *metadata* (names, types, sizes, mtimes, modes,
link targets) and hashes it, with every setting that changes the layer's bytes
(compression, level and library, ``SOURCE_DATE_EPOCH``, destination), into a selector
key (:func:`selector_key`). If the cache (:mod:`hardway.build.cache`) knows the key, the
cached layer is used and not one byte of file content is read. Otherwise the layer is
streamed — tar → compress → hash — straight into the cache in one pass.

Like Jib (and make), a content change that keeps a file's size and mtime is not seen:
``touch`` the file, or build with a fresh cache. The layers themselves are
reproducible: entries sorted, owners 0, mtimes clamped to ``SOURCE_DATE_EPOCH``, and
the destination's parent directories made up with fixed metadata, so the same inputs
give the same digests on any machine with the same compressor.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hardway.build.cache import Cache, key_of
from hardway.build.result import BuildResult
from hardway.errors import LayerError
from hardway.image.compression import GZIP, choose_codec
from hardway.image.config import History
from hardway.image.digest import Digest
from hardway.image.entries import Entry, tree_entries
from hardway.image.layers import source_epoch
from hardway.image.mutate import append_layers, configure, convert, empty_image, timestamp
from hardway.image.protocols import Image

__all__ = [
    "LayerBuildResult",
    "LayerReport",
    "LayerSource",
    "Settings",
    "build",
    "selector_key",
    "source_entries",
]

#: part of every key: bump it when the way layers are written changes
SCHEMA = "hardway-builder/1"
#: the made-up parent directories of a destination: root's, mode 0755, mtime 0
_DIR_STAT = os.stat_result((stat.S_IFDIR | 0o755, 0, 0, 1, 0, 0, 0, 0, 0, 0))


@dataclass(frozen=True)
class LayerSource:
    """Files that become one layer: ``src`` (a directory's contents, or one file) placed
    under the image directory ``dest``."""

    name: str
    src: Path
    dest: str = "/"

    def __post_init__(self) -> None:
        dest = PurePosixPath(self.dest)
        if not dest.is_absolute() or ".." in dest.parts:
            raise LayerError(
                f"layer source {self.name!r}: destination {self.dest!r} must be an absolute "
                "path without '..'",
                fix='use a path like "/app/lib"',
            )
        object.__setattr__(self, "src", Path(self.src))


@dataclass(frozen=True)
class Settings:
    """What changes a layer's bytes besides its files (so it is part of every key)."""

    compression: str = GZIP
    level: int | None = None
    implementation: str | None = None
    #: clamp mtimes (and date the image) to this; ``None``: the environment variable
    source_date_epoch: int | None = None
    keep_owners: bool = False

    def epoch(self) -> int | None:
        return source_epoch(self.source_date_epoch)


@dataclass(frozen=True)
class LayerReport:
    """How one layer was made: from the cache (``cached``) or built, and what it cost."""

    name: str
    digest: Digest
    size: int
    cached: bool
    files: int  # entries in the layer (files, directories, links)
    bytes_read: int  # file content read from disk (0 on a cache hit)
    bytes_written: int  # compressed bytes written to the cache (0 on a cache hit)

    @property
    def ran(self) -> bool:
        """The layer was built (not taken from the cache)."""
        return not self.cached


@dataclass(frozen=True)
class LayerBuildResult(BuildResult[LayerReport]):
    """A :class:`~hardway.build.result.BuildResult` with a report per layer source, which
    also says what the build read and wrote."""

    @property
    def bytes_read(self) -> int:
        return sum(layer.bytes_read for layer in self.reports)

    @property
    def bytes_written(self) -> int:
        return sum(layer.bytes_written for layer in self.reports)

    def table(self) -> str:
        """One line per layer: ``name  cached|built  read  written  digest``."""
        lines = []
        for r in self.reports:
            how = "cached" if r.cached else "built"
            lines.append(
                f"{r.name:<14} {how:<6} read {r.bytes_read:>9} B  written "
                f"{r.bytes_written:>9} B  {str(r.digest)[:19]}"
            )
        return "\n".join(lines)


def _parents(dest: str) -> list[str]:
    """``"/app/lib"`` → ``["app", "app/lib"]``."""
    parts = PurePosixPath(dest).parts[1:]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def source_entries(source: LayerSource) -> Iterator[Entry]:
    """The entries of ``source``'s layer, in order: the destination's directories (made
    up, so they never depend on the host), then ``src`` below them."""
    src = source.src
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        raise LayerError(
            f"layer source {source.name!r}: {src} does not exist", fix="check the path"
        ) from None
    parents = _parents(source.dest)
    for name in parents:
        yield Entry(name, None, _DIR_STAT)
    prefix = parents[-1] if parents else ""
    if not stat.S_ISDIR(st.st_mode):
        yield Entry(f"{prefix}/{src.name}" if prefix else src.name, src, st)
        return
    for entry in tree_entries(src):
        yield Entry(f"{prefix}/{entry.name}" if prefix else entry.name, entry.path, entry.st)


def _metadata(entry: Entry, first_link: str | None, keep_owners: bool) -> list[Any]:
    st = entry.st
    kind = stat.S_IFMT(st.st_mode)
    row: list[Any] = [entry.name, st.st_mode]
    if entry.path is None:  # a made-up directory: fixed metadata
        return row
    if kind == stat.S_IFREG:
        row += [st.st_size, st.st_mtime_ns]
    elif kind == stat.S_IFLNK:
        row += [os.readlink(entry.path), st.st_mtime_ns]
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        row += [st.st_rdev, st.st_mtime_ns]
    else:
        row += [st.st_mtime_ns]
    if first_link is not None:
        row.append(["hardlink", first_link])
    if keep_owners:
        row += [st.st_uid, st.st_gid]
    return row


def selector_key(entries: Sequence[Entry], dest: str, settings: Settings) -> str:
    """The cache key of a layer: its entries' metadata plus the settings that change its
    bytes. Reads no file content (only ``lstat`` results and link targets)."""
    codec = choose_codec(settings.compression, settings.level, settings.implementation)
    links: dict[tuple[int, int], str] = {}
    rows = []
    for entry in entries:
        st = entry.st
        first = None
        if entry.path is not None and not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            first = links.setdefault((st.st_dev, st.st_ino), entry.name)
        rows.append(_metadata(entry, first, settings.keep_owners))
    return key_of(
        {
            "schema": SCHEMA,
            "dest": dest,
            "codec": str(codec),
            "source_date_epoch": settings.epoch(),
            "keep_owners": settings.keep_owners,
            "entries": rows,
        }
    )


def _content_bytes(entries: Sequence[Entry]) -> int:
    """The file bytes a tar of ``entries`` reads (each hard-linked inode once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for entry in entries:
        st = entry.st
        inode = (st.st_dev, st.st_ino)
        if entry.path is not None and stat.S_ISREG(st.st_mode) and inode not in seen:
            seen.add(inode)
            total += st.st_size
    return total


def build_layer(
    cache: Cache, source: LayerSource, settings: Settings = Settings()
) -> tuple[LayerReport, Any]:
    """One source's layer, from the cache or built into it: ``(report, LayerInfo)``."""
    entries = list(source_entries(source))
    key = selector_key(entries, source.dest, settings)
    hit = cache.get_selector(key)
    if hit is not None:
        info = hit.layer
        return LayerReport(source.name, info.digest, info.size, True, len(entries), 0, 0), info
    info = cache.write_layer(
        entries,
        compression=settings.compression,
        level=settings.level,
        implementation=settings.implementation,
        source_date_epoch=settings.epoch(),
        keep_owners=settings.keep_owners,
    )
    cache.put_selector(key, info, {"source": source.name, "dest": source.dest})
    read = _content_bytes(entries)
    report = LayerReport(source.name, info.digest, info.size, False, len(entries), read, info.size)
    return report, info


def build(
    sources: Sequence[LayerSource],
    *,
    base: Image | None = None,
    cache: Cache | None = None,
    settings: Settings = Settings(),
    fmt: str = "oci",
    **config: Any,
) -> LayerBuildResult:
    """Build ``base`` (default: nothing, ``FROM scratch``) plus one layer per source.

    ``config`` is :func:`hardway.image.mutate.configure`'s (``entrypoint``, ``cmd``, ``env``,
    ``working_dir``, ``user``, ``labels``…). The image's layers read the cache: keep
    it (do not prune it) until the image is pushed or written.
    """
    cache = cache if cache is not None else Cache()
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise LayerError(f"layer source names must be unique: {names}")
    created = timestamp(settings.epoch())
    reports, layers, history = [], [], []
    with cache.lock():
        for source in sources:
            report, info = build_layer(cache, source, settings)
            reports.append(report)
            layers.append(cache.layer(info, fmt))
            history.append(
                History(created=created, created_by=f"hardway build: {source.name} {source.dest}")
            )
    image: Image = empty_image(fmt=fmt) if base is None else convert(base, fmt)
    image = append_layers(image, layers, history=history)
    return LayerBuildResult(configure(image, created=created, **config), tuple(reports))
