"""The registry client against the real Distribution registry on loopback, judged by
skopeo, umoci and runc: what we push they read, what they push we pull to the same tree,
and what we push, pull and unpack runs. Rare error paths use a fake transport."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter

from hardway.cli import main
from hardway.distribution import registry as client
from hardway.distribution.errors import RegistryError, RegistryNotFoundError, RetriesExhaustedError
from hardway.distribution.registry import Registry
from hardway.errors import DigestMismatchError, InvalidImageError
from hardway.image import layout
from hardway.image.digest import sha256_digest
from hardway.image.mediatypes import OCI_MANIFEST
from hardway.image.mutate import from_dir
from hardway.image.random import random_image
from hardway.image.validate import validate_image

TOOLS = all(shutil.which(t) for t in ("skopeo", "umoci"))
needs_tools = pytest.mark.skipif(not TOOLS, reason="needs skopeo and umoci")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="umoci/runc keep owners as root")


def run(*args: object) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run([str(a) for a in args], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return result


def hardway(capsys: pytest.CaptureFixture[str], *args: object, status: int = 0) -> str:
    capsys.readouterr()
    got = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert got == status, err
    return out + err


def host(status) -> str:
    return f"127.0.0.1:{status.port}"


@pytest.fixture(scope="module")
def hello_layout(busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox image that says Hello World, in an OCI layout tagged v1."""
    work = tmp_path_factory.mktemp("hello")
    image = from_dir(busybox_rootfs, work, cmd=["/bin/sh", "-c", "echo Hello World"])
    layout.write_image(image, work / "layout", tag="v1")
    return work / "layout"


# --- round trips with the real tools ----------------------------------------------------


@needs_tools
def test_copy_to_registry_is_read_by_skopeo_and_copied_back(
    registry, hello_layout: Path, tmp_path: Path, capsys
) -> None:
    ref = f"{host(registry)}/hello:v1"
    hardway(capsys, "copy", f"oci:{hello_layout}:v1", f"docker://{ref}")
    ours = layout.read_image(hello_layout, "v1").digest()
    raw = run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout
    assert sha256_digest(raw) == ours
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'b'}:v1")
    assert layout.read_image(tmp_path / "b", "v1").digest() == ours
    out = hardway(capsys, "inspect", f"docker://{ref}")
    assert json.loads(out)["Digest"] == str(ours)


@needs_tools
@needs_root
def test_pushed_by_skopeo_pulled_by_us_is_the_tree_umoci_unpacks(
    registry, hello_layout: Path, tmp_path: Path, capsys
) -> None:
    from test_image_cli import snapshot

    ref = f"{host(registry)}/skopeo-pushed:v1"
    run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{hello_layout}:v1", f"docker://{ref}")
    hardway(capsys, "pull", ref, tmp_path / "ours")
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'u'}:v1")
    run("umoci", "unpack", "--image", f"{tmp_path / 'u'}:v1", tmp_path / "bundle")
    assert snapshot(tmp_path / "ours", owners=True) == snapshot(
        tmp_path / "bundle" / "rootfs", owners=True
    )


@needs_root
@pytest.mark.skipif(not shutil.which("runc"), reason="needs runc")
def test_pushed_pulled_unpacked_image_runs_under_runc(
    registry, hello_layout: Path, tmp_path: Path, capsys
) -> None:
    ref = f"{host(registry)}/hello-runc:v1"
    hardway(capsys, "copy", f"oci:{hello_layout}:v1", f"docker://{ref}")
    bundle = tmp_path / "bundle"
    hardway(capsys, "pull", ref, bundle / "rootfs")
    run("runc", "spec", "--bundle", bundle)
    spec = json.loads((bundle / "config.json").read_text())
    config = client.pull(ref).config().config
    spec["process"].update(terminal=False, args=[*(config.entrypoint or ()), *(config.cmd or ())])
    (bundle / "config.json").write_text(json.dumps(spec))
    name = f"hardway-test-{uuid.uuid4().hex[:8]}"
    result = run("runc", "run", "--bundle", bundle, name)
    assert result.stdout.decode().strip() == "Hello World"


