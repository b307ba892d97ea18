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
sorted order, each directory before what it holds; PAX headers; uid/gid 0 and no user
names unless ``keep_owners``; mtimes clamped to ``SOURCE_DATE_EPOCH`` when it is set
(argument or environment variable); hard links as link entries; symlinks, devices and
FIFOs as themselves; sockets skipped (tar cannot hold them); xattrs as
``SCHILY.xattr.*`` records, minus overlayfs' and SELinux's own. The compressed digest
also depends on the compressor (see :mod:`hardway.image.compression`).

:func:`diff_layer` writes the difference of two snapshots (added and changed entries,
``.wh.`` whiteouts, opaque directories — see :mod:`hardway.image.whiteouts`);
:func:`overlay_layer` turns an overlayfs upper directory into the same thing; and
:func:`apply_layer` (from :mod:`hardway.image.apply`) unpacks layers safely.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import queue
import stat
import tarfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hardway.errors import LayerError
from hardway.image.apply import apply_layer, apply_layers
from hardway.image.compression import GZIP, NONE, ZSTD, Codec, choose_codec, detect_compression
from hardway.image.digest import Digest
from hardway.image.whiteouts import opaque_name, whiteout_name
from hardway.sys.atomic import temporary_file
from hardway.sys.sizes import parse_size

__all__ = [
    "GZIP",
    "MEDIA_TYPES",
    "NONE",
    "ZSTD",
    "Entry",
    "LayerInfo",
    "apply_layer",
    "apply_layers",
    "detect_compression",
    "diff_entries",
    "diff_layer",
    "overlay_entries",
    "overlay_layer",
    "tar_header",
    "tar_info",
    "tree_entries",
    "write_entries",
    "write_layer",
]

MEDIA_TYPES: dict[tuple[str, str], str] = {
    ("oci", GZIP): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", ZSTD): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("oci", NONE): "application/vnd.oci.image.layer.v1.tar",
    ("docker", GZIP): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ("docker", NONE): "application/vnd.docker.image.rootfs.diff.tar",
}

#: xattrs that describe the host, not the file: never copied into a layer
SKIPPED_XATTRS = ("trusted.overlay.", "user.overlay.", "security.selinux")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LayerInfo:
    """What a manifest and a config need to know about one layer."""

    digest: Digest  # sha256 of the bytes as stored (compressed)
    diff_id: Digest  # sha256 of the uncompressed tar
    size: int  # stored (compressed) size in bytes
    compression: str  # GZIP | ZSTD | NONE
    codec: str = ""  # e.g. "gzip (isal 1.9.1, level 1)": what the digest depends on

    def media_type(self, fmt: str = "oci") -> str:
        """The layer's ``mediaType`` in an ``"oci"`` or ``"docker"`` manifest."""
        try:
            return MEDIA_TYPES[(fmt, self.compression)]
        except KeyError:
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


@dataclass(frozen=True)
class Entry:
    """One member of a layer before it becomes a tar header.

    ``name`` is root-relative with ``/`` separators (``"usr/bin"``); ``path`` and ``st``
    say where its content and metadata come from — both ``None`` for a whiteout.
    """

    name: str
    path: Path | None = None
    st: os.stat_result | None = None


# --- reading trees ------------------------------------------------------------------------


def _sort_key(name: str) -> bytes:
    return os.fsencode(name)


def _children(directory: Path, prefix: str) -> Iterator[Entry]:
    """The entries in ``directory``, sorted by name as bytes; sockets left out.

    Only the names are held (a directory of 20,000 files costs a few MB); each entry is
    stat'ed as it is reached.
    """
    for name in sorted(os.listdir(directory), key=_sort_key):
        path = directory / name
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            yield Entry(f"{prefix}/{name}" if prefix else name, path, st)


def tree_entries(root: Path) -> Iterator[Entry]:
    """Every entry under ``root``, depth first, each directory before its contents.

    >>> import tempfile; tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name)
    >>> (d / "a").mkdir(); (d / "a" / "x").touch(); (d / "a-b").touch()
    >>> [e.name for e in tree_entries(d)]  # a/x first: a walk, not a sort of whole paths
    ['a', 'a/x', 'a-b']
    >>> tmp.cleanup()
    """
    stack = [_children(Path(root), "")]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        yield entry
        if stat.S_ISDIR(entry.st.st_mode):
            stack.append(_children(entry.path, entry.name))


def _xattrs(path: Path) -> dict[str, bytes]:
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


# --- writing tar --------------------------------------------------------------------------


