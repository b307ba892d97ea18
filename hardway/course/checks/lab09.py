"""hardway.course.checks.lab09
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 09, an efficient builder. Every check builds fresh random inputs
(trees, blobs, use times) in a temporary directory and compares with hardway's own
cache (:mod:`hardway.build.cache`) or with properties any correct answer has; the last
one pushes to the course's real registry and counts the uploads in its log:

* 09.1 ``layer_key(directory, settings) -> str``: a content-addressed cache key — names,
  content, mode, owner; never mtime, so a fresh checkout hits;
* 09.2 ``write_blob(root, chunks) -> str``: atomic (temporary file, fsync, rename);
* 09.3 ``cached_layer(cache, directory, settings, write_layer)``: a layer written once
  per content (the check counts the writer's calls);
* 09.4 ``prune_order(blobs, max_bytes) -> list[str]``: least recently used first;
* 09.5 ``upload_missing(digests, has, upload, jobs) -> list[str]``: bounded, parallel;
* 09.6 ``push_changed(registry, repository, tag, dirs, cache) -> str``: a rebuild after
  one changed file starts two uploads (the layer and the config), read back by skopeo.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from hardway.build.cache import Cache
from hardway.course.checks import fresh_rng, scratch
from hardway.course.checks.child import in_child
from hardway.course.grading import NotGraded, exercise, expect
from hardway.image.digest import sha256_digest

__all__ = [
    "key_from_content",
    "layers_cached",
    "lru_order",
    "parallel_uploads",
    "pushed_incrementally",
    "writes_atomic",
]


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
    hints=(
        "a layer is the same when its files are the same: same names, same bytes, same "
        "modes and owners — whenever and wherever they were checked out.",
        "walk the tree in sorted order; for each entry take its path relative to the "
        "directory, st_mode, st_uid, st_gid and the sha256 of its content (a symlink: its "
        "target) — never st_mtime; hash json.dumps([entries, settings], sort_keys=True).",
        "entries.append([str(path.relative_to(directory)), st.st_mode, st.st_uid, "
        "st.st_gid, content]) … return hashlib.sha256(text.encode()).hexdigest()",
    ),
)
def key_from_content(layer_key: Callable[[Path, dict], str]) -> None:
    """layer_key(directory, settings) sees content, mode and owner; not mtime, not where."""
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
        # a fresh checkout: the same files elsewhere, every mtime new
        shutil.copytree(work / "src", work / "copy", symlinks=True, copy_function=shutil.copy)
        for path in [work / "copy", *(work / "copy").rglob("*")]:
            os.utime(path, ns=(10**18, 10**18 + rng.randint(1, 10**9)), follow_symlinks=False)
        expect(
            layer_key(work / "copy", dict(settings)) == key,
            "cache key including mtime: a fresh copy of the same files (same names, bytes and "
            "modes, new mtimes) got another key, so an unchanged rebuild never hits the cache "
            "— leave st_mtime (and the directory's own path) out",
        )
        target = rng.choice(files)
        st = target.stat()
        target.write_bytes(bytes(b ^ 0xFF for b in target.read_bytes()))  # same size
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        expect(
            layer_key(work / "src", dict(settings)) != key,
            f"{target.name} has new content (same size, same mtime) and the key did not change: "
            "hash each file's content",
        )
        changes = {
            "cache key missing file mode: chmod 0700 of a file": lambda: os.chmod(target, 0o700),
            "cache key missing the owner: a chown of a file": lambda: os.chown(target, 4321, 4321),
            "a new empty file": lambda: (target.parent / "new.txt").write_bytes(b""),
            "a symlink's target": lambda: (
                (files[0].parent / "link").unlink(),
                os.symlink("elsewhere", files[0].parent / "link"),
            ),
        }
        if os.geteuid() != 0:
            changes.pop("cache key missing the owner: a chown of a file")
        before = layer_key(work / "src", dict(settings))
        for what, change in changes.items():
            change()
            after = layer_key(work / "src", dict(settings))
            expect(after != before, f"{what} did not change the key")
            before = after
        other = dict(settings, compression="zstd")
        expect(
            layer_key(work / "src", other) != before,
            "other settings (compression) should give another key: they change the bytes",
        )


@exercise(
    "09.2",
    points=2,
    hints=(
        "a reader must never see half a blob: where can the bytes go until they are all "
        "there and checked?",
        "write into a temporary file on the same filesystem, then rename it into place in "
        "one step (a rename within one filesystem is atomic); remove it on every way out.",
        "tempfile.mkstemp(dir=root / 'tmp') gives a temporary file on the same filesystem; "
        "write and hash every chunk, flush and os.fsync, then os.replace it to "
        "shard_path(root, digest) (make the parent directory first). Wrap it all in "
        "try/finally so the temporary file is removed whatever happens, Ctrl-C included.",
    ),
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
    hints=(
        "which blob would you miss least? The one nobody has used for the longest time.",
        "go from the least recently used up, removing until the total fits.",
        "sort by last use, oldest first, and take blobs while the total is still over "
        "the limit; ties by digest.",
    ),
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
    hints=(
        "two things: never send a blob the registry already has, and send the rest at "
        "the same time, at most jobs at once.",
        "filter with has(), then use a thread pool; an exception inside a thread is only "
        "raised when you ask its future for the result.",
        "ask has(d) first and keep the missing ones; then hand upload to a "
        "concurrent.futures.ThreadPoolExecutor(max_workers=jobs) and wait for every future, "
        "calling .result() so a failure is raised.",
    ),
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


# --- 09.3: the layer cache -------------------------------------------------------------------


class _Writer:
    """The course's my_write_layer, counted: the check sees every layer actually written."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, src: Path, out: BinaryIO) -> tuple[str, str, int]:
        from hardway.course.checks.lab05 import course_write_layer

        self.calls.append(Path(src).name)
        return course_write_layer(src, out)


