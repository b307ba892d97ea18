"""hardway.distribution.server.modes
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

What each of the registry's three auth modes needs besides the registry, as
``registry start --auth none|basic|token`` starts it
(:func:`hardway.distribution.server.local_registry.start_mode`). ``none`` needs nothing:
Distribution with no ``auth`` section. ``basic`` is its ``htpasswd`` mode, which needs
the file of users (the course's: ``learner``/``containers``). ``token`` is its
``auth: token`` mode: the registry checks JWTs signed by the course's token service
(:mod:`hardway.distribution.server.tokenserver`), which checks the same users and runs
as a *detached* process of its own, so that it outlives the shell or notebook that
started it, just as the registry does. A :class:`Mode` is one of them as the course
sets it up — with its users, and the token service's rules and key — and writes and
starts what it needs (:meth:`Mode.prepare`).

Why a separate process with a pid file rather than a thread: ``registry start`` returns
at once, and ``registry stop`` (maybe from another terminal) must be able to find and end
the token service. Its files sit next to the registry's
(:class:`~hardway.distribution.server.paths.RegistryPaths`): ``htpasswd``, ``token.pem``
and ``tokenserver.realm|pid|log``.

>>> Mode("token")  # the users' passwords are never shown
Mode(name='token', acl=None, signing_key=None)
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hardway.distribution.server import process
from hardway.distribution.server.config import MODES, RegistryConfig
from hardway.distribution.server.paths import RegistryPaths
from hardway.distribution.server.services import TOKEN_SERVICE_MODULES
from hardway.distribution.server.tokenserver import (
    DEFAULT_USERS,
    Rule,
    check_htpasswd,
    write_htpasswd,
)
from hardway.errors import RegistryConfigError, RegistryServerError
from hardway.sys.proc import argv_of, runs_module

__all__ = ["Mode", "stop_token_service", "token_service_pid"]


@dataclass(frozen=True)
class Mode:
    """An auth mode as the course sets it up beside the registry.

    :param name: ``"none"``, ``"basic"`` (htpasswd) or ``"token"``
    :param users: (optional) user → password for basic and token mode, written to the
        htpasswd file (bcrypt); default the course's user, ``learner``
    :param acl: (optional) token mode: the :class:`~.tokenserver.Rule` s that say who may
        do what; default any user, anything
    :param signing_key: (optional) token mode: a PEM private key to sign tokens with;
        default a fresh one each start
    """

    name: str
    #: a secret, so never in the repr
    users: dict[str, str] | None = field(default=None, repr=False)
    acl: tuple[Rule, ...] | None = None
    signing_key: Path | None = None

    def __post_init__(self) -> None:
        if self.name not in MODES:
            raise RegistryConfigError(f"auth={self.name!r} is not one of {tuple(MODES)}")
        if self.users is None:
            object.__setattr__(self, "users", dict(DEFAULT_USERS))

    def prepare(self, paths: RegistryPaths, port: int) -> RegistryConfig:
        """Write what this mode needs in ``paths`` (and start the token service, for
        ``token``); return the config of a registry on ``port`` in this mode."""
        if self.name == "none":
            return RegistryConfig(port=port)
        paths.root.mkdir(parents=True, exist_ok=True)
        htpasswd = write_htpasswd(paths.htpasswd, self.users)
        if self.name == "basic":
            return RegistryConfig(port=port, auth="htpasswd", htpasswd=htpasswd)
        realm = _start_token_service(paths, self._token_argv(paths))
        return RegistryConfig(port=port, auth="token", realm=realm, rootcertbundle=paths.token_cert)

    def runs_in(self, paths: RegistryPaths) -> bool:
        """Is what runs beside the registry in ``paths`` what :meth:`prepare` sets up:
        these users, and (token mode) a token service with these rules and key?"""
        if self.name == "none":
            return True
        if not check_htpasswd(paths.htpasswd, self.users):
            return False
        if self.name == "basic":
            return True
        pid = token_service_pid(paths.root)
        return pid is not None and argv_of(pid)[3:] == self._token_argv(paths)[3:]

    def _token_argv(self, paths: RegistryPaths) -> list[str]:
        argv = [sys.executable, "-m", TOKEN_SERVICE_MODULES[0], "serve"]
        argv += ["--htpasswd", str(paths.htpasswd), "--cert", str(paths.token_cert)]
        argv += ["--realm-file", str(paths.token_realm)]
        if self.signing_key is not None:
            argv += ["--key", str(Path(self.signing_key).resolve())]
        for rule in self.acl or ():
            argv += ["--rule", str(rule)]
        return argv


def _start_token_service(paths: RegistryPaths, argv: list[str], timeout: float = 15.0) -> str:
    """Spawn the token service detached; return its realm URL once it listens."""
    paths.token_realm.unlink(missing_ok=True)

    def realm() -> str:
        with contextlib.suppress(OSError):
            return paths.token_realm.read_text().strip()
        return ""

    child, _ = process.spawn(argv, log=paths.token_log, pid_file=paths.token_pid)
    ready, code = process.wait_ready(child, lambda: bool(realm()), timeout)
    if ready:
        return realm()
    paths.token_pid.unlink(missing_ok=True)
    raise RegistryServerError(
        f"the token service did not start (exit status {code}); see {paths.token_log}",
        fix=f"less {paths.token_log}",
    )


def token_service_pid(root: Path) -> int | None:
    """The pid of the token service of the registry whose state is ``root``, if it runs."""
    paths = RegistryPaths(root)
    pid = process.read_pid(paths.token_pid)
    if pid is None:
        return None
    argv = argv_of(pid)
    ours = runs_module(argv, TOKEN_SERVICE_MODULES) and str(paths.htpasswd) in argv
    return pid if ours else None


def stop_token_service(root: Path, timeout: float = 5.0) -> bool:
    """SIGTERM (then SIGKILL) the detached token service; ``True`` if one was running.

    As for the registry, the signal goes through a pidfd opened before the pid is checked.
    """
    paths = RegistryPaths(root)

    def ours(pid: int) -> bool:
        return token_service_pid(root) == pid

    try:
        return process.stop(paths.token_pid, ours, timeout=timeout)
    except TimeoutError:
        return True  # stuck in the kernel: nothing more a signal can do
    finally:
        paths.token_pid.unlink(missing_ok=True)
        paths.token_realm.unlink(missing_ok=True)
