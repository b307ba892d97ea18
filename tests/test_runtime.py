"""hardway.isolation.runtime, hardway.isolation.bundle and cleanup: real containers (root), runc
for comparison.

Each test that starts something checks that nothing of it is left: no cgroup, no mount,
no process, no veth (the session-wide leftover check backs this up).
"""

from __future__ import annotations

import doctest
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
from interrupting import jupyter_interrupt

import hardway.isolation.bundle
import hardway.isolation.runtime
from hardway.course import cleanup, leftovers
from hardway.course.grading import run_check
from hardway.errors import ContainerError, IsolationError
from hardway.isolation import bundle, cgroups, container, escapes, hardening, runtime
from hardway.isolation.group import Group
from hardway.isolation.limits import Limits
from hardway.isolation.namespaces import Isolation
from hardway.sys import linux

ROOT = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: cgroups, veth, runc")


def test_doctests() -> None:
    assert doctest.testmod(hardway.isolation.runtime).failed == 0
    assert doctest.testmod(hardway.isolation.bundle).failed == 0


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "argv", "expected"),
    [
        (None, ["sh"], None, ["sh"]),
        (None, ["sh"], ["ls"], ["ls"]),
        (["/e", "-x"], ["a"], None, ["/e", "-x", "a"]),
        (["/e"], ["a"], ["b", "c"], ["/e", "b", "c"]),
        (["/e"], None, None, ["/e"]),
    ],
)
def test_command_line_follows_docker(entrypoint, cmd, argv, expected) -> None:
    assert runtime.command_line(entrypoint, cmd, argv) == expected


def test_nothing_to_run() -> None:
    with pytest.raises(IsolationError, match="nothing to run"):
        runtime.command_line(None, None, None)


def test_a_shell_form_entrypoint_still_gets_cmd_as_arguments() -> None:
    """``ENTRYPOINT top -b`` is ``["/bin/sh", "-c", "top -b"]`` in the config, and Docker
    appends Cmd (or the run's arguments) to it like to any entrypoint: they become the
    script's ``$0 $1``. Nothing is dropped."""
    shell = ["/bin/sh", "-c", "top -b"]
    assert runtime.command_line(shell, ["-d", "1"], None) == [*shell, "-d", "1"]
    assert runtime.command_line(shell, ["-d", "1"], ["x"]) == [*shell, "x"]


@pytest.mark.parametrize(("entrypoint", "cmd"), [("top -b", ["-d", "1"]), (["env"], "echo $HOME")])
def test_strings_are_not_an_image_configs_command(entrypoint, cmd) -> None:
    with pytest.raises(IsolationError, match="list of strings") as caught:
        runtime.command_line(entrypoint, cmd, None)
    assert "['/bin/sh', '-c'," in caught.value.fix


def test_users_are_looked_up_in_the_image(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n"
    )
    (tmp_path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    assert runtime.resolve_user("app", tmp_path) == (1000, 1001)
    assert runtime.resolve_user("1000", tmp_path) == (1000, 1001)
    assert runtime.resolve_user("app:staff", tmp_path) == (1000, 50)
    with pytest.raises(ContainerError, match="nobody"):
        runtime.resolve_user("nobody", tmp_path)


def test_bundle_config_says_what_the_plan_says(busybox_rootfs: Path) -> None:
    config = {"Env": ["A=1"], "WorkingDir": "/w", "User": "1000:1000", "Cmd": ["sh"]}
    plan = runtime.plan(busybox_rootfs, config=config, hostname="h", memory="8M", cpus=0.5)
    doc = bundle.config_json(plan, "/hardway-x")
    process = doc["process"]
    assert process["args"] == ["sh"] and process["cwd"] == "/w" and "A=1" in process["env"]
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000]}
    assert process["noNewPrivileges"]
    assert "CAP_SYS_ADMIN" not in process["capabilities"]["bounding"]
    assert doc["linux"]["resources"]["cpu"] == {"quota": 50000, "period": 100000}
    assert doc["linux"]["resources"]["memory"]["limit"] == 8 << 20
    assert {n["type"] for n in doc["linux"]["namespaces"]} >= {"pid", "mount", "uts", "network"}


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hardway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        **kwargs,
    )


@needs_root
def test_cli_run_prints_and_passes_the_exit_status(busybox_rootfs: Path) -> None:
    cmd = "echo hi; hostname; exit 3"
    proc = _cli("run", "--memory", "32M", "--hostname", "h1", str(busybox_rootfs), "--",
                "sh", "-c", cmd)  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert (out, proc.returncode) == ("hi\nh1\n", 3), err


