"""hardway.image.documents
~~~~~~~~~~~~~~~~~~~~~~~

An image is three kinds of JSON document and some layer blobs. The *config* says how to
run the image and names every layer by its uncompressed digest (``rootfs.diff_ids``);
the *manifest* points at the config and at the compressed layer blobs by
:class:`Descriptor` (media type, digest, size); an *index* (a Docker "manifest list")
points at one manifest per platform. This module holds those documents as small frozen
dataclasses whose ``to_dict()`` uses the spec's JSON keys, plus the read-only
:class:`Image` and :class:`Layer` protocols that keep a layer's two names apart.

Bytes, not objects, are what digests name. Everything this module writes goes through
:func:`canonical_json`: keys sorted, no whitespace, UTF-8, so the same document always
gives the same bytes and the same digest. Anything *read* keeps its raw bytes next to
the parsed object, and digests are always computed over those raw bytes: never
re-serialise a manifest you verify, because another tool's bytes (key order, spacing,
escapes) are just as valid as ours and hash differently.

>>> config = ImageConfig(architecture="amd64", os="linux")
>>> config.to_json()
b'{"architecture":"amd64","config":{},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}'
"""

from __future__ import annotations

import base64
import json
import platform as _platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Protocol, runtime_checkable

from hardway.errors import InvalidImageError
from hardway.image.digest import Digest, parse_digest, sha256_digest

__all__ = [
    "ANNOTATION_REF_NAME",
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
    "ContainerConfig",
    "Descriptor",
    "History",
    "Image",
    "ImageConfig",
    "Index",
    "Layer",
    "Manifest",
    "Platform",
    "RootFS",
    "canonical_json",
    "chain_ids",
    "describe",
    "format_of",
    "host_platform",
    "image_id",
    "layer_compression",
    "layer_media_type",
    "parse_json",
    "with_platform",
]

# --- media types (image-spec mediatype.go, distribution manifest-v2-2.md) ----------------

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

#: the annotation that names a tag in an OCI layout's index.json
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


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


# --- bytes ------------------------------------------------------------------------------


def canonical_json(obj: object) -> bytes:
    """The bytes we write for a JSON document: sorted keys, no spaces, UTF-8.

    Sorting makes the bytes independent of the order a dict was filled in, so building
    the same image twice gives the same digests.

    >>> canonical_json({"b": 1, "a": ["é"]})
    b'{"a":["\\xc3\\xa9"],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_json(raw: bytes | str, what: str = "document") -> dict[str, Any]:
    """Parse a JSON object, or raise :class:`InvalidImageError` saying why it is not one."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidImageError(f"the {what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidImageError(f"the {what} is a JSON {type(doc).__name__}, not an object")
    return doc


def image_id(raw_config: bytes) -> Digest:
    """An image's ID: the digest of its config's exact bytes (what ``docker images`` shows).

    >>> str(image_id(b"{}"))[:19]
    'sha256:44136fa355b3'
    """
    return sha256_digest(raw_config)


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """ChainID(L0) = DiffID(L0); ChainID(L0…Ln) = sha256(ChainID(L0…Ln-1) + " " + DiffID(Ln)).

    A chain ID names a stack of layers, not one layer: snapshotters key unpacked
    filesystems by it.
    """
    chain: list[Digest] = []
    for diff_id in diff_ids:
        chain.append(sha256_digest(f"{chain[-1]} {diff_id}".encode()) if chain else diff_id)
    return chain


# --- small helpers for from_dict --------------------------------------------------------

_MISSING = object()


def _get(doc: Mapping[str, Any], key: str, kind: type | tuple, where: str, default=_MISSING):
    value = doc.get(key, _MISSING) if isinstance(doc, Mapping) else _MISSING
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise InvalidImageError(f"{where}: {key!r} is missing")
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)
        raise InvalidImageError(
            f"{where}: {key!r} should be a JSON {names}, not {type(value).__name__}"
        )
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "integer", bool: "boolean"}


