"""tools/vm.py and tools/vm_image.py: the pure cgroup v2 VM that `make test-vm` boots.

The guest's own run is `make test-vm`; here the host checks what that run depends on:
the subset still names tests that exist (modules are being split and renamed), the nbval
flags are the Makefile's, the exit status is read only from this run's marker, the image
is keyed by its inputs, the run disk carries the checkout and its init — and, where this
machine can run qemu, that the image really boots on pure cgroup v2.
"""

from __future__ import annotations

import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import vm  # noqa: E402
import vm_image  # noqa: E402

# -- the subset ----------------------------------------------------------------------------


def _exists(node: str) -> bool:
    path, _, name = node.partition("::")
    if not (ROOT / path).is_file():
        return False
    return not name or re.search(rf"^def {re.escape(name)}\(", (ROOT / path).read_text(), re.M)


def test_the_subset_names_tests_that_exist() -> None:
    missing = [node for node in vm.SUBSET if not _exists(node)]
    assert not missing, f"tools/vm.py SUBSET names tests that are gone (renamed?): {missing}"


def test_the_subset_covers_cgroups_the_runtime_and_chapters_02_to_04() -> None:
    files = {node.partition("::")[0] for node in vm.SUBSET}
    assert {"tests/test_cgroups.py", "tests/test_runtime.py"} <= files
    for folder in ("notebooks", "solutions"):
        for chapter in ("02", "03", "04"):
            (notebook,) = (ROOT / folder).glob(f"{chapter}-*.ipynb")
            assert str(notebook.relative_to(ROOT)) in files


def test_expected_failures_are_in_the_subset() -> None:
    for node in vm.EXPECTED_FAILURES:
        assert any(node == s or node.startswith(f"{s}::") for s in vm.SUBSET), node
        assert vm.EXPECTED_FAILURES[node].strip(), f"{node}: say why it fails"


def test_the_guest_runs_the_makefiles_nbval_flags_with_a_longer_cell_timeout() -> None:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    (line,) = re.findall(r"^NBVAL_ARGS :=(.*)$", text, re.M)
    host = shlex.split(line)
    guest = vm.NBVAL_ARGS

    def timeout(args: list[str]) -> int:
        (value,) = [a.split("=", 1)[1] for a in args if a.startswith("--nbval-cell-timeout=")]
        return int(value)

    def others(args: list[str]) -> list[str]:
        return [a for a in args if not a.startswith("--nbval-cell-timeout=")]

    assert others(guest) == others(host)
    assert timeout(guest) >= timeout(host)


def test_the_guest_command_runs_the_subset_unless_tests_are_named() -> None:
    command = vm.pytest_command([])
    assert command[:3] == ["python", "-m", "pytest"]
    assert command[-len(vm.SUBSET) :] == vm.SUBSET
    assert vm.pytest_command(["-x"])[-len(vm.SUBSET) :] == vm.SUBSET
    named = vm.pytest_command(["tests/test_cgroups.py"])
    assert named[-1] == "tests/test_cgroups.py" and vm.SUBSET[0] not in named[:-1]


# -- reading the console -------------------------------------------------------------------


def test_the_status_is_read_from_this_runs_marker() -> None:
    assert vm.parse_status("boot\nHARDWAY-VM-STATUS 5eed 0\npower off\n", "5eed") == 0
    assert vm.parse_status("HARDWAY-VM-STATUS 5eed 3\n", "5eed") == 3


@pytest.mark.parametrize(
    "console",
    [
        "",  # qemu never started the guest
        "hardway-vm: booted in 9 s\n=== 158 passed ===\n",  # a crash or a timeout: no marker
        "HARDWAY-VM-STATUS cafe 0\n",  # another run's nonce
        "echo HARDWAY-VM-STATUS 5eed 0\n",  # the marker inside another line (a test's output)
        "HARDWAY-VM-STATUS 5eed \n",  # cut off
        "HARDWAY-VM-STATUS 5eed 0\nHARDWAY-VM-STATUS 5eed 1\n",  # two answers
    ],
    ids=["empty", "no-marker", "other-nonce", "mid-line", "cut-off", "twice"],
)
def test_a_console_without_exactly_one_marker_is_an_error(console: str) -> None:
    with pytest.raises(vm.VmError, match="exit status"):
        vm.parse_status(console, "5eed")


