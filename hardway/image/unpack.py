"""hardway.image.unpack
~~~~~~~~~~~~~~~~~~~~

An image's root filesystem: every layer of it applied, in order, to one directory —
what ``umoci unpack`` and a container runtime's image store do before a container
starts (chapter 06; chapter 08 unpacks what it pulled, chapter 10 what it built).

Two rules make it safe against a bad image or a bad moment. Each layer is copied to a
temporary file first and checked against its digest there, so no byte of a corrupt or
tampered layer reaches the root filesystem; only then are they applied
(:func:`hardway.image.apply.apply_layers`, which refuses entries that escape the root).
And an unpack that does not finish leaves no half root filesystem behind: a new one is
built next to its place and renamed into it at the end.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from hardway.image.apply import apply_layers
from hardway.image.protocols import Image
from hardway.sys.trees import remove_tree

__all__ = ["unpack_image"]

_CHUNK = 1 << 16  # under glibc's mmap threshold: see hardway.image.apply._CHUNK


def unpack_image(image: Image, rootfs: Path | str) -> None:
    """Download and verify every layer to a temporary file, then apply them all: a corrupt
    layer raises before a single file is written to ``rootfs``.

    An unpack that does not finish (an error, Ctrl-C, a kernel interrupt) leaves no half
    root filesystem behind: a new or empty ``rootfs`` is built next to it, as
    ``.NAME.partial-XXXXXXXX``, and renamed into place when every layer is applied; the
    partial directory is removed on failure (only a SIGKILL can leave one, clearly
    named). Layers unpacked onto a directory that already has content are applied on top,
    in place, as ``layer apply`` does.
    """
    rootfs = Path(rootfs)
    on_top = rootfs.is_dir() and (any(rootfs.iterdir()) or os.path.ismount(rootfs))
    with tempfile.TemporaryDirectory(prefix="hardway-unpack-") as work:
        paths = []
        for i, layer in enumerate(image.layers()):
            path = Path(work) / f"{i}.layer"
            with layer.compressed() as blob, path.open("wb") as out:
                shutil.copyfileobj(blob, out, _CHUNK)  # verified: raises before we apply
            paths.append(path)
        if on_top:
            apply_layers(paths, rootfs)
            return
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IMODE(rootfs.stat().st_mode) if rootfs.is_dir() else 0o755
        partial = Path(tempfile.mkdtemp(prefix=f".{rootfs.name}.partial-", dir=rootfs.parent))
        try:
            partial.chmod(mode)  # a layer's own "./" entry may change it again
            apply_layers(paths, partial)
            partial.rename(rootfs)  # replaces an empty directory, atomically
        except BaseException:
            remove_tree(partial)
            raise
