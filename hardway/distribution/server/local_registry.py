"""hardway.distribution.server.local_registry
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

The course's own registry: the real CNCF Distribution server (Debian's
``docker-registry``), started on 127.0.0.1 with a config this module writes
(:mod:`~hardway.distribution.server.config`), and its storage, pid file and log kept under
the project-local state directory (:mod:`~hardway.distribution.server.paths`).

Why a real server rather than a fake: chapters 07–08 push and pull with nothing but
HTTP, and only the reference implementation can tell a learner that their bytes are
right. Why 127.0.0.1 only: with ``auth: none`` anyone who can reach the port may push
and delete, so the registry never listens on a network interface. Why a pid file that is
checked against ``/proc``: notebooks, the CLI and tests start and stop the same server
from different processes, and a stale pid must never lead to killing a stranger
(:mod:`~hardway.distribution.server.process`).

This module is the public API on top of the package: :func:`status`, :func:`start` with
a :class:`~hardway.distribution.server.config.RegistryConfig`, :func:`start_mode` in one
of the course's auth modes (:mod:`~hardway.distribution.server.modes`),
:func:`ensure_running`, :func:`stop`, who owns a registry (:func:`claim`), its
:func:`garbage_collect`, and the ``registry start|stop|status|gc`` command.

Why garbage collection stops the registry: deleting a manifest only unlinks it; its blobs
stay on disk until ``registry garbage-collect`` marks every blob some manifest still
references and sweeps the rest. A push running during the sweep could reference a blob
the mark phase did not see, and lose it, so Distribution's documentation asks for the
registry to be stopped (or read-only) while it runs.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from hardway.distribution.server import modes, process
from hardway.distribution.server.config import (
    DEFAULT_PORT,
    MODES,
    RegistryConfig,
    default_port,
    mode_of,
    render_config,
)
from hardway.distribution.server.paths import RegistryPaths, http_secret
from hardway.distribution.server.services import (
    OWNER_FILE,
    describe,
    record_owner,
    registries_on,
    stop_command,
)
from hardway.distribution.server.tokenserver import Rule
from hardway.errors import (
    HardwayError,
    MissingToolError,
    PortInUseError,
    RegistryConfigError,
    RegistryServerError,
)
from hardway.sys.atomic import write_atomic
from hardway.sys.proc import argv_of

__all__ = [
    "Collected",
    "RegistryStatus",
    "binary",
    "claim",
    "ensure_running",
    "garbage_collect",
    "register",
    "start",
    "start_mode",
    "status",
    "stop",
    "stop_at",
]


def _display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


@dataclass(frozen=True)
class RegistryStatus:
    """A snapshot of the registry on one port; ``str()`` is the line the CLI prints."""

    port: int
    running: bool
    pid: int | None
    url: str
    state: Path
    #: ``none``, ``basic`` or ``token`` (see :mod:`hardway.distribution.server.modes`)
    auth: str = "none"

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry as image references name it."""
        return self.url.removeprefix("http://")

    def __str__(self) -> str:
        if self.running:
            where = _display(self.state / "data")
            return (
                f"registry: running on {self.url} (pid {self.pid}, auth {self.auth}, "
                f"storage {where})"
            )
        if self.pid is not None:
            where = _display(self.state / "registry.log")
            return f"registry: not answering on {self.url} (pid {self.pid}, log {where})"
        return f"registry: not running on port {self.port} (state {_display(self.state)})"


# --- the binary and the process --------------------------------------------------


def binary() -> Path:
    """The ``docker-registry`` executable: ``$HARDWAY_REGISTRY_BINARY``, else found on PATH."""
    fix = "sudo apt-get install docker-registry   (or: make setup)"
    if override := os.environ.get("HARDWAY_REGISTRY_BINARY"):
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise MissingToolError(
            f"HARDWAY_REGISTRY_BINARY={override} is not an executable file",
            fix=f"unset HARDWAY_REGISTRY_BINARY, or: {fix}",
        )
    if found := shutil.which("docker-registry"):
        return Path(found)
    raise MissingToolError(
        "the registry program `docker-registry` (CNCF Distribution) is not on PATH", fix=fix
    )


def _is_ours(pid: int, paths: RegistryPaths) -> bool:
    """Is ``pid`` a registry serving *our* config? (A zombie has no cmdline: not ours.)

    Only the command line counts, not the config's text: a registry started with an
    older config (another auth mode, the YAML of earlier versions) is still ours to stop.
    """
    return argv_of(pid)[1:] == ["serve", str(paths.config)]


