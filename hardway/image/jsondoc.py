"""hardway.image.jsondoc
~~~~~~~~~~~~~~~~~~~~~~

An image's config, manifest and index are JSON documents, and bytes, not objects, are
what digests name. Everything the course writes goes through :func:`canonical_json`:
keys sorted, no whitespace, UTF-8, so the same document always gives the same bytes and
the same digest. Anything *read* keeps its raw bytes next to the parsed object, and
digests are always computed over those raw bytes: never re-serialise a manifest you
verify, because another tool's bytes (key order, spacing, escapes) are just as valid as
ours and hash differently.

Reading is strict: :func:`parse_json` wants an object, and the ``from_dict`` of each
document reads its keys with :func:`get_field` and the ``as_…`` helpers, which raise an
:class:`~hardway.errors.InvalidImageError` naming the key, where it is and what it
should have been. Writing leaves out empty fields (:func:`set_unless_empty`), as the
spec's Go structs do with ``omitempty``. :class:`Document` puts the two together for
the whole documents (config, manifest, index): ``to_json()`` and ``from_json()``.

>>> canonical_json({"b": 1, "a": None})
b'{"a":null,"b":1}'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from hardway.errors import InvalidImageError
from hardway.image.digest import Digest, parse_digest

__all__ = [
    "Document",
    "as_digest",
    "as_string_map",
    "as_strings",
    "canonical_json",
    "get_field",
    "parse_json",
    "set_unless_empty",
]


def canonical_json(obj: object) -> bytes:
    """The bytes we write for a JSON document: sorted keys, no spaces, UTF-8.

    Sorting makes the bytes independent of the order a dict was filled in, so building
    the same image twice gives the same digests.

    >>> canonical_json({"b": 1, "a": ["é"]})
    b'{"a":["\\xc3\\xa9"],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_json(raw: bytes | str, what: str = "document") -> dict[str, Any]:
    """Parse a JSON object, or raise :class:`InvalidImageError` saying why it is not one.

    >>> parse_json(b'{"schemaVersion": 2}')
    {'schemaVersion': 2}
    >>> parse_json(b"[]", "manifest")
    Traceback (most recent call last):
    hardway.errors.InvalidImageError: the manifest is a JSON list, not an object
    """
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidImageError(f"the {what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidImageError(f"the {what} is a JSON {type(doc).__name__}, not an object")
    return doc


# --- reading the keys of a document --------------------------------------------------------

_MISSING = object()
_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "integer", bool: "boolean"}


def get_field(
    doc: Mapping[str, Any], key: str, kind: type | tuple, where: str, default: Any = _MISSING
) -> Any:
    """``doc[key]`` if it is a ``kind``; ``default`` if it is missing or null.

    Without a ``default`` the key is required. ``where`` names the document in errors.

    >>> get_field({"size": 2}, "size", int, "descriptor")
    2
    >>> get_field({}, "annotations", dict, "descriptor", {})
    {}
    >>> get_field({"size": "2"}, "size", int, "descriptor")
    Traceback (most recent call last):
    hardway.errors.InvalidImageError: descriptor: 'size' should be a JSON integer, not str
    """
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


def as_digest(text: object, where: str) -> Digest:
    """``text`` parsed as a digest (``algorithm:hex``).

    >>> as_digest("sha256:" + "0" * 64, "config").algorithm
    'sha256'
    """
    if not isinstance(text, str):
        raise InvalidImageError(f"{where}: a digest is a string, not {type(text).__name__}")
    try:
        return parse_digest(text)
    except ValueError as exc:
        raise InvalidImageError(f"{where}: {exc}") from None


def as_strings(value: object, where: str) -> tuple[str, ...]:
    """A JSON array of strings, as a tuple.

    >>> as_strings(["/bin/sh", "-c"], "Cmd")
    ('/bin/sh', '-c')
    """
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidImageError(f"{where}: should be a JSON array of strings")
    return tuple(value)


def as_string_map(value: object, where: str) -> dict[str, str]:
    """A JSON object whose values are strings (annotations, labels), as a dict.

    >>> as_string_map({"a": 1}, "Labels")
    Traceback (most recent call last):
    hardway.errors.InvalidImageError: Labels: should be a JSON object of strings
    """
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidImageError(f"{where}: should be a JSON object of strings")
    return dict(value)


def set_unless_empty(doc: dict[str, Any], key: str, value: object) -> None:
    """Set ``key`` unless ``value`` is empty: the spec's ``omitempty``.

    >>> doc = {}; set_unless_empty(doc, "variant", ""); set_unless_empty(doc, "os", "linux")
    >>> doc
    {'os': 'linux'}
    """
    if value:
        doc[key] = value


class Document:
    """A whole JSON document of an image — its config, a manifest, an index — as bytes.

    A subclass is a dataclass with the spec's fields that turns itself into a dict
    (``to_dict()``) and back (``from_dict(doc, where)``), and says what it is called in
    error messages (:attr:`what`); this class adds the bytes on either side.

    >>> from hardway.image.config import ImageConfig
    >>> ImageConfig.from_json(b'{"architecture":"arm64","os":"linux",'
    ...     b'"rootfs":{"type":"layers","diff_ids":[]}}').platform.architecture
    'arm64'
    >>> ImageConfig.from_json(b"[]")
    Traceback (most recent call last):
    hardway.errors.InvalidImageError: the image config is a JSON list, not an object
    """

    #: what the document is called in error messages
    what: ClassVar[str] = "document"

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str) -> Self:
        raise NotImplementedError

    def to_json(self) -> bytes:
        """The document's bytes: :func:`canonical_json` of ``to_dict()``."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> Self:
        """The document in ``raw``; keep ``raw``: digests name it, not :meth:`to_json`."""
        return cls.from_dict(parse_json(raw, cls.what), cls.what)