@exercise(
    "09.3",
    points=2,
    hints=(
        "a cache is a map from a key to what the work gave: look before you work, write "
        "down after.",
        "key = layer_key(directory, settings); if cache/keys/<key> records a layer whose "
        "blob is still in the cache, return it; else write_layer into a temporary file in "
        "cache/tmp, rename it to shard_path(cache, digest), record the triple under the key.",
        "record = cache / 'keys' / key; if record.is_file(): digest, diff_id, size = "
        "json.loads(record.read_text()); if shard_path(cache, digest).is_file(): return …",
    ),
)
def layers_cached(cached_layer: Callable[[Path, Path, dict, Callable], tuple]) -> None:
    """cached_layer writes a layer once per content: hits on a fresh copy, misses on a change."""
    rng = fresh_rng()
    settings = {"compression": "gzip"}
    with scratch("09") as work:
        cache, writer = work / "cache", _Writer()
        _tree(work / "app", rng)
        first = cached_layer(cache, work / "app", dict(settings), writer)
        expect(
            writer.calls == ["app"],
            f"the first build should write the layer once, not {len(writer.calls)} times",
        )
        expect(
            isinstance(first, tuple | list) and len(first) == 3,
            f"cached_layer should return (digest, diff_id, size), not {first!r:.50}",
        )
        digest, _, size = first
        blob = Cache(cache).blob_path(str(digest))
        expect(
            blob.is_file() and blob.stat().st_size == size,
            f"the layer is not in the cache at {blob.relative_to(work)}: store it under "
            "shard_path(cache, digest)",
        )
        again = cached_layer(cache, work / "app", dict(settings), writer)
        expect(
            len(writer.calls) == 1,
            "an unchanged directory was written again: look the key up first",
        )
        expect(
            tuple(again) == tuple(first),
            "a cache hit should give the recorded (digest, diff_id, size)",
        )
        shutil.copytree(work / "app", work / "fresh", symlinks=True, copy_function=shutil.copy)
        for path in (work / "fresh").rglob("*"):
            os.utime(path, ns=(10**18, 10**18), follow_symlinks=False)
        hit = cached_layer(cache, work / "fresh", dict(settings), writer)
        expect(
            len(writer.calls) == 1 and tuple(hit) == tuple(first),
            "a fresh checkout of the same files (new mtimes) was written again: the cache "
            "key must come from content, mode and owner, not mtime",
        )
        victim = next(
            p for p in sorted((work / "fresh").rglob("*")) if p.is_file() and not p.is_symlink()
        )
        victim.write_bytes(victim.read_bytes() + b"!")
        changed = cached_layer(cache, work / "fresh", dict(settings), writer)
        expect(len(writer.calls) == 2, "a changed file did not make a new layer: the key missed it")
        expect(tuple(changed) != tuple(first), "a changed directory gave the old layer back")
        blob.unlink()  # pruned, while its key is still recorded
        back = cached_layer(cache, work / "app", dict(settings), writer)
        expect(
            len(writer.calls) == 3 and blob.is_file() and tuple(back) == tuple(first),
            "the blob of a recorded key was pruned and cached_layer did not write it again: "
            "a hit needs the blob too",
        )
        left = list((cache / "tmp").glob("*")) if (cache / "tmp").is_dir() else []
        expect(not left, "a temporary file was left behind in the cache's tmp/")


