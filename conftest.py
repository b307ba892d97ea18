"""Shared fixtures.

One real registry serves the whole pytest session. It is started in
:func:`pytest_sessionstart`, not lazily in a fixture, because notebook kernels that nbval
starts later inherit this process's environment: ``HARDWAY_STATE_DIR`` (a temporary
directory) and ``HARDWAY_REGISTRY_PORT`` (a free port) are exported before any test runs,
so ``hardway.distribution.server.local_registry.ensure_running()`` in a notebook finds this
registry. It is
stopped in :func:`pytest_sessionfinish`, which pytest runs after failures and Ctrl-C too,
and again at interpreter exit in case another plugin broke the session start.

Nothing a test or notebook creates may outlive the session: a snapshot of the course's
processes, veth devices, mounts, named network namespaces, cgroups, registries and token
services (:mod:`hardway.course.leftovers`) is taken at the start and compared at the finish;
anything new fails the run loudly. ``HARDWAY_SESSION`` tells this run's leftovers from
those of a concurrent one. ``TMPDIR`` is this run's own directory (kernels inherit it):
whatever a test, notebook or tool leaves in it is a leftover too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardway.course import leftovers
from hardway.distribution.server import local_registry
from hardway.errors import HardwayError

_EXPORTED = (
    "HARDWAY_STATE_DIR",
    "HARDWAY_REGISTRY_PORT",
    "HARDWAY_SESSION",
    "HARDWAY_PROGRESS",
    "TMPDIR",
)
#: the session registry: saved environment, temporary directory, port, status or error
_session: dict[str, object] = {}
#: the snapshot of what the course may create, taken at session start, and the session id
_leftover_state: dict[str, object] = {}


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that the kernel just reported free."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_sessionstart(session: pytest.Session) -> None:
    saved = {name: os.environ.get(name) for name in _EXPORTED}
    sweep_dead_sessions()
    tmp = tempfile.mkdtemp(prefix=f"hardway-pytest-{os.getpid()}-")
    port = find_free_port()
    # this run's temporary directory: what tests, notebooks and tools leave in it is theirs
    os.mkdir(temp := os.path.join(tmp, "tmp"), 0o1777)
    os.chmod(temp, 0o1777)  # rootless containers (other uids) write here too…
    os.chmod(tmp, 0o711)  # …so they must pass through the session's directory
    os.environ["TMPDIR"] = tempfile.tempdir = temp
    os.environ["HARDWAY_STATE_DIR"] = tmp
    os.environ["HARDWAY_REGISTRY_PORT"] = str(port)
    os.environ["HARDWAY_SESSION"] = _leftover_state["session"] = uuid.uuid4().hex
    # nobody watches a test: a transfer slower than the bar's delay (a loaded machine)
    # would otherwise draw a progress bar into a notebook output that nbval compares
    os.environ["HARDWAY_PROGRESS"] = "0"
    _leftover_state["before"] = leftovers.snapshot()
    _session.update(saved=saved, tmp=tmp, port=port, temp=temp)
    atexit.register(_stop_session_registry)
    try:
        _session["status"] = local_registry.start(port)
    except HardwayError as exc:  # reported by the `registry` fixture, to the tests that need it
        _session["error"] = exc


_OWNED = re.compile(r"/hardway-pytest-(\d+)-[^/]+/")


def sweep_dead_sessions(tmpdir: str | None = None) -> list[int]:
    """Stop the registries and token services of earlier test runs that were killed.

    A session registry runs in its own session on purpose (Ctrl-C in a terminal must not
    reach it), so a pytest killed with SIGKILL never stops it. Its state directory names
    the pytest process that made it: when that process is gone, the next run stops what
    it left and removes the directory. Returns the pids it signalled.
    """
    signalled = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        owners = _OWNED.findall(argv)  # the innermost names the run (tests nest them)
        if not owners or not (
            "docker-registry" in argv or "hardway.distribution.server.tokenserver" in argv
        ):
            continue
        if Path(f"/proc/{owners[-1]}").exists():
            continue  # its test run is still going (or the pid was reused: leave it)
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(proc.name), signal.SIGTERM)
            signalled.append(int(proc.name))
    # rmtree crosses mount points: a directory with a mount left in it is cleanup's
    # (it unmounts first), never deleted through the mount here
    mounted = [Path(point) for point in leftovers.mount_points()]
    for stale in Path(tmpdir or tempfile.gettempdir()).glob("hardway-pytest-*-*"):
        owner = _OWNED.search(f"/{stale.name}/")
        dead = owner and not Path(f"/proc/{owner[1]}").exists()
        if dead and not any(point.is_relative_to(stale) for point in mounted):
            shutil.rmtree(stale, ignore_errors=True)
    return signalled


@pytest.hookimpl(trylast=True)  # after session fixtures are torn down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    temp = _session.get("temp")
    _stop_session_registry(keep_tmp=True)
    try:
        _check_leftovers(session, temp)
    finally:
        shutil.rmtree(_leftover_state.pop("tmp", ""), ignore_errors=True)


def _temp_leftovers(temp: object) -> list[str]:
    """What is still in this run's temporary directory (``TMPDIR``), one line each."""
    try:
        names = sorted(os.listdir(str(temp)))
    except OSError:
        return []
    # pytest's own tmp_path directories are pytest's to keep (they go with the session's)
    ours = [name for name in names if not name.startswith("pytest-of-")]
    return [f"temporary file {os.path.join(str(temp), name)}" for name in ours]


