"""hardway.course.checks.lab08
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 08, pulling an image. The pure exercises are compared with hardway's
own client (:mod:`hardway.distribution.registry`, :mod:`hardway.image.mediatypes`,
:mod:`hardway.image.manifest`, :mod:`hardway.image.blobs`) on
fresh random inputs every run; the last one pulls a blob the check has just pushed to
the course's real registry.

* 08.1 ``accept_header() -> str``: the four manifest and index media types;
* 08.2 ``checked_manifest(body, content_type, digest) -> dict``: a manifest trusted
  only if its bytes hash to ``digest`` and its ``mediaType`` is the ``Content-Type``;
* 08.3 ``verify_chunks(chunks, digest, size)``: a generator that passes chunks on and
  raises as soon as the stream is longer than ``size``, or hashes wrong at its end;
* 08.4 ``manifest_for(index, platform) -> dict``: the descriptor for ``os/arch[/variant]``;
* 08.5 ``pull_blob(registry_url, repository, digest, size) -> bytes``: GET, verified.
"""

from __future__ import annotations

import io
import json
import random
import string
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from hardway.course.checks import fresh_rng
from hardway.course.grading import exercise, expect
from hardway.image.descriptor import Descriptor
from hardway.image.digest import sha256_digest
from hardway.image.manifest import Index
from hardway.image.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST
from hardway.image.platform import Platform
from hardway.image.random import random_index

__all__ = ["accept_listed", "blob_pulled", "chunks_verified", "manifest_checked", "platform_found"]

MANIFEST_KINDS = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)


def _word(rng: random.Random, n: int = 6) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def _raises(call: Callable[[], object]) -> BaseException | None:
    """The exception ``call`` raised (``NotImplementedError`` passes through), or None."""
    try:
        call()
    except NotImplementedError:
        raise
    except Exception as exc:
        return exc
    return None


@exercise(
    "08.1",
    points=1,
    hint="list the OCI index and manifest types and Docker's manifest list and V2.2 "
    "manifest types, separated by ', '. Without the OCI ones, Distribution answers 404 "
    "for an OCI image it has.",
)
def accept_listed(accept_header: Callable[[], str]) -> None:
    """accept_header() lists the four manifest and index media types, nothing else."""
    got = accept_header()
    expect(isinstance(got, str), f"accept_header() should return a str, not {type(got).__name__}")
    listed = [part.split(";")[0].strip() for part in got.split(",")]
    for kind in MANIFEST_KINDS:
        expect(kind in listed, f"the Accept header does not list {kind}")
    extra = sorted(set(listed) - set(MANIFEST_KINDS))
    expect(not extra, f"list only manifest and index types, not {extra}")


def _manifest(rng: random.Random, kind: str) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": kind}
    blob = Descriptor.of(rng.randbytes(16), "application/octet-stream").to_dict()
    if kind in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        doc["manifests"] = [blob]
    else:
        doc["config"], doc["layers"] = blob, [blob]
    text = json.dumps(doc, indent=rng.choice([None, 2, 3]))  # the registry's bytes, any style
    return text.encode()


@exercise(
    "08.2",
    points=2,
    hint="hash the bytes exactly as they came (never re-serialise the JSON), compare with "
    "the digest; compare the document's mediaType with the Content-Type header without "
    "its parameters (what follows ';'). Raise ValueError on either mismatch.",
)
def manifest_checked(checked_manifest: Callable[[bytes, str, str], dict]) -> None:
    """checked_manifest(body, content_type, digest) returns the document or raises."""
    rng = fresh_rng()
    for kind in rng.sample(MANIFEST_KINDS, 4):
        body = _manifest(rng, kind)
        digest = str(sha256_digest(body))
        header = kind + rng.choice(["", "; charset=utf-8"])
        got = checked_manifest(body, header, digest)
        expect(
            got == json.loads(body),
            f"checked_manifest(…, {header!r}, …) should return the parsed manifest",
        )
        other = rng.choice([k for k in MANIFEST_KINDS if k != kind])
        error = _raises(lambda b=body, o=other, d=digest: checked_manifest(b, o, d))
        expect(
            isinstance(error, ValueError),
            f"a {kind.rsplit('.', 2)[-2]} served as {other!r} must raise ValueError "
            f"(a type confusion), not {'nothing' if error is None else type(error).__name__}",
        )
        tampered = body.replace(b'"schemaVersion"', b'"schemaVersion" ', 1)
        error = _raises(lambda t=tampered, h=header, d=digest: checked_manifest(t, h, d))
        expect(
            isinstance(error, ValueError),
            "bytes that do not hash to the digest (one space added) must raise ValueError, "
            f"not {'nothing' if error is None else type(error).__name__}",
        )


class _Source:
    """Chunks of ``data``, then (if ``extra``) more chunks forever; counts what was taken."""

    def __init__(self, data: bytes, chunk: int, extra: bool = False) -> None:
        self.data, self.chunk, self.extra, self.taken = data, chunk, extra, 0

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            self.taken += 1
            yield self.data[start : start + self.chunk]
        while self.extra and self.taken < 10_000:
            self.taken += 1
            yield b"x" * self.chunk


def _consume(verify_chunks: Callable, source: Iterable[bytes], digest: str, size: int) -> bytes:
    return b"".join(verify_chunks(iter(source), digest, size))


