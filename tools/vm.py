"""Run the cgroup and runtime tests and chapters 02-04 on a real pure cgroup v2 kernel.

    .venv/bin/python tools/vm.py run [--skip-if-unable] [--command CMD] [-- PYTEST_ARGS…]
    .venv/bin/python tools/vm.py build      make (or find) the cached guest image
    .venv/bin/python tools/vm.py shell      the same guest with a shell on the console
    .venv/bin/python tools/vm.py check      can this machine run it? (and why not)
    .venv/bin/python tools/vm.py clean      remove the cached images

This machine is cgroup *hybrid*; most learners' machines are pure v2. ``make test-vm``
(``run``) boots Debian's cloud kernel under ``qemu-system-x86_64`` with software
emulation — KVM is there but hangs under nested virtualisation — on a guest built by
``tools/vm_image.py`` and cached in ``.state/vm/``. The checkout's ``hardway/``,
``tests/``, ``notebooks/``, ``solutions/`` and ``conftest.py`` go onto a second, fresh
disk on every run, with the init that runs this time (stage 2, ``stage2``):

1. mount ``cgroup2`` alone on ``/sys/fs/cgroup`` (``nsdelegate,memory_recursiveprot``,
   as systemd mounts it), load ``overlay``, ``veth`` and ``bridge``, bring up ``lo``;
2. lay the tree out as systemd does for a learner who typed ``sudo make lab``: the
   controllers enabled down to ``user.slice/user-1000.slice/session-1.scope``, PID 1 in
   ``init.scope``, and the tests in the session scope (never in the root group); and
   uid 1000's ``user@1000.service`` delegated to it (``Delegate=yes``) with an empty
   ``app.slice``, for the rootless group of tests/test_delegation.py;
3. run ``SUBSET`` under pytest as root, with the Makefile's nbval flags (``NBVAL_ARGS``);
4. print ``HARDWAY-VM-STATUS <nonce> <exit status>`` on the serial console and power off.

The host reads the console, echoes it (``.state/vm/last-run.log`` keeps it) and exits with
the guest's status; no marker with this run's nonce — a crash, a hang past ``--timeout``
— is a failure. The guest has no network but its own loopback (``-nic none``), no
registry and no browser, so nothing that needs those is in the subset.

Not covered, because this init is not systemd: systemd itself — its user manager
making the delegated sub-tree and scopes in it (``systemd-run --user --scope``; the test
makes its scope by hand, as root), runc's systemd cgroup driver, and whatever systemd
changes in the tree while the tests run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import vm_image
from vm_image import BuildError, Image

ROOT = vm_image.ROOT

#: what runs in the guest: every test that creates real cgroups, the namespace tests that
#: read or enter the cgroup tree, chapters 02-04 and their solved labs. Timing tests with
#: tight bounds stay out: test_a_timeout_kills_the_whole_container allows 5 s for a run
#: that takes 4.5-6 s under emulation, whatever the cgroup version.
SUBSET = [
    "tests/test_cgroups.py",
    "tests/test_runtime.py",
    "tests/test_delegation.py",
    "tests/test_lab03_checks.py",  # the v2 side of lab 03's wrong answers (v1 names on v2, …)
    "tests/test_lab04_checks.py::test_the_solution_earns_every_point",
    "tests/test_namespaces.py::test_cgroup_namespace_makes_the_current_group_the_root",
    "tests/test_namespaces.py::test_pid_one_and_its_own_proc",
    "tests/test_namespaces.py::test_exec_enters_every_namespace_and_the_root",
    "tests/test_namespaces.py::test_inode_numbers_tell_which_namespaces_are_shared",
    "tests/test_namespaces.py::test_the_rootless_path_as_a_real_unprivileged_user",
    "notebooks/02-namespaces.ipynb",
    "notebooks/03-cgroups.ipynb",
    "notebooks/04-runtime.ipynb",
    "solutions/02-namespaces.ipynb",
    "solutions/03-cgroups.ipynb",
    "solutions/04-runtime.ipynb",
]

#: tests that fail on a real pure v2 kernel for a known reason (node id -> diagnosis);
#: marked xfail(strict=True) in the guest only, so a fix turns them into failures to remove
EXPECTED_FAILURES: dict[str, str] = {}

#: the Makefile's nbval flags, with a longer cell timeout: emulation is ~10-40x slower
NBVAL_ARGS = [
    "--nbval-lax",
    "--nbval-current-env",
    "--nbval-cell-timeout=900",
    "--nbval-sanitize-with",
    "tests/nbval-sanitize.cfg",
]
#: what goes onto the run disk, fresh from the checkout every time
CHECKOUT = ["hardway", "tests", "notebooks", "solutions", "conftest.py", "pyproject.toml"]
MEMORY = "3G"
CPUS = 2
TIMEOUT = 25 * 60  # seconds; the subset takes 3-7 minutes (docs/instructors.md)
MARKER = "HARDWAY-VM-STATUS"
CONTROLLERS = "+cpuset +cpu +io +memory +pids"  # what systemd enables for its slices
SESSION = "user.slice/user-1000.slice/session-1.scope"
DELEGATED = "user.slice/user-1000.slice/user@1000.service"
#: the guest writes its controllers and boot time on lines that start with this
SAY = "hardway-vm:"


class VmError(RuntimeError):
    """The VM could not run the tests, or never said how they ended."""


# -- can this machine run it? --------------------------------------------------------------


def unable(img: Image | None = None) -> str | None:
    """Why this machine cannot run the VM, or ``None`` when it can."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"needs Linux on x86_64 (this is {sys.platform} on {platform.machine()})"
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (as root: tools/install-debs.sh --vm)"
    if shutil.which("mkfs.ext4") is None:
        return "mkfs.ext4 is not installed (Debian package e2fsprogs)"
    img = img or vm_image.image()
    if not img.exists():
        if os.geteuid() != 0:
            return "building the guest image needs root (debootstrap, chroot)"
        if shutil.which("debootstrap") is None:
            return "debootstrap is not installed (as root: tools/install-debs.sh --vm)"
    return None


