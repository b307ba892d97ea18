"""hardway.isolation.failures
~~~~~~~~~~~~~~~~~~~~~~~~~~

Every step the launcher takes (:mod:`hardway.isolation.launch`) has a name — *unshare*,
*pivot_root*, *mount /proc*, *exec* … — and when one fails, the launcher reports the
step, the exception's type, its ``errno`` and message, a suggested fix and whether it
was refused for want of a privilege, as one ``error`` event. This module turns such a
report into the exception the caller sees, so that a failure deep in a child process
reads like one of the caller's own:

* a step refused for want of a privilege (``EPERM``) is a
  :class:`~hardway.errors.PrivilegeError` that points to ``python -m hardway doctor``;
* ``exec`` of a program that is not there (``ENOENT``) says the two usual reasons — not
  in the root filesystem, or its dynamic loader or a library is missing — and how to
  copy a program with its libraries;
* a function called inside that raised says its own name and what it raised;
* any other step is a :class:`~hardway.errors.ContainerError` whose ``.step`` names it.

>>> step_error({"step": "mount /proc", "type": "OSError", "errno": 22,
...             "message": "Invalid argument"}, {})
ContainerError('mount /proc failed: Invalid argument')
"""

from __future__ import annotations

import errno
from typing import Any

from hardway.errors import DOCTOR_HINT, ContainerError, PrivilegeError

__all__ = ["privilege_error", "step_error"]


def privilege_error(message: str, fix: str | None = None) -> PrivilegeError:
    """A :class:`~hardway.errors.PrivilegeError` carrying ``errno`` ``EPERM``, as the
    kernel's refusal did.

    >>> privilege_error("unshare: it needs root").errno == errno.EPERM
    True
    """
    refused = PrivilegeError(message, fix=fix or DOCTOR_HINT)
    refused.errno = errno.EPERM
    return refused


def step_error(event: dict[str, Any], plan: dict[str, Any]) -> Exception:
    """The exception the parent raises for an ``error`` *event* of the launcher that
    was started with *plan* (it names the command or the function)."""
    step, message, number = event["step"], event["message"], event.get("errno")
    if event.get("privilege"):
        text = message if "EPERM" in message else f"{step}: {message} (EPERM): it needs root"
        return privilege_error(text, event.get("fix"))
    if step == "exec" and number == errno.ENOENT:
        name = plan["argv"][0]
        where = "in the root filesystem" if plan["root"] else "on this machine"
        return ContainerError(
            f"exec {name!r}: No such file or directory. Either it is not {where} (or "
            "not on PATH), or it is but its dynamic loader or a library is missing",
            fix="copy the program with its libraries: "
            "hardway.isolation.rootfs.add_binary(root, program)",
            step=step,
            errno=number,
            child=event["type"],
        )
    if step == "call":
        name = plan["call"]["function"]["name"]
        text = f"{name} raised {event['type']}: {message}"
    else:
        text = f"{step} failed: {message}"
    return ContainerError(text, fix=event.get("fix"), step=step, errno=number, child=event["type"])