@needs_root
def test_runaway_memory_and_forks_are_confined(busybox_rootfs: Path) -> None:
    before = leftovers.snapshot().cgroups  # this run's: other runs share the machine
    hog = runtime.run(busybox_rootfs, ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M",
                                       "count=1"], memory="32M")  # fmt: skip
    assert hog.returncode == 128 + signal.SIGKILL  # the OOM killer's SIGKILL
    forks = "for i in $(seq 40); do sleep 5 & done; echo never"
    bomb = runtime.run(busybox_rootfs, ["sh", "-c", forks], pids=10)
    assert "can't fork" in bomb.stderr and "never" not in bomb.stdout, bomb
    assert subprocess.run(["true"]).returncode == 0  # the host still forks
    assert leftovers.snapshot().cgroups == before


@needs_root
def test_image_config_user_env_workdir_and_privileges(busybox_rootfs: Path) -> None:
    config = {"Entrypoint": ["sh", "-c"], "Cmd": ["false"], "Env": ["GREETING=hello"],
              "WorkingDir": "/srv/app", "User": "1000:1000"}  # fmt: skip
    script = "echo $GREETING; pwd; id -u; grep -E '^Cap|NoNewPrivs' /proc/self/status"
    done = runtime.run(busybox_rootfs, [script], config=config)
    lines = done.stdout.split()
    assert lines[:3] == ["hello", "/srv/app", "1000"], done
    sets = dict(zip(lines[3::2], lines[4::2], strict=True))
    bounding = f"{linux.capability_mask(hardening.RUNTIME_CAPS):016x}"
    assert bounding == "00000000a00425fb"  # Docker's 14 without MKNOD
    assert sets == {"CapInh:": "0" * 16, "CapPrm:": "0" * 16, "CapEff:": "0" * 16,
                    "CapBnd:": bounding, "CapAmb:": "0" * 16, "NoNewPrivs:": "1"}, done  # fmt: skip
    as_root = runtime.run(busybox_rootfs, ["grep", "^Cap", "/proc/self/status"]).stdout.split()
    assert as_root[1::2] == ["0" * 16, bounding, bounding, bounding, "0" * 16], as_root
    shutil.rmtree(busybox_rootfs / "srv")


def _hostile_root(tmp_path: Path, busybox_rootfs: Path) -> Path:
    """Only /bin (busybox and the keyctl probe): no /dev, /proc or /sys, as FROM scratch."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(busybox_rootfs / "bin", root / "bin", symlinks=True)
    if shutil.which("cc") is None:
        pytest.skip("no C compiler for the keyctl probe")
    escapes.build_keyctl(root / "bin")
    tmp_path.chmod(0o755)
    return root


def _attempts(result) -> dict[str, str]:
    outcome = escapes.parse(result.stdout)
    assert list(outcome) == list(escapes.ATTEMPTS), result
    return outcome


@needs_root
@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_escapes_are_refused_by_ours_as_by_runc(busybox_rootfs: Path, tmp_path: Path) -> None:
    """Issue #16: each classic escape refused in ours and under runc with the same
    spec; the same script in an unhardened container shows the attempts do work."""
    root = _hostile_root(tmp_path, busybox_rootfs)
    argv = ["sh", "-c", escapes.script()]
    ours = _attempts(runtime.run(root, argv))
    theirs = _attempts(bundle.run_runc(runtime.plan(root, argv), tmp_path / "bundle"))
    assert ours == theirs
    sysrq = "absent" if not Path("/proc/sysrq-trigger").exists() else "refused"
    assert ours == {**dict.fromkeys(escapes.ATTEMPTS, "refused"), "open sysrq-trigger": sysrq}
    before = _attempts(container.run(Isolation.container(root, "box"), argv))
    works = ["mknod", "write /proc/sys", "read timer_list", "keyctl", "mount", "unshare -U"]
    assert [before[name] for name in works] == ["ALLOWED"] * len(works), before
    assert sorted(p.name for p in root.iterdir()) == ["bin", "dev", "proc", "sys"]


@needs_root
def test_escapes_are_refused_rootless(busybox_rootfs: Path) -> None:
    """The same hardening in a user namespace, as an unprivileged host user (nobody):
    what needs real root (a new sysfs, gid 5 for devpts) has its rootless form."""
    top = Path(tempfile.mkdtemp(prefix="hardway-test-rootless-"))  # nobody can reach it
    try:
        _refused_rootless(_hostile_root(top, busybox_rootfs))
    finally:
        shutil.rmtree(top)


def _refused_rootless(root: Path) -> None:
    for path in (root, *root.rglob("*")):
        os.chown(path, 65534, 65534, follow_symlinks=False)
    chosen = runtime.plan(root, ["sh", "-c", escapes.script()])
    kinds = (*chosen.isolation.namespaces, "user")
    spec = replace(chosen.isolation, namespaces=kinds, host_user=65534, run_as=None)
    outcome = _attempts(container.run(spec, chosen.argv))
    assert {outcome[name] for name in escapes.ATTEMPTS if name != "open sysrq-trigger"} == {
        "refused"
    }, outcome


@needs_root
def test_mount_points_are_made_inside_the_root(busybox_rootfs: Path, tmp_path: Path) -> None:
    """An image's ``dev -> /ABS/PATH`` and ``proc -> ../../..`` are followed as if the
    root were ``/``: the missing directories are made inside it, never on the host."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(busybox_rootfs / "bin", root / "bin", symlinks=True)
    outside = tmp_path / "outside"
    (root / "dev").symlink_to(outside / "dev")
    (root / "proc").symlink_to("../../../proc-up")
    done = runtime.run(root, ["sh", "-c", "ls /dev/null /proc/self/status"])
    assert done.ok, done
    assert not outside.exists() and not (tmp_path / "proc-up").exists()
    assert (root / str(outside).lstrip("/") / "dev").is_dir() and (root / "proc-up").is_dir()


