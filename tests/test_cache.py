"""The Jib-style cache: sharded blobs, selectors, atomic writes, concurrency, LRU prune.

Interruptions are real: ``KeyboardInterrupt`` raised inside a writer, and a child
process killed with ``SIGKILL`` in the middle of a blob. Concurrency is real: several
processes write the same blob and selector at once. LRU order is set with explicit
mtimes (no sleeps).
"""

from __future__ import annotations

import doctest
import hashlib
import io
import multiprocessing
import os
import signal
import tarfile
from pathlib import Path

import pytest

import hardway.build.cache
import hardway.sys.atomic
from hardway import cli
from hardway.build.cache import Cache, key_of
from hardway.errors import BadDigestError, DigestMismatchError, ImageNotFoundError
from hardway.image.digest import Digest, sha256_digest
from hardway.image.entries import tree_entries
from hardway.image.layers import LayerInfo, write_entries


def test_doctests() -> None:
    for module in (hardway.build.cache, hardway.sys.atomic):
        assert doctest.testmod(module).failed == 0


def _put(cache: Cache, data: bytes) -> Digest:
    with cache.blob_writer() as writer:
        writer.write(data)
    return writer.digest


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_blobs_are_sharded_verified_and_atomic(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    data = os.urandom(3000)
    digest = _put(cache, data)
    assert digest == sha256_digest(data)
    path = cache.blob_path(digest)
    assert path == tmp_path / "c/blobs/sha256" / digest.encoded[:2] / digest.encoded
    assert path.read_bytes() == data and cache.has_blob(digest, len(data))
    assert not cache.has_blob(digest, len(data) + 1)
    with cache.open_blob(digest, len(data)) as reader:
        assert reader.read() == data
    assert list((tmp_path / "c/tmp").iterdir()) == []
    path.write_bytes(data[:-1] + b"!")  # corrupted on disk: reading it fails
    with pytest.raises(DigestMismatchError), cache.open_blob(digest) as reader:
        reader.read()
    with pytest.raises(ImageNotFoundError, match="not in the cache"):
        cache.open_blob(sha256_digest(b"nothing"))


def test_a_writer_checks_the_expected_digest_and_size(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    want = sha256_digest(b"right")
    with pytest.raises(DigestMismatchError), cache.blob_writer(want, 5) as writer:
        writer.write(b"wrong")
    with pytest.raises(DigestMismatchError), cache.blob_writer(want, 6) as writer:
        writer.write(b"right")
    assert not cache.has_blob(want) and cache.usage().blobs == 0
    assert list(cache.tmp_dir.iterdir()) == []
    assert cache.put_stream(io.BytesIO(b"right"), want, 5).digest == want
    assert cache.put_bytes(b"right").size == 5 and cache.usage().blobs == 1


def test_ctrl_c_inside_a_writer_leaves_nothing(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    with pytest.raises(KeyboardInterrupt), cache.blob_writer() as writer:
        writer.write(b"half a blob")
        assert len(list(cache.tmp_dir.iterdir())) == 1  # it was on disk, in tmp/
        raise KeyboardInterrupt
    assert list(cache.tmp_dir.iterdir()) == []
    assert cache.usage() == hardway.build.cache.Usage(0, 0, 0)


def _write_forever(root: str, ready: multiprocessing.synchronize.Event) -> None:
    cache = Cache(root)
    with cache.blob_writer() as writer:
        writer.write(b"x" * 100_000)
        writer.flush()
        ready.set()
        signal.pause()


def test_a_writer_killed_mid_blob_leaves_no_blob_and_clean_removes_its_file(
    tmp_path: Path,
) -> None:
    cache = Cache(tmp_path)
    ready = multiprocessing.Event()
    child = multiprocessing.Process(target=_write_forever, args=(str(tmp_path), ready))
    child.start()
    try:
        assert ready.wait(30)
        live = list(cache.tmp_dir.iterdir())
        assert len(live) == 1 and live[0].stat().st_size == 100_000
        assert cache.clean() == 0 and live[0].exists()  # its writer still runs: kept
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    assert child.exitcode == -signal.SIGKILL
    assert cache.usage().blobs == 0 and not (tmp_path / "blobs").exists()
    assert cache.clean() == 1
    assert list(cache.tmp_dir.iterdir()) == []


def _write_same(root: str, rounds: int) -> None:
    cache = Cache(root)
    data = bytes(range(256)) * 4000
    info = LayerInfo(sha256_digest(data), sha256_digest(b"tar"), len(data), "gzip")
    for _ in range(rounds):
        with cache.blob_writer(info.digest, info.size) as writer:
            for at in range(0, len(data), 4096):
                writer.write(data[at : at + 4096])
        cache.put_selector(key_of("same"), info, {"by": str(os.getpid())})
        hit = cache.get_selector(key_of("same"))
        assert hit is not None and hit.layer == info
        with cache.open_blob(info.digest, info.size) as reader:
            assert reader.read() == data


def test_concurrent_writers_of_the_same_blob_and_selector_all_succeed(tmp_path: Path) -> None:
    workers = [
        multiprocessing.Process(target=_write_same, args=(str(tmp_path), 10)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    cache = Cache(tmp_path)
    assert cache.usage() == hardway.build.cache.Usage(1, 256 * 4000, 1)
    assert list(cache.tmp_dir.iterdir()) == []
    assert cache.get_selector(key_of("same")).annotations["by"].isdigit()


def test_selectors_map_keys_to_layers_and_a_dangling_one_is_a_miss(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    data = b"layer bytes"
    info = LayerInfo(sha256_digest(data), sha256_digest(b"tar"), len(data), "gzip", "c")
    key = key_of({"files": ["a"], "compression": "gzip"})
    assert cache.get_selector(key) is None
    with pytest.raises(ImageNotFoundError, match="write the blob first"):
        cache.put_selector(key, info)
    _put(cache, data)
    cache.put_selector(key, info, {"step": "COPY . /app"})
    path = cache.selector_path(key)
    assert path == tmp_path / "selectors" / key[:2] / key
    hit = cache.get_selector(key)
    assert hit.layer == info and hit.annotations == {"step": "COPY . /app"}
    assert cache.layer(hit.layer).media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    cache.blob_path(info.digest).unlink()  # pruned by someone else
    assert cache.get_selector(key) is None
    with pytest.raises(ImageNotFoundError):
        cache.layer(info)
    assert cache.clean() == 1 and not path.exists()
    for bad in ("../../etc/passwd", "AB" * 32, "ab" * 31):
        with pytest.raises(BadDigestError):
            cache.get_selector(bad)


def test_selectors_being_written_are_not_selectors_and_stale_ones_are_cleaned(
    tmp_path: Path,
) -> None:
    cache = Cache(tmp_path)
    info = LayerInfo(_put(cache, b"x"), sha256_digest(b"t"), 1, "gzip")
    cache.put_selector(key_of("k"), info)
    shard = cache.selector_path(key_of("k")).parent
    live = shard / f".tmp-{os.getpid()}-abc"  # a writer of this process, mid-write
    live.write_bytes(b'{"key": "half')
    child = multiprocessing.Process(target=os.getpid)
    child.start()
    child.join()
    dead = shard / f".tmp-{child.pid}-def"  # a writer that was killed
    dead.write_bytes(b"{")
    assert cache.usage().selectors == 1
    assert cache.clean() == 1
    assert live.exists() and not dead.exists() and cache.get_selector(key_of("k")) is not None


def test_a_corrupt_selector_is_a_miss(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    key = key_of("k")
    cache.selector_path(key).parent.mkdir(parents=True)
    cache.selector_path(key).write_bytes(b"{not json")
    assert cache.get_selector(key) is None


def test_write_layer_streams_into_the_cache_in_one_pass(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"app/main.py": b"print(1)\n", "app/data.bin": os.urandom(5000)})
    cache = Cache(tmp_path / "c")
    info = cache.write_layer(tree_entries(src), source_date_epoch=0)
    again = io.BytesIO()
    assert write_entries(tree_entries(src), again, source_date_epoch=0) == info
    assert cache.blob_path(info.digest).read_bytes() == again.getvalue()
    layer = cache.layer(info)
    with layer.uncompressed() as tar_stream:
        tar_bytes = tar_stream.read()
    assert hashlib.sha256(tar_bytes).hexdigest() == info.diff_id.encoded
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        names = tar.getnames()
    assert names == ["app", "app/data.bin", "app/main.py"]


def _aged(cache: Cache, data: bytes, when: int) -> Digest:
    digest = _put(cache, data)
    os.utime(cache.blob_path(digest), (when, when))
    return digest


def test_prune_removes_least_recently_used_blobs_and_their_selectors(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    old = _aged(cache, b"a" * 100, 1_000)
    middle = _aged(cache, b"b" * 100, 2_000)
    new = _aged(cache, b"c" * 100, 3_000)
    for digest in (old, middle, new):
        info = LayerInfo(digest, digest, 100, "gzip")
        cache.put_selector(key_of(str(digest)), info)  # recording is not a use
    assert cache.usage() == hardway.build.cache.Usage(3, 300, 3)
    assert cache.get_selector(key_of(str(old))) is not None  # a hit: old is now the newest
    result = cache.prune(150)
    assert result.removed == (middle, new)
    assert result.freed == 200 and result.selectors_removed == 2
    assert result.usage == hardway.build.cache.Usage(1, 100, 1)
    assert cache.get_selector(key_of(str(middle))) is None
    assert cache.prune(0).removed == (old,) and cache.usage() == hardway.build.cache.Usage(0, 0, 0)


def test_prune_waits_for_builds_holding_the_lock(tmp_path: Path, monkeypatch) -> None:
    """A build holds the lock shared; prune takes it exclusive, so it removes nothing
    until the build is done (a blob in use is never pulled from under it)."""
    import threading

    cache = Cache(tmp_path)
    _put(cache, b"in use by a build")
    listed = threading.Event()
    real = Cache._blobs

    def blobs(self):
        listed.set()
        return real(self)

    monkeypatch.setattr(Cache, "_blobs", blobs)
    pruner = threading.Thread(target=cache.prune, args=(0,))
    with cache.lock():
        pruner.start()
        assert not listed.wait(1.0), "prune looked at the blobs while a build held the lock"
        assert cache.usage().blobs == 1
    pruner.join()
    assert Cache._blobs is blobs and real(cache) == []


def test_default_root_and_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDWAY_CACHE_DIR", str(tmp_path / "env"))
    assert Cache().root == tmp_path / "env"
    _aged(Cache(), b"x" * 10, 1)
    _aged(Cache(), b"y" * 20, 2)
    assert cli.main(["cache", "usage"]) == 0
    assert capsys.readouterr().out == "2 blobs, 30 bytes, 0 selectors\n"
    assert cli.main(["cache", "--dir", str(tmp_path / "env"), "prune", "--max-size", "25"]) == 0
    assert capsys.readouterr().out.startswith("removed 1 blobs (10 bytes)")
    monkeypatch.delenv("HARDWAY_CACHE_DIR")
    assert Cache().root.name == "cache"
