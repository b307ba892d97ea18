"""Image references, normalised as Docker does (``distribution/reference``): good and bad
names as plain lists, like go-containerregistry's ``pkg/name`` tests."""

from __future__ import annotations

import pytest

from hardway.distribution.reference import parse_reference, scope
from hardway.errors import BadReferenceError

GOOD = [
    # text, registry, repository, tag, digest
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("me/app", "docker.io", "me/app", "latest", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/me/app:v1", "docker.io", "me/app", "v1", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/app:v1", "localhost:5000", "app", "v1", None),
    ("127.0.0.1:5000/a/b/c:t_1.x-y", "127.0.0.1:5000", "a/b/c", "t_1.x-y", None),
    ("ghcr.io/org/app", "ghcr.io", "org/app", "latest", None),
    ("Registry/app", "Registry", "app", "latest", None),
    ("a__b/c.d-e", "docker.io", "a__b/c.d-e", "latest", None),
    ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
    ("app@sha256:" + "a" * 64, "docker.io", "library/app", None, "sha256:" + "a" * 64),
    ("h:1/app:v1@sha256:" + "b" * 64, "h:1", "app", "v1", "sha256:" + "b" * 64),
]

BAD = [
    ("", "non-empty"),
    ("Busybox", "lowercase"),
    ("me/App", "lowercase"),
    ("busybox:", "tag"),
    ("busybox:-x", "tag"),
    ("busybox:" + "t" * 129, "tag"),
    ("a//b", "path component"),
    ("a/b/", "path component"),
    ("-a/b", "path component"),
    ("a..b", "path component"),
    ("busybox@sha256:abc", "digest"),
    ("busybox@", "digest"),
    (" busybox", "whitespace"),
    ("docker://busybox", "scheme"),
    ("a" * 64, "image ID"),
    ("h" * 250 + ".io/app/x", "longer than 255"),
    ("bad_host:5000/app", "registry host"),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), GOOD)
def test_good_references_normalise(text, registry, repository, tag, digest) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert (str(ref.digest) if ref.digest else None) == digest
    assert parse_reference(str(ref)) == ref, "the full form parses back to itself"


@pytest.mark.parametrize(("text", "why"), BAD)
def test_bad_references_say_why(text: str, why: str) -> None:
    with pytest.raises(BadReferenceError, match=why):
        parse_reference(text)


def test_bad_reference_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_reference("UPPER")


def test_familiar_api_host_identifier_and_scope() -> None:
    ref = parse_reference("busybox")
    assert ref.familiar == "busybox:latest"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.identifier == "latest"
    assert ref.scope() == "repository:library/busybox:pull"
    pinned = ref.with_digest("sha256:" + "c" * 64)
    assert pinned.identifier == "sha256:" + "c" * 64
    assert parse_reference("localhost:5000/x").api_host == "localhost:5000"
    assert scope("a/b", "push") == "repository:a/b:push,pull"
    assert parse_reference("app", default_tag=None).tag is None


@pytest.mark.parametrize(
    "module",
    [
        "distribution.reference",
        "distribution.auth",
        "distribution.credentials",
        "distribution.errors",
        "distribution.retry",
        "distribution.options",
        "distribution.http",
        "distribution.downloads",
        "distribution.uploads",
        "distribution.registry",
        "distribution.server.tokenserver",
        "errors",
    ],
)
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(f"hardway.{module}")).failed == 0
