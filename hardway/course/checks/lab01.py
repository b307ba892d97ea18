"""hardway.course.checks.lab01
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 01, a root filesystem. The first two compare the learner's parsers
with :mod:`hardway.isolation.rootfs` on fresh inputs (the ELF files are made up by the
check, so no remembered answer fits); the last four run the learner's code for real,
each in a forked child: the programs of ``my_rootfs`` must start in a ``chroot`` of it,
``my_chroot_run`` must fork, chroot and exec without moving its caller, ``my_escape``
must reach the real root from a jail the check builds, and ``my_pivot_root`` must leave
its process in the new root with the old one gone — the last two behind the mount
safety net of :mod:`hardway.course.checks.mounts`, in a throwaway mount namespace and a
tmpfs of their own.

* 01.1 ``parse_ldd(text) -> list[str]``: the library files in ``ldd``'s output;
* 01.2 ``my_interpreter(path) -> str | None``: the ELF program header ``PT_INTERP``;
* 01.3 ``my_rootfs(dest, programs) -> Path``: programs plus their libraries and loader;
* 01.4 ``my_chroot_run(root, argv) -> (status, output)``: fork, chroot, exec, wait;
* 01.5 ``my_escape() -> None``: the classic escape from a ``chroot``;
* 01.6 ``my_pivot_root(new_root) -> None``: ``pivot_root`` with the propagation step.

``REFERENCE`` holds the course's ``my_rootfs`` and ``my_pivot_root`` for the labs that
carry them (:func:`hardway.course.carry.carry`).
"""

from __future__ import annotations

import errno
import os
import random
import secrets
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hardway.course.checks import fresh_rng, scratch
from hardway.course.checks.child import in_child
from hardway.course.checks.mounts import sandboxed
from hardway.course.grading import exercise, expect
from hardway.errors import DOCTOR_HINT, PrivilegeError
from hardway.isolation import rootfs
from hardway.isolation.launch import pivot_into
from hardway.sys import linux

__all__ = [
    "REFERENCE",
    "chroot_run_works",
    "escape_reaches_root",
    "interpreter_read",
    "ldd_parsed",
    "pivot_root_done",
    "rootfs_runs",
]


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
    hints=(
        "look at each line: where is the path, and which lines have none?",
        "keep each line's absolute path (after '=>' when there is one), drop the address "
        "in parentheses, skip lines without a path (linux-vdso.so.1 lives in the kernel), "
        "and keep the loader line — it has no '=>' but it is the first file the kernel needs.",
        "split each line into words (after replacing '=>' by a space) and keep the first "
        "word that starts with '/', once.",
    ),
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


# -- 01.2 the ELF interpreter -----------------------------------------------------------------

_PT_LOAD, _PT_INTERP = 1, 3


def fake_elf(rng: random.Random, *, bits: int, interpreter: str | None) -> bytes:
    """A made-up ELF file (header and program headers only) asking for *interpreter*,
    with its program headers and the name at offsets drawn from *rng*."""
    wide = bits == 64
    order = "<"
    header = order + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH")
    entry = order + ("IIQQQQQQ" if wide else "IIIIIIII")
    header_size, entry_size = 16 + struct.calcsize(header), struct.calcsize(entry)
    count = rng.randint(2, 5)
    table = header_size + rng.randrange(0, 64, 8)
    name_at = table + count * entry_size + rng.randrange(0, 40)
    name = (interpreter or "").encode() + b"\0"
    interp_index = rng.randrange(1, count) if interpreter else -1
    entries = b""
    for i in range(count):
        kind = _PT_INTERP if i == interp_index else rng.choice([_PT_LOAD, 4, 6, 0x6474E551])
        offset, size = (name_at, len(name)) if kind == _PT_INTERP else (0, rng.randint(64, 4096))
        if wide:  # type, flags, offset, vaddr, paddr, filesz, memsz, align
            entries += struct.pack(entry, kind, 4, offset, offset, offset, size, size, 8)
        else:  # type, offset, vaddr, paddr, filesz, memsz, flags, align
            entries += struct.pack(entry, kind, offset, offset, offset, size, size, 4, 4)
    ident = b"\x7fELF" + bytes([2 if wide else 1, 1, 1]) + bytes(9)
    machine = 62 if wide else 3
    fields = (2, machine, 1, 0x401000, table, 0, 0, header_size, entry_size, count, 64, 0, 0)
    data = bytearray(ident + struct.pack(header, *fields))
    data += bytes(table - len(data)) + entries
    data += bytes(name_at - len(data)) + (name if interpreter else b"")
    return bytes(data) + bytes(rng.randint(0, 64))