def _our_pid(paths: RegistryPaths) -> int | None:
    pid = process.read_pid(paths.pid)
    return pid if pid is not None and _is_ours(pid, paths) else None


def _answers(url: str, timeout: float = 0.5) -> bool:
    """Does a Distribution registry answer ``GET /v2/`` (200, or 401 when auth is on)?

    The ``Docker-Distribution-Api-Version`` header tells *Distribution* (the server this
    module starts) from another program on the port; the OCI spec does not require it,
    so a client talking to any registry must not rely on it.
    """
    try:
        with requests.Session() as session:
            session.trust_env = False  # an HTTP(S)_PROXY must not swallow 127.0.0.1
            response = session.get(f"{url}/v2/", timeout=timeout)
    except requests.RequestException:
        return False
    return response.headers.get("Docker-Distribution-Api-Version") == "registry/2.0"


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # like Go's net.Listen: a port in TIME_WAIT after our last registry is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise RegistryServerError(
                f"cannot listen on {host}:{port}: {exc.strerror}",
                fix=f"python -m hardway registry start --port {DEFAULT_PORT}",
            ) from exc
    return True


def _listener(port: int) -> tuple[int, str] | None:
    """(pid, command name) of a process listening on TCP ``port``, if /proc shows one."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd) in inodes:
                pid = int(fd.parts[2])
                return pid, Path(f"/proc/{pid}/comm").read_text().strip()
    return None


def _port_in_use(host: str, port: int) -> PortInUseError:
    holder = _listener(port)
    who = f"pid {holder[0]} ({holder[1]})" if holder else "another process"
    alternative = next(
        (p for p in range(port + 1, min(port + 50, 65536)) if _port_free(host, p)), port + 1
    )
    stop_it = (
        f" or stop {who}: kill {holder[0]}" if holder else " or stop the process that holds it"
    )
    if holder and (course := [s for s in registries_on(port) if s.pid == holder[0]]):
        who, stop_it = describe(course[0]), f" or stop it: {stop_command(course[0])}"
    return PortInUseError(
        f"port {port} on {host} is already in use by {who}, so the registry cannot listen there",
        fix=f"python -m hardway registry start --port {alternative}   "
        f"(and export HARDWAY_REGISTRY_PORT={alternative} for the notebooks),{stop_it}",
    )


def _stop_locked(paths: RegistryPaths, timeout: float) -> bool:
    """SIGTERM, then SIGKILL, our registry; never a process that is not ours."""
    try:
        return process.stop(paths.pid, lambda pid: _is_ours(pid, paths), timeout=timeout)
    except TimeoutError:
        pid = process.read_pid(paths.pid)
        raise RegistryServerError(
            f"the registry (pid {pid}) did not exit, even after SIGKILL",
            fix=f"ps -o pid,stat,cmd -p {pid}   (a process stuck in state D waits on I/O)",
        ) from None


def _spawn(exe: Path, paths: RegistryPaths) -> tuple[subprocess.Popen[bytes], int]:
    """Start the server detached; ``REGISTRY_*`` variables are dropped because
    Distribution would let them override the config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    argv = [str(exe), "serve", str(paths.config)]
    return process.spawn(argv, log=paths.log, pid_file=paths.pid, env=env)


# --- the lifecycle ---------------------------------------------------------------


def status(port: int | None = None) -> RegistryStatus:
    """Is our registry on ``port`` alive and answering ``GET /v2/``?

    >>> status(1).running
    False
    """
    port = default_port() if port is None else port
    paths = RegistryPaths.for_port(port)
    url = f"http://127.0.0.1:{port}"
    pid = _our_pid(paths)
    running = pid is not None and _answers(url)
    return RegistryStatus(port, running, pid, url, paths.root, _auth_mode(paths) if pid else "none")


def _auth_mode(paths: RegistryPaths) -> str:
    with contextlib.suppress(OSError):
        return mode_of(paths.config.read_text())
    return "none"


