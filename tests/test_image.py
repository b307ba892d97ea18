"""The documents of an image (hardway.image.mediatypes, jsondoc, platform, descriptor,
config, manifest, protocols), their exact bytes, blobs, random images, and the validator
that lists every problem at once."""

from __future__ import annotations

import doctest
import hashlib
import io
import json

import pytest

import hardway.image.blobs
import hardway.image.config
import hardway.image.descriptor
import hardway.image.jsondoc
import hardway.image.manifest
import hardway.image.mediatypes
import hardway.image.mutate
import hardway.image.platform
import hardway.image.protocols
import hardway.image.random
import hardway.image.validate
from hardway.errors import DigestMismatchError, InvalidImageError
from hardway.image.blobs import StoredImage, VerifyingReader
from hardway.image.config import ContainerConfig, History, ImageConfig, RootFS, chain_ids, image_id
from hardway.image.descriptor import Descriptor
from hardway.image.digest import parse_digest, sha256_digest
from hardway.image.jsondoc import canonical_json
from hardway.image.manifest import Index, Manifest
from hardway.image.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    layer_media_type,
)
from hardway.image.mutate import append_layers, configure, convert, empty_image
from hardway.image.platform import Platform
from hardway.image.random import random_image
from hardway.image.validate import (
    config_problems,
    image_problems,
    index_problems,
    manifest_problems,
    validate_image,
)

HEX = hashlib.sha256(b"x").hexdigest()
DIGEST = f"sha256:{HEX}"


@pytest.mark.parametrize(
    "module",
    [
        hardway.image.mediatypes,
        hardway.image.jsondoc,
        hardway.image.platform,
        hardway.image.descriptor,
        hardway.image.config,
        hardway.image.manifest,
        hardway.image.protocols,
        hardway.image.validate,
        hardway.image.blobs,
        hardway.image.random,
        hardway.image.mutate,
    ],
)
def test_doctests(module: object) -> None:
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0


# --- bytes ------------------------------------------------------------------------------


def test_canonical_json_is_sorted_compact_utf8_whatever_the_insertion_order() -> None:
    a = canonical_json({"z": 1, "a": {"y": [1, "é"], "b": None}})
    b = canonical_json({"a": {"b": None, "y": [1, "é"]}, "z": 1})
    assert a == b == '{"a":{"b":null,"y":[1,"é"]},"z":1}'.encode()


def test_image_id_is_the_digest_of_the_config_bytes_not_of_a_reserialisation() -> None:
    compact = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    pretty = json.dumps(json.loads(compact), indent=2).encode()
    assert image_id(compact) == sha256_digest(compact)
    assert image_id(compact) != image_id(pretty), "same JSON, other bytes, other image"


def test_chain_ids_follow_the_spec_formula() -> None:
    diff_ids = [sha256_digest(bytes([i])) for i in range(3)]
    chain = chain_ids(diff_ids)
    assert chain[0] == diff_ids[0]
    second = hashlib.sha256(f"{diff_ids[0]} {diff_ids[1]}".encode()).hexdigest()
    third = hashlib.sha256(f"sha256:{second} {diff_ids[2]}".encode()).hexdigest()
    assert [c.encoded for c in chain[1:]] == [second, third]
    assert chain_ids([]) == []


# --- documents --------------------------------------------------------------------------


def full_config() -> ImageConfig:
    return ImageConfig(
        architecture="arm64",
        os="linux",
        variant="v8",
        created="2024-01-02T03:04:05Z",
        author="me",
        rootfs=RootFS((parse_digest(DIGEST),)),
        config=ContainerConfig(
            user="1000:1000",
            exposed_ports=("80/tcp", "53/udp"),
            env=("PATH=/usr/bin", "EMPTY="),
            entrypoint=("/bin/sh", "-c"),
            cmd=("echo hi",),
            volumes=("/data",),
            working_dir="/srv",
            labels={"org.example": "ünïcode"},
            stop_signal="SIGTERM",
        ),
        history=(
            History("2024-01-02T03:04:05Z", "COPY . /", comment="c"),
            History(empty_layer=True),
        ),
    )


