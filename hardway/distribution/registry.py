"""hardway.distribution.registry
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

A registry is a content-addressed blob store with tags, behind a small HTTP API (the
OCI distribution spec). This module is a thin, honest client on :mod:`requests`: each
method is one or two requests you could type with ``curl``, and each checks what the
spec promises rather than trusting the server::

    GET  /v2/                                   ping (200, or 401 + a challenge)
    HEAD /v2/<repo>/blobs/<digest>              is this blob there already?
    POST /v2/<repo>/blobs/uploads/[?mount=&from=]   open an upload (or mount: 201)
    DELETE <Location>                           give an upload up
    PUT  <Location>?digest=…                    the whole blob at once (monolithic)
    PATCH <Location> + Content-Range            one chunk; the answer's Range says how far
    GET  /v2/<repo>/blobs/<digest>              a blob, verified while it streams
    GET|HEAD|PUT /v2/<repo>/manifests/<ref>     manifests, with the full Accept list
    GET  /v2/<repo>/tags/list?n=                tags, page by page (Link: rel="next")

Three rules the client never breaks: always continue an upload at the *latest*
``Location`` (Distribution signs the upload state into it and changes it on every
answer; it may be relative); never trust a digest the server sends without computing
ours; and turn every error body ``{"errors": [{"code", …}]}`` into a typed
:class:`~hardway.distribution.errors.RegistryError`.

Networks fail, so every request goes through :meth:`Registry._send`, which tries again
after a reset, a timeout, a 5xx or a 429 (waiting as
:class:`~hardway.distribution.retry.RetryPolicy`
says, ``Retry-After`` honoured) — but only requests that are safe to repeat. An upload
is not: a ``PATCH`` cut off mid-body leaves the registry holding an unknown number of
bytes. So an interrupted upload asks ``GET <Location>`` where it stands and continues
from the registry's offset; when the registry has given the session up (Distribution
cancels a session whose size no longer matches its signed state), the blob is uploaded
again in a new session. A download cut off mid-body continues with ``Range: bytes=N-``.
The manifest goes up only after every blob is confirmed, so a push that gives up never
leaves a tag pointing at missing blobs.

Module-level :func:`pull` and :func:`push` open a client for a reference, as
``requests.get`` opens a session. Options are keyword-only, with their defaults in
:class:`Options`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import copy
import io
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import urllib3.exceptions

from hardway.distribution.auth import BearerAuth, Credentials, load_credentials
from hardway.distribution.errors import (
    Diagnostic,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnreachableError,
    RetriesExhaustedError,
    UnauthorizedError,
)
from hardway.distribution.progress import ProgressReader, progress_bar
from hardway.distribution.reference import Reference, parse_reference
from hardway.distribution.retry import RetryPolicy, transient_exception, transient_status
from hardway.errors import DigestMismatchError, InvalidImageError
from hardway.image.blobs import StoredImage, VerifyingReader, read_verified
from hardway.image.descriptor import Descriptor
from hardway.image.digest import Digest, parse_digest, sha256_digest
from hardway.image.jsondoc import parse_json
from hardway.image.manifest import Index, Manifest
from hardway.image.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from hardway.image.platform import Platform, host_platform
from hardway.image.protocols import Image

__all__ = [
    "ACCEPT",
    "Options",
    "Registry",
    "client_for",
    "pull",
    "push",
    "scheme_for",
    "using",
]

#: every manifest and index type we can read: without the OCI ones Distribution answers
#: 404 MANIFEST_UNKNOWN for an OCI image, even though it has it
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
_INDEXES = set(INDEX_TYPES.values())
_MANIFESTS = set(MANIFEST_TYPES.values())
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Options:
    """Every option of :func:`pull`, :func:`push` and :func:`client_for`, with its default."""

    #: user/password or tokens; ``None``: read docker's config.json (``authfile``)
    credentials: Credentials | None = None
    #: a docker ``config.json`` to read credentials from instead of the usual places
    authfile: Path | str | None = None
    #: plain HTTP? ``None``: only for localhost and 127.0.0.1
    insecure: bool | None = None
    #: seconds to wait for a connection or a read
    timeout: float = 60.0
    #: ``None``: monolithic PUT; a number: PATCH chunks of at least this many bytes
    chunk_size: int | None = None
    #: the platform to take from an index; ``None``: this machine's
    platform: Platform | None = None
    #: repositories (on the same registry) to try mounting blobs from before uploading
    mount_from: tuple[str, ...] = ()
    #: how many blobs to upload at once (the manifest always goes last, alone)
    jobs: int = 4
    #: progress bars (:mod:`hardway.distribution.progress`); ``None``: only when someone watches
    progress: bool | None = None
    #: tries per request (or per blob upload) in all, the first included; 1: never retry
    attempts: int = RetryPolicy.attempts
    #: seconds before the first retry, doubled for each next one (with jitter)
    backoff: float = RetryPolicy.backoff
    #: the longest wait between two tries
    backoff_max: float = RetryPolicy.backoff_max
    #: a registry's ``Retry-After`` is honoured up to this many seconds
    retry_after_max: float = RetryPolicy.retry_after_max

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.attempts, self.backoff, self.backoff_max, self.retry_after_max)


_DEFAULTS = Options()
_options: contextvars.ContextVar[Options] = contextvars.ContextVar("options", default=_DEFAULTS)


@contextlib.contextmanager
def using(**changes: Any) -> Iterator[Options]:
    """Change the default :class:`Options` inside a ``with`` block (the CLI's flags use it)."""
    token = _options.set(replace(_options.get(), **changes))
    try:
        yield _options.get()
    finally:
        _options.reset(token)


def scheme_for(host: str, insecure: bool | None = None) -> str:
    """``http`` for a loopback registry (or with ``insecure``), else ``https``.

    >>> scheme_for("127.0.0.1:5000"), scheme_for("docker.io"), scheme_for("r.lan", True)
    ('http', 'https', 'http')
    """
    if insecure is None:
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        insecure = name in _LOOPBACK
    return "http" if insecure else "https"


def _error(response: requests.Response, what: str) -> RegistryError:
    diagnostics = []
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        for item in response.json().get("errors", []):
            code = item.get("code", "UNKNOWN")
            diagnostics.append(Diagnostic(code, item.get("message", ""), item.get("detail")))
    status = response.status_code
    kind = {401: UnauthorizedError, 403: UnauthorizedError, 404: RegistryNotFoundError}.get(
        status, RegistryError
    )
    fix = None
    if status == 401 and not diagnostics:  # a HEAD has no body: say what the header says
        challenge = response.headers.get("WWW-Authenticate", "")
        sent = "Authorization" in response.request.headers if response.request else False
        sentence = (
            "the registry refused the credentials sent"
            if sent
            else f"the registry wants credentials ({challenge.split(' ')[0] or 'no challenge'})"
        )
        diagnostics.append(Diagnostic("UNAUTHORIZED", sentence))
    request = response.request
    if status == 401 and request is not None and "Authorization" in request.headers:
        what += " (the registry refused the credentials sent)"
    if kind is UnauthorizedError:
        fix = "give credentials: --creds USER:PASS, an --authfile, or Credentials(…)"
    elif "MANIFEST_BLOB_UNKNOWN" in (d.code for d in diagnostics):
        fix = "push every layer and the config before the manifest"
    return kind(what, status_code=status, diagnostics=diagnostics, response=response, fix=fix)


class Registry:
    """A client for one registry host.

    >>> Registry("127.0.0.1:5000").url("/v2/")
    'http://127.0.0.1:5000/v2/'

    :param host: ``host[:port]`` as the API is reached (``registry-1.docker.io``)
    :param auth: (optional) a requests auth, usually :class:`~hardway.distribution.auth.BearerAuth`
    :param insecure: (optional) see :attr:`Options.insecure`
    :param timeout: (optional) seconds
    :param retry: (optional) how often and how patiently to retry (see
    :mod:`hardway.distribution.retry`)

    One client may be shared by threads (parallel blob uploads): the session's
    connection pool, the token cache and the counters are safe to use concurrently.
    """

    def __init__(
        self,
        host: str,
        *,
        auth: requests.auth.AuthBase | None = None,
        insecure: bool | None = None,
        timeout: float = Options.timeout,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.host = host
        self.base = f"{scheme_for(host, insecure)}://{host}"
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        #: how to wait between tries (tests record the waits instead of sleeping)
        self.sleep: Callable[[float], None] = time.sleep
        self.auth = auth if auth is not None else BearerAuth()
        #: the session: ``session.mount()`` swaps in a fake transport for tests
        self.session = requests.Session()
        self.session.auth = self.auth
        self.session.headers["User-Agent"] = "hardway (Containers the Hard Way)"
        if urlsplit(self.base).hostname in ("localhost", "127.0.0.1", "::1"):
            self.session.trust_env = False  # a proxy must not swallow loopback requests
        #: requests sent, by ``"METHOD kind"`` (``"HEAD blob"``, ``"PATCH upload"``…)
        self.requests: Counter[str] = Counter()
        #: blob bytes sent in PUT and PATCH bodies
        self.bytes_uploaded = 0
        #: failed tries that were tried again, by ``"METHOD kind"``
        self.retries: Counter[str] = Counter()
        #: one lock for every counter (a worker client shares it, see :meth:`_worker`)
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Registry {self.base} auth={self.auth!r}>"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return urljoin(self.base, path)

    def _count(self, counter: Counter[str], key: str) -> None:
        with self._count_lock:
            counter[key] += 1

    def _sent(self, size: int) -> None:
        with self._count_lock:
            self.bytes_uploaded += size

    def _send(
        self, method: str, url: str, kind: str, *, retry: bool = True, **kwargs: Any
    ) -> requests.Response:
        """Send one request; with ``retry``, again after a transient failure.

        Only what is safe to repeat may pass ``retry=True``: everything but a request
        whose body is a stream or appends to an upload (the upload code recovers those).
        When the tries run out, :class:`~hardway.distribution.errors.RetriesExhaustedError`.
        """
        kwargs.setdefault("timeout", self.timeout)
        full = self.url(url)
        budget = _Budget(self, f"{method} {urlsplit(full).path}", f"{method} {kind}")
        while True:
            self._count(self.requests, f"{method} {kind}")
            if not retry:
                return self._request(method, full, **kwargs)
            try:
                response = self._request(method, full, **kwargs)
            except requests.RequestException as exc:
                if not transient_exception(exc):
                    raise
                budget.spend(exc)
                continue
            if not _again(response):
                return response
            _discard(response)
            budget.spend(response=response)

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """``session.request``, with "nothing listens there" turned into a typed error."""
        try:
            return self.session.request(method, url, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise RegistryUnreachableError(
                f"no TLS connection to the registry at {self.host} ({_tls_reason(exc)})",
                fix="a registry that speaks plain HTTP needs --insecure (insecure=True); one "
                "with its own certificate needs it trusted (REQUESTS_CA_BUNDLE=ca.pem)",
            ) from exc
        except requests.ConnectionError as exc:
            cause = exc.args[0] if exc.args else None
            reason = getattr(cause, "reason", cause)
            if not isinstance(reason, urllib3.exceptions.NewConnectionError):
                raise
            why = str(reason).rpartition(": ")[2] or "no connection"
            raise RegistryUnreachableError(
                f"cannot connect to the registry at {self.host} ({why})",
                fix="start it (python -m hardway registry start), or check the host and "
                "port in the image reference",
            ) from exc

    def _check(self, response: requests.Response, what: str, *ok: int) -> requests.Response:
        if response.status_code not in ok:
            raise _error(response, what)
        return response

    # --- ping and tags ------------------------------------------------------------------

    def ping(self) -> requests.Response:
        """``GET /v2/``: is this a registry, and does it want credentials?"""
        return self._check(self._send("GET", "/v2/", "ping"), "GET /v2/", 200)

    def tags(self, repository: str, *, page_size: int | None = None) -> list[str]:
        """Every tag of ``repository``, following ``Link: <…>; rel="next"`` page by page."""
        url: str | None = f"/v2/{repository}/tags/list"
        params = {"n": page_size} if page_size else None
        found: list[str] = []
        while url:
            response = self._send("GET", url, "tags", params=params)
            self._check(response, f"GET tags of {repository}", 200)
            found += response.json().get("tags") or []
            following = response.links.get("next", {}).get("url")
            url, params = (urljoin(response.url, following), None) if following else (None, None)
        return found

    # --- manifests ----------------------------------------------------------------------

    def head_manifest(self, repository: str, ref: str) -> Descriptor | None:
        """The descriptor of a manifest (type, digest, size) or ``None`` if there is none."""
        response = self._send(
            "HEAD", f"/v2/{repository}/manifests/{ref}", "manifest", headers={"Accept": ACCEPT}
        )
        if response.status_code == 404:
            return None
        self._check(response, f"HEAD manifest {repository}:{ref}", 200)
        digest = response.headers.get("Docker-Content-Digest")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        size = int(response.headers.get("Content-Length", 0))
        return Descriptor(media_type, parse_digest(digest), size) if digest else None

    def get_manifest(self, repository: str, ref: str) -> tuple[bytes, Descriptor]:
        """A manifest's exact bytes and descriptor, checked three ways.

        The bytes must hash to ``ref`` when it is a digest (and to the digest the
        registry names); the JSON ``mediaType`` must equal the ``Content-Type`` header
        (a type confusion otherwise, CVE-2021-41190).
        """
        what = f"GET manifest {repository}:{ref}"
        response = self._send(
            "GET", f"/v2/{repository}/manifests/{ref}", "manifest", headers={"Accept": ACCEPT}
        )
        self._check(response, what, 200)
        raw = response.content
        ours = sha256_digest(raw)
        claimed = [ref] if ref.startswith("sha256:") else []
        if header := response.headers.get("Docker-Content-Digest"):
            claimed.append(header)
        for digest in claimed:
            if digest != str(ours):
                raise DigestMismatchError(
                    f"{what}: the bytes hash to {ours}, but the manifest is named {digest}",
                    fix="the registry or something between us changed the manifest",
                )
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        media_type = parse_json(raw, "manifest").get("mediaType") or content_type
        if media_type != content_type:
            raise InvalidImageError(
                f"{what}: the manifest says mediaType {media_type!r} but was served as "
                f"{content_type!r} (a type confusion, like CVE-2021-41190)"
            )
        return raw, Descriptor(media_type, ours, len(raw))

    def put_manifest(self, repository: str, ref: str, raw: bytes, media_type: str) -> Digest:
        """Upload manifest bytes exactly as given; the registry's digest must equal ours."""
        what = f"PUT manifest {repository}:{ref}"
        response = self._send(
            "PUT",
            f"/v2/{repository}/manifests/{ref}",
            "manifest",
            data=raw,
            headers={"Content-Type": media_type},
        )
        self._check(response, what, 201, 200)
        ours = sha256_digest(raw)
        theirs = response.headers.get("Docker-Content-Digest")
        if theirs and theirs != str(ours):
            raise DigestMismatchError(f"{what}: the registry stored {theirs}, we sent {ours}")
        return ours

    # --- blobs: down --------------------------------------------------------------------

    def has_blob(self, repository: str, digest: Digest | str) -> bool:
        """``HEAD`` a blob: 200 yes, 404 no."""
        response = self._send("HEAD", f"/v2/{repository}/blobs/{digest}", "blob")
        if response.status_code == 404:
            return False
        self._check(response, f"HEAD blob {digest}", 200)
        return True

    def blob_stream(self, repository: str, digest: Digest | str) -> BinaryIO:
        """A blob's bytes as they arrive, *unverified* (redirects to storage are followed).

        If the connection breaks mid-body, the download continues where it stopped with
        ``Range: bytes=N-`` (or starts over, skipping N bytes, if the registry ignores
        ``Range``); wrap it in a :class:`~hardway.image.blobs.VerifyingReader` to check the
        whole.
        """
        path = f"/v2/{repository}/blobs/{digest}"
        what = f"GET blob {digest} of {repository}"

        def fetch(offset: int) -> requests.Response:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            response = self._send("GET", path, "blob", stream=True, headers=headers)
            self._check(response, what, 200, 206)
            response.raw.decode_content = False  # the blob's own bytes, never an encoding
            return response

        return _Resuming(fetch, _Budget(self, f"GET {path}", "GET blob"))

    def open_blob(
        self, repository: str, digest: Digest | str, size: int | None = None
    ) -> VerifyingReader:
        """A blob, verified against its digest (and ``size``) while it streams."""
        digest = parse_digest(str(digest))
        return VerifyingReader(self.blob_stream(repository, digest), digest, size)

    # --- blobs: up ----------------------------------------------------------------------

    def start_upload(
        self, repository: str, *, mount: Digest | None = None, source: str | None = None
    ) -> tuple[str | None, requests.Response]:
        """``POST …/blobs/uploads/``: ``(Location, response)``, or ``(None, …)`` if mounted."""
        query = f"?{urlencode({'mount': str(mount), 'from': source})}" if mount and source else ""
        response = self._send(
            "POST",
            f"/v2/{repository}/blobs/uploads/{query}",
            "upload",
            headers={"Content-Length": "0"},
        )
        self._check(response, f"POST upload to {repository}", 201, 202)
        if response.status_code == 201:
            return None, response
        return urljoin(response.url, response.headers["Location"]), response

    def upload_monolithic(
        self, location: str, stream: BinaryIO | bytes, digest: Digest, size: int
    ) -> str:
        """``PUT <Location>?digest=`` with the whole blob; returns the blob's URL.

        Sent once: the stream cannot be replayed, so :meth:`push_blob` retries by opening
        the blob again in a new session.
        """
        body = stream if isinstance(stream, bytes) else _Sized(stream, size)
        response = self._upload_request(
            "PUT",
            _with_digest(location, digest),
            f"PUT blob {digest}",
            201,
            data=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        self._sent(size)
        return urljoin(response.url, response.headers.get("Location", ""))

    def upload_offset(self, location: str) -> tuple[str, int]:
        """``GET <Location>``: where an interrupted upload stands, ``(Location, next byte)``."""
        response = self._send("GET", location, "upload")
        self._check(response, "GET upload status", 204)
        return urljoin(response.url, response.headers["Location"]), _next_byte(response)

    def upload_chunked(
        self,
        location: str,
        opener: Callable[[], BinaryIO],
        digest: Digest,
        size: int,
        *,
        chunk_size: int,
        min_chunk: int = 0,
        resume: bool = False,
        budget: _Budget | None = None,
        moved: Callable[[str], None] | None = None,
    ) -> str:
        """PATCH chunks with ``Content-Range``, then ``PUT ?digest=`` to close the upload.

        Every chunk but the last has at least ``max(chunk_size, min_chunk)`` bytes
        (``OCI-Chunk-Min-Length``). With ``resume``, first ask the registry how far the
        upload got and continue from there (``opener`` is opened again and skipped).
        A request that fails on the way resumes the same way; if the registry has given
        the session up, :class:`_SessionLost` tells :meth:`push_blob` to start a new one.
        ``moved`` is told each new ``Location``, to cancel the session at its latest.
        """
        chunk_size = max(chunk_size, min_chunk, 1)
        budget = budget or _Budget(self, f"upload of {digest}", "PATCH upload")
        while True:
            try:
                return self._send_chunks(
                    location, opener, digest, size, chunk_size, resume, moved or _ignore
                )
            except _Interrupted as cut:
                budget.spend(cut.exc, response=cut.response)
                location, resume = cut.location, True

    def _send_chunks(
        self,
        location: str,
        opener: Callable[[], BinaryIO],
        digest: Digest,
        size: int,
        chunk_size: int,
        resume: bool,
        moved: Callable[[str], None],
    ) -> str:
        offset = 0
        if resume:
            try:
                location, offset = self.upload_offset(location)
            except RegistryError as lost:  # Distribution cancels a session whose size
                # no longer matches its signed state (404 BLOB_UPLOAD_INVALID)
                if lost.status_code not in (400, 404, 416):
                    raise
                raise _SessionLost(
                    str(lost), fix="push again: a new upload session starts"
                ) from lost
            moved(location)
        with opener() as stream:
            _skip(stream, offset)
            while offset < size:
                data = stream.read(min(chunk_size, size - offset))
                if not data:
                    raise InvalidImageError(f"blob {digest} ended at byte {offset} of {size}")
                end = offset + len(data) - 1
                response = self._upload_request(
                    "PATCH",
                    location,
                    f"PATCH bytes {offset}-{end} of {digest}",
                    202,
                    data=data,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end}",
                        "Content-Length": str(len(data)),
                    },
                )
                self._sent(len(data))
                location = urljoin(response.url, response.headers["Location"])
                moved(location)
                offset = _next_byte(response)
            response = self._upload_request(
                "PUT",
                _with_digest(location, digest),
                f"PUT (close upload) {digest}",
                201,
                headers={"Content-Length": "0"},
                resume_at=location,
            )
        return urljoin(response.url, response.headers.get("Location", ""))

    def _upload_request(
        self, method: str, location: str, what: str, ok: int, resume_at: str = "", **kwargs: Any
    ) -> requests.Response:
        """One request of an upload, sent once: a transient failure becomes
        :class:`_Interrupted` (outcome unknown: the caller asks the registry), and so
        does a session the registry dropped under us: a request cut off earlier may
        reach its storage only after we resumed, and then the session's size no longer
        matches its signed state (404 ``BLOB_UPLOAD_INVALID``)."""
        try:
            response = self._send(method, location, "upload", retry=False, **kwargs)
        except requests.RequestException as exc:
            if not transient_exception(exc):
                raise
            raise _Interrupted(what, resume_at or location, exc=exc) from exc
        if _again(response) or _session_dropped(response):
            _discard(response)
            raise _Interrupted(what, resume_at or location, response=response)
        return self._check(response, what, ok)

    def push_blob(
        self,
        repository: str,
        opener: Callable[[], BinaryIO],
        digest: Digest,
        size: int,
        *,
        mount_from: tuple[str, ...] = (),
        chunk_size: int | None = None,
    ) -> str:
        """Make sure ``repository`` has the blob; ``"exists"``, ``"mounted"`` or ``"uploaded"``.

        HEAD first; then a cross-repository mount from each of ``mount_from`` (201 means
        done, 202 an upload session we use anyway); a refused mount falls back to a
        plain upload. An upload cut off (reset, timeout, 5xx, 429, expired token with a
        body that cannot be re-sent) is resumed, or started again in a new session
        (``opener`` is called again), until :attr:`retry` runs out.
        """
        if self.has_blob(repository, digest):
            return "exists"
        location = response = None
        for source in mount_from:
            if source == repository:
                continue
            if isinstance(self.auth, BearerAuth):
                self.auth.add_scope(f"repository:{source}:pull")
            try:
                location, response = self.start_upload(repository, mount=digest, source=source)
            except RegistryError:
                continue
            if location is None:
                return "mounted"
            break
        if location is None:
            location, response = self.start_upload(repository)
        budget = _Budget(self, f"upload of blob {digest} to {repository}", "upload")
        latest = [location]  # the session's Location as it moves: cancel it there

        def moved(to: str) -> None:
            latest[0] = to

        try:
            while True:
                try:
                    self._upload(
                        location, response, opener, digest, size, chunk_size, budget, moved
                    )
                    return "uploaded"
                except _Interrupted as cut:
                    budget.spend(cut.exc, response=cut.response)
                    if cut.response is not None and _again_with_token(cut.response):
                        continue  # refused before the registry read it: same session
                except _SessionLost:  # the failure that lost it was paid for already
                    latest[0] = ""  # Distribution refuses to cancel it too: its purger will
                if self.has_blob(repository, digest):  # the last request did arrive after all
                    return "uploaded"
                self.cancel_upload(latest[0])
                latest[0] = ""
                location, response = self.start_upload(repository)
                latest[0] = location
        except BaseException:  # given up, failed or interrupted (Ctrl-C)
            self.cancel_upload(latest[0])
            raise

    def cancel_upload(self, location: str) -> bool:
        """``DELETE <Location>``: drop an upload session we give up, and the bytes the
        registry holds for it (it would keep them for days otherwise). Best effort, sent
        once, never raises: it runs while another failure is on its way up. True if the
        registry dropped it."""
        if not location:
            return False
        with contextlib.suppress(Exception):
            response = self._send("DELETE", location, "upload", retry=False, timeout=5)
            _discard(response)
            return response.status_code == 204
        return False

    def _upload(
        self,
        location: str,
        started: requests.Response,
        opener: Callable[[], BinaryIO],
        digest: Digest,
        size: int,
        chunk_size: int | None,
        budget: _Budget,
        moved: Callable[[str], None],
    ) -> None:
        if chunk_size is None:
            with opener() as stream:
                self.upload_monolithic(location, stream, digest, size)
        else:
            min_chunk = int(started.headers.get("OCI-Chunk-Min-Length", 0) or 0)
            self.upload_chunked(
                location,
                opener,
                digest,
                size,
                chunk_size=chunk_size,
                min_chunk=min_chunk,
                budget=budget,
                moved=moved,
            )

    # --- whole images -------------------------------------------------------------------

    def read_image(
        self, repository: str, ref: str, *, platform: Platform | None = None
    ) -> StoredImage:
        """The image at ``repository:ref``; an index is resolved to ``platform``'s manifest."""
        raw, descriptor = self.get_manifest(repository, ref)
        for _ in range(4):
            if descriptor.media_type not in _INDEXES:
                break
            chosen = Index.from_json(raw).select(platform or host_platform())
            raw, descriptor = self.get_manifest(repository, str(chosen.digest))
            if descriptor.media_type != chosen.media_type:
                raise InvalidImageError(
                    f"the index calls {chosen.digest} {chosen.media_type!r}, the registry "
                    f"serves it as {descriptor.media_type!r}"
                )
        if descriptor.media_type not in _MANIFESTS:
            raise InvalidImageError(
                f"{repository}:{ref} is a {descriptor.media_type!r}, not an image"
            )
        manifest = Manifest.from_json(raw)
        config = manifest.config
        with self.open_blob(repository, config.digest, config.size) as blob:
            raw_config = read_verified(blob, config.digest, config.size)
        sizes = {layer.digest: layer.size for layer in manifest.layers}
        progress = _options.get().progress

        def opener(digest: Digest) -> BinaryIO:
            stream = self.blob_stream(repository, digest)
            if digest not in sizes:
                return stream
            bar = progress_bar(sizes[digest], f"pull {str(digest)[7:19]}", enabled=progress)
            return ProgressReader(stream, bar, close_bar=True)

        return StoredImage(raw, raw_config, opener)

    def write_image(
        self,
        image: Image,
        repository: str,
        ref: str,
        *,
        mount_from: tuple[str, ...] = (),
        chunk_size: int | None = None,
        jobs: int = Options.jobs,
        progress: bool | None = Options.progress,
    ) -> Digest:
        """Push every blob (layers and config, ``jobs`` at a time), then the manifest.

        Each blob is HEADed first and skipped if the registry has it. The manifest is
        PUT only after every blob succeeded: a registry refuses a manifest whose blobs
        it lacks, and a failed push must not leave a tag pointing at half an image.
        Ctrl-C stops the uploads under way at their next read, each cancelling its
        upload session (Distribution refuses for one cut off mid-body and purges it
        later). Returns the manifest's digest.
        """
        raw_config = image.raw_config()
        config = image.manifest().config
        blobs: dict[Digest, tuple[Callable[[], BinaryIO], int]] = {}
        for layer in image.layers():
            blobs.setdefault(layer.digest, (layer.compressed, layer.size))
        blobs.setdefault(config.digest, (lambda: io.BytesIO(raw_config), config.size))
        total = sum(size for _, size in blobs.values())
        with progress_bar(total, f"push {repository}", enabled=progress) as bar:
            moved = threading.Lock()  # tqdm's update is not thread-safe
            stop = threading.Event()  # Ctrl-C: the uploads under way stop, not finish

            def one(digest: Digest, opener: Callable[[], BinaryIO], size: int) -> str:
                mark = _Furthest(bar, moved, stop)

                def watched() -> BinaryIO:
                    return ProgressReader(opener(), mark.opening())

                with self._worker() as client:
                    try:
                        how = client.push_blob(
                            repository,
                            watched,
                            digest,
                            size,
                            mount_from=mount_from,
                            chunk_size=chunk_size,
                        )
                    finally:
                        self._merge(client)
                mark.reach(size)  # all of it is there (also when nothing was sent)
                return how

            _run_bounded(one, [(d, o, s) for d, (o, s) in blobs.items()], jobs, stop)
        return self.put_manifest(repository, ref, image.raw_manifest(), image.manifest().media_type)

    @contextlib.contextmanager
    def _worker(self) -> Iterator[Registry]:
        """A client for one thread: the same auth, transports (connection pools, any
        test adapter) and headers, but its own :class:`requests.Session`, because a
        Session is not documented as safe to share between threads. Its ``requests`` and
        ``bytes_uploaded`` are its own, added to ours by :meth:`_merge`; ``retries`` and
        the lock are ours, shared."""
        clone = copy.copy(self)
        clone.session = requests.Session()
        for name in ("headers", "auth", "proxies", "hooks", "verify", "cert", "trust_env"):
            setattr(clone.session, name, copy.copy(getattr(self.session, name)))
        clone.session.auth = self.session.auth  # one token cache (BearerAuth locks it)
        clone.session.adapters = self.session.adapters  # urllib3 pools are thread-safe
        clone.requests = Counter()
        clone.bytes_uploaded = 0
        try:
            yield clone
        finally:
            clone.session.adapters = OrderedDict()  # closing the clone must not close ours
            clone.session.close()

    def _merge(self, clone: Registry) -> None:
        with self._count_lock:  # the lock _count and _sent take: no update is lost
            self.requests.update(clone.requests)
            self.bytes_uploaded += clone.bytes_uploaded


def _run_bounded(
    func: Callable[..., Any],
    calls: list[tuple[Any, ...]],
    jobs: int,
    stop: threading.Event | None = None,
) -> list[Any]:
    """``func(*args)`` for each of ``calls``, at most ``jobs`` at a time, results in order.

    The first failure cancels what has not started, waits for what runs, and is raised.
    An interrupt (Ctrl-C reaches only this thread) also sets ``stop``, for the calls
    under way to end early rather than run to their end.
    """
    if jobs <= 1 or len(calls) <= 1:
        return [func(*args) for args in calls]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="push")
    try:
        futures = [pool.submit(func, *args) for args in calls]
        concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
    except BaseException:
        if stop is not None:
            stop.set()
        raise
    finally:  # on a failure or Ctrl-C: drop what has not started, wait for what runs
        pool.shutdown(wait=True, cancel_futures=True)
    for future in futures:  # the first failure, in submission order
        if not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]
    return [future.result() for future in futures]


