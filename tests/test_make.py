"""The Makefile's promises: setup is reused, and `make lab` serves the course.

These run the real targets in a subprocess, the way a learner types them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_second_setup_reuses_everything() -> None:
    """`make setup` after a setup installs nothing: the venv stamp is up to date."""
    assert make("--question", "venv").returncode == 0, "the .venv is not up to date after setup"
    result = make("setup")
    assert result.returncode == 0, result.stderr
    assert "Debian packages present" in result.stdout
    assert "creating .venv" not in result.stdout


def test_setup_ships_jupyterlabs_quiet_defaults_with_the_venv() -> None:
    """No news prompt and no update check: the overrides are installed where JupyterLab
    reads them, and every value is one its schema allows."""
    jsonschema = pytest.importorskip("jsonschema")
    lab_dir = ROOT / ".venv" / "share" / "jupyter" / "lab"
    installed = lab_dir / "settings" / "overrides.d" / "hardway.json"
    assert make("--question", str(installed.relative_to(ROOT))).returncode == 0, "not up to date"
    overrides = json.loads(installed.read_text())
    assert overrides == json.loads((ROOT / "tools" / "jupyterlab-overrides.json").read_text())
    notification = overrides["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}
    for plugin, values in overrides.items():
        package, _, name = plugin.partition(":")
        schema = json.loads((lab_dir / "schemas" / package / f"{name}.json").read_text())
        jsonschema.validate(values, schema)  # a misspelt name or a wrong type fails here


def test_help_lists_the_two_first_commands() -> None:
    out = make("help").stdout
    assert "lab " in out and "test " in out


@pytest.mark.slow
def test_make_lab_serves_jupyterlab_and_the_registry(tmp_path: Path) -> None:
    lab_port, registry_port, token = free_port(), free_port(), "hardway-test-token"
    env = {**os.environ, "HARDWAY_STATE_DIR": str(tmp_path / "state")}
    lab = subprocess.Popen(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(ROOT),
            "lab",
            f"LAB_PORT={lab_port}",
            f"REGISTRY_PORT={registry_port}",
            f"LAB_ARGS=--no-browser --IdentityProvider.token={token}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{lab_port}/lab?token={token}"
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and lab.poll() is None:
            try:
                status = requests.get(url, timeout=2).status_code
                if status == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        if status != 200:
            output = lab.stdout.read() if lab.poll() is not None else "(still running)"
            pytest.fail(f"JupyterLab did not answer 200 on {url} (last: {status}):\n{output}")
        # the bare address (and the URL JupyterLab prints) opens notebook 00
        home = requests.get(url.replace("/lab?", "/?"), timeout=5, allow_redirects=False)
        assert home.status_code == 302, home.status_code
        assert home.headers["Location"].split("?")[0] == "/lab/tree/notebooks/00-welcome.ipynb"
        # and the settings JupyterLab serves have the course's quiet defaults
        settings = requests.get(
            f"http://127.0.0.1:{lab_port}/lab/api/settings/"
            "@jupyterlab/apputils-extension:notification",
            params={"token": token},
            timeout=10,
        ).json()["schema"]["properties"]
        assert settings["fetchNews"]["default"] == "false"
        assert settings["checkForUpdates"]["default"] is False
        v2 = requests.get(f"http://127.0.0.1:{registry_port}/v2/", timeout=5)
        assert v2.status_code == 200
        assert v2.headers.get("Docker-Distribution-Api-Version") == "registry/2.0"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
        subprocess.run(
            [sys.executable, "-m", "hardway", "registry", "stop", "--port", str(registry_port)],
            env=env,
            capture_output=True,
            check=False,
        )
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{registry_port}/v2/", timeout=2)
