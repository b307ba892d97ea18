"""hardway.isolation.namespaces and hardway.isolation.launch: every namespace kind, observed from
inside and
from the host, plus setns, the rootless path as a real unprivileged user, errors, and
cleanup after timeouts and interrupts.

Nothing is mocked: each test starts real containers (about 50 ms each).
"""

from __future__ import annotations

import doctest
import importlib
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from interrupting import jupyter_interrupt

from hardway.course import leftovers
from hardway.errors import (
    ContainerError,
    ContainerTimeoutError,
    IsolationError,
)
from hardway.isolation import mounts, namespaces
from hardway.isolation.container import Completed, call, run, start
from hardway.isolation.namespaces import IdMap, Isolation
from hardway.sys import linux
from hardway.sys.importable import importable_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
NOBODY = 65534


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A ``hardway-…`` directory every uid may write (the rootless containers use it)."""
    path = Path(tempfile.mkdtemp(prefix="hardway-test-ns-"))
    path.chmod(0o777)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def nothing_left() -> list[str]:
    """The course's processes and veth devices that exist right now."""
    now = leftovers.snapshot()
    return sorted(now.processes | now.links)


@pytest.mark.parametrize("name", ["namespaces", "child", "container", "failures"])
def test_doctests(name: str) -> None:
    assert doctest.testmod(importlib.import_module(f"hardway.isolation.{name}")).failed == 0


# -- the specification ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"hostname": "box"}, "a hostname needs a uts namespace"),
        ({"namespaces": {"uts"}, "proc": True}, "needs a mnt namespace"),
        ({"namespaces": {"uts"}, "tmpfs": ["/mnt"]}, "needs a mnt namespace"),
        ({"root": "/", "how": "pivot_root"}, "needs a mnt namespace"),
        ({"namespaces": {"uts"}, "uid_map": [IdMap(0, 0)]}, "needs a user namespace"),
        ({"veth": True}, "needs a net namespace"),
        ({"namespaces": {"time"}}, "unknown namespace 'time'"),
        ({"root": "/", "how": "jail"}, "'chroot' or 'pivot_root'"),
        ({"how": "chroot"}, "needs a root directory"),
        ({"namespaces": {"mnt"}, "dev": True}, "dev=True needs a root directory"),
    ],
)
def test_impossible_isolations_are_refused(options: dict, complaint: str) -> None:
    with pytest.raises(IsolationError, match=complaint) as caught:
        Isolation(**options)
    assert isinstance(caught.value, ValueError)


def test_defaults_and_normalisation(busybox_rootfs: Path) -> None:
    spec = Isolation(["user", "mnt", "uts", "mnt"], root=busybox_rootfs)
    assert spec.namespaces == ("uts", "mnt", "user")
    assert spec.how == "pivot_root" and spec.root == str(busybox_rootfs)
    assert Isolation(root=busybox_rootfs).how == "chroot"
    full = Isolation.container(busybox_rootfs, "box")
    assert full.namespaces == ("uts", "pid", "mnt", "ipc", "net", "cgroup") and full.proc
    assert "user" in Isolation.container(busybox_rootfs, rootless=True).namespaces
    with pytest.raises(IsolationError, match="not a directory"):
        run(Isolation(root=busybox_rootfs / "etc/passwd"), ["true"])
    with pytest.raises(IsolationError, match="argv"):
        run(Isolation(), "hostname")  # type: ignore[arg-type]


def test_completed_reads_like_a_terminal() -> None:
    done = Completed(("sh", "-c", "echo hi; exit 3"), 3, "hi\n", "oops\n")
    assert repr(done) == "$ sh -c 'echo hi; exit 3'\nhi\noops\n[exit status 3]"
    assert repr(Completed(("true",), 0, "", "")) == "$ true"
    with pytest.raises(ContainerError, match="exited with status 3: oops"):
        done.check()


