"""hardway.course.doctor: the real preflight on this machine, and each check driven into failure.

The real runs start ``python -m hardway doctor`` (or ``doctor.run()`` as uid 65534) in a
child; the failure paths feed each check function a fake input: a sysctl file, a PATH,
a statvfs, a probe runner. The probes of :mod:`hardway.course.probes` also run on their own.
"""

from __future__ import annotations

import doctest
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

import hardway.course.doctor
from hardway import cli
from hardway.course import doctor, probes
from hardway.course.doctor import Check, Report
from hardway.course.probes import ProbeResult
from hardway.distribution.server.services import Service
from hardway.errors import MissingToolError
from hardway.isolation import cgroups
from hardway.sys.importable import importable_for

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mounts or setuid")
EXPECTED_NAMES = {
    "python",
    "kernel",
    "privileges",
    *(f"namespace {k}" for k in ("uts", "ipc", "pid", "mnt", "net", "user", "cgroup")),
    "userns (unprivileged)",
    "apparmor userns",
    "unprivileged_userns_clone",
    "max_user_namespaces",
    "cgroups",
    "overlayfs",
    "veth",
    "registry",
    *(f"tool {t}" for t in ("docker-registry", "skopeo", "umoci", "runc", "busybox", "ip")),
    "disk",
}


def hardway_cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HARDWAY_STATE_DIR=str(state))
    return subprocess.run(
        [sys.executable, "-m", "hardway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


class FakeRunner:
    """A probe runner that answers from a table and remembers what it was asked."""

    def __init__(self, answers: dict[tuple[str, ...], ProbeResult], default: ProbeResult):
        self.answers, self.default = answers, default
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, args: Sequence[str]) -> ProbeResult:
        self.calls.append(tuple(args))
        return self.answers.get(tuple(args), self.default)


WORKS = ProbeResult(0, "fine\n", "")
EPERM = ProbeResult(1, "", "noise\nunshare(CLONE_NEWUTS) was refused (EPERM): it needs root\n")


def rendered(*checks: Check) -> str:
    return str(Report(tuple(checks)))


# -- the real thing ---------------------------------------------------------------------


def test_doctests() -> None:
    assert doctest.testmod(hardway.course.doctor).failed == 0
    assert doctest.testmod(probes).failed == 0


def test_cli_json_on_this_machine(tmp_path: Path) -> None:
    started = time.monotonic()
    done = hardway_cli("doctor", "--json", state=tmp_path)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["cgroup"]["version"] == cgroups.detect().version
    assert {c["name"] for c in report["checks"]} == EXPECTED_NAMES
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in report["checks"])
    assert all(c["status"] in {"ok", "warn", "skip"} for c in report["checks"])
    assert elapsed < 10, f"doctor took {elapsed:.1f} s"
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["disk"]["detail"].endswith(f"free at {tmp_path}")
    if os.geteuid() == 0:
        assert all(by_name[f"namespace {k}"]["status"] == "ok" for k in ("uts", "mnt", "pid"))


@pytest.mark.skipif(
    not Path("/sys/fs/cgroup/unified/cgroup.procs").exists(),
    reason="this machine has no cgroup2 at /sys/fs/cgroup/unified: not a hybrid host",
)
def test_cli_json_reports_hybrid_here(tmp_path: Path) -> None:
    report = json.loads(hardway_cli("doctor", "--json", state=tmp_path).stdout)
    assert report["cgroup"]["version"] == "hybrid"
    assert {"memory", "cpu", "pids"} <= set(report["cgroup"]["controllers"])


