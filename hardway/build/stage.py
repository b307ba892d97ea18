"""hardway.build.stage
~~~~~~~~~~~~~~~~~~~~

The image a Dockerfile stage is building, step by step. An :class:`ImageState` is an
image in the making — its config (with the exact bytes its ID is the hash of) and its
layers: the base image's stream from the registry, new ones from the build cache. A
:class:`StageState` is one ``FROM`` … stage while it is built: its image so far, its
build arguments, and its root filesystem, unpacked only when a step needs it.

``FROM hardway/busybox`` names an image of the course's own registry
(:func:`base_reference`); ``FROM scratch`` is the empty image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hardway.image.blobs import StoredImage
from hardway.image.config import ImageConfig, image_id
from hardway.image.digest import Digest
from hardway.image.mutate import empty_image, from_layers
from hardway.image.protocols import Image, Layer

__all__ = ["ImageState", "StageState", "base_reference", "known", "read_base"]


@dataclass
class ImageState:
    """An image in the making: its config and its layers (base layers stream from the
    registry, new ones from the cache)."""

    config: ImageConfig
    layers: list[Layer]
    raw: bytes = b""
    #: whether a ``CMD`` of this stage set ``Cmd`` (then a new ``ENTRYPOINT`` keeps it)
    cmd_set: bool = False

    def __post_init__(self) -> None:
        self.raw = self.raw or self.config.to_json()

    @property
    def id(self) -> Digest:
        """The image ID: the digest of the config bytes."""
        return image_id(self.raw)

    def image(self, fmt: str = "oci") -> StoredImage:
        """This state as an image (``fmt``: ``"oci"`` or ``"docker"`` media types)."""
        return from_layers(self.raw, self.layers, fmt=fmt)


@dataclass
class StageState:
    """A stage during the build: its state, its build arguments and its unpacked root."""

    index: int
    state: ImageState
    args: dict[str, str | None]
    root: Path
    unpacked: int = 0  # how many of state.layers are applied to root

    def rootfs(self) -> Path:
        """The stage's root filesystem, up to date (applies layers not applied yet)."""
        from hardway.image.apply import apply_layer

        self.root.mkdir(parents=True, exist_ok=True)
        for layer in self.state.layers[self.unpacked :]:
            with layer.compressed() as blob:
                apply_layer(blob, self.root)
            self.unpacked += 1
        return self.root

    def env(self) -> dict[str, str]:
        """Variables for substitution: build arguments in scope, then ``ENV`` (which wins)."""
        return {**known(self.args), **self.state.config.config.env_dict()}


def known(values: Mapping[str, str | None]) -> dict[str, str]:
    """The build arguments that have a value.

    >>> known({"A": "1", "B": None})
    {'A': '1'}
    """
    return {k: v for k, v in values.items() if v is not None}


def base_reference(name: str) -> str:
    """``hardway/busybox`` means the course's registry; a name with a host is left alone.

    >>> base_reference("quay.io/x/y"), base_reference("localhost/y")
    ('quay.io/x/y', 'localhost/y')
    """
    from hardway.distribution.server.config import default_port

    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"127.0.0.1:{default_port()}/{name}"


def read_base(name: str) -> Image:
    """The image ``FROM name`` starts from: pulled from the registry, or ``scratch``."""
    if name == "scratch":
        return empty_image()
    from hardway.distribution.registry import pull

    return pull(base_reference(name))