# -- the run disk --------------------------------------------------------------------------


def stage2(nonce: str, command: list[str], *, interactive: bool = False) -> str:
    """The init that runs this time: a pure v2 machine laid out like systemd's, then *command*.

    >>> init = stage2("ab12", ["true"])
    >>> "mount -t cgroup2" in init and f"{MARKER} ab12 $status" in init
    True
    """
    venv = vm_image.VENV
    if interactive:  # a login shell that owns the console (job control, Ctrl-C)
        command = ["setsid", "-c", "/bin/bash", "-l"]
    then = (
        f"sh -c 'echo $$ > /sys/fs/cgroup/{SESSION}/cgroup.procs && exec \"$@\"' "
        f"session {shlex.join(command)}"
        + (" </dev/ttyS0 >/dev/ttyS0 2>&1" if interactive else "")
        + "; status=$?"
    )
    modules = " ".join(vm_image.MODULES)
    return f"""#!/bin/sh
# Stage 2 of the VM's init, written by tools/vm.py for one run: a pure cgroup v2 machine
# laid out as systemd lays it out, the command in a login session's scope, its status.
export PATH={venv}/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb
export PYTHONPATH={vm_image.SOURCE}/.vm
mount -t sysfs sysfs /sys
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
hostname hardway-vm
for module in {modules}; do modprobe "$module" || echo "{SAY} modprobe $module failed"; done
ip link set lo up
cd /sys/fs/cgroup
echo "{CONTROLLERS}" > cgroup.subtree_control
mkdir -p init.scope {SESSION}
echo "{CONTROLLERS}" > user.slice/cgroup.subtree_control
echo "{CONTROLLERS}" > {SESSION.rsplit("/", 1)[0]}/cgroup.subtree_control
echo $$ > init.scope/cgroup.procs
# uid 1000's own systemd (user@1000.service, Delegate=yes): a sub-tree that is theirs
mkdir -p {DELEGATED}/app.slice
chown 1000:1000 {DELEGATED} {DELEGATED}/cgroup.procs {DELEGATED}/cgroup.subtree_control
chown 1000:1000 {DELEGATED}/cgroup.threads
chown -R 1000:1000 {DELEGATED}/app.slice
echo "{SAY} cgroup2 controllers: $(cat cgroup.controllers)"
echo "{SAY} booted in $(cut -d' ' -f1 /proc/uptime) s"
cd {vm_image.SOURCE}
{then}
echo "{MARKER} {nonce} $status"
sync
echo o > /proc/sysrq-trigger
sleep 60
"""


#: a pytest plugin on the run disk: EXPECTED_FAILURES become strict xfails, in the guest only
PLUGIN = '''"""EXPECTED_FAILURES of tools/vm.py: strict xfails, in the VM only."""
import pytest

EXPECTED = {expected!r}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.nodeid in EXPECTED:
            item.add_marker(pytest.mark.xfail(reason=EXPECTED[item.nodeid], strict=True))
'''


