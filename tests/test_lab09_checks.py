# ruff: noqa: E501 — the wrong answers are cells as a learner writes them, long lines and all
"""Lab 09's checks against realistic wrong answers, each caught with a message that names
the mistake; other correct answers pass; the blank lab is not attempted, the solution gets
every point. 09.6 pushes to the course's real registry (conftest gives this run its own)."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
from labcode import assert_full_and_blank, edited, fails, namespace, wrong

from hardway.course.grading import run_check


@pytest.fixture(scope="module")
def solution() -> dict:
    return namespace("solutions", "09")


def test_the_solution_gets_every_point_and_the_blank_lab_none() -> None:
    assert_full_and_blank("09")


def test_09_1_a_key_with_mtime(solution: dict) -> None:
    with_mtime = edited(
        "09", "def layer_key", ("st.st_gid, content]", "st.st_gid, content, st.st_mtime_ns]")
    )
    assert "cache key including mtime" in fails("09.1", solution, with_mtime)


def test_09_1_a_key_without_the_mode(solution: dict) -> None:
    no_mode = edited("09", "def layer_key", ("st.st_mode, st.st_uid", "st.st_uid"))
    assert "cache key missing file mode" in fails("09.1", solution, no_mode)


def test_09_1_a_key_from_size_not_content(solution: dict) -> None:
    sized = edited(
        "09", "def layer_key", ("hashlib.sha256(path.read_bytes()).hexdigest()", "st.st_size")
    )
    assert "hash each file's content" in fails("09.1", solution, sized)


def test_09_2_written_straight_to_its_name(solution: dict) -> None:
    straight = """
def write_blob(root, chunks):
    data = b"".join(chunks)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    final = shard_path(root, digest)
    final.parent.mkdir(parents=True, exist_ok=True)
    final.write_bytes(data)
    return digest
"""
    # all chunks are read before the name appears: atomic enough — but Ctrl-C?
    assert run_check("09.2", wrong(solution, straight)).status == "passed"
    streamed = """
def write_blob(root, chunks):
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    part = root / "tmp" / "part"
    hasher = hashlib.sha256()
    with open(part, "wb") as out:
        for chunk in chunks:
            hasher.update(chunk)
            out.write(chunk)
    digest = "sha256:" + hasher.hexdigest()
    final = shard_path(root, digest)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    return digest
"""
    assert "left its temporary file behind" in fails("09.2", solution, streamed)


def test_09_3_a_cache_that_never_looks(solution: dict) -> None:
    never = edited("09", "def cached_layer", ("    if record.is_file():\n", "    if False:\n"))
    assert "look the key up first" in fails("09.3", solution, never)


def test_09_3_a_hit_without_its_blob(solution: dict) -> None:
    trusting = edited(
        "09", "def cached_layer",
        ("        if shard_path(cache, digest).is_file():\n            return digest, diff_id, size",
         "        return digest, diff_id, size"),
    )  # fmt: skip
    assert "a hit needs the blob too" in fails("09.3", solution, trusting)


def test_09_4_newest_first(solution: dict) -> None:
    newest = edited(
        "09",
        "def prune_order",
        ("key=lambda item: (item[1][0], item[0])", "key=lambda item: (-item[1][0], item[0])"),
    )
    assert "remove" in fails("09.4", solution, newest)


def upload_with_threads(digests, has, upload, jobs):
    """Not a pool: plain threads and a semaphore — correct too."""
    missing = [d for d in digests if not has(d)]
    slots, errors = threading.Semaphore(jobs), []

    def one(digest):
        with slots:
            try:
                upload(digest)
            except Exception as exc:  # handed to the caller below
                errors.append(exc)

    threads = [threading.Thread(target=one, args=(d,)) for d in missing]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return missing


def upload_with_pool_map(digests, has, upload, jobs):
    missing = [d for d in digests if not has(d)]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(upload, missing))
    return missing


def upload_one_by_one(digests, has, upload, jobs):
    missing = [d for d in digests if not has(d)]
    for digest in missing:
        upload(digest)
    return missing


def test_09_5_accepts_any_bounded_parallel_upload_and_rejects_a_serial_one() -> None:
    assert run_check("09.5", {"upload_missing": upload_with_threads}).status == "passed"
    assert run_check("09.5", {"upload_missing": upload_with_pool_map}).status == "passed"
    result = run_check("09.5", {"upload_missing": upload_one_by_one})
    assert result.status == "failed" and "one after another" in result.message


def test_09_6_a_push_that_never_asks_the_registry(solution: dict) -> None:
    blind = edited(
        "09",
        "def push_changed",
        ("            return http.head(", "            return False and http.head("),
    )
    assert "the rebuild started 2" not in (message := fails("09.6", solution, blind))
    assert "only the changed layer and the new config should go" in message


def test_09_6_a_push_whose_cache_misses_a_fresh_checkout(solution: dict) -> None:
    """A non-reproducible writer behind a key with mtime: the rebuild makes new blobs for
    unchanged directories, and sends them."""
    base = namespace("solutions", "09")  # its own dict: push_changed sees the edits below
    exec(
        edited(
            "09", "def layer_key", ("st.st_gid, content]", "st.st_gid, content, st.st_mtime_ns]")
        ),
        base,
    )
    noisy = (
        "import gzip, io, tarfile, time\n"
        + """
def my_write_layer(src, out):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar.add(src, arcname=".")
    data = gzip.compress(raw.getvalue())  # gzip's header carries the time: new bytes each call
    time.sleep(1.1)
    out.write(data)
    return ("sha256:" + hashlib.sha256(data).hexdigest(), "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest(), len(data))
"""
    )
    exec(noisy, base)
    result = run_check("09.6", base)
    assert result.status == "failed", result.line
    message = result.message
    assert "the cache should give the same blobs back" in message