@exercise(
    "08.3",
    points=2,
    hint="hash and count each chunk before you yield it; raise ValueError as soon as the "
    "count passes size (do not read on), and after the last chunk when the count is short "
    "or the hash differs. A generator's checks run only while someone iterates it.",
)
def chunks_verified(verify_chunks: Callable[[Iterable[bytes], str, int], Iterator[bytes]]) -> None:
    """verify_chunks passes good blobs on and stops bad ones: long, short, or wrong."""
    rng = fresh_rng()
    data = rng.randbytes(rng.randint(3000, 9000))
    digest, size, chunk = str(sha256_digest(data)), len(data), rng.randint(100, 700)
    got = _consume(verify_chunks, _Source(data, chunk), digest, size)
    expect(got == data, "verify_chunks should yield the blob's chunks unchanged, in order")
    cases = [
        ("a truncated blob", _Source(data[:-1], chunk), size),
        ("a blob with one byte flipped", _Source(bytes([data[0] ^ 1]) + data[1:], chunk), size),
        ("a blob checked against a smaller size", _Source(data, chunk), size - 1),
    ]
    for what, source, want_size in cases:
        error = _raises(lambda s=source, n=want_size: _consume(verify_chunks, s, digest, n))
        expect(
            isinstance(error, ValueError),
            f"{what} must raise ValueError, not {'nothing' if error is None else type(error)}",
        )
    endless = _Source(data, chunk, extra=True)
    error = _raises(lambda: _consume(verify_chunks, endless, digest, size))
    expect(isinstance(error, ValueError), "a blob that never ends must raise ValueError")
    expect(
        endless.taken <= -(-size // chunk) + 1,
        f"on a blob that never ends, verify_chunks read {endless.taken} chunks before "
        f"raising; stop as soon as more than {size} bytes arrived",
    )


@exercise(
    "08.4",
    points=1,
    hint="walk index['manifests'] in order; skip entries without a 'platform'; os and "
    "architecture must be equal, the variant only when the wanted one has a variant. "
    "Raise LookupError when no entry matches.",
)
def platform_found(manifest_for: Callable[[dict, str], dict]) -> None:
    """manifest_for(index, "os/arch[/variant]") returns that platform's descriptor."""
    rng = fresh_rng()
    for _ in range(3):
        index, chosen = random_index(rng)
        index = index.to_dict()
        wanted = [str(p) for p in chosen] + ["linux/arm"] * any(
            p.architecture == "arm" for p in chosen
        )
        for text in wanted:
            want = Index.from_dict(index).select(Platform.parse(text)).to_dict()
            try:
                got = manifest_for(json.loads(json.dumps(index)), text)
            except LookupError:
                raise AssertionError(
                    f"manifest_for(index, {text!r}) raised LookupError, but the index has it"
                ) from None
            expect(
                got == want,
                f"manifest_for(index, {text!r}) should return the entry of "
                f"{want['digest'][:19]}…, not {str(got)[:60]}",
            )
        error = _raises(lambda i=index: manifest_for(i, "linux/riscv64"))
        expect(
            isinstance(error, LookupError),
            "with no matching platform, raise LookupError (KeyError is one), not "
            f"{'nothing' if error is None else type(error).__name__}",
        )


@exercise(
    "08.5",
    points=2,
    hint="GET <registry_url>/v2/<repository>/blobs/<digest> with stream=True and "
    "trust_env = False; feed response.iter_content(…) through your verify_chunks and join "
    "what it yields. A 404 or a wrong size must raise, not return.",
)
def blob_pulled(pull_blob: Callable[[str, str, str, int], bytes]) -> None:
    """pull_blob fetches a blob the check pushed, verified, and refuses a wrong size."""
    from hardway.course.checks.machine import course_registry
    from hardway.distribution.registry import Registry

    rng = fresh_rng()
    running = course_registry()  # not graded, with the reason, if it cannot serve the check
    url = running.url
    repository = f"lab08/check-{_word(rng, 8)}"
    data, tampered = (rng.randbytes(rng.randint(50_000, 200_000)) for _ in range(2))
    digest, bad = sha256_digest(data), sha256_digest(tampered)
    with Registry(url.removeprefix("http://")) as registry:
        for blob, name in ((data, digest), (tampered, bad)):
            registry.push_blob(repository, lambda b=blob: io.BytesIO(b), name, len(blob))
    # flip one byte of the second blob in the registry's storage: same size, other bytes
    stored = running.state / "data/docker/registry/v2/blobs/sha256"
    stored = stored / bad.encoded[:2] / bad.encoded / "data"
    stored.write_bytes(bytes([tampered[0] ^ 0xFF]) + tampered[1:])
    got = pull_blob(url, repository, str(digest), len(data))
    expect(isinstance(got, bytes), f"pull_blob should return bytes, not {type(got).__name__}")
    expect(got == data, f"pull_blob returned {len(got)} bytes, not the {len(data)} pushed")
    for size in (len(data) - 1, len(data) + 1):
        error = _raises(lambda n=size: pull_blob(url, repository, str(digest), n))
        expect(error is not None, f"a size of {size} for a {len(data)}-byte blob must raise")
    error = _raises(lambda: pull_blob(url, repository, str(bad), len(tampered)))
    expect(error is not None, "a blob whose bytes do not match its digest must raise")
    missing = str(sha256_digest(rng.randbytes(8)))
    error = _raises(lambda: pull_blob(url, repository, missing, 8))
    expect(error is not None, "a blob the registry does not have (404) must raise")
