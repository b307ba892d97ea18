"""The layer writer's own tar headers and stream are tarfile's, byte for byte.

``hardway.image.tarwriter`` writes tar headers itself (:func:`tar_header`) and
``hardway.image.layers`` compresses in a second thread: both are speed-ups only, so every
layer must stay exactly what the tarfile-based writer produced — the digests the
notebooks check depend on it. The reference below is that writer, kept here as the oracle.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import stat
import tarfile
import threading
import time
from pathlib import Path

import pytest
import zstandard

from hardway.errors import LayerError
from hardway.image.entries import Entry, tree_entries
from hardway.image.layers import source_epoch, write_entries, write_layer
from hardway.image.tarheaders import parse_header
from hardway.image.tarwriter import tar_header, tar_info
from tests.test_layers import make_tree

ROOT = os.geteuid() == 0


def reference_tar(entries, *, source_date_epoch=None, keep_owners=False) -> bytes:
    """The uncompressed layer as the tarfile-based writer made it."""
    limit = source_epoch(source_date_epoch)
    buf = io.BytesIO()
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tar_info(entry, mtime_limit=limit, keep_owners=keep_owners)
            st = entry.st
            if st is not None and not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                first = links.setdefault((st.st_dev, st.st_ino), entry.name)
                if first != entry.name:
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
            if info.type == tarfile.REGTYPE and info.size and entry.path is not None:
                with open(entry.path, "rb") as src:
                    tar.addfile(info, src)
            else:
                tar.addfile(info)
    return buf.getvalue()


def varied_tree(root: Path, seed: int) -> Path:
    """The tests' random tree plus what it lacks: long and non-ASCII names, owners."""
    rng = random.Random(seed)
    make_tree(root, rng, n=60)
    deep = root / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / "long-file-name").write_bytes(b"x" * 1000)  # a path over 100 characters
    (root / ("n" * 99)).write_bytes(b"99")  # 99 + "/"-less: the ustar limit exactly
    (root / ("m" * 100)).mkdir()  # a directory of 100: 101 with its "/"
    (root / "café").write_text("non-ASCII name")
    (root / os.fsdecode(b"raw-\xff")).write_text("undecodable name")
    os.symlink("ü" * 10, root / "unicode-link")
    os.symlink("l" * 100, root / "link-of-100")
    empty = root / "empty-with-xattr"
    empty.touch()
    os.setxattr(empty, "user.k", b"\xff\x00v")
    if ROOT:
        os.chown(root / "café", 1000, 2_000_000_000)  # a gid too big for 7 octal digits
        os.mknod(root / "blockdev", stat.S_IFBLK | 0o600, os.makedev(8, 1))
    os.utime(root / "café", (-5, -5))  # before 1970: tarfile falls back to PAX
    return root


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("keep_owners", [False, True])
def test_layer_bytes_are_the_tarfile_writers(tmp_path: Path, seed: int, keep_owners: bool) -> None:
    tree = varied_tree(tmp_path / "tree", seed)
    for epoch in (None, 1_500_000_000):
        want = reference_tar(tree_entries(tree), source_date_epoch=epoch, keep_owners=keep_owners)
        out = io.BytesIO()
        write_entries(
            tree_entries(tree),
            out,
            compression="none",
            source_date_epoch=epoch,
            keep_owners=keep_owners,
        )
        assert out.getvalue() == want


def test_whiteouts_and_compression_match_too(tmp_path: Path) -> None:
    tree = varied_tree(tmp_path / "tree", 99)
    entries = [Entry("gone/.wh.old"), Entry("x/.wh..wh..opq"), *tree_entries(tree)]
    want = reference_tar(entries)
    for compression, decompress in (
        ("gzip", gzip.decompress),
        ("zstd", lambda data: zstandard.ZstdDecompressor().stream_reader(data).read()),
        ("none", bytes),
    ):
        out = tmp_path / f"layer.{compression}"
        info = write_entries(entries, out, compression=compression)
        stored = out.read_bytes()
        assert decompress(stored) == want
        assert str(info.diff_id) == f"sha256:{hashlib.sha256(want).hexdigest()}"
        assert str(info.digest) == f"sha256:{hashlib.sha256(stored).hexdigest()}"
        assert info.size == len(stored)


def _random_member(rng: random.Random) -> tarfile.TarInfo:
    kind = rng.choice(
        [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
         tarfile.BLKTYPE, tarfile.FIFOTYPE]
    )  # fmt: skip
    info = tarfile.TarInfo(
        "/".join(rng.choice(["a", "bin", "ü", "x" * 40, "."]) for _ in range(rng.randint(1, 4)))
    )
    info.type = kind
    info.mode = rng.choice([0o644, 0o755, 0o4755, 0o1777, 0o100644])
    info.uid, info.gid = (rng.choice([0, 1000, 8**7 - 1, 8**7, 2**31]) for _ in range(2))
    info.size = rng.choice([0, 1, 511, 8**11 - 1, 8**11]) if kind == tarfile.REGTYPE else 0
    info.mtime = rng.choice([0, 1_700_000_000, 8**11 - 1, 8**11, -1, 1.5])
    info.linkname = rng.choice(["", "target", "t" * 100, "t" * 101, "ö"])
    info.uname, info.gname = rng.choice([("", ""), ("root", "root"), ("u" * 33, "")])
    info.devmajor, info.devminor = rng.choice([(0, 0), (8, 1), (8**7, 0)])
    if rng.random() < 0.2:
        info.pax_headers["SCHILY.xattr.user.k"] = "v"
    return info


