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
    ├── NotebookError                 a notebook the course machinery cannot use
    │   └── MarkerError               unclosed or nested ``### BEGIN …`` markers
    ├── RootfsError                   chapter 01: a root filesystem that cannot be built
    ├── IsolationError                chapters 01–02: an Isolation that cannot work (ValueError)
    ├── ContainerError                chapters 01–02: a container step failed; ``.step`` names it
    │   ├── ContainerTimeoutError     it ran longer than its timeout (also TimeoutError)
    │   └── NetworkError              the veth pair could not be made or configured
    ├── CgroupError                   chapters 03–04: a cgroup that cannot be made or removed
    │   └── DelegationError           rootless without a delegated cgroup (also PermissionError)
    ├── LayerError                    chapter 05: a layer that cannot be written or applied
    │   └── UnsafeLayerError          an entry that would escape the root; ``.entry`` names it
    ├── ImageError                    chapter 06: an image, its documents or its blobs
    │   ├── InvalidImageError         breaks the image spec; ``.problems`` lists all (ValueError)
    │   ├── DigestMismatchError       bytes that do not match their digest or size
    │   ├── ImageNotFoundError        no such tag, image or blob (also LookupError)
    │   └── BadImageNameError         not ``oci:DIR[:TAG]`` or another known form (ValueError)
    ├── BadReferenceError             chapter 07: not ``registry/repo:tag@digest`` (ValueError)
    ├── RegistryError                 chapters 07–08: the registry said no (requests.HTTPError;
    │   │                             in :mod:`hardway.distribution.errors`, see there why);
    │   │                             ``.status_code``, ``.diagnostics`` (code, message, detail)
    │   ├── UnauthorizedError         401/403: no or wrong credentials, or a scope not granted
    │   ├── RegistryNotFoundError     404: no such repository, manifest, blob (LookupError)
    │   ├── RegistryUnreachableError  refused, unknown host or TLS failed (not retried)
    │   └── RetriesExhaustedError     resets, timeouts, 5xx or 429 on every try; ``.attempts``
    └── BuildError                    chapter 10: a Dockerfile build failed; ``.line`` names where
        └── DockerfileError           the Dockerfile is malformed or outside the subset (ValueError)

The sections below follow the chapters. A new error gets its place in this tree, so
that there is one place to read them all.
"""

from __future__ import annotations

__all__ = [
    "BadDigestError",
    "BadImageNameError",
    "BadReferenceError",
    "BuildError",
    "CgroupError",
    "ContainerError",
    "ContainerTimeoutError",
    "DelegationError",
    "DigestMismatchError",
    "DockerfileError",
    "HardwayError",
    "ImageError",
    "ImageNotFoundError",
    "InvalidImageError",
    "IsolationError",
    "LayerError",
    "MarkerError",
    "MissingToolError",
    "NetworkError",
    "NotebookError",
    "PortInUseError",
    "PrivilegeError",
    "RegistryConfigError",
    "RegistryError",  # noqa: F822 (loaded on first use, see __getattr__)
    "RegistryNotFoundError",  # noqa: F822
    "RegistryServerError",
    "RegistryUnreachableError",  # noqa: F822
    "RetriesExhaustedError",  # noqa: F822
    "RootfsError",
    "UnauthorizedError",  # noqa: F822
    "UnsafeLayerError",
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


#: the fix for a missing privilege: doctor tells which ones this machine grants, and how
DOCTOR_HINT = "python -m hardway doctor   (it shows which privileges this machine grants, and how)"


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


# -- chapters 01–02: root filesystems, namespaces, containers ---------------------------


class RootfsError(HardwayError):
    """A root filesystem cannot be built: a program or a library it needs is missing."""


class IsolationError(HardwayError, ValueError):
    """An :class:`~hardway.isolation.namespaces.Isolation` that cannot work, e.g. a hostname
    without a UTS namespace or ``pivot_root`` without a mount namespace."""


class ContainerError(HardwayError):
    """A step of starting, entering or running a container failed in the child process.

    ``step`` names the step (``"unshare"``, ``"pivot_root"``, ``"exec"``, ``"call"``, …),
    ``errno`` holds the system error number when there is one, and ``child`` the name of
    the exception class raised in the child (``"FileNotFoundError"``). A missing
    privilege is raised as :class:`PrivilegeError` instead, with the doctor hint.
    """

    def __init__(
        self,
        message: str,
        *,
        fix: str | None = None,
        step: str = "",
        errno: int | None = None,
        child: str | None = None,
    ) -> None:
        super().__init__(message, fix=fix)
        self.step = step
        self.errno = errno
        self.child = child


class ContainerTimeoutError(ContainerError, TimeoutError):
    """The container ran longer than its timeout and was killed."""


class NetworkError(ContainerError):
    """The veth pair between host and container could not be created or configured."""


# -- chapters 03–04: cgroups and the runtime ---------------------------------------------


class CgroupError(HardwayError):
    """A cgroup cannot be created, limited, joined or removed; the message names the file."""


class DelegationError(CgroupError, PermissionError):
    """Without root, a cgroup can only be made inside a sub-tree delegated to you (by
    systemd, ``Delegate=yes``), and there is none here or it lacks a controller."""


# --- chapter 05: layers -------------------------------------------------------------------


class LayerError(HardwayError):
    """A layer cannot be written or applied: bad compression, a broken tar, a missing link."""


class UnsafeLayerError(LayerError):
    """A layer entry that would reach outside the root (``..``, ``/etc``, a bare ``.wh.``).

    ``entry`` is the entry's name as the tar spells it, so the learner can find it.
    """

    def __init__(self, entry: str, problem: str, *, fix: str | None = None) -> None:
        super().__init__(f"unsafe layer entry {entry!r}: {problem}", fix=fix)
        #: the name of the offending tar entry
        self.entry = entry


# --- chapter 06: images ---------------------------------------------------------------


class ImageError(HardwayError):
    """Something is wrong with an image: its documents, its blobs or where it was looked for."""


class InvalidImageError(ImageError, ValueError):
    """A config, manifest or index breaks the spec; :attr:`problems` lists every violation."""

    def __init__(self, message: str, *, fix: str | None = None, problems: tuple = ()) -> None:
        super().__init__(message, fix=fix)
        #: every violation found, one sentence each (``validate_image`` collects them all)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


class DigestMismatchError(ImageError):
    """A blob's bytes do not match the digest or size that names it: corrupt or tampered."""


class ImageNotFoundError(ImageError, LookupError):
    """No image with that tag, reference or digest (or a blob it needs is missing)."""


class BadImageNameError(ImageError, ValueError):
    """An image name is not ``TRANSPORT:…`` in a form this course understands."""


# --- chapters 07–08: references and the registry API -----------------------------------


class BadReferenceError(HardwayError, ValueError):
    """An image reference that is not ``[registry/]repository[:tag][@digest]``."""


# -- chapter 10: building from a Dockerfile ----------------------------------------------


class BuildError(HardwayError):
    """A build step failed (a ``RUN`` exited non-zero, a ``COPY`` source is missing, …);
    ``path`` and ``line`` name the Dockerfile and the instruction's first line."""

    def __init__(
        self, message: str, *, fix: str | None = None, path: str = "", line: int = 0
    ) -> None:
        super().__init__(message, fix=fix)
        self.path = path
        self.line = line


class DockerfileError(BuildError, ValueError):
    """The Dockerfile cannot be read: bad syntax, or an instruction outside the subset."""