def _digest(text: object, where: str) -> Digest:
    if not isinstance(text, str):
        raise InvalidImageError(f"{where}: a digest is a string, not {type(text).__name__}")
    try:
        return parse_digest(text)
    except ValueError as exc:
        raise InvalidImageError(f"{where}: {exc}") from None


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidImageError(f"{where}: should be a JSON array of strings")
    return tuple(value)


def _string_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidImageError(f"{where}: should be a JSON object of strings")
    return dict(value)


def _put(doc: dict[str, Any], key: str, value: object) -> None:
    """Set ``key`` unless ``value`` is empty: the spec's ``omitempty``."""
    if value:
        doc[key] = value


# --- platform and descriptor ------------------------------------------------------------


_MACHINES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


@dataclass(frozen=True)
class Platform:
    """Where an image runs: ``os``/``architecture`` plus an optional ``variant`` (``v8``).

    >>> Platform.parse("linux/arm64/v8")
    Platform(architecture='arm64', os='linux', variant='v8', os_version='', os_features=())
    >>> str(Platform("amd64", "linux"))
    'linux/amd64'
    """

    architecture: str
    os: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]``, as in ``docker run --platform``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidImageError(f"{text!r} is not a platform", fix="write os/arch[/variant]")
        return cls(architecture=parts[1], os=parts[0], variant=parts[2] if parts[2:] else "")

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, wanted: Platform) -> bool:
        """True when this platform satisfies ``wanted``; an empty wanted variant matches any."""
        return (
            self.os == wanted.os
            and self.architecture == wanted.architecture
            and (not wanted.variant or self.variant == wanted.variant)
            and (not wanted.os_version or self.os_version == wanted.os_version)
        )

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        _put(doc, "os.version", self.os_version)
        _put(doc, "os.features", list(self.os_features))
        _put(doc, "variant", self.variant)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "platform") -> Platform:
        features = _get(doc, "os.features", list, where, [])
        return cls(
            architecture=_get(doc, "architecture", str, where),
            os=_get(doc, "os", str, where),
            variant=_get(doc, "variant", str, where, ""),
            os_version=_get(doc, "os.version", str, where, ""),
            os_features=_strings(features, f"{where}: 'os.features'"),
        )


def host_platform() -> Platform:
    """This machine's platform in Go's names (``x86_64`` is ``amd64``, ``aarch64`` ``arm64``)."""
    machine = _platform.machine()
    variant = "v8" if machine == "aarch64" else ""
    return Platform(_MACHINES.get(machine, machine), "linux", variant)


@dataclass(frozen=True)
class Descriptor:
    """A typed pointer to a blob: what it is, its digest and its size in bytes.

    >>> d = Descriptor.of(b"{}", OCI_EMPTY)
    >>> d.size, str(d.digest)[:19]
    (2, 'sha256:44136fa355b3')
    >>> canonical_json(d.to_dict())[:60]
    b'{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21f'
    """

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    artifact_type: str = ""
    data: bytes | None = None

    @classmethod
    def of(cls, blob: bytes, media_type: str, **fields: Any) -> Descriptor:
        """The descriptor of ``blob``, digest and size computed."""
        return cls(media_type, sha256_digest(blob), len(blob), **fields)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        _put(doc, "urls", list(self.urls))
        _put(doc, "annotations", dict(self.annotations))
        if self.platform is not None:
            doc["platform"] = self.platform.to_dict()
        _put(doc, "artifactType", self.artifact_type)
        if self.data is not None:
            doc["data"] = base64.b64encode(self.data).decode()
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "descriptor") -> Descriptor:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"{where}: should be a JSON object")
        size = _get(doc, "size", int, where)
        if size < 0:
            raise InvalidImageError(f"{where}: 'size' is negative ({size})")
        platform = _get(doc, "platform", dict, where, None)
        data = _get(doc, "data", str, where, None)
        try:
            raw = base64.b64decode(data, validate=True) if data is not None else None
        except ValueError:
            raise InvalidImageError(f"{where}: 'data' is not base64") from None
        return cls(
            media_type=_get(doc, "mediaType", str, where),
            digest=_digest(_get(doc, "digest", str, where), f"{where}: 'digest'"),
            size=size,
            annotations=_string_map(_get(doc, "annotations", dict, where, {}), where),
            platform=Platform.from_dict(platform, f"{where}: platform") if platform else None,
            urls=_strings(_get(doc, "urls", list, where, []), f"{where}: 'urls'"),
            artifact_type=_get(doc, "artifactType", str, where, ""),
            data=raw,
        )


