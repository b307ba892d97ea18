"""hardway.image.mutate
~~~~~~~~~~~~~~~~~~~~

Images are immutable: every change makes a new one. Appending a layer adds its
descriptor to the manifest *and* its diff_id (plus a history entry) to the config;
changing ``Env`` or ``Cmd`` makes a new config, so a new config digest, so a new
manifest. Nothing here edits bytes in place: each function builds the new documents
(:mod:`hardway.image.config`, :mod:`hardway.image.manifest`) and returns a new
:class:`~hardway.image.blobs.StoredImage` that shares the old one's layer blobs, as
go-containerregistry's ``mutate`` package does.

:func:`from_dir` is what ``python -m hardway image from-dir`` runs: one directory
becomes one layer on top of a base image (or of nothing), with a config you choose.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from hardway.errors import ImageNotFoundError
from hardway.image.blobs import BlobLayer, StoredImage
from hardway.image.config import History, ImageConfig, RootFS
from hardway.image.descriptor import Descriptor
from hardway.image.digest import Digest
from hardway.image.manifest import Manifest
from hardway.image.mediatypes import (
    CONFIG_TYPES,
    MANIFEST_TYPES,
    layer_compression,
    layer_media_type,
)
from hardway.image.platform import Platform, host_platform
from hardway.image.protocols import Image, Layer

if TYPE_CHECKING:  # layers imports image code; it is imported lazily below
    from hardway.image.layers import LayerInfo

__all__ = [
    "append_layers",
    "configure",
    "convert",
    "empty_image",
    "file_layer",
    "from_dir",
    "from_layers",
    "timestamp",
    "with_config",
]

_UNSET: Any = object()


def timestamp(epoch: int | None = None) -> str:
    """RFC 3339 in UTC; default ``SOURCE_DATE_EPOCH``, else 0: reproducible unless asked.

    >>> timestamp(0), timestamp(1700000000)
    ('1970-01-01T00:00:00Z', '2023-11-14T22:13:20Z')
    """
    from hardway.image.layers import source_epoch  # lazily: layers imports much

    epoch = source_epoch(epoch) or 0
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def file_layer(path: Path, info: LayerInfo, media_type: str) -> BlobLayer:
    """A layer blob in a file (what :func:`hardway.image.layers.write_layer` wrote): a
    :class:`~hardway.image.blobs.BlobLayer` whose opener reads that file, so it is read and
    verified the same way as a blob in a layout or an archive."""
    descriptor = Descriptor(media_type, info.digest, info.size)
    return BlobLayer(descriptor, info.diff_id, lambda _digest: path.open("rb"))


def _rebuild(
    image: Image,
    config: ImageConfig,
    *,
    layers: Sequence[Layer] = (),
    fmt: str | None = None,
    raw_config: bytes | None = None,
) -> StoredImage:
    """A new image: ``config``, the old layers plus ``layers``, in format ``fmt``."""
    old = image.manifest()
    fmt = fmt or old.format
    raw_config = config.to_json() if raw_config is None else raw_config
    descriptors = [replace(d, media_type=_retype(d.media_type, fmt)) for d in old.layers]
    descriptors += [Descriptor(_retype(x.media_type, fmt), x.digest, x.size) for x in layers]
    manifest = Manifest(
        config=Descriptor.of(raw_config, CONFIG_TYPES[fmt]),
        layers=tuple(descriptors),
        media_type=MANIFEST_TYPES[fmt],
        annotations=old.annotations if fmt == "oci" else {},
    )
    new = {layer.digest: layer for layer in layers}

    def opener(digest: Digest) -> BinaryIO:
        if digest in new:
            return new[digest].compressed()
        return image.open_blob(digest)

    return StoredImage(manifest.to_json(), raw_config, opener)


def _retype(media_type: str, fmt: str) -> str:
    return layer_media_type(fmt, layer_compression(media_type) or "gzip")


def from_layers(raw_config: bytes, layers: Sequence[Layer], *, fmt: str = "oci") -> StoredImage:
    """The image made of the config bytes *raw_config* (kept as they are, so the image ID
    is theirs) and *layers*, with ``fmt``'s (``"oci"`` or ``"docker"``) media types."""
    descriptors = tuple(Descriptor(_retype(x.media_type, fmt), x.digest, x.size) for x in layers)
    config = Descriptor.of(raw_config, CONFIG_TYPES[fmt])
    manifest = Manifest(config, descriptors, MANIFEST_TYPES[fmt])
    blobs = {layer.digest: layer for layer in layers}

    def opener(digest: Digest) -> BinaryIO:
        return blobs[digest].compressed()

    return StoredImage(manifest.to_json(), raw_config, opener)


def empty_image(platform: Platform | None = None, *, fmt: str = "oci") -> StoredImage:
    """An image with no layers and a bare config (``FROM scratch``)."""
    platform = platform or host_platform()
    config = ImageConfig(
        architecture=platform.architecture,
        os=platform.os,
        variant=platform.variant,
        created=timestamp(),
    )
    raw = config.to_json()
    manifest = Manifest(Descriptor.of(raw, CONFIG_TYPES[fmt]), media_type=MANIFEST_TYPES[fmt])

    def opener(digest: Digest) -> BinaryIO:
        raise ImageNotFoundError(f"an empty image has no blob {digest}")

    return StoredImage(manifest.to_json(), raw, opener)


