"""hardway.errors
~~~~~~~~~~~~~~

Every error the helper raises on purpose. Each one says what went wrong, why, and —
in :attr:`HardwayError.fix` — the command or setting that fixes it, because the reader
is usually a learner in the middle of a notebook, not a developer with a debugger::

    HardwayError                      base class; ``.fix`` holds the remedy
    ├── MissingToolError              an external program is not installed
    ├── PrivilegeError                needs root or a capability (also PermissionError)
    ├── RegistryServerError           the course's local registry will not start or stop
    │   ├── PortInUseError            something else already listens on the port
    │   └── RegistryConfigError       a registry setting that cannot work (also ValueError)
    ├── BadDigestError                a malformed ``algorithm:hex`` digest (also ValueError)
    └── NotebookError                 a notebook the course machinery cannot use
        └── MarkerError               unclosed or nested ``### BEGIN …`` markers

Later chapters add their own branches here (references, registry API errors, unsafe
layers, …) so that there is one place to read them all.
"""

from __future__ import annotations

__all__ = [
    "BadDigestError",
    "HardwayError",
    "MarkerError",
    "MissingToolError",
    "NotebookError",
    "PortInUseError",
    "PrivilegeError",
    "RegistryConfigError",
    "RegistryServerError",
]


class HardwayError(Exception):
    """Base class: a message for the learner plus, optionally, the fix.

    >>> str(HardwayError("the registry is not running", fix="make registry"))
    'the registry is not running\\n  To fix: make registry'
    """

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: the command or setting that fixes the problem, if there is one
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}\n  To fix: {self.fix}"
        return self.message


class MissingToolError(HardwayError):
    """An external program (``docker-registry``, ``skopeo``, ``umoci``, …) is missing."""


class PrivilegeError(HardwayError, PermissionError):
    """The operation needs root, a capability or user namespaces that this process lacks."""


class RegistryServerError(HardwayError):
    """The course's local registry could not be started, reached or stopped."""


class PortInUseError(RegistryServerError):
    """The TCP port is taken by a process that is not our registry."""


class RegistryConfigError(RegistryServerError, ValueError):
    """A registry setting (port, auth mode, a missing htpasswd or certificate file) cannot work."""


class BadDigestError(HardwayError, ValueError):
    """A digest string does not follow ``algorithm:encoded`` (e.g. ``sha256:<64 hex>``)."""


class NotebookError(HardwayError):
    """A notebook cannot be used by the course machinery (labs, checks, grading)."""


class MarkerError(NotebookError):
    """``### BEGIN SOLUTION`` / ``### BEGIN HIDDEN TESTS`` markers are unclosed or nested."""
