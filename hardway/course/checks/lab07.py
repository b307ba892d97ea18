"""hardway.course.checks.lab07
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 07, pushing to a registry. The two pure exercises are compared with
hardway's own client (:mod:`hardway.distribution.auth`, :mod:`hardway.distribution.reference`)
on fresh random inputs; the others run the learner's client against the real registry:
07.6 against the course's registry (no credentials), 07.3–07.5 and 07.7 against a
registry in token mode with the course's token service, through
:class:`~hardway.course.checks.pushwatch.PushWatch`, which counts what was sent.

* 07.1 ``parse_challenge(header) -> (scheme, params)``: the first challenge of a
  ``WWW-Authenticate`` header, with quoted commas and ``\\"`` escapes;
* 07.2 ``normalize(reference) -> str``: ``busybox`` → ``docker.io/library/busybox:latest``;
* 07.3 ``send(method, url, auth, **kwargs)``: the token dance — a 401's challenge
  parsed, the token fetched with Basic credentials for ``auth["scopes"]``, the request
  sent again, the token kept: one token for three requests, no password to the registry;
* 07.4 ``upload_chunked(registry_url, repository, data, auth, chunk_size)``: POST,
  PATCHes with exact ``Content-Range``, relative ``Location`` s followed, PUT with digest;
* 07.5 ``mount_blob(registry_url, repository, source, digest, auth)``: a mount sends no
  bytes and needs ``repository:SOURCE:pull`` in the token; 202 is not a mount;
* 07.6 ``upload_blob(registry_url, repository, data)``: POST + PUT, the digest back;
* 07.7 ``my_push(layout, tag, registry, repository, …)``: a whole image — skopeo reads
  it back, the base image's layer is mounted, the big layer goes in chunks, the manifest
  last, and a second push uploads nothing.

Tokens: fetching one per request works, but sends the password every time and doubles
the requests; a client keeps its token until the scopes change (as Docker and containerd
do), so the checks count tokens and the 401s after the first one.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import string
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from hardway.course.checks import fresh_rng, scratch
from hardway.course.checks.child import in_child
from hardway.course.checks.pushwatch import (
    Exchange,
    PushWatch,
    start_token_registry,
    stop_token_registry,
)
from hardway.course.grading import NotGraded, exercise, expect
from hardway.distribution.auth import BearerAuth, parse_challenges
from hardway.distribution.credentials import Credentials
from hardway.distribution.reference import parse_reference
from hardway.distribution.registry import Registry, client_for, push
from hardway.distribution.server.local_registry import RegistryStatus
from hardway.errors import HardwayError, MissingToolError
from hardway.image import layout
from hardway.image.blobs import StoredImage
from hardway.image.digest import parse_digest, sha256_digest
from hardway.image.mutate import append_layers
from hardway.image.random import random_image

__all__ = [
    "REFERENCE",
    "blob_mounted",
    "challenge_parsed",
    "chunked_upload",
    "image_pushed",
    "reference_normalized",
    "token_dance",
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
    points=1,
    hints=(
        "a quoted value may hold commas and escaped quotes: splitting at every comma breaks it",
        "parse left to right: name, '=', then a quoted string or a bare token; stop before a "
        "second scheme",
        "walk the text: a name, '=', then either a quoted string (up to the next "
        'unescaped quote, with \\" meaning a quote) or a bare token; only commas *outside* '
        "quotes separate parameters. The scheme is case-insensitive: lower-case it.",
    ),
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
    hints=(
        "a short name hides three defaults: the registry, the 'library/' namespace and the tag",
        "decide first whether the first path part is a host (a '.', a ':' or 'localhost')",
        "the first part is a registry only if it has a '.' or a ':' or is 'localhost'; "
        "otherwise the registry is docker.io, and one-part names there live in 'library/'. "
        "No tag and no digest means ':latest'.",
    ),
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
    "07.6",
    points=2,
    against=("registry",),
    hints=(
        "an upload is a session: open it, then put the bytes where the registry says",
        "POST answers 202 and a Location; the PUT goes to that Location, resolved, with the digest"
        " in its query",
        "POST <registry>/v2/<repository>/blobs/uploads/ answers 202 with a Location; "
        "resolve it, then PUT the bytes to it with digest=<sha256:…> added to its query "
        "('&' if it has one already). 201 means stored.",
    ),
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


# --- the registry in token mode, watched ---------------------------------------------------

USER, PASSWORD = "learner", "containers"


@contextlib.contextmanager
def _watched_registry() -> Iterator[RegistryStatus]:
    """The registry in token mode for one check (not graded if it cannot start)."""
    try:
        status = start_token_registry()
    except HardwayError as exc:
        raise NotGraded(
            f"the registry in token mode could not start: {exc.message}", fix=exc.fix
        ) from exc
    try:
        yield status
    finally:
        stop_token_registry(status)


def _auth(repository: str) -> dict[str, Any]:
    return {
        "username": USER,
        "password": PASSWORD,
        "scopes": [f"repository:{repository}:push,pull"],
        "token": None,
    }


def _course_client(status: RegistryStatus, *repositories: str) -> Registry:
    scopes = [f"repository:{r}:push,pull" for r in repositories]
    auth = BearerAuth(Credentials(USER, PASSWORD), scopes=scopes)
    return Registry(status.url.removeprefix("http://"), auth=auth)


def _registry_side(log: list[Exchange]) -> list[Exchange]:
    return [e for e in log if not e.to_token_service]


def _auth_mistakes(log: list[Exchange], *, tokens_allowed: int) -> None:
    """What every check of lab 07 asks of the token dance, read from what was sent."""
    leaked = [e for e in _registry_side(log) if e.credentials == "basic"]
    expect(
        not leaked,
        f"{leaked[0].method} {leaked[0].path.split('?')[0]} carried your password (Authorization: "
        "Basic) to the registry: in token mode only the token service gets it, the "
        "registry gets the token"
        if leaked
        else "",
    )
    tokens = [e for e in log if e.to_token_service]
    anonymous = [e for e in tokens if e.credentials != "basic"]
    expect(
        not anonymous,
        "you asked the token service without credentials: send the username and password "
        "with Basic auth (requests' auth=(username, password)) on the token request",
    )
    after = [e for e in _registry_side(log) if tokens and log.index(e) > log.index(tokens[0])]
    refused = [e for e in after if e.status == 401]
    expect(
        len(tokens) <= tokens_allowed and len(refused) <= 2 * tokens_allowed,
        f"you fetched {len(tokens)} tokens, and {len(refused)} requests were answered 401 "
        f"after the first one ({len(_registry_side(log))} requests in all): keep the token "
        "in auth['token'] and send it with every request; fetch a new one only when the "
        "scopes change",
    )


def _learner_failed(exc: BaseException, log: list[Exchange]) -> AssertionError | None:
    """When the learner's code raised: a message naming the mistake the log shows, if any."""
    if isinstance(exc, NotImplementedError):
        return None
    try:
        _auth_mistakes(log, tokens_allowed=len(log) + 1)  # the password's way, first
    except AssertionError as named:
        return named
    for number, exchange in enumerate(log):
        if exchange.location and not exchange.location.startswith(("/", "http")):
            later = log[number + 1 :]
            if not later or all(
                urljoin(exchange.path, exchange.location).split("?")[0] != e.path.split("?")[0]
                for e in later
            ):
                return AssertionError(
                    f"the registry answered with Location: {exchange.location[:20]}… — a path "
                    "relative to the request — and your code did not follow it "
                    f"({type(exc).__name__}): resolve it with urljoin(response.url, location)"
                )
    side = _registry_side(log)
    early = [e for e in side if e.method == "PUT" and "/manifests/" in e.path and e.status == 400]
    if early and not any("/blobs/uploads/" in e.path for e in side[: side.index(early[0])]):
        return AssertionError(
            "the manifest was PUT before its blobs (the registry answered 400): a registry "
            "refuses a manifest whose blobs it lacks — push every blob first, the manifest last"
        )
    closing = [e for e in side if e.method == "PUT" and "/blobs/uploads/" in e.path]
    if closing and not closing[-1].query.get("digest"):
        return AssertionError(
            f"the final PUT of the upload had no ?digest=sha256:… in its query (the registry "
            f"answered {closing[-1].status}): the registry stores a blob only under the digest "
            "you name, and checks it"
        )
    refused = [e for e in side if e.status == 401 and e.query.get("mount")]
    if refused and refused[-1] is side[-1]:
        source = refused[-1].query.get("from", ["?"])[0]
        return AssertionError(
            f"the mount from {source} was refused (401) with your token: a mount reads the "
            f"source repository, so the token needs repository:{source}:pull"
        )
    if log and log[-1].status == 401:
        return AssertionError(
            f"{log[-1].method} {log[-1].path.split('?')[0]} was still refused (401) with your "
            f"token, and your code raised {type(exc).__name__}: does the token have the scope "
            "this request needs?"
        )
    return None


