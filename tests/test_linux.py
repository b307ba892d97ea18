"""hardway.sys.linux: every system call is tried for real, in a child process, never in pytest."""

from __future__ import annotations

import doctest
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import hardway.sys.linux
from hardway.sys import linux

ROOT = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: mount, pivot_root and namespaces other than user"
)


def child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh Python; a failing child shows its stderr in the assertion."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def child_json(code: str, *args: str) -> dict:
    done = child(code, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_doctests() -> None:
    assert doctest.testmod(hardway.sys.linux).failed == 0


def test_constants_are_distinct_single_bits() -> None:
    flags = list(linux.NAMESPACES.values())
    assert all(f & (f - 1) == 0 for f in flags)
    assert len(set(flags)) == 7
    assert linux.namespace_flags("uts", "pid") == linux.CLONE_NEWUTS | linux.CLONE_NEWPID
    assert linux.MS_REC | linux.MS_PRIVATE == 0x44000  # what mount(8) passes for --make-rprivate
    with pytest.raises(ValueError, match="unknown namespace 'time'"):
        linux.namespace_flags("time")


@pytest.mark.parametrize("kind", sorted(linux.NAMESPACES))
def test_each_flag_moves_the_process_into_that_namespace(kind: str) -> None:
    """The kernel is the oracle: exactly /proc/self/ns/<kind> changes (plus user as non-root)."""
    as_root = os.geteuid() == 0
    if not as_root and not Path("/proc/self/ns/user").exists():
        pytest.skip("no user namespaces")
    result = child_json(
        """
        import json, os, sys
        from hardway.sys import linux
        kind, as_root = sys.argv[1], sys.argv[2] == "1"
        def link(name):
            try:
                return os.readlink(f"/proc/self/ns/{name}")
            except FileNotFoundError:  # pid_for_children, until the first child is born
                return None
        def links():
            return {n: link(n) for n in os.listdir("/proc/self/ns")}
        before = links()
        flag = linux.NAMESPACES[kind]
        linux.unshare(flag if as_root or kind == "user" else flag | linux.CLONE_NEWUSER)
        after = links()
        print(json.dumps(sorted(n for n in before if before[n] != after[n])))
        """,
        kind,
        "1" if as_root else "0",
    )
    expected = {"pid": {"pid_for_children"}}.get(kind, {kind})
    if not as_root and kind != "user":
        expected = expected | {"user"}
    assert set(result) == expected


@needs_root
def test_unshare_uts_and_sethostname_change_only_the_child() -> None:
    before = socket.gethostname()
    done = child(
        """
        from hardway.sys import linux
        linux.unshare(linux.CLONE_NEWUTS)
        linux.sethostname("hardway-test")
        print(linux.gethostname())
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hardway-test"
    assert socket.gethostname() == before != "hardway-test"


@needs_root
def test_setns_goes_back_to_the_original_namespace() -> None:
    result = child_json(
        """
        import json, os
        from hardway.sys import linux
        original = os.open("/proc/self/ns/uts", os.O_RDONLY)
        first = (os.readlink("/proc/self/ns/uts"), linux.gethostname())
        linux.unshare(linux.CLONE_NEWUTS)
        linux.sethostname("elsewhere")
        inside = (os.readlink("/proc/self/ns/uts"), linux.gethostname())
        linux.setns(original, linux.CLONE_NEWUTS)
        back = (os.readlink("/proc/self/ns/uts"), linux.gethostname())
        print(json.dumps({"first": first, "inside": inside, "back": back}))
        """
    )
    assert result["inside"][1] == "elsewhere"
    assert result["inside"][0] != result["first"][0]
    assert result["back"] == result["first"]


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory that uid 65534 can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="hardway-test-"))
    path.chmod(0o755)
    yield path
    path.rmdir()


def test_eperm_becomes_a_privilege_error_with_the_doctor_hint(public_dir: Path) -> None:
    """uid 65534 in the initial user namespace has no CAP_SYS_ADMIN: mount must say so."""
    result = child_json(
        """
        import json, os, sys
        from hardway.sys import linux
        from hardway.errors import PrivilegeError
        if os.geteuid() == 0:
            os.setgroups([]); os.setgid(65534); os.setuid(65534)
        out = {}
        for name, call in {
            "mount": lambda: linux.mount("tmpfs", sys.argv[1], "tmpfs"),
            "unshare": lambda: linux.unshare(linux.CLONE_NEWUTS),
            "sethostname": lambda: linux.sethostname("nope"),
        }.items():
            try:
                call()
                out[name] = None
            except PrivilegeError as exc:
                out[name] = {
                    "permission": isinstance(exc, PermissionError),
                    "errno": exc.errno,
                    "message": exc.message,
                    "fix": exc.fix,
                    "text": str(exc),
                }
        print(json.dumps(out))
        """,
        str(public_dir),
    )
    for name, error in result.items():
        assert error is not None, f"{name} succeeded without privileges"
        assert error["permission"] and error["errno"] == 1
        assert "CAP_SYS_ADMIN" in error["message"]
        assert f"uid {65534 if os.geteuid() == 0 else os.geteuid()}" in error["message"]
        assert "python -m hardway doctor" in error["fix"]
        assert "To fix: python -m hardway doctor" in error["text"]
    assert "mount('tmpfs'" in result["mount"]["message"]


@needs_root
def test_other_errnos_become_the_matching_oserror(tmp_path: Path) -> None:
    result = child_json(
        """
        import json, sys
        from hardway.sys import linux
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        out = {}
        for name, path in {"missing": sys.argv[1] + "/nope", "not-mounted": sys.argv[1]}.items():
            try:
                linux.umount2(path)
            except OSError as exc:
                out[name] = [type(exc).__name__, exc.errno, str(exc)]
        print(json.dumps(out))
        """,
        str(tmp_path),
    )
    assert result["missing"][:2] == ["FileNotFoundError", 2]
    assert result["not-mounted"][:2] == ["OSError", 22]
    assert "umount2(" in result["not-mounted"][2] and "Invalid argument" in result["not-mounted"][2]


def test_unshare_user_in_a_threaded_process_explains_einval() -> None:
    result = child_json(
        """
        import json, threading, time
        from hardway.sys import linux
        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
        try:
            linux.unshare(linux.CLONE_NEWUSER)
            print(json.dumps(None))
        except OSError as exc:
            print(json.dumps([exc.errno, str(exc)]))
        """
    )
    assert result is not None, "unshare(CLONE_NEWUSER) succeeded in a threaded process"
    assert result[0] == 22 and "multi-threaded" in result[1]


@needs_root
def test_pivot_root_swaps_the_root_of_a_child(tmp_path: Path) -> None:
    result = child_json(
        """
        import json, os, sys
        from pathlib import Path
        from hardway.sys import linux
        new = Path(sys.argv[1]) / "new"
        new.mkdir()
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        out = {}
        try:
            linux.pivot_root(new, new)  # on the same mount as the current root
        except OSError as exc:
            out["plain_dir"] = [type(exc).__name__, exc.errno]
        linux.mount("tmpfs", new, "tmpfs")
        (new / "old").mkdir()
        (new / "marker").write_text("inside")
        linux.pivot_root(new, new / "old")
        os.chdir("/")
        out["root"] = sorted(os.listdir("/"))
        linux.umount2("/old", linux.MNT_DETACH)
        out["old_after_umount"] = os.listdir("/old")
        out["marker"] = Path("/marker").read_text()
        print(json.dumps(out))
        """,
        str(tmp_path),
    )
    assert result["plain_dir"] == ["OSError", 16]  # EBUSY: new_root must be a mount of its own
    assert result["root"] == ["marker", "old"]
    assert result["old_after_umount"] == []
    assert result["marker"] == "inside"
    assert not (tmp_path / "new" / "marker").exists()  # the tmpfs died with the child