def tar_info(
    entry: Entry, *, mtime_limit: int | None = None, keep_owners: bool = False
) -> tarfile.TarInfo:
    """The tar header of ``entry`` (hard links are decided by :func:`write_entries`).

    >>> info = tar_info(Entry("etc/.wh.motd"))
    >>> info.name, info.size, info.mode, info.mtime, info.uid
    ('etc/.wh.motd', 0, 420, 0, 0)
    """
    info = tarfile.TarInfo(entry.name)
    info.uname = info.gname = ""
    st = entry.st
    if st is None:  # a whiteout: an empty file, the same bytes every time
        info.mode, info.mtime = 0o644, 0
        return info
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime) if mtime_limit is None else min(int(st.st_mtime), mtime_limit)
    if keep_owners:
        info.uid, info.gid = st.st_uid, st.st_gid
    if entry.path is not None:
        for key, value in _xattrs(entry.path).items():
            info.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFREG:
        info.size = st.st_size
    elif kind == stat.S_IFDIR:
        info.type = tarfile.DIRTYPE
    elif kind == stat.S_IFLNK:
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(entry.path)
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif kind == stat.S_IFIFO:
        info.type = tarfile.FIFOTYPE
    else:
        raise LayerError(f"{entry.name}: a {stat.filemode(st.st_mode)} cannot go into a tar")
    return info


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


_BLOCK = tarfile.BLOCKSIZE
_ZEROS = bytes(tarfile.RECORDSIZE)
_NO_DEVICE = bytes(16)
_USTAR_TAIL = bytes(155 + 12)  # prefix and the header's unused end


def _octal(value: int, digits: int) -> bytes:
    return b"%0*o\0" % (digits - 1, value)


def _fits(value: object, digits: int) -> bool:
    return type(value) is int and 0 <= value < 8 ** (digits - 1)


def tar_header(info: tarfile.TarInfo) -> bytes:
    """The header blocks ``tarfile`` writes for ``info`` in PAX format, byte for byte.

    The common member — an ASCII name and link of up to 100 characters, no PAX records,
    numbers that fit their octal fields — gets one 512-byte ustar block built here, 5×
    faster than :meth:`tarfile.TarInfo.tobuf`; anything else is left to ``tobuf``. (A
    layer of 20,000 small files spent half its time in ``tobuf``.)

    >>> info = tarfile.TarInfo("etc"); info.type = tarfile.DIRTYPE
    >>> tar_header(info) == info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    True
    """
    name, link, kind = info.name, info.linkname, info.type
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    device = kind in (tarfile.CHRTYPE, tarfile.BLKTYPE)
    if (
        info.pax_headers
        or len(name) > 100
        or len(link) > 100
        or len(info.uname) > 32
        or len(info.gname) > 32
        or not (name + link + info.uname + info.gname).isascii()
        or not (_fits(info.uid, 8) and _fits(info.gid, 8))
        or not (_fits(info.size, 12) and _fits(info.mtime, 12) and type(info.mode) is int)
        or (device and not (_fits(info.devmajor, 8) and _fits(info.devminor, 8)))
        or len(kind) != 1
    ):
        return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    block = b"".join(
        (
            name.encode().ljust(100, b"\0"),
            _octal(info.mode & 0o7777, 8),
            _octal(info.uid, 8),
            _octal(info.gid, 8),
            _octal(info.size, 12),
            _octal(info.mtime, 12),
            b"        ",  # the checksum, counted as spaces
            kind,
            link.encode().ljust(100, b"\0"),
            tarfile.POSIX_MAGIC,
            info.uname.encode().ljust(32, b"\0"),
            info.gname.encode().ljust(32, b"\0"),
            _octal(info.devmajor, 8) + _octal(info.devminor, 8) if device else _NO_DEVICE,
            _USTAR_TAIL,
        )
    )
    return block[:148] + b"%06o\0" % sum(block) + block[155:]


