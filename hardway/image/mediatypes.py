"""hardway.image.mediatypes
~~~~~~~~~~~~~~~~~~~~~~~~~

Every blob an image points at is typed by a *media type*: a string such as
``application/vnd.oci.image.manifest.v1+json`` that says what the bytes are, so a
reader knows how to parse them before it has read them. A registry sends it as the
``Content-Type`` of a manifest, and every descriptor carries one.

Two families say the same things with other names: OCI's (the image spec's
``mediatype.go``) and Docker's V2.2 ones (distribution's ``manifest-v2-2.md``), which
registries still serve. A layer's media type also says how the tar is compressed —
Docker has no zstd layer. This module holds those names and the three questions asked
of them: which format is this (:func:`format_of`), how is this layer compressed
(:func:`layer_compression`), and which type does a layer of this format and compression
get (:func:`layer_media_type`).

>>> format_of(DOCKER_MANIFEST), layer_compression(OCI_LAYER_ZSTD)
('docker', 'zstd')
"""

from __future__ import annotations

from hardway.errors import InvalidImageError

__all__ = [
    "CONFIG_TYPES",
    "DOCKER_CONFIG",
    "DOCKER_LAYER_FOREIGN",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_TAR",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_TAR",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "format_of",
    "layer_compression",
    "layer_media_type",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

#: the manifest, index and config media type of each format
MANIFEST_TYPES = {"oci": OCI_MANIFEST, "docker": DOCKER_MANIFEST}
INDEX_TYPES = {"oci": OCI_INDEX, "docker": DOCKER_MANIFEST_LIST}
CONFIG_TYPES = {"oci": OCI_CONFIG, "docker": DOCKER_CONFIG}

#: layer media type -> (format, compression); Docker defines no zstd layer
_LAYERS = {
    OCI_LAYER_TAR: ("oci", "none"),
    OCI_LAYER_GZIP: ("oci", "gzip"),
    OCI_LAYER_ZSTD: ("oci", "zstd"),
    "application/vnd.oci.image.layer.nondistributable.v1.tar": ("oci", "none"),
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": ("oci", "gzip"),
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": ("oci", "zstd"),
    DOCKER_LAYER_TAR: ("docker", "none"),
    DOCKER_LAYER_GZIP: ("docker", "gzip"),
    DOCKER_LAYER_FOREIGN: ("docker", "gzip"),
}


def format_of(media_type: str) -> str | None:
    """``"oci"`` or ``"docker"`` for a known manifest, index, config or layer type.

    >>> format_of(DOCKER_MANIFEST), format_of(OCI_LAYER_GZIP), format_of("text/plain")
    ('docker', 'oci', None)
    """
    for fmt in ("oci", "docker"):
        if media_type in (MANIFEST_TYPES[fmt], INDEX_TYPES[fmt], CONFIG_TYPES[fmt]):
            return fmt
    return _LAYERS.get(media_type, (None, None))[0]


def layer_compression(media_type: str) -> str | None:
    """``"gzip"``, ``"zstd"`` or ``"none"`` for a layer media type; ``None`` if unknown.

    >>> layer_compression(DOCKER_LAYER_GZIP), layer_compression(OCI_LAYER_TAR)
    ('gzip', 'none')
    """
    return _LAYERS.get(media_type, (None, None))[1]


def layer_media_type(fmt: str, compression: str) -> str:
    """The distributable layer media type of ``fmt`` for ``compression``.

    >>> layer_media_type("docker", "gzip")
    'application/vnd.docker.image.rootfs.diff.tar.gzip'
    >>> layer_media_type("docker", "zstd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    hardway.errors.InvalidImageError: Docker manifests have no zstd layer type...
    """
    for media_type in (OCI_LAYER_TAR, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER_TAR):
        if _LAYERS[media_type] == (fmt, compression):
            return media_type
    if (fmt, compression) == ("docker", "gzip"):
        return DOCKER_LAYER_GZIP
    if fmt == "docker" and compression == "zstd":
        raise InvalidImageError(
            "Docker manifests have no zstd layer type", fix="use --format oci or gzip"
        )
    raise InvalidImageError(f"no layer media type for format {fmt!r}, compression {compression!r}")
