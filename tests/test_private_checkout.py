"""A checkout where only root may look: ``/root`` (mode 0700, where a root shell starts on
a fresh VM) or any ``mktemp -d``. Code that runs as ``nobody`` must still import
``hardway`` (:mod:`hardway.sys.importable`), and the tests that run as ``nobody`` must pass
in such a checkout: the last test clones this repository into a 0700 directory and runs
them there, as a learner's ``git clone …; make test`` in ``/root`` would.
"""

from __future__ import annotations

import doctest
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import hardway.sys.importable
from hardway.errors import HardwayError
from hardway.sys import importable
from hardway.sys.importable import can_read, importable_for

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: runs code as nobody")
#: the tests that run Python as nobody with the checkout on its PYTHONPATH, and one whose
#: launcher becomes nobody after its imports (as notebook 02's rootless cell does)
NOBODY_TESTS = [
    "tests/test_doctor.py::test_doctor_as_nobody_sees_the_unprivileged_machine",
    "tests/test_namespaces.py::test_the_rootless_path_as_a_real_unprivileged_user",
    "tests/test_namespaces.py::test_user_namespace_maps_root_inside_to_nobody_outside",
]


@pytest.fixture
def place() -> Iterator[Path]:
    """A directory others may enter (pytest's own ``tmp_path`` lies under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="hardway-test-import-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_doctests() -> None:
    assert doctest.testmod(hardway.sys.importable).failed == 0


def test_can_read_follows_the_owner_group_and_other_bits(place: Path) -> None:
    top = place / "top"
    (top / "pkg").mkdir(parents=True)
    (top / "pkg" / "mod.py").write_text("x = 1\n")
    top.chmod(0o700)
    assert not can_read(top / "pkg" / "mod.py", NOBODY, [NOBODY])
    assert can_read(top / "pkg" / "mod.py", 0, [0]), "root reads everything"
    if os.geteuid() == 0:  # owned by nobody: the owner bits count
        os.chown(top, NOBODY, 0)
        assert can_read(top / "pkg" / "mod.py", NOBODY, [NOBODY])
        os.chown(top, 0, NOBODY)  # nobody's group: the group bits (none) count
        assert not can_read(top / "pkg" / "mod.py", NOBODY, [NOBODY])
        top.chmod(0o710)
        assert can_read(top / "pkg" / "mod.py", NOBODY, [NOBODY])
        os.chown(top, 0, 0)
    top.chmod(0o711)  # others may pass through, not list
    assert can_read(top / "pkg" / "mod.py", NOBODY, [NOBODY])
    assert not can_read(top, NOBODY, [NOBODY]), "a directory must be readable to be read"
    (top / "pkg" / "mod.py").chmod(0o600)
    assert not can_read(top / "pkg" / "mod.py", NOBODY, [NOBODY])
    assert not can_read(top / "missing", NOBODY, [NOBODY])


def private_checkout(private: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake checkout in *private* (mode 0700) that ``importable`` takes for ours."""
    package = fake_checkout(private)
    private.chmod(0o700)
    monkeypatch.setattr(importable, "package_parent", lambda: package.parent)
    return package


def fake_checkout(place: Path) -> Path:
    """``place/checkout/hardway``: a small package with a subpackage and a cache."""
    package = place / "checkout" / "hardway"
    (package / "sub").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    (package / "__init__.py").write_text("NAME = 'fake'\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "mod.py").write_text("VALUE = 42\n")
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    for path in [package.parent, *package.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # whatever the umask
    return package


def test_a_private_checkout_is_copied_where_the_user_can_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "private"
    package = private_checkout(private, monkeypatch)
    with importable_for(NOBODY, NOBODY) as path:
        assert path != package.parent
        assert can_read(path / "hardway" / "sub" / "mod.py", NOBODY, [NOBODY])
        assert (path / "hardway" / "sub" / "mod.py").read_text() == "VALUE = 42\n"
        assert not (path / "hardway" / "__pycache__").exists()
        modes = {stat.S_IMODE(p.stat().st_mode) for p in path.rglob("*")}
        assert modes == {0o755, 0o644}, "read-only for everyone but its owner"
        assert path.name.startswith("hardway-import-"), "a leftover that cleanup recognises"
    assert not path.exists(), "the copy is removed after the block"


def test_a_readable_checkout_is_used_as_it_is(place: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = fake_checkout(place / "public")
    for directory in (place / "public", package.parent):
        directory.chmod(0o755)
    monkeypatch.setattr(importable, "package_parent", lambda: package.parent)
    with importable_for(NOBODY, NOBODY) as path:
        assert path == package.parent
    assert package.is_dir()
    (package / "sub" / "mod.py").chmod(0o600)  # one unreadable module is enough to copy
    with importable_for(NOBODY, NOBODY) as path:
        assert path != package.parent


def test_no_place_for_a_copy_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "private"
    private_checkout(private, monkeypatch)
    monkeypatch.setattr(importable, "_FALLBACK_TEMP", ())
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    with pytest.raises(HardwayError, match="cannot read") as raised, importable_for(NOBODY):
        pass
    assert "/opt/course" in raised.value.fix


@needs_root
def test_the_copy_imports_as_nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private = tmp_path / "private"
    package = private_checkout(private, monkeypatch)
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no /usr/bin/python3 for nobody to run")
    code = "import hardway.sub.mod as m; print(m.VALUE)"

    def as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "-c", code],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(path)},
        )

    assert "No module named 'hardway'" in as_nobody(package.parent).stderr  # the bug
    with importable_for(NOBODY, NOBODY) as path:
        done = as_nobody(path)
    assert (done.returncode, done.stdout) == (0, "42\n"), done.stderr


@needs_root
@pytest.mark.slow
def test_the_nobody_tests_pass_in_a_clone_under_a_0700_directory() -> None:
    """``git clone`` into ``mktemp -d`` (0700), then the tests that run as nobody, there."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to clone")
    private = Path(tempfile.mkdtemp(prefix="hardway-private-"))
    try:
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        clone = private / "containers-the-hard-way"
        done = subprocess.run(
            ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        _copy_uncommitted_changes(clone)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = str(clone)  # the clone's hardway, not this checkout's
        where = subprocess.run(
            [sys.executable, "-c", "import hardway; print(hardway.__file__)"],
            capture_output=True, text=True, cwd=clone, env=env, timeout=60,
        )  # fmt: skip
        assert where.stdout.strip() == str(clone / "hardway" / "__init__.py"), where.stderr
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *NOBODY_TESTS],
            capture_output=True, text=True, cwd=clone, env=env, timeout=600,
        )  # fmt: skip
        passed = f"{len(NOBODY_TESTS)} passed"
        assert run.returncode == 0 and passed in run.stdout, run.stdout + run.stderr
    finally:
        shutil.rmtree(private)


def _copy_uncommitted_changes(clone: Path) -> None:
    """Bring the working tree's edits of tracked files into the clone, so that the test
    runs the code as it is now, not as last committed (the same thing in CI)."""
    changed = subprocess.run(
        ["git", "diff", "--name-only", "HEAD"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    untracked = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    for name in changed + untracked:
        source, target = ROOT / name, clone / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif not source.exists():
            target.unlink(missing_ok=True)
