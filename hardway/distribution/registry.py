"""hardway.distribution.registry
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

A registry is a content-addressed blob store with tags, behind a small HTTP API (the
OCI distribution spec). :class:`Registry` is a thin, honest client on :mod:`requests`:
each method is one or two requests you could type with ``curl``, and each checks what
the spec promises rather than trusting the server::

    GET  /v2/                                   ping (200, or 401 + a challenge)
    GET|HEAD|PUT /v2/<repo>/manifests/<ref>     manifests, with the full Accept list
    DELETE /v2/<repo>/manifests/<digest>        a manifest, and every tag on it
    GET  /v2/<repo>/tags/list?n=                tags, page by page (Link: rel="next")
    GET  /v2/<repo>/blobs/<digest>              a blob, verified while it streams
    HEAD, POST, PATCH, PUT, DELETE …/blobs/…    a blob upload

The class is built in floors, one module each: :mod:`~hardway.distribution.http` sends
the requests (retries, counters, typed errors), :mod:`~hardway.distribution.downloads`
streams blobs down and resumes a broken download with ``Range``, and
:mod:`~hardway.distribution.uploads` pushes blobs up — monolithic or in chunks —
resuming or restarting an interrupted upload. This module adds what stands on them:
manifests and tags, and whole images. Two rules it never breaks: never trust a digest
the server sends without computing ours, and push the manifest only after every blob is
confirmed, so a push that gives up never leaves a tag pointing at missing blobs.

Module-level :func:`pull` and :func:`push` open a client for a reference, as
``requests.get`` opens a session. Options are keyword-only, with their defaults in
:class:`~hardway.distribution.options.Options`.
"""

from __future__ import annotations

import concurrent.futures
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urljoin

import requests

from hardway.distribution.auth import BearerAuth
from hardway.distribution.credentials import Credentials, load_credentials
from hardway.distribution.downloads import BlobDownloads
from hardway.distribution.errors import RegistryNotFoundError, check
from hardway.distribution.options import Options, current_options
from hardway.distribution.progress import ProgressReader, progress_bar
from hardway.distribution.reference import (
    DOCKER_HUB,
    DOCKER_HUB_API,
    Reference,
    parse_reference,
)
from hardway.distribution.uploads import BlobUploads
from hardway.errors import DigestMismatchError, InvalidImageError
from hardway.image.blobs import StoredImage, read_verified
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

__all__ = ["ACCEPT", "Registry", "client_for", "delete", "login", "pull", "push", "push_index"]

#: every manifest and index type we can read: without the OCI ones Distribution answers
#: 404 MANIFEST_UNKNOWN for an OCI image, even though it has it
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
_INDEXES = set(INDEX_TYPES.values())
_MANIFESTS = set(MANIFEST_TYPES.values())


class Registry(BlobUploads, BlobDownloads):
    """A client for one registry host: the registry API, one method per endpoint.

    >>> Registry("127.0.0.1:5000").url("/v2/")
    'http://127.0.0.1:5000/v2/'

    It takes the parameters of :class:`~hardway.distribution.http.HttpClient` (``host``,
    and keyword-only ``auth``, ``insecure``, ``timeout``, ``retry``). Blob downloads come
    from :class:`~hardway.distribution.downloads.BlobDownloads` (``blob_stream``,
    ``open_blob``), blob uploads from :class:`~hardway.distribution.uploads.BlobUploads`
    (``has_blob``, ``push_blob`` and its steps). One client may be shared by threads
    (parallel blob uploads).
    """

    # --- ping and tags ------------------------------------------------------------------

    def ping(self) -> requests.Response:
        """``GET /v2/``: is this a registry, and does it want credentials?"""
        return check(self._send("GET", "/v2/", "ping"), "GET /v2/", 200)

    def tags(self, repository: str, *, page_size: int | None = None) -> list[str]:
        """Every tag of ``repository``, following ``Link: <…>; rel="next"`` page by page."""
        url: str | None = f"/v2/{repository}/tags/list"
        params = {"n": page_size} if page_size else None
        found: list[str] = []
        while url:
            response = self._send("GET", url, "tags", params=params)
            check(response, f"GET tags of {repository}", 200)
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
        check(response, f"HEAD manifest {repository}:{ref}", 200)
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
        check(response, what, 200)
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
        check(response, what, 201, 200)
        ours = sha256_digest(raw)
        theirs = response.headers.get("Docker-Content-Digest")
        if theirs and theirs != str(ours):
            raise DigestMismatchError(f"{what}: the registry stored {theirs}, we sent {ours}")
        return ours

    def delete_manifest(self, repository: str, ref: str) -> None:
        """``DELETE`` a manifest by digest: every tag on it goes too (202 Accepted).

        The blobs stay until the registry's garbage collection. Deleting by *tag* is
        optional in the OCI spec; Distribution 2.8 refuses it (400 ``DIGEST_INVALID``), so
        resolve the tag with :meth:`head_manifest` (a HEAD, which Docker Hub does not
        count against its pull limit) and delete the digest.
        """
        response = self._send("DELETE", f"/v2/{repository}/manifests/{ref}", "manifest")
        check(response, f"DELETE manifest {repository}:{ref}", 202)

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
        progress = current_options().progress

        def opener(digest: Digest) -> BinaryIO:
            stream = self.blob_stream_for_thread(repository, digest)  # unpack: in threads
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


