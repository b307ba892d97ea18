"""hardway.course.checks.lab01
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 01, a root filesystem. Each builds fresh inputs and compares the
learner's answer with :mod:`hardway.isolation.rootfs`; the last two run the learner's code for
real: a copied program must start in a ``chroot``, and a ``pivot_into`` must stop the
classic escape, in a child process with its own mount namespace.

* 01.1 ``parse_ldd(text) -> list[str]``: the library files in ``ldd``'s output;
* 01.2 ``applet_links(listing) -> dict[str, str]``: busybox's links, relative;
* 01.3 ``add_binary(root, program) -> list[str]``: a program plus its libraries;
* 01.4 ``pivot_into(new_root)``: ``pivot_root`` done right, run inside a child.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from hardway.course.checks import fresh_rng
from hardway.course.grading import exercise, expect
from hardway.errors import ContainerError, HardwayError, PrivilegeError
from hardway.isolation import rootfs
from hardway.isolation.container import call, run
from hardway.isolation.namespaces import Isolation

__all__ = ["add_binary_runs", "applet_links_relative", "ldd_parsed", "pivot_stops_escape"]


def _short(value: object, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _libname(rng: random.Random) -> str:
    stem = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8)))
    return f"lib{stem}{rng.choice(['', '-2', '_x'])}.so.{rng.randint(0, 9)}"


def _fake_ldd(rng: random.Random) -> str:
    """ldd output for a made-up program: vDSO, some libraries, the loader."""
    arch = rng.choice(["x86_64-linux-gnu", "aarch64-linux-gnu", "riscv64-linux-gnu"])
    lines = [f"\tlinux-vdso.so.1 (0x{rng.getrandbits(48):016x})"]
    for _ in range(rng.randint(1, 5)):
        name = _libname(rng)
        folder = rng.choice([f"/lib/{arch}", f"/usr/lib/{arch}", "/usr/local/lib", "/opt/x/lib"])
        lines.append(f"\t{name} => {folder}/{name} (0x{rng.getrandbits(48):016x})")
    loader = rng.choice(["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"])
    lines.append(f"\t{loader} (0x{rng.getrandbits(48):016x})")
    return "\n".join(lines) + "\n"


@exercise(
    "01.1",
    points=2,
    hint="keep each line's absolute path (after '=>' when there is one), drop the address "
    "in parentheses, skip lines without a path (linux-vdso.so.1 lives in the kernel), and "
    "keep the loader line — it has no '=>' but it is the first file the kernel needs.",
)
def ldd_parsed(parse_ldd: Callable[[str], list[str]]) -> None:
    """parse_ldd(text) lists the library files of ldd's output, loader included."""
    rng = fresh_rng()
    samples = [_fake_ldd(rng) for _ in range(3)]
    samples += ["\tnot a dynamic executable\n", _real_ldd("/usr/bin/ls")]
    for text in samples:
        want = rootfs.parse_ldd(text)
        got = parse_ldd(text)
        expect(isinstance(got, list), f"parse_ldd returned a {type(got).__name__}, not a list")
        expect(
            all(isinstance(p, str) and p.startswith("/") for p in got),
            f"every entry is an absolute path, but parse_ldd returned {_short(got)}",
        )
        expect(not any("vdso" in p for p in got), "linux-vdso.so.1 is no file on disk: skip it")
        if want:
            expect(want[-1] in got, f"the dynamic loader {want[-1]} is missing from the list")
        message = f"for this ldd output:\n{text}parse_ldd returned {_short(got)}"
        expect(got == want, f"{message}, expected {_short(want)}")


def _real_ldd(program: str) -> str:
    """What ldd prints for *program* on this machine."""
    done = subprocess.run(["ldd", program], capture_output=True, text=True, timeout=10)
    return done.stdout


@exercise(
    "01.2",
    points=1,
    hint="a relative link is resolved from the directory the link is in: from "
    "usr/bin/ you need ../../ to get back to the root; os.path.relpath(target, start) "
    "does the counting.",
)
def applet_links_relative(applet_links: Callable[[str], dict[str, str]]) -> None:
    """applet_links(listing) maps each applet path to a relative link to bin/busybox."""
    rng = fresh_rng()
    folders = ["bin", "sbin", "usr/bin", "usr/sbin", ""]
    names = {f"{rng.choice(folders)}/{_libname(rng)[3:8]}".lstrip("/") for _ in range(12)}
    names.add("usr/bin/[")
    listing = "\n".join(["bin/busybox", *sorted(names)]) + "\n"
    want = rootfs.applet_links(listing)
    got = applet_links(listing)
    expect(isinstance(got, dict), f"applet_links returned a {type(got).__name__}, not a dict")
    expect("bin/busybox" not in got, "busybox itself must not become a link to itself")
    missing = sorted(set(want) - set(got))
    expect(not missing, f"no link for {missing[:3]}")
    extra = sorted(set(got) - set(want))
    expect(not extra, f"links that are not in the listing: {extra[:3]}")
    for name, target in want.items():
        expect(
            not os.path.isabs(str(got[name])),
            f"{name} -> {got[name]} is absolute: outside the root it would point at the host",
        )
        expect(got[name] == target, f"{name} -> {got[name]!r}, expected {target!r}")


