"""The incremental builder against the real registry: cache hits read no content and
push no bytes, one changed file rebuilds and re-uploads one layer (counted on the wire
by a transport adapter, independent of the client's own counters), builds are
reproducible across caches and mtimes, parallel pushes give the same image, skopeo
reads it, and a failed push never PUTs the manifest."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import tarfile
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from requests.adapters import HTTPAdapter

from hardway.build.builder import LayerSource, Settings, build, selector_key, source_entries
from hardway.build.cache import Cache
from hardway.distribution import registry as client
from hardway.distribution.options import using
from hardway.distribution.progress import ProgressReader
from hardway.distribution.registry import Registry
from hardway.errors import ImageNotFoundError, LayerError
from hardway.image.digest import sha256_digest
from hardway.image.entries import tree_entries
from hardway.image.validate import validate_image

SKOPEO = shutil.which("skopeo")


class CountingAdapter(HTTPAdapter):
    """Records every request that reaches the wire: method, kind and body size."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, int]] = []

    def send(self, request, **kwargs):  # type: ignore[override]
        path = urlsplit(request.url).path
        kind = "upload" if "/blobs/uploads/" in path else path.split("/")[-2]
        length = int(request.headers.get("Content-Length") or 0)
        self.seen.append(
            (request.method, kind, length if request.method in ("PUT", "PATCH") else 0)
        )
        return super().send(request, **kwargs)

    def summary(self) -> tuple[Counter[str], int]:
        """Requests by ``"METHOD kind"``, and blob bytes sent (manifest PUTs excluded)."""
        counts = Counter(f"{m} {k}" for m, k, _ in self.seen)
        return counts, sum(n for m, k, n in self.seen if k == "upload")


def counted(registry_status) -> tuple[Registry, CountingAdapter]:
    reg = Registry(f"127.0.0.1:{registry_status.port}")
    adapter = CountingAdapter()
    reg.session.mount("http://", adapter)
    return reg, adapter


def project(root: Path, seed: int = 7) -> Path:
    """Dependencies (big, incompressible), resources, and a little app code."""
    rng = random.Random(seed)
    for i in range(3):
        (root / "lib").mkdir(parents=True, exist_ok=True)
        (root / "lib" / f"dep{i}.whl").write_bytes(rng.randbytes(200_000))
    (root / "static" / "css").mkdir(parents=True)
    (root / "static" / "css" / "site.css").write_text("body { color: teal; }\n" * 500)
    (root / "static" / "logo.png").write_bytes(rng.randbytes(30_000))
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("print('hello v1')\n")
    (root / "src" / "util.py").write_text("def add(a, b):\n    return a + b\n")
    os.symlink("app.py", root / "src" / "main.py")
    return root


def sources(root: Path) -> list[LayerSource]:
    return [
        LayerSource("dependencies", root / "lib", "/app/lib"),
        LayerSource("resources", root / "static", "/app/static"),
        LayerSource("app", root / "src", "/app/src"),
    ]


SETTINGS = Settings(source_date_epoch=1_700_000_000)


