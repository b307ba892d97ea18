"""hardway.distribution.server.paths
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Where the course's registry on one port keeps its files: one directory per port under
the project-local state directory (:func:`hardway.sys.state.state_dir`), so that two
registries never share a file and ``make clean`` removes them all::

    .state/registry/http.secret               signs upload URLs; shared by every port
    .state/registry/<port>/config.yml         the rendered Distribution config (JSON)
    .state/registry/<port>/data/              blobs and manifests, as the registry lays them out
    .state/registry/<port>/registry.pid
    .state/registry/<port>/registry.log
    .state/registry/<port>/.lock              held while a process starts or stops it
    .state/registry/<port>/owner              who started it (:mod:`~.services`)
    .state/registry/<port>/htpasswd           basic and token modes: the users (bcrypt)
    .state/registry/<port>/token.pem          token mode: the certificate the registry trusts
    .state/registry/<port>/tokenserver.realm  the token service's URL, written once it listens
    .state/registry/<port>/tokenserver.pid
    .state/registry/<port>/tokenserver.log

Notebooks, the CLI and tests start and stop the same registry from different processes,
so :meth:`RegistryPaths.locked` lets one of them at a time change what runs on a port.

>>> RegistryPaths(Path("/s/registry/5000")).token_pid
PosixPath('/s/registry/5000/tokenserver.pid')
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hardway.sys.atomic import temporary_file
from hardway.sys.state import state_dir

__all__ = ["RegistryPaths", "http_secret"]


@dataclass(frozen=True)
class RegistryPaths:
    """The files of the registry on one port, under ``state_dir()/registry/<port>``."""

    root: Path

    @classmethod
    def for_port(cls, port: int) -> RegistryPaths:
        return cls(state_dir().resolve() / "registry" / str(port))

    @property
    def config(self) -> Path:
        """The rendered Distribution config (JSON)."""
        return self.root / "config.yml"

    @property
    def data(self) -> Path:
        """The registry's storage."""
        return self.root / "data"

    @property
    def pid(self) -> Path:
        return self.root / "registry.pid"

    @property
    def log(self) -> Path:
        return self.root / "registry.log"

    @property
    def lock(self) -> Path:
        """Held (``flock``) while a process starts or stops this registry."""
        return self.root / ".lock"

    @property
    def htpasswd(self) -> Path:
        """The users of basic and token mode."""
        return self.root / "htpasswd"

    @property
    def token_cert(self) -> Path:
        """The certificate whose key signs tokens."""
        return self.root / "token.pem"

    @property
    def token_realm(self) -> Path:
        """The token service's URL, written once it listens."""
        return self.root / "tokenserver.realm"

    @property
    def token_pid(self) -> Path:
        return self.root / "tokenserver.pid"

    @property
    def token_log(self) -> Path:
        return self.root / "tokenserver.log"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One start or stop at a time on this port, across processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.lock, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def http_secret() -> str:
    """The registry's ``http.secret``: made once, then kept in the state directory (the
    first process to make it wins a race; the others read the winner's)."""
    path = state_dir().resolve() / "registry" / "http.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary_file(path.parent) as (tmp, out):  # mode 0600
            out.write(f"{secrets.token_hex(32)}\n".encode())
            out.flush()
            with contextlib.suppress(FileExistsError):  # another process won the race
                os.link(tmp, path)
    return path.read_text().strip()
