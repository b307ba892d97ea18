"""hardway.distribution.transports
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Where an image lives, written the way skopeo writes it, so that the same name works
with both tools: ``TRANSPORT:DETAILS``. :func:`read_image` and :func:`write_image` take
such a name and hand the work to the module of that place::

    oci:DIR[:TAG]                 an OCI image layout            (hardway.image.layout)
    docker-archive:FILE[:REF]     a docker save / load tarball   (hardway.image.archive)
                                  REF is name:tag, or @N for the N-th image

    docker://REF                  an image in a registry         (hardway.distribution.registry)
                                  REF is a reference: host/repo:tag, busybox, …@sha256:…

As in skopeo, the details are split at their *first* colon, so a directory name cannot
hold one. ``docker://`` was added in chapter 07 with :func:`register_transport`; its
options (credentials, ``--insecure``) come from :func:`hardway.distribution.options.using`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hardway.errors import BadImageNameError, InvalidImageError
from hardway.image import layout
from hardway.image.descriptor import Descriptor
from hardway.image.jsondoc import parse_json
from hardway.image.manifest import Index
from hardway.image.mediatypes import INDEX_TYPES
from hardway.image.platform import Platform
from hardway.image.protocols import Image

__all__ = [
    "TRANSPORTS",
    "ImageName",
    "Transport",
    "parse_image_name",
    "read_all",
    "read_image",
    "register_transport",
    "write_all",
    "write_image",
]


@dataclass(frozen=True)
class ImageName:
    """A parsed image name: ``transport``, then where (``path``) and which (``ref``)."""

    transport: str
    path: str
    ref: str | None = None

    def __str__(self) -> str:
        separator = "" if self.transport == "docker" else ":"
        tail = f"{separator}{self.ref}" if self.ref is not None else ""
        return f"{self.transport}:{self.path}{tail}"


@dataclass(frozen=True)
class Transport:
    """How to parse, read and write images of one kind of place."""

    name: str
    parse: Callable[[str], ImageName]  # receives what follows "name:"
    read: Callable[[ImageName, Platform | None], Image]
    write: Callable[[Image, ImageName], Descriptor | None]
    example: str = ""


#: every transport by name; chapter 07 adds "docker"
TRANSPORTS: dict[str, Transport] = {}


def register_transport(transport: Transport) -> None:
    """Make ``transport.name:…`` names work in :func:`read_image` and :func:`write_image`."""
    TRANSPORTS[transport.name] = transport


def parse_image_name(text: str) -> ImageName:
    """Parse ``TRANSPORT:DETAILS``; raise :class:`BadImageNameError` saying what is wrong.

    >>> parse_image_name("oci:build/layout:v1")
    ImageName(transport='oci', path='build/layout', ref='v1')
    >>> parse_image_name("docker-archive:hello.tar:hello:latest")
    ImageName(transport='docker-archive', path='hello.tar', ref='hello:latest')
    """
    name, colon, details = text.partition(":")
    if not colon or name not in TRANSPORTS:
        known = ", ".join(t.example or f"{t.name}:…" for t in TRANSPORTS.values())
        why = "has no transport" if not colon else f"names an unknown transport {name!r}"
        raise BadImageNameError(f"{text!r} {why}", fix=f"write one of: {known}")
    return TRANSPORTS[name].parse(details)


def _split(transport: str) -> Callable[[str], ImageName]:
    def parse(details: str) -> ImageName:
        path, colon, ref = details.partition(":")
        if not path:
            raise BadImageNameError(f"{transport}:{details!r} has no path before the colon")
        if colon and not ref:
            raise BadImageNameError(f"{transport}:{details} ends with ':' but names nothing")
        return ImageName(transport, path, ref or None)

    return parse


def read_image(name: str | ImageName, *, platform: Platform | None = None) -> Image:
    """The image called ``name`` (``platform`` picks one from a multi-platform image)."""
    if isinstance(name, str):
        name = parse_image_name(name)
    return TRANSPORTS[name.transport].read(name, platform)


def write_image(image: Image, name: str | ImageName) -> Descriptor | None:
    """Write ``image`` to ``name``; returns the new index entry where there is one."""
    if isinstance(name, str):
        name = parse_image_name(name)
    return TRANSPORTS[name.transport].write(image, name)


def read_all(name: str | ImageName) -> tuple[bytes, list[tuple[Descriptor, Image]]]:
    """A multi-platform image whole (``copy --all``): the index's exact bytes and every
    manifest it lists, as an image (an attestation manifest is one too: its "layers" are
    in-toto statements). Only ``oci:`` and ``docker://`` hold indexes."""
    name = parse_image_name(name) if isinstance(name, str) else name
    if name.transport == "oci":
        raw = layout.read_raw_index(Path(name.path), name.ref)
        opener = lambda d: layout.read_image_at(Path(name.path), d)  # noqa: E731
    elif name.transport == "docker":
        from hardway.distribution import registry
        from hardway.distribution.reference import parse_reference

        ref = parse_reference(name.path[2:])
        client = registry.client_for(ref)
        raw, _ = client.get_manifest(ref.repository, ref.identifier)
        opener = lambda d: client.read_image(ref.repository, str(d.digest))  # noqa: E731
    else:
        raise BadImageNameError(f"{name}: --all copies from oci: or docker://")
    if parse_json(raw, "manifest").get("mediaType") not in INDEX_TYPES.values():
        raise InvalidImageError(
            f"{name} is a single image, not a multi-platform one", fix="copy it without --all"
        )
    return raw, [(d, opener(d)) for d in Index.from_json(raw).manifests]


