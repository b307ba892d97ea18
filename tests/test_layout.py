"""hardway.image.layout and hardway.image.archive: the OCI image layout and the docker-archive
tarball, round-tripped (random → write → read → validate → compare) and cross-checked
with skopeo, which must accept what we write and hand us what we must read."""

from __future__ import annotations

import doctest
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

import hardway.distribution.transports
import hardway.image.archive
import hardway.image.layout
from hardway.distribution.transports import parse_image_name, read_image, write_image
from hardway.errors import (
    BadImageNameError,
    DigestMismatchError,
    ImageNotFoundError,
    InvalidImageError,
)
from hardway.image import archive, layout
from hardway.image.digest import sha256_digest
from hardway.image.manifest import ANNOTATION_REF_NAME
from hardway.image.mediatypes import DOCKER_LAYER_TAR, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from hardway.image.platform import Platform
from hardway.image.protocols import Image
from hardway.image.random import random_image
from hardway.image.validate import validate_image

SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")


def skopeo(*args: str) -> str:
    result = subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def same_image(a: Image, b: Image) -> None:
    """Equal documents, byte for byte, and equal layer blobs."""
    assert a.raw_manifest() == b.raw_manifest()
    assert a.raw_config() == b.raw_config()
    for x, y in zip(a.layers(), b.layers(), strict=True):
        assert (x.digest, x.diff_id, x.size, x.media_type) == (
            y.digest,
            y.diff_id,
            y.size,
            y.media_type,
        )
        with x.compressed() as fx, y.compressed() as fy:
            assert fx.read() == fy.read()


@pytest.mark.parametrize("module", [hardway.image.archive, hardway.distribution.transports])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# --- OCI layout -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "compression"), [("oci", "gzip"), ("oci", "zstd"), ("oci", "none"), ("docker", "gzip")]
)
def test_layout_round_trip(tmp_path: Path, fmt: str, compression: str) -> None:
    image = random_image(3000, 3, seed=11, fmt=fmt, compression=compression)
    entry = layout.write_image(image, tmp_path / "l", tag="v1")
    assert entry.digest == image.digest() and entry.annotations == {ANNOTATION_REF_NAME: "v1"}
    back = layout.read_image(tmp_path / "l", "v1")
    validate_image(back)
    same_image(image, back)
    assert json.loads((tmp_path / "l" / "oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"
    }
    blobs = sorted(p.name for p in (tmp_path / "l" / "blobs" / "sha256").iterdir())
    want = [image.digest(), image.manifest().config.digest, *(x.digest for x in image.layers())]
    assert blobs == sorted(d.encoded for d in want), "exactly the image's blobs, no temp files"


def test_tags_move_and_untagged_reads_need_a_single_image(tmp_path: Path) -> None:
    one, two = random_image(10, 1, seed=1), random_image(10, 1, seed=2)
    path = tmp_path / "l"
    layout.write_image(one, path, tag="a")
    assert layout.read_image(path).digest() == one.digest(), "one image: no tag needed"
    layout.write_image(two, path, tag="b")
    layout.write_image(two, path, tag="a")
    assert layout.tags(path) == ["b", "a"]
    assert layout.read_image(path, "a").digest() == two.digest()
    with pytest.raises(ImageNotFoundError, match="holds 2 images: name one"):
        layout.read_image(path)
    with pytest.raises(ImageNotFoundError, match="no image tagged 'c'; its tags: 'b', 'a'"):
        layout.read_image(path, "c")
    layout.write_image(two, path, tag="b")
    assert len(layout.read_index(path).manifests) == 2, "rewriting a tag adds no entry"


def test_a_layout_is_only_written_into_a_layout_or_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidImageError, match="not empty and is not an OCI layout"):
        layout.write_image(random_image(10, 1), tmp_path)
    with pytest.raises(ImageNotFoundError, match="no index\\.json"):
        layout.read_image(tmp_path / "nothing")


