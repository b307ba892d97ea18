"""Rootless cgroups in a real delegated cgroup v2 sub-tree, the end of chapter 03.

Without root, ``Group`` makes its group in the sub-tree systemd delegates to a user
(``user@UID.service`` with ``Delegate=yes``: the directory, its ``cgroup.procs`` and
``cgroup.subtree_control`` belong to the user). tests/test_cgroups.py checks the search on a
fake tree; here a real unprivileged process, placed in the user's ``app.slice`` the way
``systemd-run --user --scope`` places it, makes a group with limits and watches them bite.

It needs a pure v2 machine with such a sub-tree and root to set the process up: the VM of
``make test-vm`` lays one out for uid 1000 (``tools/vm.py``); on a hybrid host it is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hardway.isolation import cgroups

ROOT = Path(__file__).resolve().parent.parent

#: run as root, then as the user: join the scope, drop privileges, limit two children
SCRIPT = r"""
import json, os, subprocess, sys
scope, uid = sys.argv[1], int(sys.argv[2])
with open(os.path.join(scope, "cgroup.procs"), "w") as procs:
    procs.write(str(os.getpid()))
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
from hardway.isolation import cgroups
from hardway.isolation.group import Group
from hardway.isolation.limits import Limits

def child(group, code):
    join = "".join(f"open({p!r}, 'w').write(str(__import__('os').getpid()));"
                   for p in group.procs_files)
    return subprocess.run([sys.executable, "-c", join + code], timeout=120).returncode

report = {"uid": os.geteuid(), "delegated": str(cgroups.require_delegation(cgroups.detect()))}
with Group(Limits(memory="48M", pids=8), label="rootless") as group:
    report["group"] = str(group.directories[0])
    report["hog"] = child(group, "b = bytearray(200 << 20)")
    bomb = ("import os, time\nkids = 0\nfor _ in range(20):\n    try:\n"
            "        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(3); os._exit(0)\n    kids += 1\n"
            "print(kids, file=__import__('sys').stderr)\n")
    report["bomb"] = child(group, bomb)
    stats = group.stats()
report["oom_killed"], report["pids_limited"] = stats.oom_killed, stats.pids_limited
report["left"] = os.path.exists(report["group"])
print(json.dumps(report))
"""


def _delegated() -> tuple[Path, int] | None:
    """A ``user@UID.service`` sub-tree delegated to its user, on a pure v2 machine."""
    mode = cgroups.detect()
    if mode.version != "v2" or mode.v2_path is None:
        return None
    for service in sorted(mode.v2_path.glob("user.slice/user-*.slice/user@*.service")):
        uid = int(service.name.removeprefix("user@").removesuffix(".service"))
        files = (service, service / "cgroup.procs", service / "cgroup.subtree_control")
        if uid != 0 and all(f.stat().st_uid == uid for f in files):
            return service, uid
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: places a process in a user's scope")
def test_a_rootless_group_in_the_delegated_subtree_limits_memory_and_forks() -> None:
    found = _delegated()
    if found is None:
        pytest.skip("no cgroup v2 sub-tree delegated to a user here (pure v2 + systemd only)")
    service, uid = found
    scope = service / "app.slice" / cgroups.group_name("scope")
    scope.mkdir(parents=True)  # as the user's systemd would, for systemd-run --user --scope
    try:
        for path in (scope, *scope.iterdir()):
            os.chown(path, uid, uid)
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(scope), str(uid)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd="/",
            env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": "/"},
        )
    finally:
        scope.rmdir()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["uid"] == uid
    assert report["delegated"] == str(service)
    assert Path(report["group"]).parent == service
    assert report["hog"] == -9 and report["oom_killed"], report  # SIGKILL by the OOM killer
    assert report["pids_limited"], (report, done.stderr)
    assert not report["left"], report