def _public_tmp(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"hardway-check-{prefix}-"))
    path.chmod(0o755)
    return path


def _chroot(root: Path) -> Isolation:
    return Isolation(() if os.geteuid() == 0 else {"user"}, root=root, how="chroot")


@exercise(
    "01.3",
    points=2,
    hint="copy the program and every file your parse_ldd finds in `ldd PROGRAM` to the "
    "same path under root (mkdir the parent folders first; shutil.copy follows links and "
    "keeps the execute bit). Without the loader, exec fails with 'No such file or "
    "directory' although the program is there.",
)
def add_binary_runs(add_binary: Callable[[Path, str], list[str]]) -> None:
    """add_binary(root, program) copies a program and its libraries so it runs in root."""
    programs = ("/usr/bin/ls", "/usr/bin/cat", "/usr/bin/id", "/usr/bin/uname")
    candidates = [p for p in programs if os.path.isfile(p)]
    program = fresh_rng().choice(candidates)
    top = _public_tmp("01-3")
    try:
        root = top / "root"
        root.mkdir(mode=0o755)
        add_binary(root, program)
        expect((root / program[1:]).is_file(), f"{program} was not copied to root{program}")
        for lib in rootfs.ldd(program):
            copy = root / lib[1:]
            what = "the dynamic loader" if "/ld-" in lib else "a library"
            expect(copy.exists(), f"{what} {lib} is missing from the root")
        try:
            done = run(_chroot(root), [program, "--version"])
        except (ContainerError, PrivilegeError) as exc:
            message = f"{program} does not start inside the root: {exc.message}"
            raise AssertionError(message) from None
        expect(done.ok, f"{program} --version inside the root failed: {done.stderr.strip()}")
    finally:
        shutil.rmtree(top, ignore_errors=True)


@exercise(
    "01.4",
    points=2,
    hint="in order: make every mount private (mount(None, '/', None, MS_REC | "
    "MS_PRIVATE)), bind-mount new_root onto itself (MS_BIND | MS_REC) so it is a mount "
    "point, chdir into it, pivot_root('.', '.'), umount2('.', MNT_DETACH), chdir('/').",
)
def pivot_stops_escape(pivot_into: Callable[[str], None]) -> None:
    """pivot_into(new_root) moves a mount namespace into new_root; the escape fails."""
    top = _public_tmp("01-4")
    try:
        root = rootfs.build_busybox(top / "root").path
        marker = top / f"host-only-{secrets.token_hex(4)}.txt"
        marker.write_text("the host's\n")
        try:
            seen = call(Isolation({"mnt"}), rootfs.escape_after, pivot_into, root, marker)
        except ContainerError as exc:
            if exc.child == "NotImplementedError":
                stub = NotImplementedError()
                stub._hardway_learner = "pivot_into"  # type: ignore[attr-defined]
                raise stub from None
            raise AssertionError(_explain(exc)) from None
        except HardwayError as exc:
            raise AssertionError(f"pivot_into could not run: {exc.message}") from None
        expected = sorted(os.listdir(root))
        missing = sorted(set(expected) - set(seen["root"]))
        expect(not missing, f"after pivot_into, / lacks {missing}: it is not new_root")
        expect(not seen["before"], "after pivot_into the host's files are still visible")
        expect(
            not seen["after"],
            "the classic escape still reaches the host: the old root is still mounted "
            "(unmount it after pivot_root)",
        )
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _explain(exc: ContainerError) -> str:
    raised = exc.message.partition(" raised ")[2] or exc.message
    text = f"pivot_into raised {raised}"
    if exc.errno == 22:  # EINVAL
        text += (
            ". pivot_root says EINVAL when new_root is not a mount point or a mount is "
            "shared: bind-mount new_root onto itself, and make the mounts private first"
        )
    return text
