"""Resolving paths inside a root: hardway.sys.securejoin against the kernel's own answer.

Linux 5.6+ resolves a path "as if the directory were the root" in ``openat2(…,
RESOLVE_IN_ROOT)``. Random trees full of symlinks (relative, absolute, ``..`` chains,
loops, dangling) are resolved by both :func:`open_dir` / :func:`resolve` and the kernel,
and the answers — a path, or the errno — must be the same.
"""

from __future__ import annotations

import ctypes
import doctest
import errno
import os
import random
from pathlib import Path

import pytest

import hardway.sys.securejoin
from hardway.sys.securejoin import open_dir, resolve, resolve_at

_libc = ctypes.CDLL(None, use_errno=True)
SYS_OPENAT2 = 437  # the same number on x86_64 and aarch64 (generic syscall table)
RESOLVE_IN_ROOT = 0x10


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2_in_root(root_fd: int, path: str, flags: int) -> int:
    how = OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT)
    fd = _libc.syscall(
        SYS_OPENAT2, root_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how)
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def _kernel_has_openat2() -> bool:
    fd = os.open("/", os.O_PATH)
    try:
        os.close(openat2_in_root(fd, ".", os.O_PATH))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


needs_openat2 = pytest.mark.skipif(not _kernel_has_openat2(), reason="no openat2 (Linux < 5.6)")


def _relative(fd: int, root: Path) -> str:
    """Where a descriptor points, relative to ``root``."""
    where = os.readlink(f"/proc/self/fd/{fd}")
    rel = os.path.relpath(where, os.path.realpath(root))
    assert not rel.startswith(".."), f"escaped the root: {where}"
    return "" if rel == "." else rel


def _random_tree(root: Path, rng: random.Random) -> list[str]:
    """Directories, files and nasty symlinks under ``root``; returns names to look up."""
    names = ["a", "b", "c", "etc", "x"]
    dirs = [""]
    for _ in range(8):
        parent = rng.choice(dirs)
        name = f"{parent}/{rng.choice(names)}".lstrip("/")
        if not (root / name).exists():
            (root / name).mkdir()
            dirs.append(name)
        (root / name / "file").write_text("x")
    targets = ["/", "..", "../..", "../../../..", "/etc", "a/b", "/a/../c", "file", "loop",
               "missing/x", "./", "/x/..", "../a/b/../../c", "b/file"]  # fmt: skip
    links = []
    for i in range(10):
        parent = rng.choice(dirs)
        link = f"{parent}/l{i}".lstrip("/")
        os.symlink(rng.choice(targets + [f"../l{j}" for j in range(3)]), root / link)
        links.append(link)
    os.symlink("loop", root / "loop")
    pieces = [*names, *[os.path.basename(n) for n in links], "..", ".", "file", "loop", "nope"]
    lookups = []
    for _ in range(120):
        start = rng.choice([*dirs, *links])
        lookups.append("/".join([start, *rng.choices(pieces, k=rng.randint(0, 3))]) or ".")
    return lookups


@needs_openat2
@pytest.mark.parametrize("seed", range(6))
def test_open_dir_matches_openat2_resolve_in_root(tmp_path: Path, seed: int) -> None:
    lookups = _random_tree(tmp_path, random.Random(seed))
    root_fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    checked = {"ok": 0, "error": 0}
    try:
        for path in lookups:
            try:
                kfd = openat2_in_root(root_fd, path, os.O_PATH | os.O_DIRECTORY)
            except OSError as exc:
                with pytest.raises(OSError) as ours:
                    os.close(open_dir(root_fd, path)[0])
                assert ours.value.errno == exc.errno, path
                checked["error"] += 1
                continue
            try:
                want = _relative(kfd, tmp_path)
            finally:
                os.close(kfd)
            fd, got = open_dir(root_fd, path)
            try:
                assert (got, _relative(fd, tmp_path)) == (want, want), path
            finally:
                os.close(fd)
            checked["ok"] += 1
    finally:
        os.close(root_fd)
    assert checked["ok"] > 10 and checked["error"] > 5, checked  # both kinds were exercised


@needs_openat2
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("follow_last", [True, False])
@pytest.mark.parametrize("reader", ["names", "descriptors"])
def test_pure_resolve_matches_the_kernel(
    tmp_path: Path, seed: int, follow_last: bool, reader: str
) -> None:
    """:func:`resolve` with links read by name, and :func:`resolve_at` (by descriptors)."""
    lookups = _random_tree(tmp_path, random.Random(100 + seed))

    def readlink(rel: str) -> str | None:
        path = tmp_path / rel
        return os.readlink(path) if path.is_symlink() else None

    flags = os.O_PATH | (0 if follow_last else os.O_NOFOLLOW)
    root_fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)

    def ours(path: str) -> str:
        if reader == "descriptors":
            return resolve_at(root_fd, path, follow_last=follow_last)
        return resolve(path, readlink, follow_last=follow_last)

    compared = 0
    try:
        for path in lookups:
            try:
                kfd = openat2_in_root(root_fd, path, flags)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    with pytest.raises(OSError, match="symbolic links"):
                        ours(path)
                continue  # ENOENT/ENOTDIR: the pure version does not look at files
            try:
                want = _relative(kfd, tmp_path)
            finally:
                os.close(kfd)
            assert ours(path) == want, path
            compared += 1
    finally:
        os.close(root_fd)
    assert compared > 10


def test_open_dir_creates_missing_directories_but_not_through_files(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    os.symlink("/deep", tmp_path / "abs")
    root_fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        fd, where = open_dir(root_fd, "abs/er/../new", create=True)
        os.close(fd)
        assert where == "deep/new" and (tmp_path / "deep" / "new").is_dir()
        assert (tmp_path / "deep" / "er").is_dir(), "the walk made deep/er before climbing out"
        with pytest.raises(NotADirectoryError):
            open_dir(root_fd, "f/x", create=True)
        with pytest.raises(FileNotFoundError):
            open_dir(root_fd, "nothing/here")
        if os.geteuid() == 0:  # giving a directory away needs root
            os.close(open_dir(root_fd, "abs/owned/too", create=True, owner=(1000, 50))[0])
            made = [(tmp_path / "deep" / p).lstat() for p in ("owned", "owned/too")]
            assert [(st.st_uid, st.st_gid) for st in made] == [(1000, 50)] * 2
            assert (tmp_path / "deep").lstat().st_uid == 0, "an existing one is left alone"
    finally:
        os.close(root_fd)


def test_doctests() -> None:
    assert doctest.testmod(hardway.sys.securejoin).failed == 0
