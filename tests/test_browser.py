"""The course in a real browser: JupyterLab started the way ``make lab`` starts it, a
chapter with a widget opened in headless Chromium (Debian's, driven by Playwright), every
cell run, and the page checked — a widget rendered, no cell errored, no news prompt (the
quiet defaults `make setup` ships with the .venv) — with a screenshot
left in ``test-output/browser/`` for a person to look at.

Skipped, with the reason, when Playwright or Chromium is missing (``make setup`` installs
both). The chapter runs from a copy, so JupyterLab's autosave never writes outputs into
the committed notebook; the server, its kernels and the browser are all stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "05-layers.ipynb"  # fast, and its layer explorer is a widget with tabs
OUTPUT = ROOT / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: the flags of a quiet, offline, headless Chromium (no sandbox: the test runs as root)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
JUPYTER = Path(sys.executable).parent / "jupyter"
#: every cell in the page (no virtual scrolling), no autosave. Nothing about news or
#: updates: the quiet defaults must come from the overrides `make setup` ships with the .venv
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {
        "autosave": False,
        "autoStartDefaultKernel": True,  # no "Select Kernel" dialog
    },
}
#: JupyterLab's question on a first start, unless its settings say "never"
NEWS_PROMPT = "Would you like to get notified about official Jupyter news?"

playwright = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (make setup installs it)"
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make setup)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="chapter 05 mounts an overlay: needs root"),
]


@pytest.fixture
def lab(tmp_path: Path, free_port: int, registry) -> Iterator[tuple[str, str]]:
    """JupyterLab on a copy of the chapter, as ``make lab`` runs it; (base URL, token)."""
    (tmp_path / "notebooks").mkdir()
    nb = nbformat.read(ROOT / "notebooks" / CHAPTER, as_version=4)
    for cell in nb.cells:  # no stored prompt or output may pass for one of this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, tmp_path / "notebooks" / CHAPTER)
    settings = tmp_path / "settings"
    for plugin, values in SETTINGS.items():
        (settings / plugin).parent.mkdir(parents=True, exist_ok=True)
        (settings / plugin).write_text(json.dumps(values))
    token = secrets.token_hex(16)
    env = {
        **os.environ,  # HARDWAY_REGISTRY_PORT & co: the session registry (conftest)
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
    }
    argv = [
        str(JUPYTER), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={free_port}",
        f"--ServerApp.token={token}", f"--ServerApp.root_dir={tmp_path}", "--allow-root",
        "--ServerApp.port_retries=0",
    ]  # fmt: skip
    with (tmp_path / "jupyter.log").open("wb") as log:
        server = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{free_port}"
    try:
        wait_for_server(url, token, server, tmp_path / "jupyter.log")
        yield url, token
    finally:
        stop_server(url, token, server)


def wait_for_server(url: str, token: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/api/status", params={"token": token}, timeout=2).ok:
                return
        time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer within 60 s:\n{log.read_text()[-2000:]}")


def _stat(pid: int | str) -> tuple[int, int]:
    """(parent pid, start time) of a process, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> set[tuple[int, int]]:
    """(pid, start time) of every process below ``pid``: a kernel runs in a session of
    its own, so killing the server's group misses it."""
    procs: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            procs[int(entry.name)] = _stat(entry.name)
    found: set[tuple[int, int]] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, started) in procs.items():
            if ppid == parent and (child, started) not in found:
                found.add((child, started))
                todo.append(child)
    return found


def _kill(pid: int, started: int) -> None:
    """SIGKILL ``pid`` if it is still the process that started at ``started`` (not a reuse)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        if _stat(pid)[1] == started:
            os.kill(pid, signal.SIGKILL)


def stop_server(url: str, token: str, server: subprocess.Popen) -> None:
    """Kernels first (through the API), then the server, then anything left in its group,
    then any kernel that outlived all that (it has a session of its own)."""
    kernels = descendants(server.pid)
    with contextlib.suppress(requests.RequestException):
        for kernel in requests.get(f"{url}/api/kernels", params={"token": token}, timeout=5).json():
            requests.delete(
                f"{url}/api/kernels/{kernel['id']}", params={"token": token}, timeout=10
            )
        requests.post(f"{url}/api/shutdown", params={"token": token}, timeout=5)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.terminate()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # a kernel that ignored its shutdown
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=10)
    for pid, started in kernels | descendants(server.pid):
        _kill(pid, started)


def test_chapter_runs_in_the_browser_and_shows_its_widget(lab: tuple[str, str]) -> None:
    url, token = lab
    OUTPUT.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT / f"{Path(CHAPTER).stem}.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/lab/tree/notebooks/{CHAPTER}?token={token}")
            run_all_cells(page)
            wait_until_every_cell_ran(page)
            widget = page.locator(".hw-layer-explorer").first
            try:
                widget.wait_for(state="visible", timeout=30_000)
                widget.get_by_text("1: change.tar").click()  # the layer with whiteouts
                widget.scroll_into_view_if_needed()
                deleted = widget.locator(".hw-deleted", has_text="motd")
                deleted.wait_for(state="visible", timeout=10_000)
            finally:
                page.screenshot(path=str(shot))  # also when it failed: show what was there
            assert widget.is_visible(), "the layer explorer did not render"
            assert page.locator(".jupyter-widgets").first.is_visible()
            assert deleted.is_visible(), "the second tab does not strike out etc/motd"
            # the page is long restored: a news prompt would be on screen by now
            assert page.get_by_text(NEWS_PROMPT).count() == 0, "JupyterLab asks about news"
            assert page.locator(".jp-toast-message, .Toastify__toast").count() == 0, page.locator(
                ".Toastify"
            ).inner_text()
            errors = page.locator(
                '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
            ).all_inner_texts()
            tracebacks = [e for e in errors if "Traceback" in e or "Error" in e]
            assert not tracebacks, f"a cell failed:\n{tracebacks[0][:2000]}"
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000, "the screenshot is empty"


def run_all_cells(page) -> None:
    """Run → Run All Cells, once the notebook is open and its kernel idle."""
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    with contextlib.suppress(playwright.Error):  # a "Select Kernel" dialog, if one comes
        page.locator(".jp-Dialog").get_by_role("button", name="Select").click(timeout=5_000)
    wait_for_idle_kernel(page)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()


def wait_for_idle_kernel(page) -> None:
    page.wait_for_function(
        """() => {
            const s = document.querySelector('.jp-Notebook-ExecutionIndicator');
            const text = document.querySelector('.jp-KernelStatus, .jp-StatusBar-TextItem');
            return (s && s.getAttribute('data-status') === 'idle')
                || (text && /Idle/.test(document.body.innerText));
        }""",
        timeout=90_000,
    )


def wait_until_every_cell_ran(page) -> None:
    """Every code cell shows ``[n]`` — none ``[*]`` (running) or ``[ ]`` (not run)."""
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        timeout=120_000,
    )