def _run_watched(func: Callable[[], Any], watch: PushWatch, what: str) -> Any:
    try:
        return in_child(func, timeout=90, what=what)
    except Exception as exc:
        named = _learner_failed(exc, watch.since(0))
        if named is not None:
            raise named from None
        raise


def _ranges(log: list[Exchange], chunk_size: int) -> list[int]:
    """The PATCHes of each upload session: each Content-Range 'first-last', inclusive,
    following on; the sizes the sessions received, in order."""
    patches = [e for e in _registry_side(log) if e.method == "PATCH"]
    expect(patches, "no PATCH was sent: a chunked upload sends the blob in PATCH requests")
    received: dict[str, int] = {}
    for patch in patches:
        session = urlsplit(patch.path).path
        offset = received.get(session, 0)
        expect(
            patch.sent <= chunk_size,
            f"a PATCH carried {patch.sent} bytes; the chunks are at most {chunk_size}",
        )
        want = f"{offset}-{offset + patch.sent - 1}"
        got = patch.content_range
        expect(got is not None, "a PATCH has no Content-Range header")
        expect(
            got == want,
            f"the PATCH of {patch.sent} bytes at offset {offset} said Content-Range: {got}; it "
            f"is {want}: first and last byte, both counted from 0 and inclusive",
        )
        received[session] = offset + patch.sent
    return list(received.values())


