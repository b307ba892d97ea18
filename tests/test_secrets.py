"""Secrets: passwords and tokens never appear in reprs, exception messages, tracebacks,
logs, the registry's log or a notebook's outputs.

The registry is the real one in token mode, with the course's token service, started the
way the course starts them; every token the client receives from the service is recorded
and looked for by value, and anything shaped like a JWT (``eyJ….eyJ….``) counts as a
leak too.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from hardway.course import cleanup, leftovers
from hardway.distribution import registry as client
from hardway.distribution.auth import BearerAuth
from hardway.distribution.credentials import Credentials
from hardway.distribution.errors import UnauthorizedError
from hardway.distribution.options import Options
from hardway.distribution.server import local_registry, services
from hardway.distribution.server.local_registry import RegistryStatus
from hardway.distribution.server.paths import RegistryPaths
from hardway.distribution.server.tokenserver import Rule
from hardway.image.random import random_image

ROOT = Path(__file__).resolve().parent.parent
#: the test user's password: unlike the course's ("containers"), found in no other text
SECRET = "s3cret-Pa55word"
WRONG = "wr0ng-Pa55word"
JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}")


def leaks(text: str, issued: list[str], *passwords: str) -> list[str]:
    """Every secret found in ``text``: a password (also as Basic auth), a token issued,
    anything shaped like a JWT."""
    found = []
    for password in passwords:
        basic = base64.b64encode(f"learner:{password}".encode()).decode()
        found += [s for s in (password, basic) if s in text]
    found += [token[:20] + "…" for token in issued if token in text]
    found += [m[:20] + "…" for m in JWT.findall(text)]
    return found


@pytest.fixture(scope="module")
def secured() -> Iterator[tuple[RegistryStatus, list]]:
    """A token-mode registry with the test's user; every token the client fetches from
    its token service is recorded."""
    from conftest import find_free_port

    # pushing to locked/… is not granted: a token without push, refused by the registry
    acl = (Rule("*", "locked/*", ("pull",)), Rule("*", "*", ("pull", "push")))
    users = {"learner": SECRET}
    started = local_registry.start_mode(find_free_port(), "token", users=users, acl=acl)
    issued: list[str] = []
    fetch = BearerAuth._fetch

    def recording(self: BearerAuth, realm: str, service: str, scopes: list[str]):
        token, lifetime = fetch(self, realm, service, scopes)
        issued.append(token)
        return token, lifetime

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(BearerAuth, "_fetch", recording)
            yield started, issued
    finally:
        local_registry.stop(started.port)


def test_reprs_and_strs_show_no_secret(secured) -> None:
    started, issued = secured
    creds = Credentials("learner", SECRET)
    image = random_image(1000, 1, seed=1001)
    with client.client_for(f"{started.host}/app/secret:v1", push=True, credentials=creds) as reg:
        reg.write_image(image, "app/secret", "v1")
        auth = reg.auth
        assert isinstance(auth, BearerAuth) and issued, "a token was fetched and is held"
        shown = [repr(creds), str(creds), f"{creds}", repr(auth), str(auth), repr(reg)]
    every = Credentials("learner", SECRET, identity_token="idtok-1234", registry_token="rt-5678")
    shown += [repr(every), str(every), repr(Options(credentials=every)), repr(BearerAuth(every))]
    shown += [repr(started), str(started)]
    for text in shown:
        assert not leaks(text, issued, SECRET, "idtok-1234", "rt-5678"), text


def formatted(exc: BaseException) -> str:
    """Everything a learner could see of an exception: message, fix, repr, traceback."""
    parts = [str(exc), repr(exc), str(getattr(exc, "fix", "")), repr(exc.args)]
    parts += [str(d) for d in getattr(exc, "diagnostics", [])]
    parts += traceback.format_exception(exc)
    return "\n".join(parts)


def test_errors_show_no_password_and_no_token(secured) -> None:
    started, issued = secured
    image = random_image(1000, 1, seed=1002)
    with pytest.raises(UnauthorizedError) as wrong:
        client.push(
            image, f"{started.host}/app/wrong:v1", credentials=Credentials("learner", WRONG)
        )
    assert "refused" in str(wrong.value)
    assert not leaks(formatted(wrong.value), issued, WRONG)

    before = len(issued)
    with pytest.raises(UnauthorizedError) as denied:
        client.push(
            image, f"{started.host}/locked/app:v1", credentials=Credentials("learner", SECRET)
        )
    assert len(issued) > before, "a token was issued (without push) and sent"
    assert not leaks(formatted(denied.value), issued, SECRET)


def test_logs_show_no_password_and_no_token(secured, caplog: pytest.LogCaptureFixture) -> None:
    started, issued = secured
    image = random_image(1000, 2, seed=1003)
    with caplog.at_level(logging.DEBUG):
        client.push(
            image, f"{started.host}/app/logged:v1", credentials=Credentials("learner", SECRET)
        )
        client.pull(f"{started.host}/app/logged:v1", credentials=Credentials("learner", SECRET))
    assert caplog.records, "urllib3 logs each request at DEBUG"
    assert not leaks(caplog.text, issued, SECRET)
    paths = RegistryPaths(started.state)
    server_log = paths.log.read_text(errors="replace")
    assert "app/logged" in server_log, "the registry logged the requests"
    assert not leaks(server_log, issued, SECRET)
    token_log = paths.token_log.read_text(errors="replace")
    assert "repository:app/logged:" in token_log, "the token service logged its answers"
    assert not leaks(token_log, issued, SECRET)


def test_the_command_line_shows_no_password(secured) -> None:
    started, issued = secured
    done = subprocess.run(
        [sys.executable, "-m", "hardway", "inspect", f"docker://{started.host}/app/secret:v1",
         "--creds", f"learner:{WRONG}"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "error:" in done.stderr
    assert not leaks(done.stdout + done.stderr, issued, WRONG)


def _on_a_terminal(argv: list[str], answer: str) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal, type ``answer`` at its password prompt, and
    return its exit status and everything the terminal showed."""
    import pty
    import select

    leader, follower = pty.openpty()
    child = subprocess.Popen(
        argv, stdin=follower, stdout=follower, stderr=follower, cwd=ROOT, start_new_session=True
    )
    os.close(follower)
    shown, typed = b"", False
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            child.kill()
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
        if not typed and b"Password:" in shown:
            os.write(leader, answer.encode() + b"\n")
            typed = True
    os.close(leader)
    return child.wait(timeout=60), shown.decode(errors="replace")