class _Stopped(Exception):
    """An upload thread was told to stop (the push was interrupted)."""


class _Furthest:
    """Moves a push's bar for one blob, only past the furthest byte any reading of it
    reached: an upload resumed or restarted reads the blob again from its start, and
    those bytes must not count twice. Every read of the blob passes here, so this is
    also where an upload learns that the push was interrupted (``stop``)."""

    def __init__(self, bar: Any, lock: threading.Lock, stop: threading.Event) -> None:
        self._bar, self._lock, self.stop, self.furthest = bar, lock, stop, 0

    def reach(self, position: int) -> None:
        with self._lock:
            if position > self.furthest:
                self._bar.update(position - self.furthest)
                self.furthest = position

    def opening(self) -> _Reading:
        """The counter for one more reading of the blob, from its start."""
        return _Reading(self)


@dataclass
class _Reading:
    """One reading of a blob from its start: what a :class:`ProgressReader` moves."""

    mark: _Furthest
    position: int = 0

    def update(self, count: int) -> None:
        if self.mark.stop.is_set():  # the upload ends here, and cancels its session
            raise _Stopped("the push was interrupted")
        self.position += count
        self.mark.reach(self.position)


class _Interrupted(RegistryError):
    """An upload request failed on the way; its outcome is unknown. ``location`` is where
    to ask the registry how far the upload got."""

    def __init__(
        self,
        what: str,
        location: str,
        *,
        exc: BaseException | None = None,
        response: requests.Response | None = None,
    ) -> None:
        why = f"{response.status_code}" if response is not None else f"{type(exc).__name__}"
        super().__init__(
            f"{what}: interrupted ({why}), the registry may hold part of it",
            response=response,
            fix="push again: the upload starts over or resumes",
        )
        self.location, self.exc, self.response = location, exc, response


