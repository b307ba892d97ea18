"""Layers: deterministic tars, digests vs diff_ids, diffs, whiteouts, safe apply.

The trees are random (seeded) and nasty on purpose: long and non-ASCII names, hard
links, symlinks, setuid bits, xattrs, FIFOs and device nodes. Every result is compared
with an independent reading of the disk (``snapshot``), and with real tools: GNU tar
reads what we write, umoci builds images whose layers we apply and applies layers we
write, and the kernel's overlayfs makes upper directories we convert.
"""

from __future__ import annotations

import doctest
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import stat
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import zstandard

import hardway.image.apply
import hardway.image.commands
import hardway.image.compression
import hardway.image.diff
import hardway.image.entries
import hardway.image.layers
import hardway.image.overlay
import hardway.image.tarwriter
import hardway.image.whiteouts
from hardway import cli
from hardway.errors import LayerError, UnsafeLayerError
from hardway.image.apply import apply_layer, apply_layers
from hardway.image.compression import (
    GZIP,
    GZIP_HEADER,
    NONE,
    ZSTD,
    choose_codec,
    detect_compression,
)
from hardway.image.diff import diff_layer
from hardway.image.layers import write_layer
from hardway.image.overlay import overlay_layer
from hardway.image.whiteouts import apply_names

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (owners, device nodes, mounts)")
SDE = 1_700_000_000
REG, SYM, LNK, DIR = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE


# --- an independent view of a tree --------------------------------------------------------


def snapshot(root: Path, *, mtimes: bool = True, xattrs: bool = True) -> dict[str, tuple]:
    """Every entry under ``root``: type, mode, owner, content, link, xattrs, mtime, links."""
    out: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            kind = stat.filemode(st.st_mode)[0]
            if kind == "-":
                extra: object = hashlib.sha256(path.read_bytes()).hexdigest()
            elif kind == "l":
                extra = os.readlink(path)
            elif kind in "cb":
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                extra = None
            attrs = ()
            if xattrs and kind in "-d":
                attrs = tuple(
                    sorted((n, os.getxattr(path, n)) for n in os.listxattr(path) if "user." in n)
                )
            when = int(st.st_mtime) if mtimes and kind not in "d" else None
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra, attrs, when)
            if kind != "d" and st.st_nlink > 1:
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    for names in inodes.values():  # the same inode: name the group by its first name
        for name in names:
            out[name] += (min(names),)
    return out


def assert_same_tree(got: Path, want: Path, **kw: bool) -> None:
    a, b = snapshot(got, **kw), snapshot(want, **kw)
    assert sorted(a) == sorted(b), "different names"
    diffs = {name: (a[name], b[name]) for name in a if a[name] != b[name]}
    assert not diffs, f"{len(diffs)} entries differ, e.g. {next(iter(diffs.items()))}"


# --- random trees -------------------------------------------------------------------------

NAMES = ["a", "bin", "etc", "café", "日本語", "-dash", ".hidden", "with space", "x" * 120]


def _fresh(parent: Path, rng: random.Random) -> Path:
    while True:
        path = parent / f"{rng.choice(NAMES)}{rng.randint(0, 99)}"
        if not os.path.lexists(path):
            return path