# --- what goes over the wire -------------------------------------------------------------


def test_second_push_uploads_nothing_and_a_base_layer_is_mounted(registry, tmp_path: Path) -> None:
    base = random_image(50_000, 1, seed=701)
    client.push(base, f"{host(registry)}/mount-base:v1")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "hello.txt").write_text("hello\n")
    (tmp_path / "work").mkdir()
    app = from_dir(tmp_path / "app", tmp_path / "work", base=base)
    with Registry(host(registry)) as reg:
        reg.write_image(app, "mount-app", "v1", mount_from=("mount-base",))
        top, config = app.layers()[-1], app.manifest().config
        assert reg.bytes_uploaded == top.size + config.size, "the base layer was mounted"
        assert reg.requests["POST upload"] == 3  # mount (201), the top layer, the config
        assert reg.requests["PUT upload"] == 2
    with Registry(host(registry)) as again:
        assert again.write_image(app, "mount-app", "v1") == app.digest()
        assert again.bytes_uploaded == 0
        assert again.requests["HEAD blob"] == 3
        assert "POST upload" not in again.requests and "PATCH upload" not in again.requests
    assert validate_image(client.pull(f"{host(registry)}/mount-app:v1")) is None


def test_chunked_upload_honours_min_length_and_resumes_from_range(registry) -> None:
    blob = os.urandom(250_000)
    digest = sha256_digest(blob)
    with Registry(host(registry)) as reg:
        location, _ = reg.start_upload("chunked")
        first = reg.session.patch(
            location,
            data=blob[:100_000],
            headers={"Content-Range": "0-99999", "Content-Type": "application/octet-stream"},
        )
        assert first.status_code == 202 and first.headers["Range"] == "0-99999"
        location = requests.compat.urljoin(first.url, first.headers["Location"])
        reg.upload_chunked(
            location, lambda: io.BytesIO(blob), digest, len(blob), chunk_size=64 << 10, resume=True
        )
        assert reg.bytes_uploaded == 150_000, "only the bytes after the reported Range"
        assert reg.requests["PATCH upload"] == 3  # 65536 + 65536 + 18928
        assert reg.has_blob("chunked", digest)
        with reg.open_blob("chunked", digest, len(blob)) as back:
            assert back.read() == blob


def test_tags_are_listed(registry) -> None:
    """Distribution 2.8 ignores ``n`` (pagination came in 3.0): one page holds them all."""
    image = random_image(100, 1, seed=702)
    with Registry(host(registry)) as reg:
        for tag in ("a", "b", "c"):
            reg.write_image(image, "paged", tag)
        assert sorted(reg.tags("paged", page_size=1)) == ["a", "b", "c"]


class PagedTags(BaseAdapter):
    """A registry that pages tags one at a time with ``Link: <…>; rel="next"``."""

    def send(self, request, **kwargs):
        url = urlsplit(request.url)
        last = dict(parse_qsl(url.query)).get("last", "")
        tags = [t for t in ("a", "b", "c") if t > last][:1]
        response = requests.Response()
        response.status_code, response.request, response.url = 200, request, request.url
        response._content = json.dumps({"name": "x", "tags": tags}).encode()
        if tags and tags[0] != "c":
            response.headers["Link"] = f'</v2/x/tags/list?n=1&last={tags[0]}>; rel="next"'
        return response

    def close(self) -> None:
        pass


def test_tags_follow_link_pagination() -> None:
    reg = Registry("registry.invalid")
    reg.session.mount("https://", PagedTags())
    assert reg.tags("x", page_size=1) == ["a", "b", "c"]
    assert reg.requests["GET tags"] == 3


