"""`registry start --auth none|basic|token`, `registry stop` leaving nothing behind, and
`registry seed` (the busybox base image), judged by the real registry and skopeo."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from hardway.cli import main
from hardway.course.seed import BASE_REPOSITORY, seed_base_image
from hardway.distribution import registry as client
from hardway.distribution.credentials import Credentials
from hardway.distribution.errors import UnauthorizedError
from hardway.distribution.server import local_registry
from hardway.distribution.server.modes import token_service_pid
from hardway.image.random import random_image

GOOD = Credentials("learner", "containers")


def _alive(pid: int) -> bool:
    return (
        Path(f"/proc/{pid}/cmdline").exists() and Path(f"/proc/{pid}/cmdline").read_bytes() != b""
    )


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_token_mode_round_trip_then_stop_leaves_nothing(free_port: int, capsys) -> None:
    assert main(["registry", "start", "--auth", "token", "--port", str(free_port)]) == 0
    try:
        current = local_registry.status(free_port)
        assert current.running and current.auth == "token"
        token_pid = token_service_pid(current.state)
        assert token_pid is not None and _alive(token_pid)
        assert main(["registry", "start", "--auth", "token", "--port", str(free_port)]) == 0
        assert local_registry.status(free_port).pid == current.pid, "same mode: left alone"
        capsys.readouterr()
        assert main(["registry", "status", "--port", str(free_port)]) == 0
        assert "auth token" in capsys.readouterr().out
        image = random_image(3000, 2, seed=701)
        ref = f"127.0.0.1:{free_port}/modes/app:v1"
        assert client.push(image, ref, credentials=GOOD) == image.digest()
        assert client.pull(ref, credentials=GOOD).digest() == image.digest()
        with pytest.raises(UnauthorizedError):
            client.pull(ref, credentials=Credentials())
    finally:
        assert main(["registry", "stop", "--port", str(free_port)]) == 0
    assert not _alive(token_pid), "the token service is gone"
    assert not _alive(current.pid), "the registry is gone"
    assert token_service_pid(current.state) is None
    assert _port_free(free_port)


def test_switching_modes_restarts_and_stops_the_token_service(free_port: int) -> None:
    from hardway.distribution.server.local_registry import start_mode

    try:
        token = start_mode(free_port, "token")
        token_pid = token_service_pid(token.state)
        basic = start_mode(free_port, "basic")
        assert basic.auth == "basic" and basic.pid != token.pid
        assert not _alive(token_pid) and token_service_pid(basic.state) is None
        image = random_image(500, 1, seed=702)
        ref = f"127.0.0.1:{free_port}/modes/basic:v1"
        assert client.push(image, ref, credentials=GOOD) == image.digest()
        none = start_mode(free_port, "none")
        assert none.auth == "none" and client.pull(ref).digest() == image.digest()
    finally:
        local_registry.stop(free_port)
    assert _port_free(free_port)


def test_token_mode_with_the_callers_users_rules_and_key(free_port: int, tmp_path: Path) -> None:
    """What a test may ask of the one way to start token mode: its own users, rules and
    signing key. Asked again the same way it is left alone; asked otherwise, restarted."""
    from cryptography import x509

    from hardway.distribution.server.local_registry import start_mode
    from hardway.distribution.server.paths import RegistryPaths
    from hardway.distribution.server.tokenserver import Rule, new_signing_key, save_signing_key

    key, _ = new_signing_key()
    setup = {
        "users": {"tester": "pw-1"},
        "acl": (Rule("*", "locked/*", ("pull",)), Rule("*", "*", ("pull", "push"))),
        "signing_key": save_signing_key(key, tmp_path / "key.pem"),
    }
    tester, image = Credentials("tester", "pw-1"), random_image(500, 1, seed=703)
    try:
        first = start_mode(free_port, "token", **setup)
        token_pid = token_service_pid(first.state)
        again = start_mode(free_port, "token", **setup)
        assert (again.pid, token_service_pid(again.state)) == (first.pid, token_pid)
        cert = x509.load_pem_x509_certificate(RegistryPaths(first.state).token_cert.read_bytes())
        assert cert.public_key() == key.public_key(), "the registry trusts the given key"
        assert client.push(image, f"{first.host}/app:v1", credentials=tester) == image.digest()
        with pytest.raises(UnauthorizedError):
            client.push(image, f"{first.host}/locked/app:v1", credentials=tester)
        with pytest.raises(UnauthorizedError):
            client.pull(f"{first.host}/app:v1", credentials=GOOD)  # not a user here
        rules = {**setup, "acl": (Rule("*", "*", ("pull", "push")),)}
        assert start_mode(free_port, "token", **rules).pid != first.pid, "other rules"
        assert not _alive(token_pid)
        default = start_mode(free_port, "token")
        assert client.pull(f"{default.host}/app:v1", credentials=GOOD).digest() == image.digest()
        basic = start_mode(free_port, "basic", users={"tester": "pw-1"})
        assert basic.pid != default.pid and start_mode(free_port, "basic").pid != basic.pid
    finally:
        local_registry.stop(free_port)
    assert _port_free(free_port)


@pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo")
def test_seed_is_reproducible_idempotent_and_skopeo_reads_it(registry, capsys) -> None:
    first = seed_base_image(registry.port)
    again = seed_base_image(registry.port)
    assert again.digest == first.digest and again.uploaded == 0
    assert main(["registry", "seed", "--port", str(registry.port)]) == 0
    assert "0 blobs uploaded" in capsys.readouterr().out
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{first.reference}"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    info = json.loads(out)
    assert info["Digest"] == str(first.digest)
    assert info["Name"] == f"127.0.0.1:{registry.port}/{BASE_REPOSITORY}"
    assert info["Created"] == "2023-11-14T22:13:20Z" and len(info["Layers"]) == 1


def test_seed_uses_the_credentials_login_stored(
    free_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    local_registry.start_mode(free_port, "basic")
    try:
        with pytest.raises(UnauthorizedError):
            seed_base_image(free_port)
        monkeypatch.setattr("sys.stdin", io.StringIO("containers\n"))
        host = f"127.0.0.1:{free_port}"
        assert main(["login", host, "-u", "learner", "--password-stdin"]) == 0
        assert seed_base_image(free_port).reference == f"{host}/{BASE_REPOSITORY}:latest"
    finally:
        local_registry.stop(free_port)
