"""hardway.distribution.downloads
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Blobs down: ``GET /v2/<repo>/blobs/<digest>``, streamed as it arrives (a registry may
redirect to its storage: the redirect is followed) and verified against its digest by
the time it ends.

A connection can break in the middle of a 1 GiB layer. Then the download goes on from
where it stopped, as HTTP allows: ``Range: bytes=N-`` asks for the rest, and the answer
``206 Partial Content`` says in ``Content-Range`` which bytes it holds — they must start
at ``N``. A server that ignores ``Range`` answers ``200`` with the whole blob again; its
first ``N`` bytes, the ones we have, are skipped. Either way every retry counts against
the same :class:`~hardway.distribution.http.Budget`, and the digest is checked over the
whole blob at the end (:class:`~hardway.image.blobs.VerifyingReader`), so a resumed
download is exactly as trusted as one that never broke.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import BinaryIO

import requests
import urllib3.exceptions

from hardway.distribution.errors import check
from hardway.distribution.http import Budget, HttpClient
from hardway.distribution.retry import transient_exception
from hardway.errors import InvalidImageError
from hardway.image.blobs import VerifyingReader
from hardway.image.digest import Digest, parse_digest

__all__ = ["BlobDownloads", "ResumingDownload", "skip"]

_CHUNK = 1 << 20


class BlobDownloads(HttpClient):
    """The download endpoint of the registry API (one part of
    :class:`~hardway.distribution.registry.Registry`)."""

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
            check(response, what, 200, 206)
            response.raw.decode_content = False  # the blob's own bytes, never an encoding
            return response

        return ResumingDownload(fetch, Budget(self, f"GET {path}", "GET blob"))

    def blob_stream_for_thread(self, repository: str, digest: Digest | str) -> BinaryIO:
        """:meth:`blob_stream` through a client of its own (its own
        :class:`requests.Session`, the same connection pools), closed with the stream: the
        layers of one pull download in threads (:mod:`hardway.image.pipeline`)."""
        with contextlib.ExitStack() as stack:  # closes the client if the GET fails
            client = stack.enter_context(self._worker())
            stack.callback(self._merge, client)
            stream = client.blob_stream(repository, digest)
            return _Owning(stream, stack.pop_all())
        raise AssertionError("unreachable")  # pragma: no cover  (mypy: the with returns)

    def open_blob(
        self, repository: str, digest: Digest | str, size: int | None = None
    ) -> VerifyingReader:
        """A blob, verified against its digest (and ``size``) while it streams."""
        digest = parse_digest(str(digest))
        return VerifyingReader(self.blob_stream(repository, digest), digest, size)


class _Owning(io.RawIOBase):
    """``stream``, and what closing it closes too (``owned``)."""

    def __init__(self, stream: BinaryIO, owned: contextlib.ExitStack) -> None:
        self._stream, self._owned = stream, owned

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        return self._stream.read(size)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._stream.readinto(buffer)  # type: ignore[attr-defined]

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._owned.close()
            super().close()


class ResumingDownload(io.RawIOBase):
    """A download that continues after a broken connection: ``fetch(offset)`` asks for
    the rest (``Range: bytes=offset-``); a ``200`` instead of ``206`` means the registry
    sent the whole blob again, so the bytes we have are skipped."""

    def __init__(self, fetch: Callable[[int], requests.Response], budget: Budget) -> None:
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
            skip(self._response.raw, self._offset)
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


def skip(stream: BinaryIO, count: int) -> None:
    """Read ``count`` bytes of ``stream`` and drop them (fewer if it ends first).

    >>> stream = io.BytesIO(b"abcdef")
    >>> skip(stream, 4); stream.read()
    b'ef'
    """
    while count > 0:
        data = stream.read(min(count, _CHUNK))
        if not data:
            return
        count -= len(data)