def test_reading_catches_tampered_blobs(tmp_path: Path) -> None:
    image = random_image(500, 2, seed=3)
    path = tmp_path / "l"
    layout.write_image(image, path, tag="t")
    layer = layout.blob_path(path, image.layers()[1].digest)
    layer.write_bytes(layer.read_bytes()[:-1] + b"!")
    back = layout.read_image(path, "t")  # documents are fine; the layer fails as it streams
    with (
        pytest.raises(DigestMismatchError, match="the bytes hash to"),
        back.layers()[1].compressed() as f,
    ):
        f.read()
    assert any(p.startswith("layer 1: ") for p in hardway.image.validate.image_problems(back))
    config = layout.blob_path(path, image.manifest().config.digest)
    config.write_bytes(config.read_bytes().replace(b"amd64", b"arm64"))
    with pytest.raises(DigestMismatchError, match="tampered"):
        layout.read_image(path, "t")
    layout.blob_path(path, image.digest()).unlink()
    with pytest.raises(ImageNotFoundError, match="is missing"):
        layout.read_image(path, "t")


def test_a_media_type_confusion_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l"
    layout.write_index([random_image(10, 1, seed=1)], path, tag="t")
    index = json.loads((path / "index.json").read_bytes())
    index["manifests"][0]["mediaType"] = OCI_MANIFEST  # but the blob is an index
    (path / "index.json").write_text(json.dumps(index))
    with pytest.raises(InvalidImageError, match="type confusion"):
        layout.read_image(path, "t")


def test_a_multi_platform_image_gives_each_platform_its_manifest(tmp_path: Path) -> None:
    amd = random_image(100, 1, seed=1, platform=Platform("amd64", "linux"))
    arm = random_image(100, 1, seed=2, platform=Platform("arm64", "linux", "v8"))
    entry = layout.write_index([amd, arm], tmp_path / "l", tag="multi")
    assert entry.media_type == OCI_INDEX
    got = layout.read_image(tmp_path / "l", "multi", platform=Platform.parse("linux/arm64"))
    assert got.digest() == arm.digest()
    got = layout.read_image(tmp_path / "l", "multi", platform=Platform.parse("linux/amd64"))
    assert got.digest() == amd.digest()
    with pytest.raises(InvalidImageError, match="no manifest for linux/riscv64"):
        layout.read_image(tmp_path / "l", "multi", platform=Platform.parse("linux/riscv64"))


@needs_skopeo
def test_skopeo_reads_our_layout_byte_for_byte(tmp_path: Path) -> None:
    image = random_image(2000, 2, seed=5)
    layout.write_image(image, tmp_path / "l", tag="v1")
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{tmp_path / 'l'}:v1"], capture_output=True, check=True
    ).stdout
    assert raw == image.raw_manifest()
    info = json.loads(skopeo("inspect", f"oci:{tmp_path / 'l'}:v1"))
    assert info["Digest"] == str(image.digest())
    assert info["Layers"] == [str(x.digest) for x in image.layers()]
    # skopeo copies it (verifying every blob) and we read its copy back
    skopeo("copy", f"oci:{tmp_path / 'l'}:v1", f"oci:{tmp_path / 'copy'}:c")
    same_image(image, layout.read_image(tmp_path / "copy", "c"))


@needs_skopeo
def test_skopeo_picks_a_platform_from_our_index(tmp_path: Path) -> None:
    amd = random_image(100, 1, seed=1, platform=Platform("amd64", "linux"))
    arm = random_image(100, 1, seed=2, platform=Platform("arm64", "linux", "v8"))
    layout.write_index([amd, arm], tmp_path / "l", tag="m")
    out = skopeo("--override-arch", "arm64", "inspect", "--config", f"oci:{tmp_path / 'l'}:m")
    assert json.loads(out)["architecture"] == "arm64"
    skopeo("--override-arch", "arm64", "copy", f"oci:{tmp_path / 'l'}:m", f"oci:{tmp_path / 'c'}:x")
    assert layout.read_image(tmp_path / "c", "x").raw_config() == arm.raw_config()


# --- docker archive ---------------------------------------------------------------------


