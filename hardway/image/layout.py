"""hardway.image.layout
~~~~~~~~~~~~~~~~~~~~

The OCI image layout: an image as a plain directory that skopeo, umoci, containerd and
podman all read (``skopeo copy … oci:DIR:TAG``)::

    DIR/oci-layout            {"imageLayoutVersion":"1.0.0"}: "this is a layout"
    DIR/index.json            an image index: one descriptor per tagged image
    DIR/blobs/sha256/<hex>    every blob (manifests, configs, layers), named by digest

A tag is not a file: it is the annotation ``org.opencontainers.image.ref.name`` on an
entry of ``index.json``. An entry may point at an index of its own (a multi-platform
image); :func:`read_image` then picks the manifest of the wanted platform.

The verbs are the same as for the other places an image lives (:mod:`hardway.image.archive`,
and the registry in chapter 07): :func:`read_image` and :func:`write_image`. Reading
verifies the manifest and the config against their digests at once, and each layer as
it streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from hardway.errors import ImageNotFoundError, InvalidImageError
from hardway.image.blobs import BlobDir, StoredImage
from hardway.image.descriptor import Descriptor
from hardway.image.digest import Digest
from hardway.image.jsondoc import canonical_json, parse_json
from hardway.image.manifest import ANNOTATION_REF_NAME, Index, Manifest
from hardway.image.mediatypes import INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX
from hardway.image.platform import Platform, host_platform
from hardway.image.protocols import Image, describe
from hardway.sys.atomic import write_atomic

__all__ = [
    "LAYOUT_VERSION",
    "blob_path",
    "init_layout",
    "read_image",
    "read_image_at",
    "read_index",
    "read_raw_index",
    "tags",
    "write_image",
    "write_index",
    "write_raw_index",
]

LAYOUT_VERSION = "1.0.0"
_INDEXES = set(INDEX_TYPES.values())
_MANIFESTS = set(MANIFEST_TYPES.values())


def init_layout(path: Path | str) -> Path:
    """Make ``path`` an (empty) OCI layout, or check that it already is one."""
    path = Path(path)
    marker = path / "oci-layout"
    if marker.exists():
        version = parse_json(marker.read_bytes(), "oci-layout file").get("imageLayoutVersion")
        if version != LAYOUT_VERSION:
            raise InvalidImageError(f"{path} is an OCI layout of version {version!r}, not 1.0.0")
        return path
    if path.exists() and any(path.iterdir()):
        raise InvalidImageError(
            f"{path} is not empty and is not an OCI layout (it has no oci-layout file)",
            fix="choose a new or empty directory",
        )
    (path / "blobs").mkdir(parents=True, exist_ok=True)
    write_atomic(path / "oci-layout", canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
    write_atomic(path / "index.json", Index().to_json())
    return path


def read_index(path: Path | str) -> Index:
    """``index.json``, parsed: every tagged (and untagged) entry of the layout."""
    path = Path(path)
    try:
        raw = (path / "index.json").read_bytes()
    except FileNotFoundError:
        raise ImageNotFoundError(
            f"{path} is not an OCI image layout (there is no index.json)",
            fix="check the path; a layout has oci-layout, index.json and blobs/",
        ) from None
    return Index.from_json(raw)


def tags(path: Path | str) -> list[str]:
    """The tags of the layout, in ``index.json`` order."""
    found = [d.annotations.get(ANNOTATION_REF_NAME) for d in read_index(path).manifests]
    return [t for t in found if t]


def read_image(
    path: Path | str, tag: str | None = None, *, platform: Platform | None = None
) -> StoredImage:
    """The image tagged ``tag`` (or the only one), for ``platform`` if it is an index."""
    path = Path(path)
    blobs = BlobDir(path / "blobs")
    descriptor = _entry(path, read_index(path), tag)
    for _ in range(4):  # an index may point at an index; a few levels are plenty
        raw = blobs.read(descriptor)
        kind = parse_json(raw, "manifest").get("mediaType", descriptor.media_type)
        if kind != descriptor.media_type:
            raise InvalidImageError(
                f"blob {descriptor.digest} says it is {kind!r}, but index.json calls it "
                f"{descriptor.media_type!r} (a type confusion, like CVE-2021-41190)"
            )
        if kind in _INDEXES:
            descriptor = Index.from_json(raw).select(platform or host_platform())
            continue
        if kind not in _MANIFESTS:
            raise InvalidImageError(f"{descriptor.digest} is a {kind!r}, not an image manifest")
        config = Manifest.from_json(raw).config
        return StoredImage(raw, blobs.read(config), blobs.open_raw)
    raise InvalidImageError(f"{path}: indexes nested too deep below {descriptor.digest}")


def read_raw_index(path: Path | str, tag: str | None = None) -> bytes:
    """The exact bytes of the multi-platform image tagged ``tag`` (or the only one)."""
    path = Path(path)
    descriptor = _entry(path, read_index(path), tag)
    if descriptor.media_type not in _INDEXES:
        raise InvalidImageError(f"{path}:{tag or ''} is a single image, not an index")
    return BlobDir(path / "blobs").read(descriptor)


def read_image_at(path: Path | str, descriptor: Descriptor) -> StoredImage:
    """The image whose manifest ``descriptor`` names (an entry of an index)."""
    blobs = BlobDir(Path(path) / "blobs")
    raw = blobs.read(descriptor)
    return StoredImage(raw, blobs.read(Manifest.from_json(raw).config), blobs.open_raw)


def _entry(path: Path, index: Index, tag: str | None) -> Descriptor:
    if tag is not None:
        found = index.tagged(tag)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidImageError(f"{path}: index.json tags {len(found)} entries {tag!r}")
        known = ", ".join(repr(t) for t in tags(path)) or "none"
        raise ImageNotFoundError(f"{path} has no image tagged {tag!r}; its tags: {known}")
    if len(index.manifests) == 1:
        return index.manifests[0]
    if not index.manifests:
        raise ImageNotFoundError(f"{path} is an empty OCI layout")
    known = ", ".join(repr(t) for t in tags(path)) or "none"
    raise ImageNotFoundError(
        f"{path} holds {len(index.manifests)} images: name one", fix=f"add :TAG; tags: {known}"
    )


def write_image(image: Image, path: Path | str, *, tag: str | None = None) -> Descriptor:
    """Write ``image`` (blobs, then manifest) into the layout, tagged ``tag``.

    Blobs already present are not copied again. A tag moves: an older entry with the
    same tag loses it. Returns the new ``index.json`` entry.
    """
    path = init_layout(path)
    blobs = BlobDir(path / "blobs")
    _write_blobs(image, blobs)
    descriptor = describe([image])[0]
    return _tag(path, replace(descriptor, platform=None), tag)


def write_index(
    images: Sequence[Image], path: Path | str, *, tag: str | None = None, fmt: str = "oci"
) -> Descriptor:
    """Write a multi-platform image: every image, then an index naming each one's platform."""
    path = init_layout(path)
    blobs = BlobDir(path / "blobs")
    for image in images:
        _write_blobs(image, blobs)
    raw = Index(tuple(describe(images)), media_type=INDEX_TYPES[fmt]).to_json()
    blobs.write_bytes(raw)
    return _tag(path, Descriptor.of(raw, INDEX_TYPES[fmt]), tag)