@exercise(
    "01.2",
    points=2,
    hints=(
        "the answer is in the program's own first bytes: the ELF header says where the "
        "program headers are, and one of them names the loader.",
        "read e_phoff, e_phentsize and e_phnum from the header (their offsets differ "
        "between 32-bit and 64-bit files, byte 4 says which), then walk the program "
        "headers: the one of type 3 (PT_INTERP) gives the offset and size of the name.",
        "64-bit: e_phoff is a '<Q' at byte 32, e_phentsize and e_phnum are '<H' at 54 and "
        "56; 32-bit: e_phoff is a '<I' at 28, the two '<H' at 42 and 44. In a 64-bit "
        "entry p_offset is at +8 and p_filesz at +32; in a 32-bit one at +4 and +16. "
        "Strip the trailing NUL.",
    ),
)
def interpreter_read(my_interpreter: Callable[[str], str | None]) -> None:
    """my_interpreter(path) reads the dynamic loader an ELF program asks for (None if static)."""
    rng = fresh_rng()
    with scratch("01") as work:
        cases: list[tuple[str, str]] = []
        for bits in (64, 32):  # named edge cases, every time: both classes, and static
            for interpreter in (f"/opt/hw-{secrets.token_hex(3)}/ld-{bits}.so.1", None):
                path = work / f"elf{bits}-{'dynamic' if interpreter else 'static'}"
                path.write_bytes(fake_elf(rng, bits=bits, interpreter=interpreter))
                cases.append((str(path), f"a made-up {bits}-bit ELF file"))
        for program in rng.sample(_host_programs(), 2):
            cases.append((program, "this machine's program"))
        busybox = shutil.which("busybox")
        if busybox:
            cases.append((busybox, "the static busybox"))
        for path, what in cases:
            want = rootfs.elf_interpreter(path)
            got = my_interpreter(path)
            expect(
                got == want,
                f"my_interpreter({path!r}) ({what}) returned {_short(got)}, expected "
                f"{_short(want)}"
                + (": a static program has no PT_INTERP header: return None" if not want else ""),
            )
        script = work / "script.sh"
        script.write_text("#!/bin/sh\necho not an ELF file\n")
        try:
            got = my_interpreter(str(script))
        except ValueError:
            return
        raise AssertionError(
            f"for a shell script (not an ELF file) my_interpreter returned {_short(got)}: "
            "raise ValueError when the file does not start with b'\\x7fELF'"
        )


def _host_programs() -> list[str]:
    """Dynamically linked programs of this machine that print --version and exit 0."""
    names = ("ls", "cat", "id", "uname", "sort", "env", "date", "touch")
    found = [shutil.which(name) for name in names]
    return [p for p in found if p and rootfs.elf_interpreter(p)]


# -- 01.3 a root filesystem from host programs ----------------------------------------------------


def _run_inside(root: str, programs: Sequence[str], interpreters: dict[str, str]) -> list[dict]:
    """In a child: chroot into *root*, start each program with --version; what happened."""
    os.chroot(root)
    os.chdir("/")
    seen = []
    for program in programs:
        loader = interpreters[program]
        facts: dict[str, Any] = {
            "program": program,
            "there": os.path.isfile(program),
            "loader": loader,
            "loader there": os.path.exists(loader),
            "loader link": os.readlink(loader) if os.path.islink(loader) else None,
        }
        try:
            done = subprocess.run(
                [program, "--version"], capture_output=True, text=True, timeout=10
            )
            facts.update(code=done.returncode, stderr=done.stderr.strip()[-300:])
        except OSError as exc:
            facts.update(code=None, stderr=f"{type(exc).__name__}: {exc.strerror}")
        seen.append(facts)
    return seen