def test_config_uses_the_spec_keys_and_round_trips() -> None:
    config = full_config()
    doc = json.loads(config.to_json())
    assert doc["config"]["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert doc["config"]["Volumes"] == {"/data": {}}
    assert doc["config"]["WorkingDir"] == "/srv" and doc["config"]["User"] == "1000:1000"
    assert doc["rootfs"] == {"type": "layers", "diff_ids": [DIGEST]}
    assert doc["history"][1] == {"empty_layer": True}
    assert doc["variant"] == "v8"
    assert ImageConfig.from_json(config.to_json()) == config
    assert config_problems(doc) == []


def test_foreign_config_keys_survive_a_round_trip() -> None:
    raw = {
        "architecture": "amd64",
        "os": "linux",
        "docker_version": "24.0.7",
        "config": {"Hostname": "", "Cmd": None, "ArgsEscaped": True},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    config = ImageConfig.from_dict(raw)
    assert config.config.cmd is None and config.extra == {"docker_version": "24.0.7"}
    assert json.loads(config.to_json())["config"] == {"Hostname": "", "ArgsEscaped": True}
    assert json.loads(config.to_json())["docker_version"] == "24.0.7"


def test_descriptor_round_trip_with_every_optional_field() -> None:
    descriptor = Descriptor(
        OCI_MANIFEST,
        parse_digest(DIGEST),
        7,
        annotations={"a": "b"},
        platform=Platform("arm", "linux", "v7", "1.0", ("f",)),
        urls=("https://example.com/x",),
        artifact_type="application/x",
        data=b"payload",
    )
    doc = descriptor.to_dict()
    assert doc["data"] == "cGF5bG9hZA==" and doc["platform"]["os.features"] == ["f"]
    assert Descriptor.from_dict(doc) == descriptor
    assert set(Descriptor.of(b"{}", OCI_CONFIG).to_dict()) == {"mediaType", "digest", "size"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"mediaType": OCI_CONFIG, "size": 1}, "'digest' is missing"),
        ({"mediaType": OCI_CONFIG, "digest": "sha256:abc", "size": 1}, "64 hex characters"),
        (
            {"mediaType": OCI_CONFIG, "digest": DIGEST, "size": "1"},
            "'size' should be a JSON integer",
        ),
        ({"mediaType": OCI_CONFIG, "digest": DIGEST, "size": True}, "not bool"),
        ({"mediaType": OCI_CONFIG, "digest": DIGEST, "size": -1}, "negative"),
        ({"digest": DIGEST, "size": 1}, "'mediaType' is missing"),
    ],
)
def test_a_bad_descriptor_is_refused_with_a_clear_message(doc: dict, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        Descriptor.from_dict(doc, "manifest: config")


def test_manifest_and_index_round_trip_in_both_formats() -> None:
    config = Descriptor.of(b"{}", DOCKER_CONFIG)
    layer = Descriptor(DOCKER_LAYER_GZIP, parse_digest(DIGEST), 10)
    docker = Manifest(config, (layer,), media_type=DOCKER_MANIFEST)
    assert docker.format == "docker" and Manifest.from_json(docker.to_json()) == docker
    assert json.loads(docker.to_json())["schemaVersion"] == 2
    entry = Descriptor.of(docker.to_json(), DOCKER_MANIFEST, platform=Platform("amd64", "linux"))
    manifest_list = Index((entry,), media_type=DOCKER_MANIFEST_LIST)
    assert Index.from_json(manifest_list.to_json()) == manifest_list
    assert index_problems(json.loads(manifest_list.to_json())) == []
    assert manifest_problems(json.loads(docker.to_json())) == []


def test_index_select_picks_the_platform_and_variant() -> None:
    def entry(platform: str) -> Descriptor:
        return Descriptor.of(platform.encode(), OCI_MANIFEST, platform=Platform.parse(platform))

    index = Index((entry("linux/amd64"), entry("linux/arm/v6"), entry("linux/arm/v7"),
                   entry("linux/arm64/v8"), entry("unknown/unknown")))  # fmt: skip
    assert index.select(Platform.parse("linux/arm/v7")) == index.manifests[2]
    # as containerd compares: linux/arm is arm/v7, not the v6 listed first; arm64/v8 is arm64
    assert index.select(Platform.parse("linux/arm")) == index.manifests[2]
    assert index.select(Platform.parse("linux/arm/v6")) == index.manifests[1]
    assert index.select(Platform.parse("linux/arm64")) == index.manifests[3]
    assert index.select(Platform("aarch64", "linux")) == index.manifests[3]
    with pytest.raises(InvalidImageError, match="offers linux/amd64, linux/arm/v6"):
        index.select(Platform.parse("linux/s390x"))


def test_layer_media_types() -> None:
    assert layer_media_type("oci", "zstd") == OCI_LAYER_ZSTD
    assert layer_media_type("docker", "gzip") == DOCKER_LAYER_GZIP
    with pytest.raises(InvalidImageError, match="no zstd"):
        layer_media_type("docker", "zstd")


# --- validation -------------------------------------------------------------------------


def test_config_problems_are_all_reported() -> None:
    doc = {
        "os": "linux",
        "created": "yesterday",
        "config": {"Env": ["OK=1", "NOEQUALS", "=v"], "ExposedPorts": {"http": {}}, "Cmd": "sh"},
        "rootfs": {"type": "layer", "diff_ids": ["sha256:abc"]},
        "history": [{"created_by": "a"}, {"created_by": "b"}],
    }
    problems = config_problems(doc)
    for expected in (
        "config.architecture is missing",
        "'yesterday' is not an RFC 3339 time",
        "config.Env[1] 'NOEQUALS' is not KEY=VALUE",
        "config.Env[2] '=v' is not KEY=VALUE",
        "config.ExposedPorts 'http' is not port",
        "config.Cmd should be an array",
        "config.rootfs.type should be 'layers', not 'layer'",
        "config.rootfs.diff_ids[0]: sha256 digests have 64 hex characters",
        "config.history has 2 entries that add a layer, but rootfs.diff_ids lists 1",
    ):
        assert any(expected in p for p in problems), (expected, problems)


def test_manifest_problems_name_the_bad_media_types() -> None:
    doc = {
        "schemaVersion": 1,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": DIGEST, "size": 2},
        "layers": [
            {"mediaType": OCI_LAYER_ZSTD, "digest": DIGEST, "size": 1},
            {"mediaType": "text/plain", "digest": "md5:x!", "size": 1},
        ],
    }
    problems = manifest_problems(doc)
    assert "manifest.schemaVersion should be 2, not 1" in problems
    assert any("a docker image's config is" in p for p in problems)
    assert any("layers[0].mediaType" in p and "not a Docker layer type" in p for p in problems)
    assert any("layers[1].mediaType 'text/plain' is not a layer type" in p for p in problems)
    assert any("layers[1].digest:" in p for p in problems)
    umoci_style = {"schemaVersion": 2, "config": {**doc["config"], "mediaType": OCI_CONFIG}}
    assert manifest_problems({**umoci_style, "layers": []}) == [], "mediaType is a SHOULD"
    assert manifest_problems({**umoci_style, "mediaType": OCI_INDEX, "layers": []}) == [
        f"manifest.mediaType {OCI_INDEX!r} is not a manifest type"
    ]


def test_a_manifest_list_needs_platforms() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": DIGEST, "size": 3}],
    }
    assert index_problems(doc) == [
        "index.manifests[0].platform is missing (a manifest list needs one)"
    ]
    doc["mediaType"] = OCI_INDEX
    assert index_problems(doc) == []


