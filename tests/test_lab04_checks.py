"""Lab 04's checks: the warm-ups are pure; the seccomp filter, the privilege drop and
``my_run`` run against the kernel (and ``my_run`` against runc). The solution earns full
points, the blank lab none, and each realistic wrong answer fails with a message that
names its mistake. Needs root, runc and a static busybox."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from labcode import failed, lab_source, learner, solution_with

from hardway.course.grading import run_check, summary
from hardway.isolation.cgroups import in_session
from hardway.sys.state import session_from_env

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "04-runtime.ipynb"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runc"), reason="the checks need root and runc"
)


def leftovers() -> list[str]:
    """hardway-lab04-… and hardway-run-… groups left at the top of the hierarchies."""
    top = Path("/sys/fs/cgroup")
    tops = [top, *(top / c for c in ("memory", "cpu", "cpuacct", "pids"))]
    return [
        p.name
        for top in tops
        if top.is_dir()
        for p in top.iterdir()
        if p.name.startswith(("hardway-lab04-", "hardway-run-"))
        and in_session(p.name, session_from_env() or "")  # not another test run's
    ]


def test_the_solution_earns_every_point() -> None:
    got = summary("04", learner(lab_source("solutions", "04")))
    assert got.points == got.max_points == 20, got
    assert not leftovers()


def test_the_blank_lab_is_not_attempted() -> None:
    namespace = learner(lab_source("labs", "04"))
    results = [run_check(f"04.{n}", namespace) for n in range(1, 7)]
    assert [r.status for r in results] == ["not attempted"] * 6, [r.line for r in results]
    assert not leftovers()


# -- 04.1, 04.2


def test_cmd_kept_after_an_override() -> None:
    namespace = learner("def command_line(e, c, o):\n    return list(e or []) + list(c or o or [])")
    failed("04.1", namespace, "command_line(")


def test_env_split_at_every_equals_sign() -> None:
    namespace = solution_with(
        "04",
        (
            'key, _, value = entry.partition("=")',
            'key, value = entry.split("=")[0], entry.split("=")[-1]',
        ),
    )
    failed("04.2", namespace, "merge_env(")


# -- 04.3


def test_a_filter_without_the_arch_check() -> None:
    namespace = solution_with(
        "04",
        ("        (BPF_LD_W_ABS, 0, 0, 4),  # arch\n", ""),
        ("        (BPF_JEQ_K, 1, 0, ARCHES[machine]),  # the expected ABI: skip the kill\n", ""),
        ("        (BPF_RET, 0, 0, SECCOMP_RET_KILL_PROCESS),\n", ""),
    )
    failed("04.3", namespace, "loading arch")


def test_a_jump_one_short_lands_on_allow() -> None:
    namespace = solution_with(
        "04",
        (
            "(BPF_JEQ_K, len(numbers) - i, 0, number)",
            "(BPF_JEQ_K, len(numbers) - i - 1, 0, number)",
        ),
    )
    failed("04.3", namespace, "on the deny list", "not EPERM")


def test_kill_instead_of_errno() -> None:
    namespace = solution_with(
        "04",
        (
            "(BPF_RET, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM)",
            "(BPF_RET, 0, 0, SECCOMP_RET_KILL_PROCESS)",
        ),
    )
    failed("04.3", namespace, "killed", "EPERM")


# -- 04.4


def test_capabilities_dropped_after_setuid() -> None:
    namespace = learner(
        lab_source("solutions", "04")
        + """

def my_drop_privileges(keep, uid=0):
    if uid != 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    linux.drop_bounding_set(keep)
    linux.clear_ambient()
    linux.set_capabilities(keep if uid == 0 else [], keep if uid == 0 else [], [])
    linux.set_no_new_privs()