@pytest.mark.parametrize(
    ("features", "kinds"),
    [
        (["hostname"], ["uts"]),
        (["process ids", "mounts", "network"], ["pid", "mnt", "net"]),
        (list(namespaces.FEATURES), list(linux.NAMESPACES)),
    ],
)
def test_clone_flags(features: list[str], kinds: list[str]) -> None:
    assert namespaces.clone_flags(features) == linux.namespace_flags(*kinds)
    with pytest.raises(ValueError, match="unknown feature"):
        namespaces.clone_flags(["hostname", "pets"])


def test_id_maps() -> None:
    text = namespaces.rootless_map(1000, (100000, 65536))
    assert IdMap.parse(text) == (IdMap(0, 1000, 1), IdMap(1, 100000, 65536))
    outside = [namespaces.host_id(text, i) for i in (0, 1, 65536, 65537)]
    assert outside == [1000, 100000, 165535, None]


# -- one kind at a time, seen from both sides ------------------------------------------------


@needs_root
def test_uts_own_hostname_host_untouched() -> None:
    host = socket.gethostname()
    done = run(Isolation({"uts"}, hostname="box-01"), ["hostname"])
    assert done.ok and done.stdout == "box-01\n"
    assert socket.gethostname() == host


@needs_root
def test_pid_one_and_its_own_proc(busybox_rootfs: Path) -> None:
    spec = Isolation({"pid", "mnt"}, root=busybox_rootfs, proc=True)
    done = run(spec, ["sh", "-c", 'echo "$$"; ls /proc | grep -E "^[0-9]+$" | sort -n'])
    assert done.ok, done
    first, *pids = done.stdout.split()
    assert first == "1"
    assert pids[0] == "1" and len(pids) <= 4, f"the host's processes are visible: {pids}"
    without = run(Isolation({"mnt"}, root=busybox_rootfs, proc=True), ["sh", "-c", "echo $$"])
    assert without.ok and without.stdout.strip().isdigit(), without
    assert without.stdout.strip() != "1"


@needs_root
def test_a_minimal_dev_from_the_hosts_nodes(busybox_rootfs: Path) -> None:
    script = "ls /dev; echo gone > /dev/null; head -c 4 /dev/zero | wc -c; ls -l /dev/null"
    done = run(Isolation.container(busybox_rootfs), ["sh", "-c", script])
    assert done.ok, done
    *names, count, null = done.stdout.splitlines()
    runc_like = [*mounts.DEVICES, *mounts.DEV_LINKS, "pts", "shm", "mqueue"]  # ipc: mqueue
    assert names == sorted(runc_like) and count.strip() == "4"
    assert null.startswith("crw-rw-rw-") and null.split()[4:6] == ["1,", "3"]
    assert list((busybox_rootfs / "dev").iterdir()) == []  # mounted inside only


@needs_root
def test_mount_namespace_hides_a_tmpfs_from_the_host(public_dir: Path) -> None:
    target = public_dir / "scratch"
    target.mkdir()
    script = f"echo inside > {target}/file && cat {target}/file && sleep 30"
    with start(Isolation({"mnt"}, tmpfs=[str(target)]), ["sh", "-c", script]) as box:
        deadline = time.monotonic() + 5
        while "inside" not in box.logs().stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        assert box.logs().stdout == "inside\n"
        theirs = Path(f"/proc/{box.pid}/mountinfo").read_text()
        assert f" {target} " in theirs
        assert str(target) not in Path("/proc/self/mountinfo").read_text()
        assert list(target.iterdir()) == []
    assert list(target.iterdir()) == []


@needs_root
def test_ipc_objects_stay_in_their_namespace() -> None:
    with start(Isolation({"ipc"}), ["sleep", "30"]) as box:
        made = box.exec(["ipcmk", "--queue"])
        assert made.ok, made
        queue = made.stdout.split()[-1]
        inside = box.exec(["cat", "/proc/sysvipc/msg"]).stdout.split()
        assert queue in inside
        assert queue not in Path("/proc/sysvipc/msg").read_text().split()
    # the queue died with the namespace: a new one starts empty
    fresh = run(Isolation({"ipc"}), ["cat", "/proc/sysvipc/msg"]).stdout.splitlines()
    assert len(fresh) == 1


