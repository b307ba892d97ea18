"""hardway.isolation.container
~~~~~~~~~~~~~~~~~~~~~~~~~~~

A container is a process started with an
:class:`~hardway.isolation.namespaces.Isolation`. There are three ways to start one,
and they differ only in what the caller waits for:

* :func:`run` starts a command, waits for it and returns a :class:`Completed` (its
  exit status, stdout and stderr), like ``subprocess.run``;
* :func:`start` returns at once, while the command runs, a :class:`Container` to look
  at (its namespaces, its output so far), ``exec`` into (``setns``, like ``nsenter``)
  and stop;
* :func:`call` runs a Python function inside and returns its result.

All the privileged work happens in a launcher child (:mod:`hardway.isolation.child`
starts it, :mod:`hardway.isolation.launch` is its code), never in the caller, which
may be a Jupyter kernel. Whatever a container creates — processes, mounts, the veth
pair — is gone when :func:`run` returns or the ``with`` block of :func:`start` ends,
also after an error or a KeyboardInterrupt.

>>> Completed(("echo", "hi"), 0, "hi\\n", "")
$ echo hi
hi
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from hardway.errors import ContainerError, ContainerTimeoutError
from hardway.isolation.child import Child, launch_plan
from hardway.isolation.namespaces import Isolation, ns_inodes

__all__ = ["DEFAULT_TIMEOUT", "Completed", "Container", "call", "run", "start"]

#: seconds a command may run before :func:`run` (or :func:`call`) kills the container
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True, repr=False)
class Completed:
    """A finished command: its argv, exit status and output. The repr reads like a
    terminal: the command, what it printed (stdout, then stderr), a non-zero status."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> Completed:
        """Return self, or raise :class:`ContainerError` for a non-zero exit status."""
        if not self.ok:
            raise ContainerError(
                f"{shlex.join(self.argv)} exited with status {self.returncode}: "
                f"{self.stderr.strip() or self.stdout.strip()}",
                step="exit",
            )
        return self

    def __repr__(self) -> str:
        lines = [f"$ {shlex.join(self.argv)}"]
        lines += [text.rstrip("\n") for text in (self.stdout, self.stderr) if text]
        if self.returncode:
            lines.append(f"[exit status {self.returncode}]")
        return "\n".join(lines)

    __str__ = __repr__


# -- run: start, wait, clean up ------------------------------------------------------------------


def run(
    spec: Isolation,
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    input: str | None = None,
) -> Completed:
    """Run *argv* isolated as *spec* says, wait for it, return what it did.

    :param timeout: (optional) seconds before the whole container is killed
        (:class:`~hardway.errors.ContainerTimeoutError`)
    :param input: (optional) text for its stdin; default: no stdin at all
    :raises PrivilegeError: a step needs a privilege this process lacks
    :raises ContainerError: a step failed (``.step`` says which)
    """
    return _run_plan(launch_plan(spec, argv), spec, input=input, timeout=timeout)


def _run_plan(
    plan: dict[str, Any], spec: Isolation, *, input: str | None, timeout: float
) -> Completed:
    """Start a launcher for *plan*, wait for its command, and always clean it up."""
    stdin = subprocess.DEVNULL if input is None else subprocess.PIPE
    child = Child(plan, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, spec=spec)
    try:
        child.setup(until_running=False)
        out, err = child.communicate(input, timeout)
        return Completed(tuple(plan["argv"]), child.popen.returncode, out, err)
    finally:
        child.close()


def call(
    spec: Isolation, func: Callable[..., Any], *args: Any, timeout: float = DEFAULT_TIMEOUT
) -> Any:
    """Call ``func(*args)`` inside a container isolated as *spec*; return its result.

    *func* is a module-level function of :mod:`hardway`, or any other function (one
    defined in a notebook, say), which is sent as source code: it finds ``os``,
    ``errno``, ``Path`` and ``linux`` (:mod:`hardway.sys.linux`) imported, and nothing else
    of where it was defined. Arguments and the result travel as JSON; functions among
    the arguments are sent the same way.
    """
    plan = launch_plan(spec, None, (func, args))
    child = Child(
        plan, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, spec=spec
    )
    try:
        child.setup(until_running=True)
        child.communicate(None, timeout)
        return child.finish_call()
    finally:
        child.close()


# -- start: a container that keeps running ---------------------------------------------------


class Container:
    """A running container from :func:`start`. Use it in a ``with`` block: whatever
    happens in the block, the container's processes and its veth pair are gone at
    its end.

    ``pid`` is its first process as the host sees it (PID 1 inside when it has a
    PID namespace); ``veth`` its pair, if any.
    """

    def __init__(self, child: Child, argv: Sequence[str], logs: tuple[IO[bytes], IO[bytes]]):
        self._child, self._logs = child, logs
        self.spec: Isolation = child.spec
        self.argv = tuple(argv)
        self.pid: int = child.pid  # type: ignore[assignment]
        self.veth = child.veth
        self._finalizer = weakref.finalize(self, _close_all, child, logs)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Container {state}: {shlex.join(self.argv)}>"

    @property
    def running(self) -> bool:
        return self._finalizer.alive and self._child.popen.poll() is None

    def namespaces(self) -> dict[str, int]:
        """The inode number of each of the container's namespaces."""
        return ns_inodes(self.pid)

    def exec(
        self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, input: str | None = None
    ) -> Completed:
        """Run *argv* inside the running container — its namespaces (``setns``, as
        ``nsenter`` does), its root, its environment — and wait for it."""
        if not self.running:
            raise ContainerError("the container is not running", step="join")
        # the pair stays the container's; the command joins, it gets no init of its own
        spec = dataclasses.replace(self.spec, veth=False, bridge=False, init=False)
        plan = launch_plan(spec, argv)
        plan.update(mode="join", pid=self.pid, sync=False, host_user=None)
        return _run_plan(plan, spec, input=input, timeout=timeout)

    def logs(self) -> Completed:
        """What the container has printed so far (its exit status: -1 while running)."""
        texts = []
        for log in self._logs:
            log.flush()
            log.seek(0)
            texts.append(log.read().decode(errors="replace"))
        code = self._child.popen.poll()
        return Completed(self.argv, -1 if code is None else code, *texts)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the container to end by itself; its exit status."""
        try:
            return self._child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ContainerTimeoutError(f"still running after {timeout:g} s") from None

    def stop(self) -> int | None:
        """Kill every process of the container, remove its veth pair; its exit status."""
        self._finalizer()
        return self._child.popen.returncode


def _close_all(child: Child, logs: tuple[IO[bytes], IO[bytes]]) -> None:
    child.close()
    for log in logs:
        log.close()


def start(spec: Isolation, argv: Sequence[str]) -> Container:
    """Start *argv* isolated as *spec* says and return at once, while it runs.

    Its stdout and stderr go to anonymous temporary files (:meth:`Container.logs`).
    Use the result in a ``with`` block, or call :meth:`Container.stop`.
    """
    plan = launch_plan(spec, argv)
    # anonymous files (no name on disk), closed by the Container's finalizer
    logs = (tempfile.TemporaryFile(), tempfile.TemporaryFile())  # noqa: SIM115
    child = Child(plan, stdin=subprocess.DEVNULL, stdout=logs[0], stderr=logs[1], spec=spec)
    try:
        child.setup(until_running=False)
        return Container(child, plan["argv"], logs)
    except BaseException:
        _close_all(child, logs)
        raise
