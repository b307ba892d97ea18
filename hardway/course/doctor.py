"""hardway.course.doctor
~~~~~~~~~~~~~~~~~~~~~

Before chapter 01, find out what this machine lets the course do, and say how to fix
what it does not. Every check *tries* the thing rather than guessing from versions:
it unshares each namespace type, mounts an overlay, creates a veth pair, makes a test
cgroup. Whatever touches namespaces or mounts runs in a child process inside its own
namespaces (see :mod:`hardway.course.probes`), so neither the caller (often a Jupyter kernel)
nor the host's network or mount table is changed.

Each check ends in one of four states:

* ``ok``   — works;
* ``warn`` — a chapter will be limited (no veth, no rootless user namespaces, the
  registry is not running, a tool is missing);
* ``fail`` — the course cannot run here (no namespaces at all, Python too old, no disk);
* ``skip`` — does not apply to this machine (a sysctl its kernel does not have).

A probe that times out twice (see :mod:`hardway.course.probes`) has found out nothing: its
check warns that it could not tell, with :data:`SLOW_FIX`, and never names a kernel option
or fails the report — a slow machine is not a broken one.

``python -m hardway doctor [--json]`` prints the :class:`Report`; in a notebook,
``doctor.run()`` renders as a table.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hardway.course.probes import NOBODY, TIMEOUT_VARIABLE, ProbeResult, Runner, run_probe
from hardway.errors import HardwayError
from hardway.isolation import cgroups, rootfs
from hardway.sys import linux
from hardway.sys.state import state_dir
from hardway.sys.trees import remove_tree

__all__ = [
    "SLOW_FIX",
    "Check",
    "Report",
    "check_apparmor_userns",
    "check_cgroups",
    "check_disk",
    "check_kernel",
    "check_max_user_namespaces",
    "check_namespace",
    "check_namespaces",
    "check_overlayfs",
    "check_privileges",
    "check_python",
    "check_registry",
    "check_rootless_userns",
    "check_tool",
    "check_tools",
    "check_userns_clone",
    "check_veth",
    "run",
]

Status = Literal["ok", "warn", "fail", "skip"]

MIN_PYTHON = (3, 11)
MIN_KERNEL = (5, 4)  #: older kernels lack pieces the course shows (e.g. overlayfs fixes)
GIB = 1024**3
DISK_WARN, DISK_FAIL = 5 * GIB, 1 * GIB

APPARMOR_SYSCTL = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
USERNS_CLONE_SYSCTL = Path("/proc/sys/kernel/unprivileged_userns_clone")
MAX_USERNS_SYSCTL = Path("/proc/sys/user/max_user_namespaces")

#: (program, Debian package, what the course needs it for)
TOOLS = (
    ("docker-registry", "docker-registry", "the local registry of chapters 07–08"),
    ("skopeo", "skopeo", "checking images in chapters 06–08"),
    ("umoci", "umoci", "checking OCI layouts in chapter 06"),
    ("runc", "runc", "the reference runtime of chapter 04"),
    ("busybox", "busybox-static", "the tiny root filesystem of chapter 01"),
    ("ip", "iproute2", "network namespaces and veth pairs in chapter 02"),
)
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # not on a normal user's PATH on Debian
_AS_ROOT = "run the course as root: sudo make lab"
#: the fix of a check whose probe timed out twice: nothing is known, so try again
SLOW_FIX = (
    "this machine is slow or busy (the probe never answered): run make doctor again, or "
    f"give probes longer: {TIMEOUT_VARIABLE}=300 make doctor"
)


@dataclass(frozen=True)
class Check:
    """The outcome of one check: what was tried, what happened, and the remedy."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


def _euid(euid: int | None) -> int:
    return os.geteuid() if euid is None else euid


def _could_not_tell(name: str, what: str, result: ProbeResult) -> Check:
    """The check of a probe that timed out: a warning that says so, never a diagnosis."""
    return Check(
        name, "warn", f"could not tell whether {what}: the probe {result.reason}", SLOW_FIX
    )