@needs_root
def test_cgroup_namespace_makes_the_current_group_the_root() -> None:
    outside = Path("/proc/self/cgroup").read_text().splitlines()
    inside = run(Isolation({"cgroup"}), ["cat", "/proc/self/cgroup"]).stdout.splitlines()
    assert [line.rsplit(":", 1)[0] for line in inside] == [
        line.rsplit(":", 1)[0] for line in outside
    ]
    assert all(line.endswith(":/") for line in inside), inside


@needs_root
def test_user_namespace_maps_root_inside_to_nobody_outside(public_dir: Path) -> None:
    spec = Isolation({"user", "uts"}, hostname="rootless", host_user=NOBODY)
    with start(spec, ["sleep", "30"]) as box:
        status = Path(f"/proc/{box.pid}/status").read_text()
        assert f"Uid:\t{NOBODY}\t{NOBODY}" in status
        done = box.exec(["sh", "-c", f"id -u; id -g; hostname; touch {public_dir}/made"])
        assert done.ok, done
        assert done.stdout.split() == ["0", "0", "rootless"]
        assert Path(f"/proc/{box.pid}/uid_map").read_text().split() == ["0", str(NOBODY), "1"]
    assert (public_dir / "made").stat().st_uid == NOBODY


@needs_root
def test_a_range_map_as_root(public_dir: Path) -> None:
    ids = [IdMap(0, 200000, 65536)]
    spec = Isolation({"user"}, uid_map=ids, gid_map=ids)
    script = f"touch {public_dir}/root-made; chown 42:42 {public_dir}/root-made; id -u"
    done = run(spec, ["sh", "-c", script])
    assert done.ok and done.stdout == "0\n", done
    made = (public_dir / "root-made").stat()
    assert (made.st_uid, made.st_gid) == (200042, 200042)


# -- the whole picture: inode numbers, and entering a running container ------------------------


@needs_root
@pytest.mark.parametrize(
    "kinds",
    [{"uts"}, {"pid", "mnt"}, {"net", "ipc", "cgroup"}, set(namespaces.KINDS)],
    ids=lambda kinds: "+".join(sorted(kinds)),
)
def test_inode_numbers_tell_which_namespaces_are_shared(kinds: set[str]) -> None:
    with start(Isolation(kinds, proc="pid" in kinds and "mnt" in kinds), ["sleep", "30"]) as box:
        mine, theirs = namespaces.ns_inodes(), box.namespaces()
        assert namespaces.shared_namespaces(mine, theirs) == sorted(set(namespaces.KINDS) - kinds)
        assert namespaces.compare(mine, theirs) == {
            k: "different" if k in kinds else "same" for k in namespaces.KINDS
        }


@needs_root
def test_exec_enters_every_namespace_and_the_root(busybox_rootfs: Path) -> None:
    spec = Isolation.container(busybox_rootfs, "box-02")
    with start(spec, ["sleep", "30"]) as box:
        assert box.running and box.pid != 1
        outside = box.namespaces()
        kinds = ("uts", "pid", "mnt", "ipc", "net", "cgroup")
        script = (
            f"echo $$; hostname; for k in {' '.join(kinds)}; do readlink /proc/self/ns/$k; done"
        )
        done = box.exec(["sh", "-c", script])
        assert done.ok, done
        pid, hostname, *links = done.stdout.split()
        assert int(pid) > 1 and hostname == "box-02"
        assert links == [f"{k}:[{outside[k]}]" for k in kinds]
        assert box.exec(["ls", "/"]).stdout.split() == sorted(os.listdir(busybox_rootfs))
    assert not box.running
    with pytest.raises(ContainerError, match="not running"):
        box.exec(["true"])