def test_a_random_image_is_valid_and_reproducible() -> None:
    image = random_image(2048, 3, seed=7)
    validate_image(image)
    assert random_image(2048, 3, seed=7).raw_manifest() == image.raw_manifest()
    assert random_image(2048, 3, seed=8).digest() != image.digest()
    assert [layer.media_type for layer in image.layers()] == [OCI_LAYER_GZIP] * 3
    for layer in image.layers():
        assert layer.digest != layer.diff_id
        with layer.uncompressed() as tar:
            assert sha256_digest(tar.read()) == layer.diff_id


@pytest.mark.parametrize(
    ("fmt", "compression"), [("docker", "gzip"), ("oci", "zstd"), ("oci", "none")]
)
def test_random_images_of_every_kind_validate(fmt: str, compression: str) -> None:
    image = random_image(100, 2, seed=1, fmt=fmt, compression=compression)
    validate_image(image)
    assert image.manifest().format == fmt
    if compression == "none":
        assert all(layer.digest == layer.diff_id for layer in image.layers())


def broken(image: StoredImage, *, manifest=None, config=None, blobs=None) -> StoredImage:
    """``image`` with its documents or blobs replaced (bypassing StoredImage's own check)."""
    raw_config = config if config is not None else image.raw_config()
    if manifest is None:
        doc = json.loads(image.raw_manifest())
        doc["config"]["digest"] = str(sha256_digest(raw_config))
        doc["config"]["size"] = len(raw_config)
        manifest = canonical_json(doc)
    blobs = blobs or {}

    def opener(digest):
        return io.BytesIO(blobs[digest]) if digest in blobs else image.open_blob(digest)

    return StoredImage(manifest, raw_config, opener)


def test_validate_image_collects_every_problem() -> None:
    image = random_image(512, 2, seed=3)
    config = json.loads(image.raw_config())
    config["config"] = {"Env": ["BROKEN"]}
    config["rootfs"]["diff_ids"][1] = str(sha256_digest(b"not the tar"))
    layers = image.layers()
    tampered = broken(
        image, config=canonical_json(config), blobs={layers[0].digest: b"\x1f\x8b junk"}
    )
    with pytest.raises(InvalidImageError) as caught:
        validate_image(tampered)
    assert "config.Env[0] 'BROKEN' is not KEY=VALUE" in caught.value.problems
    # document problems stop the (slow) layer checks; fix them and the layers are checked
    config["config"] = {}
    tampered = broken(
        image, config=canonical_json(config), blobs={layers[0].digest: b"\x1f\x8b junk"}
    )
    problems = image_problems(tampered)
    assert len(problems) == 2, problems
    assert problems[0].startswith("layer 0: ")
    assert problems[1].startswith("layer 1: its uncompressed tar hashes to")
    assert "config.rootfs.diff_ids[1]" in problems[1]
    assert image_problems(tampered, layers=False) == []


