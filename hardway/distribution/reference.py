"""hardway.distribution.reference
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

An image reference names an image in a registry: ``registry/repository:tag@digest``.
People write short forms (``busybox``, ``me/app:v1``) and every tool fills in the same
defaults, so this module does it the way Docker does (``distribution/reference``):

* the first path segment is a *registry* only if it holds a ``.`` or a ``:``, is
  ``localhost``, or has an uppercase letter; otherwise the registry is ``docker.io``;
* on ``docker.io`` a one-segment name gets ``library/`` (``busybox`` is
  ``docker.io/library/busybox``), and ``index.docker.io`` is spelled ``docker.io``;
* without a tag or a digest the tag is ``latest``; with a digest the digest wins, the
  tag is only a label.

Why it matters: the registry host decides where requests go (Docker Hub's API lives at
``registry-1.docker.io``), the repository is what a token's *scope* names, and a digest
is the only name that cannot move.

>>> ref = parse_reference("busybox")
>>> str(ref), ref.registry, ref.repository, ref.tag
('docker.io/library/busybox:latest', 'docker.io', 'library/busybox', 'latest')
>>> parse_reference("localhost:5000/hello:v1").scope("push")
'repository:hello:push,pull'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hardway.errors import BadDigestError, BadReferenceError
from hardway.image.digest import Digest, parse_digest

__all__ = ["DOCKER_HUB", "DOCKER_HUB_API", "Reference", "parse_reference", "scope"]

#: the name people write, and the host Docker's clients actually talk to
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?"
)
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A normalised reference: ``registry``, ``repository``, and a ``tag`` and/or ``digest``.

    ``str()`` is the full form; :attr:`familiar` is the short form Docker prints.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """``registry/repository``: the image without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/`` in the API: the digest if there is one, else the tag."""
        return str(self.digest) if self.digest else (self.tag or "latest")

    @property
    def api_host(self) -> str:
        """The host to send API requests to (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def familiar(self) -> str:
        """The short form: ``busybox:latest`` rather than ``docker.io/library/busybox:latest``."""
        name = self.name
        if self.registry == DOCKER_HUB:
            name = self.repository.removeprefix("library/")
        return name + self._tail()

    def scope(self, action: str = "pull") -> str:
        """The token scope for ``action`` on this repository (``push`` also asks for pull)."""
        return scope(self.repository, action)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, _check_tag(tag, tag), None)

    def with_digest(self, digest: Digest | str) -> Reference:
        digest = parse_digest(str(digest))
        return Reference(self.registry, self.repository, self.tag, digest)

    def _tail(self) -> str:
        tail = f":{self.tag}" if self.tag else ""
        return tail + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._tail()


def scope(repository: str, action: str = "pull") -> str:
    """A token scope, ``repository:NAME:ACTIONS``; ``push`` is always asked with ``pull``.

    >>> scope("library/busybox"), scope("me/app", "push")
    ('repository:library/busybox:pull', 'repository:me/app:push,pull')
    """
    actions = "push,pull" if action == "push" else action
    return f"repository:{repository}:{actions}"


def _check_tag(tag: str, text: str) -> str:
    if not _TAG.fullmatch(tag):
        raise BadReferenceError(
            f"{text!r}: the tag {tag!r} is not valid",
            fix="a tag is 1–128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
        )
    return tag


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DOCKER_HUB, name


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse and normalise ``text``; raise :class:`BadReferenceError` saying what is wrong.

    :param text: a reference as people write it (``busybox``, ``me/app:v1``, ``h:5000/x@…``)
    :param default_tag: (optional) the tag when neither tag nor digest is given; ``None`` for none
    :rtype: Reference

    >>> parse_reference("index.docker.io/me/app:v1").familiar
    'me/app:v1'
    >>> parse_reference("Busybox")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    hardway.errors.BadReferenceError: 'Busybox': the repository name must be lowercase...
    """
    if not isinstance(text, str) or not text:
        raise BadReferenceError("an image reference is a non-empty string", fix="e.g. busybox:1.36")
    if text != text.strip() or any(c.isspace() for c in text):
        raise BadReferenceError(f"{text!r}: a reference holds no whitespace")
    if text.startswith(("docker://", "http://", "https://")):
        scheme = text.split("://")[0]
        raise BadReferenceError(
            f"{text!r}: a reference has no scheme", fix=f"drop the {scheme}:// prefix"
        )
    rest, at, digest_text = text.partition("@")
    digest = None
    if at:
        try:
            digest = parse_digest(digest_text)
        except BadDigestError as exc:
            raise BadReferenceError(
                f"{text!r}: the digest after '@' is bad: {exc.message}"
            ) from None
    name, tag = rest, None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):  # a colon after the last slash starts the tag, not a port
        name, tag = rest[:colon], _check_tag(rest[colon + 1 :], text)
    if not name:
        raise BadReferenceError(f"{text!r}: the repository name is missing")
    if re.fullmatch(r"[a-f0-9]{64}", name):
        raise BadReferenceError(
            f"{text!r} looks like an image ID, not a reference", fix=f"write NAME@sha256:{name}"
        )
    registry, path = _split_domain(name)
    if registry != DOCKER_HUB and not _DOMAIN.fullmatch(registry):
        raise BadReferenceError(f"{text!r}: {registry!r} is not a valid registry host[:port]")
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if path != path.lower():
        raise BadReferenceError(
            f"{text!r}: the repository name must be lowercase", fix=f"write {path.lower()!r}"
        )
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            raise BadReferenceError(
                f"{text!r}: {component!r} is not a valid path component",
                fix="components are lowercase letters and digits, joined by '.', '_', '__' or "
                "'-', and separated by single '/'",
            )
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > _MAX_NAME:
        raise BadReferenceError(f"{text!r}: the name is longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, path, tag, digest)
