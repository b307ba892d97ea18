"""hardway.image.protocols
~~~~~~~~~~~~~~~~~~~~~~~~

An image lives in many places — an OCI layout, a ``docker save`` tarball, a registry,
the builder's cache — and the code that reads one should not care which. These are the
read-only protocols every place implements, like go-containerregistry's ``v1.Image`` and
``v1.Layer``: an :class:`Image` gives its raw manifest and config bytes (digests are
computed over those, never over a re-serialisation), the parsed documents and its
layers; a :class:`Layer` keeps its two names apart — ``digest`` for the blob as stored
(compressed), ``diff_id`` for the tar inside. Nothing here changes an image: edits
return new images (:mod:`hardway.image.mutate`).

:func:`describe` is what an index says about images: each one's manifest descriptor,
with the platform its config names.

>>> from hardway.image.random import random_image
>>> image = random_image(64, 1, seed=1)
>>> isinstance(image, Image), str(describe([image])[0].platform)
(True, 'linux/amd64')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import BinaryIO, Protocol, runtime_checkable

from hardway.image.config import ImageConfig
from hardway.image.descriptor import Descriptor
from hardway.image.digest import Digest, sha256_digest
from hardway.image.manifest import Manifest

__all__ = ["Image", "Layer", "describe", "with_platform"]


@runtime_checkable
class Layer(Protocol):
    """One layer of an image: two names for the same files.

    ``digest``/``size`` name the blob as stored and shipped (usually compressed);
    ``diff_id`` names the uncompressed tar, as the config lists it.

    >>> from hardway.image.random import random_image
    >>> layer = random_image(64, 1, seed=1).layers()[0]
    >>> isinstance(layer, Layer), layer.digest == layer.diff_id  # gzip: two names
    (True, False)
    """

    digest: Digest
    diff_id: Digest
    size: int
    media_type: str

    def compressed(self) -> BinaryIO:
        """The blob as stored, verified against ``digest`` and ``size`` as it is read."""
        ...

    def uncompressed(self) -> BinaryIO:
        """The tar itself."""
        ...


@runtime_checkable
class Image(Protocol):
    """A read-only image, wherever it lives (an OCI layout, a tarball, a registry).

    >>> from hardway.image.random import random_image
    >>> image = random_image(64, 2, seed=1)
    >>> image.digest() == sha256_digest(image.raw_manifest()), len(image.layers())
    (True, 2)
    """

    def raw_manifest(self) -> bytes: ...

    def manifest(self) -> Manifest: ...

    def digest(self) -> Digest:
        """The digest of :meth:`raw_manifest`'s exact bytes."""
        ...

    def raw_config(self) -> bytes: ...

    def config(self) -> ImageConfig: ...

    def layers(self) -> list[Layer]: ...

    def open_blob(self, digest: Digest) -> BinaryIO:
        """A blob of this image by digest (config or layer), verified as it is read."""
        ...


def with_platform(descriptor: Descriptor, config: ImageConfig) -> Descriptor:
    """``descriptor`` with the platform of ``config``, ready for an index.

    >>> entry = Descriptor.of(b"{}", "application/vnd.oci.image.manifest.v1+json")
    >>> str(with_platform(entry, ImageConfig("arm64", "linux")).platform)
    'linux/arm64'
    """
    return replace(descriptor, platform=config.platform)


def describe(images: Iterable[Image]) -> list[Descriptor]:
    """Index entries for ``images``: each manifest's descriptor with its platform.

    >>> from hardway.image.random import random_image
    >>> image = random_image(64, 1, seed=1)
    >>> describe([image])[0].digest == image.digest()
    True
    """
    out = []
    for image in images:
        raw = image.raw_manifest()
        descriptor = Descriptor(image.manifest().media_type, sha256_digest(raw), len(raw))
        out.append(with_platform(descriptor, image.config()))
    return out
