"""Hostile layers: every case of ``tests/hostile.py``, as root and as nobody, with canaries.

Each case is unpacked into ``BASE/root``, next to canary files that an escape could
reach: ``BASE/canary.txt`` (``../``), ``BASE/outside/…`` (absolute names and links),
all owned by ``nobody`` so that an unprivileged escape could write them too. Before and
after, the whole of ``BASE`` outside the target is listed — path, type, mode, owner,
size, link count, mtime, ctime, content hash, link target — and must not change. The
promised outcome is then checked: the error's type, its words and the entry it names,
or the exact tree left in the target.

The unprivileged runs fork a child that drops to ``nobody`` after every import (the
pyenv Python lives under ``/root``, mode 700), so they need root to start.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import hostile
import pytest
import requests

from hardway.cli import main
from hardway.distribution import registry as client
from hardway.distribution.registry import Registry
from hardway.errors import DigestMismatchError, InvalidImageError, LayerError, UnsafeLayerError
from hardway.image import layout
from hardway.image.apply import apply_layer, apply_layers, default_max_size
from hardway.image.blobs import StoredImage
from hardway.image.compression import EXPANSION_FLOOR, MAX_EXPANDED_SIZE, expansion_limit
from hardway.image.descriptor import Descriptor
from hardway.image.mediatypes import DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST
from hardway.image.random import random_image
from hardway.image.unpack import unpack_image

NOBODY = 65534
ROOT = os.geteuid() == 0


# --- the surroundings and how we look at them ----------------------------------------------


@dataclass
class Place:
    base: Path  # everything here but root/ must stay as it is
    out: Path  # a directory outside the target, full of canaries
    root: Path  # the target

    def format(self, text: str) -> str:
        return text.format(out=self.out, rout=str(self.out).lstrip("/"))


@pytest.fixture
def place():
    """A world-readable directory (nobody must be able to reach it) with canaries."""
    base = Path(tempfile.mkdtemp(prefix="hardway-hostile-"))
    try:
        out, root = base / "outside", base / "root"
        out.mkdir()
        (out / "sub").mkdir()
        for path in (base / "canary.txt", out / "canary.txt", out / "sub" / "keep"):
            path.write_text("original")
            os.chmod(path, 0o666)  # writable by anyone: an escape would succeed
        os.symlink("canary.txt", out / "link")
        os.link(out / "canary.txt", out / "hardlink")
        root.mkdir()
        os.chmod(base, 0o777)
        if ROOT:
            for path in (base, out, out / "sub", root):
                os.chown(path, NOBODY, NOBODY)
        yield Place(base, out, root)
    finally:
        shutil.rmtree(base)


def _walk(top: Path, skip: Path | None = None):
    """(relative path, lstat, dir fd, name) for everything below ``top``, by descriptors
    (paths longer than PATH_MAX work)."""
    for dirpath, dirnames, filenames, dirfd in os.fwalk(top):
        if skip is not None and Path(dirpath) == skip.parent:
            dirnames[:] = [n for n in dirnames if n != skip.name]
        for name in dirnames + filenames:
            if skip is not None and Path(dirpath, name) == skip:
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), top)
            yield rel, os.stat(name, dir_fd=dirfd, follow_symlinks=False), dirfd, name


def _content(dirfd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    with open(fd, "rb") as fh:
        return fh.read()


def surroundings(place: Place) -> dict[str, tuple]:
    """Every detail of everything in ``base`` except the target's inside."""
    seen = {".": (os.lstat(place.base).st_mode, os.lstat(place.base).st_mtime_ns)}
    for rel, st, dirfd, name in _walk(place.base, skip=place.root):
        data = link = None
        if stat.S_ISREG(st.st_mode):
            data = hashlib.sha256(_content(dirfd, name)).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            link = os.readlink(name, dir_fd=dirfd)
        seen[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_nlink,
                     st.st_mtime_ns, st.st_ctime_ns, data, link)  # fmt: skip
    return seen


def _xattrs(dirfd: int, name: str) -> tuple:
    """``((name, value), …)`` of a file's xattrs, or ``()`` when it has none."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        found = tuple(sorted((n, os.getxattr(fd, n)) for n in os.listxattr(fd)))
    finally:
        os.close(fd)
    return (found,) if found else ()


def tree(root: Path) -> dict[str, tuple]:
    """The target's tree in the spec form of ``hostile.F/D/L``."""
    found: dict[str, tuple] = {}
    for rel, st, dirfd, name in _walk(root):
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISREG(st.st_mode):
            found[rel] = ("file", mode, _content(dirfd, name), *_xattrs(dirfd, name))
        elif stat.S_ISDIR(st.st_mode):
            found[rel] = ("dir", mode)
        elif stat.S_ISLNK(st.st_mode):
            found[rel] = ("symlink", os.readlink(name, dir_fd=dirfd))
        elif stat.S_ISFIFO(st.st_mode):
            found[rel] = ("fifo", mode)
        else:
            kind = "chr" if stat.S_ISCHR(st.st_mode) else "blk"
            found[rel] = (kind, mode, (os.major(st.st_rdev), os.minor(st.st_rdev)))
    return found