def _slowly(result: ProbeResult) -> str:
    """A note for a probe that answered only on its second, longer try."""
    return f" (slowly: over {result.limits[0]:g} s)" if result.slow else ""


# -- the checks -------------------------------------------------------------------------


def check_python(version_info: Sequence[int] = sys.version_info) -> Check:
    """Python 3.11 or newer (``fail`` otherwise).

    >>> check_python((3, 10, 4)).status
    'fail'
    """
    shown = ".".join(str(n) for n in version_info[:3])
    if tuple(version_info[:2]) < MIN_PYTHON:
        return Check(
            "python",
            "fail",
            f"Python {shown} is too old: the course needs 3.11 or newer",
            fix="install python3.11 and run: make PYTHON=python3.11 setup",
        )
    return Check("python", "ok", f"Python {shown} ({sys.executable})")


def check_kernel(system: str | None = None, release: str | None = None) -> Check:
    """Linux (``fail`` otherwise), and not older than :data:`MIN_KERNEL` (``warn``).

    >>> check_kernel("Linux", "4.19.0-20-amd64").status
    'warn'
    """
    system = platform.system() if system is None else system
    release = platform.release() if release is None else release
    if system != "Linux":
        return Check(
            "kernel",
            "fail",
            f"this is {system}: namespaces and cgroups exist only on Linux",
            fix="run the course in a Linux VM (Debian 12 or Ubuntu 22.04 or newer)",
        )
    match = re.match(r"(\d+)\.(\d+)", release)
    version = (int(match[1]), int(match[2])) if match else (0, 0)
    if version < MIN_KERNEL:
        return Check(
            "kernel",
            "warn",
            f"Linux {release} is older than {MIN_KERNEL[0]}.{MIN_KERNEL[1]}: some chapters "
            "may behave differently",
            fix="use a newer kernel (a current Debian or Ubuntu VM)",
        )
    return Check("kernel", "ok", f"Linux {release} ({platform.machine()})")


def check_privileges(euid: int | None = None) -> Check:
    """Root can run every chapter; anyone else is limited to what user namespaces allow."""
    euid = _euid(euid)
    if euid == 0:
        return Check("privileges", "ok", "root: every chapter can run")
    return Check(
        "privileges",
        "warn",
        f"uid {euid}, not root: cgroup limits (03), runc (04) and host-side networking need "
        "root; namespaces work only through user namespaces",
        fix=_AS_ROOT,
    )


_NS_FLAG = {kind: linux.flag_names(flag) for kind, flag in linux.NAMESPACES.items()}
_NS_CONFIG = {"uts": "UTS", "ipc": "IPC", "pid": "PID", "net": "NET", "user": "USER"}


def check_namespace(kind: str, *, runner: Runner = run_probe, euid: int | None = None) -> Check:
    """unshare(CLONE_NEW<kind>) in a child; as non-root, retried inside a user namespace."""
    name, flag = f"namespace {kind}", _NS_FLAG[kind]
    result = runner(["ns", kind])
    if result.ok:
        return Check(name, "ok", f"unshare({flag}) works{_slowly(result)}")
    euid = _euid(euid)
    if euid != 0 and kind != "user" and not result.timed_out:
        inner = runner(["ns", kind, "--userns"])
        if inner.ok:
            where = f"inside a user namespace{_slowly(inner)}"
            return Check(name, "ok", f"unshare({flag}) works {where}")
        result = inner if inner.timed_out else result
    if result.timed_out:
        return _could_not_tell(name, f"unshare({flag}) works", result)
    if euid == 0:
        config = f"the kernel lacks CONFIG_{_NS_CONFIG[kind]}_NS or " if kind in _NS_CONFIG else ""
        fix = (
            f"{config}a seccomp/container policy forbids it: run the course in a VM or "
            "a privileged container"
        )
    else:
        fix = f"{_AS_ROOT}   (or enable unprivileged user namespaces: see the userns lines)"
    return Check(name, "warn", f"unshare({flag}) failed: {result.reason}", fix=fix)