@exercise(
    "01.3",
    points=4,
    against=("kernel",),
    hints=(
        "after chroot a program finds only what is in the root: itself, every library it "
        "links, and the loader that links them.",
        "for each program: find its path (shutil.which), copy it to the same path under "
        "dest, then every file parse_ldd finds in `ldd PROGRAM` — make sure the ELF "
        "interpreter (my_interpreter) is among them — each at its own path.",
        "target = dest / path.lstrip('/'); target.parent.mkdir(parents=True, exist_ok=True); "
        "shutil.copy(path, target) — copy follows symbolic links, so the loader (often a "
        "link) arrives as a file. Create dest first, and return it.",
    ),
)
def rootfs_runs(my_rootfs: Callable[[Path, list[str]], Path]) -> None:
    """my_rootfs(dest, programs) builds a root in which each program starts, in a chroot."""
    if os.geteuid() != 0:
        raise PrivilegeError("chroot needs root", fix=DOCTOR_HINT)
    rng = fresh_rng()
    programs = rng.sample(_host_programs(), 2)
    asked = [programs[0], os.path.basename(programs[1])]  # a path and a name on $PATH
    top = Path(tempfile.mkdtemp(prefix="hardway-lab01-"))
    try:
        top.chmod(0o755)
        dest = top / "root"  # not there yet: my_rootfs makes it
        got = my_rootfs(dest, asked)
        expect(
            got is not None and Path(got) == dest,
            f"my_rootfs returned {_short(got)}: return dest, the root it filled",
        )
        interpreters = {p: rootfs.elf_interpreter(p) or "" for p in programs}
        seen = in_child(
            lambda: _run_inside(str(dest), programs, interpreters),
            timeout=30,
            what="a program in your root",
        )
        for facts in seen:
            _judge(facts)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _judge(facts: dict[str, Any]) -> None:
    program, loader = facts["program"], facts["loader"]
    expect(facts["there"], f"{program} is not in the root: copy it to dest{program}")
    if not facts["loader there"]:
        link = facts["loader link"]
        if link:
            raise AssertionError(
                f"the dynamic loader {loader} in the root is a symbolic link to {link}, "
                "which is not in the root: copy the file the link points to (shutil.copy "
                "follows links)"
            )
        raise AssertionError(
            f"the dynamic loader {loader} (the ELF interpreter of {program}) is missing from "
            f"the root, so exec says '{facts['stderr'] or 'No such file or directory'}' "
            "although the program is there: copy ldd's last line too"
        )
    if facts["code"] != 0:
        stderr = facts["stderr"]
        missing = "cannot open shared object file" in stderr
        why = ": a library is missing from the root" if missing else ""
        raise AssertionError(f"{program} --version failed inside the root{why}: {stderr}")


# -- 01.4 run a program in a root ------------------------------------------------------------

_PROBE_SCRIPT = 'echo "out $(pwd)"; echo err >&2; cat /etc/hw-token; ls /; exit {code}'


def _chroot_run_in_child(
    my_chroot_run: Callable[[Path, list[str]], tuple[int, str]], root: Path, code: int
) -> dict[str, Any]:
    """In the check's child: call my_chroot_run, and say whether the caller moved."""
    before = os.stat("/")
    cwd = os.getcwd()
    got = my_chroot_run(root, ["/usr/bin/sh", "-c", _PROBE_SCRIPT.format(code=code)])
    after = os.stat("/")
    moved = (before.st_dev, before.st_ino) != (after.st_dev, after.st_ino)
    return {"got": got, "moved": moved or os.getcwd() != cwd}


