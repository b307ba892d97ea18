"""hardway.course.checks.lab09
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 09, an efficient builder. Every check builds fresh random inputs
(trees, blobs, use times) in a temporary directory and compares with hardway's own
cache (:mod:`hardway.build.cache`) or with properties any correct answer has:

* 09.1 ``layer_key(directory, settings) -> str``: a selector key from metadata only;
* 09.2 ``shard_path(root, digest) -> Path``: ``root/blobs/sha256/ab/ab…``;
* 09.3 ``write_blob(root, chunks) -> str``: atomic (temporary file, fsync, rename);
* 09.4 ``prune_order(blobs, max_bytes) -> list[str]``: least recently used first;
* 09.5 ``upload_missing(digests, has, upload, jobs) -> list[str]``: bounded, parallel.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from hardway.build.cache import Cache
from hardway.course.checks import fresh_rng, scratch
from hardway.course.grading import exercise, expect
from hardway.image.digest import sha256_digest

__all__ = ["key_from_metadata", "lru_order", "parallel_uploads", "sharded_path", "writes_atomic"]


def _tree(root: Path, rng: random.Random) -> list[Path]:
    files = []
    for i in range(rng.randint(3, 6)):
        path = root / f"d{i % 2}" / f"f{i}-{rng.randint(0, 999)}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(10, 200)))
        files.append(path)
    os.symlink(files[0].name, files[0].parent / "link")
    return files


@exercise(
    "09.1",
    points=2,
    hint="walk the tree in a fixed (sorted) order; for every entry take its path relative "
    "to the directory, os.lstat's st_mode, st_size and st_mtime_ns (and os.readlink for a "
    "link) — never open a file. Hash json.dumps([entries, settings], sort_keys=True) with "
    "sha256 and return the hex digest.",
)
def key_from_metadata(layer_key: Callable[[Path, dict], str]) -> None:
    """layer_key(directory, settings) sees every metadata change and reads no content."""
    rng = fresh_rng()
    with scratch("09") as work:
        files = _tree(work / "src", rng)
        settings = {"compression": "gzip", "source_date_epoch": rng.randint(1, 2**31)}
        key = layer_key(work / "src", dict(settings))
        expect(
            isinstance(key, str) and len(key) == 64 and set(key) <= set("0123456789abcdef"),
            f"layer_key should return 64 lowercase hex digits (a sha256), not {key!r:.70}",
        )
        expect(layer_key(work / "src", dict(settings)) == key, "the same tree gave two keys")
        shutil.copytree(work / "src", work / "copy", symlinks=True)
        for path in [work / "copy", *(work / "copy").rglob("*")]:
            st = (work / "src" / path.relative_to(work / "copy")).lstat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        expect(
            layer_key(work / "copy", dict(settings)) == key,
            "a copy with the same names, modes, sizes and mtimes should have the same key "
            "(leave the directory's own path out of it)",
        )
        target = rng.choice(files)
        st = target.stat()
        target.write_bytes(bytes(b ^ 0xFF for b in target.read_bytes()))  # same size
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        expect(
            layer_key(work / "src", dict(settings)) == key,
            "new content with the same size and mtime changed the key: the key must come "
            "from metadata only, without reading the files",
        )
        changes = {
            "an mtime": lambda: os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1000)),
            "a size": lambda: target.write_bytes(target.read_bytes() + b"!"),
            "a mode": lambda: os.chmod(target, 0o600),
            "a new file": lambda: (target.parent / "new.txt").write_bytes(b""),
            "a link target": lambda: (
                (files[0].parent / "link").unlink(),
                os.symlink("elsewhere", files[0].parent / "link"),
            ),
        }
        before = key
        for what, change in changes.items():
            change()
            after = layer_key(work / "src", dict(settings))
            expect(after != before, f"changing {what} did not change the key")
            before = after
        other = dict(settings, compression="zstd")
        expect(
            layer_key(work / "src", other) != before,
            "other settings (compression) should give another key: they change the bytes",
        )


@exercise(
    "09.2",
    points=1,
    hint="split 'sha256:<hex>' at the colon: root / 'blobs' / algorithm / the first two "
    "hex digits / the whole hex.",
)
def sharded_path(shard_path: Callable[[Path, str], Path]) -> None:
    """shard_path(root, digest) is where the cache keeps a blob."""
    rng = fresh_rng()
    root = Path(f"/cache-{rng.randint(0, 9999)}")
    for _ in range(4):
        digest = str(sha256_digest(rng.randbytes(16)))
        want = Cache(root).blob_path(digest)
        got = shard_path(root, digest)
        expect(Path(got) == want, f"shard_path(root, {digest[:19]}…) should be {want}, not {got}")


@exercise(
    "09.3",
    points=2,
    hint="tempfile.mkstemp(dir=root / 'tmp') gives a temporary file on the same filesystem; "
    "write and hash every chunk, flush and os.fsync, then os.replace it to "
    "shard_path(root, digest) (make the parent directory first). Wrap it all in "
    "try/finally so the temporary file is removed whatever happens, Ctrl-C included.",
)
def writes_atomic(write_blob: Callable[[Path, Iterable[bytes]], str]) -> None:
    """write_blob(root, chunks) stores the blob whole, or not at all."""
    rng = fresh_rng()
    with scratch("09") as work:
        cache = Cache(work)
        chunks = [rng.randbytes(rng.randint(1, 5000)) for _ in range(rng.randint(3, 6))]
        digest = str(sha256_digest(b"".join(chunks)))
        final = cache.blob_path(digest)
        seen_early = []

        def watched() -> Iterator[bytes]:
            for chunk in chunks:
                yield chunk
                seen_early.append(final.exists())

        got = write_blob(work, watched())
        expect(got == digest, f"write_blob should return the digest {digest[:19]}…, not {got!r}")
        expect(not any(seen_early), "the blob was visible under its name before it was whole")
        expect(
            final.is_file() and final.read_bytes() == b"".join(chunks),
            f"the blob is not at {final.relative_to(work)} with the bytes written",
        )
        expect(
            not list((work / "tmp").glob("*")),
            "a temporary file was left behind in tmp/",
        )

        def interrupted() -> Iterator[bytes]:
            yield chunks[0]
            raise KeyboardInterrupt

        try:
            write_blob(work, interrupted())
        except KeyboardInterrupt:
            pass
        else:
            expect(False, "Ctrl-C in the middle of the chunks should reach the caller")
        blobs = [p for p in (work / "blobs").rglob("*") if p.is_file()]
        expect(blobs == [final], "an interrupted write left a blob behind")
        expect(
            not list((work / "tmp").glob("*")),
            "an interrupted write left its temporary file behind: remove it in a finally",
        )


@exercise(
    "09.4",
    points=1,
    hint="sort by last use, oldest first, and take blobs while the total is still over "
    "the limit; ties by digest.",
)
def lru_order(prune_order: Callable[[dict[str, tuple[int, int]], int], list[str]]) -> None:
    """prune_order({digest: (last_used, size)}, max_bytes) matches Cache.prune."""
    rng = fresh_rng()
    with scratch("09") as work:
        cache = Cache(work)
        blobs: dict[str, tuple[int, int]] = {}
        for _ in range(rng.randint(4, 8)):
            with cache.blob_writer() as writer:
                writer.write(rng.randbytes(rng.randint(10, 1000)))
            used = rng.randint(1_000_000, 1_000_020)  # ties happen
            os.utime(writer.path, (used, used))
            blobs[str(writer.digest)] = (used, writer.size)
        limit = rng.randint(0, sum(size for _, size in blobs.values()))
        got = prune_order(dict(blobs), limit)
        want = [str(d) for d in cache.prune(limit).removed]
        expect(
            list(got) == want,
            f"with the limit {limit}, remove {[w[7:15] for w in want]}, in that order, "
            f"not {[str(g)[7:15] for g in got]}",
        )


@exercise(
    "09.5",
    points=2,
    hint="ask has(d) first and keep the missing ones; then hand upload to a "
    "concurrent.futures.ThreadPoolExecutor(max_workers=jobs) and wait for every future, "
    "calling .result() so a failure is raised.",
)
def parallel_uploads(
    upload_missing: Callable[[list[str], Callable, Callable, int], list[str]],
) -> None:
    """upload_missing(digests, has, upload, jobs) uploads each missing blob once, in
    parallel, never more than ``jobs`` at a time, and raises an upload's failure."""
    rng = fresh_rng()
    digests = [str(sha256_digest(rng.randbytes(8))) for _ in range(rng.randint(8, 12))]
    present = set(rng.sample(digests, 3))
    jobs = rng.randint(2, 4)
    lock = threading.Lock()
    together = threading.Event()  # set once two uploads ran at the same time
    state = {"active": 0, "most": 0}
    uploaded: list[str] = []

    def upload(digest: str) -> None:
        with lock:
            state["active"] += 1
            state["most"] = max(state["most"], state["active"])
            if state["active"] > 1:
                together.set()
        # wait for a second worker (not a fixed sleep: a busy machine starts threads late);
        # one after another, each upload waits out the timeout and the check fails below
        together.wait(timeout=1.0)
        with lock:
            state["active"] -= 1
            uploaded.append(digest)

    got = upload_missing(list(digests), lambda d: d in present, upload, jobs)
    missing = [d for d in digests if d not in present]
    expect(
        sorted(uploaded) == sorted(missing),
        f"upload every missing blob exactly once and none the registry has: {len(missing)} "
        f"missing, {len(uploaded)} uploads",
    )
    expect(list(got) == missing, "return the uploaded digests in the order they were given")
    expect(state["most"] <= jobs, f"{state['most']} uploads ran at once, more than jobs={jobs}")
    expect(state["most"] > 1, "the uploads ran one after another: run them in parallel")

    def failing(digest: str) -> None:
        if digest == missing[-1]:
            raise ConnectionError("the registry hung up")

    try:
        upload_missing(list(digests), lambda d: d in present, failing, jobs)
    except ConnectionError:
        pass
    else:
        expect(False, "a failed upload must be raised (so the manifest is never pushed)")