def archive_names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_archive_round_trip(tmp_path: Path, compression: str) -> None:
    image = random_image(4000, 3, seed=21, compression=compression)
    archive.write_image(image, tmp_path / "a.tar", tags=["hello"])
    back = archive.read_image(tmp_path / "a.tar", "hello:latest")
    validate_image(back)
    assert back.raw_config() == image.raw_config(), "the config (and image ID) travel as bytes"
    assert back.manifest().media_type == DOCKER_MANIFEST
    assert [x.diff_id for x in back.layers()] == [x.diff_id for x in image.layers()]
    assert all(x.digest == x.diff_id and x.media_type == DOCKER_LAYER_TAR for x in back.layers())
    names = archive_names(tmp_path / "a.tar")
    assert "manifest.json" in names and "repositories" in names
    assert f"{image.image_id().encoded}.json" in names
    # the same image written again gives the same bytes
    archive.write_image(image, tmp_path / "b.tar", tags=["hello"])
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_archive_manifest_json_has_docker_load_shape(tmp_path: Path) -> None:
    image = random_image(10, 2, seed=1)
    archive.write_image(image, tmp_path / "a.tar", tags=["docker.io/library/hi:1", "x/y"])
    with tarfile.open(tmp_path / "a.tar") as tar:
        entries = json.load(tar.extractfile("manifest.json"))
        repositories = json.load(tar.extractfile("repositories"))
        top = entries[0]["Layers"][-1].split("/")[0]
        v1 = json.load(tar.extractfile(f"{top}/json"))
    assert entries == [
        {
            "Config": f"{image.image_id().encoded}.json",
            "RepoTags": ["hi:1", "x/y:latest"],
            "Layers": [f"{name.split('/')[0]}/layer.tar" for name in entries[0]["Layers"]],
        }
    ]
    assert repositories == {"hi": {"1": top}, "x/y": {"latest": top}}
    assert v1["id"] == top and v1["parent"] == entries[0]["Layers"][0].split("/")[0]
    assert v1["architecture"] == "amd64"


def test_a_legacy_archive_without_manifest_json_is_read_from_its_parent_chain(
    tmp_path: Path,
) -> None:
    image = random_image(1000, 3, seed=8)
    archive.write_image(image, tmp_path / "a.tar", tags=["old:v1"])
    legacy = tmp_path / "legacy.tar"
    with tarfile.open(tmp_path / "a.tar") as src, tarfile.open(legacy, "w") as dst:
        for member in src.getmembers():
            if member.name != "manifest.json":
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    back = archive.read_image(legacy, "old:v1")
    validate_image(back)
    config, original = back.config(), image.config()
    assert config.rootfs == original.rootfs
    assert (config.architecture, config.os, config.created) == ("amd64", "linux", original.created)
    assert [h.created_by for h in config.history] == [h.created_by for h in original.history]
    assert archive.list_tags(legacy) == ["old:v1"]
    with pytest.raises(ImageNotFoundError, match="no image tagged 'new'; tags: \\['old:v1'\\]"):
        archive.read_image(legacy, "new")


def test_an_archive_with_two_images_needs_a_reference(tmp_path: Path) -> None:
    one, two = random_image(10, 1, seed=1), random_image(10, 1, seed=2)
    archive.write_image(one, tmp_path / "1.tar", tags=["one"])
    archive.write_image(two, tmp_path / "2.tar", tags=["two"])
    both = tmp_path / "both.tar"
    entries = []
    with tarfile.open(both, "w") as dst:
        for name in ("1.tar", "2.tar"):
            with tarfile.open(tmp_path / name) as src:
                for member in src.getmembers():
                    if member.name == "manifest.json":
                        entries += json.load(src.extractfile(member))
                    elif member.name != "repositories" and member.name not in dst.getnames():
                        dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        data = json.dumps(entries).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        dst.addfile(info, io.BytesIO(data))
    assert archive.read_image(both, "two").raw_config() == two.raw_config()
    assert archive.read_image(both, "@0").raw_config() == one.raw_config()
    with pytest.raises(ImageNotFoundError, match="holds 2 images"):
        archive.read_image(both)
    with pytest.raises(ImageNotFoundError, match="no @2"):
        archive.read_image(both, "@2")


