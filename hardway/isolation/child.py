"""hardway.isolation.child
~~~~~~~~~~~~~~~~~~~~~~~

The launcher child seen from the parent. All the privileged work of a container
happens in a fresh process, ``python -m hardway.isolation.launch``
(:mod:`hardway.isolation.launch`), never in the caller, which may be a Jupyter kernel.
This module is the parent's half of their conversation:

1. the *plan* — an :class:`~hardway.isolation.namespaces.Isolation` and a command (or a
   function to call) as JSON, written once to the spec pipe (:func:`launch_plan`);
2. the *events* the launcher sends back, one JSON line each on the status pipe:
   ``unshared`` (now write its id maps and make its veth pair, the things only a process
   outside the new namespaces may do, then say go on the control pipe), ``pid``,
   ``running``, ``result``, ``error`` (:mod:`hardway.isolation.failures` turns it into
   the caller's exception);
3. the *end*: the launcher runs in a process group of its own, so one ``killpg`` reaches
   every process of the container, and a pidfd of its PID 1 says when they are all gone.

:class:`Child` does all three; :mod:`hardway.isolation.container` builds ``run``,
``start`` and ``call`` on it.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import json
import os
import platform
import pwd
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hardway.errors import ContainerError, ContainerTimeoutError, IsolationError, NetworkError
from hardway.isolation import bridge, hardening, network, seccomp
from hardway.isolation.failures import privilege_error, step_error
from hardway.isolation.namespaces import IdMap, Isolation
from hardway.sys import linux
from hardway.sys.state import child_pythonpath

__all__ = ["LAUNCHER_MODULES", "SETUP_TIMEOUT", "Child", "launch_plan", "write_id_maps"]

#: seconds the child may take from start to running the command
SETUP_TIMEOUT = 15.0

#: ``python -m`` names of the launcher: the first is the one started; the second, its name
#: before the package took its parts' layout (December 2026), is still recognised by
#: ``python -m hardway cleanup`` for one release, as a leftover of an older checkout
LAUNCHER_MODULES = ("hardway.isolation.launch", "hardway.launch")


# -- the plan: what the launcher is told --------------------------------------------------------


def _function_ref(func: Callable[..., Any]) -> dict[str, str]:
    """Name a function of hardway's (the child can import those); send any other —
    a notebook's, a test's — as its source code."""
    func = inspect.unwrap(func)
    module, name = getattr(func, "__module__", "") or "", getattr(func, "__qualname__", "")
    if module.split(".")[0] == "hardway" and "<" not in name:
        with contextlib.suppress(ImportError, AttributeError):
            obj: Any = __import__(module, fromlist=["_"])
            for part in name.split("."):
                obj = getattr(obj, part)
            if obj is func:
                return {"module": module, "name": name}
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError) as exc:
        raise IsolationError(f"cannot send {name or func!r} to the container: {exc}") from None
    return {"source": source, "name": func.__name__}


def _encode_arg(value: Any) -> Any:
    if callable(value) and not isinstance(value, type):
        return {"__function__": _function_ref(value)}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        return [_encode_arg(v) for v in value]
    return value


def _group_of(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return uid


def _hardening_plan(spec: Isolation) -> dict[str, Any]:
    """Chapter 04's settings as the launcher applies them: the five capability sets for
    the user it will be, and the seccomp filter already compiled (hex), so that the
    launcher only installs what the parent decided."""
    uid = spec.run_as[0] if spec.run_as is not None else 0
    sets = None
    if spec.capabilities is not None:
        sets = hardening.capability_sets(spec.capabilities, uid).to_json()
    program = None
    if spec.seccomp is not None:
        program = seccomp.program(spec.seccomp, platform.machine()).hex()
    return {
        "sys": spec.sys,
        "masked_paths": list(spec.masked_paths),
        "readonly_paths": list(spec.readonly_paths),
        "nodev": spec.nodev,
        "capability_sets": sets,
        "seccomp": program,
    }


def launch_plan(
    spec: Isolation, argv: Sequence[str] | None = None, call: tuple | None = None
) -> dict[str, Any]:
    """The JSON the launcher reads: *spec* with *argv* to exec, or ``call``, a
    ``(function, args)`` pair to call instead (see :func:`hardway.isolation.container.call`).

    >>> launch_plan(Isolation({"uts"}, hostname="box"), ["hostname"])["kinds"]
    ['uts']
    """
    if spec.root is not None and not os.path.isdir(spec.root):
        raise IsolationError(f"the root {spec.root} is not a directory")
    if argv is not None and (isinstance(argv, str) or not argv):
        raise IsolationError("argv is a non-empty list of strings, e.g. ['hostname']")
    host_user = spec.host_user
    plan: dict[str, Any] = {
        "mode": "create",
        "parent": os.getpid(),
        "kinds": list(spec.namespaces),
        "flags": linux.namespace_flags(*spec.namespaces),
        "sync": "user" in spec.namespaces or spec.veth,
        "host_user": host_user,
        "host_group": None if host_user is None else _group_of(host_user),
        "root": spec.root,
        "how": spec.how,
        "unmount_old_root": spec.unmount_old_root,
        "proc": spec.proc,
        "dev": spec.dev,
        "tmpfs": list(spec.tmpfs),
        "hostname": spec.hostname,
        "cwd": spec.cwd,
        "env": spec.environment,
        "argv": None if argv is None else [os.fspath(a) for a in argv],
        "cgroup_procs": list(spec.cgroup_procs),
        "capabilities": None if spec.capabilities is None else list(spec.capabilities),
        "no_new_privs": spec.no_new_privs,
        "run_as": None if spec.run_as is None else list(spec.run_as),
        "make_cwd": spec.make_cwd,
        "init": spec.init,
        "call": None,
        **_hardening_plan(spec),
    }
    if call is not None:
        func, args = call
        plan["call"] = {"function": _function_ref(func), "args": [_encode_arg(a) for a in args]}
    return plan


# -- the child: start it, answer it, end it ------------------------------------------------------


class Child:
    """One launcher process seen from the parent: its pipes, events and cleanup.

    :param plan: from :func:`launch_plan`
    :param spec: the isolation the plan was made from (its id maps and veth pair)
    :param stdin: the container's stdin, *stdout* and *stderr* its output, each as
        :class:`subprocess.Popen` takes them (*stderr* a file when started in the
        background: it is read back when the launcher fails)
    """

    def __init__(
        self, plan: dict[str, Any], *, stdin: Any, stdout: Any, stderr: Any, spec: Isolation
    ) -> None:
        self.plan, self.spec = plan, spec
        self._stderr = stderr  # a file when started in the background: read on failure
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.veth: network.Veth | None = None
        self.result: Any = None
        self.running = False
        self._buffer = b""
        spec_r, spec_w = os.pipe()
        self.status, status_w = os.pipe()
        control_r, self.control = os.pipe()
        fds = (spec_r, status_w, control_r)
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", LAUNCHER_MODULES[0], *map(str, fds)],
                pass_fds=fds,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # its own process group: one kill reaches all
                cwd="/",
                env=dict(os.environ, PYTHONPATH=child_pythonpath()),
            )
        except BaseException:
            for fd in (spec_w, self.status, self.control):
                os.close(fd)
            raise
        finally:
            for fd in (spec_r, status_w, control_r):
                os.close(fd)
        try:
            with os.fdopen(spec_w, "wb") as f:
                f.write(json.dumps(plan).encode())
        except BaseException:  # interrupted before any caller holds this child: kill it here
            self.close()
            raise

    # events

    def _event(self, deadline: float) -> dict[str, Any] | None:
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.status], [], [], left)[0]:
                raise ContainerTimeoutError(
                    f"the container was not set up within {SETUP_TIMEOUT:g} s", step="setup"
                )
            chunk = os.read(self.status, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def setup(self, *, until_running: bool) -> None:
        """Answer the child's events until the command runs (or, with *until_running*,
        until a called function starts); raise the child's error as ours."""
        deadline = time.monotonic() + SETUP_TIMEOUT
        while (event := self._event(deadline)) is not None:
            kind = event["event"]
            if kind == "unshared":
                self._prepare(event["pid"])
            elif kind == "pid":
                self.pid = event["pid"]
                with contextlib.suppress(OSError):
                    self.pidfd = os.pidfd_open(self.pid)
            elif kind == "error":
                raise step_error(event, self.plan)
            elif kind == "running":
                self.running = True
                if until_running:
                    return
        if not self.running:
            code = self.popen.wait(5)
            said = self._stderr_text()  # a crash of the launcher itself
            said = ":\n" + "\n".join(said.splitlines()[-5:]) if said else ""
            raise ContainerError(
                f"the launcher exited with status {code} before the command ran{said}",
                step="launch",
            )

    def _stderr_text(self) -> str:
        if self.popen.stderr is not None:
            return self.popen.stderr.read().decode(errors="replace").strip()
        if hasattr(self._stderr, "seek"):
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace").strip()
        return ""

    def communicate(self, input: str | None, timeout: float) -> tuple[str, str]:
        """Feed *input* to the container, wait for its end: its stdout and stderr."""
        try:
            out, err = self.popen.communicate(
                None if input is None else input.encode(), timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise ContainerTimeoutError(
                f"still running after {timeout:g} s: killed", step="timeout"
            ) from None
        return out.decode(errors="replace"), err.decode(errors="replace")

    def finish_call(self) -> Any:
        """After a called function's process has exited: its result or its error."""
        deadline = time.monotonic() + 5
        while (event := self._event(deadline)) is not None:
            if event["event"] == "error":
                raise step_error(event, self.plan)
            if event["event"] == "result":
                self.result = event["value"]
                return self.result
        raise ContainerError("the function ended without a result (killed?)", step="call")

    def _prepare(self, pid: int) -> None:
        """The parent's part: id maps and the veth pair, then let the child go on."""
        spec = self.spec
        if "user" in spec.namespaces:
            outside = os.geteuid() if spec.host_user is None else spec.host_user
            group = os.getegid() if spec.host_user is None else _group_of(spec.host_user)
            write_id_maps(
                pid,
                spec.uid_map or (IdMap(0, outside),),
                spec.gid_map or (IdMap(0, group),),
            )
        veth = None
        if spec.bridge:
            veth = self.veth = bridge.attach(pid)
        elif spec.veth:
            veth = network.allocate()
            network.create(veth, pid)
            self.veth = veth
        os.write(self.control, (json.dumps({"veth": veth and veth.to_json()}) + "\n").encode())

    # cleanup

    def kill(self) -> None:
        """Kill every process of the container and wait for the launcher; idempotent.

        The whole process group goes first, even when the launcher has ended: a
        container without a PID namespace may have left children running in it.
        """
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self.pidfd is not None:  # PID 1 of a PID namespace takes all the others along
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        if self.pidfd is not None:  # PID 1 is gone when its pidfd turns readable
            select.select([self.pidfd], [], [], 5)
        _wait_group_gone(self.popen.pid)

    def close(self) -> None:
        """:meth:`kill`, then remove the veth pair and close every pipe; idempotent."""
        self.kill()
        if self.veth is not None:
            with contextlib.suppress(NetworkError):
                if self.veth.bridge:
                    bridge.detach(self.veth)  # and the bridge, with its last pair
                else:
                    network.remove(self.veth)
            self.veth = None
        for fd in (self.status, self.control, self.pidfd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.status = self.control = -1
        self.pidfd = None
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


def _wait_group_gone(pgid: int, timeout: float = 5.0) -> None:
    """Wait until no process of group *pgid* is left.

    SIGKILL is delivered asynchronously, and the launcher's own exit says nothing about
    the children a container without a PID namespace started in the background: they
    are still dying (then reparented and reaped) for a moment after ``killpg`` returns.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:  # the group is gone and its number reused by another user
            return
        time.sleep(0.005)


def write_id_maps(pid: int, uid_map: Sequence[IdMap], gid_map: Sequence[IdMap]) -> None:
    """Write *pid*'s ``uid_map`` and ``gid_map`` — once each, as the kernel allows.

    Without root, the kernel accepts only one line mapping your own id, and a
    ``gid_map`` only after ``setgroups`` is set to ``deny`` (else dropping a group could
    grant access that a "deny" ACL for that group was meant to refuse).
    """
    proc = Path(f"/proc/{pid}")
    writes = [("uid_map", uid_map), ("gid_map", gid_map)]
    if os.geteuid() != 0:
        writes.insert(0, ("setgroups", "deny"))
    for name, content in writes:
        text = content if isinstance(content, str) else "".join(f"{m}\n" for m in content)
        try:
            (proc / name).write_text(text)
        except OSError as exc:
            message = f"writing {text.strip()!r} to /proc/PID/{name} was refused ({exc.strerror})"
            if exc.errno in (errno.EPERM, errno.EACCES):
                refused = message + ": without root you may map only your own id, once"
                raise privilege_error(refused) from None
            raise ContainerError(message, step=name, errno=exc.errno) from None