def test_unchanged_rebuild_is_a_full_hit_and_pushes_no_blob_bytes(registry, tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    cache = Cache(tmp_path / "cache")
    first = build(sources(root), cache=cache, settings=SETTINGS, cmd=["python", "app.py"])
    assert [r.cached for r in first.reports] == [False, False, False]
    assert first.reports[0].bytes_read == 600_000
    assert first.bytes_written == sum(r.size for r in first.reports)
    repo = f"build/{uuid.uuid4().hex[:8]}"
    reg, wire = counted(registry)
    with reg:
        assert reg.write_image(first.image, repo, "v1", jobs=4) == first.digest
        counts, sent = wire.summary()
        config = first.image.manifest().config.size
        assert sent == first.bytes_written + config
        assert counts["POST upload"] == 4 and counts["PUT upload"] == 4

        again = build(sources(root), cache=cache, settings=SETTINGS, cmd=["python", "app.py"])
        assert [r.cached for r in again.reports] == [True, True, True]
        assert again.bytes_read == 0 and again.bytes_written == 0
        assert again.digest == first.digest
        wire.seen.clear()
        assert reg.write_image(again.image, repo, "v1", jobs=4) == first.digest
        counts, sent = wire.summary()
        assert sent == 0
        assert counts == Counter({"HEAD blobs": 4, "PUT manifests": 1})


def test_one_changed_file_rebuilds_and_reuploads_one_layer(registry, tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    cache = Cache(tmp_path / "cache")
    first = build(sources(root), cache=cache, settings=SETTINGS)
    repo = f"build/{uuid.uuid4().hex[:8]}"
    reg, wire = counted(registry)
    with reg:
        reg.write_image(first.image, repo, "v1", jobs=4)
        (root / "src" / "app.py").write_text("print('hello v2, longer')\n")
        second = build(sources(root), cache=cache, settings=SETTINGS)
        assert [r.cached for r in second.reports] == [True, True, False]
        app = second.reports[2]
        assert app.bytes_read == len("print('hello v2, longer')\n") + len(
            "def add(a, b):\n    return a + b\n"
        )
        assert second.bytes_written == app.size and app.digest != first.reports[2].digest
        wire.seen.clear()
        reg.write_image(second.image, repo, "v2", jobs=4)
        counts, sent = wire.summary()
        config = second.image.manifest().config.size
        assert sent == app.size + config  # the new layer and the new config, nothing else
        assert counts["POST upload"] == 2 and counts["HEAD blobs"] == 4
        assert reg.bytes_uploaded == (first.bytes_written + first.image.manifest().config.size) + (
            app.size + config
        )


def test_builds_are_reproducible_across_caches_and_mtimes(tmp_path: Path) -> None:
    a = project(tmp_path / "a")
    b = project(tmp_path / "b")
    for path in [b, *b.rglob("*")]:
        os.utime(path, (1_800_000_000, 1_800_000_000), follow_symlinks=False)
    one = build(sources(a), cache=Cache(tmp_path / "c1"), settings=SETTINGS)
    two = build(sources(b), cache=Cache(tmp_path / "c2"), settings=SETTINGS)
    assert one.digest == two.digest  # mtimes after the epoch are clamped to it
    assert one.image.raw_config() == two.image.raw_config()
    unclamped = Settings(source_date_epoch=None)
    os.environ.pop("SOURCE_DATE_EPOCH", None)
    three = build(sources(a), cache=Cache(tmp_path / "c1"), settings=unclamped)
    four = build(sources(b), cache=Cache(tmp_path / "c1"), settings=unclamped)
    assert three.digest != four.digest  # real mtimes differ, so do the layers
    assert [r.cached for r in four.reports] == [False, False, False]
    validate_image(one.image)


def test_keys_read_metadata_only_and_see_every_change(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    src = LayerSource("app", root / "src", "/app/src")

    def key(settings: Settings = SETTINGS, source: LayerSource = src) -> str:
        return selector_key(list(source_entries(source)), source.dest, settings)

    base = key()
    assert key() == base
    os.chmod(root / "src" / "app.py", 0o600)
    assert key() != base
    os.chmod(root / "src" / "app.py", 0o644)
    assert key() == base
    (root / "src" / "main.py").unlink()
    os.symlink("util.py", root / "src" / "main.py")
    moved = key()
    assert moved != base
    link = root / "src" / "main.py"
    st = link.lstat()
    link.unlink()
    os.symlink("app.py", link)  # another target, the same size and mtime
    os.utime(link, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    assert key() != moved
    link.unlink()
    os.symlink("util.py", link)
    os.utime(link, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    assert key() == moved
    copy = root / "src" / "copy.py"
    shutil.copy2(root / "src" / "app.py", copy)
    separate = key()
    copy.unlink()
    os.link(root / "src" / "app.py", copy)  # a hard link: the tar holds a link entry
    os.utime(copy, ns=(copy.stat().st_atime_ns, os.stat(root / "src" / "app.py").st_mtime_ns))
    assert key() != separate
    copy.unlink()
    assert key(Settings(source_date_epoch=1)) != moved
    assert key(Settings(source_date_epoch=1_700_000_000, level=3)) != moved
    assert key(source=LayerSource("app", root / "src", "/srv")) != moved
    names = [e.name for e in source_entries(src)]
    assert names == ["app", "app/src", "app/src/app.py", "app/src/main.py", "app/src/util.py"]
    with pytest.raises(LayerError, match="absolute"):
        LayerSource("x", root, "app/../etc")
    with pytest.raises(LayerError, match="does not exist"):
        list(source_entries(LayerSource("x", root / "nope", "/x")))


def test_a_single_file_source_and_unique_names(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    cache = Cache(tmp_path / "cache")
    one = LayerSource("readme", root / "src" / "util.py", "/opt")
    result = build([one], cache=cache, settings=SETTINGS)
    with result.image.layers()[0].uncompressed() as tar_stream:
        data = tar_stream.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["opt", "opt/util.py"]
        assert tar.getmember("opt").mtime == 0 and tar.getmember("opt").mode == 0o755
    with pytest.raises(LayerError, match="unique"):
        build([one, one], cache=cache)


def test_interrupting_a_layer_write_leaves_the_cache_consistent(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    cache = Cache(tmp_path / "cache")

    def interrupted():
        for i, entry in enumerate(tree_entries(root)):
            if i == 5:
                raise KeyboardInterrupt
            yield entry

    with pytest.raises(KeyboardInterrupt):
        cache.write_layer(interrupted())
    assert cache.usage().blobs == 0 and list(cache.tmp_dir.iterdir()) == []
    result = build(sources(root), cache=cache, settings=SETTINGS)
    assert not any(r.cached for r in result.reports)


@pytest.mark.parametrize("jobs", [1, 4])
def test_parallel_push_is_correct_and_skopeo_reads_it(registry, tmp_path: Path, jobs: int) -> None:
    root = project(tmp_path / "p")
    result = build(sources(root), cache=Cache(tmp_path / "cache"), settings=SETTINGS)
    ref = f"127.0.0.1:{registry.port}/build/par{jobs}-{uuid.uuid4().hex[:6]}:v1"
    with using(jobs=jobs, progress=jobs > 1):  # bars on: the tqdm path runs too
        assert client.push(result.image, ref) == result.digest
        pulled = client.pull(ref)
        assert pulled.raw_manifest() == result.image.raw_manifest()
        for mine, theirs in zip(result.image.layers(), pulled.layers(), strict=True):
            with mine.compressed() as a, theirs.compressed() as b:
                assert a.read() == b.read()
    if SKOPEO:
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        assert sha256_digest(raw) == result.digest
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--src-tls-verify=false",
                f"docker://{ref}",
                f"oci:{tmp_path / 'o'}:v1",
            ],
            capture_output=True,
            check=True,
            timeout=120,
        )


def test_a_failed_blob_upload_never_puts_the_manifest(registry, tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    cache = Cache(tmp_path / "cache")
    result = build(sources(root), cache=cache, settings=SETTINGS)
    cache.blob_path(result.reports[1].digest).unlink()  # pruned before the push
    repo = f"build/{uuid.uuid4().hex[:8]}"
    with Registry(f"127.0.0.1:{registry.port}") as reg:
        with pytest.raises(ImageNotFoundError):
            reg.write_image(result.image, repo, "v1", jobs=4)
        assert reg.head_manifest(repo, "v1") is None
        assert reg.requests["PUT manifest"] == 0


def test_progress_reader_counts_every_byte() -> None:
    class Bar:
        n = 0

        def update(self, k: int) -> None:
            self.n += k

    bar = Bar()
    with ProgressReader(io.BytesIO(b"x" * 5000), bar) as reader:
        assert reader.read(1000) == b"x" * 1000 and len(reader.read()) == 4000
    assert bar.n == 5000