def test_the_init_prints_the_marker_after_the_command_and_powers_off() -> None:
    init = vm.stage2("5eed", ["python", "-m", "pytest", "it's"])
    lines = init.splitlines()
    command = next(i for i, line in enumerate(lines) if "python -m pytest" in line)
    marker = lines.index('echo "HARDWAY-VM-STATUS 5eed $status"')
    assert command < marker < lines.index("echo o > /proc/sysrq-trigger")
    assert "'it'\"'\"'s'" in lines[command]  # quoted for the shell
    assert "mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup" in lines
    assert not any(" cgroup " in line and line.startswith("mount") for line in lines)  # no v1


# -- the image's inputs --------------------------------------------------------------------


def test_the_guest_gets_the_packages_dependencies_and_the_test_tools_pinned() -> None:
    requirements = vm_image.guest_requirements()
    names = {r.split("==")[0].lower() for r in requirements}
    assert {"requests", "nbclient", "ipykernel", "pytest", "nbval", "ipywidgets"} <= names
    assert all("==" in r for r in requirements), requirements
    assert "playwright" not in names and "ruff" not in names  # no browser, no lint in the guest


def test_the_cache_key_follows_the_lock(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    before = vm_image.cache_key(tmp_path)
    assert before == vm_image.cache_key(ROOT)
    with (tmp_path / "requirements.lock").open("a") as lock:
        lock.write("newpackage==1.0\n")
    assert vm_image.cache_key(tmp_path) != before


def test_the_mirror_is_the_one_apt_uses(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(vm_image, "_os_release", lambda: {"VERSION_CODENAME": "bookworm"})
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    (tmp_path / "sources.list.d" / "b.list.disabled").write_text(
        "deb http://never.example/debian bookworm main\n"
    )
    assert vm_image.apt_source(tmp_path) == (
        "http://mirror.example/debian",
        "bookworm",
        "/usr/share/keyrings/debian-archive-keyring.gpg",
    )
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
    )
    assert vm_image.apt_source(tmp_path) == ("http://one.example/debian", "bookworm", "/k.gpg")


# -- the run disk and the real guest -------------------------------------------------------


@pytest.mark.skipif(shutil.which("debugfs") is None, reason="needs e2fsprogs (debugfs)")
def test_the_run_disk_carries_the_checkout_and_this_runs_init(tmp_path: Path) -> None:
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    disk = vm.make_run_disk(tmp_path, "5eed", ["true"], python=python)

    def debugfs(request: str) -> str:
        done = subprocess.run(
            ["debugfs", "-R", request, str(disk)], capture_output=True, text=True, check=True
        )
        return done.stdout

    top = debugfs("ls -p /")
    for name in [*vm.CHECKOUT, ".vm"]:
        assert f"/{name}/" in top, (name, top)
    assert "HARDWAY-VM-STATUS 5eed $status" in debugfs("cat /.vm/init")
    assert "cgroups.cpython" in debugfs("ls -p /hardway/isolation/__pycache__")  # precompiled
    assert list(tmp_path.iterdir()) == [disk]  # the staging tree is gone


@pytest.mark.slow
def test_the_guest_boots_on_pure_cgroup_v2() -> None:
    """Builds the image unless cached (minutes, once), boots it, reads its cgroup tree."""
    if reason := vm.unable():
        pytest.skip(reason)
    console = io.StringIO()
    command = "cat /proc/self/cgroup; grep cgroup /proc/mounts"
    status = vm.run(["sh", "-c", command], [], timeout=600, echo=console)
    text = console.getvalue()
    assert status == 0, text
    (controllers,) = re.findall(r"^hardway-vm: cgroup2 controllers: (.*)$", text, re.M)
    assert {"cpu", "memory", "pids", "io"} <= set(controllers.split()), text
    assert f"0::/{vm.SESSION}" in text.splitlines(), text
    mounts = [line for line in text.splitlines() if " /sys/fs/cgroup" in line]
    assert [m.split()[2] for m in mounts] == ["cgroup2"], text  # pure v2: no v1 anywhere