def test_a_corrupted_blob_is_rejected_and_nothing_is_unpacked(
    registry, tmp_path: Path, capsys
) -> None:
    image = random_image(20_000, 2, seed=703)
    client.push(image, f"{host(registry)}/corrupt:v1")
    layer = image.layers()[1]
    blobs = registry.state / "data" / "docker" / "registry" / "v2" / "blobs"
    data = blobs / "sha256" / layer.digest.encoded[:2] / layer.digest.encoded / "data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    out = hardway(capsys, "pull", f"{host(registry)}/corrupt:v1", tmp_path / "root", status=1)
    assert "corrupt or was tampered with" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no root, not even a partial one
    with pytest.raises(DigestMismatchError):
        client.pull(f"{host(registry)}/corrupt:v1").layers()[1].compressed().read()


# --- errors -------------------------------------------------------------------------------


def test_registry_errors_are_typed_with_their_codes(registry) -> None:
    with Registry(host(registry)) as reg:
        with pytest.raises(RegistryNotFoundError) as missing:
            reg.get_manifest("nothing-here", "v1")
        assert missing.value.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")
        assert isinstance(missing.value, requests.HTTPError) and missing.value.status_code == 404
        image = random_image(100, 1, seed=704)
        with pytest.raises(RegistryError) as invalid:
            reg.put_manifest("orphan", "v1", image.raw_manifest(), OCI_MANIFEST)
        assert invalid.value.code == "MANIFEST_BLOB_UNKNOWN"
        assert "push every layer" in str(invalid.value)
        assert not invalid.value.temporary


