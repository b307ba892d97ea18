"""hardway.distribution.uploads
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Blobs up. Pushing a blob is a small protocol of its own::

    HEAD /v2/<repo>/blobs/<digest>              is it there already? then nothing to do
    POST /v2/<repo>/blobs/uploads/[?mount=&from=]   open an upload session (or mount: 201)
    PUT  <Location>?digest=…                    the whole blob at once (monolithic), or
    PATCH <Location> + Content-Range            one chunk; the answer's Range says how far,
    PUT  <Location>?digest=…                    then close the upload, naming the digest
    GET  <Location>                             where an interrupted upload stands
    DELETE <Location>                           give an upload up

Always continue an upload at the *latest* ``Location``: Distribution signs the upload
state into it and changes it on every answer (and it may be relative).

An upload request is never simply sent again: a ``PATCH`` cut off mid-body leaves the
registry holding an unknown number of bytes. So an interrupted upload asks
``GET <Location>`` where it stands and continues from the registry's offset; when the
registry has given the session up (Distribution cancels a session whose size no longer
matches its signed state), the blob is uploaded again in a new session. Every failure
spends one try of the blob's :class:`~hardway.distribution.http.Budget`; a session given
up is cancelled (``DELETE``), so the registry does not keep its bytes for days.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from hardway.distribution.auth import BearerAuth, must_resend
from hardway.distribution.downloads import skip
from hardway.distribution.errors import RegistryError, RegistryNotFoundError, check, error_for
from hardway.distribution.http import Budget, HttpClient, again, discard
from hardway.distribution.retry import transient_exception
from hardway.errors import InvalidImageError
from hardway.image.digest import Digest

__all__ = ["BlobUploads"]

_CHUNK = 1 << 20


class BlobUploads(HttpClient):
    """The upload endpoints of the registry API (one part of
    :class:`~hardway.distribution.registry.Registry`)."""

    def has_blob(self, repository: str, digest: Digest | str) -> bool:
        """``HEAD`` a blob: 200 yes, 404 no."""
        response = self._send("HEAD", f"/v2/{repository}/blobs/{digest}", "blob")
        if response.status_code == 404:
            return False
        check(response, f"HEAD blob {digest}", 200)
        return True

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
        check(response, f"POST upload to {repository}", 201, 202)
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
        check(response, "GET upload status", 204)
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
        budget: Budget | None = None,
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
        blob = _Blob(opener, digest, size)
        chunk_size = max(chunk_size, min_chunk, 1)
        budget = budget or Budget(self, f"upload of {digest}", "PATCH upload")
        while True:
            try:
                return self._send_chunks(location, blob, chunk_size, resume, moved or _ignore)
            except _Interrupted as cut:
                budget.spend(cut.exc, response=cut.response)
                location, resume = cut.location, True

    def _send_chunks(
        self,
        location: str,
        blob: _Blob,
        chunk_size: int,
        resume: bool,
        moved: Callable[[str], None],
    ) -> str:
        """One try: with ``resume``, ask where the session stands first; then PATCH the
        rest chunk by chunk and close the upload with ``PUT ?digest=``."""
        digest, size = blob.digest, blob.size
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
        with blob.opener() as stream:
            skip(stream, offset)
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
        if again(response) or _session_dropped(response):
            discard(response)
            raise _Interrupted(what, resume_at or location, response=response)
        return check(response, what, ok)

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
        blob = _Blob(opener, digest, size)
        budget = Budget(self, f"upload of blob {digest} to {repository}", "upload")
        latest = [location]  # the session's Location as it moves: cancel it there

        def moved(to: str) -> None:
            latest[0] = to

        try:
            while True:
                try:
                    self._upload(location, response, blob, chunk_size, budget, moved)
                    return "uploaded"
                except _Interrupted as cut:
                    budget.spend(cut.exc, response=cut.response)
                    if cut.response is not None and must_resend(cut.response):
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
            discard(response)
            return response.status_code == 204
        return False

    def _upload(
        self,
        location: str,
        started: requests.Response,
        blob: _Blob,
        chunk_size: int | None,
        budget: Budget,
        moved: Callable[[str], None],
    ) -> None:
        """One try at sending ``blob`` to the session at ``location``: monolithic, or in
        chunks of at least what the registry asked for when it opened the session."""
        if chunk_size is None:
            with blob.opener() as stream:
                self.upload_monolithic(location, stream, blob.digest, blob.size)
        else:
            min_chunk = int(started.headers.get("OCI-Chunk-Min-Length", 0) or 0)
            self.upload_chunked(
                location,
                blob.opener,
                blob.digest,
                blob.size,
                chunk_size=chunk_size,
                min_chunk=min_chunk,
                budget=budget,
                moved=moved,
            )


@dataclass(frozen=True)
class _Blob:
    """A blob to upload: how to open it (again, after a failure), its digest and size."""

    opener: Callable[[], BinaryIO]
    digest: Digest
    size: int


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


def _session_dropped(response: requests.Response) -> bool:
    """A 404 that names the upload session (not the repository or a blob)."""
    if response.status_code != 404:
        return False
    codes = {d.code for d in error_for(response, "").diagnostics}
    return bool(codes & {"BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"})


def _ignore(_: object) -> None:
    pass


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
    """Add ``digest=`` to a Location, keeping its own query (Distribution's ``_state``).

    >>> _with_digest("/v2/app/blobs/uploads/1f2e?_state=abc", "sha256:9a")
    '/v2/app/blobs/uploads/1f2e?_state=abc&digest=sha256%3A9a'
    """
    separator = "&" if urlsplit(location).query else "?"
    return f"{location}{separator}{urlencode({'digest': str(digest)})}"


def _next_byte(response: requests.Response) -> int:
    """The offset after ``Range: 0-E``. Distribution says ``0-0`` for an empty upload *and*
    for a one-byte one; we read it as empty (re-sending one byte is harmless, skipping it
    is not).

    >>> answer = requests.Response()
    >>> for sent in ("0-99999", "0-0", ""):
    ...     answer.headers["Range"] = sent
    ...     print(_next_byte(answer))
    100000
    0
    0
    """
    text = response.headers.get("Range", "").removeprefix("bytes=")
    start, _, end = text.partition("-")
    if not end or (start, end) == ("0", "0"):
        return 0
    return int(end) + 1
