"""The course's local registry, against the real ``docker-registry`` binary.

Each test gets its own free port and its own state directory (not the session registry),
and its registry is stopped at teardown even when the test fails.
"""

from __future__ import annotations

import doctest
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hardway.distribution.server import config as registry_config
from hardway.distribution.server import local_registry, modes, paths, process
from hardway.distribution.server.config import RegistryConfig, config_dict, render_config
from hardway.distribution.server.local_registry import start, status, stop
from hardway.distribution.server.paths import RegistryPaths
from hardway.errors import (
    MissingToolError,
    PortInUseError,
    RegistryConfigError,
    RegistryServerError,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, free_port: int) -> Iterator[int]:
    """A free port, with HARDWAY_STATE_DIR in tmp_path; whatever runs there is stopped after."""
    monkeypatch.setenv("HARDWAY_STATE_DIR", str(tmp_path / "state"))
    try:
        yield free_port
    finally:
        stop(free_port, timeout=2.0)


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy between us and 127.0.0.1
    return session


def gone(pid: int) -> bool:
    """No such process, or only a zombie its parent has not reaped yet (it holds nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def processes_serving(config: Path) -> list[int]:
    """Live pids whose command line names ``config``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(config).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- pure parts ------------------------------------------------------------------


def test_config_has_the_keys_distribution_reads() -> None:
    config = RegistryConfig(port=5001)
    doc = config_dict(config, rootdirectory=Path("/srv/data"), secret="s3cret")
    assert doc["http"] == {
        "addr": "127.0.0.1:5001",
        "secret": "s3cret",
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    assert doc["storage"]["filesystem"] == {"rootdirectory": "/srv/data"}
    assert doc["storage"]["delete"] == {"enabled": True}
    assert doc["health"]["storagedriver"]["enabled"] is True
    assert doc["log"]["level"] == "info"
    assert "auth" not in doc
    text = render_config(config, rootdirectory=Path("/srv/data"), secret="s3cret")
    assert json.loads(text) == doc, "config.yml is the config as JSON (JSON is YAML)"
    assert text.startswith('{\n  "version": "0.1",\n  "log": {\n') and text.endswith("}\n")
    assert text == render_config(config, rootdirectory=Path("/srv/data"), secret="s3cret")
    other = render_config(config, rootdirectory=Path("/srv/other"), secret="s3cret")
    assert other != text, "what start compares to decide on a restart"


def test_config_auth_modes() -> None:
    basic = RegistryConfig(port=5001, auth="htpasswd", htpasswd=Path("/x/htpasswd"))
    doc = config_dict(basic, rootdirectory=Path("/d"), secret="s")
    assert doc["auth"] == {"htpasswd": {"realm": "hardway", "path": "/x/htpasswd"}}
    token = RegistryConfig(
        port=5001, auth="token", realm="http://127.0.0.1:5002/token", rootcertbundle=Path("/c.pem")
    )
    doc = config_dict(token, rootdirectory=Path("/d"), secret="s")
    assert doc["auth"]["token"] == {
        "realm": "http://127.0.0.1:5002/token",
        "service": "hardway-registry",
        "issuer": "hardway-token-service",
        "rootcertbundle": "/c.pem",
    }
    with pytest.raises(RegistryConfigError, match="htpasswd file"):
        RegistryConfig(port=5001, auth="htpasswd")
    with pytest.raises(RegistryConfigError, match="token service URL"):
        RegistryConfig(port=5001, auth="token", rootcertbundle=Path("/c.pem"))
    with pytest.raises(RegistryConfigError, match="70000"):
        RegistryConfig(port=70000)


def test_the_auth_mode_is_read_back_from_the_rendered_config() -> None:
    htpasswd = RegistryConfig(port=5001, auth="htpasswd", htpasswd=Path("/h"))
    token = RegistryConfig(
        port=5001, auth="token", realm="http://127.0.0.1:5002/token", rootcertbundle=Path("/c")
    )
    for config, mode in (
        (RegistryConfig(port=5001), "none"),
        (htpasswd, "basic"),
        (token, "token"),
    ):
        assert config.mode == mode
        text = render_config(config, rootdirectory=Path("/d"), secret="s")
        assert registry_config.mode_of(text) == mode
    # the config.yml of a registry started before the config was JSON: no mode, no error
    yaml = 'version: "0.1"\nauth:\n  token:\n    realm: "http://127.0.0.1:1/token"\n'
    assert registry_config.mode_of(yaml) == "unknown"


def test_docstring_examples(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARDWAY_STATE_DIR", str(tmp_path))
    modules = (local_registry, registry_config, paths, process, modes)
    results = [doctest.testmod(m) for m in modules]
    assert sum(r.attempted for r in results) >= 7
    assert sum(r.failed for r in results) == 0


def test_default_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARDWAY_REGISTRY_PORT", raising=False)
    assert registry_config.default_port() == 5000
    monkeypatch.setenv("HARDWAY_REGISTRY_PORT", "5123")
    assert registry_config.default_port() == 5123
    assert RegistryConfig().port == 5123
    monkeypatch.setenv("HARDWAY_REGISTRY_PORT", "fivethousand")
    with pytest.raises(RegistryConfigError, match="fivethousand"):
        registry_config.default_port()


# --- the real registry -----------------------------------------------------------


def test_start_answers_v2_and_keeps_state_under_the_state_dir(local: int, tmp_path: Path) -> None:
    started = start(local)
    assert started.running and started.pid is not None
    assert started.url == f"http://127.0.0.1:{local}"
    assert started.state == (tmp_path / "state" / "registry" / str(local)).resolve()
    response = http().get(f"{started.url}/v2/", timeout=5)
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    paths = RegistryPaths(started.state)
    assert paths.pid.read_text().strip() == str(started.pid)
    assert paths.data.is_dir() and paths.log.stat().st_size > 0
    argv = Path(f"/proc/{started.pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:3] == [b"serve", str(paths.config).encode()]
    assert os.getsid(started.pid) == started.pid  # its own session: Ctrl-C does not reach it
    assert str(started).startswith(f"registry: running on {started.url} (pid {started.pid}, ")
    assert status(local) == started


def test_distribution_starts_from_a_json_config_yml(local: int) -> None:
    """JSON is YAML: the real registry reads the JSON ``config.yml``, every section of it."""
    started = start(config=RegistryConfig(port=local, log_level="debug"))
    paths = RegistryPaths(started.state)
    doc = json.loads(paths.config.read_text())
    assert doc["http"]["addr"] == f"127.0.0.1:{local}" and doc["log"]["level"] == "debug"
    response = http().get(f"{started.url}/v2/", timeout=5)
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # from http.headers
    log = paths.log.read_text()
    assert "level=debug" in log, "log.level"
    assert "service=registry" in log, "log.fields"


#: the ``config.yml`` that versions before the JSON one wrote (YAML, by hand)
OLD_YAML_CONFIG = """\
# written by hardway.distribution.server.local_registry; rewritten on every start, do not edit
version: "0.1"
log:
  level: info
  formatter: text
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: "127.0.0.1:{port}"
  secret: {secret}
  headers:
    X-Content-Type-Options:
      - nosniff
health:
  storagedriver:
    enabled: true
    interval: "10s"
    threshold: 3
"""


def test_a_registry_running_with_an_old_yaml_config_is_ours_and_restarts(local: int) -> None:
    """A registry that an older checkout started with a YAML ``config.yml`` is still found
    by its command line; the new config's different text means a restart, not an error."""
    paths = RegistryPaths.for_port(local)
    paths.data.mkdir(parents=True)
    yaml = OLD_YAML_CONFIG.format(data=paths.data, port=local, secret="old-secret")
    paths.config.write_text(yaml)
    argv = [str(local_registry.binary()), "serve", str(paths.config)]
    old = subprocess.Popen(argv, cwd=paths.root, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        paths.pid.write_text(f"{old.pid}\n")
        deadline = time.monotonic() + 15
        while not status(local).running and time.monotonic() < deadline:
            time.sleep(0.05)
        before = status(local)
        assert (before.running, before.pid, before.auth) == (True, old.pid, "unknown")
        assert local_registry.ensure_running(local).pid == old.pid, "left alone"
        after = start(local)
        assert after.running and after.pid != old.pid and gone(old.pid)
        assert json.loads(paths.config.read_text())["http"]["addr"] == f"127.0.0.1:{local}"
        assert status(local).auth == "none"
    finally:
        old.kill()
        old.wait()


def test_start_twice_returns_the_same_registry(local: int) -> None:
    first = start(local)
    second = start(local)
    assert second.pid == first.pid and second.running
    assert local_registry.ensure_running(local).pid == first.pid


def test_stop_leaves_nothing_behind(local: int) -> None:
    started = start(local)
    assert stop(local) is True
    assert not Path(f"/proc/{started.pid}").exists()  # our child: stopped and reaped
    assert not RegistryPaths(started.state).pid.exists()
    assert port_free(local)
    assert stop(local) is False
    after = status(local)
    assert (after.running, after.pid) == (False, None)
    assert str(after).startswith(f"registry: not running on port {local} ")


def test_a_port_taken_by_someone_else_is_named(local: int) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", local))
        squatter.listen()
        with pytest.raises(PortInUseError) as caught:
            start(local)
    message = str(caught.value)
    assert f"port {local} " in caught.value.message
    assert f"pid {os.getpid()}" in message  # the holder, found through /proc
    assert "python -m hardway registry start --port" in caught.value.fix
    paths = RegistryPaths.for_port(local)
    assert not paths.pid.exists()
    assert processes_serving(paths.config) == []


def test_a_missing_binary_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, local: int
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.delenv("HARDWAY_REGISTRY_BINARY", raising=False)
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(MissingToolError) as caught:
        start(local)
    assert "apt-get install docker-registry" in caught.value.fix
    monkeypatch.setenv("HARDWAY_REGISTRY_BINARY", str(empty / "docker-registry"))
    with pytest.raises(MissingToolError, match="HARDWAY_REGISTRY_BINARY"):
        local_registry.binary()
    assert not status(local).running


def test_a_stale_pid_file_is_replaced_and_its_process_spared(local: int) -> None:
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        paths = RegistryPaths.for_port(local)
        paths.root.mkdir(parents=True)
        paths.pid.write_text(f"{bystander.pid}\n")
        assert status(local).pid is None
        started = start(local)
        assert started.running and started.pid != bystander.pid
        assert paths.pid.read_text().strip() == str(started.pid)
        assert stop(local) is True
        paths.pid.write_text(f"{bystander.pid}\n")
        assert stop(local) is False
        assert not paths.pid.exists()
        assert bystander.poll() is None  # still alive after start and two stops
    finally:
        bystander.kill()
        bystander.wait()


def test_a_pushed_blob_lands_in_the_data_directory(local: int) -> None:
    started = start(local)
    blob = b"hello, containers the hard way\n"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    session = http()
    begun = session.post(f"{started.url}/v2/test/blobs/uploads/", timeout=5)
    assert begun.status_code == 202
    location = requests.compat.urljoin(started.url, begun.headers["Location"])
    done = session.put(location, params={"digest": digest}, data=blob, timeout=5)
    assert done.status_code == 201, done.text
    hexpart = digest.split(":")[1]
    stored = started.state / "data/docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"
    assert stored.read_bytes() == blob
    assert session.get(f"{started.url}/v2/test/blobs/{digest}", timeout=5).content == blob


def test_a_registry_that_dies_at_start_reports_its_log(local: int, tmp_path: Path) -> None:
    empty_bundle = tmp_path / "no-certificates.pem"
    empty_bundle.write_text("")
    config = RegistryConfig(
        port=local, auth="token", realm="http://127.0.0.1:1/token", rootcertbundle=empty_bundle
    )
    with pytest.raises(RegistryServerError) as caught:
        start(config=config, timeout=10)
    assert not isinstance(caught.value, PortInUseError)
    assert "exited with status" in caught.value.message
    assert "    " in caught.value.message.split("\n", 1)[1]  # the indented log lines
    paths = RegistryPaths.for_port(local)
    assert not paths.pid.exists()
    assert processes_serving(paths.config) == []
    with pytest.raises(RegistryConfigError, match="does not exist"):
        start(config=RegistryConfig(port=local, auth="htpasswd", htpasswd=tmp_path / "nope"))


def test_htpasswd_mode_challenges_and_a_new_config_restarts(local: int, tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")  # nobody may log in: every request is challenged
    config = RegistryConfig(port=local, auth="htpasswd", htpasswd=htpasswd, realm="hardway-basic")
    locked = start(config=config)
    assert locked.running  # a 401 with the registry's API header counts as answering
    response = http().get(f"{locked.url}/v2/", timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="hardway-basic"'
    assert local_registry.ensure_running(local).pid == locked.pid  # keeps the running config
    opened = start(local)  # the default config differs: restart without auth
    assert opened.pid != locked.pid and gone(locked.pid)
    assert http().get(f"{opened.url}/v2/", timeout=5).status_code == 200


def test_cli_start_status_stop(local: int, tmp_path: Path) -> None:
    env = {**os.environ, "HARDWAY_STATE_DIR": str(tmp_path / "state")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "hardway", "registry", *args, "--port", str(local)]
        return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)

    first = cli("start")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[-1] == f"http://127.0.0.1:{local}"
    pid = int(re.search(r"\(pid (\d+),", lines[0]).group(1))
    second = cli("start")
    assert second.returncode == 0 and f"(pid {pid}," in second.stdout
    running = cli("status")
    assert running.returncode == 0 and running.stdout.startswith("registry: running on")
    stopped = cli("stop")
    assert (stopped.returncode, stopped.stdout) == (0, f"registry: stopped on port {local}\n")
    assert gone(pid)  # the CLI is not its parent: init reaps it
    assert processes_serving(RegistryPaths.for_port(local).config) == []
    after = cli("status")
    assert after.returncode == 3 and "not running" in after.stdout
    again = cli("stop")
    assert (again.returncode, again.stdout) == (0, f"registry: not running on port {local}\n")


def test_cli_reports_a_busy_port_without_traceback(local: int, tmp_path: Path) -> None:
    env = {**os.environ, "HARDWAY_STATE_DIR": str(tmp_path / "state")}
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", local))
        squatter.listen()
        argv = [sys.executable, "-m", "hardway", "registry", "start", "--port", str(local)]
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f"port {local} " in done.stderr and "Traceback" not in done.stderr


def test_another_checkouts_registry_on_the_port_serves_this_one(
    local: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instructor's ``/opt/course`` runs its registry on the port; a learner's own clone
    (another state directory) uses it as it is, and says whose it is where it cannot."""
    other = (tmp_path / "opt-course").resolve()
    other.mkdir()
    (other / "pyproject.toml").write_text("")  # a checkout: its state is other/.state
    monkeypatch.setenv("HARDWAY_STATE_DIR", str(other / ".state"))
    theirs = start(local, owned=False)
    monkeypatch.setenv("HARDWAY_STATE_DIR", str(tmp_path / "state"))
    env = {**os.environ}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "hardway", "registry", *args, "--port", str(local)]
        return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)

    try:
        assert not status(local).running, "not this checkout's registry"
        used = local_registry.ensure_running(local)
        assert (used.running, used.pid, used.state, used.auth) == (
            True, theirs.pid, theirs.state, "none",
        )  # fmt: skip
        assert processes_serving(RegistryPaths.for_port(local).config) == [], "none started"
        assert http().get(f"{used.url}/v2/", timeout=5).status_code == 200

        with pytest.raises(PortInUseError) as caught:  # a start of our own cannot listen
            start(local)
        whose = f"the course's registry of the checkout {other} (pid {theirs.pid})"
        assert whose in caught.value.message
        stop_it = f"HARDWAY_STATE_DIR={other / '.state'} python -m hardway registry stop"
        assert caught.value.fix.endswith(f"or stop it: {stop_it} --port {local}")

        started = cli("start")  # what `make lab` runs first
        assert started.returncode == 0, started.stderr
        assert f"(pid {theirs.pid}," in started.stdout and "used as it is" in started.stdout
        basic = cli("start", "--auth", "basic")  # another mode: ours would have to listen
        assert basic.returncode == 1 and whose in basic.stderr and stop_it in basic.stderr

        from hardway.course import doctor

        check = doctor.check_registry(port=local)
        assert check.status == "ok" and whose in check.detail
    finally:
        local_registry.stop_at(theirs.state)
    ours = local_registry.ensure_running(local)  # once theirs is gone: our own, started
    assert ours.state == RegistryPaths.for_port(local).root != theirs.state


# --- the session registry (tests/conftest.py) ------------------------------------


def test_the_session_registry_is_exported_to_children(registry: local_registry.RegistryStatus):
    assert os.environ["HARDWAY_REGISTRY_PORT"] == str(registry.port)
    assert registry.state.is_relative_to(Path(os.environ["HARDWAY_STATE_DIR"]).resolve())
    assert local_registry.ensure_running().pid == registry.pid
    response = http().get(f"{registry.url}/v2/", timeout=5)
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_the_next_test_run_sweeps_a_killed_runs_registry(tmp_path: Path, free_port: int) -> None:
    """A pytest killed with SIGKILL leaves its session registry; the next run stops it."""
    from conftest import sweep_dead_sessions

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that owned nothing and is dead: stands for the killed pytest
    state = tmp_path / f"hardway-pytest-{gone.pid}-abcd"
    env = {**os.environ, "HARDWAY_STATE_DIR": str(state)}
    cli = [sys.executable, "-m", "hardway", "registry"]
    subprocess.run(
        [*cli, "start", "--port", str(free_port)], env=env, check=True, capture_output=True
    )
    pid = int((state / "registry" / str(free_port) / "registry.pid").read_text())
    assert Path(f"/proc/{pid}").exists()

    assert sweep_dead_sessions(str(tmp_path)) == [pid]
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), "the orphaned registry is still running"
    assert not state.exists()
    assert port_free(free_port)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount")
def test_the_sweep_never_deletes_through_a_mount_left_in_a_dead_runs_directory(
    tmp_path: Path,
) -> None:
    """rmtree crosses mount points: what is mounted in a killed run's directory (it may be
    anything of the host) is left for cleanup, which unmounts first."""
    from conftest import sweep_dead_sessions

    gone = subprocess.Popen(["true"])
    gone.wait()
    point = tmp_path / f"hardway-pytest-{gone.pid}-efgh" / "mounted"
    point.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
    try:
        (point / "precious").write_text("not the test run's")
        sweep_dead_sessions(str(tmp_path))
        assert (point / "precious").exists()
    finally:
        subprocess.run(["umount", str(point)], check=True)


def test_garbage_collect_needs_a_registry_state_and_leaves_a_stopped_one_stopped(
    free_port: int,
) -> None:
    with pytest.raises(RegistryConfigError, match="no registry state for port"):
        local_registry.garbage_collect(free_port)
    start(free_port)
    try:
        empty = local_registry.garbage_collect(free_port)  # Distribution fails on no repository
        assert (empty.blobs, empty.manifests) == (0, 0) and status(free_port).running
        url = f"http://127.0.0.1:{free_port}"  # one repository, one unreferenced blob
        opened = requests.post(f"{url}/v2/gc/blob/blobs/uploads/", timeout=10)
        digest = "sha256:" + hashlib.sha256(b"orphan").hexdigest()
        location = requests.compat.urljoin(url, opened.headers["Location"])
        done = requests.put(f"{location}&digest={digest}", data=b"orphan", timeout=10)
        assert done.status_code == 201
        assert stop(free_port)
        collected = local_registry.garbage_collect(free_port, dry_run=True)
        assert (collected.blobs, collected.before) == (1, collected.after), "a dry run"
        assert not status(free_port).running, "collecting does not start a stopped registry"
        assert str(collected).startswith("garbage-collect: 1 blob(s) and 0 manifest(s)")
        swept = local_registry.garbage_collect(free_port)
        assert swept.after < swept.before and not status(free_port).running
    finally:
        stop(free_port)