def expected_tree(case: hostile.Case, place: Place) -> dict[str, tuple]:
    """The case's tree with paths filled in; unlisted parents are directories 0755."""
    want = {place.format(k): tuple(place.format(x) if isinstance(x, str) else x for x in v)
            for k, v in case.tree.items()}  # fmt: skip
    for path in list(want):
        parts = path.split("/")
        for i in range(1, len(parts)):
            want.setdefault("/".join(parts[:i]), ("dir", 0o755))
    return want


# --- unpacking, as root here or as nobody in a child ----------------------------------------


@dataclass
class Failure:
    names: list[str]  # the exception's class and its bases
    message: str
    entry: str | None


def _failure(exc: BaseException) -> Failure:
    names = [c.__name__ for c in type(exc).__mro__]
    return Failure(names, str(exc), getattr(exc, "entry", None))


def _apply(case: hostile.Case, blobs: list[bytes], root: Path) -> Failure | None:
    try:
        apply_layers([io.BytesIO(b) for b in blobs], root, **case.options)
    except Exception as exc:
        return _failure(exc)
    return None


def unpack_as_nobody(case: hostile.Case, blobs: list[bytes], root: Path) -> Failure | None:
    """Fork, drop to nobody (after every import: /root is mode 700), apply, report."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.environ.update(case.env)
            failure = _apply(case, blobs, root)
            report = None if failure is None else failure.__dict__
            os.write(write, json.dumps(report).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        report = json.loads(pipe.read() or b"null")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child crashed"
    return None if report is None else Failure(**report)


RUNS = [pytest.param(case, user, id=f"{case.id}-{user}") for case in hostile.CASES
        for user in case.users]  # fmt: skip


@pytest.mark.skipif(not ROOT, reason="needs root: to run as root and to become nobody")
@pytest.mark.parametrize(("case", "user"), RUNS)
def test_hostile_layer(case: hostile.Case, user: str, place: Place, monkeypatch) -> None:
    blobs = case.blobs(str(place.out))
    before = surroundings(place)
    if user == "root":
        for name, value in case.env.items():
            monkeypatch.setenv(name, value)
        failure = _apply(case, blobs, place.root)
    else:
        failure = unpack_as_nobody(case, blobs, place.root)

    assert surroundings(place) == before, "something outside the target changed"
    if case.error is None:
        assert failure is None, failure.message
        assert tree(place.root) == expected_tree(case, place)
        return
    assert failure is not None, f"no error; the target holds {sorted(tree(place.root))}"
    assert case.error.__name__ in failure.names, failure.message
    for words in case.message:
        assert place.format(words) in failure.message
    if case.error is not UnsafeLayerError:  # (an unsafe entry has nothing to fix: don't use it)
        assert "To fix:" in failure.message, "every refusal says what to do"
    if case.entry is not None:
        entry = place.format(case.entry)
        if case.error is UnsafeLayerError:
            assert failure.entry == entry
        else:
            assert f"layer entry {entry!r}" in failure.message


def test_the_doc_table_is_current() -> None:
    doc = hostile.DOC.read_text()
    assert hostile.current_section(doc) == hostile.render(), (
        "docs/bad-input.md is out of date: run .venv/bin/python tests/hostile.py --write"
    )


def test_every_case_is_in_the_table_and_ids_are_unique() -> None:
    ids = [case.id for case in hostile.CASES]
    assert len(ids) == len(set(ids))
    table = hostile.render()
    assert all(f"`{i}`" in table for i in ids)


# --- the expanded-size cap: its default and how to change it --------------------------------


def test_the_default_cap_follows_the_compressed_size(monkeypatch) -> None:
    monkeypatch.delenv("HARDWAY_MAX_LAYER_SIZE", raising=False)
    assert default_max_size(io.BytesIO(bytes(10 << 20))) == expansion_limit(10 << 20)
    assert expansion_limit(10 << 20) == 1000 << 20
    assert default_max_size(io.BytesIO(b"small")) == EXPANSION_FLOOR
    with tempfile.TemporaryFile() as huge:  # a sparse 20 GiB file
        huge.truncate(20 << 30)
        assert default_max_size(huge) == 20 << 30, "a plain tar is never refused for its size"
    stream = io.BytesIO(bytes(1 << 30))
    stream.seek((1 << 30) - 1000)  # what is left to read is what counts
    assert default_max_size(stream) == EXPANSION_FLOOR
    pipe_r, pipe_w = os.pipe()
    with os.fdopen(pipe_r, "rb") as pipe:
        os.close(pipe_w)
        assert default_max_size(pipe) == MAX_EXPANDED_SIZE  # a pipe: only the absolute cap


def test_the_environment_replaces_the_cap(monkeypatch, tmp_path: Path) -> None:
    bomb = hostile.gz(hostile.tar(hostile.f("zeros", bytes(4 << 20))))
    for name in "abcd":
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HARDWAY_MAX_LAYER_SIZE", "2M")
    with pytest.raises(LayerError, match="more than 2097152 bytes"):
        apply_layer(io.BytesIO(bomb), tmp_path / "a")
    monkeypatch.setenv("HARDWAY_MAX_LAYER_SIZE", "unlimited")
    apply_layer(io.BytesIO(bomb), tmp_path / "b")
    assert (tmp_path / "b" / "zeros").stat().st_size == 4 << 20
    apply_layer(io.BytesIO(bomb), tmp_path / "c", max_size=8 << 20)  # the argument wins
    monkeypatch.setenv("HARDWAY_MAX_LAYER_SIZE", "lots")
    with pytest.raises(LayerError, match="HARDWAY_MAX_LAYER_SIZE='lots': not a size") as bad:
        apply_layer(io.BytesIO(bomb), tmp_path / "d")
    assert "unlimited" in bad.value.fix


def test_the_cli_takes_a_cap_and_prints_the_error(tmp_path: Path, capsys) -> None:
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(hostile.gz(hostile.tar(hostile.f("zeros", bytes(4 << 20)))))
    status = main(["layer", "apply", "--max-size", "1M", str(tmp_path / "root"), str(bomb)])
    err = capsys.readouterr().err
    assert status == 1
    assert "error: layer entry 'zeros': the layer unpacks to more than 1048576 bytes" in err
    assert "To fix: if you trust this layer, raise the cap" in err
    assert main(["layer", "apply", "--max-size", "5M", str(tmp_path / "ok"), str(bomb)]) == 0
    assert (tmp_path / "ok" / "zeros").stat().st_size == 4 << 20


# --- blobs and manifests that lie -----------------------------------------------------------


def _tampered(tmp_path: Path, how) -> tuple:
    image = random_image(20_000, 2, seed=1010)
    path = tmp_path / "layout"
    layout.write_image(image, path, tag="t")
    blob = layout.blob_path(path, image.layers()[1].digest)
    blob.write_bytes(how(blob.read_bytes()))
    return layout.read_image(path, "t"), blob


@pytest.mark.parametrize(
    ("how", "words"),
    [
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "the bytes hash to"),
        (lambda b: b + b"\0", "more than the"),
        (lambda b: b[:-10], "but its descriptor says"),
    ],
    ids=["flipped-bit", "longer", "shorter"],
)
def test_a_lying_blob_is_refused_before_anything_is_unpacked(tmp_path: Path, how, words) -> None:
    image, _ = _tampered(tmp_path, how)
    root = tmp_path / "root"
    with pytest.raises(DigestMismatchError, match=words) as caught:
        unpack_image(image, root)
    assert "corrupt or was tampered with" in str(caught.value)
    # not even the good first layer: all are checked first, and an unpack that fails
    # leaves no root (nor its .root.partial-* work directory) behind
    assert sorted(os.listdir(tmp_path)) == ["layout"]


def test_a_manifest_whose_type_disagrees_with_its_content_type(registry) -> None:
    """The real registry refuses the PUT; our client refuses such a GET (test_registry)."""
    image = random_image(100, 1, seed=1011)
    host = f"127.0.0.1:{registry.port}"
    client.push(image, f"{host}/confused:ok")
    with Registry(host) as reg:
        assert json.loads(image.raw_manifest())["mediaType"] == OCI_MANIFEST
        with pytest.raises(requests.HTTPError) as caught:
            reg.put_manifest("confused", "v1", image.raw_manifest(), DOCKER_MANIFEST)
        assert caught.value.code == "MANIFEST_INVALID"
        assert "Content-Type that does not match its mediaType" in str(caught.value)
        assert reg.head_manifest("confused", "v1") is None  # nothing was stored


def test_a_config_with_fewer_diff_ids_than_layers_is_refused() -> None:
    image = random_image(100, 2, seed=1012)
    config = json.loads(image.raw_config())
    config["rootfs"]["diff_ids"].pop()
    raw_config = json.dumps(config).encode()
    manifest = json.loads(image.raw_manifest())
    manifest["config"] = Descriptor.of(raw_config, OCI_CONFIG).to_dict()
    lying = StoredImage(json.dumps(manifest).encode(), raw_config, image.open_blob)
    with pytest.raises(InvalidImageError, match="lists 2 layer\\(s\\) but the config 1 diff_id"):
        lying.layers()
