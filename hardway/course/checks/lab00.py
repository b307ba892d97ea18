"""hardway.course.checks.lab00
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 00, the warm-up on digests. Every run draws fresh random inputs and
compares the learner's answers with :mod:`hardway.image.digest`, the reference.

* 00.1 ``digest_of(data) -> str``: the ``sha256:…`` digest of some bytes;
* 00.2 ``gzip_layer(tar) -> bytes`` and ``diff_id_and_digest(tar) -> (diff_id, digest)``:
  the uncompressed and the compressed name of one layer, reproducibly;
* 00.3 ``parse_digest(s) -> (algorithm, encoded)``: accept good digests, raise
  ``ValueError`` on malformed ones.
"""

from __future__ import annotations

import gzip
import io
import random
import tarfile
import zlib
from collections.abc import Callable

from hardway.course.checks import fresh_rng
from hardway.course.grading import exercise, expect
from hardway.image.digest import digest_problem, sha256_digest
from hardway.image.digest import parse_digest as reference_parse

__all__ = ["digest_string", "layer_digests", "parse_digests"]


def _show(data: bytes) -> str:
    return repr(data) if len(data) <= 12 else f"<{len(data)} random bytes>"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:40] + "…" + text[-12:]


@exercise(
    "00.1",
    points=2,
    hints=(
        "a digest is two parts joined by a colon: which algorithm, then the hash.",
        "hash the bytes with hashlib and spell the hash in hex; put the algorithm's name in front.",
        "hashlib.sha256(data) hashes bytes and .hexdigest() spells the hash as 64 "
        "lowercase hex characters; a digest names its algorithm first, then ':'.",
    ),
)
def digest_string(digest_of: Callable[[bytes], str]) -> None:
    """digest_of(data) returns 'sha256:' and the 64 hex characters of the hash."""
    rng = fresh_rng()
    for data in (b"", rng.randbytes(rng.randint(1, 64)), rng.randbytes(rng.randint(1, 1 << 17))):
        want = str(sha256_digest(data))
        got = digest_of(data)
        call = f"digest_of({_show(data)})"
        expect(
            not isinstance(got, bytes),
            f"{call} returned bytes; a digest is text: .hexdigest() gives a str, .digest() bytes",
        )
        expect(isinstance(got, str), f"{call} returned a {type(got).__name__}, not a str")
        expect(
            got != want.removeprefix("sha256:"),
            f"{call} returned the hex alone; a digest starts with its algorithm: 'sha256:'",
        )
        expect(got.lower() != want or got == want, f"{call} used uppercase hex; use lowercase")
        expect(got == want, f"{call} returned {_short(got)}, expected {_short(want)}")


def _random_tar(rng: random.Random) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for index in range(rng.randint(1, 4)):
            data = rng.randbytes(rng.randint(0, 5000))
            info = tarfile.TarInfo(f"file-{index}-{rng.getrandbits(24):06x}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@exercise(
    "00.2",
    points=2,
    hints=(
        "compress the same bytes twice, a second apart: are the two outputs equal?",
        "two forms of one layer have two names: one for what is stored, one for what is unpacked.",
        "the diff_id names the uncompressed tar (what is unpacked on disk); the digest "
        "names the exact compressed bytes a registry stores. gzip writes the current time "
        "into its header unless you pass mtime=0, and then the same layer would get a new "
        "digest every second.",
    ),
)
def layer_digests(
    gzip_layer: Callable[[bytes], bytes],
    diff_id_and_digest: Callable[[bytes], tuple[str, str]],
) -> None:
    """gzip_layer compresses reproducibly; diff_id_and_digest names both forms."""
    tar = _random_tar(fresh_rng())
    gz = gzip_layer(tar)
    expect(isinstance(gz, bytes), f"gzip_layer(tar) returned a {type(gz).__name__}, not bytes")
    expect(gz[:2] == b"\x1f\x8b", "gzip_layer(tar) is not gzip data (gzip starts with 1f 8b)")
    try:
        back = gzip.decompress(gz)
    except (OSError, EOFError, zlib.error) as exc:
        raise AssertionError(f"gzip.decompress(gzip_layer(tar)) failed: {exc}") from None
    expect(back == tar, "gzip.decompress(gzip_layer(tar)) does not give the tar back")
    mtime = int.from_bytes(gz[4:8], "little")
    expect(
        mtime == 0,
        f"the gzip header of gzip_layer(tar) records a time ({mtime}), so the same layer "
        "gets a new digest every second: compress with mtime=0",
    )
    expect(gzip_layer(tar) == gz, "gzip_layer(tar) gave different bytes the second time")

    pair = diff_id_and_digest(tar)
    expect(
        isinstance(pair, tuple | list) and len(pair) == 2,
        f"diff_id_and_digest(tar) should return a (diff_id, digest) pair, not {_short(pair)}",
    )
    diff_id, digest = pair
    want_diff_id, want_digest = str(sha256_digest(tar)), str(sha256_digest(gz))
    expect(
        (diff_id, digest) != (want_digest, want_diff_id),
        "diff_id and digest are swapped: the diff_id is the uncompressed one",
    )
    expect(
        diff_id == want_diff_id,
        f"diff_id is {_short(diff_id)}; it should be the digest of the uncompressed tar",
    )
    expect(
        digest == want_digest,
        f"digest is {_short(digest)}; it should be the digest of gzip_layer(tar)'s bytes",
    )