@exercise(
    "01.4",
    points=3,
    against=("kernel",),
    hints=(
        "chroot changes the process that calls it, for good: who should call it?",
        "fork; in the child: point stdout and stderr at the write end of a pipe (os.dup2), "
        "chroot into root, chdir('/'), os.execv(argv[0], argv); in the parent: read the pipe "
        "to its end, then waitpid, and return (exit status, text).",
        "the child ends with os._exit(127) if execv fails; the parent closes its copy of "
        "the write end *before* reading, or the read never ends; "
        "os.waitstatus_to_exitcode(status) turns waitpid's status into the exit code.",
    ),
)
def chroot_run_works(my_chroot_run: Callable[[Path, list[str]], tuple[int, str]]) -> None:
    """my_chroot_run(root, argv) runs argv in a chroot of root: (exit status, output)."""
    if os.geteuid() != 0:
        raise PrivilegeError("chroot needs root", fix=DOCTOR_HINT)
    token = secrets.token_hex(6)
    code = fresh_rng().randint(3, 90)
    top = Path(tempfile.mkdtemp(prefix="hardway-lab01-"))
    try:
        top.chmod(0o755)
        root = rootfs.build_host(top / "root", ["/usr/bin/sh", "/usr/bin/cat", "/usr/bin/ls"]).path
        (root / "etc" / "hw-token").write_text(token + "\n")
        run = in_child(
            lambda: _chroot_run_in_child(my_chroot_run, root, code),
            timeout=20,
            what="your my_chroot_run",
        )
        expect(
            not run["moved"],
            "my_chroot_run moved its caller (its root or working directory changed): fork "
            "first, and chroot only in the child",
        )
        got = run["got"]
        expect(
            isinstance(got, tuple | list) and len(got) == 2,
            f"my_chroot_run returned {_short(got)}: return (exit status, output)",
        )
        status, output = got
        expect(isinstance(output, str), f"the output is a {type(output).__name__}: decode it")
        lines = output.splitlines()
        expect(
            token in lines,
            f"the program did not see the root's /etc/hw-token (it printed {_short(output)}): "
            "chroot into root before execv",
        )
        expect(
            "out /" in lines,
            f"the program's working directory was not / (it printed "
            f"{_short(output)}): chdir('/') after chroot",
        )
        expect(
            "err" in lines,
            "what the program wrote to stderr is missing: dup2 the pipe "
            "onto file descriptor 2 as well",
        )
        expect(
            sorted(lines[lines.index(token) + 1 :]) == sorted(os.listdir(root)),
            f"ls / did not list the root (it printed {_short(output)})",
        )
        expect(
            status == code,
            f"my_chroot_run returned the status {status!r}, but the program exited with {code}: "
            "os.waitstatus_to_exitcode(status) turns waitpid's status into the exit code",
        )
    finally:
        shutil.rmtree(top, ignore_errors=True)


# -- 01.5 the chroot escape -------------------------------------------------------------------


class _Recorder:
    """Wraps os.chroot and os.chdir in the check's child, to say *which* step is missing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._real = (os.chroot, os.chdir)

    def __enter__(self) -> _Recorder:
        chroot, chdir = self._real

        def recorded_chroot(path: Any) -> None:
            self.calls.append(("chroot", os.fsdecode(path)))
            chroot(path)

        def recorded_chdir(path: Any) -> None:
            if not isinstance(path, int):
                self.calls.append(("chdir", os.fsdecode(path)))
            chdir(path)

        os.chroot, os.chdir = recorded_chroot, recorded_chdir  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        os.chroot, os.chdir = self._real  # type: ignore[assignment]

    def climbs_after_first_chroot(self) -> int:
        chroots = [i for i, (name, _) in enumerate(self.calls) if name == "chroot"]
        if not chroots:
            return 0
        return sum(
            arg.split("/").count("..")
            for name, arg in self.calls[chroots[0] + 1 :]
            if name == "chdir"
        )

    @property
    def chroots(self) -> int:
        return sum(1 for name, _ in self.calls if name == "chroot")


def _escape_in_jail(my_escape: Callable[[], None], jail: str, marker: str) -> None:
    """In the learner's child: chroot into the jail, call my_escape, judge where we are."""
    real_root = os.stat("/")
    depth = len(Path(jail).parts) - 1
    os.chroot(jail)
    os.chdir("/")
    jail_root = os.stat("/")
    with _Recorder() as recorder:
        my_escape()
    now = os.stat("/")
    if (now.st_dev, now.st_ino) == (real_root.st_dev, real_root.st_ino):
        expect(os.path.exists(marker), "your escape reached a root without the host's files")
        return
    in_jail_root = (now.st_dev, now.st_ino) == (jail_root.st_dev, jail_root.st_ino)
    where = "the jail's root" if in_jail_root else "a directory inside the jail"
    ended = f"after your my_escape the process's root is still {where}"
    climbs = recorder.climbs_after_first_chroot()
    if recorder.chroots == 0:
        raise AssertionError(f"{ended}: it never called os.chroot")
    if recorder.chroots == 1 and climbs == 0:
        raise AssertionError(
            f"{ended}: you chroot once only. chroot into a subdirectory first (your working "
            "directory stays above the new root), climb with chdir('..'), then chroot('.')"
        )
    if climbs == 0:
        raise AssertionError(
            f"{ended}: after the chroot into the subdirectory you forgot to climb — "
            "chdir('..') many times, which nothing stops now that your working directory "
            "is outside your root, then chroot('.')"
        )
    if climbs < depth:
        raise AssertionError(
            f"{ended}: you climbed {climbs} times, but this jail is {depth} directories "
            "below the real root: climb more (chdir('..') at the real root stays there, so "
            "a few hundred cost nothing)"
        )
    if recorder.calls[-1][0] != "chroot":
        raise AssertionError(f"{ended}: after climbing, chroot('.') to make the top your root")
    raise AssertionError(f"{ended}: the steps are chroot(subdir), chdir('..') × many, chroot('.')")


