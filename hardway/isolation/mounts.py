"""hardway.isolation.mounts
~~~~~~~~~~~~~~~~~~~~~~~~

The filesystems a container finds besides its root, made the way runc makes them:
``/dev`` (:func:`mount_dev`), a read-only ``/sys`` (:func:`mount_sys`), the mount points
an image does not have (:func:`mount_point`: inside the root, whatever links the image
ships), and chapter 04's masked and read-only paths (:func:`mask_path`,
:func:`readonly_path`). The launcher (:mod:`hardway.isolation.launch`) calls these in a
mount namespace of its own, so nothing here touches the host's mount table; it imports
only :mod:`os` and the syscall wrappers.
"""

from __future__ import annotations

import os

from hardway.sys import linux, securejoin

__all__ = [
    "DEVICES",
    "DEV_LINKS",
    "mask_path",
    "mount_dev",
    "mount_point",
    "mount_sys",
    "readonly_path",
]

#: the device nodes a container's ``/dev`` gets, bind-mounted from the host's
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
#: the symbolic links every ``/dev`` has, as runc makes them
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}
_QUIET = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def mount_point(new_root: str, path: str) -> str:
    """Where *path* is inside *new_root* once every symbolic link on the way is
    followed, as an absolute path with no link and no ``..`` left in it; the
    directory is made if missing.

    A root filesystem comes from an image, and an image may ship ``dev -> /etc``,
    ``proc -> ../../..`` or no ``/dev`` at all. The walk
    (:func:`hardway.sys.securejoin.open_dir`) follows each link *as if* *new_root*
    were ``/`` and creates what is missing with ``mkdirat``, so neither the mount nor
    the directory it needs can land outside the root. Mount on the result, not on
    *path*: after ``pivot_root`` the old root is stacked on ``/`` until it is unmounted,
    and a ``..`` at ``/`` climbs into it. Nothing runs in the root yet, so the result
    cannot change before the mount.
    """
    root_fd = os.open(new_root, os.O_PATH | os.O_DIRECTORY)
    try:
        fd, resolved = securejoin.open_dir(root_fd, path, create=True)
    finally:
        os.close(root_fd)
    securejoin.close_dir(fd)
    return "/" + resolved


def _on_host(new_root: str, inside: str) -> str:
    return os.path.join(new_root, inside.lstrip("/"))


def mount_dev(new_root: str, *, ipc: bool = False, userns: bool = False) -> None:
    """Give *new_root* the ``/dev`` runc gives a container: a tmpfs (``nodev``: only the
    nodes bind-mounted on it work) with the host's harmless device nodes, each
    bind-mounted onto an empty file (``mknod`` would need root in the host's user
    namespace; a bind mount works rootless too); a private ``devpts`` instance on
    ``pts`` with ``ptmx`` pointing into it; ``shm``; with *ipc* (a namespace of its
    own) ``mqueue``; and the :data:`DEV_LINKS`. With *userns*, ``devpts`` gets no
    ``gid=5``: group 5 (tty) is not mapped in a rootless namespace.
    """
    dev = _on_host(new_root, mount_point(new_root, "dev"))
    linux.mount("tmpfs", dev, "tmpfs", _QUIET, "mode=755,size=64k")
    for name in DEVICES:
        target = os.path.join(dev, name)
        with open(target, "w"):
            pass
        linux.mount(f"/dev/{name}", target, None, linux.MS_BIND)
    pts_options = "newinstance,ptmxmode=0666,mode=0620" + ("" if userns else ",gid=5")
    mounts = [("pts", "devpts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC, pts_options)]
    mounts.append(("shm", "shm", "tmpfs", _QUIET, "mode=1777,size=65536k"))
    if ipc:
        mounts.append(("mqueue", "mqueue", "mqueue", _QUIET, None))
    for name, source, fstype, flags, data in mounts:
        os.mkdir(os.path.join(dev, name), 0o755)
        linux.mount(source, os.path.join(dev, name), fstype, flags, data)
    for name, target in DEV_LINKS.items():
        os.symlink(target, os.path.join(dev, name))


def mount_sys(new_root: str) -> str:
    """A read-only ``/sys`` in *new_root*: a new sysfs (it shows the network namespace
    of whoever mounts it); where the kernel refuses that — a user namespace without
    its own network namespace — the host's, bind-mounted and made read-only. Returns
    where it is inside (:func:`mount_point`)."""
    inside = mount_point(new_root, "sys")
    target = _on_host(new_root, inside)
    try:
        linux.mount("sysfs", target, "sysfs", _QUIET | linux.MS_RDONLY)
    except PermissionError:
        linux.mount("/sys", target, None, linux.MS_BIND | linux.MS_REC)
        _remount_readonly(target)
    return inside


def _remount_readonly(path: str) -> None:
    """Make the bind mount at *path* read-only, keeping its other flags: in a user
    namespace, a remount that dropped ``nosuid``, ``nodev`` or ``noexec`` is refused."""
    kept = os.statvfs(path).f_flag & (linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    linux.mount(None, path, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | kept)


def mask_path(path: str) -> None:
    """Hide *path* (inside the container, after ``/proc`` and ``/dev`` are mounted): a
    file under ``/dev/null``, a directory under an empty read-only tmpfs; a path
    this kernel does not have is left alone, as runc does."""
    try:
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        if is_dir:
            linux.mount("tmpfs", path, "tmpfs", _QUIET | linux.MS_RDONLY, "size=0k")
        else:
            linux.mount("/dev/null", path, None, linux.MS_BIND)
    except FileNotFoundError:
        pass


def readonly_path(path: str) -> None:
    """Make *path* read-only: bind-mount it onto itself (now it is a mount of its own),
    then remount that read-only; a missing path is left alone, as runc does."""
    try:
        linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
    except FileNotFoundError:
        return
    _remount_readonly(path)
