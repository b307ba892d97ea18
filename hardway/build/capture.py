"""hardway.build.capture
~~~~~~~~~~~~~~~~~~~~~~

One filesystem step of a Dockerfile build — ``RUN``, ``COPY``/``ADD`` or ``WORKDIR`` —
done on top of the image so far, and its changes captured as a layer.

The step runs on an overlayfs mount whose lower directory is the image's unpacked root
and whose upper directory starts empty, so afterwards the upper directory holds exactly
the step's changes (:func:`hardway.image.layers.overlay_entries`). ``RUN`` executes in the
chapter 04 runtime (every namespace, no network); ``COPY`` and ``WORKDIR`` write through
:mod:`hardway.build.inroot`, inside the root. Everything privileged happens in a child
(:func:`hardway.isolation.container.call`) with its own mount namespace, never in this
process, which may be a Jupyter kernel: the mount vanishes with the child, also when it
is killed. Without root, the ``snapshot`` method works on a copy of the root instead and
compares it afterwards (:func:`hardway.image.layers.diff_entries`) — slower, no mount.

A step is described by a plain dict (an *action*: :func:`run_action`,
:func:`mkdir_action`, :func:`copy_action`), since it travels to the child as JSON; the
child's answer comes back in ``action["result"]``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hardway.build import inroot
from hardway.build.copyplan import CopyItem
from hardway.image.config import ContainerConfig
from hardway.image.entries import Entry

__all__ = [
    "METHODS",
    "RUN_TIMEOUT",
    "changes",
    "copy_action",
    "default_method",
    "mkdir_action",
    "run_action",
]

#: how a step's changes are captured: an overlayfs upper directory, or a snapshot diff
METHODS = ("overlay", "snapshot")
#: the seconds one RUN may take before it is killed
RUN_TIMEOUT = 600.0


def default_method() -> str:
    """overlayfs as root; without root, a snapshot copy and a diff (no mount needed)."""
    return "overlay" if os.geteuid() == 0 else "snapshot"


def run_action(argv: Sequence[str], config: ContainerConfig, env: Mapping[str, str]) -> dict:
    """``RUN argv`` with the image's ``Env``, ``WorkingDir`` and ``User``, plus the build
    arguments *env* (those ``ENV`` does not set)."""
    settings = {"Env": list(config.env), "WorkingDir": config.working_dir, "User": config.user}
    return {"kind": "run", "argv": list(argv), "config": settings, "env": dict(env),
            "timeout": RUN_TIMEOUT}  # fmt: skip


def mkdir_action(path: str) -> dict:
    """``WORKDIR path``: make the directory; the result says whether it was made."""
    return {"kind": "mkdir", "path": path}


def copy_action(items: Sequence[CopyItem], owner: Sequence[int], chmod: str | None) -> dict:
    """``COPY`` *items*, owned by *owner* (uid, gid), with mode *chmod* if given."""
    return {"kind": "copy", "items": [vars(i) for i in items], "owner": list(owner),
            "chmod": chmod}  # fmt: skip


def changes(
    lower: Path, work: Path, action: dict, timeout: float, method: str = "overlay"
) -> Iterator[Entry]:
    """Do *action* on top of *lower*; return the entries of its changes (a layer).

    *work* is an empty scratch directory on the same filesystem as *lower*; the
    child's answer is left in ``action["result"]``.
    """
    from hardway.image.diff import diff_entries
    from hardway.image.overlay import overlay_entries
    from hardway.isolation import container, namespaces

    if method == "snapshot":
        copy = work / "snapshot"
        subprocess.run(["cp", "-a", f"{lower}/.", str(copy)], check=True, capture_output=True)
        result = container.call(
            namespaces.Isolation(), _act, str(copy), action, timeout=timeout + 30
        )
        action["result"] = result
        return diff_entries(lower, copy, keep_owners=True)
    upper, scratch, merged = (work / n for n in ("upper", "work", "merged"))
    for directory in (upper, scratch, merged):
        directory.mkdir(parents=True)
    spec = namespaces.Isolation({"mnt"})
    args = (str(lower), str(upper), str(scratch), str(merged), action)
    action["result"] = container.call(spec, _in_overlay, *args, timeout=timeout + 30)
    return overlay_entries(upper)


def _overlay_options(lower: str, upper: str, work: str) -> str:
    # redirect_dir and metacopy would point into lower layers: an OCI layer cannot say that
    return f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off"


def _in_overlay(lower: str, upper: str, work: str, merged: str, action: dict) -> dict:
    """In a child with its own mount namespace: mount the overlay, do *action* on it.

    The mount vanishes with the child's namespace, also when it is killed.
    """
    from hardway.sys import linux

    linux.mount("overlay", merged, "overlay", 0, _overlay_options(lower, upper, work))
    return _act(merged, action)


def _act(root: str, action: dict) -> dict[str, Any]:
    """Do one step's filesystem work on *root* (a merged overlay or a snapshot copy)."""
    from hardway.isolation import container, runtime

    kind = action["kind"]
    if kind == "run":
        plan = runtime.plan(root, action["argv"], config=action["config"], env=action["env"])
        done = container.run(plan.isolation, plan.argv, timeout=action["timeout"])
        return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    if kind == "mkdir":
        return {"created": inroot.make_workdir(root, action["path"])}
    owner = (action["owner"][0], action["owner"][1])
    for item in action["items"]:
        inroot.copy_in(root, item, owner, action.get("chmod"))
    return {}
