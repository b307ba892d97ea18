"""hardway.sys.trees
~~~~~~~~~~~~~~~~~~

``rm -rf`` for the trees the course makes. ``shutil.rmtree`` alone stops at a directory
it may not write or read: a layer can make one read-only (mode 0555), and overlayfs
leaves its ``work/work`` directory at mode 000. So every directory is opened up first,
top down, before anything is removed — never through a symlink, which inside a root
filesystem may point anywhere on the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

__all__ = ["remove_tree"]


def remove_tree(path: Path | str) -> None:
    """Remove ``path`` and everything under it, as far as possible; a missing ``path``
    is fine. Errors are ignored: what is left is what could not be removed at all."""
    if os.path.islink(path) or os.path.isfile(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    for current, dirs, _files in os.walk(path):  # top down: a child opens before its walk
        for name in dirs:
            child = os.path.join(current, name)
            if not os.path.islink(child):  # os.walk lists a symlink to a directory here
                with contextlib.suppress(OSError):
                    os.chmod(child, 0o700)
    shutil.rmtree(path, ignore_errors=True)
