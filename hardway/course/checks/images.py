"""hardway.course.checks.images
~~~~~~~~~~~~~~~~~~~~~~~~~~~~

What the checks of labs 08, 09 and 11 build to test a learner's pull, cache and push
against the *real* registry: small gzip layers made from a dict of paths (whiteouts and
opaque markers included), images and indexes pushed under a fresh repository with the
course's own client, the registry's requests read back from its log (Distribution logs
one ``response completed`` line per request), a tree read back as plain data to compare
with, and skopeo + umoci as the independent second opinion on what a pull should give.

Nothing here runs the learner's code; the checks do that, in
:func:`~hardway.course.checks.child.in_child`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hardway.course.grading import NotGraded
from hardway.distribution.registry import Registry
from hardway.distribution.server.local_registry import RegistryStatus
from hardway.image.digest import sha256_digest
from hardway.image.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)

__all__ = [
    "Pushed",
    "Request",
    "blob_file",
    "layer",
    "log_offset",
    "push_image",
    "requests_since",
    "tool_unpack",
    "tree",
]

#: a directory entry in a layer spec (every other value is a file's content)
DIR = None


def layer(files: dict[str, bytes | None]) -> tuple[bytes, str]:
    """``(gzip blob, diff_id)`` of a layer holding ``files`` (path → bytes, or DIR).

    Parents are not added: name them, as a real layer does. The gzip header carries no
    name and mtime 0, so the same files give the same blob on every run.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid = 0, 0, 0
            if content is DIR:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    data = raw.getvalue()
    return gzip.compress(data, mtime=0), str(sha256_digest(data))


@dataclass(frozen=True)
class Pushed:
    """One image the check pushed: where, and the digests to look for."""

    repository: str
    tag: str
    manifests: dict[str, str]  # platform → manifest digest
    layers: dict[str, list[str]]  # platform → layer digests, bottom first
    configs: dict[str, dict]  # platform → the image config


def push_image(
    url: str,
    repository: str,
    tag: str,
    platforms: dict[str, list[tuple[bytes, str]]],
    *,
    docker: bool = False,
    extra_entry: bool = True,
) -> Pushed:
    """Push one image per platform ("linux/arm64": [layer(...), …]) and an index (OCI or
    Docker manifest list) over them, in the order given, tagged ``tag``. With
    ``extra_entry`` an OCI index also lists an attestation-like manifest with the
    platform ``unknown/unknown``, as BuildKit writes."""
    kinds = (
        (DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP)
        if docker
        else (OCI_INDEX, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP)
    )
    entries, manifests, layer_digests, configs = [], {}, {}, {}
    with Registry(url.removeprefix("http://")) as registry:
        for platform, layers in platforms.items():
            os_name, arch, *variant = platform.split("/")
            config = {
                "architecture": arch,
                "os": os_name,
                "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": {"lab": tag}},
                "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
            }
            if variant:
                config["variant"] = variant[0]
            raw_config = json.dumps(config).encode()
            descriptors = []
            for blob in [raw_config, *(b for b, _ in layers)]:
                digest = sha256_digest(blob)
                registry.push_blob(repository, lambda b=blob: io.BytesIO(b), digest, len(blob))
                descriptors.append(
                    {"mediaType": kinds[3], "digest": str(digest), "size": len(blob)}
                )
            descriptors[0]["mediaType"] = kinds[2]
            manifest = {"schemaVersion": 2, "mediaType": kinds[1], "config": descriptors[0],
                        "layers": descriptors[1:]}  # fmt: skip
            raw = json.dumps(manifest, indent=3).encode()
            digest = registry.put_manifest(repository, str(sha256_digest(raw)), raw, kinds[1])
            plat = {"architecture": arch, "os": os_name}
            if variant:
                plat["variant"] = variant[0]
            entries.append({"mediaType": kinds[1], "digest": str(digest), "size": len(raw),
                            "platform": plat})  # fmt: skip
            manifests[platform] = str(digest)
            layer_digests[platform] = [d["digest"] for d in descriptors[1:]]
            configs[platform] = config
        if extra_entry and not docker:
            other = dict(entries[0], platform={"architecture": "unknown", "os": "unknown"})
            entries.insert(1, other)
        index = json.dumps({"schemaVersion": 2, "mediaType": kinds[0], "manifests": entries})
        registry.put_manifest(repository, tag, index.encode(), kinds[0])
    return Pushed(repository, tag, manifests, layer_digests, configs)


def blob_file(running: RegistryStatus, digest: str) -> Path:
    """Where the registry keeps a blob's bytes: a check that makes the registry lie
    rewrites this file (Distribution does not hash what it serves)."""
    hexa = digest.removeprefix("sha256:")
    return running.state / "data/docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"


@dataclass(frozen=True)
class Request:
    """One request the registry answered, from its log."""

    method: str
    uri: str
    status: int
    written: int


_FIELD = re.compile(
    r'(http\.(?:request\.method|request\.uri|response\.status|response\.written))=("[^"]*"|\S+)'
)


def log_offset(running: RegistryStatus) -> int:
    """Where the registry's log ends now: :func:`requests_since` reads from there."""
    try:
        return (running.state / "registry.log").stat().st_size
    except FileNotFoundError as exc:
        raise NotGraded(
            "the course's registry keeps no log here, so its requests cannot be counted"
        ) from exc


def requests_since(running: RegistryStatus, offset: int, repository: str) -> list[Request]:
    """The requests for ``repository`` the registry logged after ``offset``, in order."""
    with (running.state / "registry.log").open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    found = []
    for line in text.splitlines():
        if "response completed" not in line:
            continue
        fields = {k: v.strip('"') for k, v in _FIELD.findall(line)}
        uri = fields.get("http.request.uri", "")
        if f"/v2/{repository}/" not in uri:
            continue
        found.append(
            Request(
                fields.get("http.request.method", ""),
                uri,
                int(fields.get("http.response.status", 0)),
                int(fields.get("http.response.written", 0)),
            )
        )
    return found


def tree(root: Path) -> dict[str, tuple]:
    """Every entry below ``root`` as ``path → (kind, content or link target, mode)``."""
    found: dict[str, tuple] = {}
    for current, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(current) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path), 0)
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", b"", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                found[rel] = ("file", path.read_bytes(), stat.S_IMODE(st.st_mode))
            else:
                found[rel] = ("other", b"", stat.S_IFMT(st.st_mode))
    return found


def tool_unpack(url: str, repository: str, tag: str, platform: str, work: Path) -> Path:
    """What skopeo and umoci make of the image: ``skopeo copy`` into an OCI layout, then
    ``umoci unpack``; returns the root filesystem."""
    os_name, arch, *variant = platform.split("/")
    for tool in ("skopeo", "umoci"):
        if shutil.which(tool) is None:
            raise NotGraded(f"{tool} is not installed here", fix="make setup")
    host = url.removeprefix("http://")
    work.mkdir(parents=True, exist_ok=True)
    copy = ["skopeo", "--override-os", os_name, "--override-arch", arch]
    copy += ["--override-variant", variant[0]] if variant else []
    copy += ["copy", "--src-tls-verify=false", f"docker://{host}/{repository}:{tag}",
             f"oci:{work / 'layout'}:{tag}"]  # fmt: skip
    unpack = ["umoci", "unpack", "--image", f"{work / 'layout'}:{tag}", str(work / "bundle")]
    if os.geteuid() != 0:
        unpack.insert(2, "--rootless")
    for argv in (copy, unpack):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed on the check's own image: {done.stderr[-400:]}")
    return work / "bundle" / "rootfs"