def _final_put(log: list[Exchange], digest: str) -> None:
    puts = [e for e in _registry_side(log) if e.method == "PUT" and "/blobs/uploads/" in e.path]
    expect(puts, "the upload was never closed with a PUT")
    expect(
        puts[-1].query.get("digest") == [digest],
        "the final PUT has no ?digest=sha256:… in its query: the registry stores a blob only "
        "under the digest you name, and checks it",
    )
    expect(puts[-1].status == 201, f"the final PUT was answered {puts[-1].status}, not 201")


# --- 07.3 the token dance ---------------------------------------------------------------------


@exercise(
    "07.3",
    points=3,
    hints=(
        "a 401 says where to get a token and for what: its WWW-Authenticate names the realm "
        "(the token service) and the service; you name the scopes; the password goes to "
        "the token service only",
        "send; on 401, parse_challenge(response.headers['WWW-Authenticate']); GET the realm "
        "with params service= and scope= (auth['scopes']) and auth=(username, password); "
        "keep .json()['token'] in auth['token']; send again with Authorization: Bearer",
        "headers['Authorization'] = f'Bearer {auth[\"token\"]}' up front when you have one; "
        "answer = http.get(params['realm'], params={'service': params['service'], 'scope': "
        "auth['scopes']}, auth=(auth['username'], auth['password']))",
    ),
    against=("registry",),
)
def token_dance(send: Callable[..., requests.Response]) -> None:
    """send(method, url, auth) does the token dance once and reuses the token."""
    with _watched_registry() as status:
        rng = fresh_rng()
        repository = f"lab07/dance-{_word(rng, 8)}"
        digest = str(sha256_digest(rng.randbytes(32)))
        with PushWatch(status.url) as watch:
            base = f"http://{watch.address}"

            def dance() -> list[int]:
                auth = _auth(repository)
                return [
                    send("GET", f"{base}/v2/", auth).status_code,
                    send("POST", f"{base}/v2/{repository}/blobs/uploads/", auth).status_code,
                    send("HEAD", f"{base}/v2/{repository}/blobs/{digest}", auth).status_code,
                ]

            got = _run_watched(dance, watch, "your send")
            log = watch.since(0)
        tokens = [e for e in log if e.to_token_service]
        expect(tokens, "no token was fetched: on a 401, ask the realm of its challenge for one")
        expect(
            f"repository:{repository}:push,pull" in tokens[0].scopes
            or {f"repository:{repository}:pull,push"} <= set(tokens[0].scopes),
            f"the token was asked for {tokens[0].scopes or 'no scope'}; ask for auth['scopes']",
        )
        _auth_mistakes(log, tokens_allowed=1)
        want = [200, 202, 404]
        expect(
            got == want, f"GET /v2/, POST an upload, HEAD a missing blob answered {got}, not {want}"
        )