class _SessionLost(RegistryNotFoundError):
    """The registry no longer knows the upload session: start a new one."""


class _Budget:
    """The tries left for one operation: :meth:`spend` one per failure, which waits
    (backoff, or the registry's ``Retry-After``) or, when none are left, raises
    :class:`~hardway.distribution.errors.RetriesExhaustedError` naming ``what`` and the
    last failure."""

    def __init__(self, registry: Registry, what: str, key: str) -> None:
        self.registry, self.what, self.key = registry, what, key
        self.failures = 0

    def spend(
        self, exc: BaseException | None = None, *, response: requests.Response | None = None
    ) -> None:
        self.failures += 1
        policy = self.registry.retry
        if self.failures >= policy.attempts:
            diagnostics = _error(response, self.what).diagnostics if response is not None else ()
            raise RetriesExhaustedError(
                self.what,
                attempts=self.failures,
                last=exc,
                response=response,
                diagnostics=diagnostics,
            ) from exc
        self.registry._count(self.registry.retries, self.key)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        self.registry.sleep(policy.delay(self.failures, retry_after=retry_after))


def _tls_reason(exc: requests.exceptions.SSLError) -> str:
    """What OpenSSL said, from the ``[SSL: CODE] what (_ssl.c:N)`` urllib3 nests deep.

    >>> _tls_reason(requests.exceptions.SSLError("Max retries (Caused by SSLError(SSLError("
    ...     "1, '[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)')))"))
    'wrong version number'
    """
    found = re.search(r"\[SSL[^]]*\] ([^(]+?) \(_ssl", str(exc))
    return found[1] if found else "the TLS handshake failed"