def test_a_corrupt_archive_layer_is_refused(tmp_path: Path) -> None:
    image = random_image(600, 1, seed=4, compression="none")
    archive.write_image(image, tmp_path / "a.tar")
    data = bytearray((tmp_path / "a.tar").read_bytes())
    at = data.find(b"random_file_")
    data[at] ^= 1
    (tmp_path / "a.tar").write_bytes(bytes(data))
    with pytest.raises(InvalidImageError, match=r"unpacks to .* but the config's diff_id is"):
        archive.read_image(tmp_path / "a.tar")
    (tmp_path / "b.tar").write_bytes(b"\x1f\x8b\x08\x00 not a tar")
    with pytest.raises(InvalidImageError, match="gunzip"):
        archive.read_image(tmp_path / "b.tar")


@needs_skopeo
def test_skopeo_reads_our_archive(tmp_path: Path) -> None:
    image = random_image(3000, 2, seed=6)
    archive.write_image(image, tmp_path / "a.tar", tags=["hello:v1"])
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{tmp_path / 'a.tar'}"))
    assert config["rootfs"]["diff_ids"] == [str(x.diff_id) for x in image.layers()]
    skopeo("copy", f"docker-archive:{tmp_path / 'a.tar'}:hello:v1", f"oci:{tmp_path / 'l'}:t")
    copied = layout.read_image(tmp_path / "l", "t")
    validate_image(copied)
    assert [x.diff_id for x in copied.layers()] == [x.diff_id for x in image.layers()]


@needs_skopeo
def test_we_read_skopeos_archive_with_its_symlinks(tmp_path: Path) -> None:
    image = random_image(3000, 2, seed=7)
    layout.write_image(image, tmp_path / "l", tag="t")
    skopeo("copy", f"oci:{tmp_path / 'l'}:t", f"docker-archive:{tmp_path / 'a.tar'}:some/name:v2")
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert any(m.issym() for m in tar.getmembers())
    back = read_image(f"docker-archive:{tmp_path / 'a.tar'}:some/name:v2")
    validate_image(back)
    assert back.raw_config() == image.raw_config()
    assert archive.list_tags(tmp_path / "a.tar") == ["docker.io/some/name:v2"]


def test_docker_25_archive_is_an_oci_layout_plus_manifest_json(tmp_path: Path) -> None:
    image = random_image(3000, 2, seed=9, compression="zstd")
    archive.write_image(image, tmp_path / "new.tar", tags=["hello:v1"], layout="oci")
    names = archive_names(tmp_path / "new.tar")
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(names)
    assert not any(n.endswith("layer.tar") or n.endswith("/json") for n in names)
    with tarfile.open(tmp_path / "new.tar") as tar:
        entries = json.load(tar.extractfile("manifest.json"))
        tar.extractall(tmp_path / "unpacked", filter="data")
    diff_ids = [x.diff_id for x in image.layers()]
    assert entries[0]["Layers"] == [f"blobs/sha256/{d.encoded}" for d in diff_ids]
    assert entries[0]["Config"] == f"blobs/sha256/{image.image_id().encoded}"
    back = archive.read_image(tmp_path / "new.tar", "hello:v1")
    validate_image(back)
    assert back.manifest().media_type == OCI_MANIFEST, "the saved manifest, not a made one"
    assert [x.digest for x in back.layers()] == diff_ids, "layers are stored uncompressed"
    # unpacked, the archive *is* an OCI layout: the same manifest, found by its tag
    unpacked = layout.read_image(tmp_path / "unpacked", "v1")
    assert unpacked.digest() == back.digest()
    assert layout.read_index(tmp_path / "unpacked").manifests[0].annotations == {
        "io.containerd.image.name": "docker.io/library/hello:v1",
        ANNOTATION_REF_NAME: "v1",
    }
    with pytest.raises(InvalidImageError, match="'legacy' or 'oci'"):
        archive.write_image(image, tmp_path / "x.tar", layout="v2")


