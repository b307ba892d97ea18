"""hardway.image.digest
~~~~~~~~~~~~~~~~~~~~

A digest names content by its hash: ``sha256:`` followed by 64 hex characters. Every
blob of an image (layers, the config, manifests) is stored, fetched and verified by its
digest, so a registry can check each byte it receives and a cache can never hand out the
wrong file. This module is the reference answer to lab 00: later chapters import it,
never the learner's version, so a learner stuck on lab 00 can still go on.

The grammar is the OCI image spec's (``descriptor.md``)::

    digest     ::= algorithm ":" encoded
    algorithm  ::= component (separator component)*     component ::= [a-z0-9]+
    separator  ::= [+._-]                               encoded   ::= [a-zA-Z0-9=_-]+

``sha256`` and ``sha512`` digests must be exactly 64 and 128 lowercase hex characters;
other algorithms that fit the grammar are accepted as they are.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import BinaryIO

from hardway.errors import BadDigestError

__all__ = [
    "EMPTY_SHA256",
    "Digest",
    "digest_problem",
    "digest_stream",
    "parse_digest",
    "sha256_digest",
]

#: the digest of zero bytes: a good example, and one worth recognising on sight
EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#: hex length of the algorithms the spec registers
HEX_LENGTHS = {"sha256": 64, "sha512": 128}

_ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")
_FIX = f"write it as algorithm:encoded, for example {EMPTY_SHA256}"


@dataclass(frozen=True)
class Digest:
    """A validated ``algorithm:encoded`` pair; ``str()`` gives the wire form.

    >>> d = Digest("sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    >>> str(d) == EMPTY_SHA256
    True
    >>> Digest("sha256", "abc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    hardway.errors.BadDigestError: ...: sha256 digests have 64 hex characters, this one has 3
      To fix: write it as algorithm:encoded, for example sha256:e3b0...
    """

    algorithm: str
    encoded: str

    def __post_init__(self) -> None:
        problem = _problem(self.algorithm, self.encoded)
        if problem:
            raise BadDigestError(f"{str(self)!r}: {problem}", fix=_FIX)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"


def parse_digest(text: str) -> Digest:
    """Parse ``algorithm:encoded``; raise :class:`BadDigestError` saying what is wrong.

    >>> parse_digest(EMPTY_SHA256).algorithm
    'sha256'
    >>> parse_digest("sha256:E3B0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    hardway.errors.BadDigestError: ...: sha256 digests are lowercase hex; 'E' at position 0 is not
      To fix: ...
    """
    problem = digest_problem(text)
    if problem:
        shown = repr(text) if isinstance(text, str) else "the digest"
        raise BadDigestError(f"{shown}: {problem}", fix=_FIX)
    algorithm, _, encoded = text.partition(":")
    return Digest(algorithm, encoded)


def digest_problem(text: str) -> str | None:
    """What is wrong with ``text`` as a digest, in words; ``None`` when it is a good one.

    >>> digest_problem("sha256:" + "0" * 63)
    'sha256 digests have 64 hex characters, this one has 63'
    >>> digest_problem(EMPTY_SHA256) is None
    True
    """
    if not isinstance(text, str):
        return f"a digest is a str, not {type(text).__name__}"
    if text != text.strip():
        return "remove the whitespace around the digest"
    algorithm, colon, encoded = text.partition(":")
    if not colon:
        return "there is no ':' between the algorithm and the encoded part"
    return _problem(algorithm, encoded)


def sha256_digest(data: bytes) -> Digest:
    """The sha256 digest of ``data``.

    >>> str(sha256_digest(b"")) == EMPTY_SHA256
    True
    """
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def digest_stream(fileobj: BinaryIO, chunk: int = 1 << 20) -> tuple[Digest, int]:
    """The sha256 digest and size of everything left in ``fileobj``, read ``chunk`` at a time.

    A 1 GiB layer costs one chunk of memory, not a gigabyte.

    >>> import io
    >>> digest, size = digest_stream(io.BytesIO(b"hello\\n"))
    >>> size, digest.encoded[:12]
    (6, '5891b5b522d5')
    """
    hasher, size = hashlib.sha256(), 0
    while block := fileobj.read(chunk):
        hasher.update(block)
        size += len(block)
    return Digest("sha256", hasher.hexdigest()), size


def _problem(algorithm: str, encoded: str) -> str | None:
    """What is wrong with ``algorithm:encoded``, in words, or ``None`` when it is fine."""
    if not algorithm:
        return "the algorithm before ':' is missing (e.g. sha256)"
    if not _ALGORITHM.fullmatch(algorithm):
        if algorithm.lower() != algorithm:
            return f"the algorithm is lowercase: {algorithm.lower()!r}, not {algorithm!r}"
        return (
            f"the algorithm {algorithm!r} may only hold a-z and 0-9, "
            "joined by single '+', '.', '_' or '-'"
        )
    if not encoded:
        return "the encoded part after ':' is empty"
    if bad := re.search(r"[^a-zA-Z0-9=_-]", encoded):
        return (
            f"{bad[0]!r} at position {bad.start()} of the encoded part is not allowed "
            "(only letters, digits, '=', '_' and '-')"
        )
    if (want := HEX_LENGTHS.get(algorithm)) is not None:
        if bad := re.search(r"[^0-9a-f]", encoded):
            where = f"{bad[0]!r} at position {bad.start()}"
            return f"{algorithm} digests are lowercase hex; {where} is not"
        if len(encoded) != want:
            return f"{algorithm} digests have {want} hex characters, this one has {len(encoded)}"
    return None
