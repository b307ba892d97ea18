"""hardway.isolation.rootfs
~~~~~~~~~~~~~~~~~~~~~~~~

A container's files are just a directory: its *root filesystem*. Whatever a program
in it needs must be in that directory, because after ``chroot`` or ``pivot_root``
nothing else is visible. This module builds the two classic minimal ones:

* **busybox**: one statically linked program that is 300 tools at once; it picks the
  tool from the name it was started as, so the root filesystem is one file plus a
  symbolic link per tool (``busybox --list-full`` names them). Static means its ELF
  headers ask for no dynamic loader (:func:`elf_interpreter`);
* **host binaries**: copies of programs from this machine, plus exactly the shared
  libraries ``ldd`` names — including the *dynamic loader* (``ld-linux…``) that the
  kernel starts first. Forget the loader, and ``exec`` fails with "No such file or
  directory" although the program is right there.

It also holds :func:`try_escape`, the classic escape from a ``chroot``, which chapter
01 runs *inside* containers to show why ``pivot_root`` is needed.

>>> parse_ldd("libc.so.6 => /lib/libc.so.6 (0x7f)\\n/lib64/ld-linux-x86-64.so.2 (0x7f)")
['/lib/libc.so.6', '/lib64/ld-linux-x86-64.so.2']
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hardway.errors import MissingToolError, RootfsError

__all__ = [
    "DIRECTORIES",
    "Rootfs",
    "add_binary",
    "applet_links",
    "build_busybox",
    "build_host",
    "elf_interpreter",
    "escape_after",
    "ldd",
    "parse_ldd",
    "register",
    "try_escape",
]

#: the directories every root filesystem gets: programs, mount points, scratch space
DIRECTORIES = (
    "bin",
    "dev",
    "etc",
    "mnt",
    "proc",
    "root",
    "sbin",
    "sys",
    "tmp",
    "usr/bin",
    "usr/sbin",
)

#: just enough user database for ``id`` and ``whoami`` to print names
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"

_INSTALL = "sudo apt-get install busybox-static   (or: make setup)"


@dataclass(frozen=True)
class Rootfs:
    """A root filesystem that was built: where it is and what went in.

    It is path-like, so it can be passed wherever a directory is expected.
    """

    path: Path
    #: the programs copied in, as paths inside the root (``/usr/bin/ls``)
    programs: tuple[str, ...]
    #: the shared libraries copied in, loader included
    libraries: tuple[str, ...] = ()
    #: how many symbolic links were made (busybox's applets)
    links: int = 0

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        parts = [
            _count(len(self.programs), "program", "programs"),
            _count(len(self.libraries), "library", "libraries"),
        ]
        if self.links:
            parts.append(_count(self.links, "link", "links"))
        return f"<Rootfs: {', '.join(parts)}>"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _skeleton(dest: Path) -> None:
    """The standard directories (``/tmp`` sticky and world-writable) and ``/etc`` files."""
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)
    for name in DIRECTORIES:
        (dest / name).mkdir(mode=0o755, parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    for name, text in (("passwd", _PASSWD), ("group", _GROUP)):
        target = dest / "etc" / name
        if not target.exists():
            target.write_text(text)
            target.chmod(0o644)


def _inside(dest: Path, path: str) -> Path:
    """``dest`` joined with an absolute in-root path; refuses ``..`` (no writing outside)."""
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise RootfsError(f"{path!r} is not an absolute path without '..'")
    return dest.joinpath(*pure.parts[1:])


# -- static or dynamic ----------------------------------------------------------------------

#: ELF class → (header after ``e_ident``, start of a program header), see elf(5)
_ELF_LAYOUT = {1: ("HHIIIIIHHH", "IIIII"), 2: ("HHIQQQIHHH", "IIQQQQ")}
_PT_INTERP = 3


def elf_interpreter(path: str | os.PathLike[str]) -> str | None:
    """The dynamic loader an ELF program asks for — its ``PT_INTERP`` program header, the
    program the kernel starts first — or ``None`` if it is static and needs nothing else.

    This is the one answer to "is this busybox static?": the doctor's check and
    :func:`build_busybox` both ask it. Reading the program headers needs no subprocess
    and has none of ``ldd``'s quirks (``ldd`` runs the loader, and words a static
    program differently from one version to the next).

    :raises ValueError: *path* is not an ELF file (a script, a truncated file)
    """
    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF" or ident[4] not in _ELF_LAYOUT:
            raise ValueError(f"{path} is not an ELF file")
        order = "<" if ident[5] == 1 else ">"
        header, program = (order + fmt for fmt in _ELF_LAYOUT[ident[4]])
        try:
            fields = struct.unpack(header, f.read(struct.calcsize(header)))
            phoff, phentsize, phnum = fields[4], fields[8], fields[9]
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                entry = struct.unpack(program, f.read(struct.calcsize(program)))
                if entry[0] == _PT_INTERP:
                    offset, size = (entry[1], entry[4]) if ident[4] == 1 else (entry[2], entry[5])
                    f.seek(offset)
                    return f.read(size).rstrip(b"\0").decode()
        except struct.error:
            raise ValueError(f"{path} is not a complete ELF file") from None
    return None


# -- busybox ----------------------------------------------------------------------------


def applet_links(listing: str, busybox: str = "bin/busybox") -> dict[str, str]:
    """The symbolic links that turn one busybox into all its tools.

    *listing* is the output of ``busybox --list-full``: one path per line, relative to
    the root (``usr/bin/wc``). Each maps to a *relative* link target that reaches
    *busybox* from the link's directory, so the links work inside the root and out.
    The busybox binary itself gets no link.

    >>> applet_links("bin/sh\\nusr/bin/wc\\n")
    {'bin/sh': 'busybox', 'usr/bin/wc': '../../bin/busybox'}
    """
    links = {}
    for line in listing.splitlines():
        name = line.strip().strip("/")
        if not name or name == busybox:
            continue
        links[name] = os.path.relpath(busybox, os.path.dirname(name) or ".")
    return links


def _find_busybox(busybox: str | os.PathLike[str] | None) -> Path:
    found = shutil.which("busybox") if busybox is None else os.fspath(busybox)
    if found is None or not Path(found).is_file():
        raise MissingToolError("busybox is not installed", fix=_INSTALL)
    try:
        interpreter = elf_interpreter(found)
    except ValueError:
        raise RootfsError(f"{found} is not an ELF program") from None
    if interpreter is not None:
        raise RootfsError(
            f"{found} is linked dynamically: a root filesystem of one file needs a static busybox",
            fix=_INSTALL,
        )
    return Path(found)


def build_busybox(
    dest: str | os.PathLike[str], *, busybox: str | os.PathLike[str] | None = None
) -> Rootfs:
    """A root filesystem of one static busybox at ``/bin/busybox`` plus a link per applet.

    :param dest: the directory to fill (created if missing; existing files stay)
    :param busybox: (optional) the busybox to copy; default: the one on ``$PATH``
    """
    dest, source = Path(dest), _find_busybox(busybox)
    _skeleton(dest)
    shutil.copy(source, dest / "bin" / "busybox")
    listing = subprocess.run(
        [str(source), "--list-full"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    links = applet_links(listing)
    for name, target in links.items():
        link = dest / name
        link.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return Rootfs(dest, ("/bin/busybox",), (), len(links))


# -- host binaries and their libraries ---------------------------------------------------

# "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)"   or   "/lib64/ld-linux-x86-64.so.2 (0x…)"
_LDD_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(\S+)(?:\s+\(0x[0-9a-fA-F]+\))?\s*$")


def parse_ldd(text: str) -> list[str]:
    """The library files in ``ldd``'s output, in order, dynamic loader included.

    Lines without a file are skipped: the vDSO (``linux-vdso.so.1``, which the kernel
    maps into every process) and the messages for static programs ("not a dynamic
    executable", "statically linked"). A library ``ldd`` cannot find is an error.

    >>> parse_ldd("\\tlinux-vdso.so.1 (0x00007ffd)\\n\\tlibm.so.6 => /lib/libm.so.6 (0x7f)")
    ['/lib/libm.so.6']
    >>> parse_ldd("\\tnot a dynamic executable")
    []
    """
    found = []
    for line in text.splitlines():
        if "=> not found" in line:
            raise RootfsError(f"ldd cannot find a library: {line.strip()}")
        match = _LDD_LINE.match(line)
        if match and match[2].startswith("/") and match[2] not in found:
            found.append(match[2])
    return found


def ldd(binary: str | os.PathLike[str]) -> list[str]:
    """The shared libraries *binary* needs, as ``ldd`` names them; ``[]`` for static ones."""
    if shutil.which("ldd") is None:
        raise MissingToolError("ldd is not installed", fix="sudo apt-get install libc-bin")
    done = subprocess.run(
        ["ldd", os.fspath(binary)], capture_output=True, text=True, timeout=10, check=False
    )
    if done.returncode != 0 and "not a dynamic executable" not in done.stdout + done.stderr:
        raise RootfsError(f"ldd {os.fspath(binary)} failed: {done.stderr.strip()}")
    return parse_ldd(done.stdout)


def _which(binary: str) -> str:
    found = binary if "/" in binary else shutil.which(binary)
    if found is None or not os.path.isfile(found):
        raise RootfsError(f"{binary}: no such program on this machine")
    return os.path.abspath(found)


def add_binary(dest: str | os.PathLike[str], binary: str) -> list[str]:
    """Copy *binary* and every library ``ldd`` names into *dest*, each at its own path.

    Symbolic links are followed (``/lib64/ld-linux-x86-64.so.2`` is usually a link to
    the real loader): the copy is a regular file at the path the program asks for.
    Returns the in-root paths written, the program first.
    """
    dest, program = Path(dest), _which(binary)
    written = []
    for path in (program, *ldd(program)):
        target = _inside(dest, path)
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.copy(path, target)  # content and permission bits, following links
        written.append(path)
    return written


def build_host(dest: str | os.PathLike[str], binaries: Iterable[str]) -> Rootfs:
    """A root filesystem of programs copied from this machine, with their libraries.

    :param dest: the directory to fill (created if missing)
    :param binaries: program names (looked up on ``$PATH``) or absolute paths
    """
    dest = Path(dest)
    _skeleton(dest)
    programs: list[str] = []
    libraries: list[str] = []
    for binary in binaries:
        program, *libs = add_binary(dest, binary)
        programs.append(program)
        libraries.extend(lib for lib in libs if lib not in libraries)
    return Rootfs(dest, tuple(programs), tuple(libraries))


# -- the classic escape -------------------------------------------------------------------


def try_escape(marker: str) -> dict[str, bool]:
    """Run *inside* a container, as root: can this process get out of its root?

    The classic escape works because ``chroot`` moves only the root of *one* process,
    and does not move its working directory. So: chroot into a subdirectory while
    the working directory stays above it, walk up with ``..`` (nothing stops the walk
    at a root the directory is not under), and chroot to where the walk ends.
    After ``pivot_root`` in a mount namespace *and* unmounting the old root, the walk
    ends at the container's own root, because nothing is above it any more.

    Returns whether the host file *marker* was visible ``before`` and ``after``.
    """
    before = os.path.exists(marker)
    here = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        below = next(e.name for e in os.scandir(here) if e.is_dir(follow_symlinks=False))
    except StopIteration:
        raise RootfsError("the root has no directory to chroot into") from None
    finally:
        os.close(here)
    os.chdir("/")
    os.chroot(below)  # the root moves down; the working directory stays above it
    for _ in range(64):  # deeper than any real directory tree
        os.chdir("..")
    os.chroot(".")
    return {"before": before, "after": os.path.exists(marker)}


def escape_after(enter: Callable[[str], None], new_root: str, marker: str) -> dict[str, Any]:
    """Run inside a new mount namespace: ``enter(new_root)`` (a learner's
    ``pivot_into``), then :func:`try_escape`. Also returns what ``/`` then holds.

    Mounts are made *shared* first, as systemd leaves them on most machines, so an
    ``enter`` that forgets to make them private fails here as it would there.
    """
    from hardway.sys import linux  # imported here: rootfs itself needs no syscalls

    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SHARED)
    enter(new_root)
    listing = sorted(os.listdir("/"))
    return {"root": listing, **try_escape(marker)}


# -- the command line ---------------------------------------------------------------------


def _command(args: argparse.Namespace) -> int:
    if args.kind == "busybox":
        if args.binaries:
            raise RootfsError("rootfs busybox takes no program names")
        built = build_busybox(args.dir)
    else:
        if not args.binaries:
            raise RootfsError("rootfs host needs at least one program, e.g. sh ls")
        built = build_host(args.dir, args.binaries)
    print(f"{built!r} in {built.path}")
    for path in (*built.programs, *built.libraries):
        print(f"  {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``rootfs busybox DIR`` and ``rootfs host DIR PROGRAM…`` to the CLI."""
    parser = subparsers.add_parser(
        "rootfs",
        help="build a minimal root filesystem (busybox, or host programs + their libraries)",
        description="Build a minimal root filesystem in DIR: 'busybox' copies the static "
        "busybox and links every applet to it; 'host' copies the named programs and "
        "exactly the shared libraries ldd names for them, dynamic loader included.",
    )
    parser.add_argument("kind", choices=("busybox", "host"), help="what to build it from")
    parser.add_argument("dir", help="the directory to fill (created if missing)")
    parser.add_argument("binaries", nargs="*", metavar="PROGRAM", help="programs (for 'host')")
    parser.set_defaults(func=_command)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hardway-rootfs-") as tmp:
        print(build_busybox(Path(tmp) / "busybox"))
        print(build_host(Path(tmp) / "host", ["sh", "ls"]))