def check_namespaces(*, runner: Runner = run_probe, euid: int | None = None) -> list[Check]:
    """Every namespace type, probed in parallel; if none works at all, the course cannot run
    (but a probe that timed out proved nothing: then they only warn)."""
    with ThreadPoolExecutor(len(linux.NAMESPACES)) as pool:
        checks = list(
            pool.map(lambda k: check_namespace(k, runner=runner, euid=euid), linux.NAMESPACES)
        )
    if all(c.status != "ok" and c.fix != SLOW_FIX for c in checks):
        checks = [Check(c.name, "fail", c.detail + " (no namespace works)", c.fix) for c in checks]
    return checks


def _sysctl(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def check_apparmor_userns(path: Path = APPARMOR_SYSCTL) -> Check:
    """Ubuntu 23.10+: AppArmor may deny unprivileged user namespaces their capabilities."""
    name, value = "apparmor userns", _sysctl(path)
    if value is None:
        return Check(name, "skip", "not in this kernel: no AppArmor user-namespace restriction")
    if value != "0":
        return Check(
            name,
            "warn",
            f"kernel.apparmor_restrict_unprivileged_userns = {value}: AppArmor stops "
            "unprivileged users acting as root in a user namespace",
            fix="sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        )
    return Check(name, "ok", "kernel.apparmor_restrict_unprivileged_userns = 0: not restricted")


def check_userns_clone(path: Path = USERNS_CLONE_SYSCTL) -> Check:
    """Debian's own switch (older Debian kernels): ``0`` forbids unprivileged user namespaces."""
    name, value = "unprivileged_userns_clone", _sysctl(path)
    if value is None:
        return Check(name, "skip", "not in this kernel (a Debian patch): nothing to switch on")
    if value == "0":
        return Check(
            name,
            "warn",
            "kernel.unprivileged_userns_clone = 0: only root may create user namespaces",
            fix="sudo sysctl -w kernel.unprivileged_userns_clone=1",
        )
    return Check(name, "ok", f"kernel.unprivileged_userns_clone = {value}: allowed")


def check_max_user_namespaces(path: Path = MAX_USERNS_SYSCTL) -> Check:
    """``user.max_user_namespaces``: ``0`` forbids user namespaces to everyone, root too."""
    name, value = "max_user_namespaces", _sysctl(path)
    if value is None:
        return Check(name, "skip", "not in this kernel (built without user namespaces?)")
    if not value.isdigit() or int(value) == 0:
        return Check(
            name,
            "warn",
            f"user.max_user_namespaces = {value}: nobody, not even root, may create one",
            fix="sudo sysctl -w user.max_user_namespaces=15000",
        )
    return Check(name, "ok", f"user.max_user_namespaces = {value}")


def check_rootless_userns(
    *, runner: Runner = run_probe, euid: int | None = None, sysctls: Sequence[Check] = ()
) -> Check:
    """Can an unprivileged user make a user namespace and act as root in it (rootless)?

    As root the probe drops to ``nobody`` first. When it fails, the fix is taken from
    the first sysctl check (*sysctls*) that explains why.
    """
    name = "userns (unprivileged)"
    as_root = _euid(euid) == 0
    result = runner(["rootless", "--as-nobody"] if as_root else ["rootless"])
    who = f"uid {NOBODY} (nobody)" if as_root else "this user"
    if result.ok:
        works = f"{who} can be root in its own user namespace: rootless works{_slowly(result)}"
        return Check(name, "ok", works)
    if result.timed_out:
        return _could_not_tell(name, f"{who} can use a user namespace", result)
    fix = next((c.fix for c in sysctls if c.status == "warn" and c.fix), None)
    return Check(
        name,
        "warn",
        f"{who} cannot use a user namespace ({result.reason}): the rootless parts of "
        "chapter 02 are limited",
        fix=fix or ("nothing to do as root: run those cells as root" if as_root else _AS_ROOT),
    )


def check_cgroups(
    mode: cgroups.CgroupMode,
    usable: dict[str, bool],
    *,
    wanted: Sequence[str] = ("memory", "cpu", "pids"),
    euid: int | None = None,
) -> Check:
    """The cgroup design and whether chapter 03's controllers can be used."""
    if mode.version == "none":
        return Check(
            "cgroups",
            "warn",
            "no cgroup filesystem is mounted: chapter 03 cannot set limits",
            fix="sudo mount -t cgroup2 none /sys/fs/cgroup",
        )
    carriers = mode.controllers
    good = [f"{c} ({carriers[c]})" for c in wanted if usable.get(c)]
    bad = [c for c in wanted if not usable.get(c)]
    detail = f"{mode.version}; usable: {', '.join(good) or 'none'}"
    if not bad:
        return Check("cgroups", "ok", detail)
    if _euid(euid) != 0:
        fix = f"{_AS_ROOT}   (chapter 03 creates cgroups)"
    elif mode.v2_path is not None and all(carriers.get(c) == "v2" for c in bad):
        plus = " ".join(f"+{c}" for c in bad)
        fix = f"sudo sh -c 'echo \"{plus}\" > {mode.v2_path}/cgroup.subtree_control'"
    else:
        where = mode.root / bad[0]
        fix = f"sudo mkdir -p {where} && sudo mount -t cgroup -o {bad[0]} cgroup {where}"
    return Check("cgroups", "warn", f"{detail}; not usable: {', '.join(bad)}", fix=fix)


def _try_with_userns(
    runner: Runner, args: list[str], retry_args: list[str], euid: int
) -> tuple[ProbeResult, bool]:
    """Run a probe; as non-root and on failure, run it again inside a user namespace."""
    result = runner(args)
    if result.ok or euid == 0:
        return result, False
    inner = runner([*retry_args, "--userns"])
    if inner.ok or inner.timed_out:  # a timeout proves nothing: report it, not the first
        return inner, inner.ok
    return result, False


def check_overlayfs(
    *, runner: Runner = run_probe, euid: int | None = None, workdir: Path | None = None
) -> Check:
    """Mount an overlay in a child's mount namespace; write and read through it."""
    euid = _euid(euid)
    tmp = Path(tempfile.mkdtemp(prefix="hardway-doctor-overlay-", dir=workdir))
    try:
        plain, inner = str(tmp / "plain"), str(tmp / "userns")
        result, in_userns = _try_with_userns(runner, ["overlay", plain], ["overlay", inner], euid)
    finally:
        remove_tree(tmp)
    if result.ok:
        where = " inside a user namespace" if in_userns else ""
        return Check(
            "overlayfs", "ok", f"mounted, written and read through{where}{_slowly(result)}"
        )
    if result.timed_out:
        return _could_not_tell("overlayfs", "an overlay can be mounted", result)
    fix = "sudo modprobe overlay" if euid == 0 else f"{_AS_ROOT}   (or use Linux 5.11+)"
    return Check(
        "overlayfs",
        "warn",
        f"cannot mount an overlay ({result.reason}): chapter 05 shows overlayfs only on paper",
        fix=fix,
    )


def _search_path(path: str | None) -> str:
    """*path*, or ``$PATH`` plus the sbin directories a Debian user's PATH lacks."""
    if path is not None:
        return path
    dirs = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(dirs + [d for d in _SBIN if d not in dirs])


def check_veth(
    *, runner: Runner = run_probe, euid: int | None = None, path: str | None = None
) -> Check:
    """Create a veth pair inside a child's own network namespace (the host sees nothing)."""
    ip = shutil.which("ip", path=_search_path(path))
    if ip is None:
        return Check(
            "veth", "warn", "ip (iproute2) is not installed", fix="sudo apt-get install iproute2"
        )
    result, in_userns = _try_with_userns(runner, ["veth", ip], ["veth", ip], _euid(euid))
    if result.ok:
        where = " (inside a user namespace)" if in_userns else ""
        return Check("veth", "ok", f"a veth pair can be created{where}{_slowly(result)}")
    if result.timed_out:
        return _could_not_tell("veth", "a veth pair can be created", result)
    fix = "sudo modprobe veth" if _euid(euid) == 0 else _AS_ROOT
    return Check(
        "veth",
        "warn",
        f"cannot create a veth pair ({result.reason}): chapter 02's network section is limited",
        fix=fix,
    )


def check_registry(
    port: int | None = None,
    status: Callable[..., Any] | None = None,
    others: Callable[[int], Sequence[Any]] | None = None,
) -> Check:
    """Is the course's local registry answering? (``warn`` if not: only 07–08 need it).

    The course's registry of another checkout on the port serves the course as well
    (*others*: default :func:`hardway.distribution.server.services.registries_on`).
    """
    fix = "make registry" if port is None else f"make registry REGISTRY_PORT={port}"
    try:
        # lazily: the registry is its own chapter
        from hardway.distribution.server import local_registry, services

        status = status or local_registry.status
        found = status(port=port)
        theirs = [] if found.running else (others or services.registries_on)(found.port)
    except HardwayError as exc:
        return Check("registry", "warn", exc.message, fix=exc.fix or fix)
    except Exception as exc:  # a broken helper must not break the preflight
        return Check(
            "registry", "warn", f"cannot ask the registry: {type(exc).__name__}: {exc}", fix=fix
        )
    if found.running:
        return Check("registry", "ok", f"running at {found.url}")
    if theirs:
        whose = services.describe(theirs[0])
        return Check("registry", "ok", f"{whose} runs at {found.url}: the course uses it as it is")
    return Check("registry", "warn", f"not running (expected at {found.url})", fix=fix)


def check_tool(name: str, package: str, purpose: str, *, path: str | None = None) -> Check:
    """One external program, found on the PATH (busybox must also be static)."""
    found = shutil.which(name, path=_search_path(path))
    install = f"sudo apt-get install {package}   (or: make setup)"
    if found is None:
        return Check(f"tool {name}", "warn", f"not installed: needed for {purpose}", fix=install)
    if name == "busybox":
        try:
            interpreter = rootfs.elf_interpreter(Path(found))
        except (OSError, ValueError) as exc:
            return Check(f"tool {name}", "warn", f"{found}: {exc}", fix=install)
        if interpreter is not None:
            return Check(
                f"tool {name}",
                "warn",
                f"{found} is linked dynamically (needs {interpreter}): "
                "a rootfs of one file needs a static busybox",
                fix=install,
            )
        return Check(f"tool {name}", "ok", f"{found} (static)")
    return Check(f"tool {name}", "ok", found)


def check_tools(*, path: str | None = None) -> list[Check]:
    """Every program in :data:`TOOLS`."""
    return [check_tool(name, package, purpose, path=path) for name, package, purpose in TOOLS]


def check_disk(
    path: Path | None = None, statvfs: Callable[[Path], os.statvfs_result] = os.statvfs
) -> Check:
    """Free space where the course keeps its state: images and registry storage."""
    path = state_dir() if path is None else path
    st = statvfs(path)
    free = st.f_bavail * st.f_frsize
    detail = f"{free / GIB:.1f} GiB free at {path}"
    fix = f"free some space on the file system of {path}, or set HARDWAY_STATE_DIR to a larger one"
    if free < DISK_FAIL:
        return Check("disk", "fail", f"{detail}: the course needs at least 1 GiB", fix=fix)
    if free < DISK_WARN:
        return Check("disk", "warn", f"{detail}: under 5 GiB, later chapters may run out", fix=fix)
    return Check("disk", "ok", detail)


# -- the report -------------------------------------------------------------------------

_COLOURS = {"ok": "#2e7d32", "warn": "#b26a00", "fail": "#c62828", "skip": "#757575"}


@dataclass(frozen=True)
class Report:
    """Every check, in order, plus the cgroup facts chapter 03 starts from."""

    checks: tuple[Check, ...]
    cgroup_mode: cgroups.CgroupMode | None = None
    cgroup_controllers: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the course can run: no check failed (warnings only limit chapters)."""
        return all(c.status != "fail" for c in self.checks)

    def summary(self) -> str:
        fails = sum(c.status == "fail" for c in self.checks)
        warns = sum(c.status == "warn" for c in self.checks)
        untold = sum(c.fix == SLOW_FIX for c in self.checks)
        if fails:
            return f"The course cannot run here: {fails} check(s) failed. Apply the fixes above."
        if untold:
            return (
                f"No check failed, but {untold} could not tell: their probes timed out, "
                "which says this machine is slow, not that it lacks anything. Run make "
                "doctor again (the chapters will be slow too)."
            )
        if warns:
            return f"The course can run; {warns} warning(s): some chapters will be limited."
        return "The course can run: everything works."

    def to_json(self) -> dict[str, Any]:
        mode = self.cgroup_mode
        return {
            "ok": self.ok,
            "cgroup": {
                "version": mode.version if mode else None,
                "controllers": dict(self.cgroup_controllers),
            },
            "checks": [asdict(c) for c in self.checks],
        }

    def __str__(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        lines = []
        for c in self.checks:
            lines.append(f"{c.status:<5}{c.name:<{width}}  {c.detail}")
            if c.fix:
                lines.append(f"{'':5}→ fix: {c.fix}")
        lines.append(self.summary())
        return "\n".join(lines)

    def _repr_html_table(self) -> str:
        rows = []
        for c in self.checks:
            fix = f"<code>{html.escape(c.fix)}</code>" if c.fix else ""
            rows.append(
                f'<tr><td style="color:{_COLOURS[c.status]};font-weight:bold">{c.status}</td>'
                f"<td>{html.escape(c.name)}</td><td>{html.escape(c.detail)}</td><td>{fix}</td></tr>"
            )
        return (
            '<table class="hardway-doctor"><thead><tr><th>status</th><th>check</th>'
            "<th>detail</th><th>fix</th></tr></thead><tbody>"
            + "".join(rows)
            + f"</tbody></table><p>{html.escape(self.summary())}</p>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": str(self), "text/html": self._repr_html_table()}


def run(*, registry_port: int | None = None, runner: Runner = run_probe) -> Report:
    """Run every check (in parallel, each child with a timeout) and collect a :class:`Report`.

    :param registry_port: (optional) the port of the course's registry; default: its own
    :param runner: (optional) how probes are started; tests pass a fake
    """
    sysctls = [check_apparmor_userns(), check_userns_clone(), check_max_user_namespaces()]
    mode = cgroups.detect()
    with ThreadPoolExecutor(6) as pool:
        namespaces = pool.submit(check_namespaces, runner=runner)
        rootless = pool.submit(check_rootless_userns, runner=runner, sysctls=sysctls)
        overlay = pool.submit(check_overlayfs, runner=runner)
        veth = pool.submit(check_veth, runner=runner)
        registry = pool.submit(check_registry, registry_port)
        usable = cgroups.usable_controllers(mode)
        checks = [
            check_python(),
            check_kernel(),
            check_privileges(),
            *namespaces.result(),
            rootless.result(),
            *sysctls,
            check_cgroups(mode, usable),
            overlay.result(),
            veth.result(),
            registry.result(),
            *check_tools(),
            check_disk(),
        ]
    return Report(tuple(checks), mode, usable)


def _command(args: argparse.Namespace) -> int:
    report = run(registry_port=args.port)
    print(json.dumps(report.to_json(), indent=2) if args.json else report)
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``doctor [--json] [--port N]`` to the CLI."""
    parser = subparsers.add_parser(
        "doctor",
        help="check that this machine can run the course, and say how to fix what it cannot",
        description="Check that this machine can run the course: kernel, privileges, "
        "namespaces, cgroups, overlayfs, veth, the registry, tools and disk. Exit status 0 "
        "when it can (warnings only limit chapters), 1 when a check fails.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--port", type=int, default=None, help="the registry port to check")
    parser.set_defaults(func=_command)
