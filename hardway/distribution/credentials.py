"""hardway.distribution.credentials
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Who you are to a registry, and where that is written down. A :class:`Credentials` is a
user and a password, or an identity (refresh) token, or a ready registry token; the
auth hook (:mod:`hardway.distribution.auth`) sends them when a registry challenges.

Where credentials come from, in Docker's order (:func:`load_credentials`): a
``credHelpers`` entry for the host, else ``auths`` (``auth`` = base64 ``user:pass``,
``identitytoken``, ``registrytoken``), else the ``credsStore`` helper; a helper is the
program ``docker-credential-NAME``, asked with ``echo HOST | … get``. The files are
Docker's and Podman's (:func:`config_paths`).

Secrets never reach a repr, a log line or an error message:

>>> Credentials("me", "s3cret")
Credentials(username='me', password='***')
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardway.errors import HardwayError

__all__ = ["Credentials", "config_paths", "load_credentials"]

#: the key Docker Hub's credentials are stored under
DOCKER_HUB_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    """A user and password, or an identity (refresh) token, or a ready registry token."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    def __repr__(self) -> str:
        shown = [f"username={self.username!r}"]
        shown += [
            f"{name}='***'"
            for name in ("password", "identity_token", "registry_token")
            if getattr(self, name)
        ]
        return f"Credentials({', '.join(shown)})"

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """``user:password`` as ``--creds`` takes it."""
        user, colon, password = text.partition(":")
        if not colon or not user:
            raise HardwayError("--creds takes USER:PASSWORD", fix="--creds learner:containers")
        return cls(user, password)

    def basic(self) -> str:
        """The ``Authorization`` value for Basic auth."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token or self.registry_token)


def config_paths() -> list[Path]:
    """Where Docker and Podman keep credentials, in the order they are tried."""
    paths = []
    if auth_file := os.environ.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(auth_file))
    if docker_config := os.environ.get("DOCKER_CONFIG"):
        paths.append(Path(docker_config) / "config.json")
    paths.append(Path.home() / ".docker" / "config.json")
    if runtime := os.environ.get("XDG_RUNTIME_DIR"):
        paths.append(Path(runtime) / "containers" / "auth.json")
    return paths


def _keys(registry: str) -> list[str]:
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return [DOCKER_HUB_KEY, "docker.io", "index.docker.io", "registry-1.docker.io"]
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"]


def _helper(name: str, server: str) -> Credentials:
    """Ask ``docker-credential-NAME get`` (server URL on stdin, JSON on stdout)."""
    program = f"docker-credential-{name}"
    try:
        done = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise HardwayError(
            f"the credential helper {program} is not installed", fix=f"install {program}"
        ) from None
    if done.returncode != 0:
        out = done.stdout.decode(errors="replace").strip()
        if "credentials not found" in out.lower():
            return Credentials()
        raise HardwayError(f"{program} get failed: {out[:200]}")
    doc = json.loads(done.stdout)
    if doc.get("Username") == "<token>":
        return Credentials(identity_token=doc.get("Secret", ""))
    return Credentials(doc.get("Username", ""), doc.get("Secret", ""))


def load_credentials(registry: str, *, authfile: Path | str | None = None) -> Credentials:
    """Credentials for ``registry`` from a docker ``config.json`` (empty if there are none).

    :param registry: the registry as a reference names it (``docker.io``, ``127.0.0.1:5000``)
    :param authfile: (optional) that file only, instead of :func:`config_paths`
    """
    paths = [Path(authfile)] if authfile else config_paths()
    for path in paths:
        if not path.is_file():
            continue
        doc: dict[str, Any] = json.loads(path.read_text() or "{}")
        keys = _keys(registry)
        for key in keys:
            if helper := doc.get("credHelpers", {}).get(key):
                return _helper(helper, key)
        for key in keys:
            entry = doc.get("auths", {}).get(key)
            if entry:
                return _from_entry(entry)
        if store := doc.get("credsStore"):
            return _helper(store, keys[0])
    return Credentials()


def _from_entry(entry: dict[str, str]) -> Credentials:
    user, password = entry.get("username", ""), entry.get("password", "")
    if entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return Credentials(
        user,
        password,
        identity_token=entry.get("identitytoken", ""),
        registry_token=entry.get("registrytoken", ""),
    )
