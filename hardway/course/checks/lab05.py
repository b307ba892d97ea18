"""hardway.course.checks.lab05
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 05, layers. Every run draws fresh random inputs and compares the
learner's answers with the helper's reference modules — and, for the tar order, with
a tree built on disk and read back by :func:`hardway.image.entries.tree_entries`:

* 05.1 ``layer_ids(fileobj) -> (diff_id, digest, size)``: both names of a gzip layer in
  one pass over a stream, a chunk at a time;
* 05.2 ``tar_order(paths) -> list[str]``: the deterministic order of a layer's entries,
  explicit parent directories included;
* 05.3 ``whiteouts_for(lower, upper) -> list[str]``: the fewest whiteouts for what was
  deleted;
* 05.4 ``after_layer(lower, layer) -> set[str]``: what is left after a layer with
  whiteouts and opaque directories;
* 05.5 ``resolve_in_root(path, links) -> str``: resolve a path inside a root, following
  symlinks as a chroot would;
* 05.6 ``my_write_layer(src, out)``: a reproducible gzip layer, streamed, both names in one
  pass — written twice from one tree made in two orders, at two times, by two owners, read
  back header by header, and unpacked by umoci;
* 05.7 ``my_apply_layer(layer, rootfs)``: two layers holding every named edge case (a
  whiteout after the file it names, an opaque directory after this layer's own file in it,
  a directory whited out, a file replaced by a directory, a lower layer's symlink, hard
  links) and two random ones, compared with umoci's tree;
* 05.8 the same function fed hostile layers aimed at a directory outside the root, in a
  child that sees the host read-only (:mod:`hardway.course.checks.sandbox`).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import random
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from hardway.course.checks import fresh_rng, scratch
from hardway.course.checks.child import in_child
from hardway.course.checks.sandbox import (
    differences,
    read_only_host,
    tree_snapshot,
    umoci_unpack,
)
from hardway.course.grading import exercise, expect
from hardway.image.apply import apply_layer
from hardway.image.compression import GZIP, choose_codec
from hardway.image.diff import diff_layer
from hardway.image.entries import tree_entries
from hardway.image.layers import write_layer
from hardway.image.whiteouts import apply_names
from hardway.image.whiteouts import whiteouts_for as reference_whiteouts
from hardway.sys.securejoin import resolve

__all__ = [
    "REFERENCE",
    "after_layers",
    "applier_stays_inside",
    "layer_applier",
    "layer_names",
    "layer_writer",
    "resolved_paths",
    "tar_orders",
    "whiteout_names",
]

#: the largest read a streaming reader may ask for
MAX_READ = 4 << 20


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:50] + "…" + text[-15:]


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- 05.1 -----------------------------------------------------------------------------------


class _StreamOnly:
    """A file that can only be read forward, in chunks of at most MAX_READ bytes."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at, self.problem = data, 0, ""

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > MAX_READ:
            self.problem = (
                f"layer_ids called read({size}): that loads the whole layer into memory, "
                "and a layer can be gigabytes; read it in chunks, e.g. fileobj.read(1 << 16)"
            )
            raise AssertionError(self.problem)
        chunk = self._data[self._at : self._at + size]
        self._at += len(chunk)
        return chunk

    @property
    def finished(self) -> bool:
        return self._at >= len(self._data)


