"""hardway.image.digest: the OCI digest grammar, exact messages, and streaming."""

from __future__ import annotations

import doctest
import hashlib
import io
import os

import pytest

import hardway.image.digest
from hardway.errors import BadDigestError, HardwayError
from hardway.image.digest import (
    EMPTY_SHA256,
    Digest,
    digest_problem,
    digest_stream,
    parse_digest,
    sha256_digest,
)

HEX64 = hashlib.sha256(b"some layer").hexdigest()
HEX128 = hashlib.sha512(b"some layer").hexdigest()

GOOD = [
    (f"sha256:{HEX64}", "sha256", HEX64),
    (f"sha512:{HEX128}", "sha512", HEX128),
    # algorithms the spec does not register pass if they fit the grammar (its own examples)
    ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", "multihash+base58", None),
    ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "sha256+b64u", None),
    ("a.b_c-d:=", "a.b_c-d", "="),
    ("x9:AbC", "x9", "AbC"),
]

BAD = [
    ("", "no ':'"),
    (f"sha256{HEX64}", "no ':'"),
    ("sha256:", "the encoded part after ':' is empty"),
    (f":{HEX64}", "the algorithm before ':' is missing"),
    (f"sha256:{HEX64[:63]}", "sha256 digests have 64 hex characters, this one has 63"),
    (f"sha256:{HEX64}0", "sha256 digests have 64 hex characters, this one has 65"),
    (f"sha512:{HEX64}", "sha512 digests have 128 hex characters, this one has 64"),
    (f"sha256:A{HEX64[1:]}", "sha256 digests are lowercase hex; 'A' at position 0 is not"),
    (f"sha256:{HEX64[:5]}g{HEX64[6:]}", "'g' at position 5 is not"),
    (f"SHA256:{HEX64}", "the algorithm is lowercase: 'sha256', not 'SHA256'"),
    (f"sha256+:{HEX64}", "joined by single '+', '.', '_' or '-'"),
    (f"sha--256:{HEX64}", "joined by single '+', '.', '_' or '-'"),
    (f"sha256::{HEX64}", "':' at position 0 of the encoded part is not allowed"),
    ("foo:abc/def", "'/' at position 3 of the encoded part is not allowed"),
    (f"sha256:{HEX64}\n", "remove the whitespace"),
    (f" sha256:{HEX64}", "remove the whitespace"),
]


@pytest.mark.parametrize(("text", "algorithm", "encoded"), GOOD)
def test_good_digests_parse(text: str, algorithm: str, encoded: str | None) -> None:
    digest = parse_digest(text)
    assert digest.algorithm == algorithm
    assert digest.encoded == (encoded or text.split(":", 1)[1])
    assert str(digest) == text
    assert digest_problem(text) is None


@pytest.mark.parametrize(("text", "says"), BAD)
def test_bad_digests_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(BadDigestError) as caught:
        parse_digest(text)
    assert says in caught.value.message
    assert repr(text) in caught.value.message, "the message quotes the string it rejects"
    assert EMPTY_SHA256 in str(caught.value), "the message shows a good example"
    assert digest_problem(text) is not None


def test_bad_digest_is_a_value_error_and_a_hardway_error() -> None:
    with pytest.raises(ValueError):
        parse_digest("nope")
    with pytest.raises(HardwayError):
        parse_digest("nope")


def test_not_a_string() -> None:
    with pytest.raises(BadDigestError, match="a digest is a str, not bytes"):
        parse_digest(b"sha256:" + HEX64.encode())  # type: ignore[arg-type]


def test_digest_validates_on_construction_and_is_frozen() -> None:
    with pytest.raises(BadDigestError, match="this one has 3"):
        Digest("sha256", "abc")
    digest = Digest("sha256", HEX64)
    with pytest.raises(AttributeError):
        digest.encoded = "0" * 64  # type: ignore[misc]
    assert digest == parse_digest(f"sha256:{HEX64}")
    assert hash(digest) == hash(parse_digest(f"sha256:{HEX64}"))


def test_sha256_digest_matches_hashlib() -> None:
    data = os.urandom(1000)
    assert str(sha256_digest(data)) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert str(sha256_digest(b"")) == EMPTY_SHA256


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 17])
def test_digest_stream_reads_in_chunks(size: int) -> None:
    data = os.urandom(size)
    reads: list[int] = []

    class Counting(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            block = super().read(n)
            reads.append(len(block))
            return block

    digest, length = digest_stream(Counting(data), chunk=4096)
    assert (digest, length) == (sha256_digest(data), size)
    assert max(reads) <= 4096, "it must never read more than one chunk at a time"


def test_doctests() -> None:
    failures, tried = doctest.testmod(hardway.image.digest)
    assert tried > 0 and failures == 0
