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
  symlinks as a chroot would.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import tarfile
from collections.abc import Callable
from pathlib import Path

from hardway.course.checks import fresh_rng, scratch
from hardway.course.grading import exercise, expect
from hardway.image.compression import GZIP, choose_codec
from hardway.image.entries import tree_entries
from hardway.image.whiteouts import apply_names
from hardway.image.whiteouts import whiteouts_for as reference_whiteouts
from hardway.sys.securejoin import resolve

__all__ = ["after_layers", "layer_names", "resolved_paths", "tar_orders", "whiteout_names"]

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
    points=2,
    hint="loop over fileobj.read(65536) until it returns b''; give every chunk to one "
    "hashlib.sha256() (the digest) and to zlib.decompressobj(wbits=31), whose output goes "
    "to a second sha256 (the diff_id); add up len(chunk) for the size; flush() the "
    "decompressor at the end.",
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
    points=2,
    hint="list every parent directory too (written 'a/' with a slash), then walk depth "
    "first: a directory, then its children sorted by name, each directory's own content "
    "right after it. Sorting whole paths as strings puts 'a-b' (the '-' is 0x2d) before "
    "'a/' ('/' is 0x2f), but a walk finishes 'a/…' first.",
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
    points=2,
    hint="a whiteout is the deleted path's base name behind '.wh.', in the same directory "
    "('etc/motd' → 'etc/.wh.motd'). Directories count too (the parents of the paths). "
    "When a whole directory is gone, one whiteout for it is enough: skip what is inside.",
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
    points=2,
    hint="first collect what the layer adds (and their parents), its whiteouts and its "
    "opaque directories; then remove from lower every path a whiteout names (and what is "
    "below it) and everything below an opaque directory — but never a path the layer "
    "itself adds, whatever the order of the entries.",
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
    points=2,
    hint="keep a list of resolved components and a queue of components to do. '..' "
    "pops the list (never past the root); a component found in links is replaced by its "
    "target's components — an absolute target empties the list first; anything else is "
    "appended. Join with '/' at the end.",
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