def test_docker_25_archive_of_the_containerd_store_names_an_index(tmp_path: Path) -> None:
    """With the containerd image store, index.json names the image's index (and the
    archive holds only this platform's manifest): the reader finds the manifest in it."""
    image = random_image(500, 1, seed=12)
    archive.write_image(image, tmp_path / "a.tar", tags=["hi:v1"], layout="oci")
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
    entry = json.loads(dict((m.name, d) for m, d in members)["index.json"])["manifests"][0]
    other = {
        "mediaType": OCI_MANIFEST,
        "digest": "sha256:" + "0" * 64,
        "size": 2,
        "platform": {"architecture": "arm64", "os": "linux"},
    }  # not saved
    mine = {**entry, "platform": {"architecture": "amd64", "os": "linux"}}
    del mine["annotations"]
    inner = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [other, mine]}
    ).encode()
    outer = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**entry, "mediaType": OCI_INDEX, "digest": str(sha256_digest(inner)),
         "size": len(inner)}]}  # fmt: skip
    with tarfile.open(tmp_path / "b.tar", "w") as tar:
        for member, data in members:
            if member.name == "index.json":
                data = json.dumps(outer).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        info = tarfile.TarInfo(f"blobs/sha256/{sha256_digest(inner).encoded}")
        info.size = len(inner)
        tar.addfile(info, io.BytesIO(inner))
    back = archive.read_image(tmp_path / "b.tar")
    assert back.manifest().media_type == OCI_MANIFEST and str(back.digest()) == entry["digest"]


@needs_skopeo
def test_skopeo_reads_the_docker_25_archive(tmp_path: Path, capsys) -> None:
    from hardway.cli import main

    image = random_image(3000, 2, seed=10)
    layout.write_image(image, tmp_path / "l", tag="t")
    tar = tmp_path / "new.tar"
    assert (
        main(
            [
                "copy",
                "--archive-format",
                "oci",
                f"oci:{tmp_path / 'l'}:t",
                f"docker-archive:{tar}:hello:v1",
            ]
        )
        == 0
    )
    inspected = json.loads(skopeo("inspect", f"docker-archive:{tar}"))
    assert inspected["Layers"] == [str(x.diff_id) for x in image.layers()]
    skopeo("copy", f"docker-archive:{tar}", f"oci:{tmp_path / 'copied'}:t")
    copied = layout.read_image(tmp_path / "copied", "t")
    validate_image(copied)
    assert copied.config().rootfs == image.config().rootfs  # skopeo re-encodes the config


# --- transports -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("layout", "has no transport"),
        ("docker:registry/x:1", "should be docker://REF"),
        ("tarball:x.tar", "unknown transport 'tarball'"),
        ("oci::tag", "has no path"),
        ("docker-archive:x.tar:", "names nothing"),
    ],
)
def test_bad_image_names(text: str, message: str) -> None:
    with pytest.raises(BadImageNameError, match=message):
        parse_image_name(text)


def test_writing_to_an_archive_index_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadImageNameError, match="@N picks an image to read"):
        write_image(random_image(10, 1), f"docker-archive:{tmp_path / 'a.tar'}:@0")


def test_transport_names_round_trip_through_both_formats(tmp_path: Path) -> None:
    image = random_image(700, 2, seed=30, fmt="docker")
    write_image(image, f"docker-archive:{tmp_path / 'a.tar'}:img:1")
    write_image(read_image(f"docker-archive:{tmp_path / 'a.tar'}"), f"oci:{tmp_path / 'l'}:one")
    back = read_image(f"oci:{tmp_path / 'l'}:one")
    assert back.manifest().media_type == OCI_MANIFEST, "oci: stores OCI manifests"
    assert back.raw_config() == image.raw_config()
    assert sha256_digest(back.raw_config()) == image.image_id()
    validate_image(back)
