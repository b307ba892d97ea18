"""hardway.sys.trees: rm -rf through read-only and unreadable directories, never
through a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hardway.sys.trees import remove_tree


def test_removes_read_only_and_unreadable_directories(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "ro" / "deep").mkdir(parents=True)
    (root / "ro" / "deep" / "file").write_text("x")
    (root / "work" / "work").mkdir(parents=True)
    (root / "work" / "work" / "inner").write_text("y")
    os.chmod(root / "work" / "work", 0)  # what overlayfs leaves
    os.chmod(root / "ro" / "deep", 0o555)
    os.chmod(root / "ro", 0o555)
    remove_tree(root)
    assert not root.exists()


def test_never_follows_a_symlink_out_of_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "host-dir"
    outside.mkdir(mode=0o750)
    (outside / "keep").write_text("mine")
    os.chmod(outside, 0o750)
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "escape").symlink_to(outside)
    remove_tree(root)
    assert not root.exists()
    assert (outside / "keep").read_text() == "mine"
    assert stat.S_IMODE(outside.stat().st_mode) == 0o750


def test_a_missing_tree_is_fine(tmp_path: Path) -> None:
    remove_tree(tmp_path / "never-made")
    (tmp_path / "a-link").symlink_to(tmp_path / "nowhere")
    remove_tree(tmp_path / "a-link")
    assert not os.path.lexists(tmp_path / "a-link")