@needs_root
def test_exec_into_a_rootless_container_as_root(busybox_rootfs: Path) -> None:
    spec = Isolation.container(busybox_rootfs, "rootless", rootless=True, host_user=NOBODY)
    with start(spec, ["sleep", "30"]) as box:
        done = box.exec(["sh", "-c", "id -u; hostname; ps -o pid,user,args"])
        assert done.ok, done
        uid, hostname, *table = done.stdout.splitlines()
        assert (uid, hostname) == ("0", "rootless")
        assert "1 root     sleep 30" in "\n".join(table)


# -- functions called inside ---------------------------------------------------------------------


def describe(extra: int, helper) -> dict:  # sent as source code: uses only os and linux
    return {"pid": os.getpid(), "host": linux.gethostname(), "extra": helper(extra)}


def double(n: int) -> int:
    return 2 * n


def fail(message: str) -> None:
    raise FileNotFoundError(2, message)


@needs_root
def test_call_sends_functions_and_returns_json() -> None:
    spec = Isolation({"pid", "uts"}, hostname="called")
    assert call(spec, describe, 21, double) == {"pid": 1, "host": "called", "extra": 42}
    with pytest.raises(ContainerError) as caught:
        call(spec, fail, "nothing here")
    error = caught.value
    assert (error.step, error.child, error.errno) == ("call", "FileNotFoundError", 2)
    assert error.message == "fail raised FileNotFoundError: nothing here"


# -- failures are typed, and nothing survives them ---------------------------------------------


@needs_root
def test_setup_errors_name_their_step(busybox_rootfs: Path) -> None:
    cases = [
        (Isolation(root=busybox_rootfs), ["no-such-program"], "exec"),
        (Isolation({"mnt"}, root=busybox_rootfs, cwd="/nowhere"), ["true"], "chdir"),
        (Isolation({"mnt"}, tmpfs=["/no/such/dir"]), ["true"], "mount tmpfs on /no/such/dir"),
        (Isolation({"uts"}, hostname="x" * 65), ["true"], "sethostname"),
    ]
    for spec, argv, step in cases:
        with pytest.raises(ContainerError) as caught:
            run(spec, argv)
        assert caught.value.step == step, caught.value
    assert nothing_left() == []


@needs_root
def test_a_timeout_kills_the_whole_container(busybox_rootfs: Path) -> None:
    started = time.monotonic()
    spec = Isolation.container(busybox_rootfs, veth=True)
    with pytest.raises(ContainerTimeoutError) as caught:
        run(spec, ["sh", "-c", "sleep 30 & sleep 31"], timeout=0.5)
    assert isinstance(caught.value, TimeoutError)
    assert time.monotonic() - started < 5
    assert nothing_left() == []


@needs_root
@pytest.mark.parametrize("how", ["run", "start"])
@pytest.mark.parametrize("kinds", [{"uts"}, {"pid", "net", "mnt"}], ids=["no-pid-ns", "pid-ns"])
def test_an_interrupted_cell_leaves_nothing(how: str, kinds: set[str]) -> None:
    spec = Isolation(kinds, veth="net" in kinds)
    with jupyter_interrupt(0.3), pytest.raises(KeyboardInterrupt):
        if how == "run":
            run(spec, ["sh", "-c", "sleep 30 & sleep 31"])
        else:
            with start(spec, ["sh", "-c", "sleep 30 & sleep 31"]):
                time.sleep(10)
    assert nothing_left() == []


@needs_root
def test_a_forgotten_container_is_stopped_when_collected() -> None:
    box = start(Isolation({"uts"}), ["sleep", "30"])
    pid = box.pid
    del box
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert nothing_left() == []


