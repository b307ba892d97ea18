"""hardway.image.descriptor
~~~~~~~~~~~~~~~~~~~~~~~~~

An image is a tree of blobs, and its edges are *descriptors*: a typed pointer to a blob
that says what the blob is (``mediaType``), which bytes it is (``digest``) and how many
(``size``). A manifest points at its config and layers by descriptor, an index at its
manifests, an OCI layout's ``index.json`` at its tagged images. The size matters as much
as the digest: a reader stops after ``size`` bytes, so a blob that never ends cannot fill
the disk before its digest is found wrong.

>>> Descriptor.of(b"{}", "application/vnd.oci.empty.v1+json").size
2
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hardway.errors import InvalidImageError
from hardway.image.digest import Digest, sha256_digest
from hardway.image.jsondoc import (
    as_digest,
    as_string_map,
    as_strings,
    get_field,
    set_unless_empty,
)
from hardway.image.platform import Platform

__all__ = ["Descriptor"]


@dataclass(frozen=True)
class Descriptor:
    """A typed pointer to a blob: what it is, its digest and its size in bytes.

    >>> from hardway.image.mediatypes import OCI_EMPTY
    >>> d = Descriptor.of(b"{}", OCI_EMPTY)
    >>> d.size, str(d.digest)[:19]
    (2, 'sha256:44136fa355b3')
    >>> from hardway.image.jsondoc import canonical_json
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
        set_unless_empty(doc, "urls", list(self.urls))
        set_unless_empty(doc, "annotations", dict(self.annotations))
        if self.platform is not None:
            doc["platform"] = self.platform.to_dict()
        set_unless_empty(doc, "artifactType", self.artifact_type)
        if self.data is not None:
            doc["data"] = base64.b64encode(self.data).decode()
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "descriptor") -> Descriptor:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"{where}: should be a JSON object")
        size = get_field(doc, "size", int, where)
        if size < 0:
            raise InvalidImageError(f"{where}: 'size' is negative ({size})")
        platform = get_field(doc, "platform", dict, where, None)
        data = get_field(doc, "data", str, where, None)
        try:
            raw = base64.b64decode(data, validate=True) if data is not None else None
        except ValueError:
            raise InvalidImageError(f"{where}: 'data' is not base64") from None
        return cls(
            media_type=get_field(doc, "mediaType", str, where),
            digest=as_digest(get_field(doc, "digest", str, where), f"{where}: 'digest'"),
            size=size,
            annotations=as_string_map(get_field(doc, "annotations", dict, where, {}), where),
            platform=Platform.from_dict(platform, f"{where}: platform") if platform else None,
            urls=as_strings(get_field(doc, "urls", list, where, []), f"{where}: 'urls'"),
            artifact_type=get_field(doc, "artifactType", str, where, ""),
            data=raw,
        )