def _file(path: Path, rng: random.Random, mode: int | None = None) -> None:
    size = rng.choice([0, 1, 100, 511, 512, 513, 4000, 70_000])
    path.write_bytes(rng.randbytes(size // 2) + b"z" * (size - size // 2))
    os.chmod(path, mode if mode is not None else rng.choice([0o644, 0o755, 0o600, 0o4755, 0o2711]))
    os.utime(path, (rng.randint(1_000_000_000, 1_600_000_000),) * 2)


def make_tree(root: Path, rng: random.Random, n: int = 40) -> None:
    """A random tree with every kind of entry a root filesystem has."""
    root.mkdir(exist_ok=True)
    dirs, files = [root], []
    for _ in range(n):
        parent = rng.choice(dirs)
        path = _fresh(parent, rng)
        kind = rng.choices(["dir", "file", "symlink", "hardlink", "fifo", "dev", "xattr"],
                           [4, 8, 2, 2, 1, 1, 1])[0]  # fmt: skip
        if kind == "dir":
            path.mkdir(mode=rng.choice([0o755, 0o700, 0o1777]))
            os.chmod(path, path.stat().st_mode | 0o700)
            dirs.append(path)
        elif kind == "symlink":
            os.symlink(rng.choice(["/etc/passwd", "../a", "nowhere", "x" * 150, "."]), path)
        elif kind == "hardlink" and files:
            os.link(rng.choice(files), path)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "dev" and ROOT:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        else:
            _file(path, rng)
            if kind == "xattr":
                os.setxattr(path, "user.course", rng.randbytes(4))
            files.append(path)
    for path in [*dirs[1:], root]:
        os.utime(path, (1_000_000_000, 1_000_000_000))


def mutate(root: Path, rng: random.Random, steps: int = 12) -> None:
    """Change a tree the way a build step does: delete, replace, edit, relink."""
    for _ in range(steps):
        entries = sorted(p for p in root.rglob("*"))
        dirs = [p for p in entries if p.is_dir() and not p.is_symlink()]
        files = [p for p in entries if p.is_file() and not p.is_symlink()]
        op = rng.choice(["rm", "rmdir", "opaque", "edit", "chmod", "add", "file2dir",
                         "dir2file", "link", "unlink", "symlink"])  # fmt: skip
        if op == "rm" and files:
            rng.choice(files).unlink()
        elif op == "rmdir" and dirs:
            shutil.rmtree(rng.choice(dirs))
        elif op == "opaque" and dirs:  # the same directory, none of its old content
            victim = rng.choice(dirs)
            shutil.rmtree(victim)
            victim.mkdir()
            _file(victim / "fresh", rng)
        elif op == "edit" and files:
            target = rng.choice(files)
            with open(target, "r+b") as fh:
                fh.write(b"edited")
        elif op == "chmod" and files:
            os.chmod(rng.choice(files), rng.choice([0o600, 0o4755, 0o640]))
        elif op == "file2dir" and files:
            victim = rng.choice(files)
            victim.unlink()
            victim.mkdir()
            _file(victim / "inside", rng)
        elif op == "dir2file" and dirs:
            victim = rng.choice(dirs)
            shutil.rmtree(victim)
            _file(victim, rng)
        elif op == "link" and files:
            os.link(rng.choice(files), _fresh(rng.choice([root, *dirs]), rng))
        elif op == "unlink" and files:  # break a hard link: same content, new inode
            victim = rng.choice(files)
            data = victim.read_bytes()
            victim.unlink()
            victim.write_bytes(data)
        elif op == "symlink" and files:
            victim = rng.choice(files)
            victim.unlink()
            os.symlink("/bin/sh", victim)
        else:
            parent = rng.choice([root, *dirs])
            _file(_fresh(parent, rng), rng)


def copy_tree(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-a", f"{src}/.", str(dst)], check=True)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    make_tree(tmp_path / "tree", random.Random(7))
    return tmp_path / "tree"


# --- writing ------------------------------------------------------------------------------


def test_same_tree_same_ids_and_clamped_mtimes(tree: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = write_layer(tree, tmp_path / "1.tgz", source_date_epoch=SDE)
    assert write_layer(tree, tmp_path / "2.tgz", source_date_epoch=SDE) == first
    assert (tmp_path / "1.tgz").read_bytes() == (tmp_path / "2.tgz").read_bytes()
    # a copy made now has new mtimes: clamped to SOURCE_DATE_EPOCH, they vanish
    subprocess.run(["cp", "-r", "--preserve=mode,links,xattr", tree, tmp_path / "copy"], check=True)
    clamp = 1_000_000_000  # older than anything in either tree
    a = write_layer(tree, io.BytesIO(), source_date_epoch=clamp)
    b = write_layer(tmp_path / "copy", io.BytesIO(), source_date_epoch=clamp)
    assert a.diff_id == b.diff_id and a.digest == b.digest
    assert write_layer(tmp_path / "copy", io.BytesIO()).diff_id != a.diff_id  # mtimes count
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(clamp))
    assert write_layer(tmp_path / "copy", io.BytesIO()) == a


def test_digest_diff_id_and_size_describe_the_bytes(tree: Path, tmp_path: Path) -> None:
    for compression, unpack in [
        (GZIP, gzip.decompress),
        (ZSTD, lambda b: zstandard.ZstdDecompressor().stream_reader(io.BytesIO(b)).read()),
        (NONE, lambda b: b),
    ]:
        out = tmp_path / f"layer.{compression}"
        info = write_layer(tree, out, compression=compression, source_date_epoch=SDE)
        blob = out.read_bytes()
        assert info.size == len(blob)
        assert str(info.digest) == "sha256:" + hashlib.sha256(blob).hexdigest()
        assert str(info.diff_id) == "sha256:" + hashlib.sha256(unpack(blob)).hexdigest()
        assert detect_compression(blob[:4]) == compression
        assert info.compression == compression
    assert info.digest == info.diff_id  # uncompressed: one name


def test_compressors_change_the_digest_not_the_diff_id(tree: Path) -> None:
    infos, blobs = [], []
    for impl, level in [("isal", 1), ("isal", 3), ("zlib", 1), ("zlib", 9)]:
        buf = io.BytesIO()
        infos.append(
            write_layer(tree, buf, implementation=impl, level=level, source_date_epoch=SDE)
        )
        blobs.append(buf.getvalue())
        assert buf.getvalue()[:10] == GZIP_HEADER  # no time, no name, whatever the library
        assert infos[-1].codec.startswith(f"gzip ({impl} ") and infos[-1].codec.endswith(
            f" {level})"
        )
    assert len({i.diff_id for i in infos}) == 1
    assert len({i.digest for i in infos}) == 4
    assert len({gzip.decompress(b) for b in blobs}) == 1
    with pytest.raises(LayerError, match="level"):
        choose_codec(GZIP, level=7, implementation="isal")
    with pytest.raises(LayerError, match="unknown compression"):
        choose_codec("bzip2")


def test_media_types() -> None:
    info = write_layer(Path(hardway.image.layers.__file__).parent, io.BytesIO(), compression=ZSTD)
    assert info.media_type() == "application/vnd.oci.image.layer.v1.tar+zstd"
    with pytest.raises(LayerError, match="docker"):
        info.media_type("docker")
    assert replace(info, compression=GZIP).media_type("docker").endswith("rootfs.diff.tar.gzip")


def test_gnu_tar_reads_the_layer_and_extracts_the_same_tree(tree: Path, tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar.gz"
    write_layer(tree, layer, keep_owners=True)
    listing = subprocess.run(["tar", "-tvzf", layer], capture_output=True, text=True, check=True)
    lines = listing.stdout.splitlines()
    assert len(lines) == len(snapshot(tree))
    with tarfile.open(layer) as tar:
        names = tar.getnames()
    assert names == sorted(names, key=lambda n: [os.fsencode(p) for p in n.split("/")])
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(["tar", "-xpzf", layer, "-C", out, "--xattrs", "--xattrs-include=*",
                    "--numeric-owner"], check=True)  # fmt: skip
    assert_same_tree(out, tree)


def test_entry_order_is_gnu_tars_sort_by_name(tree: Path, tmp_path: Path) -> None:
    layer = tmp_path / "ours.tar"
    write_layer(tree, layer, compression=NONE)
    gnu = subprocess.run(["tar", "--sort=name", "-cf", "-", "-C", tree, "."], capture_output=True,
                         check=True).stdout  # fmt: skip
    with tarfile.open(layer) as ours, tarfile.open(fileobj=io.BytesIO(gnu)) as theirs:
        want = [m.name.removeprefix("./") for m in theirs if m.name != "."]
        assert ours.getnames() == want


def test_sockets_are_skipped_and_overlay_redirects_refused(tmp_path: Path) -> None:
    import socket

    (tmp_path / "t").mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "t" / "sock"))
        (tmp_path / "t" / "file").write_text("x")
        assert _tar_of(lambda out: write_layer(tmp_path / "t", out)).getnames() == ["file"]
    if ROOT:
        (tmp_path / "t" / "moved").mkdir()
        os.setxattr(tmp_path / "t" / "moved", "trusted.overlay.redirect", b"/old")
        with pytest.raises(LayerError, match="redirect"):
            overlay_layer(tmp_path / "t", io.BytesIO())


def test_owners_are_zero_unless_kept(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "f").write_text("x")
    if ROOT:
        os.chown(tmp_path / "t" / "f", 1234, 5678)
    default = _tar_of(lambda out: write_layer(tmp_path / "t", out))
    assert [(m.uid, m.gid, m.uname, m.gname) for m in default] == [(0, 0, "", "")]
    kept = _tar_of(lambda out: write_layer(tmp_path / "t", out, keep_owners=True))
    st = (tmp_path / "t" / "f").stat()
    # the reproducibility rule is "no user names", kept owners or not; the ids are content
    assert [(m.uid, m.gid, m.uname, m.gname) for m in kept] == [(st.st_uid, st.st_gid, "", "")]


def test_apply_reads_gnu_tar_archives_too(tree: Path, tmp_path: Path) -> None:
    """GNU tar's own format (./ names, ././@LongLink headers), gzipped by gzip(1)."""
    layer = tmp_path / "gnu.tar.gz"
    subprocess.run(["tar", "-czf", layer, "--format=gnu", "--xattrs", "-C", tree, "."], check=True)
    out = tmp_path / "out"
    out.mkdir()
    apply_layer(layer, out)
    assert_same_tree(out, tree)


# --- diff and apply round trips -----------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_diff_then_apply_gives_back_each_snapshot(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    snaps = [tmp_path / "s0"]
    make_tree(snaps[0], rng)
    for i in (1, 2):
        snaps.append(tmp_path / f"s{i}")
        snaps[-1].mkdir()
        copy_tree(snaps[-2], snaps[-1])
        mutate(snaps[-1], rng)
    layers = [tmp_path / "l0.tgz"]
    write_layer(snaps[0], layers[0])
    for i in (1, 2):
        layers.append(tmp_path / f"l{i}.tzst")
        diff_layer(snaps[i - 1], snaps[i], layers[-1], compression=ZSTD, keep_owners=True)
    root = tmp_path / "root"
    root.mkdir()
    for snap, layer in zip(snaps, layers, strict=True):
        apply_layer(layer, root)
        assert_same_tree(root, snap)


def test_diff_uses_whiteouts_and_opaque_markers(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for tree in (lower, upper):
        (tree / "keep").mkdir(parents=True)
        (tree / "keep" / "same").write_text("same")
    (lower / "keep" / "gone").write_text("x")
    (lower / "gone-dir" / "deep").mkdir(parents=True)
    (lower / "swap").mkdir()
    (lower / "swap" / "old1").write_text("1")
    (lower / "swap" / "old2").write_text("2")
    (upper / "swap").mkdir()
    (upper / "swap" / "new").write_text("n")
    tar = _tar_of(lambda out: diff_layer(lower, upper, out, compression=NONE))
    names = [m.name for m in tar]
    assert names == [".wh.gone-dir", "keep", "keep/.wh.gone", "swap", "swap/.wh..wh..opq",
                     "swap/new"]  # fmt: skip
    assert [m.name for m in _tar_of(lambda out: diff_layer(lower, lower, out))] == []


def _tar_of(write) -> tarfile.TarFile:
    buf = io.BytesIO()
    write(buf)
    buf.seek(0)
    return tarfile.open(fileobj=buf)


def _layer(entries: list[tuple]) -> io.BytesIO:
    """A tar built by hand: (name, type, data-or-linkname) per entry."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, 0o755 if kind == tarfile.DIRTYPE else 0o644
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = data
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    buf.seek(0)
    return buf


@pytest.mark.parametrize("seed", range(30))
def test_apply_follows_the_whiteout_model(tmp_path: Path, seed: int) -> None:
    """On disk, a layer's whiteouts and opaque markers do what apply_names says."""
    rng = random.Random(seed)
    leaves = ["a/b/c", "a/d", "e/f", "g", "h/i/j"]
    added = ["a/new", "a/b/new", "e/new", "new", "h/i/new", "x/y/new"]
    root = tmp_path / "root"
    root.mkdir()
    for leaf in rng.sample(leaves, rng.randint(1, len(leaves))):
        (root / leaf).parent.mkdir(parents=True, exist_ok=True)
        (root / leaf).write_text("lower")
    before = {str(p.relative_to(root)) for p in root.rglob("*")}
    entries = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice(["add", "whiteout", "opaque"])
        target = rng.choice(added if kind == "add" else leaves + added + ["a", "a/b", "e", "h"])
        parent, _, base = target.rpartition("/")
        if kind == "add":
            entries.append((target, REG, b"upper"))
        elif kind == "whiteout":
            entries.append((f"{parent}/.wh.{base}".lstrip("/"), REG, b""))
        else:
            entries.append((f"{target}/.wh..wh..opq", REG, b""))
    want = apply_names(before, [name for name, _, _ in entries])
    apply_layer(_layer(entries), root)
    got = {str(p.relative_to(root)) for p in root.rglob("*")}
    assert got == want, (sorted(before), entries)


def test_opaque_keeps_this_layers_entries_in_any_order(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d" / "sub").mkdir(parents=True)
    for name in ("d/old", "d/sub/old", "d/sub/keep"):
        (root / name).write_text("lower")
    layer = _layer([("d/sub/keep", REG, b"mine"), ("d/.wh..wh..opq", REG, b""),
                    ("d/new", REG, b"new"), ("d/.wh.new", REG, b"")])  # fmt: skip
    apply_layer(layer, root)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == [
        "d", "d/new", "d/sub", "d/sub/keep"]  # fmt: skip
    assert (root / "d/sub/keep").read_text() == "mine"


# --- hostile layers -----------------------------------------------------------------------


@pytest.fixture
def jail(tmp_path: Path):
    """A target directory next to a canary file that no layer may touch."""
    canary = tmp_path / "canary.txt"
    canary.write_text("original")
    os.chmod(canary, 0o600)
    root = tmp_path / "root"
    root.mkdir()

    def untouched() -> None:
        assert sorted(os.listdir(tmp_path)) == ["canary.txt", "root"]
        st = canary.stat()
        assert (canary.read_text(), stat.S_IMODE(st.st_mode), st.st_nlink) == ("original", 0o600, 1)

    return root, canary, untouched


@pytest.mark.parametrize(
    "entries",
    [
        [("../canary.txt", REG, b"pwned")],
        [("a/../../canary.txt", REG, b"pwned")],
        [("{canary}", REG, b"pwned")],
        [("hl", LNK, "../canary.txt")],
        [("hl", LNK, "{canary}")],
        [(".wh.", REG, b"")],
        [("a/.wh.", REG, b"")],
        [(".wh..", REG, b"")],
        [("../.wh.canary.txt", REG, b"")],
        [("loop", SYM, "loop"), ("loop/x", REG, b"pwned")],
    ],
    ids=["dotdot", "dotdot-inside", "absolute", "hardlink-dotdot", "hardlink-absolute",
         "bare-whiteout", "bare-whiteout-in-dir", "whiteout-dotdot", "whiteout-escape", "loop"],
)  # fmt: skip
def test_hostile_entries_are_refused_by_name(jail, entries: list[tuple]) -> None:
    root, canary, untouched = jail
    entries = [
        (n.format(canary=canary), k, d.format(canary=canary) if isinstance(d, str) else d)
        for n, k, d in entries
    ]
    with pytest.raises(UnsafeLayerError) as caught:
        apply_layer(_layer(entries), root)
    assert caught.value.entry == entries[-1][0]
    untouched()


@pytest.mark.parametrize("split", [False, True], ids=["one-layer", "two-layers"])
@pytest.mark.parametrize(
    "attack",
    [
        [("evil", SYM, "{dir}"), ("evil/canary.txt", REG, b"pwned")],
        [("evil", SYM, "../../../../../.."), ("evil{dir}/canary.txt", REG, b"pwned")],
        [("evil", SYM, "{canary}"), ("evil", REG, b"pwned")],
        [("evil", SYM, "{canary}"), ("evil", DIR, None)],
        [("evil", SYM, "{dir}"), ("evil/.wh.canary.txt", REG, b"")],
        [("evil", SYM, "{dir}"), ("evil/.wh..wh..opq", REG, b"")],
        [("evil", SYM, "{dir}"), ("hl", LNK, "evil/canary.txt")],
        [("evil", SYM, "/"), ("evil{dir}/canary.txt", SYM, "/etc/shadow")],
    ],
    ids=["write-through", "climb-through", "replace-link", "dir-over-link", "whiteout-through",
         "opaque-through", "hardlink-through", "symlink-through"],
)  # fmt: skip
def test_symlinks_are_resolved_inside_the_root(jail, attack: list[tuple], split: bool) -> None:
    root, canary, untouched = jail
    attack = [(n.format(dir=canary.parent), k, d.format(dir=canary.parent, canary=canary)
               if isinstance(d, str) else d) for n, k, d in attack]  # fmt: skip
    layers = [_layer(attack[:1]), _layer(attack[1:])] if split else [_layer(attack)]
    try:
        apply_layers(layers, root)
    except LayerError as exc:  # e.g. the hard link's target does not exist inside the root
        assert "missing" in str(exc)
    untouched()


def test_max_size_stops_a_decompression_bomb(tmp_path: Path) -> None:
    bomb = io.BytesIO(gzip.compress(_layer([("zeros", REG, bytes(10_000_000))]).getvalue()))
    assert len(bomb.getvalue()) < 20_000
    with pytest.raises(LayerError, match="max_size"):
        apply_layer(bomb, tmp_path, max_size=1_000_000)


def test_not_a_tar_is_a_layer_error(tmp_path: Path) -> None:
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(gzip.compress(b"hello" * 1000)), tmp_path)


# --- umoci --------------------------------------------------------------------------------


def umoci(*args: object) -> None:
    subprocess.run(["umoci", *map(str, args)], check=True, capture_output=True)


def whole_seconds(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        ns = int(path.lstat().st_mtime) * 10**9
        os.utime(path, ns=(ns, ns), follow_symlinks=False)


def layer_blobs(layout: Path, tag: str) -> list[Path]:
    """The layer blobs of ``layout:tag``, read from index.json and the manifest."""
    index = json.loads((layout / "index.json").read_text())
    ref = "org.opencontainers.image.ref.name"
    (desc,) = [m for m in index["manifests"] if m.get("annotations", {}).get(ref) == tag]
    blob = layout / "blobs" / Path(*desc["digest"].split(":"))
    manifest = json.loads(blob.read_text())
    return [layout / "blobs" / Path(*layer["digest"].split(":")) for layer in manifest["layers"]]


@needs_root
@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
def test_umoci_images_apply_the_same_and_umoci_applies_ours(tmp_path: Path) -> None:
    rng = random.Random(2024)
    image = f"{tmp_path / 'oci'}:t"
    umoci("init", "--layout", tmp_path / "oci")
    umoci("new", "--image", image)
    want = tmp_path / "want"  # our copy of what each step should unpack to
    want.mkdir()
    for step in range(3):  # umoci writes three layers: a tree, then two rounds of changes
        bundle = tmp_path / f"bundle{step}"
        umoci("unpack", "--image", image, bundle)
        rootfs = bundle / "rootfs"
        make_tree(rootfs, rng) if step == 0 else mutate(rootfs, rng, steps=8)
        (rootfs / ("long-" + "é" * 80)).write_text("long, non-ASCII name")
        (rootfs / "replace-me").mkdir(exist_ok=True)
        (rootfs / "replace-me" / f"old{step}").write_text("from umoci")
        whole_seconds(rootfs)  # Go's tar rounds mtimes to the nearest second; ours truncates
        umoci("repack", "--image", image, bundle)
        shutil.rmtree(want)
        want.mkdir()
        copy_tree(rootfs, want)
    # then a layer of ours, with whiteouts and an opaque directory, added verbatim
    mine = tmp_path / "mine"
    mine.mkdir()
    copy_tree(want, mine)
    mutate(mine, rng, steps=10)
    victim = mine / "replace-me"
    if victim.is_dir() and not victim.is_symlink():
        shutil.rmtree(victim)
    elif os.path.lexists(victim):
        victim.unlink()
    victim.mkdir()
    (victim / "only-me").write_text("opaque")
    info = diff_layer(want, mine, tmp_path / "mine.tar", compression=NONE, keep_owners=True)
    assert b".wh..wh..opq" in (tmp_path / "mine.tar").read_bytes()
    umoci("raw", "add-layer", "--image", image, tmp_path / "mine.tar")
    umoci("unpack", "--image", image, tmp_path / "final")

    blobs = layer_blobs(tmp_path / "oci", "t")
    assert len(blobs) == 4
    ours = tmp_path / "ours"
    ours.mkdir()
    apply_layers(blobs, ours)
    assert_same_tree(ours, tmp_path / "final" / "rootfs")  # umoci's layers, our apply
    assert_same_tree(tmp_path / "final" / "rootfs", mine)  # our layer, umoci's apply
    manifest = json.loads(blobs[0].parent.joinpath(_manifest_digest(tmp_path / "oci")).read_text())
    config = json.loads((blobs[0].parent / manifest["config"]["digest"][7:]).read_text())
    assert config["rootfs"]["diff_ids"][-1] == str(info.diff_id)


def _manifest_digest(layout: Path) -> str:
    (desc,) = json.loads((layout / "index.json").read_text())["manifests"]
    return desc["digest"].split(":")[1]


# --- overlayfs ----------------------------------------------------------------------------


def _overlay_works() -> bool:
    if not ROOT or shutil.which("unshare") is None:
        return False
    return "overlay" in Path("/proc/filesystems").read_text()


@pytest.mark.skipif(not _overlay_works(), reason="needs root, unshare and overlayfs")
def test_overlay_upper_dir_becomes_an_oci_layer(tree: Path, tmp_path: Path) -> None:
    lower = tree
    for name in ("upper", "work", "merged", "seen"):
        (tmp_path / name).mkdir()
    script = """
    set -e
    mount -t overlay overlay -o lowerdir="$1",upperdir="$2",workdir="$3" "$4"
    cd "$4"
    victim=$(find . -mindepth 1 -maxdepth 1 -type f | sort | head -1)
    rm "$victim"
    dir=$(find . -mindepth 1 -maxdepth 1 -type d | sort | head -1)
    rm -rf "$dir" && mkdir "$dir" && echo new > "$dir/new"
    echo added > added && ln added added-link && ln -s added added-sym
    cp -a . "$5"
    """
    args = [lower, tmp_path / "upper", tmp_path / "work", tmp_path / "merged", tmp_path / "seen"]
    subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *map(str, args)], check=True)
    assert not os.listdir(tmp_path / "merged")  # the mount lived only in the child
    kinds = {stat.S_IFMT(p.lstat().st_mode) for p in (tmp_path / "upper").iterdir()}
    assert stat.S_IFCHR in kinds  # overlayfs' own whiteout: a 0/0 character device
    layer = tmp_path / "upper.tgz"
    overlay_layer(tmp_path / "upper", layer)
    with tarfile.open(layer) as tar:
        names = tar.getnames()
    assert any("/.wh..wh..opq" in n for n in names) and any(".wh." in n for n in names)
    root = tmp_path / "root"
    root.mkdir()
    write_layer(lower, tmp_path / "lower.tgz")
    apply_layers([tmp_path / "lower.tgz", layer], root)
    assert_same_tree(root, tmp_path / "seen", mtimes=False)


# --- command line and doctests ------------------------------------------------------------


def test_cli_create_and_diff_print_json(tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "l.tgz"
    assert cli.main(["layer", "create", str(tree), "-o", str(out), "--source-date-epoch", "5"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["digest"] == "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()
    assert shown["size"] == out.stat().st_size
    assert shown["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert shown["diff_id"] == str(write_layer(tree, io.BytesIO(), source_date_epoch=5).diff_id)
    (tmp_path / "empty").mkdir()
    args = ["layer", "diff", str(tmp_path / "empty"), str(tree), "-o", str(tmp_path / "d")]
    assert cli.main([*args, "--compression", "none"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert cli.main(["layer", "apply", str(tmp_path / "r"), str(tmp_path / "d")]) == 0
    assert_same_tree(tmp_path / "r", tree, mtimes=False)


@pytest.mark.parametrize(
    "module",
    [
        hardway.image.entries,
        hardway.image.tarwriter,
        hardway.image.layers,
        hardway.image.diff,
        hardway.image.overlay,
        hardway.image.commands,
        hardway.image.apply,
        hardway.image.compression,
        hardway.image.whiteouts,
    ],
)
def test_doctests(module) -> None:
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_a_kept_parent_directory_never_outlives_its_name(tmp_path: Path) -> None:
    """Unpacking keeps a directory open for the next entries in it (speed); an entry that
    replaces that directory with a symlink must end it: later entries follow the link."""
    root = tmp_path / "root"
    root.mkdir()
    layer = _layer([("e/", DIR, b""), ("d/", DIR, b""),
                    ("d/a", REG, b"1"), ("d/b", REG, b"2"), ("d", SYM, "e"),
                    ("d/c", REG, b"3"), ("d/f", REG, b"4"), ("l", SYM, "d"),
                    ("l/g", REG, b"5"), ("l/h", REG, b"6")])  # fmt: skip
    apply_layer(layer, root)
    assert (root / "d").readlink() == Path("e")
    assert sorted(p.name for p in (root / "e").iterdir()) == ["c", "f", "g", "h"]


def test_a_parent_reached_through_a_symlink_is_resolved_again_for_each_entry(
    tmp_path: Path,
) -> None:
    """``l -> e/sub/..`` leads to ``e`` only while ``e/sub`` is a directory: once an entry
    in ``l`` replaces ``sub`` with a file, ``l/z`` has no parent (a kept descriptor of
    ``e`` would have put it there)."""
    root = tmp_path / "root"
    root.mkdir()
    layer = _layer([("e/", DIR, b""), ("e/sub/", DIR, b""), ("l", SYM, "e/sub/.."),
                    ("l/sub", REG, b"file"), ("l/z", REG, b"z")])  # fmt: skip
    with pytest.raises(LayerError, match="not a directory"):
        apply_layer(layer, root)
    assert not (root / "e" / "z").exists()
