"""hardway.image.manifest
~~~~~~~~~~~~~~~~~~~~~~~

A *manifest* is the document a registry serves for a tag: it points at the image config
and at the layer blobs, bottom layer first, each by :class:`~hardway.image.descriptor.Descriptor`.
OCI's manifest and Docker's V2.2 one have the same shape; only the media types differ.
An *index* (Docker calls it a "manifest list") points at one manifest per platform, so
that ``docker pull`` on an arm64 machine gets the arm64 image; an OCI layout's
``index.json`` is an index too, whose entries carry their tag as an annotation
(:data:`ANNOTATION_REF_NAME`).

>>> from hardway.image.descriptor import Descriptor
>>> from hardway.image.mediatypes import OCI_CONFIG
>>> manifest = Manifest(Descriptor.of(b"{}", OCI_CONFIG))
>>> manifest.to_json()[:60]
b'{"config":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hardway.errors import InvalidImageError
from hardway.image.descriptor import Descriptor
from hardway.image.jsondoc import (
    Document,
    as_string_map,
    get_field,
    set_unless_empty,
)
from hardway.image.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from hardway.image.platform import Platform

__all__ = ["ANNOTATION_REF_NAME", "Index", "Manifest"]

#: the annotation that names a tag in an OCI layout's index.json
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Manifest(Document):
    """An image manifest: OCI (``…oci.image.manifest.v1+json``) or Docker V2.2.

    Both formats have the same shape; only the media types differ.

    >>> from hardway.image.mediatypes import DOCKER_CONFIG
    >>> docker = Manifest(Descriptor.of(b"{}", DOCKER_CONFIG), media_type=DOCKER_MANIFEST)
    >>> docker.format, Manifest.from_json(docker.to_json()) == docker
    ('docker', True)
    """

    what: ClassVar[str] = "manifest"

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
        set_unless_empty(doc, "annotations", dict(self.annotations))
        if self.subject is not None:
            doc["subject"] = self.subject.to_dict()
        set_unless_empty(doc, "artifactType", self.artifact_type)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "manifest") -> Manifest:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"the {where} should be a JSON object")
        subject = get_field(doc, "subject", dict, where, None)
        layers = get_field(doc, "layers", list, where)
        return cls(
            config=Descriptor.from_dict(get_field(doc, "config", dict, where), f"{where}: config"),
            layers=tuple(
                Descriptor.from_dict(d, f"{where}: layers[{i}]") for i, d in enumerate(layers)
            ),
            media_type=get_field(doc, "mediaType", str, where, OCI_MANIFEST),
            schema_version=get_field(doc, "schemaVersion", int, where),
            annotations=as_string_map(get_field(doc, "annotations", dict, where, {}), where),
            subject=Descriptor.from_dict(subject, f"{where}: subject") if subject else None,
            artifact_type=get_field(doc, "artifactType", str, where, ""),
        )


@dataclass(frozen=True)
class Index(Document):
    """An image index (OCI) or manifest list (Docker): one manifest per platform.

    >>> arm = Descriptor.of(b"{}", OCI_MANIFEST, platform=Platform("arm64", "linux", "v8"))
    >>> str(Index((arm,)).select(Platform.parse("linux/arm64")).platform)
    'linux/arm64/v8'
    """

    what: ClassVar[str] = "index"

    manifests: tuple[Descriptor, ...] = ()
    media_type: str = OCI_INDEX
    schema_version: int = 2
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return "docker" if self.media_type == DOCKER_MANIFEST_LIST else "oci"

    def select(self, wanted: Platform) -> Descriptor:
        """The first manifest whose platform matches ``wanted`` (what ``docker pull`` picks).

        Entries without a platform are skipped, and so, by the same comparison, are
        BuildKit's attestation entries: they carry the platform ``unknown/unknown``.
        """
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
        set_unless_empty(doc, "annotations", dict(self.annotations))
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "index") -> Index:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"the {where} should be a JSON object")
        manifests = get_field(doc, "manifests", list, where)
        return cls(
            manifests=tuple(
                Descriptor.from_dict(d, f"{where}: manifests[{i}]") for i, d in enumerate(manifests)
            ),
            media_type=get_field(doc, "mediaType", str, where, OCI_INDEX),
            schema_version=get_field(doc, "schemaVersion", int, where),
            annotations=as_string_map(get_field(doc, "annotations", dict, where, {}), where),
        )