def test_login_prompts_without_echo_and_stores_no_secret_in_sight(secured, tmp_path: Path) -> None:
    started, issued = secured
    authfile = tmp_path / "config.json"
    login = [sys.executable, "-m", "hardway", "login", started.host, "--username", "learner"]
    status, shown = _on_a_terminal([*login, "--authfile", str(authfile)], SECRET)
    assert status == 0 and "Login Succeeded" in shown, shown
    assert not leaks(shown, issued, SECRET), "the terminal did not echo the password"
    assert authfile.stat().st_mode & 0o777 == 0o600, "only its owner may read the file"
    status, shown = _on_a_terminal([*login, "--authfile", str(tmp_path / "w.json")], WRONG)
    assert status == 1 and "error:" in shown and not leaks(shown, issued, WRONG)
    assert not (tmp_path / "w.json").exists()
    done = subprocess.run(
        [*login, "--password-stdin", "--authfile", str(authfile)],
        input=SECRET + "\n", capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and not leaks(done.stdout + done.stderr, issued, SECRET)
    paths = RegistryPaths(started.state)
    for log in (paths.log, paths.token_log):
        assert not leaks(log.read_text(errors="replace"), issued, SECRET, WRONG)


# --- notebooks ------------------------------------------------------------------------

#: the notebooks that use credentials or tokens
AUTH_NOTEBOOKS = ["notebooks/07-push.ipynb", "solutions/07-push.ipynb"]
#: the course's password, as a word (its capitalised form is in ordinary prose)
COURSE_PASSWORD = re.compile(r"\bcontainers\b")


def execute(nb: nbformat.NotebookNode, where: Path) -> nbformat.NotebookNode:
    """Run ``nb`` in a fresh kernel (which inherits the session registry's environment)
    and shut the kernel down, as Jupyter does."""
    from nbclient import NotebookClient

    client_ = NotebookClient(
        nb, kernel_name="python3", timeout=300, allow_errors=True,
        resources={"metadata": {"path": str(where)}},
    )  # fmt: skip
    client_.execute()
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    """Every output of every cell: streams, every data type, errors and tracebacks."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts += [str(value) for value in out.get("data", {}).values()]
            parts += [out.get("ename", ""), out.get("evalue", ""), *out.get("traceback", [])]
    return "\n".join(parts)


@pytest.fixture
def own_registry(tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch):
    """The kernel gets a registry of its own, so that what the notebook pushes and
    deletes cannot change what nbval sees in the session registry later."""
    monkeypatch.setenv("HARDWAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HARDWAY_REGISTRY_PORT", str(free_port))
    before = {str(s) for s in services.services()}
    yield before
    from hardway.distribution.server import local_registry

    local_registry.stop(free_port)  # the default port of the kernel: it keeps it running


def new_services(before: set[str]) -> list[str]:
    port = os.environ["HARDWAY_REGISTRY_PORT"]
    now = {str(s) for s in services.services()} - before
    return sorted(s for s in now if not s.startswith(f"registry on port {port} "))


@pytest.mark.parametrize("path", AUTH_NOTEBOOKS)
def test_auth_notebooks_print_no_password_and_no_token(path: str, own_registry: set) -> None:
    nb = execute(nbformat.read(ROOT / path, as_version=4), (ROOT / path).parent)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0]["evalue"] if errors else ""
    text = outputs_text(nb)
    assert text.strip(), "the notebook printed something to scan"
    assert not COURSE_PASSWORD.findall(text)
    assert not leaks(text, [], "containers")
    assert "$2b$" not in text, "a bcrypt hash of the htpasswd file"
    assert new_services(own_registry) == [], "its token registry stopped"


def test_notebook_07_interrupted_midway_stops_its_token_registry_with_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_registry: set
) -> None:
    """The learner stops after the token registry started and shuts the kernel down (or
    restarts it): the registry and its token service must not outlive the kernel, and
    ``cleanup`` removes the working directory it left."""
    temp = tmp_path / "kernel-tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # the kernel's temporary directory
    nb = nbformat.read(ROOT / "notebooks/07-push.ipynb", as_version=4)
    started = next(i for i, c in enumerate(nb.cells) if "start_mode(" in c.source)
    nb.cells = nb.cells[: started + 1]
    nb.cells.append(nbformat.v4.new_code_cell("local_registry.status(secure_port).running"))
    nb = execute(nb, ROOT / "notebooks")
    assert nb.cells[-1].outputs[0]["data"]["text/plain"] == "True", "it was running"
    assert new_services(own_registry) == []
    left = leftovers.stale_temp_dirs(temp)
    assert [p.name[:11] for p in left] == ["hardway-07-"], "its working directory is left"
    removed = cleanup.cleanup(os.environ["HARDWAY_SESSION"], temp=temp)
    assert removed == [f"temporary directory {left[0]}"]
    assert list(temp.iterdir()) == []
