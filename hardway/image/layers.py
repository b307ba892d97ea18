"""hardway.image.layers
~~~~~~~~~~~~~~~~~~~~

A layer is a tar archive of a directory tree (or of the changes to one), usually
gzipped, and it has two names. The **digest** is the sha256 of the bytes as stored — the
compressed blob a registry keeps and a manifest lists. The **diff_id** is the sha256 of
the uncompressed tar — what the image config lists in ``rootfs.diff_ids`` and what is
actually unpacked. A registry that receives a manifest whose layer digest is really a
diff_id cannot find that blob and answers ``MANIFEST_BLOB_UNKNOWN`` or
``MANIFEST_INVALID``.

Writing a layer is one pass with constant memory::

    tar writer → sha256 (diff_id) → compressor → sha256 + byte count (digest, size) → file

and it is deterministic, so the same tree gives the same diff_id every time: entries in
sorted order, each directory before what it holds; PAX headers; no user names (a name
means whatever the reading machine's ``/etc/passwd`` says); mtimes clamped to
``SOURCE_DATE_EPOCH`` when it is set (argument or environment variable); hard links as
link entries; symlinks, devices and FIFOs as themselves; sockets skipped (tar cannot
hold them); xattrs as ``SCHILY.xattr.*`` records, minus overlayfs' and SELinux's own.
The compressed digest also depends on the compressor (see
:mod:`hardway.image.compression`).

Owners are not noise but content: a uid is part of what the image holds. By default
every entry gets uid and gid 0, as Docker's ``COPY`` does without ``--chown``, because
the builder's own uid means nothing inside the image; ``keep_owners=True`` keeps the
real ids, as a root filesystem or a change made as root needs.

The tar bytes come from :mod:`hardway.image.tarwriter`, the entries from
:mod:`hardway.image.entries` (a whole tree: :func:`write_layer`), :mod:`hardway.image.diff`
(the difference of two snapshots) or :mod:`hardway.image.overlay` (an overlayfs upper
directory); :mod:`hardway.image.apply` unpacks layers safely.

>>> import io, tempfile; tmp = tempfile.TemporaryDirectory()
>>> info = write_layer(Path(tmp.name), io.BytesIO(), compression="none")
>>> info.size, info.digest == info.diff_id  # an empty tree: 10 KiB of zeros, uncompressed
(10240, True)
>>> tmp.cleanup()
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import stat
import tarfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hardway.errors import InvalidImageError, LayerError
from hardway.image.compression import GZIP, NONE, Codec, choose_codec
from hardway.image.digest import Digest
from hardway.image.entries import Entry, tree_entries
from hardway.image.mediatypes import layer_media_type
from hardway.image.tarwriter import TarWriter, tar_info
from hardway.sys.atomic import temporary_file

__all__ = ["LayerInfo", "source_epoch", "write_entries", "write_layer"]

#: the uncompressed stream is hashed and compressed in chunks this big
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LayerInfo:
    """What a manifest and a config need to know about one layer.

    >>> import io
    >>> info = write_entries([Entry("etc/.wh.motd")], io.BytesIO(), compression="gzip")
    >>> info.compression, info.digest != info.diff_id, info.media_type("docker")
    ('gzip', True, 'application/vnd.docker.image.rootfs.diff.tar.gzip')
    """

    digest: Digest  # sha256 of the bytes as stored (compressed)
    diff_id: Digest  # sha256 of the uncompressed tar
    size: int  # stored (compressed) size in bytes
    compression: str  # GZIP | ZSTD | NONE
    codec: str = ""  # e.g. "gzip (isal 1.9.1, level 1)": what the digest depends on

    def media_type(self, fmt: str = "oci") -> str:
        """The layer's ``mediaType`` in an ``"oci"`` or ``"docker"`` manifest."""
        try:
            return layer_media_type(fmt, self.compression)
        except InvalidImageError:
            raise LayerError(
                f"a {fmt} manifest has no media type for {self.compression} layers",
                fix="use gzip for Docker manifests (zstd needs an OCI manifest)",
            ) from None

    def to_json(self, fmt: str = "oci") -> dict[str, object]:
        return {
            "digest": str(self.digest),
            "diff_id": str(self.diff_id),
            "size": self.size,
            "mediaType": self.media_type(fmt),
            "codec": self.codec,
        }


