"""hardway.build.cache
~~~~~~~~~~~~~~~~~~~

A local build cache in the shape of Jib's: layer blobs stored by digest, and
*selectors* that map "the inputs of a layer" to "the layer built from them"::

    ROOT/blobs/sha256/ab/ab12…ef      a blob (usually a compressed layer), named by digest
    ROOT/selectors/9f/9f3c…01         JSON: which layer these inputs gave (digest, diff_id…)
    ROOT/tmp/.tmp-<pid>-…             blobs being written (never read from)
    ROOT/lock                         flock: builds share it, :meth:`Cache.prune` takes it alone

A builder hashes what goes into a layer — file names, sizes, mtimes, modes; a
Dockerfile step's parent and text — into a **key** (:func:`key_of`), asks
:meth:`Cache.get_selector` for it, and on a hit uses the cached blob without building
anything. On a miss it builds the layer straight into the cache
(:meth:`Cache.write_layer`, or :meth:`Cache.blob_writer` for any stream) and records
the selector (:meth:`Cache.put_selector`). The two-level directories (``ab/``) keep
any one directory small, as git's objects do.

Every write is atomic (:mod:`hardway.sys.atomic`): a blob is written to ``tmp/``, flushed
to disk, checked against its digest and size, and only then renamed into ``blobs/``.
So a reader never sees half a blob, ``Ctrl-C`` leaves nothing behind, and two builds
writing the same blob or selector at once both succeed (the bytes are the same). A
selector whose blob is gone is a miss, not an error. A ``SIGKILL`` mid-write leaves a
temporary file that :meth:`Cache.clean` (and :meth:`Cache.prune`) removes once its
writer is dead.

Use bumps an entry's mtime (``os.utime``), and :meth:`Cache.prune` removes the least
recently used blobs, and the selectors that point at them, until the cache fits.

Quick use::

    cache = Cache()                                   # HARDWAY_CACHE_DIR or .state/cache
    key = key_of({"files": [...], "compression": "gzip"})
    hit = cache.get_selector(key)                     # Selector | None
    if hit is None:
        info = cache.write_layer(tree_entries(src))   # tar → gzip → sha256 → cache
        hit = cache.put_selector(key, info)
    layer = cache.layer(hit.layer, fmt="oci")         # a BlobLayer reading the cache
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from hardway.errors import BadDigestError, DigestMismatchError, ImageNotFoundError
from hardway.image.blobs import BlobLayer, VerifyingReader
from hardway.image.descriptor import Descriptor
from hardway.image.digest import Digest, parse_digest
from hardway.image.entries import Entry
from hardway.image.jsondoc import canonical_json
from hardway.image.layers import LayerInfo, write_entries
from hardway.sys.atomic import PREFIX, stale, temporary_file, write_atomic
from hardway.sys.state import state_dir

__all__ = [
    "BlobWriter",
    "Cache",
    "PruneResult",
    "Selector",
    "Usage",
    "default_root",
    "key_of",
]

_KEY = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def default_root() -> Path:
    """``HARDWAY_CACHE_DIR``, else ``cache/`` in the state directory (``.state/cache``)."""
    if env := os.environ.get("HARDWAY_CACHE_DIR"):
        return Path(env)
    return state_dir() / "cache"


def key_of(inputs: Any) -> str:
    """A selector key: the sha256 (hex) of ``inputs`` as canonical JSON.

    Put in everything that changes the layer's bytes and nothing that does not; JSON
    with sorted keys makes the key independent of dict order.

    >>> key_of({"b": 1, "a": 2}) == key_of({"a": 2, "b": 1})
    True
    >>> key_of(["x"])[:12]
    'cd65ea2c2ad9'
    """
    return hashlib.sha256(canonical_json(inputs)).hexdigest()


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise BadDigestError(
            f"{key!r} is not a selector key (64 lowercase hex digits)",
            fix="make keys with hardway.build.cache.key_of(...)",
        )
    return key


def _touch(path: Path) -> None:
    """Mark ``path`` used now (mtime is the LRU clock; atime is often not kept)."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(path)


