"""The pipelined pull (hardway.image.pipeline, hardway.image.unpack): layers download at the
same time and are applied in order, a later layer's whiteouts see the earlier layers'
files, and a bad blob or diff_id — found while an earlier layer is still being applied —
leaves nothing behind. The overlap is proved by events (a layer's download waits until a
later one has finished), never by timing."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from hardway.errors import DigestMismatchError
from hardway.image.blobs import BlobLayer
from hardway.image.digest import sha256_digest
from hardway.image.entries import Entry, tree_entries
from hardway.image.layers import write_entries
from hardway.image.mutate import append_layers, empty_image
from hardway.image.pipeline import CHUNK, Cancelled, Downloads, ReadAhead, Spool
from hardway.image.unpack import unpack_image

# --- the parts -------------------------------------------------------------------------


def test_a_spool_without_a_reader_keeps_what_is_over_its_memory_in_its_file(
    tmp_path: Path,
) -> None:
    data = os.urandom(5 * CHUNK + 123)
    spool = Spool(str(tmp_path / "0.layer"), memory=2 * CHUNK)
    spool.fill(lambda: io.BytesIO(data))
    spool.wait()
    assert os.path.getsize(tmp_path / "0.layer") == len(data) - 2 * CHUNK  # the rest: memory
    reader = spool.reader()
    assert b"".join(iter(lambda: reader.read(1000), b"")) == data
    spool.close()
    assert not (tmp_path / "0.layer").exists()


def test_a_spool_with_a_reader_waits_for_it_instead_of_writing_the_file(tmp_path: Path) -> None:
    data = os.urandom(40 * CHUNK)
    spool = Spool(str(tmp_path / "0.layer"), memory=2 * CHUNK)
    reader = spool.reader()
    reader.read(0)  # the reader is there before the download starts
    filler = threading.Thread(target=spool.fill, args=(lambda: io.BytesIO(data),))
    filler.start()
    got = b"".join(iter(lambda: reader.read(CHUNK), b""))
    filler.join()
    assert got == data
    assert os.path.getsize(tmp_path / "0.layer") == 0
    spool.close()


def test_a_failed_download_reaches_the_reader_after_the_bytes_before_it(tmp_path: Path) -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = False

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            if self.sent:
                raise DigestMismatchError("the bytes hash to something else")
            self.sent = True
            return b"first bytes"

    spool = Spool(str(tmp_path / "0.layer"))
    spool.fill(Broken)
    reader = spool.reader()
    assert reader.read(100) == b"first bytes"
    with pytest.raises(DigestMismatchError):
        reader.read(100)
    assert isinstance(spool.failure, DigestMismatchError)
    spool.close()


def test_a_cancelled_spool_stops_its_download_and_its_reader(tmp_path: Path) -> None:
    started, stop = threading.Event(), threading.Event()

    class Endless(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            started.set()
            stop.wait(5)
            return b"x" * 10

    spool = Spool(str(tmp_path / "0.layer"), memory=5)
    filler = threading.Thread(target=spool.fill, args=(Endless,))
    filler.start()
    started.wait(5)
    spool.cancel()
    stop.set()
    filler.join(5)
    assert not filler.is_alive()
    with pytest.raises(Cancelled):
        spool.reader().read(10)
    spool.close()


def test_read_ahead_hands_on_the_sources_error_after_its_bytes() -> None:
    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("the disk went away")
            return b"ab"

    ahead = ReadAhead(Failing())
    assert ahead.read(10) + ahead.read(10) == b"abab"
    with pytest.raises(OSError, match="went away"):
        ahead.read(10)
    ahead.close()


def test_downloads_start_in_layer_order(tmp_path: Path) -> None:
    opened: list[int] = []
    lock = threading.Lock()

    def opener(i: int) -> Callable[[], BinaryIO]:
        def go() -> BinaryIO:
            with lock:
                opened.append(i)
            return io.BytesIO(b"%d" % i)

        return go

    with Downloads(str(tmp_path), [opener(i) for i in range(8)], jobs=1) as spools:
        for spool in spools:
            spool.wait()
        assert [s.reader().read(10) for s in spools] == [b"%d" % i for i in range(8)]
    assert opened == list(range(8))
    assert list(tmp_path.iterdir()) == []  # every spool file is gone


# --- whole images ----------------------------------------------------------------------


def _layer(tmp_path: Path, name: str, files: dict[str, bytes], whiteouts: list[str]) -> BlobLayer:
    """A gzip layer of ``files`` plus whiteout entries, as a blob in a file."""
    src = tmp_path / f"src-{name}"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    src.mkdir(exist_ok=True)
    entries = [*tree_entries(src), *(Entry(w) for w in whiteouts)]
    blob = tmp_path / f"{name}.tar.gz"
    info = write_entries(entries, blob, source_date_epoch=0)
    from hardway.image.mutate import file_layer

    return file_layer(blob, info, info.media_type("oci"))


def _three_layers(tmp_path: Path) -> list[BlobLayer]:
    return [
        _layer(tmp_path, "l0", {"a/x": b"x", "a/y": b"y" * 300_000, "b": b"b"}, []),
        _layer(tmp_path, "l1", {"c": b"c"}, ["a/.wh.x"]),
        _layer(tmp_path, "l2", {"a/z": b"z"}, [".wh.b"]),
    ]


class _Gated(io.RawIOBase):
    """A blob stream that stops after its first block until ``gate`` is set (or 10 s)."""

    def __init__(self, stream: BinaryIO, gate: threading.Event, opened: threading.Event) -> None:
        self._stream, self._gate, self._first = stream, gate, True
        self.waited = False
        opened.set()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._first:
            self.waited = self._gate.wait(10)
        self._first = False
        return self._stream.read(min(size, 4096))

    def close(self) -> None:
        self._stream.close()
        super().close()


def _gate_first_layer(layers: list[BlobLayer]) -> tuple[list[BlobLayer], list[_Gated]]:
    """Layer 0 stalls until the last layer's download has been read to its end: only
    concurrent downloads let the unpack finish without the 10 s fallback."""
    last_done, opened = threading.Event(), threading.Event()
    first, last = layers[0], layers[-1]

    class Watched(io.RawIOBase):
        def __init__(self, stream: BinaryIO) -> None:
            self._stream = stream

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            data = self._stream.read(size)
            if not data:
                last_done.set()
            return data

        def close(self) -> None:
            self._stream.close()
            super().close()

    streams: list[_Gated] = []

    def gate(digest):
        streams.append(_Gated(first.opener(digest), last_done, opened))
        return streams[-1]

    gated = BlobLayer(first.descriptor, first.diff_id, gate)
    watched = BlobLayer(last.descriptor, last.diff_id, lambda d: Watched(last.opener(d)))
    return [gated, *layers[1:-1], watched], streams


def test_layers_download_together_and_apply_in_order(tmp_path: Path) -> None:
    layers, streams = _gate_first_layer(_three_layers(tmp_path))
    image = append_layers(empty_image(), layers)
    root = tmp_path / "root"
    unpack_image(image, root)
    assert [s.waited for s in streams] == [True], "the last layer came while the first waited"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert files == ["a", "a/y", "a/z", "c"]  # x and b whited out by the later layers
    assert (root / "a" / "y").read_bytes() == b"y" * 300_000
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["l0.tar.gz", "l1.tar.gz", "l2.tar.gz", "root", "src-l0", "src-l1", "src-l2"]
    )


def test_one_download_at_a_time_gives_the_same_tree(tmp_path: Path) -> None:
    image = append_layers(empty_image(), _three_layers(tmp_path))
    unpack_image(image, tmp_path / "one", downloads=1)
    unpack_image(image, tmp_path / "three", downloads=3)
    tree = [
        sorted(str(p.relative_to(tmp_path / n)) for p in (tmp_path / n).rglob("*"))
        for n in ("one", "three")
    ]
    assert tree[0] == tree[1] == ["a", "a/y", "a/z", "c"]


def _corrupt(layer: BlobLayer) -> BlobLayer:
    def opener(digest):
        data = bytearray(layer.opener(digest).read())
        data[len(data) // 2] ^= 0xFF
        return io.BytesIO(bytes(data))

    return BlobLayer(layer.descriptor, layer.diff_id, opener)


def test_a_corrupt_later_layer_found_while_the_first_applies_leaves_nothing(
    tmp_path: Path,
) -> None:
    layers = _three_layers(tmp_path)
    layers[2] = _corrupt(layers[2])
    gated, _ = _gate_first_layer(layers)  # layer 0 applies while layer 2 fails
    image = append_layers(empty_image(), gated)
    with pytest.raises(DigestMismatchError, match="corrupt or was tampered with"):
        unpack_image(image, tmp_path / "root")
    assert not (tmp_path / "root").exists()
    assert not list(tmp_path.glob(".root.partial-*"))


def test_a_layer_whose_tar_is_not_its_diff_id_leaves_nothing(tmp_path: Path) -> None:
    good = _three_layers(tmp_path)[0]
    lying = BlobLayer(good.descriptor, sha256_digest(b"another tar"), good.opener)
    image = append_layers(empty_image(), [lying])
    with pytest.raises(DigestMismatchError, match="diff_id"):
        unpack_image(image, tmp_path / "root")
    assert not (tmp_path / "root").exists()
    assert not list(tmp_path.glob(".root.partial-*"))


def test_on_top_of_a_tree_every_layer_is_checked_before_anything_is_written(
    tmp_path: Path,
) -> None:
    layers = _three_layers(tmp_path)
    layers[2] = _corrupt(layers[2])
    root = tmp_path / "root"
    root.mkdir()
    (root / "kept").write_text("mine")
    with pytest.raises(DigestMismatchError):
        unpack_image(append_layers(empty_image(), layers), root)
    assert sorted(os.listdir(root)) == ["kept"]
