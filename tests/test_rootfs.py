"""hardway.isolation.rootfs: real root filesystems, entered for real, and the classic chroot escape.

Programs run inside through :mod:`hardway.isolation.container` (root: plain chroot; otherwise a
user namespace), so each test proves the directory is a working root, not just a list
of files.
"""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hardway.isolation.rootfs
from hardway.course import doctor
from hardway.course.doctor import Check
from hardway.errors import ContainerError, RootfsError
from hardway.isolation import rootfs
from hardway.isolation.container import call, run
from hardway.isolation.namespaces import Isolation

ROOT = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the chroot escape")


def chrooted(root: Path) -> Isolation:
    """Enter *root* by chroot: as root directly, otherwise inside a user namespace."""
    return Isolation(() if os.geteuid() == 0 else {"user"}, root=root, how="chroot")


@pytest.fixture
def public_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hardway-rootfs")
    for parent in (path, *path.parents):
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o755)
    return path


def test_doctests() -> None:
    assert doctest.testmod(hardway.isolation.rootfs).failed == 0


# -- ldd output -------------------------------------------------------------------------

LDD_LS = """\
\tlinux-vdso.so.1 (0x00007ffc4d5f2000)
\tlibselinux.so.1 => /lib/x86_64-linux-gnu/libselinux.so.1 (0x00007f0a1c8e4000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0a1c703000)
\tlibpcre2-8.so.0 => /lib/x86_64-linux-gnu/libpcre2-8.so.0 (0x00007f0a1c669000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0a1c94b000)
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            LDD_LS,
            [
                "/lib/x86_64-linux-gnu/libselinux.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib/x86_64-linux-gnu/libpcre2-8.so.0",
                "/lib64/ld-linux-x86-64.so.2",
            ],
        ),
        ("\tnot a dynamic executable\n", []),
        ("\tstatically linked\n", []),
        ("", []),
        ("\tlinux-vdso.so.1 (0x1)\n\tlinux-gate.so.1 => (0x2)\n", []),
        (
            "libm.so.6 => /usr/lib/libm.so.6 (0x1)\nlibm.so.6 => /usr/lib/libm.so.6 (0x1)",
            ["/usr/lib/libm.so.6"],
        ),
        ("\t/lib/ld-musl-x86_64.so.1 (0x7f)\n", ["/lib/ld-musl-x86_64.so.1"]),
    ],
    ids=["ls", "static", "static-musl", "empty", "vdso-only", "duplicate", "loader-only"],
)
def test_parse_ldd(text: str, expected: list[str]) -> None:
    assert rootfs.parse_ldd(text) == expected


def test_parse_ldd_refuses_a_missing_library() -> None:
    with pytest.raises(RootfsError, match=r"libgone\.so\.1"):
        rootfs.parse_ldd("\tlibgone.so.1 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n")


def test_ldd_of_real_programs() -> None:
    libs = rootfs.ldd("/usr/bin/ls")
    assert libs and all(Path(lib).is_file() for lib in libs)
    assert any("ld-linux" in lib or "ld-musl" in lib for lib in libs), "the loader is missing"
    assert rootfs.ldd("/usr/bin/busybox") == [], "Debian's busybox-static is static"


# -- static or dynamic: one answer, from the ELF program headers ----------------------------

STATIC, DYNAMIC = "/bin/busybox", "/bin/ls"  # Debian's busybox-static; coreutils' ls
needs_both = pytest.mark.skipif(
    not (Path(STATIC).is_file() and Path(DYNAMIC).is_file()), reason="needs busybox-static"
)


@needs_both
def test_elf_interpreter_of_a_static_and_a_dynamic_program() -> None:
    assert rootfs.elf_interpreter(STATIC) is None
    loader = rootfs.elf_interpreter(DYNAMIC)
    assert loader is not None and loader in rootfs.ldd(DYNAMIC), "ldd names the same loader"
    assert rootfs.elf_interpreter(Path(sys.executable).resolve()) is not None


def test_elf_interpreter_refuses_what_is_not_elf(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    truncated = tmp_path / "truncated"
    truncated.write_bytes(Path(sys.executable).resolve().read_bytes()[:24])
    for path in (script, truncated):
        with pytest.raises(ValueError, match="ELF file"):
            rootfs.elf_interpreter(path)


def _is_it_a_static_busybox(program: str, tmp_path: Path) -> tuple[Check, str]:
    """The doctor's answer (its check of ``busybox`` on a PATH that holds *program*) and
    :func:`rootfs.build_busybox`'s (``"built"``, or why it refused)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "busybox").symlink_to(program)
    check = doctor.check_tool("busybox", "busybox-static", "x", path=str(bin_dir))
    try:
        rootfs.build_busybox(tmp_path / "root", busybox=program)
    except RootfsError as exc:
        return check, exc.message
    return check, "built"


