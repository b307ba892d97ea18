"""hardway.course.checks.lab07
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 07, pushing to a registry. The pure exercises are compared with
hardway's own client (:mod:`hardway.distribution.auth`, :mod:`hardway.distribution.reference`) on
fresh random
inputs every run; the upload exercise talks to the course's real registry, and the
check asks the registry, with ``HEAD``, whether the blob really arrived.

* 07.1 ``parse_challenge(header) -> (scheme, params)``: the first challenge of a
  ``WWW-Authenticate`` header, with quoted commas and ``\\"`` escapes;
* 07.2 ``normalize(reference) -> str``: ``busybox`` → ``docker.io/library/busybox:latest``;
* 07.3 ``scope_for(repository, actions) -> str``: ``repository:NAME:push,pull``;
* 07.4 ``next_upload_url(current, location) -> str``: a relative or absolute Location;
* 07.5 ``content_range(offset, length) -> str``: the header of one PATCH chunk;
* 07.6 ``upload_blob(registry_url, repository, data) -> str``: POST + PUT, the digest back.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

import requests

from hardway.course.checks import fresh_rng
from hardway.course.grading import exercise, expect
from hardway.distribution.auth import parse_challenges
from hardway.distribution.credentials import Credentials
from hardway.distribution.reference import parse_reference
from hardway.distribution.registry import push
from hardway.image import layout
from hardway.image.digest import sha256_digest

__all__ = [
    "challenge_parsed",
    "chunk_range",
    "reference_normalized",
    "scope_built",
    "upload_location",
    "upload_works",
]

ACTION_ORDER = ("push", "pull", "delete")


def _word(rng: random.Random, n: int = 6) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def _header(rng: random.Random) -> str:
    name = f"{_word(rng)}/{_word(rng)}"
    parts = [
        f'realm="https://auth.{_word(rng)}.example/token"',
        f'service="{_word(rng)}.example"',
        f'scope="repository:{name}:pull,push"',
    ]
    if rng.random() < 0.5:
        parts.append(f'note="say \\"{_word(rng, 3)}\\", then go"')
    if rng.random() < 0.5:
        parts.append(f"error={rng.choice(['insufficient_scope', 'invalid_token'])}")
    rng.shuffle(parts)
    scheme = rng.choice(["Bearer", "bearer", "BEARER"])
    header = f"{scheme} {','.join(parts)}"
    if rng.random() < 0.5:
        header += ', Basic realm="fallback, really"'
    return header


@exercise(
    "07.1",
    points=2,
    hint="walk the text: a name, '=', then either a quoted string (up to the next "
    'unescaped quote, with \\" meaning a quote) or a bare token; only commas *outside* '
    "quotes separate parameters. The scheme is case-insensitive: lower-case it.",
)
def challenge_parsed(parse_challenge: Callable[[str], tuple[str, dict[str, str]]]) -> None:
    """parse_challenge(header) gives the scheme and parameters of the first challenge."""
    rng = fresh_rng()
    for _ in range(4):
        header = _header(rng)
        want = parse_challenges(header)[0]
        got = parse_challenge(header)
        expect(
            isinstance(got, tuple) and len(got) == 2,
            f"parse_challenge should return (scheme, params), not {got!r:.60}",
        )
        scheme, params = got
        expect(scheme == want.scheme, f"the scheme of {header[:30]!r}… is {want.scheme!r}")
        expect(isinstance(params, dict), "params should be a dict")
        for key, value in want.params.items():
            expect(
                params.get(key) == value,
                f"for {header!r}, params[{key!r}] should be {value!r}, not {params.get(key)!r}",
            )
        expect(
            set(params) == set(want.params),
            f"unexpected parameters {sorted(set(params) - set(want.params))} in {header!r}",
        )


@exercise(
    "07.2",
    points=1,
    hint="the first part is a registry only if it has a '.' or a ':' or is 'localhost'; "
    "otherwise the registry is docker.io, and one-part names there live in 'library/'. "
    "No tag and no digest means ':latest'.",
)
def reference_normalized(normalize: Callable[[str], str]) -> None:
    """normalize(text) spells out registry, repository and tag (or digest)."""
    rng = fresh_rng()
    digest = str(sha256_digest(rng.randbytes(8)))
    cases = [
        _word(rng),
        f"{_word(rng)}:{_word(rng, 3)}",
        f"{_word(rng)}/{_word(rng)}",
        f"docker.io/{_word(rng)}",
        f"ghcr.io/{_word(rng)}/{_word(rng)}:v{rng.randint(1, 9)}",
        f"localhost/{_word(rng)}",
        f"127.0.0.1:{rng.randint(1024, 65535)}/{_word(rng)}/{_word(rng)}",
        f"quay.io/{_word(rng)}@{digest}",
    ]
    for text in cases:
        want = str(parse_reference(text))
        got = normalize(text)
        expect(got == want, f"normalize({text!r}) should be {want!r}, not {got!r}")


@exercise(
    "07.3",
    points=1,
    hint="'repository:' + name + ':' + the actions joined with ',', each once, in the "
    "order push, pull, delete.",
)
def scope_built(scope_for: Callable[[str, list[str]], str]) -> None:
    """scope_for(repository, actions) is the token scope with push before pull."""
    rng = fresh_rng()
    for _ in range(4):
        name = "/".join(_word(rng) for _ in range(rng.randint(1, 3)))
        chosen = rng.sample(ACTION_ORDER, rng.randint(1, 3))
        actions = chosen + rng.sample(chosen, rng.randint(0, len(chosen)))  # duplicates too
        rng.shuffle(actions)
        want = f"repository:{name}:{','.join(a for a in ACTION_ORDER if a in actions)}"
        got = scope_for(name, list(actions))
        expect(got == want, f"scope_for({name!r}, {actions}) should be {want!r}, not {got!r}")


@exercise(
    "07.4",
    points=1,
    hint="a Location is a URL *reference*: resolve it against the URL of the response, "
    "as a browser resolves a link. urllib.parse.urljoin does exactly that.",
)
def upload_location(next_upload_url: Callable[[str, str], str]) -> None:
    """next_upload_url(current, location) resolves relative and absolute Locations."""
    rng = fresh_rng()
    base = f"http://127.0.0.1:{rng.randint(1024, 65535)}"
    uuid = f"{rng.getrandbits(128):032x}"
    current = f"{base}/v2/{_word(rng)}/blobs/uploads/?_state={_word(rng, 12)}"
    cases = [
        f"/v2/{_word(rng)}/blobs/uploads/{uuid}?_state={_word(rng, 20)}",
        f"https://{_word(rng)}.example/upload/{uuid}?sig={_word(rng, 8)}",
        f"{uuid}?_state={_word(rng, 8)}",
    ]
    for location in cases:
        want = urljoin(current, location)
        got = next_upload_url(current, location)
        expect(got == want, f"next_upload_url(…, {location!r}) should be {want!r}, not {got!r}")


@exercise(
    "07.5",
    points=1,
    hint="Content-Range names the first and the *last* byte of the chunk, both "
    "inclusive and counted from the start of the blob: 'first-last', no 'bytes ' prefix.",
)
def chunk_range(content_range: Callable[[int, int], str]) -> None:
    """content_range(offset, length) is 'first-last' for one chunk."""
    rng = fresh_rng()
    for offset, length in [(0, 1), (0, rng.randint(2, 9999)), (rng.randint(1, 1 << 30), 4096)]:
        want = f"{offset}-{offset + length - 1}"
        got = content_range(offset, length)
        expect(got == want, f"content_range({offset}, {length}) should be {want!r}, not {got!r}")


@exercise(
    "07.6",
    points=2,
    hint="POST <registry>/v2/<repository>/blobs/uploads/ answers 202 with a Location; "
    "resolve it, then PUT the bytes to it with digest=<sha256:…> added to its query "
    "('&' if it has one already). 201 means stored.",
)
def upload_works(upload_blob: Callable[[str, str, bytes], str]) -> None:
    """upload_blob(registry_url, repository, data) stores the blob; the registry says so."""
    from hardway.course.checks.machine import course_registry

    rng = fresh_rng()
    url = course_registry().url  # not graded, with the reason, if it cannot serve the check
    repository = f"lab07/check-{_word(rng, 8)}"
    data = rng.randbytes(rng.randint(100, 5000))
    want = str(sha256_digest(data))
    got = upload_blob(url, repository, data)
    expect(got == want, f"upload_blob should return the blob's digest {want[:19]}…, not {got!r}")
    with requests.Session() as http:
        http.trust_env = False
        head = http.head(f"{url}/v2/{repository}/blobs/{want}", timeout=30)
    expect(
        head.status_code == 200,
        f"HEAD of the blob in {repository} answers {head.status_code}: the registry does "
        "not have it",
    )
    expect(head.headers.get("Docker-Content-Digest") == want, "the registry has other bytes")
    expect(int(head.headers.get("Content-Length", -1)) == len(data), "the sizes differ")


# --- what lab 07 hands on (hardway.course.carry) --------------------------------------------

#: the OCI annotation naming the image this one was built on: my_push mounts its blobs from there
BASE_NAME = "org.opencontainers.image.base.name"


def course_push(
    layout_dir: Path,
    tag: str,
    registry: str,
    repository: str,
    *,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """The course's my_push: the image ``tag`` of the OCI layout to
    ``registry/repository:tag`` (blobs the registry has are skipped, blobs of the base image
    named by the manifest's ``org.opencontainers.image.base.name`` are mounted from its
    repository when it is on the same registry); the manifest's digest."""
    image = layout.read_image(Path(layout_dir), tag)
    base = image.manifest().annotations.get(BASE_NAME, "")
    mount_from: tuple[str, ...] = ()
    if base:
        ref = parse_reference(base)
        if ref.registry == registry:
            mount_from = (ref.repository,)
    credentials = Credentials(username, password or "") if username else Credentials()
    digest = push(
        image,
        f"{registry}/{repository}:{tag}",
        credentials=credentials,
        mount_from=mount_from,
        progress=False,
    )
    return str(digest)


REFERENCE: dict[str, Callable[..., object]] = {"my_push": course_push}