def _good_and_bad(rng: random.Random) -> tuple[list[str], list[str]]:
    """Fresh valid digests, and malformed ones each broken in one way."""
    hex64 = rng.randbytes(32).hex()
    good = [
        str(sha256_digest(rng.randbytes(16))),
        "sha512:" + rng.randbytes(64).hex(),
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
    ]
    bad = [
        "",
        "sha256" + hex64,
        "sha256:",
        ":" + hex64,
        "sha256:" + hex64[:63],
        "sha256:" + hex64 + "0",
        "sha256:" + "A" + hex64[1:],
        "sha256:" + hex64[:10] + "g" + hex64[11:],
        "SHA256:" + hex64,
        "sha256:" + hex64 + "\n",
        " sha256:" + hex64,
        "sha256::" + hex64,
        "sha256+:" + hex64,
        "sha512:" + hex64,
        "foo:abc/def",
    ]
    return good, bad


def _reason(text: str) -> str:
    problem = digest_problem(text)
    if problem is None:
        raise RuntimeError(f"the reference accepts {text!r}, which the check calls malformed")
    return problem


@exercise(
    "00.3",
    points=2,
    hints=(
        "what can go wrong in a digest string? Think of every part: the algorithm, the "
        "colon, the hash and its length.",
        "split once at ':', check each part against the grammar of the OCI spec, and "
        "check the length the algorithm demands.",
        "split at the first ':', then match the algorithm against "
        "[a-z0-9]+([+._-][a-z0-9]+)* and the rest against [a-zA-Z0-9=_-]+ with "
        "re.fullmatch (re.match lets trailing text through, and '$' a final newline); "
        "sha256 needs exactly 64 lowercase hex characters, sha512 128.",
    ),
)
def parse_digests(parse_digest: Callable[[str], tuple[str, str]]) -> None:
    """parse_digest(s) returns (algorithm, encoded) and raises ValueError on bad input."""
    good, bad = _good_and_bad(fresh_rng())
    for text in good:
        want = reference_parse(text)
        try:
            got = parse_digest(text)
        except NotImplementedError:
            raise
        except Exception as exc:
            raise AssertionError(
                f"parse_digest({_short(text)}) raised {type(exc).__name__}, "
                "but that is a valid digest"
            ) from None
        pair = tuple(got) if isinstance(got, tuple | list) else got
        expect(
            pair == (want.algorithm, want.encoded),
            f"parse_digest({_short(text)}) returned {_short(got)}, "
            f"expected {_short((want.algorithm, want.encoded))}",
        )
    for text in bad:
        reason = _reason(text)
        try:
            got = parse_digest(text)
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as exc:
            raise AssertionError(
                f"parse_digest({_short(text)}) raised {type(exc).__name__}; raise ValueError "
                f"for a malformed digest ({reason})"
            ) from None
        raise AssertionError(
            f"parse_digest({_short(text)}) returned {_short(got)}, but it should raise "
            f"ValueError: {reason}"
        )
