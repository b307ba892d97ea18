"""The checks of lab 02 run the learner's code for real and catch the usual mistakes, each
with a message that names it; the solution earns every point and the blank lab none."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from labcode import ROOT, fails, lab_namespace, statuses, statuses_as_nobody, wrong

from hardway.course.autograde import grade_notebook
from hardway.course.checks.lab02 import REFERENCE
from hardway.course.grading import run_check

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the checks of lab 02 need root")


@pytest.fixture(scope="module")
def solution() -> dict[str, object]:
    return lab_namespace("solutions", "02")


def test_the_solution_earns_every_point(solution: dict[str, object]) -> None:
    found, points = statuses("02", solution)
    assert found == ["passed"] * len(found) and points == 20, found


def test_the_blank_lab_is_not_attempted() -> None:
    found, _ = statuses("02", lab_namespace("labs", "02"))
    assert found == ["not attempted"] * len(found), found


def test_without_root_the_real_checks_are_not_graded(solution: dict[str, object]) -> None:
    found = statuses_as_nobody("02", solution)
    assert found == ["passed"] * 0 + ["not graded"] * (len(found) - 0), found


def test_the_course_s_versions_pass_the_checks_they_stand_in_for(
    solution: dict[str, object],
) -> None:
    assert run_check("02.1", {**solution, "my_spawn": REFERENCE["my_spawn"]}).status == "passed"
    proc = REFERENCE["my_mount_proc"]
    assert run_check("02.2", {**solution, "my_mount_proc": proc}).status == "passed"


# -- 02.1 my_spawn: one template, one step changed per wrong answer ---------------------------

SPAWN = """
def my_spawn(target, *, namespaces, uid=0, hostname=None):
    flags = linux.namespace_flags(*namespaces)
    unshared_r, unshared_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            linux.unshare(flags)
            os.write(unshared_w, b"u")
            {wait}
            {child_maps}
            if hostname is not None:
                linux.sethostname(hostname)
            if "pid" in namespaces and {fork}:
                child = os.fork()
                if child == 0:
                    os._exit(target())
                code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
            else:
                code = target()
        finally:
            os._exit(code)
    os.read(unshared_r, 1)
    if "user" in namespaces:
        {parent_maps}
    os.write(go_w, b"g")
    {result}
"""
MAPS = (
    'Path(f"/proc/{pid}/setgroups").write_text("deny")\n'
    '        Path(f"/proc/{pid}/uid_map").write_text(f"{uid} {os.getuid()} 1")\n'
    '        Path(f"/proc/{pid}/gid_map").write_text(f"{uid} {os.getgid()} 1")'
)
SPAWN_STEPS = {
    "wait": "os.read(go_r, 1)",
    "child_maps": "pass",
    "fork": "True",
    "parent_maps": MAPS,
    "result": "return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])",
}


def _spawn(**changed: str) -> str:
    return SPAWN.format(**{**SPAWN_STEPS, **changed})


def test_02_1_the_template_passes(solution: dict[str, object]) -> None:
    assert run_check("02.1", wrong(solution, _spawn())).status == "passed"


def test_02_1_uid_map_written_from_the_child_is_named(solution: dict[str, object]) -> None:
    fails("02.1", solution, _spawn_from_child(), "written by the child itself")


def _spawn_from_child() -> str:
    child_maps = (
        'if "user" in namespaces:\n'
        '                open("/proc/self/setgroups", "w").write("deny")\n'
        '                open("/proc/self/uid_map", "w").write(f"{uid} {os.getuid()} 1")\n'
        '                open("/proc/self/gid_map", "w").write(f"{uid} {os.getgid()} 1")'
    )
    return _spawn(child_maps=child_maps, parent_maps="pass")


def test_02_1_setgroups_not_denied_is_named(solution: dict[str, object]) -> None:
    maps = MAPS.split("\n", 1)[1].strip()
    fails("02.1", solution, _spawn(parent_maps=maps), "setgroups is 'allow'", "before gid_map")


def test_02_1_setgroups_denied_after_gid_map_is_named(solution: dict[str, object]) -> None:
    lines = MAPS.split("\n")
    late = "\n".join([lines[1].strip(), "        " + lines[2].strip(), "        " + lines[0]])
    fails("02.1", solution, _spawn(parent_maps=late), "setgroups", "*before* gid_map")


def test_02_1_a_map_that_assumes_root_is_refused_rootless(solution: dict[str, object]) -> None:
    as_root = MAPS.replace("{os.getuid()}", "0").replace("{os.getgid()}", "0")
    fails("02.1", solution, _spawn(parent_maps=as_root), "as uid 65534", "only its own id")


def test_02_1_a_child_that_does_not_wait_for_its_maps_is_named(
    solution: dict[str, object],
) -> None:
    fails("02.1", solution, _spawn(wait="pass"), "make the child wait on a pipe")


def test_02_1_a_pid_namespace_without_a_fork_is_named(solution: dict[str, object]) -> None:
    fails("02.1", solution, _spawn(fork="False"), "not 1", "fork after it")


def test_02_1_not_waiting_for_the_child_is_named(solution: dict[str, object]) -> None:
    fails("02.1", solution, _spawn(result="return 0"), "wait for the child")


def test_02_1_a_namespace_forgotten_is_named(solution: dict[str, object]) -> None:
    answer = _spawn().replace(
        "linux.namespace_flags(*namespaces)",
        'linux.namespace_flags(*(k for k in namespaces if k != "net"))',
    )
    fails("02.1", solution, answer, "still in the caller's net namespace")


# -- 02.2 my_mount_proc ----------------------------------------------------------------------


def test_02_2_a_forgotten_ms_private_is_caught_and_nothing_leaks(
    solution: dict[str, object],
) -> None:
    before = Path("/proc/self/mountinfo").read_text()
    answer = """
    def my_mount_proc():
        flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
        linux.mount("proc", "/proc", "proc", flags)
    """
    fails("02.2", solution, answer, "your mount on /proc (proc) propagated", "private")
    assert Path("/proc/self/mountinfo").read_text() == before


def test_02_2_a_bind_mount_of_the_old_proc_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_mount_proc():
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        linux.mount("/proc", "/proc", None, linux.MS_BIND | linux.MS_REC)
    """
    fails("02.2", solution, answer, "another PID namespace", "bind mount of the old /proc")


