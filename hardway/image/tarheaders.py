"""hardway.image.tarheaders
~~~~~~~~~~~~~~~~~~~~~~~~

Reading a tar header is the per-file cost of unpacking a layer of small files:
:meth:`tarfile.TarInfo.frombuf` cuts the 512-byte block into sixteen slices, converts
each through ``nts``/``nti`` and sums the block twice for its checksum — a third of the
time of unpacking 20,000 small files. :func:`parse_header` reads the common header
(plain octal numbers, an unsigned checksum, no old GNU sparse map) with one
:class:`struct.Struct` unpack and a checksum summed in C, into the *same* TarInfo that
tarfile would make; anything else it leaves to tarfile (``None``), which also raises
tarfile's own errors for a bad header. ``tests/test_tar_writer.py`` checks it against
tarfile on every kind of header and on thousands of damaged ones.

>>> info = tarfile.TarInfo("etc/motd"); info.size = 3
>>> buf = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
>>> parsed = parse_header(tarfile.TarInfo, buf, "utf-8", "surrogateescape")
>>> parsed.get_info() == tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape").get_info()
True
"""

from __future__ import annotations

import struct
import tarfile
import zlib
from typing import TypeVar

__all__ = ["parse_header"]

T = TypeVar("T", bound=tarfile.TarInfo)

#: name, mode, uid, gid, size, mtime, checksum, type, link, magic and version, user,
#: group, device major and minor, prefix, the unused end
_HEADER = struct.Struct("100s8s8s8s12s12s8s1s100s8s32s32s8s8s155s12s")
_BASE256 = (0o200, 0o377)


def _number(field: bytes) -> int:
    """An octal field as ``tarfile.nti`` reads it; ValueError for anything unusual."""
    if field[0] in _BASE256:
        raise ValueError("base-256: tarfile's")
    text = field.split(b"\0", 1)[0]
    if not text.isascii():
        raise ValueError("not ASCII: tarfile's")
    return int(text.strip() or b"0", 8)


def _text(field: bytes, encoding: str, errors: str) -> str:
    return field.split(b"\0", 1)[0].decode(encoding, errors)


def parse_header(cls: type[T], buf: bytes, encoding: str, errors: str) -> T | None:
    """``cls.frombuf(buf, encoding, errors)`` for a common header, or ``None``: let
    tarfile parse it (and raise its errors)."""
    if len(buf) != tarfile.BLOCKSIZE:
        return None
    (name, mode, uid, gid, size, mtime, chksum, kind, link, _magic, uname, gname, major, minor,
     prefix, _) = _HEADER.unpack(buf)  # fmt: skip
    if kind == tarfile.GNUTYPE_SPARSE:
        return None
    try:
        numbers = [_number(f) for f in (mode, uid, gid, size, mtime, chksum, major, minor)]
    except ValueError:
        return None
    # unsigned: 256 for the checksum field counted as spaces, plus every other byte; each
    # Adler-32 half is exact for 256 bytes (at most 65,280 < 65,521)
    total = (zlib.adler32(buf[:256]) & 0xFFFF) + (zlib.adler32(buf[256:]) & 0xFFFF) - 2
    if numbers[5] != 256 + total - sum(chksum):
        return None  # a signed checksum, a bad one, or the end-of-archive zeros
    try:
        texts = [_text(f, encoding, errors) for f in (name, link, uname, gname, prefix)]
    except UnicodeDecodeError:
        return None
    obj = cls()
    obj.name, obj.linkname, obj.uname, obj.gname, prefix_text = texts
    obj.mode, obj.uid, obj.gid, obj.size, obj.mtime, obj.chksum = numbers[:6]
    obj.type = kind
    obj.devmajor, obj.devminor = numbers[6:]
    # what frombuf does after the fields, in its order
    if obj.type == tarfile.AREGTYPE and obj.name.endswith("/"):
        obj.type = tarfile.DIRTYPE
    if obj.isdir():
        obj.name = obj.name.rstrip("/")
    if prefix_text and obj.type not in tarfile.GNU_TYPES:
        obj.name = prefix_text + "/" + obj.name
    return obj
