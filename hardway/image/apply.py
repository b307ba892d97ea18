"""hardway.image.apply
~~~~~~~~~~~~~~~~~~~

Unpacking layers, one after the other, into a root filesystem — with the OCI whiteout
rules (:mod:`hardway.image.whiteouts`) and safely, because a layer is data from a stranger.
Python's :mod:`tarfile` is used to *parse* the archive only; every file is created here,
relative to a directory descriptor found by :func:`hardway.sys.securejoin.open_dir`:

* a name that is absolute, climbs with ``..`` or holds a NUL byte, a bare ``.wh.``, or a
  hard link to such a name raises :class:`~hardway.errors.UnsafeLayerError` naming the
  entry, before anything of that entry is written;
* a symlink met on the way is followed *inside the root* (``etc -> /etc`` leads to
  ``ROOT/etc``), so neither a planted link nor one from an earlier layer leads out;
* an existing entry is removed before it is replaced, and files are created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW``: nothing is ever written *through* a link;
* hard-link targets are resolved inside the root too;
* directory modes and mtimes are set at the end of each layer, so a read-only
  directory can still be filled first.

Owners are applied when running as root (``same_owner``); setuid and setgid bits and
file capabilities are kept only then (without owners they would name the wrong user,
or turn a stranger's file into a privileged root program); device nodes are
skipped when ``mknod`` is refused (rootless), and xattrs the filesystem refuses are
dropped. A truncated archive, a name too long for the filesystem or an unknown entry
type raises :class:`~hardway.errors.LayerError` naming the entry; the stream is read to
its end, so the gzip CRC and the zstd frames are checked even after the tar's end.
tarfile's extraction filters (PEP 706) are deliberately not used: they resolve links
against the *host's* ``/`` and reject or rewrite what a root filesystem needs
(absolute symlinks, device nodes, setuid bits). A digest check belongs to the caller,
who knows the expected digest. ``max_size`` caps both the uncompressed bytes read and
the bytes written (a GNU sparse entry writes far more than it reads); by default it is
:func:`hardway.image.compression.expansion_limit` of the layer's size, or
``$HARDWAY_MAX_LAYER_SIZE`` (``32G``, ``unlimited``) when set. The
parsing is still :mod:`tarfile`'s, so keep Python patched (3.11.7 has known tarfile
bugs, e.g. CVE-2024-6232, a slow PAX header parse).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from hardway.errors import LayerError, UnsafeLayerError
from hardway.image.compression import decompressed, expansion_limit
from hardway.image.tarheaders import parse_header
from hardway.image.whiteouts import META_PREFIX, OPAQUE, WHITEOUT_PREFIX, whiteout_target
from hardway.sys.securejoin import open_dir
from hardway.sys.sizes import format_size, parse_size

__all__ = ["apply_layer", "apply_layers", "clean_name"]

T = TypeVar("T")

#: file data is copied in blocks this big: under glibc's mmap threshold (128 KiB), so each
#: block reuses freed heap instead of fresh pages (1 MiB blocks cost ~170,000 page faults,
#: a third of the CPU, to unpack 315 MB)
_CHUNK = 1 << 16
_IGNORED_XATTR_ERRORS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES)
_FILE_CAPS = "SCHILY.xattr.security.capability"
#: the environment variable that replaces the default expanded-size cap
MAX_SIZE_ENV = "HARDWAY_MAX_LAYER_SIZE"
_MAX_SIZE_FIX = (
    "if you trust this layer, raise the cap: apply_layer(..., max_size=N), "
    f"{MAX_SIZE_ENV}=32G (or unlimited), or `python -m hardway layer apply --max-size 32G`"
)
#: system errors that an entry's own content causes: what they mean, and what to do
_ENTRY_ERRNOS = {
    errno.ENAMETOOLONG: (
        "a name longer than this filesystem allows (255 bytes a component, 4095 a symlink target)",
        "rebuild the layer with shorter names: no Linux filesystem can hold this one",
    ),
    errno.EMLINK: (
        "too many hard links to one file for this filesystem",
        "unpack onto ext4 or xfs, or rebuild the layer with copies instead of hard links",
    ),
    errno.ENOSPC: (
        "the disk is full",
        "free some space (`python -m hardway cleanup`, `make clean`) or unpack elsewhere",
    ),
    errno.EDQUOT: (
        "the disk quota is used up",
        "free some space (`python -m hardway cleanup`, `make clean`) or unpack elsewhere",
    ),
}


def clean_name(name: str, *, what: str = "entry", entry: str | None = None) -> str:
    """The root-relative form of a tar entry name, or :class:`UnsafeLayerError`.

    >>> clean_name("./usr//bin/"), clean_name("./")
    ('usr/bin', '')
    >>> clean_name("../../etc/passwd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    hardway.errors.UnsafeLayerError: unsafe layer entry '../../etc/passwd': ... with '..'
    """
    shown = name if entry is None else entry
    if "\x00" in name:
        raise UnsafeLayerError(shown, f"the {what} name holds a NUL byte")
    if name.startswith("/"):
        raise UnsafeLayerError(shown, f"the {what} name {name!r} is absolute")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayerError(shown, f"the {what} name {name!r} climbs out with '..'")
    return "/".join(parts)


def _split(name: str) -> tuple[str, str]:
    parent, _, base = name.rpartition("/")
    return parent, base


def _join(parent: str, base: str) -> str:
    return f"{parent}/{base}" if parent else base


@contextlib.contextmanager
def _opened(layer: Path | BinaryIO) -> Iterator[BinaryIO]:
    if isinstance(layer, str | os.PathLike):
        with open(layer, "rb") as fh:
            yield fh
    else:
        yield layer


def _too_big(limit: int) -> LayerError:
    return LayerError(
        f"the layer unpacks to more than {limit} bytes ({format_size(limit)}, the max_size "
        "cap): a decompression bomb, or a layer larger than the cap",
        fix=_MAX_SIZE_FIX,
    )


class _Capped:
    """A reader that raises once more than ``limit`` bytes have come through."""

    def __init__(self, reader: BinaryIO, limit: int) -> None:
        self._reader, self._left, self.limit = reader, limit, limit

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size)
        self._left -= len(data)
        if self._left < 0:
            raise _too_big(self.limit)
        return data


def _compressed_size(raw: BinaryIO) -> int | None:
    """The bytes left in ``raw`` if it is a file or seekable, else ``None`` (a pipe)."""
    try:
        if not raw.seekable():
            return None
        here = raw.tell()
        end = raw.seek(0, os.SEEK_END)
        raw.seek(here)
    except (OSError, ValueError, AttributeError):
        return None
    return end - here


def default_max_size(raw: BinaryIO | int) -> int | None:
    """``$HARDWAY_MAX_LAYER_SIZE`` if set (``unlimited``: no cap), else the expansion limit
    of ``raw``'s size (or of ``raw`` bytes, when the size is known but the stream is a pipe)."""
    setting = os.environ.get(MAX_SIZE_ENV, "").strip()
    if setting.lower() in ("unlimited", "none"):
        return None
    if setting:
        try:
            return parse_size(setting)
        except ValueError as exc:
            raise LayerError(
                f"{MAX_SIZE_ENV}={setting!r}: {exc}",
                fix=f"set {MAX_SIZE_ENV} to a size such as 32G, or to unlimited, or unset it",
            ) from None
    return expansion_limit(raw if isinstance(raw, int) else _compressed_size(raw))


def _missing_link(entry: str, link: str) -> LayerError:
    return LayerError(
        f"layer entry {entry!r}: link target {link!r} missing",
        fix="a hard link's target must come before it, in its layer or a lower one: apply "
        "the layers in order, or rebuild this one",
    )


def apply_layer(
    layer: Path | BinaryIO,
    root: Path,
    *,
    compression: str | None = None,
    same_owner: bool | None = None,
    max_size: int | None = None,
) -> None:
    """Unpack one layer (a file or a binary stream) on top of directory ``root``.

    ``compression=None`` detects gzip, zstd or plain tar from the first bytes;
    ``same_owner`` defaults to "running as root"; ``max_size`` caps the bytes the layer
    unpacks to (default: :func:`default_max_size`).
    """
    with _opened(layer) as raw:
        limit = default_max_size(raw) if max_size is None else max_size
        stream = decompressed(raw, compression)
        if limit is not None:
            stream = _Capped(stream, limit)
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            owner = os.geteuid() == 0 if same_owner is None else same_owner
            _Applier(root_fd, owner, limit).run(stream)
        finally:
            os.close(root_fd)


def apply_layers(layers: Iterable[Path | BinaryIO], root: Path, **options: object) -> None:
    """Unpack ``layers`` in order, lowest first, into ``root``."""
    for layer in layers:
        apply_layer(layer, root, **options)


class _StrictInfo(tarfile.TarInfo):
    """A header parser that refuses a damaged or cut header after the first one.

    :mod:`tarfile` ends the archive quietly there, as if it were the end: half a layer
    would be applied without a word.
    """

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        """tarfile's own parse, made faster for the common header (see tarheaders)."""
        parsed = parse_header(cls, buf, encoding, errors)
        return super().frombuf(buf, encoding, errors) if parsed is None else parsed

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except (tarfile.TruncatedHeaderError, tarfile.InvalidHeaderError) as exc:
            if tar.offset == 0:
                raise  # tarfile says "not a tar archive"
            raise tarfile.SubsequentHeaderError(f"{exc} at byte {tar.offset}") from None


class _Applier:
    """The state of one layer being applied: what it wrote, and directories to finish."""

    def __init__(self, root_fd: int, same_owner: bool, limit: int | None = None) -> None:
        self.root_fd, self.same_owner = root_fd, same_owner
        self.left = limit  # bytes the files of this layer may still take, None: no cap
        self.limit = limit
        self.ours: set[str] = set()  # resolved paths this layer wrote, and their parents
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []
        #: speed only: the last entry's parent, (name, descriptor), kept open for the next
        #: entries in the same directory (see :meth:`parent_dir`)
        self.last_parent: tuple[str, int] | None = None

    def run(self, stream: BinaryIO) -> None:
        try:
            tar = tarfile.open(  # noqa: SIM115
                fileobj=stream, mode="r|", errorlevel=2, tarinfo=_StrictInfo
            )
        except tarfile.ReadError as exc:
            raise LayerError(
                f"not a tar archive: {exc}",
                fix="a layer is a tar, gzip or zstd of a tar: `file LAYER` says what this one is",
            ) from None
        with tar, contextlib.ExitStack() as kept:
            kept.callback(self.forget_parent, None)
            member = None
            while True:
                after = f" after entry {member.name!r}" if member is not None else ""
                try:
                    member = tar.next()
                except tarfile.TarError as exc:
                    raise LayerError(
                        f"a broken tar archive{after}: {exc}",
                        fix="the layer is damaged: download or build it again",
                    ) from None
                if member is None:
                    break
                try:
                    self.entry(member, tar)
                except OSError as exc:
                    if exc.errno not in _ENTRY_ERRNOS:
                        raise
                    why, fix = _ENTRY_ERRNOS[exc.errno]
                    raise LayerError(f"layer entry {member.name!r}: {why}", fix=fix) from exc
                tar.members.clear()  # tarfile keeps every header; a big layer has many
        while stream.read(_CHUNK):  # read on to the end, so that the gzip CRC and the zstd
            pass  # frame checks run even when the tar's end-of-archive blocks come first
        for path, member in self.dirs:
            self.finish_dir(path, member)

    def entry(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        name = clean_name(member.name)
        parent, base = _split(name)
        self.forget_parent(parent)
        if base == OPAQUE:
            return self.whiteout(member.name, parent, None)
        if base.startswith(META_PREFIX):
            return None  # AUFS bookkeeping (.wh..wh.plnk …): not part of the tree
        if base.startswith(WHITEOUT_PREFIX):
            whiteout_target(name)  # raises UnsafeLayerError for '.wh.' and '.wh..'
            return self.whiteout(member.name, parent, base[len(WHITEOUT_PREFIX) :])
        if not name:
            if not member.isdir():
                raise UnsafeLayerError(member.name, "the root can only be a directory")
            self.dirs.append(("", member))
            return None
        link = None
        if member.islnk():
            link = clean_name(member.linkname, what="hard link target", entry=member.name)
            if not link:
                raise UnsafeLayerError(member.name, "a hard link to the root directory")
        dir_fd, where, kept = self.parent_dir(member.name, parent)
        try:
            self.create(dir_fd, base, member, tar, link)
        finally:
            if not kept:
                os.close(dir_fd)
        path = _join(where, base)
        self.ours.add(path)
        parts = path.split("/")
        self.ours.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if member.isdir():
            self.dirs.append((path, member))
        return None

    def parent_dir(self, entry: str, parent: str) -> tuple[int, str, bool]:
        """The parent directory of a new entry, opened (and made) inside the root, and
        whether it is kept open (then it is not the caller's to close).

        Speed only: a layer lists a directory's entries one after the other, so the
        descriptor is kept for the next entry with the same parent name — but only when
        the name led to it without a symlink (resolved path == name). Then an entry in
        that directory changes only its children, never what the name leads to, and
        :meth:`forget_parent` closes it as soon as an entry names another parent.
        """
        if self.last_parent is not None and self.last_parent[0] == parent:
            return self.last_parent[1], parent, True
        dir_fd, where = self.open_parent(entry, parent, create=True)
        if where != parent:
            return dir_fd, where, False
        self.last_parent = (parent, dir_fd)
        return dir_fd, where, True

    def forget_parent(self, parent: str | None) -> None:
        """Close the kept parent descriptor unless the next entry's parent is ``parent``."""
        if self.last_parent is not None and self.last_parent[0] != parent:
            os.close(self.last_parent[1])
            self.last_parent = None

    def open_parent(self, entry: str, parent: str, *, create: bool) -> tuple[int, str]:
        try:
            return open_dir(self.root_fd, parent, create=create)
        except NotADirectoryError as exc:
            raise LayerError(
                f"layer entry {entry!r}: {exc.filename} is not a directory",
                fix="the layer puts an entry under a file: rebuild it with a directory there",
            ) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeLayerError(
                    entry, "its parent is a symlink loop, or a chain of more than 40 links"
                ) from None
            raise

    # --- whiteouts

    def whiteout(self, entry: str, parent: str, target: str | None) -> None:
        """Remove ``target`` (``None``: every child) of ``parent`` unless this layer made it."""
        try:
            dir_fd, where = self.open_parent(entry, parent, create=False)
        except (FileNotFoundError, LayerError):
            return  # nothing below to hide
        try:
            if target is None:
                self.hide_lower(dir_fd, where)
            elif _join(where, target) in self.ours:
                with _opened_child_dir(dir_fd, target) as child:
                    if child is not None:
                        self.hide_lower(child, _join(where, target))
            else:
                _remove(dir_fd, target)
        finally:
            os.close(dir_fd)

    def hide_lower(self, dir_fd: int, where: str) -> None:
        """Remove what lower layers left in this directory, keeping this layer's entries."""
        listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            names = os.listdir(listing)
        finally:
            os.close(listing)
        for name in names:
            path = _join(where, name)
            if path not in self.ours:
                _remove(dir_fd, name)
                continue
            with _opened_child_dir(dir_fd, name) as child:
                if child is not None:
                    self.hide_lower(child, path)

    # --- entries

    def create(
        self,
        dir_fd: int,
        base: str,
        member: tarfile.TarInfo,
        tar: tarfile.TarFile,
        link: str | None,
    ) -> None:
        # Each entry is created with O_EXCL (or mkdir, symlink, link: all refuse an
        # existing name), and only when the name is taken is the old entry looked at and
        # removed: most names of a layer are new, so this saves a stat per entry.
        if member.isdir():
            try:
                os.mkdir(base, 0o700, dir_fd=dir_fd)
            except FileExistsError:
                old = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
                if not stat.S_ISDIR(old.st_mode):  # a directory is kept, all else replaced
                    _remove(dir_fd, base)
                    os.mkdir(base, 0o700, dir_fd=dir_fd)
        elif member.isreg():
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = _replacing(dir_fd, base, lambda: os.open(base, flags, 0o600, dir_fd=dir_fd))
            try:
                self.copy_data(tar, member, fd)
                self.set_attrs(fd, member)
            finally:
                os.close(fd)
        elif link is not None:
            _replacing(dir_fd, base, lambda: self.hard_link(dir_fd, base, member, link))
        elif member.issym():
            _replacing(dir_fd, base, lambda: os.symlink(member.linkname, base, dir_fd=dir_fd))
            if self.same_owner:
                os.chown(base, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
            ns = int(member.mtime * 1e9)
            os.utime(base, ns=(ns, ns), dir_fd=dir_fd, follow_symlinks=False)
        elif member.ischr() or member.isblk() or member.isfifo():
            _replacing(dir_fd, base, lambda: self.special(dir_fd, base, member))
        else:
            raise LayerError(
                f"layer entry {member.name!r}: tar entry type {member.type!r} is not a file, "
                "directory, link, device or FIFO, so it cannot be unpacked",
                fix="rebuild the layer with a tool that writes standard tar entries",
            )

    def copy_data(self, tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int) -> None:
        """Write the entry's bytes, within the size cap; a truncated archive names the entry."""
        try:
            if self.left is not None:  # size: what is written (a sparse entry reads less)
                self.left -= member.size
                if self.left < 0:
                    raise _too_big(self.limit)
            if member.sparse is None and member.size <= _CHUNK:
                # a small file, the common case: its bytes straight from the stream, which
                # stands at them (tarfile's own extractfile builds three objects to do this)
                tar.fileobj.seek(member.offset_data)
                data = tar.fileobj.read(member.size)
                if len(data) != member.size:
                    raise tarfile.ReadError("unexpected end of data")
                _write_all(fd, data)
                return
            src = tar.extractfile(member)
            while block := src.read(_CHUNK):  # never more than member.size in all
                _write_all(fd, block)
        except tarfile.TarError as exc:
            raise LayerError(
                f"layer entry {member.name!r}: the archive is cut short ({exc})",
                fix="download the layer again",
            ) from None
        except LayerError as exc:  # the size cap, or broken compressed data
            raise LayerError(f"layer entry {member.name!r}: {exc.message}", fix=exc.fix) from None

    def hard_link(self, dir_fd: int, base: str, member: tarfile.TarInfo, link: str) -> None:
        parent, target = _split(link)
        try:
            src_fd, _ = self.open_parent(member.name, parent, create=False)
        except FileNotFoundError:
            raise _missing_link(member.name, link) from None
        try:
            os.link(target, base, src_dir_fd=src_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise _missing_link(member.name, link) from None
        except PermissionError:
            raise UnsafeLayerError(member.name, f"cannot hard-link to {link!r}") from None
        finally:
            os.close(src_fd)

    def special(self, dir_fd: int, base: str, member: tarfile.TarInfo) -> None:
        if member.isfifo():
            os.mkfifo(base, 0o600, dir_fd=dir_fd)
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            device = os.makedev(member.devmajor, member.devminor)
            try:
                os.mknod(base, kind | 0o600, device, dir_fd=dir_fd)
            except PermissionError:
                return  # rootless: no CAP_MKNOD, so no device nodes (as umoci and buildah)
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            self.set_attrs(f"/proc/self/fd/{fd}", member)  # never opens the device itself
        finally:
            os.close(fd)

    def finish_dir(self, path: str, member: tarfile.TarInfo) -> None:
        parent, base = _split(path)
        try:
            dir_fd, _ = open_dir(self.root_fd, parent)
        except OSError:
            return  # removed or replaced later in this layer
        try:
            with _opened_child_dir(dir_fd, base or ".", os.O_RDONLY) as fd:
                if fd is not None:
                    self.set_attrs(fd, member)
        finally:
            os.close(dir_fd)

    def set_attrs(self, target: int | str, member: tarfile.TarInfo) -> None:
        """Owner, then mode (chown clears setuid), xattrs and mtime of a fd or a path."""
        mode = member.mode & 0o7777
        if self.same_owner:
            os.chown(target, member.uid, member.gid)
        elif not member.isdir():
            mode &= ~(stat.S_ISUID | stat.S_ISGID)  # no owner, no set-id: as GNU tar without -p
        os.chmod(target, mode)
        for key, value in member.pax_headers.items():
            if key == _FILE_CAPS and not self.same_owner:
                continue  # file capabilities are privileges, like setuid: only with owners
            if key.startswith("SCHILY.xattr."):
                try:
                    os.setxattr(target, key[13:], value.encode("utf-8", "surrogateescape"))
                except OSError as exc:
                    if exc.errno not in _IGNORED_XATTR_ERRORS:
                        raise
        ns = int(member.mtime * 1e9)
        os.utime(target, ns=(ns, ns))


def _replacing(dir_fd: int, base: str, make: Callable[[], T]) -> T:
    """``make()``, which creates ``base`` and refuses an existing name (``O_EXCL``,
    ``symlink``, ``link``, ``mknod``): if the name is taken, the old entry is removed
    (never followed) and ``make()`` tried once more."""
    try:
        return make()
    except FileExistsError:
        _remove(dir_fd, base)
        return make()


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextlib.contextmanager
def _opened_child_dir(dir_fd: int, name: str, flags: int = os.O_PATH) -> Iterator[int | None]:
    """``name`` in ``dir_fd`` opened as a directory, never through a symlink; else None."""
    try:
        fd = os.open(name, flags | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _remove(dir_fd: int, name: str) -> None:
    """Remove ``name`` (a whole tree if it is a directory) without following links."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)
