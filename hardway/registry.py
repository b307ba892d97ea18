"""hardway.registry
~~~~~~~~~~~~~~~~

A registry is a content-addressed blob store with tags, behind a small HTTP API (the
OCI distribution spec). This module is a thin, honest client on :mod:`requests`: each
method is one or two requests you could type with ``curl``, and each checks what the
spec promises rather than trusting the server::

    GET  /v2/                                   ping (200, or 401 + a challenge)
    HEAD /v2/<repo>/blobs/<digest>              is this blob there already?
    POST /v2/<repo>/blobs/uploads/[?mount=&from=]   open an upload (or mount: 201)
    PUT  <Location>?digest=…                    the whole blob at once (monolithic)
    PATCH <Location> + Content-Range            one chunk; the answer's Range says how far
    GET  /v2/<repo>/blobs/<digest>              a blob, verified while it streams
    GET|HEAD|PUT /v2/<repo>/manifests/<ref>     manifests, with the full Accept list
    GET  /v2/<repo>/tags/list?n=                tags, page by page (Link: rel="next")

Three rules the client never breaks: always continue an upload at the *latest*
``Location`` (Distribution signs the upload state into it and changes it on every
answer; it may be relative); never trust a digest the server sends without computing
ours; and turn every error body ``{"errors": [{"code", …}]}`` into a typed
:class:`~hardway.errors.RegistryError`.

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
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from hardway.auth import BearerAuth, Credentials, load_credentials
from hardway.blobs import StoredImage, VerifyingReader, read_verified
from hardway.digest import Digest, parse_digest, sha256_digest
from hardway.errors import (
    Diagnostic,
    DigestMismatchError,
    InvalidImageError,
    RegistryError,
    RegistryNotFoundError,
    UnauthorizedError,
)
from hardway.image import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Image,
    Index,
    Manifest,
    Platform,
    host_platform,
    parse_json,
)
from hardway.progress import ProgressReader, progress_bar
from hardway.reference import Reference, parse_reference

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
    #: progress bars (:mod:`hardway.progress`); ``None``: only when someone watches
    progress: bool | None = None


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
    :param auth: (optional) a requests auth, usually :class:`~hardway.auth.BearerAuth`
    :param insecure: (optional) see :attr:`Options.insecure`
    :param timeout: (optional) seconds
    """

    def __init__(
        self,
        host: str,
        *,
        auth: requests.auth.AuthBase | None = None,
        insecure: bool | None = None,
        timeout: float = Options.timeout,
    ) -> None:
        self.host = host
        self.base = f"{scheme_for(host, insecure)}://{host}"
        self.timeout = timeout
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
        self._merge_lock = threading.Lock()

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

    def _send(self, method: str, url: str, kind: str, **kwargs: Any) -> requests.Response:
        self.requests[f"{method} {kind}"] += 1
        kwargs.setdefault("timeout", self.timeout)
        return self.session.request(method, self.url(url), **kwargs)

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
        """A blob's bytes as they arrive, *unverified* (redirects to storage are followed)."""
        response = self._send("GET", f"/v2/{repository}/blobs/{digest}", "blob", stream=True)
        self._check(response, f"GET blob {digest} of {repository}", 200)
        response.raw.decode_content = False  # the blob's own bytes, never a transfer encoding
        return response.raw

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
        """``PUT <Location>?digest=`` with the whole blob; returns the blob's URL."""
        body = stream if isinstance(stream, bytes) else _Sized(stream, size)
        response = self._send(
            "PUT",
            _with_digest(location, digest),
            "upload",
            data=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        self._check(response, f"PUT blob {digest}", 201)
        self.bytes_uploaded += size
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
    ) -> str:
        """PATCH chunks with ``Content-Range``, then ``PUT ?digest=`` to close the upload.

        Every chunk but the last has at least ``max(chunk_size, min_chunk)`` bytes
        (``OCI-Chunk-Min-Length``). With ``resume``, first ask the registry how far the
        upload got and continue from there (``opener`` is opened again and skipped).
        """
        chunk_size = max(chunk_size, min_chunk, 1)
        offset = 0
        if resume:
            location, offset = self.upload_offset(location)
        with opener() as stream:
            _skip(stream, offset)
            while offset < size:
                data = stream.read(min(chunk_size, size - offset))
                if not data:
                    raise InvalidImageError(f"blob {digest} ended at byte {offset} of {size}")
                end = offset + len(data) - 1
                response = self._send(
                    "PATCH",
                    location,
                    "upload",
                    data=data,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end}",
                        "Content-Length": str(len(data)),
                    },
                )
                self._check(response, f"PATCH bytes {offset}-{end} of {digest}", 202)
                self.bytes_uploaded += len(data)
                location = urljoin(response.url, response.headers["Location"])
                offset = _next_byte(response)
            response = self._send(
                "PUT", _with_digest(location, digest), "upload", headers={"Content-Length": "0"}
            )
            self._check(response, f"PUT (close upload) {digest}", 201)
        return urljoin(response.url, response.headers.get("Location", ""))

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
        plain upload.
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
        if chunk_size is None:
            with opener() as stream:
                self.upload_monolithic(location, stream, digest, size)
        else:
            min_chunk = int(response.headers.get("OCI-Chunk-Min-Length", 0) or 0)
            self.upload_chunked(
                location, opener, digest, size, chunk_size=chunk_size, min_chunk=min_chunk
            )
        return "uploaded"

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
            return _Closing(ProgressReader(stream, bar), bar)

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
        Returns the manifest's digest.
        """
        raw_config = image.raw_config()
        config = image.manifest().config
        blobs: dict[Digest, tuple[Callable[[], BinaryIO], int]] = {}
        for layer in image.layers():
            blobs.setdefault(layer.digest, (layer.compressed, layer.size))
        blobs.setdefault(config.digest, (lambda: io.BytesIO(raw_config), config.size))
        total = sum(size for _, size in blobs.values())
        with progress_bar(total, f"push {repository}", enabled=progress) as bar:

            def one(digest: Digest, opener: Callable[[], BinaryIO], size: int) -> str:
                def watched() -> BinaryIO:
                    return ProgressReader(opener(), bar)

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
                if how != "uploaded":
                    bar.update(size)  # nothing to send: count it as done
                return how

            _run_bounded(one, [(d, o, s) for d, (o, s) in blobs.items()], jobs)
        return self.put_manifest(repository, ref, image.raw_manifest(), image.manifest().media_type)

    @contextlib.contextmanager
    def _worker(self) -> Iterator[Registry]:
        """A client for one thread: the same auth, transports (connection pools, any
        test adapter) and headers, but its own :class:`requests.Session` and counters,
        because a Session is not documented as safe to share between threads."""
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
        with self._merge_lock:
            self.requests.update(clone.requests)
            self.bytes_uploaded += clone.bytes_uploaded


def _run_bounded(func: Callable[..., Any], calls: list[tuple[Any, ...]], jobs: int) -> list[Any]:
    """``func(*args)`` for each of ``calls``, at most ``jobs`` at a time, results in order.

    The first failure cancels what has not started, waits for what runs, and is raised.
    """
    if jobs <= 1 or len(calls) <= 1:
        return [func(*args) for args in calls]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="push")
    try:
        futures = [pool.submit(func, *args) for args in calls]
        concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
    finally:  # on a failure or Ctrl-C: drop what has not started, wait for what runs
        pool.shutdown(wait=True, cancel_futures=True)
    for future in futures:  # the first failure, in submission order
        if not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]
    return [future.result() for future in futures]


class _Closing(io.RawIOBase):
    """A stream that also closes ``extra`` (a progress bar) when it is closed."""

    def __init__(self, stream: BinaryIO, extra: Any) -> None:
        self._stream, self._extra = stream, extra

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        return self._stream.read(size)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()
        self._extra.close()
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
    return Registry(ref.api_host, auth=auth, insecure=options.insecure, timeout=options.timeout)


def pull(ref: Reference | str, **changes: Any) -> StoredImage:
    """The image ``ref`` names, its manifest and config verified; layers stream on demand.

    >>> pull("127.0.0.1:1/none:v1", timeout=0.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    requests.exceptions.ConnectionError: ...
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