@pytest.mark.parametrize("seed", range(200))
def test_tar_header_is_tobuf(seed: int) -> None:
    """Random members, common and odd: the fast header equals tarfile's."""
    info = _random_member(random.Random(seed))
    try:
        want = info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    except ValueError:
        with pytest.raises(ValueError):
            tar_header(info)
        return
    assert tar_header(info) == want


def test_a_file_that_shrinks_while_read_is_a_layer_error(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    big = tmp_path / "tree" / "big"
    big.write_bytes(b"x" * 10_000)
    entries = list(tree_entries(tmp_path / "tree"))
    big.write_bytes(b"x" * 10)
    with pytest.raises(LayerError, match="shrank"):
        write_entries(entries, io.BytesIO())


def test_an_error_mid_layer_stops_the_compressor_and_writes_nothing(tmp_path: Path) -> None:
    """The compressing thread is stopped and the half-written file is removed."""
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "big").write_bytes(os.urandom(3 << 20))

    def entries():
        yield from tree_entries(tmp_path / "tree")
        raise LayerError("boom")

    with pytest.raises(LayerError, match="boom"):
        write_entries(entries(), tmp_path / "layer.tar.gz")
    assert not list(tmp_path.glob("*layer*"))
    assert not [t for t in threading.enumerate() if t.name == "layer-compress"]


def test_a_failing_sink_raises_in_the_caller(tmp_path: Path) -> None:
    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data) -> int:
            raise OSError(28, "No space left on device")

    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "big").write_bytes(os.urandom(6 << 20))
    with pytest.raises(OSError, match="No space"):
        write_layer(tmp_path / "tree", Full())
    assert not [t for t in threading.enumerate() if t.name == "layer-compress"]


def test_a_sink_failing_before_the_end_stops_the_compressor(tmp_path: Path) -> None:
    """The thread fails on the first chunk; the writer only learns of it as it finishes."""
    failed = threading.Event()

    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data) -> int:
            failed.set()
            raise OSError(28, "No space left on device")

    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "big").write_bytes(os.urandom((1 << 20) + 4096))

    def entries():
        yield from tree_entries(tmp_path / "tree")
        assert failed.wait(30)
        time.sleep(0.2)  # let the thread record its error

    with pytest.raises(OSError, match="No space"):
        write_entries(entries(), Full())
    assert not [t for t in threading.enumerate() if t.name == "layer-compress"]


def _frombuf(cls, buf: bytes) -> object:
    """What parsing ``buf`` gives: the TarInfo's fields, or the exception's type."""
    try:
        info = cls(buf)
    except Exception as exc:
        return type(exc)
    if info is None:
        return None
    fields = ("name", "mode", "uid", "gid", "size", "mtime", "chksum", "type", "linkname",
              "uname", "gname", "devmajor", "devminor", "pax_headers", "sparse")  # fmt: skip
    return [getattr(info, f) for f in fields], getattr(info, "_sparse_structs", None)


def _tarfile_parse(buf: bytes) -> object:
    return tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape")


def _fast_parse(buf: bytes) -> object:
    return parse_header(tarfile.TarInfo, buf, "utf-8", "surrogateescape")


@pytest.mark.parametrize("seed", range(40))
def test_the_fast_header_parse_is_tarfiles(seed: int) -> None:
    """Every header tarfile writes (ustar, GNU, PAX; odd names, numbers, types) and
    thousands of damaged ones (bytes flipped, fields overwritten): where the fast parse
    answers, it answers what tarfile's frombuf does; where tarfile refuses a header, the
    fast parse leaves it to tarfile (None), so tarfile's own error is raised."""
    rng = random.Random(seed)
    answered = 0
    for _ in range(100):
        info = _random_member(rng)
        fmt = rng.choice([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
        try:
            blocks = info.tobuf(fmt, "utf-8", "surrogateescape")
        except ValueError:
            continue
        bufs = [blocks[i : i + 512] for i in range(0, len(blocks), 512)]
        for _ in range(5):  # damaged: a byte flipped, or a field full of something odd
            buf = bytearray(rng.choice(bufs))
            if rng.random() < 0.5:
                buf[rng.randrange(512)] ^= 1 << rng.randrange(8)
            else:
                at = rng.choice([0, 100, 108, 124, 136, 148, 156, 157, 257, 329, 345, 500])
                odd = rng.choice(
                    [
                        b"\x80\x00\x01",
                        b"\xff\xff",
                        b" 17 \x00",
                        b"1_7\x00",
                        b"9\x00",
                        b"\xc3\xbc\x00",
                        b"\x1c7\x00",
                        b"+7\x00",
                        b"0o7\x00",
                        b"\x00" * 12,
                    ]
                )
                buf[at : at + len(odd)] = odd
                if rng.random() < 0.5:  # with a checksum that fits again
                    buf[148:156] = b"        "
                    buf[148:156] = b"%06o\x00 " % sum(buf)
            bufs.append(bytes(buf))
        bufs += [bytes(512), b"", bytes(100)]
        for buf in bufs:
            fast = _frombuf(_fast_parse, buf)
            if fast is None:
                continue
            answered += 1
            assert fast == _frombuf(_tarfile_parse, buf), buf
    assert answered > 100  # the fast parse really answers most headers