def start(
    port: int | None = None,
    *,
    timeout: float = 15.0,
    config: RegistryConfig | None = None,
    owned: bool = True,
) -> RegistryStatus:
    """Start the registry (idempotent) and wait until it answers ``GET /v2/``.

    If our registry already runs with the same config it is left alone; with a different
    config (say, auth switched on) it is restarted. Stale pid files are replaced.

    :param port: (optional) TCP port on 127.0.0.1; default :func:`default_port`
    :param timeout: seconds to wait for the registry to answer
    :param config: (optional) the full configuration; its port must match ``port``
    :param owned: this process owns it: once this process is gone, ``python -m hardway
        cleanup`` stops it; ``False`` (the CLI): it runs until stopped
    :raises MissingToolError: ``docker-registry`` is not installed
    :raises PortInUseError: another process listens on the port
    :raises RegistryServerError: the registry exited early or did not answer in time
    """
    if config is None:
        config = RegistryConfig(port=default_port() if port is None else port)
    elif port is not None and port != config.port:
        raise RegistryConfigError(f"start(port={port}) but config.port is {config.port}")
    exe = binary()
    # checked here because, given a missing htpasswd file, the registry invents a user and
    # writes its password to the log
    needed = {"htpasswd": config.htpasswd, "token": config.rootcertbundle}.get(config.auth)
    if needed is not None and not Path(needed).is_file():
        raise RegistryConfigError(
            f"auth={config.auth!r} needs the file {needed}, which does not exist",
            fix=f"create {needed} first, or start with RegistryConfig(auth='none')",
        )
    paths = RegistryPaths.for_port(config.port)
    process.reap_finished()
    if config.auth != "token":  # a detached token service of an earlier `--auth token`
        modes.stop_token_service(paths.root)
    with paths.locked():
        text = render_config(config, rootdirectory=paths.data, secret=http_secret())
        if (pid := _our_pid(paths)) is not None:
            same = paths.config.read_text() == text
            if same and _answers(config.url, timeout=2.0):
                return RegistryStatus(config.port, True, pid, config.url, paths.root, config.mode)
            _stop_locked(paths, timeout=10.0)
        paths.pid.unlink(missing_ok=True)  # stale: its pid is dead or someone else's
        if not _port_free(config.host, config.port):
            raise _port_in_use(config.host, config.port)
        paths.data.mkdir(parents=True, exist_ok=True)
        write_atomic(paths.config, text.encode(), mode=0o600)  # it holds the secret
        claim(paths.root, owned=owned)
        child, offset = _spawn(exe, paths)
        ready, code = process.wait_ready(child, lambda: _answers(config.url), timeout)
        if ready:
            return RegistryStatus(config.port, True, child.pid, config.url, paths.root, config.mode)
        paths.pid.unlink(missing_ok=True)
        tail = process.log_tail(paths.log, offset)
        if "address already in use" in tail:
            raise _port_in_use(config.host, config.port)
        why = f"exited with status {code}" if code is not None else f"did not answer in {timeout}s"
        raise RegistryServerError(
            f"the registry on {config.url} {why}; the end of {_display(paths.log)}:\n{tail}",
            fix=f"less {paths.log}   (then: python -m hardway registry start --port {config.port})",
        )


def start_mode(
    port: int | None = None,
    auth: str = "none",
    *,
    users: dict[str, str] | None = None,
    acl: tuple[Rule, ...] | None = None,
    signing_key: Path | None = None,
    timeout: float = 15.0,
    owned: bool = True,
) -> RegistryStatus:
    """Start the registry on ``port`` in ``auth`` mode, as ``registry start --auth`` does
    (idempotent: the same mode, set up the same way, running is left alone; anything
    else is stopped first, token service included).

    The options are :class:`~hardway.distribution.server.modes.Mode`'s: ``auth`` is
    ``"none"``, ``"basic"`` (htpasswd) or ``"token"`` (with the course's token service, as
    a detached process); ``users``, ``acl`` and ``signing_key`` let a caller (a test)
    choose its own, and default to the course's user, "anyone may do anything" and a
    fresh key.

    :param owned: this process owns them (see :func:`start`)
    """
    mode = modes.Mode(auth, users=users, acl=acl, signing_key=signing_key)
    port = default_port() if port is None else port
    paths = RegistryPaths.for_port(port)
    current = status(port)
    if current.running and current.auth == auth and mode.runs_in(paths):
        return current
    stop(port)  # stops the token service too
    paths.root.mkdir(parents=True, exist_ok=True)
    claim(paths.root, owned=owned)  # before a token service starts: cleanup knows whose
    config = mode.prepare(paths, port)
    try:
        return start(port, timeout=timeout, config=config, owned=owned)
    except BaseException:
        modes.stop_token_service(paths.root)
        raise


#: state directories of registries this process owns, stopped when it exits
_owned_roots: set[Path] = set()