def _check_leftovers(session: pytest.Session, temp: object) -> None:
    """Fail the run when a process, veth, mount, netns, cgroup, registry or token service
    of the course, or anything in this run's temporary directory, is left over."""
    if "before" not in _leftover_state:
        return
    before, sid = _leftover_state.pop("before"), _leftover_state.pop("session")
    deadline = time.monotonic() + 3  # a namespace dies asynchronously: give it a moment
    while (
        left := [*leftovers.left_behind(before, leftovers.snapshot(sid)), *_temp_leftovers(temp)]
    ) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not left:
        return
    text = "\n".join(["the test run left these behind:", *(f"  {item}" for item in left)])
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("!", "LEFTOVERS: something the tests created is still there", red=True)
        reporter.write_line(text)
    else:
        print(text, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _stop_session_registry(*, keep_tmp: bool = False) -> None:
    """Stop the session registry and restore the environment; the session's directory
    is removed now, or (``keep_tmp``) after the leftover check has looked into it."""
    if not _session:
        return
    state = dict(_session)
    _session.clear()
    try:
        local_registry.stop(state["port"])  # while HARDWAY_STATE_DIR still points at tmp
    finally:
        for name, value in state["saved"].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        tempfile.tempdir = None  # gettempdir() asks TMPDIR again
        if keep_tmp:
            _leftover_state["tmp"] = state["tmp"]
        else:
            shutil.rmtree(state["tmp"], ignore_errors=True)


@pytest.fixture(scope="session")
def registry() -> local_registry.RegistryStatus:
    """The session's running registry (its ``url``, ``port``, ``state`` directory)."""
    if "error" in _session:
        pytest.fail(f"the session registry did not start:\n{_session['error']}", pytrace=False)
    if "status" not in _session:
        pytest.fail("the session registry was already stopped", pytrace=False)
    return _session["status"]


@pytest.fixture
def free_port() -> int:
    """A free TCP port on 127.0.0.1 for one test."""
    return find_free_port()


@pytest.fixture
def executions(monkeypatch) -> list[str]:
    """Every filesystem step of a Dockerfile build that really ran (RUN, COPY, WORKDIR),
    by kind: counted where they run, not by the builder's own report."""
    from hardway.build import capture

    ran: list[str] = []
    real = capture.changes

    def counting(lower, work, action, *args, **kwargs):
        ran.append(action["kind"])
        return real(lower, work, action, *args, **kwargs)

    monkeypatch.setattr(capture, "changes", counting)
    return ran


@pytest.fixture(scope="session")
def busybox_rootfs() -> Iterator[Path]:
    """A busybox root filesystem that every uid can read (in a 0755 ``hardway-…`` dir)."""
    from hardway.isolation import rootfs

    top = Path(tempfile.mkdtemp(prefix="hardway-rootfs-"))
    top.chmod(0o755)
    try:
        yield rootfs.build_busybox(top / "root").path
    finally:
        shutil.rmtree(top, ignore_errors=True)
