"""hardway.course.probes
~~~~~~~~~~~~~~~~~~~~~

Why probes run in child processes: to find out whether this machine lets us unshare a
namespace, mount an overlay or create a veth pair, :mod:`hardway.course.doctor` *tries* each
one, and trying changes the process that does it for good. A process cannot leave a
namespace it unshared, and it may be a Jupyter kernel the learner keeps using. So every
probe runs in a fresh ``python -c`` child (:func:`run_probe` → :func:`probe_main`) in a
new session: the child enters its own namespaces, does the one thing, prints a detail
line and exits, and neither the caller nor the host's network or mount table is changed.
A child that hangs is killed with its whole process group after :data:`PROBE_TIMEOUT`,
and the probe is tried once more with a longer limit (:func:`retry_timeout`): on a small
or emulated VM, starting Python alone can take longer than the first limit, and a probe
that ran out of time has found out nothing about the kernel.

The child's side is :func:`probe_main` and the ``_probe_*`` functions; the parent's is
:func:`run_probe`, which returns a :class:`ProbeResult`. Checks take any
:data:`Runner`, so tests can answer for the child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hardway.errors import HardwayError
from hardway.sys import linux
from hardway.sys.state import child_pythonpath

__all__ = [
    "NOBODY",
    "PROBE_TIMEOUT",
    "RETRY_TIMEOUT",
    "TIMEOUT_VARIABLE",
    "ProbeResult",
    "Runner",
    "probe_main",
    "retry_timeout",
    "run_probe",
]

PROBE_TIMEOUT = 4.0  #: seconds a probe child may take before it is killed
#: seconds it may take on its second try, after a timeout: ten probes start at once, and
#: a VM that needs 6 s to start one Python needs far more for ten
RETRY_TIMEOUT = 60.0
#: the environment variable that overrides :data:`RETRY_TIMEOUT` (a very slow machine)
TIMEOUT_VARIABLE = "HARDWAY_PROBE_TIMEOUT"
NOBODY = 65534  #: the uid (and gid) the rootless probe drops to when it starts as root


# -- the child's side -------------------------------------------------------------------


def _enter(flags: int, userns: bool = False) -> None:
    """unshare(*flags*); with *userns*, inside a new user namespace that maps us to root."""
    if not userns:
        linux.unshare(flags)
        return
    uid, gid = os.geteuid(), os.getegid()
    linux.unshare(linux.CLONE_NEWUSER | flags)
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")


def _probe_ns(kind: str, *, userns: bool = False) -> str:
    link = f"/proc/self/ns/{kind}"
    before = os.readlink(link)
    _enter(linux.NAMESPACES[kind], userns and kind != "user")
    if kind == "pid":  # the caller stays put; its next child is PID 1 of the new namespace
        child = os.fork()
        if child == 0:
            os._exit(0 if os.getpid() == 1 else 1)
        _, status = os.waitpid(child, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError("the first child in the new PID namespace is not PID 1")
        return "the first child is PID 1"
    after = os.readlink(link)
    if after == before:
        raise RuntimeError(f"still in {before} after unshare")
    if kind == "uts":
        linux.sethostname("hardway-doctor")
        if linux.gethostname() != "hardway-doctor":
            raise RuntimeError("sethostname had no effect")
    if kind == "mnt":
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    return f"{before} → {after}"


def _probe_rootless(*, as_nobody: bool = False) -> str:
    """A user namespace in which an ordinary user acts as root (sets a hostname)."""
    if as_nobody:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        linux.set_dumpable(True)  # else /proc/self/uid_map stays root's
    _enter(linux.CLONE_NEWUTS, userns=True)
    linux.sethostname("hardway-rootless")
    return f"uid {os.getuid()} inside, hostname {linux.gethostname()}"


def _probe_overlay(workdir: str, *, userns: bool = False) -> str:
    base = Path(workdir)
    lower, upper, work, merged = (base / n for n in ("lower", "upper", "work", "merged"))
    for directory in (lower, upper, work, merged):
        directory.mkdir(parents=True, exist_ok=True)  # exist: a first try that timed out
    (lower / "from-lower").write_text("lower\n")
    _enter(linux.CLONE_NEWNS, userns)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    linux.mount("overlay", merged, "overlay", 0, options)
    try:
        (merged / "from-merged").write_text("merged\n")
        seen = sorted(p.name for p in merged.iterdir())
        if (
            seen != ["from-lower", "from-merged"]
            or (merged / "from-lower").read_text() != "lower\n"
        ):
            raise RuntimeError(f"the merged directory shows {seen}")
    finally:
        linux.umount2(merged, linux.MNT_DETACH)
    if not (upper / "from-merged").is_file() or (lower / "from-merged").exists():
        raise RuntimeError("a write through the overlay did not land in the upper directory")
    return "wrote through the merged directory into upper/"


def _probe_veth(ip: str, *, userns: bool = False) -> str:
    _enter(linux.CLONE_NEWNET, userns)  # a private network: the host never sees the pair
    add = [ip, "link", "add", "hwdoc0", "type", "veth", "peer", "name", "hwdoc1"]
    for argv in (add, [ip, "-o", "link", "show", "hwdoc1"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[1:])}: {done.stderr.strip()}")
    return "veth pair hwdoc0/hwdoc1 created in a new network namespace"


def probe_main(argv: Sequence[str]) -> int:
    """Entry point of a probe child: ``ns KIND | rootless | overlay DIR | veth IP``, plus
    ``--userns`` or ``--as-nobody``. Prints a detail line; exit status 0 means it worked.
    Never call this in the process you care about: it unshares namespaces.
    """
    what, *rest = argv
    flags = {a for a in rest if a.startswith("--")}
    args = [a for a in rest if not a.startswith("--")]
    userns = "--userns" in flags
    probes: dict[str, Callable[[], str]] = {
        "ns": lambda: _probe_ns(args[0], userns=userns),
        "rootless": lambda: _probe_rootless(as_nobody="--as-nobody" in flags),
        "overlay": lambda: _probe_overlay(args[0], userns=userns),
        "veth": lambda: _probe_veth(args[0], userns=userns),
    }
    try:
        print(probes[what]())
    except HardwayError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


# -- the parent's side -----------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """What a probe child reported; ``returncode`` is ``None`` when it timed out."""

    returncode: int | None
    out: str = ""
    err: str = ""
    #: the time limit of each try, in seconds: two when the first one timed out
    limits: tuple[float, ...] = ()

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def timed_out(self) -> bool:
        """The child never answered: nothing is known about what it probed."""
        return self.returncode is None

    @property
    def slow(self) -> bool:
        """It answered, but only on its second try, with the longer limit."""
        return not self.timed_out and len(self.limits) > 1

    @property
    def reason(self) -> str:
        """The child's last line of complaint, for a report.

        >>> ProbeResult(None, limits=(4.0, 60.0)).reason
        'timed out after 4 s, and again after 60 s'
        """
        if self.timed_out:
            if not self.limits:
                return "timed out"
            again = "".join(f", and again after {t:g} s" for t in self.limits[1:])
            return f"timed out after {self.limits[0]:g} s{again}"
        lines = [line for line in self.err.splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"exit status {self.returncode}"


#: how a check starts a probe: :func:`run_probe`, or a test's fake that answers for it
Runner = Callable[[Sequence[str]], ProbeResult]

_PROBE_CODE = (
    "import sys; from hardway.course.probes import probe_main; sys.exit(probe_main(sys.argv[1:]))"
)


def retry_timeout() -> float:
    """The limit of a probe's second try: ``$HARDWAY_PROBE_TIMEOUT`` or :data:`RETRY_TIMEOUT`."""
    try:
        return max(float(os.environ.get(TIMEOUT_VARIABLE, RETRY_TIMEOUT)), 0.001)
    except ValueError:
        return RETRY_TIMEOUT


def run_probe(
    args: Sequence[str], timeout: float | None = None, *, retry: float | None = None
) -> ProbeResult:
    """Run ``probe_main(args)`` in a fresh Python child; kill its whole group on timeout,
    then try once more with the longer limit. The result's ``limits`` say which ran.

    :param timeout: (optional) the first try's limit; default :data:`PROBE_TIMEOUT`
    :param retry: (optional) the second try's limit; default :func:`retry_timeout`
    """
    limits = (PROBE_TIMEOUT if timeout is None else timeout, retry or retry_timeout())
    for tries in (1, 2):
        result = _run_once(args, limits[tries - 1])
        if not result.timed_out:
            break
    return ProbeResult(result.returncode, result.out, result.err, limits[:tries])


def _run_once(args: Sequence[str], timeout: float) -> ProbeResult:
    path = child_pythonpath()
    child = subprocess.Popen(
        [sys.executable, "-c", _PROBE_CODE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=path),
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return ProbeResult(None)
    return ProbeResult(child.returncode, out, err)