def write_raw_index(
    raw: bytes, images: Sequence[Image], path: Path | str, *, tag: str | None = None
) -> Descriptor:
    """Write a multi-platform image as it was: its manifests, then the index ``raw``, byte
    for byte (its digest stays what it was, attestation entries and all)."""
    path = init_layout(path)
    blobs = BlobDir(path / "blobs")
    for image in images:
        _write_blobs(image, blobs)
    media_type = parse_json(raw, "index").get("mediaType") or OCI_INDEX
    blobs.write_bytes(raw)
    return _tag(path, Descriptor.of(raw, media_type), tag)


def _write_blobs(image: Image, blobs: BlobDir) -> None:
    for layer in image.layers():
        if not blobs.has(layer.digest, layer.size):
            with layer.compressed() as stream:
                blobs.write(stream, layer.digest, layer.size)
    blobs.write_bytes(image.raw_config())
    blobs.write_bytes(image.raw_manifest())


def _tag(path: Path, descriptor: Descriptor, tag: str | None) -> Descriptor:
    if tag is not None:
        annotations = {**descriptor.annotations, ANNOTATION_REF_NAME: tag}
        descriptor = replace(descriptor, annotations=annotations)
    index = read_index(path)
    kept = []
    for entry in index.manifests:
        if entry == descriptor:
            continue
        if tag is not None and entry.annotations.get(ANNOTATION_REF_NAME) == tag:
            continue  # the tag moves to the new entry
        kept.append(entry)
    media_type = index.media_type or OCI_INDEX
    write_atomic(path / "index.json", Index((*kept, descriptor), media_type=media_type).to_json())
    return descriptor


def blob_path(path: Path | str, digest: Digest) -> Path:
    """Where the layout at ``path`` keeps blob ``digest``."""
    return BlobDir(Path(path) / "blobs").path(digest)