def pytest_command(extra: list[str]) -> list[str]:
    """The guest's command: pytest over ``SUBSET`` (or *extra*, when it names tests)."""
    names_tests = any(not a.startswith("-") for a in extra)
    return [
        *("python", "-m", "pytest", "-p", "no:cacheprovider", "-p", "vm_expected"),
        *("-ra", "--durations=15", *NBVAL_ARGS, *extra),
        *([] if names_tests else SUBSET),
    ]


def make_run_disk(
    work: Path, nonce: str, command: list[str], *, python: str, interactive: bool = False
) -> Path:
    """An ext4 image with the checkout's code and tests and this run's init, in *work*."""
    tree = work / "run"
    tree.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.pyc")
    for name in CHECKOUT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=ignore)
        else:
            shutil.copy2(source, tree / name)
    if python == f"{sys.version_info[0]}.{sys.version_info[1]}":
        # bytecode made here, not under emulation (seconds saved per Python started)
        subprocess.run(
            [
                *(sys.executable, "-m", "compileall", "-q", "-j0"),
                *("--invalidation-mode", "unchecked-hash", str(tree / "hardway")),
            ],
            check=True,
        )
    own = tree / ".vm"
    own.mkdir()
    init = own / "init"
    init.write_text(stage2(nonce, command, interactive=interactive))
    init.chmod(0o755)
    (own / "vm_expected.py").write_text(PLUGIN.format(expected=EXPECTED_FAILURES))
    disk = work / "run.ext4"
    used = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    size = (used + (256 << 20)) >> 20
    done = subprocess.run(
        [
            *("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-L", "hardway-run"),
            *("-d", str(tree), str(disk), f"{size}M"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise VmError(f"mkfs.ext4 -d for the run disk failed: {done.stderr.strip()}")
    shutil.rmtree(tree)
    return disk


# -- qemu ----------------------------------------------------------------------------------


def qemu_argv(img: Image, run_disk: Path, *, interactive: bool = False) -> list[str]:
    """The qemu command line: software emulation, two NVMe namespaces, no network."""
    kernel_args = (
        f"console=ttyS0 root={vm_image.ROOT_DEVICE} rootfstype=ext4 rw "
        f"init={vm_image.INIT} panic=-1 quiet loglevel=3"  # no OOM-kill reports in pytest's lines
    )
    # interactive: the serial console and qemu's monitor share the terminal (Ctrl-A X quits)
    console = ["-nographic"] if interactive else ["-display", "none", "-monitor", "none"]
    console += [] if interactive else ["-serial", "stdio"]
    return [
        "qemu-system-x86_64",
        # TCG, never -enable-kvm: /dev/kvm exists here but a nested guest hangs at boot
        *("-accel", "tcg", "-cpu", "max", "-smp", str(CPUS), "-m", MEMORY),
        *("-nic", "none", "-no-reboot", *console),
        *("-kernel", str(img.kernel), "-append", kernel_args),
        # the cached image is never written: the guest's changes go to a throw-away overlay
        *("-drive", f"file={img.disk},if=none,id=root,format=raw,snapshot=on"),
        *("-drive", f"file={run_disk},if=none,id=run,format=raw"),
        *("-device", "nvme,id=nvme0,serial=hardway"),
        *("-device", "nvme-ns,drive=root,bus=nvme0,nsid=1"),
        *("-device", "nvme-ns,drive=run,bus=nvme0,nsid=2"),
    ]


_ESCAPES = re.compile(rb"\x1b(\[[0-9;?]*[A-Za-z]|c)|\r")


def parse_status(console: str, nonce: str) -> int:
    """The guest's exit status from its console output; :class:`VmError` without one.

    Only a whole line ``HARDWAY-VM-STATUS <nonce> <n>`` with this run's nonce counts, so
    neither a test that prints a marker nor a console cut off mid-line passes for one.

    >>> parse_status("x\\nHARDWAY-VM-STATUS ab12 0\\n", "ab12")
    0
    """
    found = re.findall(rf"^{MARKER} {re.escape(nonce)} (\d+)$", console, re.MULTILINE)
    if len(found) != 1:
        what = "no exit status" if not found else f"{len(found)} exit statuses"
        raise VmError(f"the guest printed {what} (no line '{MARKER} {nonce} N')")
    return int(found[0])


def boot(img: Image, run_disk: Path, *, timeout: float, log: Path, echo=sys.stdout) -> str:
    """Boot, echo the console (without escapes) and keep it in *log*; return the console text.

    qemu is killed after *timeout* seconds; the text up to then is returned all the same.
    """
    qemu = subprocess.Popen(
        qemu_argv(img, run_disk),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines = []
    deadline = time.monotonic() + timeout
    killer = _Deadline(qemu, deadline)
    try:
        with log.open("w") as keep:
            for raw in qemu.stdout:
                line = _ESCAPES.sub(b"", raw).decode(errors="replace")
                lines.append(line)
                keep.write(line)
                echo.write(line)
                echo.flush()
        qemu.wait()
    finally:
        killer.cancel()
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
    if killer.fired:
        lines.append(f"\n(tools/vm.py: qemu killed after {timeout:.0f} s)\n")
    return "".join(lines)


class _Deadline:
    """Kill a process at a deadline, from a timer thread."""

    def __init__(self, process: subprocess.Popen, deadline: float) -> None:
        self.fired = False
        self._process = process
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        self._process.kill()

    def cancel(self) -> None:
        self._timer.cancel()


# -- commands ------------------------------------------------------------------------------


def run(command: list[str] | None, extra: list[str], *, timeout: float, echo=sys.stdout) -> int:
    """Build (or find) the image, boot it with this checkout, return the guest's status."""
    started = time.monotonic()
    img = vm_image.build(log=lambda line: print(line, file=echo, flush=True))
    built = time.monotonic()
    nonce = secrets.token_hex(8)
    argv = command if command is not None else pytest_command(extra)
    cache = img.directory.parent
    with tempfile.TemporaryDirectory(prefix="run-", dir=cache) as work:
        disk = make_run_disk(Path(work), nonce, argv, python=img.manifest["python"])
        print(f"vm: booting {img.manifest['kernel']} (pure cgroup v2) to run:", file=echo)
        print(f"vm:   {shlex.join(argv)}", file=echo, flush=True)
        booted = time.monotonic()
        console = boot(img, disk, timeout=timeout, log=cache / "last-run.log", echo=echo)
    done = time.monotonic()
    status = parse_status(console, nonce)
    print(
        f"vm: guest exit status {status}; image {built - started:.0f} s, "
        f"run {done - booted:.0f} s (boot and tests), total {done - started:.0f} s",
        file=echo,
        flush=True,
    )
    return status


def shell() -> int:
    """Boot the guest with this checkout and give the console to a shell (Ctrl-A X quits)."""
    img = vm_image.build()
    with tempfile.TemporaryDirectory(prefix="shell-", dir=img.directory.parent) as work:
        disk = make_run_disk(
            Path(work), "shell", [], python=img.manifest["python"], interactive=True
        )
        return subprocess.run(qemu_argv(img, disk, interactive=True), check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    run_parser = sub.add_parser("run", help="run the subset in the guest (make test-vm)")
    run_parser.add_argument(
        "--skip-if-unable",
        action="store_true",
        help="print why and exit 0 when this machine cannot run the VM (make test)",
    )
    run_parser.add_argument("--command", help="run this shell command instead of the tests")
    run_parser.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds")
    run_parser.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments")
    sub.add_parser("build", help="build the guest image unless it is cached")
    sub.add_parser("shell", help="boot the guest with a shell on the console")
    sub.add_parser("check", help="say whether this machine can run the VM")
    sub.add_parser("clean", help="remove the cached images (.state/vm)")
    args = parser.parse_args(argv)

    if args.verb == "clean":
        shutil.rmtree(vm_image.cache_dir(), ignore_errors=True)
        return 0
    reason = unable()
    if args.verb == "check":
        print(f"vm: cannot run here: {reason}" if reason else "vm: this machine can run it")
        return 1 if reason else 0
    if reason:
        if args.verb == "run" and args.skip_if_unable:
            print(f"test-vm: SKIPPED: {reason}")
            return 0
        print(f"vm: cannot run here: {reason}", file=sys.stderr)
        return 2
    try:
        if args.verb == "build":
            print(vm_image.build().directory)
            return 0
        if args.verb == "shell":
            return shell()
        command = ["sh", "-c", args.command] if args.command else None
        return run(command, args.pytest_args, timeout=args.timeout)
    except (BuildError, VmError) as exc:
        print(f"vm: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