# --- the image config -------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerConfig:
    """The ``config`` object of an image config: how to start a container from it.

    Wire keys are Docker's (``Env``, ``Entrypoint``, ``WorkingDir``…). ``exposed_ports`` and
    ``volumes`` are sets on the wire (``{"80/tcp": {}}``). Keys this class does not model
    (``Hostname``, ``ArgsEscaped``, …) are kept in ``extra``.
    """

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # sets on the wire: keep them sorted, so a round trip gives an equal object
        object.__setattr__(self, "exposed_ports", tuple(sorted(set(self.exposed_ports))))
        object.__setattr__(self, "volumes", tuple(sorted(set(self.volumes))))

    def env_dict(self) -> dict[str, str]:
        """``Env`` as a dict (``K=V`` entries; a later entry wins)."""
        return dict(e.split("=", 1) if "=" in e else (e, "") for e in self.env)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self.extra)
        _put(doc, "User", self.user)
        _put(doc, "ExposedPorts", {p: {} for p in self.exposed_ports})
        _put(doc, "Env", list(self.env))
        if self.entrypoint is not None:
            doc["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            doc["Cmd"] = list(self.cmd)
        _put(doc, "Volumes", {v: {} for v in self.volumes})
        _put(doc, "WorkingDir", self.working_dir)
        _put(doc, "Labels", dict(self.labels))
        _put(doc, "StopSignal", self.stop_signal)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "config") -> ContainerConfig:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"{where}: should be a JSON object")
        known = {"User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir"}
        known |= {"Labels", "StopSignal"}
        entrypoint = _get(doc, "Entrypoint", list, where, None)
        cmd = _get(doc, "Cmd", list, where, None)
        return cls(
            user=_get(doc, "User", str, where, ""),
            exposed_ports=tuple(_get(doc, "ExposedPorts", dict, where, {})),
            env=_strings(_get(doc, "Env", list, where, []), f"{where}: 'Env'"),
            entrypoint=None
            if entrypoint is None
            else _strings(entrypoint, f"{where}: 'Entrypoint'"),
            cmd=None if cmd is None else _strings(cmd, f"{where}: 'Cmd'"),
            volumes=tuple(_get(doc, "Volumes", dict, where, {})),
            working_dir=_get(doc, "WorkingDir", str, where, ""),
            labels=_string_map(_get(doc, "Labels", dict, where, {}), f"{where}: 'Labels'"),
            stop_signal=_get(doc, "StopSignal", str, where, ""),
            extra={k: v for k, v in doc.items() if k not in known},
        )


@dataclass(frozen=True)
class History:
    """One step of how the image was built; ``empty_layer`` steps added no layer."""

    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for key in ("created", "created_by", "author", "comment", "empty_layer"):
            _put(doc, key, getattr(self, key))
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "history") -> History:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"{where}: should be a JSON object")
        texts = {k: _get(doc, k, str, where, "") for k in ("created", "created_by", "author")}
        return cls(
            **texts,
            comment=_get(doc, "comment", str, where, ""),
            empty_layer=_get(doc, "empty_layer", bool, where, False),
        )


