"""PID 1 and an init (chapter 04, ``run --init``): without one, orphans stay zombies and a
signal PID 1 has no handler for is dropped; with one, both are taken care of.

Each container here is removed when its test ends (the session-wide leftover check backs
this up).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hardway.errors import ContainerTimeoutError, IsolationError
from hardway.isolation import runtime
from hardway.isolation.namespaces import Isolation

ROOT = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: cgroups")

#: three orphans that end while PID 1 is `sleep`, then a count of the zombies
ZOMBIES = (
    "for i in 1 2 3; do (sleep 0.2 &); done; "
    "(sleep 0.6; grep -l 'State:.*Z' /proc/[0-9]*/status | wc -l) & exec sleep 1"
)


def test_an_init_needs_a_pid_namespace() -> None:
    with pytest.raises(IsolationError, match="an init needs a pid namespace"):
        Isolation({"mnt"}, init=True)


@needs_root
@pytest.mark.parametrize(("init", "zombies"), [(False, "3"), (True, "0")])
def test_orphans_stay_zombies_without_an_init(
    busybox_rootfs: Path, init: bool, zombies: str
) -> None:
    done = runtime.run(busybox_rootfs, ["sh", "-c", ZOMBIES], init=init)
    assert (done.returncode, done.stdout.strip()) == (0, zombies), done


@needs_root
def test_the_command_is_pid_2_and_its_status_is_passed_on(busybox_rootfs: Path) -> None:
    done = runtime.run(busybox_rootfs, ["sh", "-c", "echo $$; exit 7"], init=True)
    assert (done.returncode, done.stdout) == (7, "2\n")


@needs_root
def test_a_signal_pid_1_has_no_handler_for_is_dropped(busybox_rootfs: Path) -> None:
    with runtime.start(busybox_rootfs, ["sleep", "30"]) as running:
        box = running.container
        os.kill(box.pid, signal.SIGTERM)  # from the host: ignored, as Ctrl-C would be
        with pytest.raises(ContainerTimeoutError):
            box.wait(1)
        assert box.running


@needs_root
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_init_passes_signals_on(busybox_rootfs: Path, signum: int, status: int) -> None:
    with runtime.start(busybox_rootfs, ["sleep", "30"], init=True) as running:
        os.kill(running.container.pid, signum)
        assert running.container.wait(10) == status


@needs_root
def test_cli_run_init(busybox_rootfs: Path) -> None:
    argv = ["run", "--init", str(busybox_rootfs), "--", "sh", "-c", "echo $$; exit 4"]
    done = subprocess.run(
        [sys.executable, "-m", "hardway", *argv], capture_output=True, text=True, cwd=ROOT,
        timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (4, "2\n"), done.stderr
