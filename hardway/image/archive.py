"""hardway.image.archive
~~~~~~~~~~~~~~~~~~~~~

The tarball of ``docker save`` and ``docker load`` (skopeo's ``docker-archive:``
transport). It predates the OCI layout and has no manifest in the registry's sense;
``manifest.json`` is a list of images, each naming its config file, its tags and its
layer tars, bottom first::

    manifest.json              [{"Config": "<hex>.json", "RepoTags": ["hello:latest"],
                                 "Layers": ["<id>/layer.tar", …]}]
    <hex>.json                 the image config, byte for byte (its digest is the image ID)
    <id>/layer.tar             one layer, *uncompressed*: its digest is its diff_id
    <id>/json, <id>/VERSION    the legacy "v1" image of each layer (id, parent, config)
    repositories               legacy tags: {"hello": {"latest": "<id of the top layer>"}}

``manifest.json`` came with Docker 1.10 (format "v1.2"); before it, an archive had only
the legacy files, and a layer's ``json`` chained to its ``parent``. Since Docker 25,
``docker save`` writes an OCI image layout instead of the ``<id>/`` directories, and
keeps ``manifest.json`` and ``repositories`` beside it for older readers::

    oci-layout, index.json     an OCI layout: index.json names the image's manifest
    blobs/sha256/<hex>         manifest, config, and each layer (still uncompressed)
    manifest.json              as above, its paths pointing into blobs/

:func:`read_image` reads all three, preferring ``manifest.json``; from a Docker 25
archive it takes the manifest itself out of ``blobs/``, so the digest is the one Docker
would push. :func:`write_image` writes the legacy layout by default (``layout="oci"``:
Docker 25's): every ``docker load`` since 1.10, and skopeo, read it, and the course's
digests and checks were made with it; Docker 25+ loads both.

An archive has no manifest, so reading one *makes* a Docker V2.2 manifest for it. Its
layers are whatever the tar holds (usually uncompressed tars, media type
``…rootfs.diff.tar``), each hashed once while the archive is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from hardway.errors import ImageNotFoundError, InvalidImageError
from hardway.image.blobs import StoredImage
from hardway.image.compression import decompressed, detect_compression
from hardway.image.config import ImageConfig, chain_ids
from hardway.image.descriptor import Descriptor
from hardway.image.digest import Digest, sha256_digest
from hardway.image.jsondoc import canonical_json, parse_json
from hardway.image.manifest import ANNOTATION_REF_NAME, Manifest
from hardway.image.mediatypes import (
    CONFIG_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    layer_media_type,
)
from hardway.image.protocols import Image
from hardway.sys.atomic import temporary_file

__all__ = ["list_tags", "normalize_tag", "read_image", "write_image"]

_CHUNK = 1 << 20
_EPOCH = "1970-01-01T00:00:00Z"


def normalize_tag(ref: str) -> str:
    """``name`` → ``name:latest``; ``docker.io/library/x:t`` → ``x:t`` (Docker's short form).

    >>> normalize_tag("hello"), normalize_tag("docker.io/library/busybox:1.36")
    ('hello:latest', 'busybox:1.36')
    """
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        name, tag = ref, "latest"
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return f"{name}:{tag}"


# --- writing ----------------------------------------------------------------------------


def write_image(
    image: Image, path: Path | str, *, tags: Sequence[str] = (), layout: str = "legacy"
) -> None:
    """Write ``image`` as a ``docker load`` tarball at ``path`` (replacing the file).

    Layers are stored uncompressed, as ``docker save`` does, and each is checked against
    its diff_id on the way. ``layout``: ``"legacy"`` (``<id>/layer.tar``, Docker < 25)
    or ``"oci"`` (Docker 25+: an OCI layout plus ``manifest.json``).
    """
    if layout == "oci":
        return _write_oci_archive(image, Path(path), [normalize_tag(t) for t in tags])
    if layout != "legacy":
        raise InvalidImageError(f"layout={layout!r}: write 'legacy' or 'oci'")
    path = Path(path)
    config = image.config()
    raw_config = image.raw_config()
    config_name = f"{sha256_digest(raw_config).encoded}.json"
    ids = [c.encoded for c in chain_ids(config.rootfs.diff_ids)]
    tags = [normalize_tag(t) for t in tags]
    with temporary_file(path.parent, ".tar") as (tmp, out):
        with tarfile.open(fileobj=out, mode="w") as tar:
            for i, layer in enumerate(image.layers()):
                _add_dir(tar, ids[i])
                _add_bytes(tar, f"{ids[i]}/VERSION", b"1.0")
                v1 = _v1_json(config, raw_config, ids, i)
                _add_bytes(tar, f"{ids[i]}/json", canonical_json(v1))
                with _uncompressed_file(layer) as (tar_file, size):
                    tar.addfile(_info(f"{ids[i]}/layer.tar", size), tar_file)
            _add_bytes(tar, config_name, raw_config)
            layers = [f"{i}/layer.tar" for i in ids]
            entry = {"Config": config_name, "RepoTags": tags, "Layers": layers}
            _add_bytes(tar, "manifest.json", canonical_json([entry]))
            if ids and tags:
                repositories: dict[str, dict[str, str]] = {}
                for tag in tags:
                    name, _, version = tag.rpartition(":")
                    repositories.setdefault(name, {})[version] = ids[-1]
                _add_bytes(tar, "repositories", canonical_json(repositories))
        out.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


def _write_oci_archive(image: Image, path: Path, tags: list[str]) -> None:
    """Docker 25's ``docker save``: an OCI layout whose layers are uncompressed tars (so a
    layer's digest *is* its diff_id), plus ``manifest.json`` and ``repositories``."""
    raw_config = image.raw_config()
    config_desc = Descriptor.of(raw_config, CONFIG_TYPES["oci"])
    diff_ids = image.config().rootfs.diff_ids
    with temporary_file(path.parent, ".tar") as (tmp, out):
        with tarfile.open(fileobj=out, mode="w") as tar:
            _add_dir(tar, "blobs")
            _add_dir(tar, "blobs/sha256")
            layers = []
            for layer, diff_id in zip(image.layers(), diff_ids, strict=True):
                with _uncompressed_file(layer) as (tar_file, size):
                    tar.addfile(_info(f"blobs/sha256/{diff_id.encoded}", size), tar_file)
                layers.append(Descriptor(layer_media_type("oci", "none"), diff_id, size))
            _add_bytes(tar, f"blobs/sha256/{config_desc.digest.encoded}", raw_config)
            raw = Manifest(config_desc, tuple(layers), media_type=MANIFEST_TYPES["oci"]).to_json()
            manifest_desc = Descriptor.of(raw, MANIFEST_TYPES["oci"])
            _add_bytes(tar, f"blobs/sha256/{manifest_desc.digest.encoded}", raw)
            entries = [
                {
                    **manifest_desc.to_dict(),
                    "annotations": {
                        "io.containerd.image.name": _full_name(tag),
                        ANNOTATION_REF_NAME: tag.rpartition(":")[2],
                    },
                }
                for tag in tags
            ] or [manifest_desc.to_dict()]
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
            _add_bytes(tar, "index.json", canonical_json(index))
            _add_bytes(tar, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
            names = [f"blobs/sha256/{d.encoded}" for d in diff_ids]
            entry = {
                "Config": f"blobs/sha256/{config_desc.digest.encoded}",
                "RepoTags": tags,
                "Layers": names,
            }
            _add_bytes(tar, "manifest.json", canonical_json([entry]))
            if diff_ids and tags:
                repositories: dict[str, dict[str, str]] = {}
                for tag in tags:
                    name, _, version = tag.rpartition(":")
                    repositories.setdefault(name, {})[version] = diff_ids[-1].encoded
                _add_bytes(tar, "repositories", canonical_json(repositories))
        out.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


def _full_name(tag: str) -> str:
    """``hello:latest`` → ``docker.io/library/hello:latest`` (containerd's image name)."""
    name = tag if "/" in tag.split(":")[0] else f"library/{tag}"
    first = name.split("/")[0]
    return name if "." in first or ":" in first or first == "localhost" else f"docker.io/{name}"


def _v1_json(config: ImageConfig, raw_config: bytes, ids: list[str], i: int) -> dict[str, Any]:
    """The legacy ``<id>/json``: id and parent; the top layer also carries the config."""
    doc: dict[str, Any] = {}
    if i == len(ids) - 1:
        doc = {k: v for k, v in parse_json(raw_config).items() if k not in ("rootfs", "history")}
    else:
        doc["created"] = config.created or _EPOCH
    doc["id"] = ids[i]
    if i:
        doc["parent"] = ids[i - 1]
    layered = [h for h in config.history if not h.empty_layer]
    if len(layered) == len(ids) and layered[i].created_by:
        doc["container_config"] = {"Cmd": [layered[i].created_by]}
    return doc


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mtime = size, kind, 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    tar.addfile(_info(name, kind=tarfile.DIRTYPE))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


@contextlib.contextmanager
def _uncompressed_file(layer: Any) -> Iterator[tuple[BinaryIO, int]]:
    """The layer's tar in a temporary file (tar needs the size up front), diff_id checked."""
    with tempfile.TemporaryFile() as tmp, layer.uncompressed() as tar:
        hasher, size = hashlib.sha256(), 0
        while block := tar.read(_CHUNK):
            hasher.update(block)
            size += len(block)
            tmp.write(block)
        if f"sha256:{hasher.hexdigest()}" != str(layer.diff_id):
            raise InvalidImageError(
                f"layer {layer.digest} unpacks to a tar that does not match its diff_id "
                f"{layer.diff_id}"
            )
        tmp.seek(0)
        yield tmp, size


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    """Where a file's bytes are inside the archive."""

    offset: int
    size: int


class _Section(io.RawIOBase):
    """``size`` bytes of ``path`` from ``offset``: one member of the tar, read in place."""

    def __init__(self, path: Path, member: _Member) -> None:
        self._file = path.open("rb")
        self._file.seek(member.offset)
        self._left = member.size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._file.read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


def _members(path: Path) -> dict[str, _Member]:
    """Every regular file of the archive by normalised name, links followed."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            infos = {_clean(m.name): m for m in tar.getmembers()}
    except tarfile.ReadError as exc:
        with path.open("rb") as f:
            compression = detect_compression(f.read(4))
        fix = "decompress it first (gunzip / zstd -d)" if compression != "none" else None
        raise InvalidImageError(f"{path} is not a tar archive ({exc})", fix=fix) from None
    out = {}
    for name, info in infos.items():
        target = info
        for _ in range(8):
            if target.issym() or target.islnk():
                base = PurePosixPath(name).parent if target.issym() else PurePosixPath()
                target = infos.get(_clean(str(base / target.linkname)), tarfile.TarInfo())
            else:
                break
        if target.isreg() and not target.issparse():
            out[name] = _Member(target.offset_data, target.size)
    return out


def _clean(name: str) -> str:
    parts: list[str] = []
    for part in PurePosixPath(name).parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part not in (".", "/"):
            parts.append(part)
    return "/".join(parts)


class _Archive:
    """An opened archive: its member table and small-file reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.members = _members(path)
        except FileNotFoundError:
            raise ImageNotFoundError(f"there is no archive at {path}") from None

    def open(self, name: str) -> _Section:
        member = self.members.get(_clean(name))
        if member is None:
            raise ImageNotFoundError(f"{self.path} has no file {name!r} (or it is not a file)")
        return _Section(self.path, member)

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def json(self, name: str, kind: type = dict) -> Any:
        """A JSON file of the archive, which must be a ``kind`` (object or array)."""
        try:
            doc = json.loads(self.read(name))
        except ValueError as exc:
            raise InvalidImageError(f"{self.path}: {name} is not valid JSON: {exc}") from None
        if not isinstance(doc, kind):
            raise InvalidImageError(f"{self.path}: {name} should be a JSON {kind.__name__}")
        return doc


def list_tags(path: Path | str) -> list[str]:
    """The tags of every image in the archive (``RepoTags``, or ``repositories``)."""
    archive = _Archive(Path(path))
    if "manifest.json" in archive.members:
        return [
            t for entry in archive.json("manifest.json", list) for t in entry.get("RepoTags") or []
        ]
    if "repositories" in archive.members:
        repos = archive.json("repositories")
        return [f"{name}:{tag}" for name, tags in repos.items() for tag in tags]
    return []


def read_image(path: Path | str, ref: str | None = None) -> StoredImage:
    """The image tagged ``ref`` in the archive (``@N``: the N-th; ``None``: the only one)."""
    archive = _Archive(Path(path))
    if "manifest.json" in archive.members:
        config_name, layer_names = _pick(archive, ref)
        raw_config = archive.read(config_name)
    elif "repositories" in archive.members:
        raw_config, layer_names = _legacy(archive, ref)
    else:
        raise InvalidImageError(
            f"{path} is a tar, but not a docker archive: it has neither manifest.json "
            "nor repositories"
        )
    config = ImageConfig.from_json(raw_config)
    if len(layer_names) != len(config.rootfs.diff_ids):
        raise InvalidImageError(
            f"{path}: manifest.json lists {len(layer_names)} layer(s), but the config "
            f"{len(config.rootfs.diff_ids)} diff_id(s)"
        )
    where: dict[Digest, str] = {}
    layers = []
    for name, diff_id in zip(layer_names, config.rootfs.diff_ids, strict=True):
        digest, size, compression = _hash_layer(archive, name, diff_id)
        where[digest] = name
        layers.append((digest, size, compression))
    fmt = "oci" if any(c == "zstd" for _, _, c in layers) else "docker"
    manifest = Manifest(
        config=Descriptor.of(raw_config, CONFIG_TYPES[fmt]),
        layers=tuple(Descriptor(layer_media_type(fmt, c), d, s) for d, s, c in layers),
        media_type=MANIFEST_TYPES[fmt],
    )
    raw_manifest = _saved_manifest(archive, manifest) or manifest.to_json()

    def opener(digest: Digest) -> BinaryIO:
        if digest not in where:
            raise ImageNotFoundError(f"{path} has no layer {digest}")
        return archive.open(where[digest])  # type: ignore[return-value]

    return StoredImage(raw_manifest, raw_config, opener)


def _saved_manifest(archive: _Archive, made: Manifest) -> bytes | None:
    """The manifest a Docker 25+ archive keeps in ``blobs/`` for this image (same config,
    same layers), its exact bytes; ``None`` in an older archive. ``index.json`` may name
    it directly (classic image store) or through an image index (containerd store)."""
    if "oci-layout" not in archive.members or "index.json" not in archive.members:
        return None
    entries = list(archive.json("index.json").get("manifests") or [])
    for _ in range(64):  # a few levels of indexes at most; never loop on a cycle
        if not entries:
            break
        entry = entries.pop(0)
        raw = _blob(archive, str(entry.get("digest", "")))
        if raw is None:
            continue  # Docker saves only this platform's blobs of a multi-platform image
        if entry.get("mediaType") in INDEX_TYPES.values():
            entries += parse_json(raw, "index").get("manifests") or []
        elif entry.get("mediaType") in MANIFEST_TYPES.values():
            saved = Manifest.from_json(raw)
            same_layers = [d.digest for d in saved.layers] == [d.digest for d in made.layers]
            if saved.config.digest == made.config.digest and same_layers:
                return raw
    return None


def _blob(archive: _Archive, digest: str) -> bytes | None:
    """``blobs/<alg>/<hex>`` of the archive, checked against its name; ``None`` if absent."""
    name = "blobs/" + digest.replace(":", "/", 1)
    if ":" not in digest or name not in archive.members:
        return None
    raw = archive.read(name)
    if str(sha256_digest(raw)) != digest:
        raise InvalidImageError(f"{archive.path}: {name} does not hash to its name")
    return raw


def _pick(archive: _Archive, ref: str | None) -> tuple[str, list[str]]:
    entries = archive.json("manifest.json", list)
    if not entries:
        raise ImageNotFoundError(f"{archive.path} holds no image (manifest.json is empty)")
    if ref is None and len(entries) > 1:
        raise ImageNotFoundError(
            f"{archive.path} holds {len(entries)} images: name one",
            fix=f"add :REF (one of {list_tags(archive.path)}) or :@N",
        )
    if ref is None:
        entry = entries[0]
    elif ref.startswith("@") and ref[1:].isdigit():
        if int(ref[1:]) >= len(entries):
            raise ImageNotFoundError(f"{archive.path} holds {len(entries)} image(s), no {ref}")
        entry = entries[int(ref[1:])]
    else:
        want = normalize_tag(ref)
        found = [e for e in entries if want in map(normalize_tag, e.get("RepoTags") or [])]
        if not found:
            known = list_tags(archive.path)
            raise ImageNotFoundError(f"{archive.path} has no image tagged {ref!r}; tags: {known}")
        entry = found[0]
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
        raise InvalidImageError(f"{archive.path}: a manifest.json entry has no 'Config'")
    layers = entry.get("Layers") or []
    if not all(isinstance(n, str) for n in layers):
        raise InvalidImageError(f"{archive.path}: 'Layers' should be an array of file names")
    return entry["Config"], layers


def _legacy(archive: _Archive, ref: str | None) -> tuple[bytes, list[str]]:
    """Rebuild a config from a pre-1.10 archive: ``repositories`` → ``<id>/json`` chain."""
    tops = {
        normalize_tag(f"{name}:{tag}"): top
        for name, tags in archive.json("repositories").items()
        for tag, top in tags.items()
    }
    if ref is None and len(set(tops.values())) != 1:
        raise ImageNotFoundError(f"{archive.path} holds several images: name one of {list(tops)}")
    top = next(iter(tops.values())) if ref is None else tops.get(normalize_tag(ref))
    if top is None:
        raise ImageNotFoundError(f"{archive.path} has no image tagged {ref!r}; tags: {list(tops)}")
    chain = []
    layer_id: str | None = top
    while layer_id:
        if layer_id in chain or len(chain) > 1000:
            raise InvalidImageError(f"{archive.path}: the parent chain of {top} loops")
        chain.append(layer_id)
        layer_id = archive.json(f"{layer_id}/json").get("parent")
    chain.reverse()
    v1s = [archive.json(f"{i}/json") for i in chain]
    diff_ids = []
    for layer_id in chain:
        with archive.open(f"{layer_id}/layer.tar") as blob:
            head = blob.read(4)
        with archive.open(f"{layer_id}/layer.tar") as blob:
            diff_ids.append(_digest_of(decompressed(blob, detect_compression(head))))
    history = [{"created": v.get("created", _EPOCH), "created_by": _created_by(v)} for v in v1s]
    config = {k: v for k, v in v1s[-1].items() if k in ("architecture", "os", "config", "author")}
    config.setdefault("architecture", "amd64")
    config.setdefault("os", "linux")
    config["created"] = v1s[-1].get("created", _EPOCH)
    config["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in diff_ids]}
    config["history"] = [{k: v for k, v in h.items() if v} for h in history]
    return canonical_json(config), [f"{i}/layer.tar" for i in chain]


def _created_by(v1: dict[str, Any]) -> str:
    cmd = (v1.get("container_config") or {}).get("Cmd") or []
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def _digest_of(stream: BinaryIO) -> Digest:
    hasher = hashlib.sha256()
    while block := stream.read(_CHUNK):
        hasher.update(block)
    return Digest("sha256", hasher.hexdigest())


def _hash_layer(archive: _Archive, name: str, diff_id: Digest) -> tuple[Digest, int, str]:
    """Digest, size and compression of a layer file; check it unpacks to ``diff_id``."""
    with archive.open(name) as blob:
        head = blob.read(4)
        hasher = hashlib.sha256(head)
        size = len(head)
        while block := blob.read(_CHUNK):
            hasher.update(block)
            size += len(block)
    digest = Digest("sha256", hasher.hexdigest())
    compression = detect_compression(head)
    got = digest
    if compression != "none":
        with archive.open(name) as blob:
            got = _digest_of(decompressed(blob, compression))
    if got != diff_id:
        raise InvalidImageError(
            f"{archive.path}: {name} unpacks to {got}, but the config's diff_id is {diff_id}",
            fix="the archive is corrupt: save or copy it again",
        )
    return digest, size, compression
