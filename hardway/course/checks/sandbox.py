"""hardway.course.checks.sandbox
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

The safety net of the checks that feed a learner's unpacker hostile layers (labs 05 and
08): an entry named ``/…/canary.txt``, a symlink ``evil -> /…`` followed by
``evil/canary.txt``, a hard link to a file outside. The hostile names all point into
``outside``, a directory the check made and watches, so a mistake shows up there as a
file the check can name. In case a mistake reaches further, :func:`read_only_host` makes
every mount of the machine read-only — in a mount namespace of the check's own child
(:func:`hardway.course.checks.child.in_child`), so the host never sees it — and puts a
fresh tmpfs on the check's work directory, the one place left to write.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from hardway.errors import MissingToolError
from hardway.sys.linux import (
    CLONE_NEWNS,
    CLONE_NEWUSER,
    MS_BIND,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    mount,
    unshare,
)
from hardway.sys.mountinfo import read_mountinfo

__all__ = ["differences", "read_only_host", "tree_snapshot", "umoci_unpack"]


def read_only_host(work: Path) -> bool:
    """In the calling (child) process: a private mount namespace where every mount is
    read-only but a new tmpfs on ``work``. True when the net is up; False when this
    machine allows no mount namespace (then only permissions protect it, as for any
    program the learner runs)."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        if uid == 0:
            unshare(CLONE_NEWNS)
        else:
            unshare(CLONE_NEWUSER | CLONE_NEWNS)
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError:
        return False
    for entry in sorted(read_mountinfo(), key=lambda m: len(str(m.mount_point))):
        with contextlib.suppress(OSError):  # a locked or vanished mount: it stays as it is
            mount(None, entry.mount_point, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    mount("tmpfs", work, "tmpfs", 0, "mode=0755")
    return True


def tree_snapshot(root: Path) -> dict[str, tuple]:
    """What a tree holds, comparable between two unpackers: per path, ``("dir", mode)``,
    ``("file", mode, bytes)``, ``("link", target)``, plus a ``"hardlinks"`` key with the
    groups of names that share an inode."""
    found: dict[str, tuple] = {}
    inodes: dict[int, list[str]] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            found[name] = ("link", os.readlink(path))
        elif path.is_dir():
            found[name] = ("dir", st.st_mode & 0o7777)
        else:
            found[name] = ("file", st.st_mode & 0o7777, path.read_bytes())
            inodes.setdefault(st.st_ino, []).append(name)
    groups = sorted(tuple(names) for names in inodes.values() if len(names) > 1)
    found["hardlinks"] = tuple(groups)
    return found


def differences(want: dict[str, tuple], got: dict[str, tuple]) -> list[str]:
    """The paths (and ``"hardlinks"``) on which two :func:`tree_snapshot` s disagree."""
    return sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))


def umoci_unpack(blobs: list[bytes], work: Path) -> Path:
    """Unpack gzip layer blobs (lowest first) with umoci, the reference unpacker of the
    OCI image tools, and return the root filesystem it made (under ``work``)."""
    import gzip
    import json
    import subprocess

    from hardway.image import layout
    from hardway.image.blobs import BlobLayer
    from hardway.image.descriptor import Descriptor
    from hardway.image.digest import sha256_digest
    from hardway.image.mediatypes import OCI_LAYER_GZIP
    from hardway.image.mutate import from_layers

    work.mkdir(parents=True, exist_ok=True)
    umoci = shutil.which("umoci")
    if umoci is None:
        raise MissingToolError("umoci is not installed", fix="sudo apt-get install umoci")
    layers = []
    for number, blob in enumerate(blobs):
        path = work / f"umoci-layer-{number}"
        path.write_bytes(blob)
        descriptor = Descriptor(OCI_LAYER_GZIP, sha256_digest(blob), len(blob))
        diff_id = sha256_digest(gzip.decompress(blob))
        layers.append(BlobLayer(descriptor, diff_id, lambda _d, path=path: path.open("rb")))
    config = {"architecture": "amd64", "os": "linux"}
    config["rootfs"] = {"type": "layers", "diff_ids": [str(x.diff_id) for x in layers]}
    image = from_layers(json.dumps(config).encode(), layers)
    layout.write_image(image, work / "umoci-layout", tag="check")
    rootless = ["--rootless"] if os.geteuid() else []
    bundle = work / "umoci-bundle"
    done = subprocess.run(
        [umoci, "unpack", *rootless, "--image", f"{work / 'umoci-layout'}:check", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise AssertionError(f"umoci refused the layer: {done.stderr.strip()[-300:]}")
    return bundle / "rootfs"
