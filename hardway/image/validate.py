"""hardway.image.validate
~~~~~~~~~~~~~~~~~~~~~~

Is this image well formed, and are its bytes the ones its names promise? A parser stops
at the first problem; a validator should not, because a learner fixing an image wants
the whole list at once. So every function here *collects* problems as plain sentences,
and :func:`validate_image` raises one :class:`~hardway.errors.InvalidImageError` whose
``problems`` holds them all, like go-containerregistry's ``validate.Image``.

The document checks work on parsed JSON (dicts), not on the dataclasses of
:mod:`hardway.image.config` and :mod:`hardway.image.manifest`: a document too broken to
become a dataclass still gets a full report. What is checked:

* every descriptor: ``mediaType``, a digest that follows the grammar, a size ≥ 0;
* manifests and indexes: ``schemaVersion`` 2, a ``mediaType`` of their kind if there is
  one (it is a SHOULD: umoci 0.4.7 leaves it out), known layer types of the right
  format (Docker has no zstd layer);
* configs: ``os``/``architecture``, ``rootfs.type == "layers"``, ``Env`` entries ``K=V``,
  ``ExposedPorts`` keys ``port[/tcp|udp|sctp]``, one non-empty history entry per layer;
* the image: the config blob matches its descriptor, there is one diff_id per layer,
  every layer blob matches its digest and size, and its uncompressed tar its diff_id.

>>> config_problems({"architecture": "amd64", "os": "linux",
...                  "config": {"Env": ["PATH=/bin", "oops"]},
...                  "rootfs": {"type": "layers", "diff_ids": []}})
["config.Env[1] 'oops' is not KEY=VALUE"]
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from hardway.errors import DigestMismatchError, HardwayError, InvalidImageError
from hardway.image.digest import digest_problem
from hardway.image.jsondoc import parse_json
from hardway.image.mediatypes import (
    CONFIG_TYPES,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    format_of,
    layer_compression,
)
from hardway.image.protocols import Image

__all__ = [
    "config_problems",
    "descriptor_problems",
    "image_problems",
    "index_problems",
    "manifest_problems",
    "validate_image",
]

_ENV = re.compile(r"[^=]+=.*", re.S)
_PORT = re.compile(r"\d{1,5}(/(tcp|udp|sctp))?")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
_CHUNK = 1 << 20


def descriptor_problems(doc: Any, where: str) -> list[str]:
    """What is wrong with one descriptor (``where`` names it in the messages)."""
    if not isinstance(doc, Mapping):
        return [f"{where} is not a JSON object"]
    problems = []
    if not isinstance(doc.get("mediaType"), str) or not doc["mediaType"]:
        problems.append(f"{where}.mediaType is missing")
    if "digest" not in doc:
        problems.append(f"{where}.digest is missing")
    elif problem := digest_problem(doc["digest"]):
        problems.append(f"{where}.digest: {problem}")
    size = doc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        problems.append(f"{where}.size should be an integer ≥ 0, not {size!r}")
    return problems


def _schema(doc: Mapping[str, Any], kinds: Mapping[str, str], what: str) -> list[str]:
    problems = []
    if doc.get("schemaVersion") != 2:
        problems.append(f"{what}.schemaVersion should be 2, not {doc.get('schemaVersion')!r}")
    media_type = doc.get("mediaType")
    # a missing mediaType is allowed (the spec says SHOULD; umoci 0.4.7 omits it) and
    # means OCI; a wrong one is a problem, because readers dispatch on it
    if media_type is not None and media_type not in kinds.values():
        problems.append(f"{what}.mediaType {media_type!r} is not a {what} type")
    return problems


def manifest_problems(doc: Any) -> list[str]:
    """What is wrong with an image manifest (OCI or Docker V2.2), as parsed JSON."""
    if not isinstance(doc, Mapping):
        return ["the manifest is not a JSON object"]
    problems = _schema(doc, MANIFEST_TYPES, "manifest")
    fmt = "docker" if doc.get("mediaType") == DOCKER_MANIFEST else "oci"
    config = doc.get("config")
    problems += descriptor_problems(config, "manifest.config")
    if isinstance(config, Mapping) and isinstance(config.get("mediaType"), str):
        want = CONFIG_TYPES[fmt]
        if config["mediaType"] != want and not (fmt == "oci" and doc.get("artifactType")):
            problems.append(
                f"manifest.config.mediaType is {config['mediaType']!r}; "
                f"a {fmt} image's config is {want!r}"
            )
    layers = doc.get("layers")
    if not isinstance(layers, list):
        return [*problems, "manifest.layers should be a JSON array"]
    for i, layer in enumerate(layers):
        where = f"manifest.layers[{i}]"
        problems += descriptor_problems(layer, where)
        media_type = layer.get("mediaType") if isinstance(layer, Mapping) else None
        if not isinstance(media_type, str) or doc.get("artifactType"):
            continue
        if layer_compression(media_type) is None:
            problems.append(f"{where}.mediaType {media_type!r} is not a layer type")
        elif fmt == "docker" and format_of(media_type) != "docker":
            problems.append(f"{where}.mediaType {media_type!r} is not a Docker layer type")
    return problems


def index_problems(doc: Any) -> list[str]:
    """What is wrong with an image index or a Docker manifest list, as parsed JSON."""
    if not isinstance(doc, Mapping):
        return ["the index is not a JSON object"]
    problems = _schema(doc, INDEX_TYPES, "index")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        return [*problems, "index.manifests should be a JSON array"]
    allowed = set(MANIFEST_TYPES.values()) | {OCI_INDEX}
    for i, entry in enumerate(manifests):
        where = f"index.manifests[{i}]"
        problems += descriptor_problems(entry, where)
        if not isinstance(entry, Mapping):
            continue
        media_type = entry.get("mediaType")
        is_list = doc.get("mediaType") == DOCKER_MANIFEST_LIST
        if is_list and isinstance(media_type, str) and media_type not in allowed:
            problems.append(f"{where}.mediaType {media_type!r} is not a manifest type")
        platform = entry.get("platform")
        if platform is None and doc.get("mediaType") == DOCKER_MANIFEST_LIST:
            problems.append(f"{where}.platform is missing (a manifest list needs one)")
        elif platform is not None:
            for key in ("architecture", "os"):
                if not isinstance(platform, Mapping) or not isinstance(platform.get(key), str):
                    problems.append(f"{where}.platform.{key} is missing")
    return problems


def config_problems(doc: Any) -> list[str]:
    """What is wrong with an image config, as parsed JSON."""
    if not isinstance(doc, Mapping):
        return ["the config is not a JSON object"]
    problems = []
    for key in ("architecture", "os"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            problems.append(f"config.{key} is missing")
    created = doc.get("created")
    if created is not None and not (isinstance(created, str) and _RFC3339.fullmatch(created)):
        problems.append(f"config.created {created!r} is not an RFC 3339 time")
    problems += _rootfs_problems(doc.get("rootfs"))
    run = doc.get("config", {})
    if run is None:
        run = {}
    if not isinstance(run, Mapping):
        return [*problems, "config.config is not a JSON object"]
    for i, entry in enumerate(_list(run, "Env", problems)):
        if not isinstance(entry, str) or not _ENV.fullmatch(entry):
            problems.append(f"config.Env[{i}] {entry!r} is not KEY=VALUE")
    for key in ("Entrypoint", "Cmd"):
        if not all(isinstance(arg, str) for arg in _list(run, key, problems)):
            problems.append(f"config.{key} should be an array of strings")
    for key, check in (("ExposedPorts", _PORT), ("Volumes", None)):
        value = run.get(key) or {}
        if not isinstance(value, Mapping):
            problems.append(f"config.{key} should be an object ({{'…': {{}}}})")
        elif check is not None:
            problems += [
                f"config.{key} {port!r} is not port[/tcp|/udp|/sctp]"
                for port in value
                if not check.fullmatch(port)
            ]
    problems += _history_problems(doc)
    return problems


def _list(doc: Mapping[str, Any], key: str, problems: list[str]) -> list:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"config.{key} should be an array")
        return []
    return value


def _rootfs_problems(rootfs: Any) -> list[str]:
    if not isinstance(rootfs, Mapping):
        return ["config.rootfs is missing"]
    problems = []
    if rootfs.get("type") != "layers":
        problems.append(f"config.rootfs.type should be 'layers', not {rootfs.get('type')!r}")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        return [*problems, "config.rootfs.diff_ids should be an array"]
    for i, diff_id in enumerate(diff_ids):
        if problem := digest_problem(diff_id):
            problems.append(f"config.rootfs.diff_ids[{i}]: {problem}")
    return problems


def _history_problems(doc: Mapping[str, Any]) -> list[str]:
    history = doc.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, Mapping) for h in history):
        return ["config.history should be an array of objects"]
    diff_ids = (doc.get("rootfs") or {}).get("diff_ids")
    if not history or not isinstance(diff_ids, list):
        return []
    layered = sum(1 for h in history if not h.get("empty_layer"))
    if layered != len(diff_ids):
        return [
            f"config.history has {layered} entries that add a layer, "
            f"but rootfs.diff_ids lists {len(diff_ids)}"
        ]
    return []


def image_problems(image: Image, *, layers: bool = True) -> list[str]:
    """Every problem of ``image``: documents, config blob and (with ``layers``) layer blobs."""
    raw = image.raw_manifest()
    try:
        manifest_doc = parse_json(raw, "manifest")
    except InvalidImageError as exc:
        return [str(exc)]
    problems = manifest_problems(manifest_doc)
    raw_config = image.raw_config()
    config_desc = manifest_doc.get("config") or {}
    config_digest = "sha256:" + hashlib.sha256(raw_config).hexdigest()
    if isinstance(config_desc, Mapping) and config_desc.get("digest") != config_digest:
        problems.append(
            f"the config blob's digest is {config_digest}, "
            f"but manifest.config.digest is {config_desc.get('digest')}"
        )
    if isinstance(config_desc, Mapping) and config_desc.get("size") != len(raw_config):
        problems.append(
            f"the config blob is {len(raw_config)} bytes, but manifest.config.size "
            f"says {config_desc.get('size')!r}"
        )
    try:
        config_doc = parse_json(raw_config, "config")
    except InvalidImageError as exc:
        return [*problems, str(exc)]
    problems += config_problems(config_doc)
    descriptors = manifest_doc.get("layers")
    diff_ids = (config_doc.get("rootfs") or {}).get("diff_ids")
    if isinstance(descriptors, list) and isinstance(diff_ids, list):
        if len(descriptors) != len(diff_ids):
            problems.append(
                f"the manifest lists {len(descriptors)} layer(s) but config.rootfs.diff_ids "
                f"{len(diff_ids)}: there is one diff_id per layer"
            )
        elif layers and not problems:
            problems += _layer_problems(image)
    return problems


def _layer_problems(image: Image) -> list[str]:
    problems = []
    for i, layer in enumerate(image.layers()):
        hasher = hashlib.new(layer.diff_id.algorithm)
        try:
            with layer.uncompressed() as tar:
                while block := tar.read(_CHUNK):
                    hasher.update(block)
        except DigestMismatchError as exc:
            problems.append(f"layer {i}: {exc.message}")
            continue
        except (HardwayError, OSError, EOFError, ValueError) as exc:
            problems.append(f"layer {i}: cannot decompress {layer.digest}: {exc}")
            continue
        got = f"{layer.diff_id.algorithm}:{hasher.hexdigest()}"
        if got != str(layer.diff_id):
            problems.append(
                f"layer {i}: its uncompressed tar hashes to {got}, "
                f"but config.rootfs.diff_ids[{i}] is {layer.diff_id}"
            )
    return problems


def validate_image(image: Image, *, layers: bool = True) -> None:
    """Raise :class:`InvalidImageError` listing every problem of ``image``; else return.

    ``layers=False`` skips reading the layer blobs (the slow part).
    """
    problems = image_problems(image, layers=layers)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise InvalidImageError(
            f"the image has {len(problems)} problem(s):\n{listed}", problems=tuple(problems)
        )