def test_cli_text_has_a_line_per_check_and_a_summary(tmp_path: Path) -> None:
    done = hardway_cli("doctor", "--port", "1", state=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    status_lines = [line for line in lines if line.split()[0] in {"ok", "warn", "fail", "skip"}]
    assert len(status_lines) == len(EXPECTED_NAMES)
    assert lines[-1].startswith("The course can run")
    registry = next(i for i, line in enumerate(lines) if line[5:].startswith("registry "))
    assert lines[registry].startswith("warn ") and "127.0.0.1:1" in lines[registry]
    assert lines[registry + 1] == "     → fix: make registry REGISTRY_PORT=1"


@needs_root
def test_a_full_disk_makes_json_not_ok_and_exit_1() -> None:
    """A 512 KiB tmpfs as the state dir, in a private mount namespace: disk must fail."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    state = tempfile.mkdtemp(prefix="hardway-doctor-disk-")
    try:
        script = 'mount -t tmpfs -o size=512k tmpfs "$HARDWAY_STATE_DIR" && exec "$@"'
        in_private_mounts = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        done = subprocess.run(
            [*in_private_mounts, "sh", sys.executable, "-m", "hardway", "doctor", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=dict(os.environ, HARDWAY_STATE_DIR=state),
        )
    finally:
        os.rmdir(state)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    (disk,) = [c for c in report["checks"] if c["name"] == "disk"]
    assert disk["status"] == "fail" and disk["detail"].startswith("0.0 GiB free")
    assert "HARDWAY_STATE_DIR" in disk["fix"]


def test_a_failing_check_makes_the_cli_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tiny = os.statvfs_result((4096, 4096, 100, 10, 10, 100, 10, 10, 0, 255))
    monkeypatch.setenv("HARDWAY_STATE_DIR", str(tmp_path))
    real_check_disk = doctor.check_disk
    monkeypatch.setattr(doctor, "check_disk", lambda: real_check_disk(statvfs=lambda p: tiny))
    assert cli.main(["doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [c["status"] for c in report["checks"] if c["name"] == "disk"] == ["fail"]


def _python_for_nobody() -> str | None:
    """A Python 3.11+ that uid 65534 may execute (the venv's may live under /root)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys, ctypes; sys.exit(sys.version_info < (3, 11))"],
                user=65534,
                group=65534,
                extra_groups=[],
                capture_output=True,
                timeout=10,
                cwd="/",
            )
        except OSError:
            continue
        if done.returncode == 0:
            return candidate
    return None


@needs_root
def test_doctor_as_nobody_sees_the_unprivileged_machine() -> None:
    python = _python_for_nobody()
    if python is None:
        pytest.skip("no Python 3.11 that uid 65534 can run")
    state = Path(tempfile.mkdtemp(prefix="hardway-doctor-nobody-"))
    os.chown(state, 65534, 65534)
    code = (
        "import json; from hardway.course import doctor; print(json.dumps(doctor.run().to_json()))"
    )
    try:
        # the checkout may be out of nobody's reach (in /root, or any 0700 directory)
        with importable_for(65534, 65534) as path:
            env = {
                "PATH": "/usr/bin:/bin",
                "PYTHONPATH": str(path),
                "HARDWAY_STATE_DIR": str(state),
            }
            done = subprocess.run(
                [python, "-c", code],
                user=65534,
                group=65534,
                extra_groups=[],
                capture_output=True,
                text=True,
                timeout=60,
                cwd="/",
                env=env,
            )
    finally:
        shutil.rmtree(state)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert (
        checks["privileges"]["status"] == "warn" and "uid 65534" in checks["privileges"]["detail"]
    )
    assert checks["cgroups"]["status"] == "warn" and "sudo" in checks["cgroups"]["fix"]
    assert report["cgroup"]["controllers"]["memory"] is False
    rootless = checks["userns (unprivileged)"]["status"] == "ok"
    for kind in ("uts", "ipc", "pid", "mnt", "net", "cgroup"):
        ns = checks[f"namespace {kind}"]
        assert (ns["status"] == "ok") == rootless, ns
        if rootless:
            assert "inside a user namespace" in ns["detail"]
    assert report["ok"] is rootless  # without user namespaces nobody has no namespace at all
    # root's own check (a probe that drops to 65534) must agree with the real nobody
    assert doctor.check_rootless_userns().status == checks["userns (unprivileged)"]["status"]


# -- the probes, run for real -----------------------------------------------------------


@needs_root
@pytest.mark.parametrize("kind", ["uts", "pid", "mnt", "net"])
def test_probe_namespace_for_real(kind: str) -> None:
    result = probes.run_probe(["ns", kind])
    assert result.ok, result.reason


def test_probe_reports_why_it_failed() -> None:
    result = probes.run_probe(["ns", "nonsense"])
    assert not result.ok
    assert result.reason == (
        "FileNotFoundError: [Errno 2] No such file or directory: '/proc/self/ns/nonsense'"
    )


def test_probe_times_out() -> None:
    result = probes.run_probe(["ns", "uts"], timeout=0.001, retry=0.002)
    assert result.returncode is None and result.timed_out and result.limits == (0.001, 0.002)
    assert result.reason == "timed out after 0.001 s, and again after 0.002 s"


def test_a_fast_probe_is_tried_once_within_the_usual_limit() -> None:
    result = probes.run_probe(["ns", "nonsense"])
    assert result.limits == (probes.PROBE_TIMEOUT,) == (4.0,) and not result.slow


@pytest.fixture
def slow_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every new Python child sleeps first, like a small or emulated VM starting Python
    (a ``sitecustomize`` on the ``PYTHONPATH`` the probe children inherit)."""

    def slow_down(seconds: float) -> None:
        (tmp_path / "sitecustomize.py").write_text(f"import time\ntime.sleep({seconds})\n")
        path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
        monkeypatch.setenv("PYTHONPATH", path)

    return slow_down


def test_a_slow_start_is_tried_again_with_a_longer_limit(
    slow_python, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_python(1.0)
    monkeypatch.setattr(probes, "PROBE_TIMEOUT", 0.3)
    monkeypatch.setenv(probes.TIMEOUT_VARIABLE, "30")
    result = probes.run_probe(["ns", "nonsense"])
    assert result.limits == (0.3, 30.0) and not result.timed_out
    assert result.reason.startswith("FileNotFoundError"), "the child's own answer, at last"
    ok = doctor.check_namespace("uts", runner=lambda args: replace(WORKS, limits=(4.0, 60.0)))
    assert ok.status == "ok" and ok.detail.endswith("(slowly: over 4 s)")


def test_probes_that_time_out_say_so_and_never_fail_the_report(
    slow_python, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real probes, slowed down past both limits: no kernel option is named, the report
    says it could not tell, and the course is not declared unable to run."""
    slow_python(3.0)
    monkeypatch.setattr(probes, "PROBE_TIMEOUT", 0.2)
    monkeypatch.setenv(probes.TIMEOUT_VARIABLE, "0.4")
    started = time.monotonic()
    checks = doctor.check_namespaces(euid=0)
    checks += [
        doctor.check_rootless_userns(euid=0),
        doctor.check_overlayfs(euid=0, workdir=tmp_path),
        doctor.check_veth(euid=0),
    ]
    assert time.monotonic() - started < 10, "killed at the limits, not after the sleep"
    for check in checks:
        if check.name == "veth" and check.detail.startswith("ip (iproute2)"):
            continue  # no ip here: nothing was probed
        assert check.status == "warn", check
        assert check.detail.startswith("could not tell whether "), check
        assert check.detail.endswith("the probe timed out after 0.2 s, and again after 0.4 s")
        assert check.fix == doctor.SLOW_FIX and "CONFIG_" not in check.detail + check.fix
    report = Report(tuple(checks))
    assert report.ok and report.to_json()["ok"] is True
    assert report.summary().startswith("No check failed, but ")
    assert "cannot run" not in str(report) and "HARDWAY_PROBE_TIMEOUT=" in str(report)


def test_timeouts_only_warn_even_when_no_namespace_answered() -> None:
    timed_out = ProbeResult(None, limits=(4.0, 60.0))
    for euid in (0, 1000):
        checks = doctor.check_namespaces(runner=FakeRunner({}, timed_out), euid=euid)
        assert [c.status for c in checks] == ["warn"] * 7
        assert all(c.fix == doctor.SLOW_FIX for c in checks)
        assert checks[0].detail == (
            "could not tell whether unshare(CLONE_NEWUTS) works: the probe timed out after "
            "4 s, and again after 60 s"
        )
    # as non-root, a refusal then a timeout inside a user namespace: still "could not tell"
    runner = FakeRunner({("ns", "uts", "--userns"): timed_out}, EPERM)
    assert doctor.check_namespace("uts", runner=runner, euid=1000).fix == doctor.SLOW_FIX
    mixed = doctor.check_namespaces(runner=FakeRunner({("ns", "uts"): timed_out}, EPERM), euid=0)
    assert [c.status for c in mixed] == ["warn"] * 7, "one timeout: no proof that none works"
    assert "CONFIG_IPC_NS" in mixed[1].fix  # the refusals are still diagnosed


@needs_root
def test_probe_overlay_for_real(tmp_path: Path) -> None:
    result = probes.run_probe(["overlay", str(tmp_path / "o")])
    assert result.ok, result.reason
    assert (tmp_path / "o" / "upper" / "from-merged").read_text() == "merged\n"
    assert not (tmp_path / "o" / "merged" / "from-lower").exists()  # unmounted again


def test_overlay_check_cleans_up(tmp_path: Path) -> None:
    check = doctor.check_overlayfs(workdir=tmp_path)
    assert check.status in {"ok", "warn"}
    assert list(tmp_path.iterdir()) == []


def test_veth_probe_never_touches_the_host() -> None:
    before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    check = doctor.check_veth()
    after = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "hwdoc" not in after and before == after
    if os.geteuid() == 0:
        assert check.status == "ok", check


# -- each check driven into failure with fakes ------------------------------------------


def test_python_too_old_fails() -> None:
    check = doctor.check_python((3, 10, 12))
    assert check.status == "fail" and "3.10.12" in check.detail
    assert "→ fix: install python3.11" in rendered(check)
    assert doctor.check_python(sys.version_info).status == "ok"


def test_kernel() -> None:
    assert doctor.check_kernel("Darwin", "23.1.0").status == "fail"
    assert doctor.check_kernel("Linux", "4.19.0-26-amd64").status == "warn"
    assert doctor.check_kernel("Linux", "6.1.0-18-amd64").status == "ok"


def test_privileges() -> None:
    assert doctor.check_privileges(0).status == "ok"
    check = doctor.check_privileges(1000)
    assert check.status == "warn" and "uid 1000" in check.detail and "sudo" in check.fix


@pytest.mark.parametrize(
    ("check", "bad", "good", "fix"),
    [
        (
            doctor.check_apparmor_userns,
            "1",
            "0",
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        ),
        (doctor.check_userns_clone, "0", "1", "sudo sysctl -w kernel.unprivileged_userns_clone=1"),
        (
            doctor.check_max_user_namespaces,
            "0",
            "15000",
            "sudo sysctl -w user.max_user_namespaces=",
        ),
    ],
)
def test_sysctl_checks(check, bad: str, good: str, fix: str, tmp_path: Path) -> None:
    sysctl = tmp_path / "sysctl"
    assert check(sysctl).status == "skip"  # the kernel does not have it
    sysctl.write_text(bad + "\n")
    warned = check(sysctl)
    assert warned.status == "warn" and warned.fix.startswith(fix)
    assert f"→ fix: {fix}" in rendered(warned)
    sysctl.write_text(good + "\n")
    assert check(sysctl).status == "ok"


def test_rootless_userns_takes_the_fix_from_the_sysctl_that_explains_it(tmp_path: Path) -> None:
    (tmp_path / "apparmor").write_text("1\n")
    sysctls = [doctor.check_apparmor_userns(tmp_path / "apparmor")]
    runner = FakeRunner({}, EPERM)
    check = doctor.check_rootless_userns(runner=runner, euid=0, sysctls=sysctls)
    assert runner.calls == [("rootless", "--as-nobody")]
    assert check.status == "warn" and "uid 65534" in check.detail and "EPERM" in check.detail
    assert check.fix == "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
    ok = doctor.check_rootless_userns(runner=FakeRunner({}, WORKS), euid=1000)
    assert ok.status == "ok"


def test_namespaces_none_working_is_fatal() -> None:
    checks = doctor.check_namespaces(runner=FakeRunner({}, EPERM), euid=0)
    assert [c.status for c in checks] == ["fail"] * 7
    report = Report(tuple(checks))
    assert not report.ok and report.to_json()["ok"] is False
    assert "CONFIG_UTS_NS" in checks[0].fix


def test_one_missing_namespace_only_warns() -> None:
    runner = FakeRunner({("ns", "net"): EPERM}, WORKS)
    checks = {c.name: c for c in doctor.check_namespaces(runner=runner, euid=0)}
    assert checks["namespace net"].status == "warn"
    assert "refused (EPERM)" in checks["namespace net"].detail
    assert all(c.status == "ok" for n, c in checks.items() if n != "namespace net")


def test_non_root_namespaces_are_retried_inside_a_user_namespace() -> None:
    runner = FakeRunner({("ns", "uts", "--userns"): WORKS, ("ns", "user"): WORKS}, EPERM)
    uts = doctor.check_namespace("uts", runner=runner, euid=1000)
    assert runner.calls == [("ns", "uts"), ("ns", "uts", "--userns")]
    assert uts.status == "ok" and "inside a user namespace" in uts.detail
    ipc = doctor.check_namespace("ipc", runner=runner, euid=1000)
    assert ipc.status == "warn" and "sudo make lab" in ipc.fix


def test_overlay_and_veth_failures_warn(tmp_path: Path) -> None:
    overlay = doctor.check_overlayfs(runner=FakeRunner({}, EPERM), euid=0, workdir=tmp_path)
    assert overlay.status == "warn" and overlay.fix == "sudo modprobe overlay"
    veth = doctor.check_veth(runner=FakeRunner({}, ProbeResult(None)), euid=0)
    assert veth.status == "warn" and "timed out" in veth.detail
    runner = FakeRunner({}, WORKS)
    no_ip = doctor.check_veth(runner=runner, euid=0, path=str(tmp_path))
    assert no_ip.status == "warn" and no_ip.fix == "sudo apt-get install iproute2"
    assert runner.calls == []


def test_cgroup_check_fixes() -> None:
    assert doctor.check_cgroups(cgroups.CgroupMode("none", Path("/x")), {}).status == "warn"
    v1 = cgroups.CgroupMode("v1", Path("/sys/fs/cgroup"), {"memory": Path("/sys/fs/cgroup/memory")})
    check = doctor.check_cgroups(v1, {"memory": True}, euid=0)
    assert check.status == "warn" and "not usable: cpu, pids" in check.detail
    assert check.fix == (
        "sudo mkdir -p /sys/fs/cgroup/cpu && sudo mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu"
    )
    v2 = cgroups.CgroupMode("v2", Path("/c"), {}, ("memory", "cpu", "pids"), Path("/c"))
    check = doctor.check_cgroups(v2, {"memory": True, "cpu": False, "pids": False}, euid=0)
    assert check.fix == "sudo sh -c 'echo \"+cpu +pids\" > /c/cgroup.subtree_control'"
    assert "sudo make lab" in doctor.check_cgroups(v2, {}, euid=1000).fix
    good = doctor.check_cgroups(v2, dict.fromkeys(("memory", "cpu", "pids"), True))
    assert good.status == "ok" and good.detail == "v2; usable: memory (v2), cpu (v2), pids (v2)"


def _status(running: bool, port: int = 5000):
    url = f"http://127.0.0.1:{port}"
    return lambda port=None: SimpleNamespace(running=running, url=url, port=port or 5000)


def test_registry_check() -> None:
    assert doctor.check_registry(status=_status(True)).status == "ok"
    down = doctor.check_registry(status=_status(False), others=lambda port: [])
    assert down.status == "warn" and down.fix == "make registry"
    assert "→ fix: make registry" in rendered(down)
    theirs = Service("registry", 42, 5000, Path("/srv/other/registry/5000"))
    shared = doctor.check_registry(status=_status(False), others=lambda port: [theirs])
    assert shared.status == "ok" and shared.fix is None
    assert shared.detail == (
        "the course's registry of the state directory /srv/other (pid 42) runs at "
        "http://127.0.0.1:5000: the course uses it as it is"
    )

    def missing(port=None):
        raise MissingToolError("docker-registry is not installed", fix="sudo apt-get install x")

    def broken(port=None):
        raise RuntimeError("boom")

    assert doctor.check_registry(status=missing).fix == "sudo apt-get install x"
    crashed = doctor.check_registry(status=broken)
    assert crashed.status == "warn" and "RuntimeError: boom" in crashed.detail


def test_registry_check_against_the_real_helper_on_a_dead_port() -> None:
    check = doctor.check_registry(port=1)
    assert check.status == "warn" and check.fix == "make registry REGISTRY_PORT=1"


def _fake_bin(tmp_path: Path, **links: str) -> str:
    for name, target in links.items():
        (tmp_path / name).symlink_to(target)
    return str(tmp_path)


def test_tools_missing_from_path(tmp_path: Path) -> None:
    real = {name: shutil.which(name, path=doctor._search_path(None)) for name, *_ in doctor.TOOLS}
    present = {n: p for n, p in real.items() if p and n != "skopeo"}
    checks = {c.name: c for c in doctor.check_tools(path=_fake_bin(tmp_path, **present))}
    skopeo = checks["tool skopeo"]
    assert skopeo.status == "warn" and skopeo.fix.startswith("sudo apt-get install skopeo")
    assert "→ fix: sudo apt-get install skopeo   (or: make setup)" in rendered(skopeo)
    for name in present:
        assert checks[f"tool {name}"].status in {"ok", "warn"}


def test_busybox_must_be_static(tmp_path: Path) -> None:
    dynamic = doctor.check_tool(
        "busybox", "busybox-static", "x", path=_fake_bin(tmp_path, busybox=sys.executable)
    )
    assert dynamic.status == "warn" and "linked dynamically" in dynamic.detail
    assert dynamic.fix.startswith("sudo apt-get install busybox-static")
    script = tmp_path / "script"
    script.mkdir()
    (script / "busybox").write_text("#!/bin/sh\n")
    (script / "busybox").chmod(0o755)
    assert doctor.check_tool("busybox", "busybox-static", "x", path=str(script)).status == "warn"


@pytest.mark.parametrize(
    ("free", "status"), [(512 * 1024**2, "fail"), (3 * GIB, "warn"), (50 * GIB, "ok")]
)
def test_disk(free: int, status: str, tmp_path: Path) -> None:
    blocks = free // 4096
    fake = os.statvfs_result((4096, 4096, blocks * 2, blocks, blocks, 100, 10, 10, 0, 255))
    check = doctor.check_disk(tmp_path, statvfs=lambda p: fake)
    assert check.status == status
    assert (check.fix is None) == (status == "ok")
    assert doctor.check_disk(tmp_path).status in {"ok", "warn", "fail"}  # the real statvfs


# -- the report -------------------------------------------------------------------------


def test_report_renderings() -> None:
    report = Report(
        (
            Check("python", "ok", "Python 3.11.7"),
            Check("veth", "warn", "cannot <create> a pair", fix="sudo modprobe veth"),
            Check("disk", "fail", "0.1 GiB free", fix="free some space"),
            Check("apparmor userns", "skip", "not in this kernel"),
        ),
        cgroups.CgroupMode("hybrid", Path("/sys/fs/cgroup")),
        {"memory": True},
    )
    text = str(report).splitlines()
    assert text[0].startswith("ok   python           Python 3.11.7")
    assert text[1] == "warn veth             cannot <create> a pair"
    assert text[2] == "     → fix: sudo modprobe veth"
    assert text[3].startswith("fail disk") and text[4] == "     → fix: free some space"
    assert text[5].startswith("skip apparmor userns")
    assert text[-1].startswith("The course cannot run here: 1 check(s) failed")
    assert not report.ok
    assert report.to_json() == {
        "ok": False,
        "cgroup": {"version": "hybrid", "controllers": {"memory": True}},
        "checks": [
            {"name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix}
            for c in report.checks
        ],
    }
    bundle = report._repr_mimebundle_()
    assert bundle["text/plain"] == str(report)
    page = bundle["text/html"]
    assert page.count("<tr>") == 5  # header + 4 checks
    assert "cannot &lt;create&gt; a pair" in page and "<create>" not in page
    assert "<code>sudo modprobe veth</code>" in page
    assert Report((Check("python", "ok", "fine"),)).summary() == (
        "The course can run: everything works."
    )