def claim(root: Path, *, owned: bool) -> None:
    """Record who owns the registry (and token service) whose state is ``root``.

    Owned (a notebook kernel, a test): stopped when this process exits normally (a
    kernel shutdown or restart), and by ``python -m hardway cleanup`` once this process
    is gone any other way — except the registry on the default port, which the
    learner's other notebooks share. Not owned (the CLI): runs until stopped.
    """
    record_owner(root, os.getpid() if owned else None)
    with contextlib.suppress(HardwayError, OSError):
        if owned and root != RegistryPaths.for_port(default_port()).root:
            if not _owned_roots:
                atexit.register(_stop_owned)
            _owned_roots.add(root)


def _stop_owned() -> None:
    for root in list(_owned_roots):
        with contextlib.suppress(HardwayError, OSError):  # gone already: nothing to stop
            words = (root / OWNER_FILE).read_text().split()
            if words[:1] == [str(os.getpid())]:  # not a forked child's, not a later owner's
                stop_at(root)
    _owned_roots.clear()


def ensure_running(port: int | None = None, *, owned: bool = True) -> RegistryStatus:
    """The registry on ``port`` as it runs now, whatever its config; started if it is not.

    Notebooks call this: it never restarts a registry another chapter configured, and
    when the course's registry of another checkout (another state directory) serves the
    port, it is used as it is — any Distribution registry serves the course.
    """
    current = status(port)
    if current.running:
        return current
    return _borrowed(current.port) or start(port, owned=owned)


def _borrowed(port: int) -> RegistryStatus | None:
    """The course's registry of another checkout or state directory, answering on
    ``port``; ``None`` when there is none (or the one there is ours)."""
    url, ours = f"http://127.0.0.1:{port}", RegistryPaths.for_port(port).root
    for service in registries_on(port):
        if service.root != ours and _answers(url):
            mode = _auth_mode(RegistryPaths(service.root))
            return RegistryStatus(port, True, service.pid, url, service.root, mode)
    return None


def stop(port: int | None = None, *, timeout: float = 10.0) -> bool:
    """Stop our registry on ``port``; ``True`` if one was running.

    SIGTERM first, SIGKILL after ``timeout`` seconds; the process is gone (and reaped, if
    it is our child) when this returns. Stopping a stopped registry is not an error.
    """
    return stop_at(
        RegistryPaths.for_port(default_port() if port is None else port).root, timeout=timeout
    )


def stop_at(root: Path, *, timeout: float = 10.0) -> bool:
    """Stop the registry (and token service) whose state directory is ``root``, whatever
    the state directory: :mod:`hardway.course.cleanup` stops those of finished test runs."""
    paths = RegistryPaths(Path(root))
    if not paths.root.is_dir():
        return False
    with paths.locked():
        stopped = _stop_locked(paths, timeout)
    modes.stop_token_service(paths.root)  # after the registry, which asks it nothing more
    return stopped


# --- garbage collection ----------------------------------------------------------


@dataclass(frozen=True)
class Collected:
    """What one garbage collection did: the storage's size before and after (bytes),
    and the blobs and manifests Distribution found unreferenced ("eligible")."""

    before: int
    after: int
    blobs: int
    manifests: int

    def __str__(self) -> str:
        return (
            f"garbage-collect: {self.blobs} blob(s) and {self.manifests} manifest(s) "
            f"eligible; storage {self.before:,} → {self.after:,} bytes"
        )