@exercise(
    "01.5",
    points=3,
    against=("kernel",),
    hints=(
        "chroot moves the root of one process, not its working directory — and root may "
        "call chroot again.",
        "make a directory, chroot into it while your working directory stays where it is "
        "(now above your root), then walk up with chdir('..') until you cannot go higher, "
        "and chroot('.') there.",
        "os.makedirs('hw-escape', exist_ok=True); os.chroot('hw-escape'); "
        "for _ in range(256): os.chdir('..'); then os.chroot('.').",
    ),
)
def escape_reaches_root(my_escape: Callable[[], None]) -> None:
    """my_escape(), run as root in a chroot jail the check builds, reaches the real root."""
    rng = fresh_rng()
    with tempfile.TemporaryDirectory(prefix="hardway-lab01-") as tmp:
        top = Path(tmp)
        top.chmod(0o755)
        depth = rng.randint(3, 7)  # deeper than a handful of chdir('..')
        jail = top.joinpath(*(f"d{i}-{secrets.token_hex(2)}" for i in range(depth)), "jail")
        marker = top / f"host-only-{secrets.token_hex(4)}"

        def setup() -> None:
            linux.mount("tmpfs", str(top), "tmpfs", 0, "size=1m,mode=755")
            jail.mkdir(parents=True)
            (jail / "etc").mkdir()
            marker.write_text("the host's\n")

        sandboxed(
            lambda: _escape_in_jail(my_escape, str(jail), str(marker)),
            timeout=20,
            what="your my_escape",
            setup=setup,
        )


# -- 01.6 pivot_root ------------------------------------------------------------------------------


def _mountinfo(proc: int) -> list[tuple[str, str]]:
    """(mount point, optional fields) of each mount this process sees, through /proc."""
    fd = os.open("self/mountinfo", os.O_RDONLY, dir_fd=proc)
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    found = []
    for line in lines:
        fields = line.split()
        dash = fields.index("-", 6)
        found.append((fields[4], " ".join(fields[6:dash])))
    return found


def _diagnose(exc: OSError, proc: int, new_root: str) -> str:
    """What a learner's OSError from pivoting says about the step that is missing."""
    text = str(exc)
    if "umount2" in text and exc.errno == errno.EBUSY:
        return (
            "unmounting the old root failed with EBUSY: it still has mounts under it and "
            "processes using it — detach it lazily: umount2(put_old, MNT_DETACH)"
        )
    if "pivot_root" in text and exc.errno in (errno.EINVAL, errno.EBUSY):
        mounts = _mountinfo(proc)
        shared = [point for point, tags in mounts if "shared:" in tags]
        if new_root not in (point for point, _ in mounts):
            return (
                "pivot_root refused (EINVAL): new_root is not a mount point — bind-mount it "
                "onto itself first: mount(new_root, new_root, None, MS_BIND | MS_REC)"
            )
        if shared:
            return (
                f"pivot_root refused (EINVAL): mounts are still shared ({shared[0]} among "
                "them) — make / private recursively first: MS_REC | MS_PRIVATE"
            )
    return f"your my_pivot_root raised {type(exc).__name__}: {exc}"