@dataclass(frozen=True)
class RootFS:
    """``rootfs``: the layers' diff_ids (uncompressed digests), bottom layer first."""

    diff_ids: tuple[Digest, ...] = ()
    type: str = "layers"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "diff_ids": [str(d) for d in self.diff_ids]}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "rootfs") -> RootFS:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"{where}: should be a JSON object")
        diff_ids = _get(doc, "diff_ids", list, where)
        return cls(
            diff_ids=tuple(_digest(d, f"{where}: diff_ids[{i}]") for i, d in enumerate(diff_ids)),
            type=_get(doc, "type", str, where),
        )


@dataclass(frozen=True)
class ImageConfig:
    """The image config (``application/vnd.oci.image.config.v1+json``).

    Its digest is the image ID. Keys this class does not model (Docker's ``container``,
    ``docker_version``, …) are kept in ``extra``.
    """

    architecture: str
    os: str
    rootfs: RootFS = field(default_factory=RootFS)
    config: ContainerConfig = field(default_factory=ContainerConfig)
    history: tuple[History, ...] = ()
    created: str = ""
    author: str = ""
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def platform(self) -> Platform:
        return Platform(self.architecture, self.os, self.variant, self.os_version, self.os_features)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self.extra)
        doc.update(architecture=self.architecture, os=self.os, rootfs=self.rootfs.to_dict())
        doc["config"] = self.config.to_dict()
        _put(doc, "history", [h.to_dict() for h in self.history])
        for key, attr in (("created", "created"), ("author", "author"), ("variant", "variant")):
            _put(doc, key, getattr(self, attr))
        _put(doc, "os.version", self.os_version)
        _put(doc, "os.features", list(self.os_features))
        return doc

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "image config") -> ImageConfig:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"the {where} should be a JSON object")
        known = {"architecture", "os", "rootfs", "config", "history", "created", "author"}
        known |= {"variant", "os.version", "os.features"}
        history = _get(doc, "history", list, where, [])
        return cls(
            architecture=_get(doc, "architecture", str, where),
            os=_get(doc, "os", str, where),
            rootfs=RootFS.from_dict(_get(doc, "rootfs", dict, where), f"{where}: rootfs"),
            config=ContainerConfig.from_dict(
                _get(doc, "config", dict, where, {}), f"{where}: config"
            ),
            history=tuple(
                History.from_dict(h, f"{where}: history[{i}]") for i, h in enumerate(history)
            ),
            created=_get(doc, "created", str, where, ""),
            author=_get(doc, "author", str, where, ""),
            variant=_get(doc, "variant", str, where, ""),
            os_version=_get(doc, "os.version", str, where, ""),
            os_features=_strings(
                _get(doc, "os.features", list, where, []), f"{where}: os.features"
            ),
            extra={k: v for k, v in doc.items() if k not in known},
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> ImageConfig:
        return cls.from_dict(parse_json(raw, "image config"))


# --- manifest and index -----------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """An image manifest: OCI (``…oci.image.manifest.v1+json``) or Docker V2.2.

    Both formats have the same shape; only the media types differ.
    """

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    media_type: str = OCI_MANIFEST
    schema_version: int = 2
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str = ""

    @property
    def format(self) -> str:
        """``"oci"`` or ``"docker"``."""
        return "docker" if self.media_type == DOCKER_MANIFEST else "oci"

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"schemaVersion": self.schema_version, "mediaType": self.media_type}
        doc["config"] = self.config.to_dict()
        doc["layers"] = [layer.to_dict() for layer in self.layers]
        _put(doc, "annotations", dict(self.annotations))
        if self.subject is not None:
            doc["subject"] = self.subject.to_dict()
        _put(doc, "artifactType", self.artifact_type)
        return doc

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "manifest") -> Manifest:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"the {where} should be a JSON object")
        subject = _get(doc, "subject", dict, where, None)
        layers = _get(doc, "layers", list, where)
        return cls(
            config=Descriptor.from_dict(_get(doc, "config", dict, where), f"{where}: config"),
            layers=tuple(
                Descriptor.from_dict(d, f"{where}: layers[{i}]") for i, d in enumerate(layers)
            ),
            media_type=_get(doc, "mediaType", str, where, OCI_MANIFEST),
            schema_version=_get(doc, "schemaVersion", int, where),
            annotations=_string_map(_get(doc, "annotations", dict, where, {}), where),
            subject=Descriptor.from_dict(subject, f"{where}: subject") if subject else None,
            artifact_type=_get(doc, "artifactType", str, where, ""),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        return cls.from_dict(parse_json(raw, "manifest"))


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker): one manifest per platform."""

    manifests: tuple[Descriptor, ...] = ()
    media_type: str = OCI_INDEX
    schema_version: int = 2
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return "docker" if self.media_type == DOCKER_MANIFEST_LIST else "oci"

    def select(self, wanted: Platform) -> Descriptor:
        """The first manifest whose platform matches ``wanted`` (what ``docker pull`` picks)."""
        for descriptor in self.manifests:
            if descriptor.platform is not None and descriptor.platform.matches(wanted):
                return descriptor
        offered = ", ".join(str(d.platform) for d in self.manifests if d.platform) or "none"
        raise InvalidImageError(
            f"the index has no manifest for {wanted}; it offers {offered}",
            fix="choose one of the offered platforms",
        )

    def tagged(self, tag: str) -> list[Descriptor]:
        """The entries annotated ``org.opencontainers.image.ref.name: tag``."""
        return [d for d in self.manifests if d.annotations.get(ANNOTATION_REF_NAME) == tag]

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"schemaVersion": self.schema_version, "mediaType": self.media_type}
        doc["manifests"] = [d.to_dict() for d in self.manifests]
        _put(doc, "annotations", dict(self.annotations))
        return doc

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "index") -> Index:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"the {where} should be a JSON object")
        manifests = _get(doc, "manifests", list, where)
        return cls(
            manifests=tuple(
                Descriptor.from_dict(d, f"{where}: manifests[{i}]") for i, d in enumerate(manifests)
            ),
            media_type=_get(doc, "mediaType", str, where, OCI_INDEX),
            schema_version=_get(doc, "schemaVersion", int, where),
            annotations=_string_map(_get(doc, "annotations", dict, where, {}), where),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Index:
        return cls.from_dict(parse_json(raw, "index"))


def with_platform(descriptor: Descriptor, config: ImageConfig) -> Descriptor:
    """``descriptor`` with the platform of ``config``, ready for an index."""
    return replace(descriptor, platform=config.platform)


# --- read-only views ----------------------------------------------------------------------


@runtime_checkable
class Layer(Protocol):
    """One layer of an image: two names for the same files.

    ``digest``/``size`` name the blob as stored and shipped (usually compressed);
    ``diff_id`` names the uncompressed tar, as the config lists it.
    """

    digest: Digest
    diff_id: Digest
    size: int
    media_type: str

    def compressed(self) -> BinaryIO:
        """The blob as stored, verified against ``digest`` and ``size`` as it is read."""
        ...

    def uncompressed(self) -> BinaryIO:
        """The tar itself."""
        ...


@runtime_checkable
class Image(Protocol):
    """A read-only image, wherever it lives (an OCI layout, a tarball, a registry)."""

    def raw_manifest(self) -> bytes: ...

    def manifest(self) -> Manifest: ...

    def digest(self) -> Digest:
        """The digest of :meth:`raw_manifest`'s exact bytes."""
        ...

    def raw_config(self) -> bytes: ...

    def config(self) -> ImageConfig: ...

    def layers(self) -> list[Layer]: ...

    def open_blob(self, digest: Digest) -> BinaryIO:
        """A blob of this image by digest (config or layer), verified as it is read."""
        ...


def describe(images: Iterable[Image]) -> list[Descriptor]:
    """Index entries for ``images``: each manifest's descriptor with its platform."""
    out = []
    for image in images:
        raw = image.raw_manifest()
        descriptor = Descriptor(image.manifest().media_type, sha256_digest(raw), len(raw))
        out.append(with_platform(descriptor, image.config()))
    return out
