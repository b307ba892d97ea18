"""hardway.distribution.server.modes
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

The course's registry in its three auth modes, as ``registry start --auth none|basic|token``
starts it. ``none`` is Distribution with no ``auth`` section. ``basic`` is its
``htpasswd`` mode with the course's user (``learner``/``containers``). ``token`` is its
``auth: token`` mode: the registry checks JWTs signed by the course's token service
(:mod:`hardway.distribution.server.tokenserver`), which runs as a *detached* process of its own, so
that it
outlives the shell or notebook that started it, just as the registry does.

Why a separate process with a pid file rather than a thread: ``registry start`` returns
at once, and ``registry stop`` (maybe from another terminal) must be able to find and end
the token service. Its files sit next to the registry's::

    .state/registry/<port>/htpasswd           the course's user (bcrypt)
    .state/registry/<port>/token.pem          the certificate the registry trusts
    .state/registry/<port>/tokenserver.realm  the URL it listens on, written once it does
    .state/registry/<port>/tokenserver.pid
    .state/registry/<port>/tokenserver.log

>>> mode_of("auth:\\n  token:\\n    realm: http://127.0.0.1:1/token\\n")
'token'
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from hardway.distribution.server.services import TOKEN_SERVICE_MODULES
from hardway.errors import RegistryConfigError, RegistryServerError
from hardway.sys.proc import argv_of, runs_module, terminate

__all__ = ["MODES", "mode_of", "start_mode", "stop_token_service", "token_service_pid"]

#: what ``--auth`` accepts, and the Distribution auth each one becomes
MODES = {"none": "none", "basic": "htpasswd", "token": "token"}


def mode_of(config_text: str) -> str:
    """The ``--auth`` mode a rendered ``config.yml`` runs: ``none``, ``basic`` or ``token``."""
    lines = config_text.splitlines()
    if "auth:" not in lines:
        return "none"
    if "  htpasswd:" in lines:
        return "basic"
    return "token" if "  token:" in lines else "none"


def _files(root: Path) -> dict[str, Path]:
    names = ("htpasswd", "token.pem", "tokenserver.realm", "tokenserver.pid", "tokenserver.log")
    return {name.removeprefix("tokenserver."): root / name for name in names}


def token_service_pid(root: Path) -> int | None:
    """The pid of the token service of the registry whose state is ``root``, if it runs."""
    files = _files(root)
    with contextlib.suppress(OSError, ValueError):
        pid = int(files["pid"].read_text().strip())
        argv = argv_of(pid)
        if runs_module(argv, TOKEN_SERVICE_MODULES) and str(files["htpasswd"]) in argv:
            return pid
    return None


def stop_token_service(root: Path, timeout: float = 5.0) -> bool:
    """SIGTERM (then SIGKILL) the detached token service; ``True`` if one was running.

    As for the registry, the signal goes through a pidfd opened before the pid is checked.
    """
    files = _files(root)
    try:
        pid = int(files["pid"].read_text().strip())
    except (OSError, ValueError):
        files["pid"].unlink(missing_ok=True)
        return False
    try:
        stopped = terminate(pid, lambda p: token_service_pid(root) == p, timeout=timeout)
    except TimeoutError:
        stopped = True  # stuck in the kernel: nothing more a signal can do
    finally:
        files["pid"].unlink(missing_ok=True)
        files["realm"].unlink(missing_ok=True)
    if stopped:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # our child (CLI, tests): reap it
    return stopped


def _start_token_service(root: Path, *, owned: bool, timeout: float = 15.0) -> str:
    """Spawn the token service (``python -m …tokenserver serve``) detached; return its
    realm URL."""
    files = _files(root)
    files["realm"].unlink(missing_ok=True)
    argv = [sys.executable, "-m", TOKEN_SERVICE_MODULES[0], "serve"]
    argv += ["--htpasswd", str(files["htpasswd"]), "--cert", str(files["token.pem"])]
    argv += ["--realm-file", str(files["realm"])]
    from hardway.distribution.server.local_registry import claim

    claim(root, owned=owned)
    with open(files["log"], "ab") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=root,
        )
    files["pid"].write_text(f"{child.pid}\n")
    deadline = time.monotonic() + timeout
    while child.poll() is None and time.monotonic() < deadline:
        if files["realm"].is_file() and (realm := files["realm"].read_text().strip()):
            return realm
        time.sleep(0.05)
    code = child.poll()
    if code is None:
        child.kill()
    child.wait()
    files["pid"].unlink(missing_ok=True)
    raise RegistryServerError(
        f"the token service did not start (exit status {code}); see {files['log']}",
        fix=f"less {files['log']}",
    )


def start_mode(
    port: int | None = None, auth: str = "none", *, timeout: float = 15.0, owned: bool = True
):
    """Start the registry on ``port`` in ``auth`` mode (idempotent: the same mode running
    is left alone; another mode is stopped first, token service included).

    :param auth: ``"none"``, ``"basic"`` (htpasswd) or ``"token"``
    :param owned: this process owns them (see
    :func:`hardway.distribution.server.local_registry.start`)
    :rtype: hardway.distribution.server.local_registry.RegistryStatus
    """
    from hardway.distribution.server import local_registry
    from hardway.distribution.server.config import RegistryConfig, default_port
    from hardway.distribution.server.tokenserver import DEFAULT_USERS, write_htpasswd

    if auth not in MODES:
        raise RegistryConfigError(f"auth={auth!r} is not one of {tuple(MODES)}")
    port = default_port() if port is None else port
    current = local_registry.status(port)
    root = current.state
    alive = token_service_pid(root) is not None
    if current.running and current.auth == auth and (auth != "token" or alive):
        return current
    local_registry.stop(port)  # stops the token service too
    if auth == "none":
        return local_registry.start(port, timeout=timeout, owned=owned)
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(_files(root)["htpasswd"], DEFAULT_USERS)
    if auth == "basic":
        config = RegistryConfig(port=port, auth="htpasswd", htpasswd=htpasswd)
        return local_registry.start(port, timeout=timeout, config=config, owned=owned)
    realm = _start_token_service(root, owned=owned)
    # service and issuer: RegistryConfig's defaults are TokenService's
    config = RegistryConfig(
        port=port, auth="token", realm=realm, rootcertbundle=_files(root)["token.pem"]
    )
    try:
        return local_registry.start(port, timeout=timeout, config=config, owned=owned)
    except BaseException:
        stop_token_service(root)
        raise