def _random_tar(rng: random.Random) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for index in range(rng.randint(2, 6)):
            size = rng.choice([0, 100, 70_000, 900_000, 3_000_000])
            data = rng.randbytes(size // 3) + bytes(size - size // 3)
            info = tarfile.TarInfo(f"dir/file-{index}-{rng.getrandbits(20):05x}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _gzip(data: bytes, rng: random.Random) -> bytes:
    compressor = choose_codec(GZIP, implementation=rng.choice(["isal", "zlib"])).compressor()
    return compressor.compress(data) + compressor.flush()


@exercise(
    "05.1",
    points=1,
    hints=(
        "two names, one pass: the digest is of the bytes as they come, the diff_id of the same "
        "bytes once decompressed",
        "read in chunks; feed each chunk to one hash as it is, and to a streaming gunzip whose "
        "output feeds a second hash",
        "loop over fileobj.read(65536) until it returns b''; give every chunk to one "
        "hashlib.sha256() (the digest) and to zlib.decompressobj(wbits=31), whose output goes "
        "to a second sha256 (the diff_id); add up len(chunk) for the size; flush() the "
        "decompressor at the end.",
    ),
)
def layer_names(layer_ids: Callable[[object], tuple[str, str, int]]) -> None:
    """layer_ids(fileobj) returns (diff_id, digest, size) of a gzip layer, reading once."""
    rng = fresh_rng()
    tar = _random_tar(rng)
    gz = _gzip(tar, rng)
    reader = _StreamOnly(gz)
    try:
        got = layer_ids(reader)
    except Exception:
        if reader.problem:
            raise AssertionError(reader.problem) from None
        raise
    expect(
        isinstance(got, tuple | list) and len(got) == 3,
        f"layer_ids should return (diff_id, digest, size), not {_short(got)}",
    )
    diff_id, digest, size = got
    want = (_sha(tar), _sha(gz), len(gz))
    expect(reader.finished, "layer_ids stopped before the end of the layer: read until b''")
    expect(
        (diff_id, digest) != (want[1], want[0]),
        "diff_id and digest are swapped: the diff_id names the uncompressed tar",
    )
    expect(
        diff_id == want[0],
        f"diff_id is {_short(diff_id)}; it should be the sha256 of the *decompressed* bytes",
    )
    expect(
        digest == want[1],
        f"digest is {_short(digest)}; it should be the sha256 of the bytes as read",
    )
    expect(size == want[2], f"size is {_short(size)}; the layer has {want[2]} bytes as stored")


# --- 05.2 -----------------------------------------------------------------------------------

_PARTS = ["a", "a-b", "a.b", "B", "bin", "é", "z", "0", "_x", "lib64", "a b"]


def _random_paths(rng: random.Random) -> list[str]:
    paths: set[str] = set()
    while len(paths) < rng.randint(3, 12):
        candidate = "/".join(rng.choice(_PARTS) for _ in range(rng.randint(1, 4)))
        if not any(p.startswith(candidate + "/") or candidate.startswith(p + "/") for p in paths):
            paths.add(candidate)
    return rng.sample(sorted(paths), len(paths))


def _order_on_disk(paths: list[str]) -> list[str]:
    """Build the files in a temporary directory, and let the reference walk them."""
    with scratch("05") as tmp:
        for path in paths:
            (Path(tmp) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / path).touch()
        return [e.name + ("/" if os.path.isdir(e.path) else "") for e in tree_entries(Path(tmp))]


@exercise(
    "05.2",
    points=1,
    hints=(
        "a layer lists every directory, right before what it holds, and the same tree must always "
        "give the same order",
        "compare paths component by component, not as whole strings: split on '/' before sorting",
        "list every parent directory too (written 'a/' with a slash), then walk depth "
        "first: a directory, then its children sorted by name, each directory's own content "
        "right after it. Sorting whole paths as strings puts 'a-b' (the '-' is 0x2d) before "
        "'a/' ('/' is 0x2f), but a walk finishes 'a/…' first.",
    ),
)
def tar_orders(tar_order: Callable[[list[str]], list[str]]) -> None:
    """tar_order(paths) lists a layer's entries, parents first, in a reproducible order."""
    rng = fresh_rng()
    for paths in (["bin/sh", "a-b", "a/b"], _random_paths(rng), _random_paths(rng)):
        given = list(paths)
        got = tar_order(given)
        want = _order_on_disk(paths)
        expect(isinstance(got, list), f"tar_order returned a {type(got).__name__}, not a list")
        missing = [w for w in want if w not in got]
        expect(
            not [m for m in missing if m.endswith("/")],
            f"tar_order({_short(paths)}) misses the directories "
            f"{[m for m in missing if m.endswith('/')]}: a layer lists every parent",
        )
        expect(not missing, f"tar_order({_short(paths)}) misses {missing}")
        expect(len(got) == len(want), f"tar_order({_short(paths)}) has extra entries: {got}")
        expect(got == want, f"tar_order({_short(paths)}) returned {got}, expected {want}")


# --- 05.3 -----------------------------------------------------------------------------------


def _random_change(rng: random.Random) -> tuple[set[str], set[str]]:
    lower = set(_random_paths(rng))
    upper = {p for p in lower if rng.random() < 0.6}
    if rng.random() < 0.7:  # delete a whole directory
        dirs = {p.rsplit("/", 1)[0] for p in lower if "/" in p}
        if dirs:
            gone = rng.choice(sorted(dirs))
            upper = {p for p in upper if not p.startswith(gone + "/")}
    upper |= {f"new-{i}" for i in range(rng.randint(0, 2))}
    return lower, upper


@exercise(
    "05.3",
    points=1,
    hints=(
        "a tar cannot say 'delete': a deletion is an empty file with a special name next to what "
        "it deletes",
        "what is gone is what lower has and upper lacks — directories included; a gone directory "
        "needs no whiteouts for its contents",
        "a whiteout is the deleted path's base name behind '.wh.', in the same directory "
        "('etc/motd' → 'etc/.wh.motd'). Directories count too (the parents of the paths). "
        "When a whole directory is gone, one whiteout for it is enough: skip what is inside.",
    ),
)
def whiteout_names(whiteouts_for: Callable[[set[str], set[str]], list[str]]) -> None:
    """whiteouts_for(lower, upper) returns the fewest whiteouts, sorted."""
    rng = fresh_rng()
    cases = [({"etc/motd", "etc/hosts"}, {"etc/hosts"}), ({"a/b/c", "a/d", "e"}, {"a/d"})]
    cases += [_random_change(rng) for _ in range(4)]
    for lower, upper in cases:
        got = whiteouts_for(set(lower), set(upper))
        want = reference_whiteouts(lower, upper)
        call = f"whiteouts_for({_short(sorted(lower))}, {_short(sorted(upper))})"
        expect(isinstance(got, list), f"{call} returned a {type(got).__name__}, not a list")
        bad = [w for w in got if not w.rpartition("/")[2].startswith(".wh.")]
        expect(not bad, f"{call} returned {bad}: a whiteout's base name starts with '.wh.'")
        extra = sorted(set(got) - set(want))
        expect(
            not (extra and set(want) <= set(got)),
            f"{call} also returned {extra}: a deleted directory needs one whiteout, not one "
            "per file inside",
        )
        expect(got == sorted(got), f"{call} returned {got}: sort the list")
        expect(got == want, f"{call} returned {got}, expected {want}")


# --- 05.4 -----------------------------------------------------------------------------------


def _with_parents(paths: set[str]) -> set[str]:
    out = set()
    for path in paths:
        parts = path.split("/")
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return out


def _random_layer(rng: random.Random) -> tuple[set[str], list[str]]:
    lower = _with_parents(set(rng.sample(["a/b/c", "a/d", "e/f", "g", "h/i/j"], rng.randint(2, 5))))
    added = ["a/new", "a/b/new", "e/new", "new", "x/y"]
    layer = []
    for _ in range(rng.randint(2, 5)):
        kind = rng.choice(["add", "whiteout", "opaque"])
        target = rng.choice(added if kind == "add" else sorted(lower | set(added)))
        parent, _, base = target.rpartition("/")
        if kind == "add":
            layer.append(target)
        elif kind == "whiteout":
            layer.append(f"{parent}/.wh.{base}".lstrip("/"))
        else:
            layer.append(f"{target}/.wh..wh..opq")
    return lower, layer


@exercise(
    "05.4",
    points=1,
    hints=(
        "whiteouts and opaque markers hide what the lower layers put there — never what this layer"
        " brings",
        "two passes: first find what the layer adds, hides and makes opaque; then filter lower, "
        "then add the layer's own paths",
        "first collect what the layer adds (and their parents), its whiteouts and its "
        "opaque directories; then remove from lower every path a whiteout names (and what is "
        "below it) and everything below an opaque directory — but never a path the layer "
        "itself adds, whatever the order of the entries.",
    ),
)
def after_layers(after_layer: Callable[[set[str], list[str]], set[str]]) -> None:
    """after_layer(lower, layer) gives the paths left once a layer is applied."""
    rng = fresh_rng()
    cases = [
        ({"a", "a/x", "a/y", "b"}, ["a/.wh..wh..opq", "a/z", ".wh.b"]),
        ({"d", "d/old"}, ["d/new", "d/.wh..wh..opq"]),
        ({"etc", "etc/motd"}, ["etc/motd", "etc/.wh.motd"]),
    ]
    cases += [_random_layer(rng) for _ in range(5)]
    for lower, layer in cases:
        got = after_layer(set(lower), list(layer))
        want = apply_names(lower, layer)
        call = f"after_layer({_short(sorted(lower))}, {_short(layer)})"
        expect(isinstance(got, set), f"{call} returned a {type(got).__name__}, not a set")
        marks = sorted(p for p in got if ".wh." in p)
        expect(not marks, f"{call} kept {marks}: whiteouts never appear in the result")
        lost = sorted(want - got)
        expect(not lost, f"{call} lost {lost}: whiteouts hide lower layers only")
        expect(got == want, f"{call} kept {sorted(got - want)}, which the layer deletes")


# --- 05.5 -----------------------------------------------------------------------------------


def _random_links(rng: random.Random) -> dict[str, str]:
    targets = ["/", "..", "../..", "/etc", "usr/bin", "/usr/lib/../bin", "../../x", "."]
    while True:
        links = {}
        for _ in range(rng.randint(1, 4)):
            where = rng.choice(["", "usr", "usr/lib", "etc"])
            name = rng.choice(["bin", "lib", "etc", "up", "x"])
            links[f"{where}/{name}".lstrip("/")] = rng.choice(targets)
        try:
            for probe in ("bin/sh", "up/up/x", "usr/lib/up/etc/passwd"):
                resolve(probe, links.get)
        except OSError:  # a loop: draw again
            continue
        return links


@exercise(
    "05.5",
    points=1,
    hints=(
        "resolve as if the root were '/': a link's target is followed, but nothing climbs above "
        "the root",
        "walk component by component with a stack of resolved ones; a link puts its target's "
        "components back in front of the rest",
        "keep a list of resolved components and a queue of components to do. '..' "
        "pops the list (never past the root); a component found in links is replaced by its "
        "target's components — an absolute target empties the list first; anything else is "
        "appended. Join with '/' at the end.",
    ),
)
def resolved_paths(resolve_in_root: Callable[[str, dict[str, str]], str]) -> None:
    """resolve_in_root(path, links) follows symlinks as if the root were '/'."""
    rng = fresh_rng()
    fixed = {"etc": "/host/etc", "bin": "usr/bin", "usr/bin": "../sbin", "up": "../../.."}
    cases = [(p, fixed) for p in ("etc/passwd", "bin/sh", "up/up/x", "../../x", "a/./b/")]
    for _ in range(3):
        links = _random_links(rng)
        cases += [(p, links) for p in ("bin/sh", "up/up/x", "usr/lib/up/etc/passwd")]
    for path, links in cases:
        got = resolve_in_root(path, dict(links))
        want = resolve(path, links.get)
        call = f"resolve_in_root({path!r}, {_short(links)})"
        expect(isinstance(got, str), f"{call} returned a {type(got).__name__}, not a str")
        expect(not got.startswith("/"), f"{call} returned {got!r}: answer root-relative")
        expect(".." not in got.split("/"), f"{call} returned {got!r}: '..' stops at the root")
        expect(got == want, f"{call} returned {got!r}, expected {want!r}")


# --- 05.6 my_write_layer -----------------------------------------------------------------

#: the named edge cases of every tree the writer gets: (kind, name, content or target, mode)
_TREE = [
    ("file", "a-b", b"the '-' sorts before '/'\n", 0o644),
    ("file", "a/b", b"inside a/\n", 0o644),
    ("file", "bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
    ("hard", "bin/tool-again", "bin/tool", 0),
    ("file", "etc/secret", b"only root reads this\n", 0o600),
    ("link", "lib", "usr/lib", 0),
    ("file", "usr/lib/libc.so", b"\x7fELF not really\n", 0o644),
    ("link", "motd", "/etc/motd", 0),
    ("dir", "empty", b"", 0o700),
]
#: a file this big, incompressible: a writer that gzips the layer in one piece shows it
_BIG = 3 << 20
#: the largest single write a streaming writer makes (gzip emits about 64 KiB at a time)
_MAX_WRITE = 1 << 20


def _random_tree(rng: random.Random) -> list[tuple[str, str, object, int]]:
    spec = list(_TREE)
    spec.append(("file", "big.bin", rng.randbytes(_BIG), 0o644))
    for path in _random_paths(rng)[:5]:
        if not any(
            path == s[1] or path.startswith(s[1] + "/") or s[1].startswith(path + "/") for s in spec
        ):
            spec.append(("file", f"r/{path}", rng.randbytes(rng.randint(0, 300)), 0o644))
    return spec


def _build(root: Path, spec: list, *, reverse: bool, mtime: int, owner: int) -> None:
    """Make the tree on disk, in one order or the other, every mtime ``mtime``+i."""
    root.mkdir()
    for kind, name, data, mode in reversed(spec) if reverse else spec:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "file":
            path.write_bytes(data)
            path.chmod(mode)
        elif kind == "dir":
            path.mkdir(mode)
            path.chmod(mode)
        elif kind == "link":
            path.symlink_to(data)
    for kind, name, data, _ in spec:  # hard links once their targets exist
        if kind == "hard":
            os.link(root / data, root / name)
    for number, path in enumerate(sorted(root.rglob("*"))):
        if os.geteuid() == 0:
            os.lchown(path, owner, owner)
        os.utime(path, (mtime + number, mtime + number), follow_symlinks=False)


class _Sink:
    """Where my_write_layer writes: forward only, every write's size recorded."""

    def __init__(self) -> None:
        self.data, self.largest, self.closed = bytearray(), 0, False

    def write(self, chunk: bytes) -> int:
        self.data += chunk
        self.largest = max(self.largest, len(chunk))
        return len(chunk)

    def tell(self) -> int:
        return len(self.data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _clean(name: str) -> str:
    return name.removeprefix("./").rstrip("/")


def _members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return [m for m in tar.getmembers() if _clean(m.name) not in ("", ".")]


def _check_names(got: object, blob: bytes, what: str) -> None:
    expect(
        isinstance(got, tuple | list) and len(got) == 3,
        f"{what} should return (digest, diff_id, size), not {_short(got)}",
    )
    digest, diff_id, size = got
    expect(blob[:2] == b"\x1f\x8b", f"{what} did not write gzip: a layer blob is a gzip stream")
    tar = gzip.decompress(blob)
    expect(
        (digest, diff_id) != (_sha(tar), _sha(blob)),
        f"{what} swapped digest and diff_id: the digest names the gzip bytes, the diff_id "
        "the tar inside",
    )
    expect(digest == _sha(blob), f"digest {_short(digest)} is not the sha256 of the bytes written")
    expect(diff_id == _sha(tar), f"diff_id {_short(diff_id)} is not the sha256 of the tar")
    expect(size == len(blob), f"size is {_short(size)}; {len(blob)} bytes were written")


def _check_members(members: list[tarfile.TarInfo], src: Path) -> None:
    names = [_clean(m.name) for m in members]
    want = [e.name.rstrip("/") for e in tree_entries(src)]
    missing = sorted(set(want) - set(names))
    expect(not missing, f"the layer misses {missing[:4]}: every file and directory is an entry")
    expect(
        names == want,
        f"the entries come in the order {_short(names)}; a reproducible layer sorts the names "
        f"in each directory, walking depth first: {_short(want)} (os.walk and os.listdir "
        "give the filesystem's order)",
    )
    byname = {_clean(m.name): m for m in members}
    for kind, name, data, mode in _TREE:
        member = byname[name]
        if kind == "link":
            expect(
                member.issym() and member.linkname == data,
                f"{name} is a symlink to {data!r}: store it as a symlink entry, not what it "
                "points to",
            )
        elif kind == "hard":
            expect(
                member.islnk() and _clean(member.linkname) == data,
                f"{name} is a second name of {data}: store it as a hard link entry to {data} "
                "(type LNKTYPE), not a second copy",
            )
        elif member.mode & 0o7777 != mode:
            expect(False, f"{name} has mode {oct(member.mode)} in the layer, {oct(mode)} on disk")
    for member in members:
        name = _clean(member.name)
        expect(member.mtime == 0, f"{name} has mtime {member.mtime}: set every mtime to 0")
        expect(
            (member.uid, member.gid) == (0, 0),
            f"{name} has uid/gid {member.uid}/{member.gid}: set them to 0 (root)",
        )
        expect(
            (member.uname, member.gname) == ("", ""),
            f"{name} has owner names {member.uname!r}/{member.gname!r}: set them to ''",
        )


@exercise(
    "05.6",
    points=4,
    hints=(
        "the layer must be the same bytes whoever writes it, wherever: the same entries, in "
        "the same order, with nothing of this machine (times, owners) in the headers",
        "tarfile.open(fileobj=…, mode='w|') over a writer that hashes what it gets and feeds "
        "a zlib.compressobj(wbits=31) whose output goes to `out` through a second hash; add "
        "entries yourself, sorted, with tar.gettarinfo() and a filter that zeroes mtime, "
        "uid, gid, uname, gname",
        "walk with sorted(os.listdir()), directories before their contents; tar.addfile(info, "
        "fileobj) for files; gettarinfo already makes symlinks and hard links (LNKTYPE) entries",
    ),
    against=("umoci",),
)
def layer_writer(my_write_layer: Callable[[Path, BinaryIO], tuple[str, str, int]]) -> None:
    """my_write_layer(src, out) writes a reproducible gzip layer umoci unpacks to src."""
    rng = fresh_rng()
    spec = _random_tree(rng)
    with scratch("05") as tmp:
        work = Path(tmp)
        one, two = work / "one", work / "two"
        _build(one, spec, reverse=False, mtime=rng.randint(10**9, 16 * 10**8), owner=0)
        _build(two, spec, reverse=True, mtime=rng.randint(10**9, 16 * 10**8), owner=1000)

        def write_both() -> list[tuple[object, bytes, int]]:
            out = []
            for src in (one, two):
                sink = _Sink()
                got = my_write_layer(src, sink)
                out.append((got, bytes(sink.data), sink.largest))
            return out

        first, second = in_child(write_both, timeout=30, what="your my_write_layer")
        for (got, blob, _), src in ((first, one), (second, two)):
            _check_names(got, blob, "my_write_layer")
            _check_members(_members(blob), src)
        expect(
            first[2] <= _MAX_WRITE,
            f"my_write_layer wrote {first[2]} bytes at once: compress while you write, a "
            "chunk at a time, never the whole layer in memory",
        )
        expect(
            first[0][1] == second[0][1],
            "the same files, made in another order at other times, give another diff_id: "
            "the layer is not reproducible",
        )
        unpacked = tree_snapshot(umoci_unpack([first[1]], work))
        want = tree_snapshot(one)
        wrong = differences(want, unpacked)
        expect(not wrong, f"umoci unpacked your layer into another tree: {wrong[:4]} differ")


# --- 05.7 my_apply_layer ------------------------------------------------------------------


def _tar_gz(entries: list[tuple[str, str, object]]) -> bytes:
    """A gzip layer of (kind, name, data) entries in exactly this order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, data in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size, info.mode = len(data), 0o644  # type: ignore[arg-type]
                tar.addfile(info, io.BytesIO(data))  # type: ignore[arg-type]
                continue
            info.type = {"dir": tarfile.DIRTYPE, "link": tarfile.SYMTYPE}.get(kind, tarfile.LNKTYPE)
            info.mode = 0o755
            info.linkname = "" if kind == "dir" else str(data)
            tar.addfile(info)
    return gzip.compress(buf.getvalue(), mtime=0)


_LOWER = [
    ("dir", "etc", ""),
    ("file", "etc/motd", b"old motd\n"),
    ("file", "etc/hosts", b"hosts\n"),
    ("dir", "cache", ""),
    ("file", "cache/old", b"stale\n"),
    ("dir", "cache/sub", ""),
    ("file", "cache/sub/deep", b"stale\n"),
    ("dir", "docs", ""),
    ("file", "docs/a", b"a\n"),
    ("dir", "docs/b", ""),
    ("file", "docs/b/c", b"c\n"),
    ("dir", "opt", ""),
    ("file", "opt/data", b"a file, for now\n"),
    ("dir", "usr", ""),
    ("dir", "usr/bin", ""),
    ("file", "usr/bin/tool", b"tool\n"),
    ("link", "bin", "usr/bin"),
]
#: the upper layer, in an order that catches the usual mistakes: each name, its edge case
_UPPER = [
    ("dir", "etc", ""),
    ("file", "etc/motd", b"new motd\n"),
    ("file", "etc/.wh.motd", b""),
    ("dir", "cache", ""),
    ("file", "cache/fresh", b"fresh\n"),
    ("file", "cache/.wh..wh..opq", b""),
    ("file", ".wh.docs", b""),
    ("dir", "opt/data", ""),
    ("file", "opt/data/inner", b"a directory now\n"),
    ("file", "bin/newtool", b"new\n"),
    ("hard", "usr/bin/tool-again", "usr/bin/tool"),
    ("hard", "etc/hosts-again", "etc/hosts"),
]
_CASES = [
    (
        "etc/motd",
        "etc/motd: a whiteout hides the *lower* layers only — this layer's own "
        "etc/motd, listed before etc/.wh.motd, stays",
    ),
    (
        "cache/fresh",
        "cache/fresh: an opaque directory hides what the lower layers put "
        "there, never this layer's own entries, whatever their order",
    ),
    (
        "cache",
        "cache/: an opaque directory (.wh..wh..opq) removes everything the lower "
        "layers had below it",
    ),
    ("docs", "docs/: a whiteout of a directory removes it with everything inside"),
    ("opt/data", "opt/data: a file replaced by a directory (remove the file first)"),
    (
        "usr/bin/newtool",
        "bin/newtool: bin is a symlink to usr/bin in the layer below; follow it, inside the root",
    ),
    ("bin", "bin: the symlink stays a symlink"),
    (
        "hardlinks",
        "hard links: usr/bin/tool-again and etc/hosts-again are second names of "
        "existing files (os.link), not copies",
    ),
    (".wh.", "the whiteout files themselves never appear in the root"),
]


def _named_case(paths: list[str]) -> str:
    for prefix, text in _CASES:
        for path in paths:
            if (
                path == prefix
                or path.startswith(prefix + "/")
                or (prefix == ".wh." and ".wh." in path)
            ):
                return text
    return f"{paths[:4]} differ"


def _random_pair(rng: random.Random, work: Path) -> list[bytes]:
    """Two layers, made by the course: a random tree, and a random change of it."""
    lower, upper = work / "rand-lower", work / "rand-upper"
    for path in _random_paths(rng):
        (lower / path).parent.mkdir(parents=True, exist_ok=True)
        (lower / path).write_bytes(rng.randbytes(rng.randint(0, 64)))
    shutil.copytree(lower, upper, symlinks=True)
    for path in sorted(upper.rglob("*"), reverse=True):
        if rng.random() < 0.3 and path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for number in range(rng.randint(1, 3)):
        (upper / f"new-{number}").write_bytes(rng.randbytes(20))
    blobs = []
    for made in (
        lambda out: write_layer(lower, out, source_date_epoch=0),
        lambda out: diff_layer(lower, upper, out, source_date_epoch=0),
    ):
        buf = io.BytesIO()
        made(buf)
        blobs.append(buf.getvalue())
    return blobs


def _apply_all(my_apply_layer: Callable, sets: list[list[bytes]], work: Path) -> list[dict]:
    """In the child: the host read-only, the layers in a tmpfs; a snapshot per root."""
    read_only_host(work)
    found = []
    for number, blobs in enumerate(sets):
        root = work / f"root-{number}"
        root.mkdir()
        for layer_number, blob in enumerate(blobs):
            layer = work / f"layer-{number}-{layer_number}.tar.gz"
            layer.write_bytes(blob)
            my_apply_layer(layer, root)
        found.append(tree_snapshot(root))
    return found


@exercise(
    "05.7",
    points=5,
    hints=(
        "a whiteout hides what the layers *below* put there, never what this layer "
        "writes — and the tar may list the whiteout after the file it hides",
        "read the whole list of entries first: apply the whiteouts and opaque markers to "
        "the root as it was, then write this layer's entries; remove what is in the way "
        "of an entry (a file where a directory comes) before creating it",
        "tarfile.open(layer, 'r:gz'); pass 1: for '.wh..wh..opq' empty its directory, for "
        "'.wh.name' remove name (shutil.rmtree for a directory); pass 2: the other "
        "entries, each path resolved inside the root (05.5), hard links with os.link",
    ),
    against=("umoci", "kernel"),
)
def layer_applier(my_apply_layer: Callable[[Path, Path], None]) -> None:
    """my_apply_layer(layer, rootfs) leaves the same tree as umoci, edge cases and all."""
    rng = fresh_rng()
    with scratch("05") as tmp:
        work = Path(tmp)
        named = [_tar_gz(_LOWER), _tar_gz(_UPPER)]
        random_pair = _random_pair(rng, work)
        jail = work / "jail"
        jail.mkdir()
        mine = in_child(
            lambda: _apply_all(my_apply_layer, [named, random_pair], jail),
            timeout=30,
            what="your my_apply_layer",
        )
        for number, blobs in enumerate((named, random_pair)):
            theirs = tree_snapshot(umoci_unpack(blobs, work / f"umoci-{number}"))
            wrong = differences(theirs, mine[number])
            if number == 0:
                expect(
                    not wrong,
                    f"after the two layers, umoci and you disagree on {_named_case(wrong)}",
                )
            expect(not wrong, f"on two random layers, umoci and you disagree on {wrong[:4]}")


# --- 05.8 never outside the root ------------------------------------------------------------

_CANARY = b"the host's secret\n"


def _hostile(out: str) -> list[tuple[str, list[list[tuple[str, str, object]]]]]:
    """Layers from a stranger, each aimed at ``out`` (a directory outside the root)."""
    return [
        ("an absolute name", [[("file", f"{out}/canary-abs", b"pwned")]]),
        ("a name with '..'", [[("file", "../outside/canary-dotdot", b"pwned")]]),
        (
            "the symlink evil -> OUT, then evil/canary",
            [[("link", "evil", out), ("file", "evil/canary-sym", b"pwned")]],
        ),
        (
            "the symlink evil -> OUT in one layer, evil/canary in the next",
            [[("link", "evil", out)], [("file", "evil/canary-sym2", b"pwned")]],
        ),
        (
            "the symlink up -> ../../../.., then up/OUT/canary",
            [[("link", "up", "../../../../.."), ("file", f"up{out}/canary-climb", b"pwned")]],
        ),
        (
            "the symlink evil -> OUT/secret, then a file evil",
            [[("link", "evil", f"{out}/secret"), ("file", "evil", b"pwned")]],
        ),
        ("a hard link to OUT/secret", [[("hard", "hl", f"{out}/secret")]]),
        (
            "the symlink evil -> OUT, then a hard link to evil/secret",
            [[("link", "evil", out), ("hard", "hl", "evil/secret")]],
        ),
    ]


def _attack(my_apply_layer: Callable, jail: Path) -> tuple[bool, str]:
    """In the child: (an ordinary layer was applied, the first hostile case that got out)."""
    read_only_host(jail)
    out = jail / "outside"
    out.mkdir()
    (out / "secret").write_bytes(_CANARY)
    plain = jail / "plain"
    plain.mkdir()
    (jail / "plain.tar.gz").write_bytes(_tar_gz([("dir", "etc", ""), ("file", "etc/ok", b"ok")]))
    try:
        my_apply_layer(jail / "plain.tar.gz", plain)
    except NotImplementedError:
        raise
    except Exception:
        pass  # reported below: the ordinary layer is not there
    ordinary = (plain / "etc/ok").is_file()
    for number, (what, layers) in enumerate(_hostile(str(out))):
        root = jail / f"r{number}"
        root.mkdir()
        for layer_number, entries in enumerate(layers):
            layer = jail / f"hostile-{number}-{layer_number}.tar.gz"
            layer.write_bytes(_tar_gz(entries))
            with contextlib.suppress(Exception):  # refusing a hostile layer is fine
                my_apply_layer(layer, root)
        secret = os.stat(out / "secret")
        linked = any(
            os.lstat(p).st_ino == secret.st_ino for p in root.rglob("*") if not p.is_symlink()
        )
        if (
            linked
            or sorted(os.listdir(out)) != ["secret"]
            or ((out / "secret").read_bytes() != _CANARY)
        ):
            return ordinary, what.replace("OUT", "/outside")
    return ordinary, ""


@exercise(
    "05.8",
    points=3,
    hints=(
        "a layer is data from a stranger: every name, link target and hard-link target "
        "must end up inside the root, whatever symlinks are already there",
        "resolve each entry's parent inside the root as 05.5 does (a symlink's target "
        "read and followed, '/' meaning the root, '..' stopping at it); refuse absolute "
        "names and '..' outright; remove a symlink in the way instead of writing through it",
        "before writing NAME: parent = resolve_in_root(dirname(NAME), links read with "
        "os.readlink); refuse if os.path.isabs(NAME) or '..' in NAME.split('/'); "
        "os.unlink an existing entry first; hard-link targets go through the same resolver",
    ),
    against=("kernel",),
)
def applier_stays_inside(my_apply_layer: Callable[[Path, Path], None]) -> None:
    """my_apply_layer never writes outside the root, whatever the layer holds."""
    with scratch("05") as tmp:
        jail = Path(tmp) / "jail"
        jail.mkdir()
        ordinary, escaped = in_child(
            lambda: _attack(my_apply_layer, jail), timeout=30, what="your my_apply_layer"
        )
    expect(ordinary, "my_apply_layer did not unpack an ordinary layer (etc/ok): fix 05.7 first")
    expect(
        not escaped,
        f"a layer with {escaped} made my_apply_layer write outside the root: resolve every "
        "name inside it",
    )


# --- what lab 05 hands on (hardway.course.carry) --------------------------------------------


def course_write_layer(src: Path, out: BinaryIO) -> tuple[str, str, int]:
    """The course's my_write_layer: a reproducible gzip layer of ``src``'s contents (mtimes 0,
    owners 0 and unnamed), written to ``out``; (digest, diff_id, compressed size)."""
    info = write_layer(Path(src), out, source_date_epoch=0)
    return str(info.digest), str(info.diff_id), info.size


def course_apply_layer(layer: Path, rootfs: Path) -> None:
    """The course's my_apply_layer: unpack a gzip layer into ``rootfs``, whiteouts, opaque
    directories and all, never writing outside it."""
    apply_layer(Path(layer), Path(rootfs))


REFERENCE: dict[str, Callable[..., object]] = {
    "my_write_layer": course_write_layer,
    "my_apply_layer": course_apply_layer,
}
