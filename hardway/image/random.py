"""hardway.image.random
~~~~~~~~~~~~~~~~~~~~

Images for tests, made on the spot instead of downloaded, as go-containerregistry's
``random`` package does: :func:`random_image` builds a valid image of ``layers`` layers,
each a tar holding one file of ``size`` random bytes, entirely in memory. A ``seed``
makes it reproducible, so a test can build the same image twice and compare digests.

The usual round trip: random → write → read → validate → compare.

>>> from hardway.image.validate import validate_image
>>> image = random_image(1024, 2, seed=1)
>>> len(image.layers()), validate_image(image)
(2, None)
>>> random_image(1024, 2, seed=1).digest() == image.digest()
True
"""

from __future__ import annotations

import io
import random
import tarfile

from hardway.errors import ImageNotFoundError
from hardway.image.blobs import StoredImage
from hardway.image.compression import choose_codec
from hardway.image.config import History, ImageConfig, RootFS
from hardway.image.descriptor import Descriptor
from hardway.image.digest import Digest, sha256_digest
from hardway.image.manifest import Index, Manifest
from hardway.image.mediatypes import (
    CONFIG_TYPES,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    layer_media_type,
)
from hardway.image.platform import Platform

__all__ = ["random_image", "random_index", "random_layer"]

EPOCH = "1970-01-01T00:00:00Z"


def random_layer(size: int, rng: random.Random, compression: str = "gzip") -> tuple[bytes, bytes]:
    """``(tar, blob)``: a tar with one random file of ``size`` bytes, and its compressed form."""
    data = rng.randbytes(size)
    info = tarfile.TarInfo(f"random_file_{rng.getrandbits(32):08x}")
    info.size, info.mode = size, 0o644
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    compressor = choose_codec(compression, implementation="zlib" if compression == "gzip" else None)
    stream = compressor.compressor()
    return raw, stream.compress(raw) + stream.flush()


def random_image(
    size: int,
    layers: int,
    *,
    seed: int | None = None,
    fmt: str = "oci",
    compression: str = "gzip",
    platform: Platform | None = None,
) -> StoredImage:
    """A valid image of ``layers`` random layers of ``size`` bytes each, held in memory."""
    rng = random.Random(seed)
    platform = platform or Platform("amd64", "linux")
    blobs: dict[Digest, bytes] = {}
    descriptors, diff_ids = [], []
    for _ in range(layers):
        tar, blob = random_layer(size, rng, compression)
        descriptor = Descriptor.of(blob, layer_media_type(fmt, compression))
        blobs[descriptor.digest] = blob
        descriptors.append(descriptor)
        diff_ids.append(sha256_digest(tar))
    history = tuple(History(created=EPOCH, created_by="hardway.image.random") for _ in diff_ids)
    config = ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        rootfs=RootFS(tuple(diff_ids)),
        history=history,
        created=EPOCH,
    )
    raw_config = config.to_json()
    manifest = Manifest(
        config=Descriptor.of(raw_config, CONFIG_TYPES[fmt]),
        layers=tuple(descriptors),
        media_type=MANIFEST_TYPES[fmt],
    )

    def opener(digest: Digest) -> io.BytesIO:
        if digest not in blobs:
            raise ImageNotFoundError(f"the random image has no blob {digest}")
        return io.BytesIO(blobs[digest])

    return StoredImage(manifest.to_json(), raw_config, opener)


#: the ``vnd.docker.reference.type`` of BuildKit's attestation (SBOM, provenance) entries
ATTESTATION = "attestation-manifest"


def random_index(rng: random.Random) -> tuple[Index, list[Platform]]:
    """A random index and the platforms in it: several, a variant or two, and (OCI only)
    an attestation entry as BuildKit adds one — platform ``unknown/unknown``, annotated
    with the digest of the image it attests — and an entry with no platform at all (the
    spec makes ``platform`` optional: an artifact, say). Labs 06 and 08 pick from it."""
    platforms = [
        Platform("amd64", "linux"),
        Platform("arm64", "linux", "v8"),
        Platform("arm", "linux", "v6"),
        Platform("arm", "linux", "v7"),
        Platform("s390x", "linux"),
        Platform("amd64", "windows", os_version="10.0.17763.5329"),
    ]
    chosen = rng.sample(platforms, rng.randint(3, len(platforms)))
    docker = rng.random() < 0.4
    kind = (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST) if docker else (OCI_INDEX, OCI_MANIFEST)
    entries = [Descriptor.of(rng.randbytes(32), kind[1], platform=p) for p in chosen]
    if kind[0] == OCI_INDEX:
        entries.insert(rng.randint(0, len(entries)), Descriptor.of(rng.randbytes(8), kind[1]))
        attested = str(next(e.digest for e in entries if e.platform is not None))
        notes = {"vnd.docker.reference.digest": attested, "vnd.docker.reference.type": ATTESTATION}
        unknown = Platform("unknown", "unknown")
        entries.append(
            Descriptor.of(rng.randbytes(8), kind[1], platform=unknown, annotations=notes)
        )
    return Index(tuple(entries), media_type=kind[0]), chosen
