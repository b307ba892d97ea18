"""The checks of lab 01 run the learner's code for real and catch the usual mistakes, each
with a message that names it; the solution earns every point and the blank lab none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from labcode import fails, lab_namespace, statuses, statuses_as_nobody, wrong

from hardway.course.checks.lab01 import REFERENCE
from hardway.course.grading import run_check

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the checks of lab 01 need root")


@pytest.fixture(scope="module")
def solution() -> dict[str, object]:
    return lab_namespace("solutions", "01")


def _host_mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def test_the_solution_earns_every_point(solution: dict[str, object]) -> None:
    found, points = statuses("01", solution)
    assert found == ["passed"] * len(found) and points == 19, found


def test_the_blank_lab_is_not_attempted() -> None:
    found, _ = statuses("01", lab_namespace("labs", "01"))
    assert found == ["not attempted"] * len(found), found


def test_without_root_the_real_checks_are_not_graded(solution: dict[str, object]) -> None:
    found = statuses_as_nobody("01", solution)
    assert found == ["passed"] * 2 + ["not graded"] * (len(found) - 2), found


def test_the_course_s_versions_pass_the_checks_they_stand_in_for(
    solution: dict[str, object],
) -> None:
    assert run_check("01.3", {**solution, "my_rootfs": REFERENCE["my_rootfs"]}).status == "passed"
    pivot = REFERENCE["my_pivot_root"]
    assert run_check("01.6", {**solution, "my_pivot_root": pivot}).status == "passed"


# -- 01.2 ------------------------------------------------------------------------------------


def test_01_2_ldd_in_disguise_fails_on_a_made_up_elf_file(solution: dict[str, object]) -> None:
    answer = """
    def my_interpreter(path):
        out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        found = parse_ldd(out)
        return found[-1] if found else None
    """
    fails("01.2", solution, answer, "made-up 64-bit ELF file")


def test_01_2_a_64_bit_only_reader_fails_on_a_32_bit_file(solution: dict[str, object]) -> None:
    answer = """
    def my_interpreter(path):
        data = open(path, "rb").read()
        if data[:4] != b"\\x7fELF":
            raise ValueError(path)
        (phoff,) = struct.unpack_from("<Q", data, 32)
        size, count = struct.unpack_from("<HH", data, 54)
        for i in range(count):
            entry = phoff + i * size
            if struct.unpack_from("<I", data, entry)[0] == 3:
                (offset,) = struct.unpack_from("<Q", data, entry + 8)
                (length,) = struct.unpack_from("<Q", data, entry + 32)
                return data[offset : offset + length].rstrip(b"\\0").decode()
        return None
    """
    fails("01.2", solution, answer, "32-bit")


def test_01_2_a_search_for_ld_linux_in_the_bytesfails(solution: dict[str, object]) -> None:
    answer = """
    import re
    def my_interpreter(path):
        found = re.search(rb"/lib[^\\0]*/ld-linux[^\\0]*", open(path, "rb").read())
        return found[0].decode() if found else None
    """
    fails("01.2", solution, answer, "made-up")


def test_01_2_a_script_must_be_refused(solution: dict[str, object]) -> None:
    answer = """
    _right = my_interpreter
    def my_interpreter(path):
        try:
            return _right(path)
        except ValueError:
            return None
    """
    fails("01.2", solution, answer, "raise ValueError")


# -- 01.3 ------------------------------------------------------------------------------------

ROOTFS = """
def my_rootfs(dest, programs):
    Path(dest).mkdir(parents=True, exist_ok=True)
    for name in programs:
        {find}
        out = subprocess.run(["ldd", program], capture_output=True, text=True).stdout
        for path in [program, *{files}]:
            target = Path(dest) / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(target):
                shutil.copy(path, target, follow_symlinks={follow})
    return Path(dest)
"""
ROOTFS_STEPS = {
    "find": "program = shutil.which(name)",
    "files": "parse_ldd(out), my_interpreter(program)",
    "follow": "True",
}


def _rootfs(**changed: str) -> str:
    return ROOTFS.format(**{**ROOTFS_STEPS, **changed})


def test_01_3_the_template_passes(solution: dict[str, object]) -> None:
    assert run_check("01.3", wrong(solution, _rootfs())).status == "passed"


def test_01_3_libraries_without_the_loader_are_named(solution: dict[str, object]) -> None:
    libraries = '[line.split("=>")[1].split()[0] for line in out.splitlines() if "=>" in line]'
    fails("01.3", solution, _rootfs(files=libraries), "dynamic loader", "missing from the root")


def test_01_3_a_loader_copied_as_a_link_is_named(solution: dict[str, object]) -> None:
    answer = _rootfs(files="parse_ldd(out)", follow="False")
    fails("01.3", solution, answer, "symbolic link")


def test_01_3_the_loader_alone_is_not_enough(solution: dict[str, object]) -> None:
    answer = _rootfs(files="[my_interpreter(program)]")
    fails("01.3", solution, answer, "a library is missing", "cannot open shared object")


def test_01_3_programs_given_by_name_must_be_found(solution: dict[str, object]) -> None:
    skip_names = 'if not name.startswith("/"):\n            continue\n        program = name'
    fails("01.3", solution, _rootfs(find=skip_names), "is not in the root")


# -- 01.4 ------------------------------------------------------------------------------------

CHROOT_RUN = """
def my_chroot_run(root, argv):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.dup2(write_end, 1)
            {stderr}
            {chroot}
            {chdir}
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(write_end)
    output = b""
    while chunk := os.read(read_end, 65536):
        output += chunk
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return {result}, output.decode()
"""
RUN_STEPS = {
    "stderr": "os.dup2(write_end, 2)",
    "chroot": "os.chroot(root)",
    "chdir": 'os.chdir("/")',
    "result": "os.waitstatus_to_exitcode(status)",
}


def _chroot_run(**changed: str) -> str:
    return CHROOT_RUN.format(**{**RUN_STEPS, **changed})


def test_01_4_the_steps_in_order_pass(solution: dict[str, object]) -> None:
    assert run_check("01.4", wrong(solution, _chroot_run())).status == "passed"


def test_01_4_chroot_in_the_caller_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_chroot_run(root, argv):
        os.chroot(root)
        os.chdir("/")
        done = subprocess.run(argv, capture_output=True, text=True)
        return done.returncode, done.stdout + done.stderr
    """
    fails("01.4", solution, answer, "moved its caller", "fork")


