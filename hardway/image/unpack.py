"""hardway.image.unpack
~~~~~~~~~~~~~~~~~~~~

An image's root filesystem: every layer of it applied, in order, to one directory —
what ``umoci unpack`` and a container runtime's image store do before a container
starts (chapter 06; chapter 08 unpacks what it pulled, chapter 10 what it built).

Two rules make it safe against a bad image or a bad moment. No byte reaches the root
filesystem's name before its layer's digest (the compressed blob) and diff_id (the tar)
have been checked. And an unpack that does not finish leaves no half root filesystem
behind: a new one is built next to its place, as ``.NAME.partial-XXXXXXXX``, and renamed
into it at the end; a failure removes it.

Within those rules it is fast: the layers download while they are applied (several at
a time, each to a temporary file), and inflating, hashing and creating files run in
threads of their own (:mod:`hardway.image.pipeline`), so bytes are applied to the
partial directory before their digest is known — and if it turns out wrong, the
partial directory goes. Layers applied *on top* of an existing tree (which cannot be
taken back) are downloaded and checked whole first.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from hardway.errors import DigestMismatchError
from hardway.image.apply import apply_layer, default_max_size
from hardway.image.compression import NONE, decompressed
from hardway.image.pipeline import Downloads, ReadAhead, Spool
from hardway.image.protocols import Image, Layer
from hardway.sys.trees import remove_tree

__all__ = ["DOWNLOADS", "unpack_image"]

#: layers downloaded at the same time
DOWNLOADS = 3


def unpack_image(image: Image, rootfs: Path | str, *, downloads: int = DOWNLOADS) -> None:
    """Apply every layer of ``image`` to ``rootfs``, lowest first: a corrupt layer (its
    digest, its size or its diff_id wrong) raises, and leaves nothing behind.

    A new or empty ``rootfs`` is built as ``.NAME.partial-XXXXXXXX`` next to it while the
    layers download (``downloads`` at a time), and renamed into place once every layer is
    applied and checked; on failure (an error, Ctrl-C, a kernel interrupt) the partial
    directory is removed (only a SIGKILL can leave one, clearly named). Layers unpacked
    onto a directory that already has content are downloaded and checked first, then
    applied on top, in place, as ``layer apply`` does.
    """
    rootfs = Path(rootfs)
    on_top = rootfs.is_dir() and (any(rootfs.iterdir()) or os.path.ismount(rootfs))
    layers = image.layers()
    with (
        tempfile.TemporaryDirectory(prefix="hardway-unpack-") as work,
        Downloads(work, [layer.compressed for layer in layers], downloads) as spools,
    ):
        if on_top:
            for spool in spools:
                spool.wait()  # all of them checked before the tree is touched
            _apply_all(layers, spools, rootfs)
            return
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IMODE(rootfs.stat().st_mode) if rootfs.is_dir() else 0o755
        partial = Path(tempfile.mkdtemp(prefix=f".{rootfs.name}.partial-", dir=rootfs.parent))
        try:
            partial.chmod(mode)  # a layer's own "./" entry may change it again
            _apply_all(layers, spools, partial)
            partial.rename(rootfs)  # replaces an empty directory, atomically
        except BaseException:
            remove_tree(partial)
            raise


def _apply_all(layers: list[Layer], spools: list[Spool], root: Path) -> None:
    """Apply each layer as its blob arrives; return once every digest was checked."""
    for layer, spool in zip(layers, spools, strict=True):
        # inflating runs in a thread of its own; the tar is hashed here, a block at a
        # time: that balances the two threads (for a 1 GB layer: inflate ~1.7 s, sha256
        # ~0.7 s, tar and files ~1.6 s)
        diff_id = _DiffId(layer)
        tar = ReadAhead(decompressed(spool.reader()), on_block=diff_id.update)
        try:
            apply_layer(tar, root, compression=NONE, max_size=default_max_size(layer.size))
            spool.wait()  # the decompressor may stop before the blob's last bytes
        except Exception:
            # a corrupt blob often breaks the decompressor or the tar before its end
            # is reached: the digest is the real reason, so it is the one reported
            if (failure := spool.failure) is not None:
                raise failure from None
            raise
        finally:
            tar.close()
        diff_id.check()  # apply_layer read the tar to its end
        spool.close()  # its disk space is free for the next layers


class _DiffId:
    """The sha256 of a layer's tar as it passes, checked against its diff_id at the end."""

    def __init__(self, layer: Layer) -> None:
        self._layer = layer
        self._hash = hashlib.new(layer.diff_id.algorithm)
        self.update = self._hash.update

    def check(self) -> None:
        want = self._layer.diff_id
        if self._hash.hexdigest() != want.encoded:
            got = f"{want.algorithm}:{self._hash.hexdigest()}"
            raise DigestMismatchError(
                f"layer {str(self._layer.digest)[:19]}…: its tar hashes to {got[:19]}…, but "
                f"the config's diff_id is {str(want)[:19]}…: it is corrupt or was tampered with",
                fix="fetch or copy the image again from a source you trust",
            )