def _ignore(_: object) -> None:
    pass


def _again(response: requests.Response) -> bool:
    """Is this answer worth the same request again? A transient status, or a 401 whose
    token :class:`~hardway.distribution.auth.BearerAuth` refreshed but could not re-send
    (a stream)."""
    return transient_status(response.status_code) or _again_with_token(response)


def _session_dropped(response: requests.Response) -> bool:
    """A 404 that names the upload session (not the repository or a blob)."""
    if response.status_code != 404:
        return False
    codes = {d.code for d in _error(response, "").diagnostics}
    return bool(codes & {"BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"})


def _again_with_token(response: requests.Response) -> bool:
    return getattr(response, "hardway_resend", False)


def _discard(response: requests.Response) -> None:
    """Read and close an answer we will not use, so its connection can be reused."""
    with contextlib.suppress(requests.RequestException, OSError):
        response.content  # noqa: B018
    response.close()


class _Resuming(io.RawIOBase):
    """A download that continues after a broken connection: ``fetch(offset)`` asks for
    the rest (``Range: bytes=offset-``); a ``200`` instead of ``206`` means the registry
    sent the whole blob again, so the bytes we have are skipped."""

    def __init__(self, fetch: Callable[[int], requests.Response], budget: _Budget) -> None:
        self._fetch, self._budget = fetch, budget
        self._offset = 0
        self._response: requests.Response | None = fetch(0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while True:
            try:
                if self._response is None:
                    self._reopen()  # skipping what we have can break too: same rule
                data = self._response.raw.read(len(buffer))
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                if not transient_exception(exc):
                    raise
                self._budget.spend(exc)
                self._drop()
                continue
            buffer[: len(data)] = data
            self._offset += len(data)
            return len(data)

    def _drop(self) -> None:
        if self._response is not None:
            with contextlib.suppress(Exception):
                self._response.close()
        self._response = None

    def _reopen(self) -> None:
        self._response = self._fetch(self._offset)
        if self._response.status_code == 200:  # Range ignored: the whole blob again
            _skip(self._response.raw, self._offset)
            return
        first = self._response.headers.get("Content-Range", "").removeprefix("bytes ")
        if not first.startswith(f"{self._offset}-"):
            self._drop()
            raise InvalidImageError(
                f"asked for the blob from byte {self._offset}, got Content-Range {first!r}"
            )

    def close(self) -> None:
        self._drop()
        super().close()


class _Sized:
    """A stream with a known length: requests then sends ``Content-Length`` and streams
    the body, instead of falling back to ``Transfer-Encoding: chunked``."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream, self._size = stream, size

    def __len__(self) -> int:
        return self._size

    def read(self, amount: int = -1) -> bytes:
        return self._stream.read(amount if amount and amount > 0 else _CHUNK)


def _with_digest(location: str, digest: Digest) -> str:
    """Add ``digest=`` to a Location, keeping its own query (Distribution's ``_state``)."""
    separator = "&" if urlsplit(location).query else "?"
    return f"{location}{separator}{urlencode({'digest': str(digest)})}"


def _next_byte(response: requests.Response) -> int:
    """The offset after ``Range: 0-E``. Distribution says ``0-0`` for an empty upload *and*
    for a one-byte one; we read it as empty (re-sending one byte is harmless, skipping it
    is not)."""
    text = response.headers.get("Range", "").removeprefix("bytes=")
    start, _, end = text.partition("-")
    if not end or (start, end) == ("0", "0"):
        return 0
    return int(end) + 1


def _skip(stream: BinaryIO, count: int) -> None:
    while count > 0:
        data = stream.read(min(count, _CHUNK))
        if not data:
            return
        count -= len(data)


# --- module-level API ------------------------------------------------------------------


def client_for(ref: Reference | str, *, push: bool = False, **changes: Any) -> Registry:
    """A :class:`Registry` for ``ref``'s host with credentials from :class:`Options`.

    :param push: (optional) ask for push rights up front (a token with ``push,pull``)
    """
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    options = replace(_options.get(), **changes)
    credentials = options.credentials
    if credentials is None:
        credentials = load_credentials(ref.registry, authfile=options.authfile)
    auth = BearerAuth(credentials, scopes=[ref.scope("push" if push else "pull")])
    return Registry(
        ref.api_host,
        auth=auth,
        insecure=options.insecure,
        timeout=options.timeout,
        retry=options.retry_policy(),
    )


def pull(ref: Reference | str, **changes: Any) -> StoredImage:
    """The image ``ref`` names, its manifest and config verified; layers stream on demand.

    >>> pull("127.0.0.1:1/none:v1", timeout=0.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    hardway.distribution.errors.RegistryUnreachableError: cannot connect to the registry at ...
    """
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    options = replace(_options.get(), **changes)
    registry = client_for(ref, **changes)
    return registry.read_image(ref.repository, ref.identifier, platform=options.platform)


def push(image: Image, ref: Reference | str, **changes: Any) -> Digest:
    """Push ``image`` to ``ref`` (blobs the registry has are skipped); returns its digest."""
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    options = replace(_options.get(), **changes)
    with client_for(ref, push=True, **changes) as registry:
        return registry.write_image(
            image,
            ref.repository,
            ref.identifier,
            mount_from=options.mount_from,
            chunk_size=options.chunk_size,
            jobs=options.jobs,
            progress=options.progress,
        )
