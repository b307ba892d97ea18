"""hardway.image.blobs
~~~~~~~~~~~~~~~~~~~

Blobs are content-addressed: whoever holds a digest can check the bytes it names. This
module does that checking while the bytes stream past (:class:`VerifyingReader`, so a
1 GiB layer costs one buffer, not a gigabyte), stores blobs under ``blobs/<alg>/<hex>``
atomically (a temporary file, then a rename: a crash never leaves half a blob under a
good name), and builds :class:`StoredImage`, the one concrete
:class:`~hardway.image.protocols.Image` that every local format reads into: raw manifest
bytes, raw config bytes, and a function that opens any other blob by digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

from hardway.errors import DigestMismatchError, ImageNotFoundError, InvalidImageError
from hardway.image.compression import decompressed
from hardway.image.config import ImageConfig
from hardway.image.descriptor import Descriptor
from hardway.image.digest import Digest, sha256_digest
from hardway.image.manifest import Manifest
from hardway.image.mediatypes import layer_compression
from hardway.image.protocols import Layer
from hardway.sys.atomic import temporary_file

__all__ = [
    "BlobDir",
    "BlobLayer",
    "Opener",
    "StoredImage",
    "VerifyingReader",
    "read_verified",
]

#: opens a blob by digest; raises ImageNotFoundError when there is no such blob
Opener = Callable[[Digest], BinaryIO]
_CHUNK = 1 << 20


class VerifyingReader(io.RawIOBase):
    """Read ``stream`` and fail unless it is exactly ``size`` bytes hashing to ``digest``.

    The check happens as the bytes pass: more than ``size`` bytes fail at once, a wrong
    hash fails when the end is reached. Read to the end before trusting what you read.

    >>> good = VerifyingReader(io.BytesIO(b"{}"), sha256_digest(b"{}"), 2)
    >>> good.read()
    b'{}'
    >>> VerifyingReader(io.BytesIO(b"{}!"), sha256_digest(b"{}"), 2).read()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    hardway.errors.DigestMismatchError: blob sha256:44136fa355b3…: more than the 2 bytes ...
    """

    def __init__(self, stream: BinaryIO, digest: Digest, size: int | None) -> None:
        if digest.algorithm not in ("sha256", "sha512"):
            raise InvalidImageError(f"cannot verify {digest.algorithm} digests", fix="use sha256")
        self._stream, self.digest, self.size = stream, digest, size
        self._hash = hashlib.new(digest.algorithm)
        self._seen = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        if data:
            self._seen += len(data)
            if self.size is not None and self._seen > self.size:
                raise self._mismatch(f"more than the {self.size} bytes its descriptor says")
            self._hash.update(data)
            buffer[: len(data)] = data
            return len(data)
        if not self._done:
            self._done = True
            if self.size is not None and self._seen != self.size:
                raise self._mismatch(f"{self._seen} bytes, but its descriptor says {self.size}")
            if self._hash.hexdigest() != self.digest.encoded:
                got = f"{self.digest.algorithm}:{self._hash.hexdigest()}"
                raise self._mismatch(f"the bytes hash to {got[:19]}…")
        return 0

    def drain(self) -> None:
        """Read (and so verify) whatever is left."""
        while self.read(_CHUNK):
            pass

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()
        super().close()

    def _mismatch(self, why: str) -> DigestMismatchError:
        return DigestMismatchError(
            f"blob {str(self.digest)[:19]}…: {why}: it is corrupt or was tampered with",
            fix="fetch or copy the image again from a source you trust",
        )


def read_verified(stream: BinaryIO, digest: Digest, size: int | None = None) -> bytes:
    """All of ``stream``, verified (for small blobs: manifests and configs)."""
    with VerifyingReader(stream, digest, size) as reader:
        return reader.read()


# --- a directory of blobs ---------------------------------------------------------------


@dataclass(frozen=True)
class BlobDir:
    """``root/<alg>/<hex>``: the ``blobs`` directory of an OCI layout (or any blob cache)."""

    root: Path

    def path(self, digest: Digest) -> Path:
        return self.root / digest.algorithm / digest.encoded

    def has(self, digest: Digest, size: int | None = None) -> bool:
        path = self.path(digest)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def open(self, digest: Digest, size: int | None = None) -> VerifyingReader:
        """Open a blob, verified as it is read."""
        return VerifyingReader(self.open_raw(digest), digest, size)

    def open_raw(self, digest: Digest) -> BinaryIO:
        """Open a blob unverified: an :data:`Opener` for :class:`StoredImage`, which verifies."""
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise ImageNotFoundError(f"blob {digest} is missing from {self.root}") from None

    def read(self, descriptor: Descriptor) -> bytes:
        """A whole (small) blob, verified against ``descriptor``'s digest and size."""
        with self.open(descriptor.digest, descriptor.size) as reader:
            return reader.read()

    def write(
        self, stream: BinaryIO, digest: Digest | None = None, size: int | None = None
    ) -> Descriptor:
        """Store ``stream``; with ``digest`` given, verify it. Returns ``(digest, size)`` as a
        descriptor with an empty media type (the caller knows what the blob is)."""
        if digest is not None and self.has(digest, size):
            return Descriptor("", digest, self.path(digest).stat().st_size)
        self.root.mkdir(parents=True, exist_ok=True)
        with temporary_file(self.root) as (tmp, out):
            # with a digest, the VerifyingReader hashes (and checks) the bytes; without
            # one, hash them here to name the blob: one pass over the bytes either way
            hasher = hashlib.sha256() if digest is None else None
            source = VerifyingReader(stream, digest, size) if digest else stream
            count = 0
            while block := source.read(_CHUNK):
                if hasher is not None:
                    hasher.update(block)
                count += len(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
            got = digest if hasher is None else Digest("sha256", hasher.hexdigest())
            final = self.path(got)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        return Descriptor("", got, count)

    def write_bytes(self, data: bytes) -> Descriptor:
        return self.write(io.BytesIO(data), sha256_digest(data), len(data))


# --- an image made of blobs -------------------------------------------------------------


@dataclass(frozen=True)
class BlobLayer:
    """A :class:`~hardway.image.protocols.Layer` backed by a blob opener."""

    descriptor: Descriptor
    diff_id: Digest
    opener: Opener

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def compression(self) -> str:
        found = layer_compression(self.media_type)
        if found is None:
            raise InvalidImageError(f"layer {self.digest}: unknown media type {self.media_type!r}")
        return found

    def compressed(self) -> VerifyingReader:
        return VerifyingReader(self.opener(self.digest), self.digest, self.size)

    def uncompressed(self) -> BinaryIO:
        """The tar; reaching its end also verifies the compressed blob to its last byte."""
        return _Uncompressed(self.compressed(), self.compression)


class _Uncompressed(io.RawIOBase):
    """A decompressing stream that drains (and so verifies) the blob at the end.

    A decompressor may stop before the blob's last byte (trailing padding, a gzip
    trailer it has no need to read): draining makes the digest check happen anyway.
    """

    def __init__(self, blob: VerifyingReader, compression: str) -> None:
        self._blob = blob
        self._tar = decompressed(blob, compression)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._tar.read(len(buffer))
        if not data:
            self._blob.drain()
            return 0
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._tar.close()
        self._blob.close()
        super().close()


class StoredImage:
    """An image from its raw manifest, its raw config and a blob opener.

    Nothing is re-serialised: :meth:`raw_manifest` and :meth:`raw_config` return the
    exact bytes given, and :meth:`digest` hashes those. The config bytes are checked
    against the manifest's config descriptor here; layer blobs are checked as they are
    read.
    """

    def __init__(self, raw_manifest: bytes, raw_config: bytes, opener: Opener) -> None:
        self._raw_manifest, self._raw_config, self._opener = raw_manifest, raw_config, opener
        want = self.manifest().config
        got = sha256_digest(raw_config)
        if (got, len(raw_config)) != (want.digest, want.size):
            raise DigestMismatchError(
                f"the config is {len(raw_config)} bytes with digest {got}, but the manifest "
                f"names {want.size} bytes with digest {want.digest}",
                fix="the image is corrupt: copy it again from a source you trust",
            )

    def __repr__(self) -> str:
        return f"<StoredImage {str(self.digest())[:19]}… {len(self.manifest().layers)} layer(s)>"

    def raw_manifest(self) -> bytes:
        return self._raw_manifest

    @cached_property
    def _manifest(self) -> Manifest:
        return Manifest.from_json(self._raw_manifest)

    def manifest(self) -> Manifest:
        return self._manifest

    def media_type(self) -> str:
        return self._manifest.media_type

    def digest(self) -> Digest:
        return sha256_digest(self._raw_manifest)

    def raw_config(self) -> bytes:
        return self._raw_config

    @cached_property
    def _config(self) -> ImageConfig:
        return ImageConfig.from_json(self._raw_config)

    def config(self) -> ImageConfig:
        return self._config

    def image_id(self) -> Digest:
        return sha256_digest(self._raw_config)

    def layers(self) -> list[Layer]:
        descriptors = self._manifest.layers
        diff_ids = self._config.rootfs.diff_ids
        if len(diff_ids) != len(descriptors):
            raise InvalidImageError(
                f"the manifest lists {len(descriptors)} layer(s) but the config "
                f"{len(diff_ids)} diff_id(s)"
            )
        return [BlobLayer(d, i, self._opener) for d, i in zip(descriptors, diff_ids, strict=True)]

    def open_blob(self, digest: Digest) -> BinaryIO:
        if digest == self._manifest.config.digest:
            return io.BytesIO(self._raw_config)
        sizes = {d.digest: d.size for d in self._manifest.layers}
        if digest not in sizes:
            raise ImageNotFoundError(f"blob {digest} is not part of image {self.digest()}")
        return VerifyingReader(self._opener(digest), digest, sizes[digest])