def _storage_size(root: Path) -> int:
    """Bytes of every file under ``root`` (what ``du --apparent-size`` counts)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def garbage_collect(
    port: int | None = None,
    *,
    delete_untagged: bool = False,
    dry_run: bool = False,
    timeout: float = 15.0,
) -> Collected:
    """``docker-registry garbage-collect`` on our registry's storage, with the registry
    stopped for the sweep and started again (same config) if it was running.

    :param delete_untagged: (optional) also delete manifests no tag points at (``-m``):
        an image pushed by digest only goes too — and a multi-platform image's manifests,
        which only its index references, in Distribution 2.8
    :param dry_run: (optional) only report what would go
    :raises RegistryConfigError: the registry on ``port`` was never started here
    """
    port = default_port() if port is None else port
    paths = RegistryPaths.for_port(port)
    if not paths.config.is_file():
        raise RegistryConfigError(
            f"there is no registry state for port {port} here",
            fix=f"python -m hardway registry start --port {port}",
        )
    v2 = paths.data / "docker" / "registry" / "v2"
    if not (v2 / "repositories").is_dir() or not (v2 / "blobs").is_dir():
        size = _storage_size(paths.data)  # no blob was ever pushed: Distribution would fail
        return Collected(size, size, 0, 0)
    exe = binary()
    argv = [str(exe), "garbage-collect", str(paths.config)]
    argv += ["--delete-untagged"] * delete_untagged + ["--dry-run"] * dry_run
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with paths.locked():
        was_running = _our_pid(paths) is not None
        before = _storage_size(paths.data)
        if was_running:
            _stop_locked(paths, timeout=10.0)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        finally:
            if was_running:
                _restart_locked(exe, paths, port, timeout)
        if done.returncode != 0:
            raise RegistryServerError(
                f"registry garbage-collect exited with {done.returncode}: "
                f"{done.stderr.strip()[-400:] or done.stdout.strip()[-400:]}"
            )
        after = _storage_size(paths.data)
    found = re.search(r"(\d+) blobs and (\d+) manifests eligible", done.stdout + done.stderr)
    blobs, manifests = (int(found[1]), int(found[2])) if found else (0, 0)
    return Collected(before, after, blobs, manifests)


def _restart_locked(exe: Path, paths: RegistryPaths, port: int, timeout: float) -> None:
    """Start the registry again with the config file it ran with."""
    url = f"http://127.0.0.1:{port}"
    paths.pid.unlink(missing_ok=True)
    child, offset = _spawn(exe, paths)
    ready, _ = process.wait_ready(child, lambda: _answers(url), timeout)
    if not ready:
        paths.pid.unlink(missing_ok=True)
        raise RegistryServerError(
            f"the registry did not come back after garbage-collect:\n"
            f"{process.log_tail(paths.log, offset)}",
            fix=f"python -m hardway registry start --port {port}",
        )


# --- the command line ------------------------------------------------------------


def _port_arg(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1–65535)")
    return int(text)


def _cmd_start(args: argparse.Namespace) -> int:
    port = default_port() if args.port is None else args.port
    other = None if status(port).running else _borrowed(port)
    if other is not None and other.auth == args.auth:  # `make lab` next to another checkout
        print(f"{other} — another checkout's, used as it is")
        print(other.url)
        return 0
    current = start_mode(args.port, args.auth, owned=False)
    print(current)
    print(current.url)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    port = default_port() if args.port is None else args.port
    print(
        f"registry: stopped on port {port}"
        if stop(port)
        else f"registry: not running on port {port}"
    )
    return 0


def _cmd_gc(args: argparse.Namespace) -> int:
    print(garbage_collect(args.port, delete_untagged=args.delete_untagged, dry_run=args.dry_run))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    current = status(args.port)
    print(current)
    return 0 if current.running else 3  # LSB: 3 = program is not running


#: an action of the ``registry`` command: its name, what runs it, its one-line help
Action = tuple[str, Callable[[argparse.Namespace], int], str]


def register(subparsers: argparse._SubParsersAction, more: tuple[Action, ...] = ()) -> None:
    """Add ``registry start|stop|status [--port N]`` to the ``python -m hardway`` CLI,
    and the actions ``more`` that a floor above adds (``registry seed``:
    :func:`hardway.course.seed.register`)."""
    parser = subparsers.add_parser(
        "registry",
        help="start, stop or check the course's local registry",
        description="The course's Distribution registry on 127.0.0.1, with its storage, "
        "pid file and log under the project's .state/registry/<port>/.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (
        ("start", _cmd_start, "start it (or leave it running) and print its URL"),
        ("stop", _cmd_stop, "stop it; stopping a stopped registry is fine"),
        ("status", _cmd_status, "print its state; exit status 3 when it is not running"),
        (
            "gc",
            _cmd_gc,
            "garbage-collect its storage: blobs no manifest references are deleted (it is "
            "stopped meanwhile, then started again)",
        ),
        *more,
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument(
            "--port",
            type=_port_arg,
            default=None,
            help=f"TCP port on 127.0.0.1 (default: $HARDWAY_REGISTRY_PORT or {DEFAULT_PORT})",
        )
        if name == "start":
            action.add_argument(
                "--auth",
                choices=tuple(MODES),
                default="none",
                help="none; basic (htpasswd, user learner); token (with the course's token "
                "service as a detached process)",
            )
        if name == "gc":
            action.add_argument(
                "--delete-untagged",
                action="store_true",
                help="also delete manifests no tag points at",
            )
            action.add_argument(
                "--dry-run", action="store_true", help="only report what would be deleted"
            )
        action.set_defaults(func=func)
