"""hardway.image.compression
~~~~~~~~~~~~~~~~~~~~~~~~~

A layer is stored compressed, and the compressed bytes are what its digest names. Those
bytes depend on *how* they were compressed: the algorithm, the library, its version and
the level. The uncompressed tar (named by the diff_id) does not. So this module makes
the choice explicit: a :class:`Codec` says ``gzip, isal 1.9.1, level 1`` and two builds
with the same codec give the same bytes.

* gzip: the ``isal`` library (Intel ISA-L, about 5× faster than zlib) when it is
  installed, otherwise the standard :mod:`zlib`. Either way this module writes the
  10-byte gzip header itself — no file name, mtime 0, OS byte 255 ("unknown") — so the
  header never depends on the clock or on the library; only the deflate stream in the
  middle does.
* zstd: the ``zstandard`` package (OCI layers only; Docker has no zstd media type).
* none: the tar as it is; then digest and diff_id are the same.

Compressors are streams with ``compress(data) -> bytes`` and ``flush() -> bytes``, like
:func:`zlib.compressobj`, so a layer flows through them a chunk at a time.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from hardway.errors import LayerError

try:  # ISA-L: the fast deflate; optional, zlib is the fallback
    from isal import igzip, isal_zlib
except ImportError:  # pragma: no cover - the course environment pins isal
    igzip = isal_zlib = None

__all__ = [
    "COMPRESSIONS",
    "GZIP",
    "NONE",
    "ZSTD",
    "Codec",
    "Compressor",
    "choose_codec",
    "decompressed",
    "detect_compression",
    "expansion_limit",
]

GZIP, ZSTD, NONE = "gzip", "zstd", "none"
COMPRESSIONS = (GZIP, ZSTD, NONE)

#: the first bytes of each format ("magic numbers")
MAGIC = {GZIP: b"\x1f\x8b\x08", ZSTD: b"\x28\xb5\x2f\xfd"}

#: gzip header (RFC 1952): magic, CM=8 (deflate), FLG=0, MTIME=0, XFL=0, OS=255
GZIP_HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"

#: a decompression bomb is a small blob that expands to fill the disk (gzip reaches about
#: 1000:1, zstd far more, a GNU sparse tar entry anything at all). A layer may expand to
#: MAX_EXPANSION_RATIO times its compressed size, at least EXPANSION_FLOOR and no more
#: than MAX_EXPANDED_SIZE — unless the blob itself is larger (an uncompressed layer);
#: real layers expand 2-10 times (docs/bad-input.md)
MAX_EXPANSION_RATIO = 100
EXPANSION_FLOOR = 256 << 20
MAX_EXPANDED_SIZE = 16 << 30

#: the level used when none is given; fast ones, as go-containerregistry does
DEFAULT_LEVELS = {"isal": 1, "zlib": 1, "zstandard": 3, "none": 0}
_LEVELS = {"isal": range(0, 4), "zlib": range(0, 10), "zstandard": range(-7, 23), "none": (0,)}


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


@dataclass(frozen=True)
class Codec:
    """How a layer is compressed: format, library (with version) and level.

    >>> str(Codec("gzip", "zlib", 6))  # doctest: +ELLIPSIS
    'gzip (zlib ..., level 6)'
    """

    compression: str  # GZIP | ZSTD | NONE
    implementation: str  # "isal" | "zlib" | "zstandard" | "none"
    level: int

    @property
    def version(self) -> str:
        if self.implementation == "zlib":
            return zlib.ZLIB_RUNTIME_VERSION
        if self.implementation == "none":
            return ""
        import importlib.metadata  # ~50 ms to import: only when a version is asked for

        return importlib.metadata.version(self.implementation)

    def __str__(self) -> str:
        if self.compression == NONE:
            return "none"
        return f"{self.compression} ({self.implementation} {self.version}, level {self.level})"

    def compressor(self) -> Compressor:
        """A fresh stream compressor for one layer."""
        if self.compression == GZIP:
            return _GzipCompressor(self.implementation, self.level)
        if self.compression == ZSTD:
            import zstandard

            return zstandard.ZstdCompressor(level=self.level, write_checksum=True).compressobj()
        return _Identity()


def choose_codec(
    compression: str = GZIP, level: int | None = None, implementation: str | None = None
) -> Codec:
    """The codec for ``compression``: the fastest library installed, at its default level.

    >>> choose_codec("gzip", implementation="zlib")
    Codec(compression='gzip', implementation='zlib', level=1)
    >>> choose_codec("none")
    Codec(compression='none', implementation='none', level=0)
    """
    if compression not in COMPRESSIONS:
        raise LayerError(
            f"unknown compression {compression!r}", fix=f"use one of {', '.join(COMPRESSIONS)}"
        )
    if implementation is None:
        implementation = {GZIP: "isal" if isal_zlib else "zlib", ZSTD: "zstandard"}.get(
            compression, "none"
        )
    allowed = {GZIP: ("isal", "zlib"), ZSTD: ("zstandard",), NONE: ("none",)}[compression]
    if implementation not in allowed:
        raise LayerError(f"{compression} cannot be made by {implementation!r}", fix=str(allowed))
    if implementation == "isal" and isal_zlib is None:
        raise LayerError("the isal package is not installed", fix="pip install isal")
    level = DEFAULT_LEVELS[implementation] if level is None else level
    if level not in _LEVELS[implementation]:
        span = _LEVELS[implementation]
        raise LayerError(
            f"{implementation} has no level {level}",
            fix=f"use a level from {min(span)} to {max(span)}",
        )
    return Codec(compression, implementation, level)


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _GzipCompressor:
    """gzip = our fixed header + a raw deflate stream + CRC-32 and length (RFC 1952)."""

    def __init__(self, implementation: str, level: int) -> None:
        lib = isal_zlib if implementation == "isal" else zlib
        self._deflate = lib.compressobj(level, lib.DEFLATED, -15)  # -15: raw, no header
        self._crc32 = lib.crc32
        self._crc, self._size, self._header = 0, 0, GZIP_HEADER

    def compress(self, data: bytes) -> bytes:
        self._crc = self._crc32(data, self._crc)
        self._size += len(data)
        header, self._header = self._header, b""
        return header + self._deflate.compress(data)

    def flush(self) -> bytes:
        header, self._header = self._header, b""
        trailer = struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF)
        return header + self._deflate.flush() + trailer


def detect_compression(head: bytes) -> str:
    """Which format a layer is in, from its first bytes (4 are enough).

    >>> detect_compression(b"\\x1f\\x8b\\x08\\x00"), detect_compression(b"bin/")
    ('gzip', 'none')
    """
    for name, magic in MAGIC.items():
        if head.startswith(magic):
            return name
    return NONE


class _Prefixed(io.RawIOBase):
    """A reader that returns ``head`` first, then the rest of ``fileobj``."""

    def __init__(self, head: bytes, fileobj: BinaryIO) -> None:
        super().__init__()
        self._head, self._file = head, fileobj

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._file.read(len(view))
        view[: len(data)] = data
        return len(data)


def expansion_limit(compressed_size: int | None) -> int:
    """The most bytes a layer of ``compressed_size`` bytes may unpack to by default.

    >>> expansion_limit(10 << 20) == 1000 << 20, expansion_limit(1) == EXPANSION_FLOOR
    (True, True)
    >>> expansion_limit(None) == expansion_limit(1 << 30) == MAX_EXPANDED_SIZE
    True

    A blob never less than its own size: an uncompressed 20 GiB layer is no bomb.

    >>> expansion_limit(20 << 30) == 20 << 30
    True
    """
    if compressed_size is None:
        return MAX_EXPANDED_SIZE
    capped = min(MAX_EXPANDED_SIZE, max(EXPANSION_FLOOR, MAX_EXPANSION_RATIO * compressed_size))
    return max(capped, compressed_size)


def decompressed(fileobj: BinaryIO, compression: str | None = None) -> BinaryIO:
    """A reader of the uncompressed tar inside ``fileobj``; ``None`` detects the format.

    Truncated or corrupt compressed data raises :class:`LayerError` (not the library's
    own ``EOFError`` or ``zlib.error``), so a broken download reads as one.
    """
    if compression is None:
        head = fileobj.read(4)
        compression = detect_compression(head)
        fileobj = _Prefixed(head, fileobj)  # type: ignore[assignment]
    if compression == GZIP:
        if igzip is not None:
            return _Checked(igzip.IGzipFile(fileobj=fileobj, mode="rb"), GZIP)
        return _Checked(gzip.GzipFile(fileobj=fileobj, mode="rb"), GZIP)
    if compression == ZSTD:
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(
            _ZstdFrames(fileobj), read_across_frames=True, closefd=False
        )
        return _Checked(reader, ZSTD)
    if compression == NONE:
        return fileobj
    raise LayerError(f"unknown compression {compression!r}", fix=f"use one of {COMPRESSIONS}")


class _ZstdFrames(io.RawIOBase):
    """Compressed bytes on their way to the zstd decompressor, watched frame by frame.

    python-zstandard's stream reader ends quietly when its input stops in the middle of
    a frame: a cut download would read as a shorter layer. Walking the frame and block
    headers as the bytes pass (RFC 8878; no decompression, a few steps per 128 KiB
    block) tells a cut stream from a complete one.
    """

    _MAGIC = 0xFD2FB528
    _UNKNOWN = 1 << 62  # bytes to pass unwatched after something we do not parse

    def __init__(self, fileobj: BinaryIO) -> None:
        super().__init__()
        self._file = fileobj
        self._step, self._need, self._skip, self._field = self._magic, 4, 0, b""
        self._checksum = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self._file.read(len(buffer))
        if not data:
            if self._field or self._step != self._magic or 0 < self._skip < self._UNKNOWN:
                raise LayerError(
                    "the layer's zstd data is truncated: it ends inside a frame",
                    fix="download or copy the layer again, and check its digest",
                )
            return 0
        view = memoryview(data)
        while view:
            if self._skip:
                n = min(self._skip, len(view))
                self._skip, view = self._skip - n, view[n:]
                continue
            n = self._need - len(self._field)
            self._field, view = self._field + bytes(view[:n]), view[n:]
            if len(self._field) == self._need:
                field, self._field = self._field, b""
                self._step(int.from_bytes(field, "little"))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def _next(self, step: Callable[[int], None], need: int, skip: int = 0) -> None:
        self._step, self._need, self._skip = step, need, skip

    def _magic(self, magic: int) -> None:
        if magic == self._MAGIC:
            self._next(self._frame_header, 1)
        elif magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame: its size follows
            self._next(self._skippable, 4)
        else:  # not a frame: leave it to the decompressor to complain
            self._next(self._magic, 4, self._UNKNOWN)

    def _skippable(self, size: int) -> None:
        self._next(self._magic, 4, size)

    def _frame_header(self, descriptor: int) -> None:
        single_segment = descriptor >> 5 & 1
        self._checksum = bool(descriptor >> 2 & 1)
        window = 0 if single_segment else 1
        dictionary = (0, 1, 2, 4)[descriptor & 3]
        content_size = (single_segment, 2, 4, 8)[descriptor >> 6]
        self._next(self._block_header, 3, window + dictionary + content_size)

    def _block_header(self, header: int) -> None:
        last, kind, size = header & 1, header >> 1 & 3, header >> 3
        body = 1 if kind == 1 else size  # an RLE block holds one byte
        if last:
            self._next(self._magic, 4, body + (4 if self._checksum else 0))
        else:
            self._next(self._block_header, 3, body)


def _decompression_errors(compression: str) -> Iterator[type[BaseException]]:
    """What each library raises for data it cannot decompress."""
    yield from (EOFError, zlib.error, gzip.BadGzipFile)
    if isal_zlib is not None:
        yield isal_zlib.error
    if compression == ZSTD:
        import zstandard

        yield zstandard.ZstdError


class _Checked(io.RawIOBase):
    """A decompressing reader whose library errors become one clear :class:`LayerError`."""

    def __init__(self, reader: BinaryIO, compression: str) -> None:
        super().__init__()
        self._reader, self._compression = reader, compression
        self._errors = tuple(_decompression_errors(compression))

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # no copy through readinto: the hot path
        try:
            return self._reader.read(size)
        except self._errors as exc:
            raise LayerError(
                f"the layer's {self._compression} data is truncated or corrupt ({exc})",
                fix="download or copy the layer again, and check its digest",
            ) from None

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._reader.close()
        super().close()
