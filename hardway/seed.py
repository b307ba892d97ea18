"""hardway.seed
~~~~~~~~~~~~

The base image every later chapter builds on: the busybox root filesystem of chapter 02
(:func:`hardway.rootfs.build_busybox`) as one layer (:func:`hardway.mutate.from_dir`),
pushed to the course's registry as ``127.0.0.1:PORT/hardway/busybox:latest``.

Why reproducible: every file time is clamped to :data:`SOURCE_DATE_EPOCH` and the layer
is written the same way each time, so the same busybox gives the same digests — the
registry already has every blob on a second run, and nothing is uploaded twice. That is
also what lets chapter 07 *mount* this layer into another repository instead of sending
its bytes again.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hardway.digest import Digest

__all__ = ["BASE_REPOSITORY", "SOURCE_DATE_EPOCH", "SeedResult", "base_image", "seed_base_image"]

#: where the base image lives in the course's registry
BASE_REPOSITORY = "hardway/busybox"
#: the fixed time of every file and of the image's ``created`` (2023-11-14T22:13:20Z)
SOURCE_DATE_EPOCH = 1700000000


@dataclass(frozen=True)
class SeedResult:
    """What :func:`seed_base_image` did: the reference, the manifest digest, and how
    many blobs it had to upload (0 when the registry had them all)."""

    reference: str
    digest: Digest
    uploaded: int


def base_image(workdir: Path | str):
    """The busybox base image, its rootfs and layer blob kept under ``workdir``.

    :rtype: hardway.image.StoredImage
    """
    from hardway.mutate import from_dir
    from hardway.rootfs import build_busybox

    workdir = Path(workdir)
    root = build_busybox(workdir / "rootfs").path
    return from_dir(
        root,
        workdir,
        source_date_epoch=SOURCE_DATE_EPOCH,
        created_by="hardway registry seed",
        cmd=["/bin/sh"],
    )


def seed_base_image(port: int | None = None, *, tag: str = "latest") -> SeedResult:
    """Build the base image and push it to the registry on ``port`` (idempotent).

    The registry must be running (:func:`hardway.local_registry.ensure_running`) without
    auth, or in a mode this client can answer anonymously.
    """
    from hardway.registry import Registry
    from hardway.registry_config import default_port

    port = default_port() if port is None else port
    host = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="hardway-seed-") as tmp:
        image = base_image(tmp)
        with Registry(host) as registry:
            digest = registry.write_image(image, BASE_REPOSITORY, tag)
            uploaded = registry.requests["PUT upload"]
    return SeedResult(f"{host}/{BASE_REPOSITORY}:{tag}", digest, uploaded)