"""
    )
    failed("04.4", namespace, "dropped after setuid")


def test_the_bounding_set_not_dropped() -> None:
    namespace = solution_with("04", ("    linux.drop_bounding_set(keep)\n", ""))
    failed("04.4", namespace, "bounding set was not dropped")


def test_no_new_privs_missing() -> None:
    namespace = solution_with("04", ("    linux.set_no_new_privs()\n", ""))
    failed("04.4", namespace, "no_new_privs is missing")


# -- 04.5: each one runs a container for real


def test_forgotten_ms_private() -> None:
    namespace = solution_with(
        "04", ('            linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)\n', "")
    )
    failed("04.5", namespace, "propagated to the host's mount namespace", "private")
    assert not leftovers()


SPAWN_WITHOUT_FORK = """
def my_spawn(target, *, namespaces, uid=0, hostname=None):
    pid = os.fork()
    if pid == 0:
        linux.unshare(linux.namespace_flags(*namespaces))
        if hostname:
            linux.sethostname(hostname)
        os._exit(target())  # no fork after unshare: not PID 1
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
"""


def test_pid_namespace_without_a_fork() -> None:
    namespace = learner(lab_source("solutions", "04") + SPAWN_WITHOUT_FORK)
    failed("04.5", namespace, "pid:", "fork after it")
    assert not leftovers()


FORK_THEN_TARGET = """\
        if os.fork() == 0:
            os._exit(target())
        os._exit(0 if os.wait()[1] == 0 else 1)"""


def test_hostname_set_before_the_uts_unshare() -> None:
    spawn = SPAWN_WITHOUT_FORK.replace(
        "        linux.unshare(linux.namespace_flags(*namespaces))\n"
        "        if hostname:\n            linux.sethostname(hostname)\n",
        "        if hostname:\n            linux.sethostname(hostname)\n"
        "        linux.unshare(linux.namespace_flags(*namespaces))\n",
    ).replace(
        "        os._exit(target())",
        FORK_THEN_TARGET,
    )
    namespace = learner(lab_source("solutions", "04") + spawn)
    failed("04.5", namespace, "hostname", "before the UTS unshare")


def test_proc_not_remounted() -> None:
    namespace = solution_with("04", ("            my_mount_proc()\n", ""))
    failed("04.5", namespace, "proc:", "mount a fresh proc")


def test_bounding_set_kept_in_the_runtime() -> None:
    namespace = solution_with("04", ("    linux.drop_bounding_set(keep)\n", ""))
    failed("04.5", namespace, "CapBnd", "PR_CAPBSET_DROP")


def test_seccomp_before_no_new_privs() -> None:
    namespace = solution_with(
        "04",
        (
            "            my_drop_privileges(list(RUNTIME_CAPS))\n"
            "            linux.set_seccomp_filter(my_seccomp_filter(list(DENY)))\n",
            "            linux.drop_bounding_set(list(RUNTIME_CAPS))\n"
            "            linux.set_capabilities(list(RUNTIME_CAPS), list(RUNTIME_CAPS), [])\n"
            "            linux.set_seccomp_filter(my_seccomp_filter(list(DENY)))\n"
            "            linux.set_no_new_privs()\n",
        ),
    )
    failed("04.5", namespace, "seccomp", "before no_new_privs")


def test_pids_too_low_to_start_the_shell() -> None:
    namespace = solution_with(
        "04",
        (
            'my_cgroup(group_name("run"), memory=memory, pids=pids)',
            'my_cgroup(group_name("run"), memory=memory, pids=pids and 1)',
        ),
    )
    failed("04.5", namespace, "too low to start the shell")


def test_the_runtimes_own_process_in_the_cgroup() -> None:
    namespace = solution_with(
        "04",
        (
            "        status = my_spawn(container, namespaces=kinds, hostname=hostname)\n",
            "        supervisor = os.fork()\n"
            "        if supervisor == 0:\n"
            "            my_cgroup_add(cgroup, os.getpid())\n"
            "            os._exit(my_spawn(container, namespaces=kinds, hostname=hostname))\n"
            "        status = os.waitstatus_to_exitcode(os.waitpid(supervisor, 0)[1])\n",
        ),
    )
    failed("04.5", namespace, "a process of your runtime")


def test_the_cgroup_not_removed() -> None:
    namespace = solution_with("04", ("        my_cgroup_remove(cgroup)\n", "        pass\n"))
    failed("04.5", namespace, "left its cgroup")
    assert not leftovers()


def test_a_runtime_that_fork_bombs_is_stopped_and_scored() -> None:
    namespace = solution_with(
        "04",
        (
            '    cgroup = my_cgroup(group_name("run"), memory=memory, pids=pids)\n',
            "    while True:  # a bug: forks before the container has a cgroup\n"
            "        try:\n"
            "            os.fork()\n"
            "        except OSError:\n"
            "            pass\n",
        ),
    )
    message = failed("04.5", namespace, "still running after")
    assert "stopped" in message
    assert not leftovers()


def test_the_grader_scores_a_hanging_runtime(tmp_path: Path) -> None:
    """Headless: my_run that never returns costs 04.5 alone; the grader goes on."""
    notebook = json.loads(SOLUTION.read_text())
    for cell in notebook["cells"]:
        if cell.get("id") == "ex-04-5":
            source = "".join(cell["source"])
            cell["source"] = source.replace(
                "    ### BEGIN SOLUTION\n    env = env or",
                "    ### BEGIN SOLUTION\n    while True:\n        time.sleep(1)\n    env = env or",
            ).replace("def my_run(", "import time\n\n\ndef my_run(", 1)
    submission = tmp_path / "04-runtime.ipynb"
    submission.write_text(json.dumps(notebook))
    for name in ("01-rootfs.ipynb", "02-namespaces.ipynb", "03-cgroups.ipynb"):
        shutil.copy(ROOT / "solutions" / name, tmp_path / name)
    out = tmp_path / "grade.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hardway",
            "grade",
            str(submission),
            "--json",
            str(out),
            "--timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert out.exists(), done.stderr[-2000:]
    document = json.loads(out.read_text())
    scores = {t["name"].split()[0]: t for t in document["tests"]}
    assert document["max_score"] == 20, document
    assert sum(t["score"] for t in document["tests"]) == 12, scores  # everything but 04.5
    assert scores["04.5"]["status"] == "fail" and "timed out" in scores["04.5"]["message"]
    assert not leftovers()


# -- 04.6: the learner's config.json, run by runc


def test_capabilities_without_the_cap_prefix() -> None:
    namespace = solution_with(
        "04", ('caps = [f"CAP_{name}" for name in RUNTIME_CAPS]', "caps = list(RUNTIME_CAPS)")
    )
    failed("04.6", namespace, "capabilities.bounding", "CAP_ prefix")


def test_memory_limit_in_mib() -> None:
    namespace = solution_with(
        "04",
        (
            '{"limit": memory, "swap": memory}',
            '{"limit": memory >> 20, "swap": memory >> 20}',
        ),
    )
    failed("04.6", namespace, "memory.limit", "bytes")


def test_memory_limit_in_the_wrong_place() -> None:
    namespace = solution_with(
        "04",
        ('resources["memory"] = {"limit": memory, "swap": memory}', 'resources["memory"] = memory'),
    )
    failed("04.6", namespace, "linux.resources.memory", '"limit" key')


def test_memory_limit_in_process() -> None:
    namespace = solution_with(
        "04",
        ('resources["memory"] = {"limit": memory, "swap": memory}', "pass"),
        ('"noNewPrivileges": True,', '"noNewPrivileges": True, "memory": memory,'),
    )
    failed("04.6", namespace, "linux.resources.memory is missing")


def test_network_namespace_written_as_net() -> None:
    namespace = solution_with(
        "04", ('("pid", "network", "ipc", "uts", "mount")', '("pid", "net", "ipc", "uts", "mount")')
    )
    failed("04.6", namespace, '"net"', '"network"')


def test_masked_paths_missing() -> None:
    namespace = solution_with("04", ('            "maskedPaths": list(MASKED_PATHS),\n', ""))
    failed("04.6", namespace, "maskedPaths")


def test_no_new_privileges_false() -> None:
    namespace = solution_with("04", ('"noNewPrivileges": True', '"noNewPrivileges": False'))
    failed("04.6", namespace, "noNewPrivileges is False")


def test_no_dev_pts_mount() -> None:
    namespace = solution_with(
        "04",
        (
            '        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",\n'
            '         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", '
            '"gid=5"]},\n',
            "",
        ),
    )
    failed("04.6", namespace, "/dev/pts", "ptmx")


def test_process_user_missing() -> None:
    namespace = solution_with("04", ('            "user": {"uid": 0, "gid": 0},\n', ""))
    failed("04.6", namespace, "process.user")


def test_seccomp_kills_instead_of_errno() -> None:
    namespace = solution_with(
        "04", ('"action": "SCMP_ACT_ERRNO", "errnoRet"', '"action": "SCMP_ACT_KILL", "errnoRet"')
    )
    failed("04.6", namespace, "SCMP_ACT_KILL", "EPERM")


def test_a_path_json_cannot_write() -> None:
    namespace = solution_with("04", ('"path": str(rootfs)', '"path": rootfs'))
    failed("04.6", namespace, "json.dumps", "str(rootfs)")


def test_readonly_paths_missing_shows_in_runc() -> None:
    """Not a schema rule: runc runs the config, and /proc/sys is writable in it."""
    namespace = solution_with("04", ('            "readonlyPaths": list(READONLY_PATHS),\n', ""))
    failed("04.6", namespace, "procsys:", "readonlyPaths")
    assert not leftovers()


def test_hostname_forgotten_shows_in_runc() -> None:
    namespace = solution_with("04", ('        "hostname": hostname,\n', ""))
    failed("04.6", namespace, "hostname:", "runc with your config.json")


# -- 04.5: /dev as runc makes it


def test_dev_without_devpts() -> None:
    namespace = solution_with(
        "04",
        (
            '    linux.mount("devpts", dev / "pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,\n'
            '                "newinstance,ptmxmode=0666,mode=0620,gid=5")\n',
            "",
        ),
    )
    failed("04.5", namespace, "devpts:", "newinstance")
    assert not leftovers()


def test_dev_without_the_links() -> None:
    namespace = solution_with("04", ("        (dev / name).symlink_to(target)\n", "        pass\n"))
    failed("04.5", namespace, "devs:", "/proc/self/fd")
    assert not leftovers()