# --- module-level API ------------------------------------------------------------------


def client_for(
    ref: Reference | str, *, push: bool = False, scope_action: str = "", **changes: Any
) -> Registry:
    """A :class:`Registry` for ``ref``'s host, with credentials from
    :class:`~hardway.distribution.options.Options`.

    :param push: (optional) ask for push rights up front (a token with ``push,pull``)
    :param scope_action: (optional) the action to ask for instead (``delete``)
    """
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    options = current_options(**changes)
    credentials = options.credentials
    if credentials is None:
        credentials = load_credentials(ref.registry, authfile=options.authfile)
    action = scope_action or ("push" if push else "pull")
    auth = BearerAuth(credentials, scopes=[ref.scope(action)])
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
    options = current_options(**changes)
    registry = client_for(ref, **changes)
    return registry.read_image(ref.repository, ref.identifier, platform=options.platform)


def push(image: Image, ref: Reference | str, **changes: Any) -> Digest:
    """Push ``image`` to ``ref`` (blobs the registry has are skipped); returns its digest."""
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    options = current_options(**changes)
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


def delete(ref: Reference | str, **changes: Any) -> Digest:
    """Delete the manifest ``ref`` names (a tag is first resolved with a HEAD); returns
    its digest. Every tag on that manifest is gone afterwards."""
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    with client_for(ref, scope_action="delete", **changes) as registry:
        found = registry.head_manifest(ref.repository, ref.identifier)
        if found is None:
            raise RegistryNotFoundError(f"{ref} does not exist", status_code=404)
        registry.delete_manifest(ref.repository, str(found.digest))
        return found.digest


def login(registry: str, credentials: Credentials, **changes: Any) -> None:
    """Check ``credentials`` on ``registry`` (a host) as ``docker login`` does: ``GET /v2/``
    with them, answering the registry's challenge (Basic, or a token for no scope)."""
    options = current_options(**changes)
    api_host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
    auth = BearerAuth(credentials)
    with Registry(
        api_host,
        auth=auth,
        insecure=options.insecure,
        timeout=options.timeout,
        retry=options.retry_policy(),
    ) as client:
        client.ping()


def push_index(
    raw_index: bytes,
    images: list[tuple[Descriptor, Image]],
    ref: Reference | str,
    **changes: Any,
) -> Digest:
    """Push a multi-platform image as it is: each manifest by its digest, then the index's
    exact bytes (so its digest does not change) at ``ref``."""
    ref = parse_reference(ref) if isinstance(ref, str) else ref
    options = current_options(**changes)
    media_type = parse_json(raw_index, "index").get("mediaType") or OCI_INDEX
    with client_for(ref, push=True, **changes) as registry:
        for descriptor, image in images:
            registry.write_image(
                image,
                ref.repository,
                str(descriptor.digest),
                mount_from=options.mount_from,
                chunk_size=options.chunk_size,
                jobs=options.jobs,
                progress=options.progress,
            )
        return registry.put_manifest(ref.repository, ref.identifier, raw_index, media_type)