def test_validate_image_counts_layers_against_diff_ids() -> None:
    image = random_image(64, 2, seed=4)
    config = json.loads(image.raw_config())
    config["rootfs"]["diff_ids"].pop()
    config["history"].pop()
    problems = image_problems(broken(image, config=canonical_json(config)))
    assert problems == [
        "the manifest lists 2 layer(s) but config.rootfs.diff_ids 1: there is one diff_id per layer"
    ]


def test_validate_image_checks_the_config_descriptor() -> None:
    image = random_image(64, 1, seed=5)
    other = canonical_json({**json.loads(image.raw_config()), "author": "x"})
    fake = StoredImage.__new__(StoredImage)  # skip the constructor's own check
    fake._raw_manifest, fake._raw_config, fake._opener = image.raw_manifest(), other, None
    problems = image_problems(fake, layers=False)
    assert any(p.startswith("the config blob's digest is") for p in problems)
    assert any(p.startswith("the config blob is") for p in problems)


def test_stored_image_refuses_a_config_that_does_not_match() -> None:
    image = random_image(64, 1, seed=6)
    with pytest.raises(DigestMismatchError, match="but the manifest names"):
        StoredImage(image.raw_manifest(), image.raw_config() + b" ", image.open_blob)


def test_verifying_reader_catches_short_long_and_wrong_blobs() -> None:
    data = b"layer bytes"
    good = sha256_digest(data)
    assert VerifyingReader(io.BytesIO(data), good, len(data)).read() == data
    for stream, size, message in (
        (data[:-1], len(data), "10 bytes, but its descriptor says 11"),
        (data + b"!", len(data), "more than the 11 bytes"),
        (data.upper(), len(data), "the bytes hash to"),
    ):
        with pytest.raises(DigestMismatchError, match=message):
            VerifyingReader(io.BytesIO(stream), good, size).read()


# --- mutate -----------------------------------------------------------------------------


def test_changing_the_config_changes_config_and_manifest_digests_but_not_layers() -> None:
    image = random_image(128, 2, seed=9)
    changed = configure(image, env=["A=1"], cmd=["/bin/true"], exposed_ports=["80/tcp"])
    assert changed.image_id() != image.image_id() and changed.digest() != image.digest()
    assert [x.digest for x in changed.layers()] == [x.digest for x in image.layers()]
    assert changed.config().config.cmd == ("/bin/true",)
    again = configure(changed, env=["A=2", "B=3"], entrypoint=["/bin/sh"])
    assert again.config().config.env == ("A=2", "B=3"), "ENV replaces in place, appends new"
    assert again.config().config.cmd is None, "a new entrypoint resets an inherited cmd"
    validate_image(again)


def test_append_and_convert_keep_layer_blobs_and_config_bytes() -> None:
    base = empty_image(Platform("arm64", "linux", "v8"), fmt="docker")
    extra = random_image(256, 1, seed=2).layers()[0]
    image = append_layers(base, [extra], history=[History(created_by="ADD")])
    assert image.config().rootfs.diff_ids == (extra.diff_id,)
    assert image.config().history[-1].created_by == "ADD"
    assert image.manifest().layers[0].media_type == DOCKER_LAYER_GZIP
    validate_image(image)
    oci = convert(image, "oci")
    assert oci.raw_config() == image.raw_config(), "the image ID survives a conversion"
    assert oci.manifest().config.media_type == OCI_CONFIG
    assert oci.manifest().layers[0].media_type == OCI_LAYER_GZIP
    assert oci.digest() != image.digest()
    assert convert(oci, "oci") is oci
    validate_image(oci)


def test_select_skips_buildkits_unknown_unknown_attestations_and_platformless_entries() -> None:
    import random

    from hardway.image.random import ATTESTATION, random_index

    rng = random.Random(5)
    for _ in range(20):
        index, chosen = random_index(rng)
        for wanted in chosen:
            picked = index.select(wanted)
            assert picked.platform is not None and picked.platform.matches(wanted)
        if index.media_type == OCI_INDEX:
            notes = [
                d
                for d in index.manifests
                if d.annotations.get("vnd.docker.reference.type") == ATTESTATION
            ]
            assert len(notes) == 1 and str(notes[0].platform) == "unknown/unknown"
            assert any(d.platform is None for d in index.manifests)
    with pytest.raises(InvalidImageError, match="offers unknown/unknown"):
        only = Descriptor.of(b"x", OCI_MANIFEST, platform=Platform("unknown", "unknown"))
        Index((only,)).select(Platform("amd64", "linux"))
