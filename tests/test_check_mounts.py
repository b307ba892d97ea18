"""The mount safety net of the checks: a learner's mount code runs in a peer of a stand-in
for the host's namespace; what propagates is named, and the real host never changes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hardway.course.checks.child import TimeLimit
from hardway.course.checks.mounts import Leak, Propagated, changes, sandboxed
from hardway.sys import linux

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root here")


def _host_mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


@pytest.fixture
def target(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return tmp_path


def test_a_private_namespace_leaks_nothing_and_its_result_comes_back(target: Path) -> None:
    def careful() -> str:
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        linux.mount(str(target), str(target), None, linux.MS_BIND)
        return "bound"

    assert sandboxed(careful) == "bound"


def test_a_forgotten_ms_private_is_named_and_the_host_is_untouched(target: Path) -> None:
    before = _host_mounts()

    def forgetful() -> None:
        linux.mount(str(target), str(target), None, linux.MS_BIND)

    with pytest.raises(Propagated, match=f"your mount on {target} .*make / private first"):
        sandboxed(forgetful)
    assert _host_mounts() == before


def test_an_unmount_that_propagates_is_named_and_setup_mounts_are_no_leak(target: Path) -> None:
    scratch = target / "scratch"
    scratch.mkdir()

    def setup() -> None:
        linux.mount("tmpfs", str(scratch), "tmpfs", 0, "size=1m")

    def sees_it() -> bool:
        return os.path.ismount(scratch)

    assert sandboxed(sees_it, setup=setup) is True  # shared with the learner, not a leak

    def unmounts() -> None:
        linux.umount2(str(scratch))

    with pytest.raises(Propagated, match=f"your unmount of {scratch} propagated"):
        sandboxed(unmounts, setup=setup)
    assert not os.path.ismount(scratch)


def test_the_propagation_outranks_the_error_it_caused(target: Path) -> None:
    def then_fails() -> None:
        linux.mount(str(target), str(target), None, linux.MS_BIND)
        raise OSError(22, "pivot_root: Invalid argument")

    with pytest.raises(Propagated):
        sandboxed(then_fails)

    def only_fails() -> None:
        raise OSError(22, "pivot_root: Invalid argument")

    with pytest.raises(OSError, match="Invalid argument"):
        sandboxed(only_fails)


def test_a_hanging_learner_is_stopped_at_the_time_limit() -> None:
    def hangs() -> None:
        time.sleep(60)

    started = time.monotonic()
    with pytest.raises(TimeLimit, match="your code was still running"):
        sandboxed(hangs, timeout=1)
    assert time.monotonic() - started < 15


def test_changes_tell_two_mounts_on_one_point_apart() -> None:
    root = "36 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw"
    tmp = "40 36 0:50 / /tmp rw shared:2 - tmpfs tmpfs rw"
    bound = "91 40 0:50 / /tmp rw shared:2 - tmpfs tmpfs rw"
    assert changes(f"{root}\n{tmp}", f"{root}\n{tmp}\n{bound}") == [Leak("mount", "/tmp", "tmpfs")]
    assert changes(f"{root}\n{tmp}", tmp) == [Leak("unmount", "/", "ext4")]
    assert Leak("unmount", "/", "ext4").describe() == "your unmount of the old root"
    assert changes(root, root) == []


def test_a_proc_that_propagates_is_named_though_it_covers_the_stand_in_s() -> None:
    def mounts_proc_in_a_pid_namespace() -> None:
        linux.unshare(linux.CLONE_NEWPID)
        if os.fork() == 0:  # PID 1: its procfs shows only itself, and it is gone after
            linux.mount("proc", "/proc", "proc")
            os._exit(0)
        os.wait()

    with pytest.raises(Propagated, match=r"your mount on /proc \(proc\) propagated"):
        sandboxed(mounts_proc_in_a_pid_namespace)


def test_what_the_learner_left_running_dies_with_the_sandbox() -> None:
    reader, writer = os.pipe()

    def leaves_one_and_hangs() -> None:
        child = os.fork()
        if child == 0:
            os.setsid()  # out of the process group in_child kills
            time.sleep(60)
            os._exit(0)
        os.write(writer, str(child).encode())
        time.sleep(60)

    with pytest.raises(TimeLimit):
        sandboxed(leaves_one_and_hangs, timeout=1)
    os.close(writer)
    left = int(os.read(reader, 32))
    os.close(reader)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{left}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{left}").exists() or "Z" in Path(f"/proc/{left}/stat").read_text()