def _pivot_in_namespace(my_pivot_root: Callable[[str], None], top: str, new_root: str) -> None:
    """In the learner's child (own mount namespace, still shared): pivot, then judge."""
    expected = sorted(os.listdir(new_root))
    os.chdir(top)  # the caller is somewhere on the old root, as a runtime is
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        my_pivot_root(new_root)
    except OSError as exc:
        raise AssertionError(_diagnose(exc, proc, new_root)) from None
    here, root = os.stat("."), os.stat("/")
    expect(
        (here.st_dev, here.st_ino) == (root.st_dev, root.st_ino),
        "after my_pivot_root your working directory is still outside the new root (on the "
        "old one, where relative paths still reach the host): chdir('/') after pivot_root",
    )
    listing = sorted(os.listdir("/"))
    missing = sorted(set(expected) - set(listing))
    expect(not missing, f"after my_pivot_root, / lacks {missing}: it is not new_root")
    points = [point for point, _ in _mountinfo(proc)]
    if len(points) > 1:
        stacked = points.count("/") > 1
        where = "stacked on /" if stacked else f"at {min(points[1:], key=len)}"
        raise AssertionError(
            f"the old root is still mounted ({where}, with {len(points) - 1} mounts of the "
            "host): unmount it with umount2(put_old, MNT_DETACH) — while it is there, the "
            "host is one path away"
        )
    extra = sorted(set(listing) - set(expected))
    expect(
        not extra,
        f"after my_pivot_root, / has {extra} that new_root did not have: remove the put_old "
        "directory once the old root is unmounted",
    )
    # and the proof that does not read the mount table: the classic escape, from inside
    expect(
        not rootfs.try_escape(os.path.join(top, "host-only"))["after"],
        "after my_pivot_root the classic chroot escape still reaches the host's files",
    )


@exercise(
    "01.6",
    points=5,
    against=("kernel",),
    hints=(
        "pivot_root swaps the root mount of the whole mount namespace, and it has three "
        "preconditions: private mounts, new_root a mount point, and put_old under it.",
        "make / private recursively (mount(None, '/', None, MS_REC | MS_PRIVATE)), "
        "bind-mount new_root onto itself, pivot_root(new_root, put_old), chdir('/'), "
        "then unmount the old root lazily and remove its directory.",
        "mount(new_root, new_root, None, MS_BIND | MS_REC); os.mkdir(f'{new_root}/.old'); "
        "pivot_root(new_root, f'{new_root}/.old'); os.chdir('/'); "
        "umount2('/.old', MNT_DETACH); os.rmdir('/.old').",
    ),
)
def pivot_root_done(my_pivot_root: Callable[[str], None]) -> None:
    """my_pivot_root(new_root) leaves the process in new_root, the old root unmounted."""
    with tempfile.TemporaryDirectory(prefix="hardway-lab01-") as tmp:
        top = Path(tmp)
        top.chmod(0o755)
        new_root = top / f"root-{secrets.token_hex(3)}"

        def setup() -> None:
            linux.mount("tmpfs", str(top), "tmpfs", 0, "size=1m,mode=755")
            for name in ("bin", "etc", "proc", f"only-here-{secrets.token_hex(2)}"):
                (new_root / name).mkdir(parents=True)
            (new_root / "etc" / "hostname").write_text("lab01\n")
            (top / "host-only").write_text("the host's\n")

        sandboxed(
            lambda: _pivot_in_namespace(my_pivot_root, str(top), str(new_root)),
            timeout=20,
            what="your my_pivot_root",
            setup=setup,
        )


# -- what later labs carry ----------------------------------------------------------------------


def reference_rootfs(dest: Path, programs: list[str]) -> Path:
    """The course's my_rootfs: :func:`hardway.isolation.rootfs.build_host`."""
    return rootfs.build_host(dest, programs).path


def reference_pivot_root(new_root: Path | str) -> None:
    """The course's my_pivot_root: private mounts, the launcher's pivot, the old root gone."""
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    pivot_into(os.fspath(new_root))
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


#: the course's versions of what lab 01 hands on (carry("01", ...))
REFERENCE: dict[str, Callable[..., Any]] = {
    "my_rootfs": reference_rootfs,
    "my_pivot_root": reference_pivot_root,
}