class _TarWriter:
    """A PAX tar stream, the same bytes as ``tarfile.open(mode="w", format=PAX_FORMAT)``
    with ``addfile`` for each member, without tarfile's per-member costs (a copy of each
    TarInfo, a list of all members, a file object per small file)."""

    def __init__(self, sink: _Compressing) -> None:
        self._sink, self._offset = sink, 0

    def add(self, info: tarfile.TarInfo, path: Path | None = None) -> None:
        """Write ``info``'s header, then ``info.size`` bytes of the file at ``path``."""
        header = tar_header(info)
        self._sink.write(header)
        self._offset += len(header)
        if path is None:
            return
        size, left = info.size, info.size
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            while left:
                data = os.read(fd, min(left, _CHUNK))
                if not data:
                    raise LayerError(
                        f"{info.name} shrank while it was read ({size - left} of {size} bytes)",
                        fix="build the layer from a tree nothing else is writing to",
                    )
                self._sink.write(data)
                left -= len(data)
        finally:
            os.close(fd)
        if size % _BLOCK:
            self._sink.write(_ZEROS[: _BLOCK - size % _BLOCK])
        self._offset += -(-size // _BLOCK) * _BLOCK

    def close(self) -> None:
        """Two zero blocks, then zeros up to a whole record (10 KiB), as tarfile ends."""
        self._offset += 2 * _BLOCK
        self._sink.write(_ZEROS[: 2 * _BLOCK])
        if self._offset % tarfile.RECORDSIZE:
            self._sink.write(_ZEROS[: tarfile.RECORDSIZE - self._offset % tarfile.RECORDSIZE])


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
    """Write ``entries`` as one layer to ``out``; digest, diff_id and size in the same pass."""
    codec = choose_codec(compression, level, implementation)
    limit = source_epoch(source_date_epoch)
    with _output(out) as fh:
        stored = _HashingWriter(fh)
        with _Compressing(stored, codec) as plain:
            tar = _TarWriter(plain)
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


# --- changes ------------------------------------------------------------------------------


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
    if _xattrs(low.path) != _xattrs(up.path):
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
    ups = list(_children(upper / rel, rel))
    lows = {e.name: e for e in _children(lower / rel, rel)} if has_lower else {}
    if lows and not lows.keys() & {e.name for e in ups}:  # replaced wholesale
        yield from _emit(pending, Entry(opaque_name(rel)))
        lows = {}
    names = {e.name for e in ups}
    for name in sorted(lows.keys() - names, key=_sort_key):
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
    """Write the layer that turns directory ``lower`` into directory ``upper``."""
    for tree in (lower, upper):
        if not Path(tree).is_dir():
            raise LayerError(f"{tree} is not a directory", fix="diff_layer compares two trees")
    keep = bool(kw.get("keep_owners", False))
    return write_entries(
        diff_entries(lower, upper, keep_owners=keep), out, compression=compression, **kw
    )


# --- overlayfs ----------------------------------------------------------------------------

_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_UNSUPPORTED_XATTRS = ("redirect", "metacopy")


def _overlay_xattr(path: Path, names: Iterable[str]) -> bytes | None:
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
    stack = [iter(_overlay_children(Path(upper), ""))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        yield entry
        if entry.st is not None and stat.S_ISDIR(entry.st.st_mode):
            stack.append(iter(_overlay_children(entry.path, entry.name)))


def _overlay_children(directory: Path, prefix: str) -> list[Entry]:
    marks, rest = [], []
    if prefix and _overlay_xattr(directory, _OPAQUE_XATTRS) == b"y":
        marks.append(Entry(opaque_name(prefix)))
    for entry in _children(directory, prefix):
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
    """Write an overlayfs upper directory as an OCI layer (see :func:`overlay_entries`)."""
    return write_entries(overlay_entries(Path(upper)), out, **kw)


# --- command line -------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("layer", help="write layer tarballs (chapter 05)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", type=Path, required=True, help="layer file to write")
        p.add_argument("--compression", choices=(GZIP, ZSTD, NONE), default=GZIP)
        p.add_argument("--level", type=int, help="compression level (default: a fast one)")
        p.add_argument("--implementation", choices=("isal", "zlib"), help="gzip library")
        p.add_argument("--source-date-epoch", type=int, help="clamp mtimes to this time")
        p.add_argument("--keep-owners", action="store_true", help="keep uids and gids")
        p.add_argument("--format", choices=("oci", "docker"), default="oci", help="mediaType")

    create = verbs.add_parser("create", help="tar a directory into a layer")
    create.add_argument("dir", type=Path)
    options(create)
    create.set_defaults(func=lambda a: _report(a, write_layer, a.dir))
    diff = verbs.add_parser("diff", help="the layer that turns LOWER into UPPER")
    diff.add_argument("lower", type=Path)
    diff.add_argument("upper", type=Path)
    options(diff)
    diff.set_defaults(func=lambda a: _report(a, diff_layer, a.lower, a.upper))
    over = verbs.add_parser("overlay", help="an overlayfs upper directory as an OCI layer")
    over.add_argument("upper", type=Path)
    options(over)
    over.set_defaults(func=lambda a: _report(a, overlay_layer, a.upper))
    apply = verbs.add_parser("apply", help="unpack layers, in order, into ROOT (safely)")
    apply.add_argument("root", type=Path)
    apply.add_argument("layers", type=Path, nargs="+")
    apply.add_argument(
        "--max-size",
        type=parse_size,
        help="refuse a layer that unpacks to more than this (e.g. 32G; default: "
        "$HARDWAY_MAX_LAYER_SIZE, else 100x the layer's size, at least 256M, at most 16G)",
    )
    apply.set_defaults(func=_apply)


def _report(args: argparse.Namespace, func, *paths: Path) -> int:
    info = func(
        *paths,
        args.output,
        compression=args.compression,
        level=args.level,
        implementation=args.implementation,
        source_date_epoch=args.source_date_epoch,
        keep_owners=args.keep_owners,
    )
    print(json.dumps(info.to_json(args.format), indent=2))
    return 0


def _apply(args: argparse.Namespace) -> int:
    args.root.mkdir(parents=True, exist_ok=True)
    apply_layers(args.layers, args.root, max_size=args.max_size)
    return 0