def test_02_2_proc_without_its_flags_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_mount_proc():
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        linux.mount("proc", "/proc", "proc")
    """
    fails("02.2", solution, answer, "without nosuid, nodev, noexec")


# -- 02.3 my_container -----------------------------------------------------------------------


def test_02_3_proc_mounted_before_the_fork_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_container(target):
        my_mount_proc()
        return my_spawn(target, namespaces=["pid", "mnt"])
    """
    fails("02.3", solution, answer, "mounted before the fork")


def test_02_3_no_mount_namespace_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_container(target):
        def pid_one():
            my_mount_proc()
            return target()
        return my_spawn(pid_one, namespaces=["pid"])
    """
    fails("02.3", solution, answer, "changed the caller's mount table", "'mnt'")


def test_02_3_no_pid_namespace_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_container(target):
        def pid_one():
            my_mount_proc()
            return target()
        return my_spawn(pid_one, namespaces=["mnt"])
    """
    fails("02.3", solution, answer, "ask my_spawn for a 'pid' namespace")


# -- 02.4 my_enter -----------------------------------------------------------------------------


def test_02_4_opening_each_file_after_the_last_setns_is_named(
    solution: dict[str, object],
) -> None:
    answer = """
    def my_enter(pid, kinds):
        for kind in kinds:
            fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
            linux.setns(fd)
            os.close(fd)
    """
    fails("02.4", solution, answer, "opened after joining the mount namespace")


def test_02_4_a_kind_left_out_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_enter(pid, kinds):
        files = [os.open(f"/proc/{pid}/ns/{k}", os.O_RDONLY) for k in kinds if k != "mnt"]
        for fd in files:
            linux.setns(fd)
            os.close(fd)
    """
    fails("02.4", solution, answer, "the mnt namespace is not the container's")


# -- 02.5 my_exec_in ---------------------------------------------------------------------------

EXEC_IN = """
def my_exec_in(pid, kinds, target):
    {fork_first}
    if child == 0:
        code = 1
        try:
            my_enter(pid, kinds)
            if "pid" in kinds and {fork_again}:
                grandchild = os.fork()
                if grandchild == 0:
                    os._exit(target())
                code = os.waitstatus_to_exitcode(os.waitpid(grandchild, 0)[1])
            else:
                code = target()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
"""


def test_02_5_the_template_passes(solution: dict[str, object]) -> None:
    answer = EXEC_IN.format(fork_first="child = os.fork()", fork_again="True")
    assert run_check("02.5", wrong(solution, answer)).status == "passed"


def test_02_5_no_fork_after_joining_the_pid_namespace_is_named(
    solution: dict[str, object],
) -> None:
    answer = EXEC_IN.format(fork_first="child = os.fork()", fork_again="False")
    fails("02.5", solution, answer, "not in the container's PID namespace", "fork after")


def test_02_5_entering_in_the_caller_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_exec_in(pid, kinds, target):
        my_enter(pid, kinds)
        child = os.fork()
        if child == 0:
            os._exit(target())
        return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    """
    fails("02.5", solution, answer, "moved its caller", "fork first")


