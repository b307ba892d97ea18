"""hardway.isolation.cgroups: detection from mountinfo text, and test groups made and removed.

The fake mountinfo texts are modelled on real kernels (the comment above each says which);
this machine's own /proc/self/mountinfo is a case too, checked against /proc/self/cgroup.
"""

from __future__ import annotations

import doctest
import importlib
import os
from pathlib import Path

import pytest

from hardway.isolation.cgroups import CgroupMode, detect, usable_controllers
from hardway.sys.mountinfo import parse_mountinfo

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


@pytest.mark.parametrize("name", ["cgroups", "group", "stats"])
def test_doctests(name: str) -> None:
    assert doctest.testmod(importlib.import_module(f"hardway.isolation.{name}")).failed == 0


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


# -- groups: limits, stats, removal -----------------------------------------------------------
# The v2 path runs against a fake tree: a tmp directory laid out like a cgroup2 mount, with
# the files the kernel would create filled in by the test the way the kernel fills them.

from hardway.errors import CgroupError, DelegationError  # noqa: E402
from hardway.isolation import cgroups, limits  # noqa: E402
from hardway.isolation.cgroups import find_delegation, require_delegation  # noqa: E402
from hardway.isolation.group import Group  # noqa: E402
from hardway.isolation.limits import Limits  # noqa: E402


def test_limits_doctests() -> None:
    assert doctest.testmod(limits).failed == 0


def _fake_v2(root: Path) -> CgroupMode:
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    (root / "cgroup.subtree_control").write_text("")
    return detect(V2, root=root)