@needs_root
def test_logs_wait_and_exit_status(busybox_rootfs: Path) -> None:
    argv = ["sh", "-c", "echo out; echo err >&2; exit 7"]
    with start(Isolation(root=busybox_rootfs), argv) as box:
        assert box.wait(5) == 7
        logs = box.logs()
        assert (logs.stdout, logs.stderr, logs.returncode) == ("out\n", "err\n", 7)
        assert repr(box) == "<Container stopped: sh -c 'echo out; echo err >&2; exit 7'>"
    assert box.stop() == 7


# -- without root ---------------------------------------------------------------------------------

ROOTLESS_SCRIPT = """
import json, os, sys
from hardway.isolation import rootfs
from hardway.errors import PrivilegeError
from hardway.isolation.container import run, start
from hardway.isolation.namespaces import IdMap, Isolation

root = rootfs.build_busybox(sys.argv[1])
spec = Isolation.container(root, "rootless-box", rootless=True)
done = run(spec, ["sh", "-c", "id -u; hostname; echo $$; ls /proc | grep -c '^[0-9]'"])
with start(spec, ["sleep", "30"]) as box:
    entered = box.exec(["sh", "-c", "id -u; hostname"]).stdout.split()
errors = {}
for name, spec in [
    ("uts without user", Isolation({"uts"}, hostname="x")),
    ("veth", Isolation({"user", "net"}, veth=True)),
    ("map root", Isolation({"user"}, uid_map=[IdMap(0, 0)])),
    ("chroot without user", Isolation(root=root, how="chroot")),
]:
    try:
        run(spec, ["true"])
        errors[name] = None
    except PrivilegeError as exc:
        permission = isinstance(exc, PermissionError)
        errors[name] = {"text": str(exc), "errno": exc.errno, "permission": permission}
report = {"uid": os.getuid(), "out": done.stdout.split(), "code": done.returncode}
print(json.dumps({**report, "entered": entered, "errors": errors}))
"""


def as_nobody(*argv: str, **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
        **options,
    )


def _python_for_nobody() -> str | None:
    """A Python 3.11+ that uid 65534 may run (the venv's may live under /root)."""
    check = "import sys; sys.exit(sys.version_info < (3, 11))"
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            if as_nobody(candidate, "-c", check).returncode == 0:
                return candidate
        except (OSError, subprocess.SubprocessError):
            continue
    return None


@needs_root
def test_the_rootless_path_as_a_real_unprivileged_user(public_dir: Path) -> None:
    """uid 65534, no capabilities: root inside, own hostname, PID 1 — and clear errors."""
    python = _python_for_nobody()
    if python is None:
        pytest.skip("no Python 3.11 that uid 65534 can run")
    if as_nobody("unshare", "--user", "true").returncode != 0:
        pytest.skip("this kernel forbids unprivileged user namespaces (see make doctor)")
    with importable_for(NOBODY, NOBODY) as path:  # the checkout may be out of nobody's reach
        done = as_nobody(
            python,
            "-c",
            ROOTLESS_SCRIPT,
            str(public_dir / "root"),
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(path)},
        )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["uid"] == NOBODY
    assert report["code"] == 0
    uid, hostname, pid, processes = report["out"]
    assert (uid, hostname, pid) == ("0", "rootless-box", "1")
    assert int(processes) <= 3, "the container's /proc shows the host's processes"
    assert report["entered"] == ["0", "rootless-box"]
    for name, error in report["errors"].items():
        assert error is not None, f"{name} worked without privileges"
        assert error["permission"] and error["errno"] == 1, error
        assert "To fix: python -m hardway doctor" in error["text"], error
    assert "CAP_SYS_ADMIN" in report["errors"]["uts without user"]["text"]
    assert "CAP_NET_ADMIN" in report["errors"]["veth"]["text"]
    assert "only your own id" in report["errors"]["map root"]["text"]
    assert report["errors"]["chroot without user"]["text"].startswith("chroot: ")
    assert nothing_left() == []
