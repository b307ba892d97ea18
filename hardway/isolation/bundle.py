"""hardway.isolation.bundle
~~~~~~~~~~~~~~~~~~~~~~~~

The same container, said the standard way. An OCI *runtime bundle* is a directory with
a ``config.json`` (the runtime spec: process, root, hostname, mounts, namespaces,
cgroup limits) and a root filesystem; any OCI runtime — runc, crun, youki — runs it.
Chapter 04 writes the bundle from the very :class:`~hardway.isolation.runtime.Plan` that
:func:`hardway.isolation.runtime.run` follows and runs it with ``runc run``, so the two runtimes
can be compared output for output.

Everything here but :func:`run_runc` is a pure function of the plan.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hardway.errors import ContainerTimeoutError, MissingToolError
from hardway.isolation import cgroups, hardening, limits, seccomp
from hardway.isolation.container import Completed
from hardway.isolation.runtime import Plan

__all__ = [
    "OCI_VERSION",
    "config_json",
    "delete",
    "process_section",
    "run_config",
    "run_runc",
    "runc_spec",
    "write_bundle",
]

OCI_VERSION = "1.0.2"

#: our namespace kinds in the runtime spec's spelling
_SPEC_NAMES = {
    "pid": "pid",
    "net": "network",
    "ipc": "ipc",
    "uts": "uts",
    "mnt": "mount",
    "cgroup": "cgroup",
    "user": "user",
}


def process_section(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str = "/",
    uid: int = 0,
    gid: int = 0,
    capabilities: Sequence[str] = (),
    no_new_privs: bool = True,
) -> dict[str, Any]:
    """The ``process`` object of ``config.json``: what to run, as whom, with what.

    The user's only supplementary group is its own *gid* (``additionalGids``), as in
    :func:`hardway.isolation.runtime.run`. Capabilities are spelled ``CAP_…`` and listed in the
    bounding, effective and permitted sets alike (what Docker does for root).

    >>> section = process_section(["sh"], {"PATH": "/bin"}, capabilities=["KILL"])
    >>> section["args"], section["env"], section["capabilities"]["bounding"]
    (['sh'], ['PATH=/bin'], ['CAP_KILL'])
    """
    caps = [f"CAP_{name}" for name in capabilities]
    return {
        "terminal": False,
        "user": {"uid": uid, "gid": gid, "additionalGids": [gid]},
        "args": list(argv),
        "env": [f"{key}={value}" for key, value in env.items()],
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": no_new_privs,
    }


def _resources(plan: Plan) -> dict[str, Any]:
    wanted = plan.limits
    resources: dict[str, Any] = {}
    if wanted.memory is not None:
        resources["memory"] = {"limit": wanted.memory, "swap": wanted.memory}
    if wanted.cpus is not None:
        quota, period = limits.cpu_quota(wanted.cpus, wanted.period)
        resources["cpu"] = {"quota": quota, "period": period}
    if wanted.pids is not None:
        resources["pids"] = {"limit": wanted.pids}
    return resources


def config_json(plan: Plan, cgroup: str) -> dict[str, Any]:
    """The whole ``config.json`` for *plan*, its cgroup at *cgroup* (``/hardway-…``).

    >>> from hardway.isolation.runtime import plan as make_plan
    >>> doc = config_json(make_plan("/", ["true"], hostname="box", pids=8), "/hardway-x")
    >>> doc["hostname"], doc["linux"]["resources"], doc["root"]["path"]
    ('box', {'pids': {'limit': 8}}, '/')
    """
    spec = plan.isolation
    uid, gid = spec.run_as or (0, 0)
    env = spec.environment
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        *(_mount(*m) for m in _RUNC_MOUNTS if m[0] != "/sys" or spec.sys),
    ]
    process = process_section(
        plan.argv, env, spec.cwd, uid, gid, spec.capabilities or (), spec.no_new_privs
    )
    if spec.capabilities is not None:  # all five sets, as the launcher sets them
        process["capabilities"] = hardening.capability_sets(spec.capabilities, uid).oci()
    section: dict[str, Any] = {
        "namespaces": [{"type": _SPEC_NAMES[kind]} for kind in spec.namespaces],
        "resources": _resources(plan),
        "cgroupsPath": cgroup,
    }
    if spec.masked_paths:
        section["maskedPaths"] = list(spec.masked_paths)
    if spec.readonly_paths:
        section["readonlyPaths"] = list(spec.readonly_paths)
    if spec.seccomp is not None:
        section["seccomp"] = seccomp.oci_section(spec.seccomp)
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": os.fspath(spec.root), "readonly": False},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": section,
    }


#: the rest of ``runc spec``'s mounts: destination, type, options
_RUNC_MOUNTS = (
    ("/dev/pts", "devpts", "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5"),
    ("/dev/shm", "tmpfs", "nosuid,noexec,nodev,mode=1777,size=65536k"),
    ("/dev/mqueue", "mqueue", "nosuid,noexec,nodev"),
    ("/sys", "sysfs", "nosuid,noexec,nodev,ro"),
)


def _mount(destination: str, fstype: str, options: str) -> dict[str, Any]:
    return {
        "destination": destination,
        "type": fstype,
        "source": fstype if fstype != "tmpfs" else "shm",
        "options": options.split(","),
    }


def write_bundle(directory: str | os.PathLike[str], plan: Plan, cgroup: str) -> Path:
    """Write ``config.json`` for *plan* into *directory* (made if missing); its path."""
    bundle = Path(directory)
    bundle.mkdir(parents=True, exist_ok=True)
    path = bundle / "config.json"
    path.write_text(json.dumps(config_json(plan, cgroup), indent=2) + "\n")
    return path


def _runc() -> str:
    runc = shutil.which("runc")
    if runc is None:
        raise MissingToolError("runc is not installed", fix="apt-get install runc")
    return runc


def runc_spec() -> dict[str, Any]:
    """The ``config.json`` that ``runc spec`` writes: runc's own suggestion for a new
    container (chapter 04 compares its hardening with ours)."""
    with tempfile.TemporaryDirectory(prefix="hardway-runc-spec-") as directory:
        subprocess.run([_runc(), "spec"], cwd=directory, check=True, capture_output=True)
        return json.loads((Path(directory) / "config.json").read_text())


def run_runc(plan: Plan, directory: str | os.PathLike[str], *, timeout: float = 60.0) -> Completed:
    """Write a bundle for *plan* in *directory*, ``runc run`` it, wait, delete it.

    The container and its cgroup are named ``hardway-runc-…`` (``python -m hardway
    cleanup`` finds them); ``runc delete --force`` runs whatever happens.
    """
    return run_config(config_json(plan, ""), directory, timeout=timeout)


def run_config(
    document: Mapping[str, Any],
    directory: str | os.PathLike[str],
    *,
    name: str | None = None,
    timeout: float = 60.0,
) -> Completed:
    """``runc run`` a whole ``config.json`` *document* as container *name* (a fresh
    ``hardway-runc-…`` if none), in a cgroup of the same name, and delete it whatever
    happens. Lab 04 runs a learner's own document with it; a caller that may be killed
    before the ``finally`` (a check's time limit) picks *name* and calls :func:`delete`.
    """
    runc = _runc()
    name = name or cgroups.group_name("runc")
    linux = {**document.get("linux", {}), "cgroupsPath": f"/{name}"}
    bundle = Path(directory)
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "config.json").write_text(json.dumps({**document, "linux": linux}, indent=2) + "\n")
    try:
        done = subprocess.run(
            [runc, "run", "--bundle", os.fspath(directory), name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise ContainerTimeoutError(f"runc: still running after {timeout:g} s") from None
    finally:
        delete(name)
    argv = document.get("process", {}).get("args", [])
    return Completed(tuple(argv), done.returncode, done.stdout, done.stderr)


def delete(name: str) -> None:
    """``runc delete --force`` container *name*: kill what runs in it, remove its state
    and cgroup (nothing happens if there is no such container)."""
    subprocess.run([_runc(), "delete", "--force", name], capture_output=True, check=False)
