"""hardway.build.result
~~~~~~~~~~~~~~~~~~~~

What a build gives back, whichever builder made it: the image and, in order, a report of
each unit of work — one per layer source for :mod:`hardway.build.builder`, one per
Dockerfile step for :mod:`hardway.build.dockerbuild`. Every report answers the same two
questions, so the counts here mean the same for both builders: did it come from the
cache (``cached``), and did it do work in this build (``ran``)?

The image's new layers are read from the build cache (:class:`hardway.build.cache.Cache`):
keep the cache, do not prune it, until the image is pushed or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from hardway.image.blobs import StoredImage
from hardway.image.digest import Digest

__all__ = ["BuildResult", "Report"]


class Report(Protocol):
    """What one unit of a build did."""

    @property
    def cached(self) -> bool:
        """Its result came from the cache."""
        ...

    @property
    def ran(self) -> bool:
        """It did work in this build (not cached, and not a mere ``FROM``)."""
        ...


R = TypeVar("R", bound=Report)


@dataclass(frozen=True)
class BuildResult(Generic[R]):
    """The image built and, in order, what each unit of work did.

    >>> from types import SimpleNamespace as Done
    >>> from hardway.image.mutate import empty_image
    >>> reports = (Done(cached=False, ran=False), Done(cached=True, ran=False),
    ...            Done(cached=False, ran=True))
    >>> result = BuildResult(empty_image(), reports)
    >>> result.cache_hits, result.executed
    (1, 1)
    """

    image: StoredImage
    reports: tuple[R, ...]

    @property
    def digest(self) -> Digest:
        """The manifest digest of :attr:`image`."""
        return self.image.digest()

    @property
    def cache_hits(self) -> int:
        """How many units came from the cache."""
        return sum(report.cached for report in self.reports)

    @property
    def executed(self) -> int:
        """How many units did work in this build."""
        return sum(report.ran for report in self.reports)