def test_v2_group_writes_limits_and_reads_events(tmp_path: Path) -> None:
    mode = _fake_v2(tmp_path)
    group = Group(Limits(memory="32M", cpus=0.5, pids=16), label="fake", mode=mode)
    assert group.version == "v2" and group.name.startswith("hardway-fake-")
    (directory,) = group.directories
    assert directory.parent == tmp_path
    with group:
        assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
        assert (directory / "memory.max").read_text() == f"{32 << 20}\n"
        assert (directory / "cpu.max").read_text() == "50000 100000\n"
        assert (directory / "pids.max").read_text() == "16\n"
        group.add(4242)
        assert (directory / "cgroup.procs").read_text() == "4242\n"
        # what the kernel would write after an OOM kill, throttling and a refused fork
        (directory / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n")
        (directory / "memory.current").write_text("1234\n")
        (directory / "cpu.stat").write_text(
            "usage_usec 900\nuser_usec 800\nsystem_usec 100\nnr_periods 10\n"
            "nr_throttled 4\nthrottled_usec 300\n"
        )
        (directory / "pids.current").write_text("16\n")
        (directory / "pids.events").write_text("max 5\n")
        (directory / "cgroup.procs").write_text("")  # the process has left
        stats = group.stats()
    assert (stats.oom_kills, stats.memory_limit_hits, stats.memory_max) == (1, 7, 32 << 20)
    assert (stats.nr_periods, stats.nr_throttled, stats.throttled_usec) == (10, 4, 300)
    assert (stats.pids_current, stats.pids_max, stats.pids_refused) == (16, 16, 5)
    assert stats.oom_killed and stats.throttled and stats.pids_limited
    bundle = stats._repr_mimebundle_()
    assert "OOM kills" in bundle["text/plain"] and bundle["text/html"].startswith("<table>")
    assert not directory.exists()


def test_v2_controllers_already_enabled_are_not_rewritten(tmp_path: Path) -> None:
    mode = _fake_v2(tmp_path)
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory pids\n")
    with Group(Limits(cpu_weight=50), mode=mode) as group:
        (directory,) = group.directories
        assert (directory / "cpu.weight").read_text() == "50\n"
        assert not (directory / "memory.max").exists()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "cpu memory pids\n"


def test_a_machine_without_the_controllers_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu io\n")
    with pytest.raises(CgroupError, match="memory, cpu and pids"):
        Group(Limits(memory="1M"), mode=detect(V2, root=tmp_path))


def _delegated_tree(root: Path, uid: int) -> tuple[CgroupMode, str]:
    mode = _fake_v2(root)
    service = root / "user.slice" / f"user-{uid}.slice" / f"user@{uid}.service"
    scope = service / "app.slice" / "jupyter.scope"
    scope.mkdir(parents=True)
    for directory in (service, service / "app.slice", scope):
        for name in ("cgroup.procs", "cgroup.subtree_control"):
            (directory / name).write_text("")
    (service / "cgroup.controllers").write_text("memory pids\n")
    return mode, f"0::/user.slice/user-{uid}.slice/user@{uid}.service/app.slice/jupyter.scope\n"


def test_delegation_is_found_at_the_top_of_the_owned_subtree(tmp_path: Path) -> None:
    uid = os.geteuid() or 4242  # as root: a user's sub-tree, chowned to them as systemd does
    mode, proc_self = _delegated_tree(tmp_path, uid)
    service = next(tmp_path.rglob("user@*.service"))
    if os.geteuid() == 0:
        for path in [service, *service.rglob("*")]:
            os.chown(path, uid, uid)
        assert find_delegation(mode, proc_self, uid) == service  # the top of what is theirs
    else:  # the whole fake tree is ours: the slices above the service count too
        found = find_delegation(mode, proc_self, uid)
        assert found is not None and found.is_relative_to(tmp_path)
    assert find_delegation(mode, proc_self, uid + 12345) is None  # nothing owned by them
    assert find_delegation(mode, "0::/\n", uid + 12345) is None


def test_root_needs_no_delegation_the_whole_v2_tree_is_its_own(tmp_path: Path) -> None:
    """Seen on a real pure-v2 kernel: as root every directory 'belongs' to uid 0, and the
    search used to answer ``user.slice`` — a sub-tree, as if root needed one."""
    mode, proc_self = _delegated_tree(tmp_path, 1000)
    assert find_delegation(mode, proc_self, 0) == tmp_path
    assert find_delegation(mode, "0::/\n", 0) == tmp_path


def test_delegation_without_cpu_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    mode, proc_self = _delegated_tree(tmp_path, os.geteuid())
    service = next(tmp_path.rglob("user@*.service"))
    monkeypatch.setattr(cgroups, "find_delegation", lambda *a, **k: service)
    with pytest.raises(DelegationError, match="lacks the controller") as info:
        require_delegation(mode, proc_self)
    assert "Delegate=" in str(info.value)
    (service / "cgroup.controllers").write_text("cpu memory pids\n")
    assert require_delegation(mode, proc_self) == service


def test_v1_is_never_delegated(tmp_path: Path) -> None:
    with pytest.raises(DelegationError, match="cannot be delegated") as info:
        require_delegation(detect(V1, root=tmp_path))
    assert isinstance(info.value, PermissionError)


def test_v1_group_layout_on_a_fake_tree(tmp_path: Path) -> None:
    mode = _fake_hybrid(tmp_path)
    group = Group(Limits(memory="8M", cpus=0.25, pids=4), mode=mode, parent="/")
    assert group.version == "v1"
    with group:
        assert (tmp_path / "memory" / group.name / "memory.limit_in_bytes").read_text() == (
            f"{8 << 20}\n"
        )
        cpu = tmp_path / "cpu,cpuacct" / group.name
        assert (cpu / "cpu.cfs_quota_us").read_text() == "25000\n"
        (tmp_path / "memory" / group.name / "memory.oom_control").write_text(
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
        )
        (cpu / "cpu.stat").write_text("nr_periods 5\nnr_throttled 3\nthrottled_time 7000\n")
        stats = group.stats()
        assert cgroups.find_groups(mode) == sorted(group.directories)
    assert (stats.oom_kills, stats.nr_throttled, stats.throttled_usec) == (2, 3, 7)
    assert cgroups.find_groups(mode) == []


def _run_child(group: Group, code: str) -> int:
    """A small python child that joins *group* first, then runs *code*; its exit status."""
    import subprocess
    import sys

    joiner = "".join(f"open({p!r}, 'w').write(str(__import__('os').getpid()));" for p in
                     group.procs_files)  # fmt: skip
    return subprocess.run([sys.executable, "-c", joiner + code], timeout=60).returncode


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real cgroups")
def test_real_memory_limit_gets_a_hog_oom_killed() -> None:
    with Group(Limits(memory="48M"), label="test-hog") as group:
        code = _run_child(group, "b = bytearray(200 << 20)")
        stats = group.stats()
    assert code == -9  # SIGKILL from the OOM killer
    assert stats.oom_killed, stats


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real cgroups")
def test_real_cpu_quota_throttles_and_pids_limit_refuses_forks() -> None:
    with Group(Limits(cpus=0.1, pids=8), label="test-cpu") as group:
        busy = "import time\nend = time.monotonic() + 0.6\nwhile time.monotonic() < end: pass\n"
        assert _run_child(group, busy) == 0
        bomb = (
            "import os, time\nkids = []\nfor _ in range(20):\n    try:\n"
            "        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(5); os._exit(0)\n    kids.append(pid)\n"
            "print(len(kids))\n"
        )
        _run_child(group, bomb)
        stats = group.stats()
    assert stats.throttled, stats
    assert stats.pids_limited and stats.pids_max == 8, stats


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real cgroups")
def test_real_pids_limit_counts_threads_too() -> None:
    """``pids.max`` limits *tasks*: one process that only starts threads hits it as well
    (the docs and ``--pids`` say "processes and threads", not "processes")."""
    threads = (
        "import os, threading, time\nn = 0\nfor _ in range(20):\n    try:\n"
        "        threading.Thread(target=time.sleep, args=(3,), daemon=True).start()\n"
        "    except RuntimeError:\n        break\n    n += 1\nos._exit(n)\n"
    )
    with Group(Limits(pids=4), label="test-threads") as group:
        started = _run_child(group, threads)
        stats = group.stats()
    assert started == 3, started  # the main thread is the 4th task
    assert stats.pids_limited, stats