def test_01_4_a_forgotten_chdir_is_named(solution: dict[str, object]) -> None:
    fails("01.4", solution, _chroot_run(chdir="pass"), "working directory was not /")


def test_01_4_stderr_left_out_is_named(solution: dict[str, object]) -> None:
    fails("01.4", solution, _chroot_run(stderr="pass"), "stderr is missing")


def test_01_4_the_raw_wait_status_is_named(solution: dict[str, object]) -> None:
    fails("01.4", solution, _chroot_run(result="status"), "waitstatus_to_exitcode")


def test_01_4_no_chroot_at_all_is_named(solution: dict[str, object]) -> None:
    fails("01.4", solution, _chroot_run(chroot="pass"), "chroot into root before execv")


# -- 01.5 ------------------------------------------------------------------------------------


def test_01_5_a_single_chroot_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_escape():
        for _ in range(256):
            os.chdir("..")
        os.chroot(".")
    """
    fails("01.5", solution, answer, "you chroot once only")


def test_01_5_a_forgotten_climb_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_escape():
        os.makedirs("out", exist_ok=True)
        os.chroot("out")
        os.chroot(".")
    """
    fails("01.5", solution, answer, "forgot to climb")


def test_01_5_a_short_climb_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_escape():
        os.makedirs("out", exist_ok=True)
        os.chroot("out")
        for _ in range(2):
            os.chdir("..")
        os.chroot(".")
    """
    fails("01.5", solution, answer, "climbed 2 times")


def test_01_5_chdir_into_the_subdirectory_first_is_a_mistake(
    solution: dict[str, object],
) -> None:
    answer = """
    def my_escape():
        os.makedirs("out", exist_ok=True)
        os.chdir("out")
        os.chroot(".")
        for _ in range(100):
            os.chdir("..")
        os.chroot(".")
    """
    fails("01.5", solution, answer, "still a directory inside the jail")


# -- 01.6 ------------------------------------------------------------------------------------

PIVOT = """
def my_pivot_root(new_root):
    {private}
    {bind}
    os.makedirs(new_root + "/.old", exist_ok=True)
    linux.pivot_root(new_root, new_root + "/.old")
    {chdir}
    {umount}
    {rmdir}
"""
STEPS = {
    "private": 'linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)',
    "bind": "linux.mount(new_root, new_root, None, linux.MS_BIND | linux.MS_REC)",
    "chdir": 'os.chdir("/")',
    "umount": 'linux.umount2("/.old", linux.MNT_DETACH)',
    "rmdir": 'os.rmdir("/.old")',
}


def _pivot(**changed: str) -> str:
    return PIVOT.format(**{**STEPS, **changed})


def test_01_6_the_steps_in_order_pass(solution: dict[str, object]) -> None:
    assert run_check("01.6", wrong(solution, _pivot())).status == "passed"


def test_01_6_a_forgotten_ms_private_is_caught_and_nothing_leaks(
    solution: dict[str, object],
) -> None:
    before = _host_mounts()
    message = fails("01.6", solution, _pivot(private="pass"), "propagated to the host's")
    assert "make / private first" in message
    assert _host_mounts() == before


def test_01_6_ms_private_without_ms_rec_is_caught(solution: dict[str, object]) -> None:
    private = 'linux.mount(None, "/", None, linux.MS_PRIVATE)'
    fails("01.6", solution, _pivot(private=private), "propagated", "MS_REC | MS_PRIVATE")


def test_01_6_no_bind_mount_is_named(solution: dict[str, object]) -> None:
    fails("01.6", solution, _pivot(bind="pass"), "not a mount point", "bind-mount it")


def test_01_6_an_old_root_left_mounted_is_named(solution: dict[str, object]) -> None:
    fails("01.6", solution, _pivot(umount="pass", rmdir="pass"), "old root is still mounted")


def test_01_6_the_dot_dot_pivot_without_unmount_is_named(solution: dict[str, object]) -> None:
    answer = """
    def my_pivot_root(new_root):
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
        linux.mount(new_root, new_root, None, linux.MS_BIND | linux.MS_REC)
        os.chdir(new_root)
        linux.pivot_root(".", ".")
        os.chdir("/")
    """
    fails("01.6", solution, answer, "old root is still mounted (stacked on /")


def test_01_6_an_unmount_without_mnt_detach_is_named(solution: dict[str, object]) -> None:
    fails("01.6", solution, _pivot(umount='linux.umount2("/.old")'), "EBUSY", "MNT_DETACH")


def test_01_6_a_forgotten_chdir_is_named(solution: dict[str, object]) -> None:
    fails("01.6", solution, _pivot(chdir="pass"), "working directory", "chdir('/')")


def test_01_6_a_put_old_left_behind_is_named(solution: dict[str, object]) -> None:
    fails("01.6", solution, _pivot(rmdir="pass"), "remove the put_old directory")
