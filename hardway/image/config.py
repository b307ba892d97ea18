"""hardway.image.config
~~~~~~~~~~~~~~~~~~~~~

The image config (``application/vnd.oci.image.config.v1+json``) is the document that
*is* the image, as far as running it goes: the platform it was built for, how to start a
container from it (``config``: Entrypoint, Cmd, Env, WorkingDir, User…), how it was
built (``history``) and which filesystem it unpacks to, named layer by layer by the
uncompressed digests of the layers (``rootfs.diff_ids``, bottom layer first).

Its digest is the image ID (:func:`image_id`), and that digest is over the exact bytes:
two configs that are the same JSON with other spacing are two images. Stacks of layers
have names of their own, chain IDs (:func:`chain_ids`), which is how snapshotters key
the filesystems they unpack.

>>> config = ImageConfig(architecture="amd64", os="linux")
>>> config.to_json()
b'{"architecture":"amd64","config":{},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hardway.errors import InvalidImageError
from hardway.image.digest import Digest, sha256_digest
from hardway.image.jsondoc import (
    Document,
    as_digest,
    as_string_map,
    as_strings,
    get_field,
    set_unless_empty,
)
from hardway.image.platform import Platform

__all__ = [
    "ContainerConfig",
    "History",
    "ImageConfig",
    "RootFS",
    "chain_ids",
    "image_id",
]


@dataclass(frozen=True)
class ContainerConfig:
    """The ``config`` object of an image config: how to start a container from it.

    Wire keys are Docker's (``Env``, ``Entrypoint``, ``WorkingDir``…). ``exposed_ports`` and
    ``volumes`` are sets on the wire (``{"80/tcp": {}}``). Keys this class does not model
    (``Hostname``, ``ArgsEscaped``, …) are kept in ``extra``.

    >>> config = ContainerConfig.from_dict({"Env": ["PATH=/bin"], "ExposedPorts": {"80/tcp": {}}})
    >>> config.env_dict(), config.exposed_ports, config.to_dict()["ExposedPorts"]
    ({'PATH': '/bin'}, ('80/tcp',), {'80/tcp': {}})
    """

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # sets on the wire: keep them sorted, so a round trip gives an equal object
        object.__setattr__(self, "exposed_ports", tuple(sorted(set(self.exposed_ports))))
        object.__setattr__(self, "volumes", tuple(sorted(set(self.volumes))))

    def env_dict(self) -> dict[str, str]:
        """``Env`` as a dict (``K=V`` entries; a later entry wins)."""
        return dict(e.split("=", 1) if "=" in e else (e, "") for e in self.env)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self.extra)
        set_unless_empty(doc, "User", self.user)
        set_unless_empty(doc, "ExposedPorts", {p: {} for p in self.exposed_ports})
        set_unless_empty(doc, "Env", list(self.env))
        if self.entrypoint is not None:
            doc["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            doc["Cmd"] = list(self.cmd)
        set_unless_empty(doc, "Volumes", {v: {} for v in self.volumes})
        set_unless_empty(doc, "WorkingDir", self.working_dir)
        set_unless_empty(doc, "Labels", dict(self.labels))
        set_unless_empty(doc, "StopSignal", self.stop_signal)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "config") -> ContainerConfig:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"{where}: should be a JSON object")
        known = {"User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir"}
        known |= {"Labels", "StopSignal"}
        entrypoint = get_field(doc, "Entrypoint", list, where, None)
        cmd = get_field(doc, "Cmd", list, where, None)
        return cls(
            user=get_field(doc, "User", str, where, ""),
            exposed_ports=tuple(get_field(doc, "ExposedPorts", dict, where, {})),
            env=as_strings(get_field(doc, "Env", list, where, []), f"{where}: 'Env'"),
            entrypoint=None
            if entrypoint is None
            else as_strings(entrypoint, f"{where}: 'Entrypoint'"),
            cmd=None if cmd is None else as_strings(cmd, f"{where}: 'Cmd'"),
            volumes=tuple(get_field(doc, "Volumes", dict, where, {})),
            working_dir=get_field(doc, "WorkingDir", str, where, ""),
            labels=as_string_map(get_field(doc, "Labels", dict, where, {}), f"{where}: 'Labels'"),
            stop_signal=get_field(doc, "StopSignal", str, where, ""),
            extra={k: v for k, v in doc.items() if k not in known},
        )


@dataclass(frozen=True)
class History:
    """One step of how the image was built; ``empty_layer`` steps added no layer.

    >>> History(created_by="ENV PATH=/bin", empty_layer=True).to_dict()
    {'created_by': 'ENV PATH=/bin', 'empty_layer': True}
    """

    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for key in ("created", "created_by", "author", "comment", "empty_layer"):
            set_unless_empty(doc, key, getattr(self, key))
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "history") -> History:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"{where}: should be a JSON object")
        texts = {k: get_field(doc, k, str, where, "") for k in ("created", "created_by", "author")}
        return cls(
            **texts,
            comment=get_field(doc, "comment", str, where, ""),
            empty_layer=get_field(doc, "empty_layer", bool, where, False),
        )


@dataclass(frozen=True)
class RootFS:
    """``rootfs``: the layers' diff_ids (uncompressed digests), bottom layer first.

    >>> RootFS((sha256_digest(b""),)).to_dict()["diff_ids"][0][:19]
    'sha256:e3b0c44298fc'
    """

    diff_ids: tuple[Digest, ...] = ()
    type: str = "layers"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "diff_ids": [str(d) for d in self.diff_ids]}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "rootfs") -> RootFS:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"{where}: should be a JSON object")
        diff_ids = get_field(doc, "diff_ids", list, where)
        return cls(
            diff_ids=tuple(as_digest(d, f"{where}: diff_ids[{i}]") for i, d in enumerate(diff_ids)),
            type=get_field(doc, "type", str, where),
        )


@dataclass(frozen=True)
class ImageConfig(Document):
    """The image config (``application/vnd.oci.image.config.v1+json``).

    Its digest is the image ID. Keys this class does not model (Docker's ``container``,
    ``docker_version``, …) are kept in ``extra``.

    >>> config = ImageConfig("arm64", "linux", variant="v8", extra={"container": "x"})
    >>> str(config.platform), ImageConfig.from_json(config.to_json()) == config
    ('linux/arm64/v8', True)
    """

    what: ClassVar[str] = "image config"

    architecture: str
    os: str
    rootfs: RootFS = field(default_factory=RootFS)
    config: ContainerConfig = field(default_factory=ContainerConfig)
    history: tuple[History, ...] = ()
    created: str = ""
    author: str = ""
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def platform(self) -> Platform:
        return Platform(self.architecture, self.os, self.variant, self.os_version, self.os_features)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self.extra)
        doc.update(architecture=self.architecture, os=self.os, rootfs=self.rootfs.to_dict())
        doc["config"] = self.config.to_dict()
        set_unless_empty(doc, "history", [h.to_dict() for h in self.history])
        for key, attr in (("created", "created"), ("author", "author"), ("variant", "variant")):
            set_unless_empty(doc, key, getattr(self, attr))
        set_unless_empty(doc, "os.version", self.os_version)
        set_unless_empty(doc, "os.features", list(self.os_features))
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str = "image config") -> ImageConfig:
        if not isinstance(doc, Mapping):
            raise InvalidImageError(f"the {where} should be a JSON object")
        known = {"architecture", "os", "rootfs", "config", "history", "created", "author"}
        known |= {"variant", "os.version", "os.features"}
        history = get_field(doc, "history", list, where, [])
        return cls(
            architecture=get_field(doc, "architecture", str, where),
            os=get_field(doc, "os", str, where),
            rootfs=RootFS.from_dict(get_field(doc, "rootfs", dict, where), f"{where}: rootfs"),
            config=ContainerConfig.from_dict(
                get_field(doc, "config", dict, where, {}), f"{where}: config"
            ),
            history=tuple(
                History.from_dict(h, f"{where}: history[{i}]") for i, h in enumerate(history)
            ),
            created=get_field(doc, "created", str, where, ""),
            author=get_field(doc, "author", str, where, ""),
            variant=get_field(doc, "variant", str, where, ""),
            os_version=get_field(doc, "os.version", str, where, ""),
            os_features=as_strings(
                get_field(doc, "os.features", list, where, []), f"{where}: os.features"
            ),
            extra={k: v for k, v in doc.items() if k not in known},
        )


def image_id(raw_config: bytes) -> Digest:
    """An image's ID: the digest of its config's exact bytes (what ``docker images`` shows).

    >>> str(image_id(b"{}"))[:19]
    'sha256:44136fa355b3'
    """
    return sha256_digest(raw_config)


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """ChainID(L0) = DiffID(L0); ChainID(L0…Ln) = sha256(ChainID(L0…Ln-1) + " " + DiffID(Ln)).

    A chain ID names a stack of layers, not one layer: snapshotters key unpacked
    filesystems by it.

    >>> one, two = sha256_digest(b"1"), sha256_digest(b"2")
    >>> chain_ids([one, two]) == [one, sha256_digest(f"{one} {two}".encode())]
    True
    """
    chain: list[Digest] = []
    for diff_id in diff_ids:
        chain.append(sha256_digest(f"{chain[-1]} {diff_id}".encode()) if chain else diff_id)
    return chain