class _HashingWriter:
    """Hashes and counts what goes through, then hands it on to ``sink``."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sha256, self.size, self._sink = hashlib.sha256(), 0, sink

    def write(self, data: bytes) -> int:
        self.size += len(data)
        self.sha256.update(data)
        self._sink.write(data)
        return len(data)

    @property
    def digest(self) -> Digest:
        return Digest("sha256", self.sha256.hexdigest())


class _Compressing:
    """The tar side of a layer: gathers writes into 1 MiB chunks, hashes them (diff_id),
    and compresses them in a second thread into ``stored`` (digest, size, file).

    Hashing, compressing and tarring overlap: ``hashlib`` and ISA-L release the GIL on
    large buffers, so building a layer keeps two cores busy. A bounded queue keeps the
    memory to a few chunks. Use it as a context manager: leaving it normally flushes the
    compressor; leaving it by an exception stops the thread and writes nothing more.
    """

    def __init__(self, stored: _HashingWriter, codec: Codec) -> None:
        self.sha256, self.size = hashlib.sha256(), 0
        self._stored, self._pending = stored, bytearray()
        self._compressor = codec.compressor()
        self._error: BaseException | None = None
        self._queue: queue.Queue[bytearray | None] | None = None
        self._thread: threading.Thread | None = None
        if codec.compression != NONE:  # copying needs no second thread
            self._queue = queue.Queue(maxsize=4)
            self._thread = threading.Thread(target=self._work, name="layer-compress", daemon=True)

    def __enter__(self) -> _Compressing:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self._drain()  # raises if the thread already failed: stop it all the same
        finally:
            self._stop()
        if kind is None:
            self._raise()
            if rest := self._compressor.flush():
                self._stored.write(rest)

    def write(self, data: bytes | memoryview) -> int:
        self.size += len(data)
        self._pending += data
        if len(self._pending) >= _CHUNK:
            self._drain()
        return len(data)

    def _drain(self) -> None:
        data, self._pending = self._pending, bytearray()
        if not data:
            return
        self.sha256.update(data)
        if self._queue is None:
            self._stored.write(self._compressor.compress(data))
            return
        self._raise()
        self._queue.put(data)

    def _work(self) -> None:
        assert self._queue is not None
        while (data := self._queue.get()) is not None:
            if self._error is not None:
                continue  # failed: keep taking chunks so that the writer never blocks
            try:
                if out := self._compressor.compress(data):
                    self._stored.write(out)
            except BaseException as exc:
                self._error = exc

    def _stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            assert self._queue is not None
            self._queue.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    @property
    def digest(self) -> Digest:
        return Digest("sha256", self.sha256.hexdigest())


def source_epoch(value: int | None = None) -> int | None:
    """``value``, else ``SOURCE_DATE_EPOCH`` from the environment, else ``None``: the
    one reading of the reproducible-builds variable (a bad value is a :class:`LayerError`).

    >>> source_epoch(1700000000)
    1700000000
    """
    if value is not None:
        return int(value)
    text = os.environ.get("SOURCE_DATE_EPOCH")
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise LayerError(f"SOURCE_DATE_EPOCH={text!r} is not a number of seconds")
    return int(text)


@contextlib.contextmanager
def _output(out: Path | BinaryIO) -> Iterator[BinaryIO]:
    """A file to write: ``out`` itself, or a temporary file renamed to ``out`` on success."""
    if not isinstance(out, str | os.PathLike):
        yield out
        return
    out = Path(out)
    with temporary_file(out.parent) as (tmp, fh):
        yield fh
        fh.flush()
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)


def write_entries(
    entries: Iterable[Entry],
    out: Path | BinaryIO,
    *,
    compression: str = GZIP,
    level: int | None = None,
    implementation: str | None = None,
    source_date_epoch: int | None = None,
    keep_owners: bool = False,
) -> LayerInfo:
    """Write ``entries`` as one layer to ``out``; digest, diff_id and size in the same pass.

    ``out`` is a path (written to a temporary file, renamed when complete) or a binary
    stream; the options are :func:`write_layer`'s.

    >>> import io
    >>> plain = write_entries([Entry("etc/.wh.motd")], io.BytesIO(), compression="none")
    >>> plain.size, plain.digest == plain.diff_id  # one header, two zero blocks, padding
    (10240, True)
    """
    codec = choose_codec(compression, level, implementation)
    limit = source_epoch(source_date_epoch)
    with _output(out) as fh:
        stored = _HashingWriter(fh)
        with _Compressing(stored, codec) as plain:
            tar = TarWriter(plain)
            links: dict[tuple[int, int], str] = {}
            for entry in entries:
                info = tar_info(entry, mtime_limit=limit, keep_owners=keep_owners)
                st = entry.st
                if st is not None and not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                    first = links.setdefault((st.st_dev, st.st_ino), entry.name)
                    if first != entry.name:
                        info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
                content = info.type == tarfile.REGTYPE and info.size and entry.path is not None
                tar.add(info, entry.path if content else None)
            tar.close()
    return LayerInfo(stored.digest, plain.digest, stored.size, codec.compression, str(codec))


def write_layer(
    src: Path,
    out: Path | BinaryIO,
    *,
    compression: str = GZIP,
    level: int | None = None,
    source_date_epoch: int | None = None,
    **options: object,
) -> LayerInfo:
    """Tar the directory ``src`` (not ``src`` itself: its contents) into a layer at ``out``.

    ``level`` and ``implementation="isal"|"zlib"`` choose the compressor (the digest
    depends on them, the diff_id does not); ``keep_owners=True`` keeps uids and gids.
    ``source_date_epoch`` (default: the environment variable) clamps every mtime.

    >>> import io, tempfile; tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name)
    >>> (d / "motd").write_text("hi\\n"); os.utime(d / "motd", (0, 0))
    3
    >>> one = write_layer(d, io.BytesIO(), source_date_epoch=0)
    >>> one.diff_id == write_layer(d, io.BytesIO(), compression="zstd").diff_id  # same tar
    True
    >>> tmp.cleanup()
    """
    src = Path(src)
    if not src.is_dir():
        raise LayerError(f"{src} is not a directory", fix="write_layer tars a directory tree")
    return write_entries(
        tree_entries(src),
        out,
        compression=compression,
        level=level,
        source_date_epoch=source_date_epoch,
        **options,
    )