def append_layers(
    image: Image, layers: Iterable[Layer], *, history: Iterable[History] | None = None
) -> StoredImage:
    """``image`` plus ``layers`` on top: new descriptors, diff_ids and history entries."""
    layers = list(layers)
    config = image.config()
    if history is None:
        history = [History(created=timestamp()) for _ in layers]
    diff_ids = config.rootfs.diff_ids + tuple(layer.diff_id for layer in layers)
    config = replace(config, rootfs=RootFS(diff_ids), history=config.history + tuple(history))
    return _rebuild(image, config, layers=layers)


def with_config(image: Image, config: ImageConfig) -> StoredImage:
    """``image`` with another config (its diff_ids must still match the layers)."""
    return _rebuild(image, config)


def configure(
    image: Image,
    *,
    entrypoint: Sequence[str] | None = _UNSET,
    cmd: Sequence[str] | None = _UNSET,
    env: Iterable[str] = (),
    working_dir: str | None = None,
    user: str | None = None,
    labels: Mapping[str, str] | None = None,
    exposed_ports: Iterable[str] = (),
    volumes: Iterable[str] = (),
    created: str | None = None,
) -> StoredImage:
    """``image`` with its run settings changed; unmentioned settings are kept.

    ``env`` entries ``K=V`` replace an existing ``K`` in place or are appended, as
    Docker's ``ENV`` does. Setting ``entrypoint`` resets an inherited ``cmd`` unless
    ``cmd`` is given too (Docker's rule, so a base's arguments don't reach a new program).
    """
    config = image.config()
    run = config.config
    changes: dict[str, Any] = {}
    if entrypoint is not _UNSET:
        changes["entrypoint"] = None if entrypoint is None else tuple(entrypoint)
        changes["cmd"] = None
    if cmd is not _UNSET:
        changes["cmd"] = None if cmd is None else tuple(cmd)
    env = list(env)
    if env:
        merged = list(run.env)
        for entry in env:
            key = entry.split("=", 1)[0]
            at = [i for i, old in enumerate(merged) if old.split("=", 1)[0] == key]
            if at:
                merged[at[0]] = entry
            else:
                merged.append(entry)
        changes["env"] = tuple(merged)
    if working_dir is not None:
        changes["working_dir"] = working_dir
    if user is not None:
        changes["user"] = user
    if labels:
        changes["labels"] = {**run.labels, **labels}
    if ports := list(exposed_ports):
        changes["exposed_ports"] = tuple(dict.fromkeys([*run.exposed_ports, *ports]))
    if vols := list(volumes):
        changes["volumes"] = tuple(dict.fromkeys([*run.volumes, *vols]))
    config = replace(config, config=replace(run, **changes))
    if created is not None:
        config = replace(config, created=created)
    return _rebuild(image, config)


def convert(image: Image, fmt: str) -> Image:
    """``image`` as an ``"oci"`` or ``"docker"`` image: same config bytes, other media types.

    The config's bytes (so the image ID) and the layer blobs stay the same; only the
    manifest changes, and with it the manifest digest.
    """
    if image.manifest().format == fmt:
        return image
    return _rebuild(image, image.config(), fmt=fmt, raw_config=image.raw_config())


def from_dir(
    rootfs: Path | str,
    workdir: Path | str,
    *,
    base: Image | None = None,
    fmt: str = "oci",
    compression: str = "gzip",
    platform: Platform | None = None,
    created: str | None = None,
    source_date_epoch: int | None = None,
    created_by: str = "hardway image from-dir",
    **settings: Any,
) -> StoredImage:
    """One directory as one layer on ``base`` (default: nothing), configured by ``settings``.

    The layer blob is written into ``workdir``, which must outlive the returned image.
    ``settings`` are :func:`configure`'s (``entrypoint``, ``cmd``, ``env``, …).
    ``created`` defaults to :func:`timestamp`: ``SOURCE_DATE_EPOCH``, else 1970, so
    the same directory gives the same digests.
    """
    from hardway.image.layers import write_layer

    created = created or timestamp(source_date_epoch)
    image: Image = empty_image(platform, fmt=fmt) if base is None else convert(base, fmt)
    if base is not None and platform is not None:
        config = replace(
            image.config(),
            architecture=platform.architecture,
            os=platform.os,
            variant=platform.variant,
        )
        image = with_config(image, config)
    tmp = Path(workdir) / f"layer-{os.getpid()}.tmp"
    info = write_layer(
        Path(rootfs), tmp, compression=compression, source_date_epoch=source_date_epoch
    )
    blob = tmp.with_name(info.digest.encoded)
    os.replace(tmp, blob)
    layer = file_layer(blob, info, info.media_type(fmt))
    image = append_layers(image, [layer], history=[History(created=created, created_by=created_by)])
    return configure(image, created=created, **settings)
