"""hardway.cgroups: detection from mountinfo text, and test groups made and removed.

The fake mountinfo texts are modelled on real kernels (the comment above each says which);
this machine's own /proc/self/mountinfo is a case too, checked against /proc/self/cgroup.
"""

from __future__ import annotations

import doctest
import os
from pathlib import Path

import pytest

import hardway.cgroups
from hardway.cgroups import CgroupMode, detect, parse_mountinfo, usable_controllers

# CentOS 7 (3.10): pure v1, co-mounted cpu,cpuacct and net_cls,net_prio, systemd's named one.
V1 = """\
18 62 0:17 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:7 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup \
rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
28 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup \
cgroup rw,cpu,cpuacct
29 24 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup \
rw,memory
30 24 0:26 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids
32 24 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:14 - cgroup \
cgroup rw,net_cls,net_prio
62 1 253:0 / / rw,relatime shared:1 - xfs /dev/mapper/centos-root rw,attr2,inode64,noquota
"""

# Ubuntu 22.04 (5.15): pure v2, systemd's default.
V2 = """\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 \
rw,nsdelegate,memory_recursiveprot
28 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
"""

# Ubuntu 20.04 (5.4): hybrid, v1 controllers plus an empty cgroup2 for systemd.
HYBRID = """\
25 22 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 \
rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup \
rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup \
rw,memory
31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup \
cgroup rw,cpu,cpuacct
32 25 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
"""

# A Docker container on a v2 host, with its own cgroup namespace: read-only, source "cgroup".
DOCKER_V2 = """\
612 611 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate
"""

# WSL1-like or a chroot without /sys: no cgroups at all.
NONE = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
"""

DEFAULT = Path("/sys/fs/cgroup")


def test_doctests() -> None:
    assert doctest.testmod(hardway.cgroups).failed == 0


def test_parse_mountinfo_reads_fields_and_escapes() -> None:
    text = "40 31 0:38 /sub /mnt/my\\040disk rw shared:3 master:2 - ext4 /dev/sdb1 rw,discard\n\n"
    (mount,) = parse_mountinfo(text)
    assert mount.mount_point == Path("/mnt/my disk")
    assert mount.root == "/sub"
    assert mount.fstype == "ext4"
    assert mount.super_options == ("rw", "discard")


def test_pure_v1(tmp_path: Path) -> None:
    mode = detect(V1, root=tmp_path)
    assert mode.version == "v1"
    assert mode.v2_path is None and mode.v2_controllers == ()
    assert set(mode.v1_controllers) == {"cpu", "cpuacct", "memory", "pids", "net_cls", "net_prio"}
    assert mode.v1_controllers["cpu"] == mode.v1_controllers["cpuacct"] == tmp_path / "cpu,cpuacct"
    assert mode.v1_named == ("systemd",)
    assert "xattr" not in mode.v1_controllers and "rw" not in mode.v1_controllers


def test_pure_v2_reads_the_controllers_file(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    mode = detect(V2, root=tmp_path)
    assert mode.version == "v2"
    assert mode.v2_path == tmp_path
    assert mode.v2_controllers == (
        "cpuset",
        "cpu",
        "io",
        "memory",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    )
    assert mode.v1_controllers == {}
    assert mode.controllers["memory"] == "v2"


def test_v2_in_a_container() -> None:
    mode = detect(DOCKER_V2, root=Path("/nonexistent"))
    assert mode.version == "v2" and mode.v2_controllers == ()


def test_hybrid(tmp_path: Path) -> None:
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    mode = detect(HYBRID, root=tmp_path)
    assert mode.version == "hybrid"
    assert mode.v2_path == tmp_path / "unified"
    assert mode.v2_controllers == ()
    assert mode.v1_controllers["memory"] == tmp_path / "memory"
    assert "cgroup2 at" in mode.describe() and "no controllers" in mode.describe()


def test_no_cgroups() -> None:
    mode = detect(NONE, root=DEFAULT)
    assert mode == CgroupMode("none", DEFAULT)
    assert usable_controllers(mode, ("memory",)) == {"memory": False}


def _proc_self_cgroup() -> tuple[set[str], bool]:
    """An independent witness: the hierarchies /proc/self/cgroup lists (v1 ids are > 0)."""
    v1: set[str] = set()
    v2 = False
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, _ = line.split(":", 2)
        if hierarchy == "0":
            v2 = True
        else:
            v1 |= {c for c in controllers.split(",") if c and not c.startswith("name=")}
    return v1, v2


def test_this_machine_agrees_with_proc_self_cgroup() -> None:
    text = Path("/proc/self/mountinfo").read_text()
    mode = detect(text)
    assert mode == detect()
    v1, v2 = _proc_self_cgroup()
    assert set(mode.v1_controllers) == v1
    expected = {(True, True): "hybrid", (True, False): "v1", (False, True): "v2"}.get(
        (bool(v1), v2), "none"
    )
    assert mode.version == expected
    if mode.v2_path is not None:
        offered = (mode.v2_path / "cgroup.controllers").read_text().split()
        assert list(mode.v2_controllers) == offered


@pytest.mark.skipif(
    not Path("/sys/fs/cgroup/unified/cgroup.procs").exists(),
    reason="this machine has no cgroup2 at /sys/fs/cgroup/unified: not a hybrid host",
)
def test_this_machine_is_hybrid() -> None:
    assert detect().version == "hybrid"


def _fake_hybrid(root: Path) -> CgroupMode:
    for name in ("memory", "cpu,cpuacct", "pids", "systemd", "unified"):
        (root / name).mkdir()
    (root / "unified" / "cgroup.controllers").write_text("hugetlb misc\n")
    (root / "unified" / "cgroup.subtree_control").write_text("hugetlb\n")
    return detect(HYBRID, root=root)


def test_usable_controllers_on_a_fake_tree(tmp_path: Path) -> None:
    mode = _fake_hybrid(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    usable = usable_controllers(mode)
    assert usable == {
        "cpu": True,
        "cpuacct": True,
        "hugetlb": True,
        "memory": True,
        "misc": True,
        "pids": True,
    }
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # cleaned up


def test_usable_controllers_when_mkdir_fails(tmp_path: Path) -> None:
    mode = _fake_hybrid(tmp_path)
    (tmp_path / "pids").rmdir()
    (tmp_path / "pids").write_text("not a directory")  # mkdir under it: NotADirectoryError
    (tmp_path / "memory").rmdir()  # the hierarchy vanished: FileNotFoundError
    usable = usable_controllers(mode, ("memory", "cpu", "pids", "blkio"))
    assert usable == {"memory": False, "cpu": True, "pids": False, "blkio": False}


def test_v2_controller_not_enabled_for_children(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    mode = detect(V2, root=tmp_path)
    # no cgroup.subtree_control at all: not enabled, and nothing to enable it through
    assert usable_controllers(mode, ("memory",)) == {"memory": False}
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    assert usable_controllers(mode, ("memory", "io")) == {"memory": True, "io": False}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates cgroups in /sys/fs/cgroup")
def test_usable_controllers_for_real_leave_nothing_behind() -> None:
    mode = detect()
    if mode.version == "none":
        pytest.skip("no cgroups mounted")
    parents = {*mode.v1_controllers.values(), *([mode.v2_path] if mode.v2_path else [])}
    before = {p: sorted(os.listdir(p)) for p in parents}
    usable = usable_controllers(mode, ("memory", "cpu", "pids"))
    assert all(usable.values()), usable
    assert {p: sorted(os.listdir(p)) for p in parents} == before
