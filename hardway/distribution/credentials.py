"""hardway.distribution.credentials
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Who you are to a registry, and where that is written down. A :class:`Credentials` is a
user and a password, or an identity (refresh) token, or a ready registry token; the
auth hook (:mod:`hardway.distribution.auth`) sends them when a registry challenges.

Where credentials come from, in Docker's order (:func:`load_credentials`): a
``credHelpers`` entry for the host, else ``auths`` (``auth`` = base64 ``user:pass``,
``identitytoken``, ``registrytoken``), else the ``credsStore`` helper. The files are
Docker's and Podman's (:func:`config_paths`).

A credential helper is any program called ``docker-credential-NAME`` on ``PATH``, spoken
to with one verb as its argument and one message on stdin, its answer on stdout::

    get     stdin: HOST                      stdout: {"ServerURL", "Username", "Secret"}
    store   stdin: {"ServerURL", "Username", "Secret"}
    erase   stdin: HOST

``login`` (:func:`store_credentials`) writes where Docker would: through the host's
helper if the file names one, else into ``auths`` of the file :func:`login_path` names;
``logout`` (:func:`erase_credentials`) takes them out again. The file is replaced
atomically and is readable by its owner only (mode 0600): ``auth`` is merely base64.

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
from hardway.sys.atomic import write_atomic

__all__ = [
    "Credentials",
    "config_paths",
    "erase_credentials",
    "load_credentials",
    "login_path",
    "store_credentials",
]

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


def _run_helper(name: str, verb: str, message: bytes, secret: str = "") -> bytes:
    """``docker-credential-NAME VERB`` with ``message`` on stdin; its stdout.

    A helper's error text is its stdout: its first 200 characters are shown, with the
    ``secret`` we sent it blanked out, should a careless helper echo its input.
    """
    program = f"docker-credential-{name}"
    try:
        done = subprocess.run(
            [program, verb], input=message, capture_output=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise HardwayError(
            f"the credential helper {program} is not installed (or not on PATH)",
            fix=f"install {program}, or remove it from the config file",
        ) from None
    if done.returncode != 0:
        out = done.stdout.decode(errors="replace").strip()
        shown = out.replace(secret, "***") if secret else out
        raise _HelperError(f"{program} {verb} failed: {shown[:200]}", missing=_not_found(out))
    return done.stdout


class _HelperError(HardwayError):
    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


def _not_found(out: str) -> bool:
    return "credentials not found" in out.lower()


def _helper(name: str, server: str) -> Credentials:
    """Ask ``docker-credential-NAME get`` (server URL on stdin, JSON on stdout)."""
    try:
        doc = json.loads(_run_helper(name, "get", server.encode()))
    except _HelperError as exc:
        if exc.missing:
            return Credentials()
        raise
    except ValueError:
        raise HardwayError(f"docker-credential-{name} get did not answer JSON") from None
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


# --- login and logout -----------------------------------------------------------------


def login_path(authfile: Path | str | None = None) -> Path:
    """The file ``login`` writes: ``authfile``, else ``$REGISTRY_AUTH_FILE`` (skopeo's and
    podman's variable), else ``$DOCKER_CONFIG/config.json``, else
    ``~/.docker/config.json`` (Docker's) — all of which :func:`load_credentials` reads.
    """
    if authfile:
        return Path(authfile)
    if auth_file := os.environ.get("REGISTRY_AUTH_FILE"):
        return Path(auth_file)
    if docker_config := os.environ.get("DOCKER_CONFIG"):
        return Path(docker_config) / "config.json"
    return Path.home() / ".docker" / "config.json"


def _key(registry: str) -> str:
    """The key a registry's credentials are stored under (Docker Hub's is a URL)."""
    return _keys(registry)[0]


def _read_config(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise HardwayError(
            f"{path} is not valid JSON ({exc})", fix=f"fix or remove {path}"
        ) from None
    if not isinstance(doc, dict):
        raise HardwayError(f"{path} should hold a JSON object", fix=f"fix or remove {path}")
    return doc


def _write_config(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(doc, indent="\t") + "\n").encode(), mode=0o600)


def _helper_for(doc: dict[str, Any], registry: str) -> str | None:
    helpers = doc.get("credHelpers") or {}
    found = next((helpers[k] for k in _keys(registry) if k in helpers), None)
    return found or doc.get("credsStore") or None


def store_credentials(
    registry: str, credentials: Credentials, *, authfile: Path | str | None = None
) -> str:
    """Remember ``credentials`` for ``registry`` as ``docker login`` does; say where.

    Through the host's credential helper (``credHelpers``, else ``credsStore``) when the
    file names one — the file then keeps an empty ``auths`` entry, as Docker's does —
    else base64 ``user:password`` in ``auths``.
    """
    path = login_path(authfile)
    doc = _read_config(path)
    key = _key(registry)
    auths = doc.setdefault("auths", {})
    for other in _keys(registry):
        auths.pop(other, None)
    if helper := _helper_for(doc, registry):
        user = "<token>" if credentials.identity_token else credentials.username
        secret = credentials.identity_token or credentials.password
        message = {"ServerURL": key, "Username": user, "Secret": secret}
        _run_helper(helper, "store", json.dumps(message).encode(), secret)
        auths[key] = {}
        where = f"the credential helper docker-credential-{helper}"
    elif credentials.identity_token:
        auths[key] = {"identitytoken": credentials.identity_token}
        where = str(path)
    else:
        auths[key] = {
            "auth": base64.b64encode(
                f"{credentials.username}:{credentials.password}".encode()
            ).decode()
        }
        where = str(path)
    _write_config(path, doc)
    return where


def erase_credentials(registry: str, *, authfile: Path | str | None = None) -> bool:
    """Forget ``registry``'s credentials (``docker logout``); ``False`` if there were none."""
    path = login_path(authfile)
    doc = _read_config(path)
    auths = doc.get("auths") or {}
    found = [k for k in _keys(registry) if k in auths]
    erased = False
    if helper := _helper_for(doc, registry):
        try:
            _run_helper(helper, "erase", _key(registry).encode())
            erased = True
        except _HelperError as exc:
            if not exc.missing:
                raise
    for key in found:
        del auths[key]
    if found:
        _write_config(path, doc)
    return erased or bool(found)