@needs_both
@pytest.mark.parametrize(
    ("program", "doctor_says", "build_says"),
    [
        (STATIC, "(static)", "built"),
        (DYNAMIC, "is linked dynamically (needs /", "is linked dynamically"),
    ],
    ids=["static", "dynamic"],
)
def test_the_doctor_and_build_busybox_agree(
    program: str, doctor_says: str, build_says: str, tmp_path: Path
) -> None:
    check, built = _is_it_a_static_busybox(program, tmp_path)
    assert (check.status == "ok") == (built == "built")
    assert doctor_says in check.detail and build_says in built


@needs_both
def test_the_doctor_and_build_busybox_ask_the_same_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make :func:`rootfs.elf_interpreter` lie: both answers change with it."""
    asked: list[str] = []

    def dynamic(path: str | os.PathLike[str]) -> str:
        asked.append(os.fspath(path))
        return "/lib/ld-fake.so.1"

    monkeypatch.setattr(rootfs, "elf_interpreter", dynamic)
    check, built = _is_it_a_static_busybox(STATIC, tmp_path)
    assert check.status == "warn" and "(needs /lib/ld-fake.so.1)" in check.detail
    assert "is linked dynamically" in built
    assert len(asked) == 2 and {os.path.realpath(p) for p in asked} == {os.path.realpath(STATIC)}


# -- busybox ------------------------------------------------------------------------------


def test_applet_links_are_relative_and_reach_busybox() -> None:
    listing = "bin/sh\nusr/bin/[\nusr/sbin/chroot\nsbin/ip\nlinuxrc\nbin/busybox\n"
    links = rootfs.applet_links(listing)
    assert set(links) == {"bin/sh", "usr/bin/[", "usr/sbin/chroot", "sbin/ip", "linuxrc"}
    for link, target in links.items():
        assert not os.path.isabs(target)
        assert os.path.normpath(os.path.join(os.path.dirname(link), target)) == "bin/busybox"


def test_busybox_rootfs_is_complete_and_runs(busybox_rootfs: Path) -> None:
    listing = subprocess.run(
        ["busybox", "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listing:
        link = busybox_rootfs / name
        assert link.resolve() == (busybox_rootfs / "bin/busybox").resolve(), name
    for name in rootfs.DIRECTORIES:
        assert (busybox_rootfs / name).is_dir(), name
    assert (busybox_rootfs / "tmp").stat().st_mode & 0o1777 == 0o1777
    done = run(chrooted(busybox_rootfs), ["sh", "-c", "ls /; wc -l < /etc/passwd"])
    assert done.ok, done
    lines = done.stdout.split()
    assert {"bin", "etc", "proc", "usr"} <= set(lines) and lines[-1] == "2"


def test_build_busybox_refuses_a_dynamic_busybox(public_tmp: Path) -> None:
    with pytest.raises(RootfsError, match="dynamically"):
        rootfs.build_busybox(public_tmp / "r", busybox="/usr/bin/ls")


# -- host programs ---------------------------------------------------------------------------


def test_host_rootfs_runs_what_it_copied(public_tmp: Path) -> None:
    built = rootfs.build_host(public_tmp / "r", ["ls", "sh"])
    assert built.programs == ("/usr/bin/ls", "/usr/bin/sh")
    wanted = rootfs.ldd("/usr/bin/ls") + rootfs.ldd("/usr/bin/sh")
    assert built.libraries == tuple(dict.fromkeys(wanted))
    for path in built.libraries:
        copied = public_tmp / "r" / path.lstrip("/")
        assert copied.is_file() and not copied.is_symlink(), path
    assert repr(built) == f"<Rootfs: 2 programs, {len(built.libraries)} libraries>"
    done = run(chrooted(built.path), ["/usr/bin/sh", "-c", "ls /usr/bin"])
    assert done.ok, done
    assert done.stdout.split() == ["ls", "sh"]


def test_without_the_loader_exec_fails_with_enoent_and_a_hint(public_tmp: Path) -> None:
    built = rootfs.build_host(public_tmp / "r", ["ls"])
    loader = next(lib for lib in built.libraries if "ld-" in Path(lib).name)
    (public_tmp / "r" / loader.lstrip("/")).unlink()
    with pytest.raises(ContainerError) as caught:
        run(chrooted(built.path), ["/usr/bin/ls"])
    error = caught.value
    assert error.step == "exec" and error.errno == 2
    assert "dynamic loader" in error.message and "add_binary" in error.fix


def test_add_binary_never_writes_outside(public_tmp: Path) -> None:
    with pytest.raises(RootfsError, match="absolute"):
        rootfs._inside(public_tmp, "/lib/../../etc/passwd")
    with pytest.raises(RootfsError, match="no such program"):
        rootfs.add_binary(public_tmp, "no-such-program-hardway")


def test_cli_builds_both_kinds(public_tmp: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hardway", "rootfs", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    done = cli("busybox", str(public_tmp / "b"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("<Rootfs: 1 program, 0 libraries, ")
    assert (public_tmp / "b/bin/sh").resolve() == (public_tmp / "b/bin/busybox").resolve()
    done = cli("host", str(public_tmp / "h"), "ls")
    assert done.returncode == 0, done.stderr
    assert "/usr/bin/ls" in done.stdout.split() and (public_tmp / "h/usr/bin/ls").is_file()
    done = cli("host", str(public_tmp / "x"), "no-such-program-hardway")
    assert done.returncode == 1 and "no such program" in done.stderr
    assert "Traceback" not in done.stderr


# -- the escape -------------------------------------------------------------------------------


@pytest.fixture
def marker(public_tmp: Path) -> str:
    path = public_tmp / "host-only.txt"
    path.write_text("only the host can read this\n")
    return str(path)


@needs_root
@pytest.mark.parametrize(
    ("spec", "escapes"),
    [
        ({"how": "chroot"}, True),
        ({"how": "chroot", "namespaces": {"mnt"}}, True),
        ({"how": "pivot_root", "namespaces": {"mnt"}, "unmount_old_root": False}, True),
        ({"how": "pivot_root", "namespaces": {"mnt"}}, False),
    ],
    ids=["chroot", "chroot-in-mount-ns", "pivot-keeping-old-root", "pivot-and-unmount"],
)
def test_the_escape(busybox_rootfs: Path, marker: str, spec: dict, escapes: bool) -> None:
    result = call(Isolation(root=busybox_rootfs, **spec), rootfs.try_escape, marker)
    assert result == {"before": False, "after": escapes}
    assert Path(marker).exists()  # and the escape wrote nothing, anywhere
    assert sorted(p.name for p in busybox_rootfs.iterdir()) == sorted(
        {*rootfs.DIRECTORIES, "linuxrc", "usr"} - {"usr/bin", "usr/sbin"}
    )
