"""Lab 03's checks run the learner's cgroup code against the kernel: the solution earns
full points, the blank lab none, and each realistic wrong answer fails with a message that
names its mistake. Needs root (the checks make real cgroups, under a parent of their own)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from labcode import failed, lab_source, learner, solution_with

from hardway.course.checks import cgroupbox
from hardway.course.grading import run_check, summary
from hardway.isolation.cgroups import in_session
from hardway.sys.state import session_from_env

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "03-cgroups.ipynb"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the checks make real cgroups")
VERSION = cgroupbox.version() if os.geteuid() == 0 else "v2"
only_v1 = pytest.mark.skipif(VERSION != "v1", reason="a mistake only v1 can show")
only_v2 = pytest.mark.skipif(VERSION != "v2", reason="a mistake only v2 can show")


def test_the_solution_earns_every_point() -> None:
    got = summary("03", learner(lab_source("solutions", "03")))
    assert got.points == got.max_points == 16, got


def test_the_blank_lab_is_not_attempted() -> None:
    namespace = learner(lab_source("labs", "03"))
    results = [run_check(f"03.{n}", namespace) for n in range(1, 8)]
    assert [r.status for r in results] == ["not attempted"] * 7, [r.line for r in results]
    assert not cgroupbox_leftovers()


def cgroupbox_leftovers() -> list[str]:
    top = Path("/sys/fs/cgroup") / ("memory" if VERSION == "v1" else "")
    session = session_from_env() or ""
    return [
        p.name
        for p in top.iterdir()
        if p.name.startswith("hardway-lab03-") and in_session(p.name, session)
    ]


# -- 03.1


def test_a_cgroup2_line_alone_is_not_v2() -> None:
    namespace = learner(
        "def cgroup_version(mounts):\n    return 'v2' if ' cgroup2 ' in mounts else 'v1'\n"
    )
    failed("03.1", namespace, "hybrid", "'v1'")


def test_the_controllers_must_be_read_where_the_line_says() -> None:
    here = "Path('/sys/fs/cgroup/cgroup.controllers')"
    namespace = solution_with(
        "03",  # the usual place, not the one the mounts line names
        (
            'Path(point, "cgroup.controllers").read_text().split()',
            f"{here}.read_text().split() if {here}.exists() else []",
        ),
    )
    failed("03.1", namespace, "mount point the cgroup2 line names")


# -- 03.2


def test_the_other_versions_file_names() -> None:
    if VERSION == "v2":  # v1 names on v2
        edits = [('cgroup_version(Path("/proc/self/mounts").read_text()) == "v2"', "False")]
        words = ["cgroup v1", "memory.max"]
    else:  # v2 names on v1
        edits = [
            ('cgroup_version(Path("/proc/self/mounts").read_text()) == "v2"', "True"),
            ('(path.parent / "cgroup.subtree_control").write_text("+memory +cpu +pids")', "pass"),
            ("path = root / name", "path = root / 'memory' / name"),
        ]
        words = ["cgroup v2 file", "memory.limit_in_bytes"]
    failed("03.2", solution_with("03", *edits), *words)


def test_cpu_limit_written_as_one_number() -> None:
    namespace = solution_with(
        "03",
        ('limits["cpu.max"] = f"{quota} 100000"', 'limits["cpu.max"] = f"{cpus}"'),
        ('.write_text(f"{quota}\\n")', '.write_text(f"{cpus}\\n")'),
    )
    failed("03.2", namespace, "EINVAL", "QUOTA PERIOD")


def test_the_parent_returned() -> None:
    namespace = solution_with(
        "03",
        ("        return path\n", "        return path.parent\n"),
        (
            '    return root / "memory" / name\n',
            '    return root / "memory" / name.rpartition("/")[0]\n',
        ),
    )
    failed("03.2", namespace, "returned the parent")


@only_v2
def test_controllers_not_handed_down() -> None:
    namespace = solution_with(
        "03", ('(path.parent / "cgroup.subtree_control").write_text("+memory +cpu +pids")', "pass")
    )
    failed("03.2", namespace, "cgroup.subtree_control")


@only_v1
def test_v1_group_made_in_the_memory_hierarchy_only() -> None:
    namespace = solution_with(
        "03",
        (
            "    for controller in CONTROLLERS:\n        (root / controller",
            "    for controller in ['memory']:\n        (root / controller",
        ),
    )
    result = run_check("03.2", namespace)
    assert result.status in ("failed", "error"), result.line
    assert "cpu" in result.message


# -- 03.3


def test_process_moved_into_the_parent() -> None:
    namespace = solution_with(
        "03",
        (
            '(directory / "cgroup.procs").write_text(f"{pid}\\n")',
            '(directory.parent / "cgroup.procs").write_text(f"{pid}\\n")',
        ),
    )
    failed("03.3", namespace, "parent")


@only_v1
def test_v1_process_moved_in_one_hierarchy_only() -> None:
    namespace = solution_with(
        "03",
        (
            '    for directory in cgroup_dirs(cgroup):\n        (directory / "cgroup.procs")',
            '    for directory in [cgroup]:\n        (directory / "cgroup.procs")',
        ),
    )
    failed("03.3", namespace, "every hierarchy")


# -- 03.4


def test_rmdir_of_a_busy_group() -> None:
    namespace = learner(
        lab_source("solutions", "03")
        + (
            "\n\ndef my_cgroup_remove(cgroup):\n"
            "    for directory in cgroup_dirs(cgroup):\n"
            "        directory.rmdir()\n"
        )
    )
    failed("03.4", namespace, "processes were still inside")
    assert not cgroupbox_leftovers()


@only_v1
def test_v1_group_removed_from_one_hierarchy_only() -> None:
    namespace = solution_with(
        "03",
        (
            "    for directory in cgroup_dirs(cgroup):\n        if not directory.exists():",
            "    for directory in [cgroup]:\n        if not directory.exists():",
        ),
    )
    failed("03.4", namespace, "still there", "cpu")


# -- 03.5


def test_the_child_never_joins() -> None:
    namespace = solution_with("03", ("            my_cgroup_add(cgroup, os.getpid())\n", ""))
    failed("03.5", namespace, "outside your group")


def test_the_raw_wait_status() -> None:
    namespace = solution_with(
        "03", ("    return os.waitstatus_to_exitcode(status)", "    return status")
    )
    failed("03.5", namespace, "waitstatus_to_exitcode")


def test_oom_kills_from_the_other_versions_file() -> None:
    first, second = ("memory.events", "memory.oom_control")
    if VERSION == "v1":
        first, second = second, first
    namespace = solution_with(
        "03",
        (
            '    events = cgroup / "memory.events"\n    if not events.exists():\n'
            '        events = cgroup / "memory.oom_control"\n',
            f'    events = cgroup / "{second}"\n',
        ),
    )
    failed("03.5", namespace, second, f"cgroup {'v1' if VERSION == 'v2' else 'v2'} file")


def test_the_limit_never_written() -> None:
    namespace = solution_with(
        "03",
        ('{"memory.max": memory, "pids.max": pids}', '{"pids.max": pids}'),
        (
            '    if memory is not None:\n        (root / "memory"',
            '    if False:\n        (root / "memory"',
        ),
    )
    failed("03.5", namespace, "expected -9")


# -- 03.6


def test_pids_max_never_written() -> None:
    namespace = solution_with(
        "03",
        ('{"memory.max": memory, "pids.max": pids}', '{"memory.max": memory}'),
        (
            '    if pids is not None:\n        (root / "pids"',
            '    if False:\n        (root / "pids"',
        ),
    )
    failed("03.6", namespace, "reads 'max'", "safety net")
    assert not cgroupbox_leftovers()


def test_the_bomb_runs_outside_the_group() -> None:
    namespace = solution_with("03", ("            my_cgroup_add(cgroup, os.getpid())\n", ""))
    failed("03.6", namespace, "never refused a fork")


# -- 03.7


@only_v1
def test_cpu_stat_read_in_the_memory_hierarchy() -> None:
    everywhere = 'for d in cgroup_dirs(cgroup) if (d / "cpu.stat").exists()]'
    namespace = solution_with("03", (everywhere, "for d in [cgroup]]"))  # the returned one only
    failed("03.7", namespace, "cpu hierarchy")


def test_cpu_stat_values_left_as_text() -> None:
    namespace = solution_with(
        "03", ("        values[key] = int(value)", "        values[key] = value")
    )
    failed("03.7", namespace, "ints")