def write_all(raw_index: bytes, images: list[tuple[Descriptor, Image]], name: str | ImageName):
    """Write what :func:`read_all` read: every manifest, then the index, byte for byte;
    returns the index's digest (the same as the source's)."""
    name = parse_image_name(name) if isinstance(name, str) else name
    if name.transport == "oci":
        return layout.write_raw_index(
            raw_index, [i for _, i in images], Path(name.path), tag=name.ref
        ).digest
    if name.transport == "docker":
        from hardway.distribution import registry

        return registry.push_index(raw_index, images, name.path[2:])
    raise BadImageNameError(f"{name}: --all copies to oci: or docker://")


def _write_oci(image: Image, name: ImageName) -> Descriptor:
    """skopeo and umoci only read OCI manifests from a layout, so convert Docker ones."""
    from hardway.image.mutate import convert  # imported when used: start-up time

    return layout.write_image(convert(image, "oci"), Path(name.path), tag=name.ref)


def _write_archive(image: Image, name: ImageName) -> None:
    if name.ref and name.ref.startswith("@"):
        raise BadImageNameError(f"{name}: @N picks an image to read; to write, give a name:tag")
    from hardway.image import archive  # imported when used: start-up time

    archive.write_image(image, Path(name.path), tags=[name.ref] if name.ref else [])


def _read_archive(name: ImageName, platform: Platform | None) -> Image:
    from hardway.image import archive  # imported when used: start-up time

    return archive.read_image(Path(name.path), name.ref)


register_transport(
    Transport(
        "oci",
        _split("oci"),
        lambda n, p: layout.read_image(Path(n.path), n.ref, platform=p),
        _write_oci,
        "oci:DIR[:TAG]",
    )
)
register_transport(
    Transport(
        "docker-archive",
        _split("docker-archive"),
        _read_archive,
        _write_archive,
        "docker-archive:FILE[:REF]",
    )
)


def _parse_docker(details: str) -> ImageName:
    from hardway.distribution.reference import parse_reference

    if not details.startswith("//"):
        raise BadImageNameError(
            f"docker:{details} should be docker://REF", fix="docker://HOST/REPO:TAG"
        )
    return ImageName("docker", "//" + str(parse_reference(details[2:])))


def _read_docker(name: ImageName, platform: Platform | None) -> Image:
    from hardway.distribution import registry

    changes = {"platform": platform} if platform is not None else {}
    return registry.pull(name.path[2:], **changes)


def _write_docker(image: Image, name: ImageName) -> Descriptor:
    from hardway.distribution import registry

    digest = registry.push(image, name.path[2:])
    return Descriptor(image.manifest().media_type, digest, len(image.raw_manifest()))


register_transport(
    Transport("docker", _parse_docker, _read_docker, _write_docker, "docker://HOST/REPO[:TAG]")
)
