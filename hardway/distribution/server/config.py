"""hardway.distribution.server.config
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

What the course's registry is told to do. A learner chooses a :class:`RegistryConfig`
(a port, and ``none``, ``htpasswd`` or ``token`` auth); :func:`config_dict` turns it into
CNCF Distribution's own configuration, with the key names of its documentation, and
:func:`render_config` writes that as ``config.yml``. Everything here is pure: it starts no
process and touches no file, so a notebook can show the config before
:mod:`hardway.distribution.server.local_registry` runs a server with it. The port defaults to
``$HARDWAY_REGISTRY_PORT`` (:func:`default_port`), so notebooks, the CLI and tests agree.

Why ``config.yml`` holds JSON: JSON is YAML (a YAML 1.2 parser reads any JSON document,
and Distribution's reads ours), so the standard library writes it, the same inputs give
the same bytes on every machine — :func:`~hardway.distribution.server.local_registry.start`
compares the rendered text with the file on disk to decide whether to restart — and
:func:`mode_of` reads it back with :func:`json.loads`.

>>> RegistryConfig(port=5000).url
'http://127.0.0.1:5000'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hardway.errors import RegistryConfigError

__all__ = [
    "AUTH_MODES",
    "DEFAULT_PORT",
    "ISSUER",
    "MODES",
    "SERVICE",
    "RegistryConfig",
    "config_dict",
    "default_port",
    "mode_of",
    "render_config",
]

DEFAULT_PORT = 5000
#: Distribution's names of its auth modes
AUTH_MODES = ("none", "htpasswd", "token")
#: what ``registry start --auth`` accepts, and the Distribution auth each one becomes
MODES = {"none": "none", "basic": "htpasswd", "token": "token"}
#: the ``aud`` a token must carry (the registry's name) and the ``iss`` that signs it:
#: the registry's config and the token service must agree on both
SERVICE = "hardway-registry"
ISSUER = "hardway-token-service"


def default_port() -> int:
    """``$HARDWAY_REGISTRY_PORT`` if set, else 5000 (Distribution's own default)."""
    raw = os.environ.get("HARDWAY_REGISTRY_PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise RegistryConfigError(
            f"HARDWAY_REGISTRY_PORT={raw!r} is not a TCP port (1–65535)",
            fix=f"export HARDWAY_REGISTRY_PORT={DEFAULT_PORT}",
        )
    return int(raw)


@dataclass(frozen=True)
class RegistryConfig:
    """What the learner chooses; :func:`config_dict` turns it into Distribution's config.

    ``realm`` keeps Distribution's own (overloaded) key name: for ``htpasswd`` it is the
    name shown in the Basic challenge, for ``token`` the URL of the token service.
    """

    port: int = field(default_factory=default_port)
    host: str = "127.0.0.1"
    auth: Literal["none", "htpasswd", "token"] = "none"
    log_level: Literal["error", "warn", "info", "debug"] = "info"
    realm: str = "hardway"
    #: htpasswd: a file of ``user:bcrypt-hash`` lines (Distribution only accepts bcrypt)
    htpasswd: Path | None = None
    #: token: the ``aud`` a token must carry, the ``iss`` that signed it, and the PEM
    #: certificates whose keys may sign tokens
    service: str = SERVICE
    issuer: str = ISSUER
    rootcertbundle: Path | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise RegistryConfigError(
                f"port {self.port} is not a TCP port (1–65535)",
                fix=f"python -m hardway registry start --port {DEFAULT_PORT}",
            )
        if self.auth not in AUTH_MODES:
            raise RegistryConfigError(f"auth={self.auth!r} is not one of {AUTH_MODES}")
        if self.auth == "htpasswd" and self.htpasswd is None:
            raise RegistryConfigError(
                "auth='htpasswd' needs the htpasswd file",
                fix="RegistryConfig(auth='htpasswd', htpasswd=Path('…/htpasswd'))",
            )
        if self.auth == "token" and (
            self.rootcertbundle is None or not self.realm.startswith(("http://", "https://"))
        ):
            raise RegistryConfigError(
                "auth='token' needs realm (the token service URL) and rootcertbundle",
                fix="RegistryConfig(auth='token', realm='http://127.0.0.1:5001/token', "
                "rootcertbundle=Path('…/token.pem'))",
            )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def mode(self) -> str:
        """The ``--auth`` name of this config's auth: ``none``, ``basic`` or ``token``.

        >>> RegistryConfig(port=5000, auth="htpasswd", htpasswd=Path("/h")).mode
        'basic'
        """
        return next(mode for mode, auth in MODES.items() if auth == self.auth)


def config_dict(config: RegistryConfig, *, rootdirectory: Path, secret: str) -> dict[str, object]:
    """The Distribution configuration (the parsed form of ``config.yml``) for ``config``.

    ``secret`` signs the upload state the registry hands out in ``Location`` URLs; a fixed
    one lets an upload survive a restart (without it the registry picks a random one).

    >>> d = config_dict(RegistryConfig(port=5001), rootdirectory=Path("/d"), secret="s")
    >>> d["http"]["addr"], d["storage"]["filesystem"], d["storage"]["delete"]
    ('127.0.0.1:5001', {'rootdirectory': '/d'}, {'enabled': True})
    """
    doc: dict[str, object] = {
        "version": "0.1",
        "log": {"level": config.log_level, "formatter": "text", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(rootdirectory)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": f"{config.host}:{config.port}",
            "secret": secret,
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    if config.auth == "htpasswd":
        doc["auth"] = {"htpasswd": {"realm": config.realm, "path": str(config.htpasswd)}}
    elif config.auth == "token":
        doc["auth"] = {
            "token": {
                "realm": config.realm,
                "service": config.service,
                "issuer": config.issuer,
                "rootcertbundle": str(config.rootcertbundle),
            }
        }
    return doc


def render_config(config: RegistryConfig, *, rootdirectory: Path, secret: str) -> str:
    """``config.yml`` text for ``config``: :func:`config_dict` as indented JSON, keys in the
    order Distribution's documentation lists them (pure: same inputs, same bytes).

    >>> text = render_config(RegistryConfig(port=5001), rootdirectory=Path("/d"), secret="s")
    >>> print(text[:32])
    {
      "version": "0.1",
      "log": {
    """
    doc = config_dict(config, rootdirectory=rootdirectory, secret=secret)
    return json.dumps(doc, indent=2) + "\n"


def mode_of(config_text: str) -> str:
    """The ``--auth`` mode a rendered ``config.yml`` runs: ``none``, ``basic`` or ``token``;
    ``unknown`` for a text that is not our JSON (a registry still running with a
    ``config.yml`` written before it was JSON: the next
    :func:`~hardway.distribution.server.local_registry.start` rewrites it).

    >>> mode_of('{"auth": {"token": {"realm": "http://127.0.0.1:1/token"}}}')
    'token'
    >>> mode_of('{"version": "0.1"}'), mode_of('version: "0.1"\\nauth:\\n  htpasswd:\\n')
    ('none', 'unknown')
    """
    try:
        auth = json.loads(config_text).get("auth") or {}
    except (ValueError, AttributeError):  # not JSON, or not a mapping
        return "unknown"
    return next((mode for mode, name in MODES.items() if name in auth), "none")