# -- 02.6 my_veth ------------------------------------------------------------------------------

VETH = """
def my_veth(pid, name, host_address, container_address):
    peer = name + "-c"
    def ip(*args, inside=False):
        enter = ["nsenter", "--target=" + str(pid), "--net"] if inside else []
        subprocess.run([*enter, "ip", *args], check=True, capture_output=True)
    ip("link", "add", name, "type", "veth", "peer", "name", peer)
    try:
        {move}
        ip("address", "add", host_address, "dev", name)
        {host_up}
        {inside}
    except BaseException:
        {cleanup}
        raise
"""
INSIDE = (
    'ip("link", "set", peer, "name", "eth0", inside=True)\n'
    '        ip("address", "add", container_address, "dev", "eth0", inside=True)\n'
    '        ip("link", "set", "eth0", "up", inside=True)\n'
    '        ip("link", "set", "lo", "up", inside=True)'
)
VETH_STEPS = {
    "move": 'ip("link", "set", peer, "netns", str(pid))',
    "host_up": 'ip("link", "set", name, "up")',
    "inside": INSIDE,
    "cleanup": 'subprocess.run(["ip", "link", "delete", name], capture_output=True)',
}


def _veth(**changed: str) -> str:
    return VETH.format(**{**VETH_STEPS, **changed})


def test_02_6_the_template_passes(solution: dict[str, object]) -> None:
    assert run_check("02.6", wrong(solution, _veth())).status == "passed"


def test_02_6_a_peer_left_on_the_host_is_named(solution: dict[str, object]) -> None:
    fails("02.6", solution, _veth(move="pass", inside="pass"), "still on the host", "netns")


def test_02_6_a_link_not_set_up_is_named(solution: dict[str, object]) -> None:
    fails("02.6", solution, _veth(host_up="pass"), "is DOWN on the host")
    inside = INSIDE.replace('        ip("link", "set", "eth0", "up", inside=True)\n', "")
    fails("02.6", solution, _veth(inside=inside), "eth0 is DOWN in the container")


def test_02_6_lo_left_down_is_named(solution: dict[str, object]) -> None:
    inside = INSIDE.rsplit("\n", 1)[0]
    fails("02.6", solution, _veth(inside=inside), "lo is DOWN")


def test_02_6_a_pair_left_behind_after_a_failure_is_named(solution: dict[str, object]) -> None:
    fails("02.6", solution, _veth(cleanup="pass"), "left", "behind", "ip link delete")


def test_02_6_nothing_is_left_on_this_machine(solution: dict[str, object]) -> None:
    before = sorted(os.listdir("/sys/class/net"))
    fails("02.6", solution, _veth(cleanup="pass"), "behind")
    assert sorted(os.listdir("/sys/class/net")) == before


# -- the headless grader survives a learner's runaway my_spawn --------------------------------

HANGS = """
def my_spawn(target, *, namespaces, uid=0, hostname=None):
    pid = os.fork()
    if pid == 0:
        while True:  # waits for a go that never comes
            time.sleep(1)
    return os.waitpid(pid, 0)[1]
"""


@pytest.mark.slow
def test_a_hanging_my_spawn_is_stopped_at_its_limit_and_scored(tmp_path: Path) -> None:
    nb = nbformat.read(ROOT / "solutions" / "02-namespaces.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.id == "ex-02-1":
            cell.source = "import time\n" + HANGS
        elif cell.id.startswith("try-02-"):  # the try-its would hang the kernel as well
            cell.source = "pass"
    path = tmp_path / "02-namespaces.ipynb"
    nbformat.write(nb, path)
    before = _children()
    grade = grade_notebook(path)
    by_id = {r.exercise: r for r in grade.results}
    assert by_id["02.1"].status == "failed"
    assert "still running after 20 s" in by_id["02.1"].message
    assert by_id["02.2"].status == by_id["02.6"].status == "passed"
    assert grade.error is None
    assert _children() == before


def _children() -> set[int]:
    return {
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and f"PPid:\t{os.getpid()}\n" in _status(p)
    }


def _status(proc: Path) -> str:
    try:
        return (proc / "status").read_text()
    except OSError:
        return ""