@needs_root
def test_interrupt_leaves_nothing_behind(busybox_rootfs: Path) -> None:
    before, groups = leftovers.snapshot(), set(cgroups.find_groups())
    proc = _cli("run", "--memory", "32M", "--net", str(busybox_rootfs), "--", "sleep", "60")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
        "sleep 60" in p for p in leftovers.snapshot().processes
    ):
        time.sleep(0.05)
    assert any("sleep 60" in p for p in leftovers.snapshot().processes), "it never started"
    assert set(cgroups.find_groups()) - groups, "the container's cgroup should exist while it runs"
    proc.send_signal(signal.SIGINT)  # what Ctrl-C (or a kernel interrupt) does
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert leftovers.settle(before) == []


@needs_root
def test_cleanup_removes_a_crashed_containers_cgroup_and_process() -> None:
    group = Group(Limits(pids=4), label="crashed").create()
    stray = subprocess.Popen(
        ["sleep", "60"], env={**os.environ, "container": "hardway"}, start_new_session=True
    )
    group.add(stray.pid)
    session = os.environ.get("HARDWAY_SESSION")
    removed = cleanup.cleanup(session)
    stray.wait(10)
    assert f"process {stray.pid}" in removed
    assert any(item.startswith("cgroup ") and group.name in item for item in removed)
    assert not any(d.exists() for d in group.directories)
    assert cleanup.cleanup(session, dry_run=True) == []


@needs_root
@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_runc_runs_the_same_container(busybox_rootfs: Path, tmp_path: Path) -> None:
    script = "hostname; id; ls /; grep -E 'CapEff|NoNewPrivs' /proc/self/status"
    settings = {"hostname": "same", "memory": "32M", "pids": 16}
    ours = runtime.run(busybox_rootfs, ["sh", "-c", script], **settings)
    plan = runtime.plan(busybox_rootfs, ["sh", "-c", script], **settings)
    theirs = bundle.run_runc(plan, tmp_path / "bundle")
    assert ours.returncode == theirs.returncode == 0, theirs
    assert ours.stdout == theirs.stdout
    assert not [g for g in cgroups.find_groups() if "runc" in g.name]


@needs_root
@pytest.mark.parametrize("after", [0.02, 0.1, 0.5])
def test_a_keyboard_interrupt_inside_run_leaves_nothing(busybox_rootfs: Path, after: float) -> None:
    """Like a Jupyter interrupt: KeyboardInterrupt raised in the kernel's main thread,
    at whatever step ``runtime.run`` happens to be in (cgroup, launcher, running)."""

    before = leftovers.snapshot()
    with jupyter_interrupt(after), pytest.raises(KeyboardInterrupt):
        runtime.run(busybox_rootfs, ["sh", "-c", "sleep 30 & sleep 31"], memory="32M",
                    pids=16, net=True)  # fmt: skip
    assert leftovers.settle(before) == []  # cgroups included


def test_check_04_1_fails_a_shell_form_that_drops_cmd() -> None:
    """The rule the lab once taught (a shell-form entrypoint ignores Cmd and the override)
    is a failure now; Docker's one rule passes."""
    right = "def command_line(e, c, o):\n    return list(e or []) + list(o or c or [])\n"
    drops = (
        "def command_line(e, c, o):\n"
        "    if e and list(e[:2]) == ['/bin/sh', '-c']:\n        return list(e)\n"
        "    return list(e or []) + list(o or c or [])\n"
    )
    for source, status in ((right, "passed"), (drops, "failed")):
        namespace: dict = {}
        exec(source, namespace)
        assert run_check("04.1", namespace).status == status