class FakeAdapter(BaseAdapter):
    """Answers every request with one canned response."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__()
        self.status, self.body, self.headers = status, body, headers

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code, response.request, response.url = self.status, request, request.url
        response._content = self.body
        response.headers.update(self.headers)
        return response

    def close(self) -> None:
        pass


def fake(status: int, body: object, **headers: str) -> Registry:
    reg = Registry("registry.invalid")
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    reg.session.mount("https://", FakeAdapter(status, data, headers))
    return reg


def test_rare_errors_from_a_fake_transport() -> None:
    busy = {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down", "detail": None}]}
    waits: list[float] = []
    with pytest.raises(RetriesExhaustedError) as error:
        slow = fake(429, busy, **{"Retry-After": "3"})
        slow.sleep = waits.append
        slow.ping()
    assert error.value.temporary and error.value.code == "TOOMANYREQUESTS"
    assert "too many requests" in str(error.value) and "after 5 attempts" in str(error.value)
    assert waits == [3.0] * 4, "Retry-After is honoured between the 5 tries"
    manifest = random_image(10, 1, seed=705).raw_manifest()
    confused = fake(200, manifest, **{"Content-Type": "application/vnd.oci.image.index.v1+json"})
    with pytest.raises(InvalidImageError, match="type confusion"):
        confused.get_manifest("x", "v1")
    lying = fake(200, manifest, **{"Content-Type": OCI_MANIFEST})
    with pytest.raises(DigestMismatchError):
        lying.get_manifest("x", "sha256:" + "0" * 64)


# --- the registry's whole life cycle: an index, HEAD, delete, garbage collection -------


def multi_platform_layout(path: Path) -> tuple[bytes, list]:
    """An OCI layout tagged v1 holding an index of two platforms and an attestation
    entry as BuildKit writes it: platform ``unknown/unknown`` and its annotations."""
    from dataclasses import replace

    from hardway.image.manifest import Index
    from hardway.image.mediatypes import OCI_INDEX
    from hardway.image.platform import Platform
    from hardway.image.protocols import describe

    images = [
        random_image(20_000, 2, seed=901, platform=Platform("amd64", "linux")),
        random_image(20_000, 2, seed=902, platform=Platform("arm64", "linux", "v8")),
        random_image(500, 1, seed=903, platform=Platform("unknown", "unknown")),
    ]
    entries = describe(images)
    notes = {
        "vnd.docker.reference.digest": str(entries[0].digest),
        "vnd.docker.reference.type": "attestation-manifest",
    }
    entries[2] = replace(entries[2], annotations=notes)
    raw = Index(tuple(entries), media_type=OCI_INDEX).to_json()
    layout.write_raw_index(raw, images, path, tag="v1")
    return raw, images


@needs_tools
def test_a_multi_platform_index_round_trips_whole_and_skopeo_reads_it(
    registry, tmp_path: Path, capsys
) -> None:
    raw, images = multi_platform_layout(tmp_path / "multi")
    ref = f"{host(registry)}/life/multi:v1"
    out = hardway(capsys, "copy", "--all", f"oci:{tmp_path / 'multi'}:v1", f"docker://{ref}")
    assert str(sha256_digest(raw)) in out and "3 manifests" in out
    got = run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout
    assert got == raw, "the index arrives byte for byte"
    for image in images:  # every manifest is there, by digest
        assert client.pull(f"{ref.split(':v1')[0]}@{image.digest()}").digest() == image.digest()
    hardway(capsys, "copy", "--all", f"docker://{ref}", f"oci:{tmp_path / 'back'}:v1")
    assert layout.read_raw_index(tmp_path / "back", "v1") == raw
    run("skopeo", "copy", "--all", f"oci:{tmp_path / 'back'}:v1", f"oci:{tmp_path / 'sk'}:v1")
    # without --all: the one image for this machine (never the attestation's unknown/unknown)
    hardway(capsys, "copy", f"docker://{ref}", f"oci:{tmp_path / 'one'}:v1")
    assert layout.read_image(tmp_path / "one", "v1").digest() == images[0].digest()
    single = f"docker://{host(registry)}/life/single:v1"
    hardway(capsys, "copy", f"oci:{tmp_path / 'one'}:v1", single)
    assert "single image" in hardway(capsys, "copy", "--all", single, "oci:x:y", status=1)


def test_head_resolves_a_tag_and_delete_removes_the_manifest_and_its_tags(registry, capsys) -> None:
    image = random_image(4000, 1, seed=904)
    ref = f"{host(registry)}/life/deleted"
    client.push(image, f"{ref}:a")
    client.push(image, f"{ref}:b")
    with client.client_for(f"{ref}:a") as reg:
        head = reg.head_manifest("life/deleted", "a")
        assert head is not None and head.digest == image.digest()
        with pytest.raises(RegistryError) as by_tag:
            reg.delete_manifest("life/deleted", "a")
        assert by_tag.value.status_code in (400, 404, 405), "Distribution 2.8: by digest only"
    out = hardway(capsys, "delete", f"docker://{ref}:a")
    assert str(image.digest()) in out
    with client.client_for(f"{ref}:b") as reg:
        assert reg.head_manifest("life/deleted", "b") is None, "every tag on it is gone"
        assert reg.tags("life/deleted") == []
    hardway(capsys, "delete", f"docker://{ref}:b", status=1)


def test_garbage_collection_shrinks_the_storage_after_deletes(tmp_path: Path, capsys) -> None:
    from conftest import find_free_port
    from hardway.distribution.server import local_registry

    started = local_registry.start_mode(find_free_port(), "none")
    try:
        ref = f"{started.host}/life/gc"
        kept = random_image(50_000, 1, seed=905)
        client.push(kept, f"{ref}:kept")
        multi_platform_layout(tmp_path / "multi")
        hardway(capsys, "copy", "--all", f"oci:{tmp_path / 'multi'}:v1", f"docker://{ref}:v1")
        dry = local_registry.garbage_collect(started.port)
        assert dry.blobs == 0 and dry.after == dry.before, "nothing deleted yet"
        hardway(capsys, "delete", f"docker://{ref}:v1")
        out = hardway(capsys, "registry", "gc", "--port", started.port, "--delete-untagged")
        assert "eligible" in out
        done = local_registry.garbage_collect(started.port)
        assert done.after == done.before, "a second collection finds nothing more"
        sizes = [int(n.replace(",", "")) for n in out.split("storage ")[1].split()[::2][:2]]
        assert sizes[1] < sizes[0] - 80_000, f"the storage shrank by the images' layers: {out}"
        assert local_registry.status(started.port).running, "started again after the sweep"
        assert client.pull(f"{ref}:kept").digest() == kept.digest()
    finally:
        local_registry.stop(started.port)