# --- 07.4 a chunked upload -------------------------------------------------------------------


@exercise(
    "07.4",
    points=3,
    hints=(
        "an upload session moves: every answer carries the Location of the next request, "
        "and each PATCH says which bytes of the blob it carries",
        "POST → 202 + Location; per chunk: PATCH to the newest Location (urljoin it with "
        "the answer's URL) with Content-Range: first-last (inclusive); then PUT to the newest "
        "Location with ?digest=… (or &digest=…) and no body",
        "for offset in range(0, len(data), chunk_size): chunk = data[offset:offset + "
        "chunk_size]; headers Content-Range f'{offset}-{offset + len(chunk) - 1}', "
        "Content-Type application/octet-stream; location = urljoin(answer.url, "
        "answer.headers['Location'])",
    ),
    against=("registry",),
)
def chunked_upload(upload_chunked: Callable[..., str]) -> None:
    """upload_chunked(registry_url, repository, data, auth, chunk_size) uploads in PATCHes."""
    with _watched_registry() as status:
        rng = fresh_rng()
        repository = f"lab07/chunks-{_word(rng, 8)}"
        chunk_size = rng.choice([4096, 10_000, 65_536])
        data = rng.randbytes(chunk_size * 3 + rng.randint(1, chunk_size - 1))
        want = str(sha256_digest(data))
        with PushWatch(status.url) as watch:
            base = f"http://{watch.address}"
            got = _run_watched(
                lambda: upload_chunked(base, repository, data, _auth(repository), chunk_size),
                watch,
                "your upload_chunked",
            )
            log = watch.since(0)
        _auth_mistakes(log, tokens_allowed=1)
        sizes = _ranges(log, chunk_size)
        expect(
            sizes == [len(data)], f"the PATCHes carried {sizes} bytes of a {len(data)}-byte blob"
        )
        _final_put(log, want)
        expect(got == want, f"upload_chunked returned {got!r:.30}, not the blob's digest")
        with _course_client(status, repository) as client:
            expect(client.has_blob(repository, want), f"the registry has no blob {want[:19]}…")


def _source_scope(log: list[Exchange], source: str, target: str) -> None:
    asked = {s for e in log if e.to_token_service for s in e.scopes}
    expect(
        any(s.startswith(f"repository:{source}:") and "pull" in s for s in asked),
        f"no token was asked for pull on {source}: a mount reads the source repository, so "
        f"the token needs repository:{source}:pull besides push,pull on {target}",
    )


# --- 07.5 a cross-repository mount -----------------------------------------------------------