# --- 09.6: an incremental push, requests counted -----------------------------------------------


def _uploads(found: list) -> list[str]:
    return [r.uri for r in found if r.method == "POST" and "/blobs/uploads/" in r.uri]


@exercise(
    "09.6",
    points=6,
    hints=(
        "a rebuild of a changed application should cost one layer: the cache gives the "
        "same blobs for unchanged directories, and the registry already has them.",
        "cached_layer for each directory; the config (diff_ids) as a blob; upload_missing "
        "over the layer and config digests with has = HEAD and upload = POST + PUT from the "
        "cache; the manifest PUT last.",
        "upload_missing([d for d, _, _ in layers] + [config_digest], has, upload, jobs=4); "
        "then PUT /v2/<repository>/manifests/<tag> with Content-Type OCI_MANIFEST; return "
        "'sha256:' + hashlib.sha256(body).hexdigest().",
    ),
    against=("registry", "skopeo"),
)
def pushed_incrementally(push_changed: Callable[[str, str, str, list, Path], str]) -> None:
    """A rebuild after one changed file sends one layer and the config; skopeo reads both."""
    from hardway.course.checks.images import log_offset, requests_since
    from hardway.course.checks.machine import course_registry

    if shutil.which("skopeo") is None:
        raise NotGraded("skopeo is not installed here", fix="make setup")
    running, rng = course_registry(), fresh_rng()
    host = running.url.removeprefix("http://")
    repository = f"lab09/push-{rng.getrandbits(40):010x}"
    with scratch("09") as work:
        dirs = []
        for name in ("base", "deps", "app"):
            _tree(work / "v1" / name, rng)
            dirs.append(work / "v1" / name)
        offset = log_offset(running)
        first = in_child(lambda: push_changed(host, repository, "v1", list(dirs), work / "cache"),
                         timeout=120, what="your push_changed")  # fmt: skip
        sent = _uploads(requests_since(running, offset, repository))
        expect(len(sent) == 4, f"the first push started {len(sent)} blob uploads, not 4 (three "
                               "layers and the config)")  # fmt: skip
        v1 = _inspect(host, repository, "v1")
        expect(
            first == v1["Digest"],
            f"push_changed should return the manifest's digest {v1['Digest'][:19]}…, "
            f"not {first!r:.30}",
        )
        expect(len(v1["Layers"]) == 3, f"skopeo sees {len(v1['Layers'])} layers in v1, not 3")
        # a fresh checkout of the same project (new mtimes everywhere), one file of app changed
        shutil.copytree(work / "v1", work / "v2", symlinks=True, copy_function=shutil.copy)
        for path in (work / "v2").rglob("*"):
            os.utime(path, ns=(10**18, 10**18), follow_symlinks=False)
        changed = next(
            p
            for p in sorted((work / "v2" / "app").rglob("*"))
            if p.is_file() and not p.is_symlink()
        )
        changed.write_bytes(changed.read_bytes() + b"changed\n")
        offset = log_offset(running)
        new_dirs = [work / "v2" / d.name for d in dirs]
        in_child(lambda: push_changed(host, repository, "v2", new_dirs, work / "cache"),
                 timeout=120, what="your push_changed (the rebuild)")  # fmt: skip
        sent = _uploads(requests_since(running, offset, repository))
        v2 = _inspect(host, repository, "v2")
        expect(
            v2["Layers"][:2] == v1["Layers"][:2],
            "the unchanged layers of the rebuild have other digests: the cache should give "
            "the same blobs back for the same files",
        )
        expect(v2["Layers"][2] != v1["Layers"][2], "the changed layer has the old digest")
        expect(
            len(sent) == 2,
            f"the rebuild started {len(sent)} blob uploads; only the changed layer and the "
            "new config should go — HEAD each blob and upload only what the registry lacks",
        )


def _inspect(host: str, repository: str, tag: str) -> dict:
    done = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{host}/{repository}:{tag}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    expect(done.returncode == 0, f"skopeo cannot read {repository}:{tag}: {done.stderr[-200:]}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]