@dataclass(frozen=True)
class Selector:
    """A cache hit: the layer the key's inputs gave, plus the caller's own notes.

    ``layer`` has everything a manifest and a config need (digest, diff_id, size,
    compression); ``annotations`` is free-form string data the builder stored with it
    (e.g. a Dockerfile step's text, to print ``---> Using cache``).
    """

    key: str
    layer: LayerInfo
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return canonical_json(
            {
                "key": self.key,
                "digest": str(self.layer.digest),
                "diff_id": str(self.layer.diff_id),
                "size": self.layer.size,
                "compression": self.layer.compression,
                "codec": self.layer.codec,
                "annotations": dict(self.annotations),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Selector:
        doc = json.loads(raw)
        info = LayerInfo(
            parse_digest(doc["digest"]),
            parse_digest(doc["diff_id"]),
            int(doc["size"]),
            str(doc["compression"]),
            str(doc.get("codec", "")),
        )
        return cls(_check_key(doc["key"]), info, dict(doc.get("annotations") or {}))


@dataclass(frozen=True)
class Usage:
    """What the cache holds: ``bytes`` counts blobs only (selectors are a few hundred
    bytes each)."""

    blobs: int
    bytes: int
    selectors: int


@dataclass(frozen=True)
class PruneResult:
    """What :meth:`Cache.prune` removed, oldest first, and what is left."""

    removed: tuple[Digest, ...]
    freed: int
    selectors_removed: int
    usage: Usage


class BlobWriter:
    """A file-like sink that hashes and counts what is written (see :meth:`Cache.blob_writer`).

    After the ``with`` block: :attr:`digest`, :attr:`size` and :attr:`path` (the blob
    in the cache).
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0
        self.path: Path | None = None

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._out.flush()

    @property
    def digest(self) -> Digest:
        return Digest("sha256", self._hash.hexdigest())


class Cache:
    """A Jib-style layer cache in ``root`` (default :func:`default_root`).

    Safe to share between processes: writes are atomic renames, reads verify digests.
    Nothing is created until first written.
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def __repr__(self) -> str:
        return f"<Cache {self.root}>"

    # --- paths ------------------------------------------------------------------------------

    def blob_path(self, digest: Digest | str) -> Path:
        """``ROOT/blobs/<alg>/<2 hex>/<hex>`` (whether or not the blob is there).

        >>> Cache("/c").blob_path("sha256:" + "ab" * 32).relative_to("/c").parts[:3]
        ('blobs', 'sha256', 'ab')
        """
        digest = parse_digest(str(digest))
        return self.root / "blobs" / digest.algorithm / digest.encoded[:2] / digest.encoded

    def selector_path(self, key: str) -> Path:
        """``ROOT/selectors/<2 hex>/<key>``."""
        key = _check_key(key)
        return self.root / "selectors" / key[:2] / key

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    # --- blobs ------------------------------------------------------------------------------

    def has_blob(self, digest: Digest | str, size: int | None = None) -> bool:
        """Whether the blob is cached (with ``size``: and has that size)."""
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def open_blob(self, digest: Digest | str, size: int | None = None) -> VerifyingReader:
        """A cached blob, verified against its digest (and ``size``) as it is read.

        Raises :class:`~hardway.errors.ImageNotFoundError` when it is not cached.
        """
        digest = parse_digest(str(digest))
        path = self.blob_path(digest)
        try:
            stream = path.open("rb")
        except FileNotFoundError:
            raise ImageNotFoundError(
                f"blob {digest} is not in the cache at {self.root}",
                fix="build the layer again (a pruned cache forgets blobs)",
            ) from None
        _touch(path)
        return VerifyingReader(stream, digest, size)

    @contextlib.contextmanager
    def blob_writer(
        self, digest: Digest | str | None = None, size: int | None = None
    ) -> Iterator[BlobWriter]:
        """Write a blob atomically: ``with cache.blob_writer() as w: w.write(…)``.

        The bytes go to a temporary file in ``ROOT/tmp``; when the block ends they are
        fsynced, hashed (and checked against ``digest``/``size`` if given) and renamed
        to :meth:`blob_path`. An exception, ``Ctrl-C`` or a mismatch removes the
        temporary file and stores nothing. If the blob was already there, the new copy
        is dropped (the bytes are the same) and the old one marked used.
        """
        want = parse_digest(str(digest)) if digest is not None else None
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        with temporary_file(self.tmp_dir) as (tmp, out):
            writer = BlobWriter(out)
            yield writer
            out.flush()
            os.fsync(out.fileno())
            got = writer.digest
            if (want is not None and got != want) or (size is not None and writer.size != size):
                raise DigestMismatchError(
                    f"a blob written to the cache is {writer.size} bytes hashing to "
                    f"{str(got)[:19]}…, but {size} bytes with digest {want} were expected",
                    fix="the source is corrupt or changed while it was read: try again",
                )
            final = self.blob_path(got)
            if final.is_file() and final.stat().st_size == writer.size:
                _touch(final)
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o644)
                os.replace(tmp, final)
            writer.path = final

    def put_stream(
        self, stream: BinaryIO, digest: Digest | str | None = None, size: int | None = None
    ) -> Descriptor:
        """Copy ``stream`` into the cache (verified when ``digest`` is given).

        Returns a descriptor with an empty media type: the caller knows what it is.
        """
        if digest is not None and self.has_blob(digest, size):
            _touch(self.blob_path(digest))
            return Descriptor("", parse_digest(str(digest)), self.blob_path(digest).stat().st_size)
        with self.blob_writer(digest, size) as writer:
            while block := stream.read(_CHUNK):
                writer.write(block)
        return Descriptor("", writer.digest, writer.size)

    def put_bytes(self, data: bytes) -> Descriptor:
        """Store a small blob (a config, a manifest)."""
        return self.put_stream(io.BytesIO(data))

    def write_layer(self, entries: Iterable[Entry], **options: Any) -> LayerInfo:
        """Tar, compress and hash ``entries`` straight into the cache, in one pass.

        ``options`` are :func:`hardway.image.layers.write_entries`' (``compression``,
        ``level``, ``implementation``, ``source_date_epoch``, ``keep_owners``). Only
        the compressed bytes touch the disk; the diff_id is computed on the way.
        """
        with self.blob_writer() as writer:
            info = write_entries(entries, writer, **options)  # type: ignore[arg-type]
        if (info.digest, info.size) != (writer.digest, writer.size):  # pragma: no cover
            raise DigestMismatchError(f"layer {info.digest}: the cache stored {writer.digest}")
        return info

    def layer(self, info: LayerInfo, fmt: str = "oci") -> BlobLayer:
        """A :class:`~hardway.image.blobs.BlobLayer` reading the cached blob of ``info``.

        Put it in an image with :func:`hardway.image.mutate.append_layers`; pushing or
        writing that image streams the blob from the cache, verified.
        """
        if not self.has_blob(info.digest, info.size):
            raise ImageNotFoundError(f"layer {info.digest} is not in the cache at {self.root}")
        descriptor = Descriptor(info.media_type(fmt), info.digest, info.size)
        return BlobLayer(descriptor, info.diff_id, self._open_raw)

    def _open_raw(self, digest: Digest) -> BinaryIO:
        """An :data:`~hardway.image.blobs.Opener` (the BlobLayer verifies)."""
        path = self.blob_path(digest)
        try:
            stream = path.open("rb")
        except FileNotFoundError:
            raise ImageNotFoundError(f"blob {digest} is not in the cache at {self.root}") from None
        _touch(path)
        return stream

    # --- selectors --------------------------------------------------------------------------

    def put_selector(
        self, key: str, layer: LayerInfo, annotations: Mapping[str, str] | None = None
    ) -> Selector:
        """Record that inputs ``key`` gave ``layer`` (whose blob must be cached already:
        blob first, selector second, so a selector never names a blob not yet there)."""
        if not self.has_blob(layer.digest, layer.size):
            raise ImageNotFoundError(
                f"cannot record selector {key[:12]}…: blob {layer.digest} is not cached",
                fix="write the blob first (Cache.write_layer or Cache.blob_writer)",
            )
        selector = Selector(_check_key(key), layer, dict(annotations or {}))
        path = self.selector_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, selector.to_json())
        return selector

    def get_selector(self, key: str) -> Selector | None:
        """The cached layer for ``key``, or ``None`` (a miss).

        A selector whose blob was pruned (or is the wrong size), or that cannot be
        parsed, is a miss too. A hit marks both the selector and the blob used.
        """
        path = self.selector_path(key)
        try:
            selector = Selector.from_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None
        if selector.key != key or not self.has_blob(selector.layer.digest, selector.layer.size):
            return None
        _touch(path)
        _touch(self.blob_path(selector.layer.digest))
        return selector

    # --- housekeeping -----------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, exclusive: bool = False) -> Iterator[None]:
        """Hold ``ROOT/lock``: builds take it shared, :meth:`prune` exclusive, so a prune
        never removes a blob from under a build in progress."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _blobs(self) -> list[tuple[float, str, Path, int]]:
        """``(mtime, name, path, size)`` of every blob."""
        found = []
        top = self.root / "blobs"
        if not top.is_dir():
            return found
        for path in top.glob("*/*/*"):
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                found.append((st.st_mtime, path.name, path, st.st_size))
        return found

    def _selectors(self, *, temporary: bool = False) -> list[Path]:
        """Selector files (or, with ``temporary``, selectors being written: ``.tmp-*``)."""
        top = self.root / "selectors"
        found = sorted(top.glob("*/*")) if top.is_dir() else []
        return [p for p in found if p.name.startswith(PREFIX) == temporary]

    def usage(self) -> Usage:
        """How many blobs (and bytes) and selectors the cache holds."""
        blobs = self._blobs()
        return Usage(len(blobs), sum(b[3] for b in blobs), len(self._selectors()))

    def clean(self) -> int:
        """Remove temporary files whose writer is dead (a ``SIGKILL`` mid-write) and
        selectors whose blob is gone; return how many files went."""
        removed = 0
        leftovers = list(self.tmp_dir.iterdir()) if self.tmp_dir.is_dir() else []
        for path in leftovers + self._selectors(temporary=True):
            if stale(path):
                path.unlink(missing_ok=True)
                removed += 1
        for path in self._selectors():
            try:
                selector = Selector.from_json(path.read_bytes())
                dangling = not self.has_blob(selector.layer.digest)
            except (ValueError, KeyError, TypeError):
                dangling = True
            except FileNotFoundError:
                continue
            if dangling:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def prune(self, max_bytes: int) -> PruneResult:
        """Remove least recently used blobs until the blobs total at most ``max_bytes``,
        then the selectors that named them (and stale temporary files)."""
        with self.lock(exclusive=True):
            blobs = sorted(self._blobs())  # oldest use first (ties: by digest)
            total = sum(b[3] for b in blobs)
            removed: list[Digest] = []
            freed = 0
            for _mtime, name, path, size in blobs:
                if total <= max_bytes:
                    break
                path.unlink(missing_ok=True)
                removed.append(Digest(path.parent.parent.name, name))
                total -= size
                freed += size
            before = len(self._selectors())
            self.clean()
            dropped = before - len(self._selectors())
            return PruneResult(tuple(removed), freed, dropped, self.usage())


# --- command line ---------------------------------------------------------------------------


def _size(text: str) -> int:
    from hardway.sys.sizes import parse_size

    return parse_size(text)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cache", help="the local layer cache (chapter 09)")
    parser.add_argument("--dir", type=Path, help="cache directory (default: HARDWAY_CACHE_DIR)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("usage", help="blobs, bytes and selectors held").set_defaults(func=_usage)
    prune = verbs.add_parser("prune", help="remove least recently used blobs")
    prune.add_argument("--max-size", type=_size, required=True, help="keep at most this (e.g. 1G)")
    prune.set_defaults(func=_prune)
    verbs.add_parser("clean", help="remove leftovers of killed writers").set_defaults(func=_clean)


def _usage(args: argparse.Namespace) -> int:
    usage = Cache(args.dir).usage()
    print(f"{usage.blobs} blobs, {usage.bytes} bytes, {usage.selectors} selectors")
    return 0


def _prune(args: argparse.Namespace) -> int:
    result = Cache(args.dir).prune(args.max_size)
    left = result.usage
    print(
        f"removed {len(result.removed)} blobs ({result.freed} bytes) and "
        f"{result.selectors_removed} selectors; {left.blobs} blobs, {left.bytes} bytes left"
    )
    return 0


def _clean(args: argparse.Namespace) -> int:
    print(f"removed {Cache(args.dir).clean()} leftover files")
    return 0