@exercise(
    "07.5",
    points=3,
    hints=(
        "a mount copies nothing: the registry links a blob it has in another repository — "
        "so the token must allow reading that repository too",
        "add 'repository:<source>:pull' to auth['scopes'] (and drop the old token, which "
        "lacks it); POST …/blobs/uploads/?mount=<digest>&from=<source>: 201 is mounted, 202 "
        "is an ordinary upload session instead (return False; the registry purges it)",
        "answer = send('POST', f'{registry_url}/v2/{repository}/blobs/uploads/?mount={digest}"
        "&from={source}', auth); if answer.status_code == 201: return True",
    ),
    against=("registry",),
)
def blob_mounted(mount_blob: Callable[..., bool]) -> None:
    """mount_blob(registry_url, repository, source, digest, auth) mounts without bytes."""
    with _watched_registry() as status:
        rng = fresh_rng()
        source, target = f"lab07/src-{_word(rng, 8)}", f"lab07/dst-{_word(rng, 8)}"
        data = rng.randbytes(rng.randint(20_000, 60_000))
        there, absent = str(sha256_digest(data)), str(sha256_digest(rng.randbytes(64)))
        with _course_client(status, source) as client:
            client.push_blob(source, lambda: io.BytesIO(data), parse_digest(there), len(data))
        with PushWatch(status.url) as watch:
            base = f"http://{watch.address}"

            def mount() -> tuple[bool, bool]:
                auth = _auth(target)
                return (
                    mount_blob(base, target, source, there, auth),
                    mount_blob(base, target, source, absent, auth),
                )

            try:
                mounted, not_there = _run_watched(mount, watch, "your mount_blob")
            except Exception as exc:
                if isinstance(exc, NotImplementedError):
                    raise
                _source_scope(watch.since(0), source, target)
                raise
            log = watch.since(0)
        _source_scope(log, source, target)
        _auth_mistakes(log, tokens_allowed=2)
        posts = [e for e in _registry_side(log) if e.method == "POST"]
        expect(
            posts
            and posts[0].query.get("mount") == [there]
            and posts[0].query.get("from") == [source],
            "the first POST should carry ?mount=<digest>&from=<source repository>",
        )
        sent = sum(e.sent for e in _registry_side(log))
        expect(sent == 0, f"{sent} body bytes went to the registry: a mount sends no blob bytes")
        expect(mounted is True, f"mount_blob returned {mounted!r} for a blob {source} has")
        expect(
            not_there is False,
            f"mount_blob returned {not_there!r} for a blob {source} does not have: the registry "
            "answered 202 (an upload session, not a mount): return False",
        )
        with _course_client(status, target) as client:
            expect(client.has_blob(target, there), f"{target} does not have the mounted blob")


# --- 07.7 my_push ----------------------------------------------------------------------------

#: my_push sends a blob bigger than this in PATCH chunks of this size
CHUNK_SIZE = 1 << 20


def _images(rng: random.Random, base_name: str) -> tuple[StoredImage, StoredImage]:
    """A base image, and an image on it (two layers more, one of them sent in chunks)
    whose manifest names the base as the OCI annotation says."""
    base = random_image(30_000, 1, seed=rng.getrandbits(32))
    small = random_image(20_000, 1, seed=rng.getrandbits(32))
    big = random_image(CHUNK_SIZE + rng.randint(100_000, 900_000), 1, seed=rng.getrandbits(32))
    image = append_layers(base, [*small.layers(), *big.layers()])
    manifest = image.manifest()
    manifest = replace(manifest, annotations={**manifest.annotations, BASE_NAME: base_name})
    return base, StoredImage(manifest.to_json(), image.raw_config(), image.open_blob)


def _skopeo_digest(status: RegistryStatus, reference: str) -> str:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise MissingToolError("skopeo is not installed", fix="sudo apt-get install skopeo")
    host = status.url.removeprefix("http://")
    seen = subprocess.run(
        [
            skopeo,
            "inspect",
            "--tls-verify=false",
            "--creds",
            f"{USER}:{PASSWORD}",
            f"docker://{host}/{reference}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    expect(seen.returncode == 0, f"skopeo cannot read the image: {seen.stderr.strip()[-200:]}")
    return str(json.loads(seen.stdout)["Digest"])


def _push_order(log: list[Exchange], base_layer: str) -> None:
    side = _registry_side(log)
    expect(
        side and (side[0].method, side[0].path) == ("GET", "/v2/"),
        "start with the ping, GET /v2/: it says whether the registry is one, and how it "
        "wants you to authenticate",
    )
    manifests = [i for i, e in enumerate(side) if e.method == "PUT" and "/manifests/" in e.path]
    expect(manifests, "the manifest was never PUT")
    uploads = [i for i, e in enumerate(side) if "/blobs/uploads/" in e.path]
    expect(
        not uploads or max(uploads) < manifests[0],
        "the manifest was PUT before its blobs were all in: a registry refuses a manifest "
        "whose blobs it lacks — push every blob first, the manifest last",
    )
    mounts = [e for e in side if e.method == "POST" and e.query.get("mount") == [base_layer]]
    expect(
        any(e.status == 201 for e in mounts),
        "the base image's layer was not mounted: the manifest's annotation "
        f"{BASE_NAME} names the repository that has it — POST ?mount=…&from=… (with pull on "
        "that repository in the token's scopes)",
    )
    uploaded = [e for e in side if e.method == "PUT" and e.query.get("digest") == [base_layer]]
    expect(not uploaded, "the base image's layer was uploaded: mount it, a mount sends no bytes")


@exercise(
    "07.7",
    points=5,
    hints=(
        "a push is the requests of this lab in an order: the ping, then per blob 'is it "
        "there? can I mount it? else upload it', the manifest last — one token for all of it",
        "auth = {… 'scopes': [f'repository:{repository}:push,pull']}; ping with send; read the "
        "manifest of `tag` from index.json; for the config and each layer: HEAD → 200 skip; "
        "mount_blob from the base's repository → True skip; else upload_chunked if bigger than "
        "CHUNK_SIZE, else upload_blob; then PUT the manifest bytes with its mediaType",
        "base = manifest.get('annotations', {}).get(BASE_NAME, ''); source = base.removeprefix("
        "registry + '/').rsplit(':', 1)[0] if base.startswith(registry + '/') else None; "
        "send('PUT', f'{url}/v2/{repository}/manifests/{tag}', auth, data=manifest_bytes, "
        "headers={'Content-Type': manifest['mediaType']})",
    ),
    against=("registry", "skopeo"),
)
def image_pushed(my_push: Callable[..., str]) -> None:
    """my_push pushes an OCI layout: skopeo reads it; mounts, skips and chunks are counted."""
    with _watched_registry() as status:
        rng = fresh_rng()
        base_repo, repository = f"lab07/base-{_word(rng, 8)}", f"lab07/app-{_word(rng, 8)}"
        tag = f"v{rng.randint(1, 99)}"
        with scratch("07") as tmp, PushWatch(status.url) as watch:
            base, image = _images(rng, f"{watch.address}/{base_repo}:v1")
            host = status.url.removeprefix("http://")
            push(
                base,
                f"{host}/{base_repo}:v1",
                credentials=Credentials(USER, PASSWORD),
                progress=False,
            )
            layout_dir = Path(tmp) / "layout"
            layout.write_image(image, layout_dir, tag=tag)

            def once() -> str:
                return my_push(
                    layout_dir, tag, watch.address, repository, username=USER, password=PASSWORD
                )

            first = _run_watched(once, watch, "your my_push")
            log = watch.since(0)
            second = _run_watched(once, watch, "your my_push (the second time)")
            again = watch.since(len(log))
        want = str(image.digest())
        _auth_mistakes(log, tokens_allowed=3)
        _push_order(log, str(base.manifest().layers[0].digest))
        big = image.manifest().layers[-1].size
        expect(
            big in _ranges(log, CHUNK_SIZE),
            f"the layer of {big} bytes was not sent in PATCH chunks of CHUNK_SIZE ({CHUNK_SIZE})",
        )
        expect(first == want, f"my_push returned {first!r:.30}, not the manifest's digest")
        expect(second == want, "pushed again, my_push returned another digest")
        expect(_skopeo_digest(status, f"{repository}:{tag}") == want, "skopeo finds another image")
        resent = [e for e in _registry_side(again) if "/blobs/uploads/" in e.path]
        expect(
            not resent,
            f"pushed a second time, my_push sent {len(resent)} upload requests although the "
            "registry had every blob (HEAD answered 200): HEAD first, and skip what is there",
        )


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
    reference = f"{registry}/{repository}:{tag}"
    with client_for(reference, push=True, credentials=credentials) as client:
        client.ping()  # as Docker does: is it a registry, and which auth does it want
        digest = client.write_image(
            image, repository, tag, mount_from=mount_from, chunk_size=CHUNK_SIZE, progress=False
        )
    return str(digest)


REFERENCE: dict[str, Callable[..., object]] = {"my_push": course_push}
