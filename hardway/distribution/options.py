"""hardway.distribution.options
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Every option of the registry client's entry points —
:func:`~hardway.distribution.registry.pull`, :func:`~hardway.distribution.registry.push`
and :func:`~hardway.distribution.registry.client_for` — in one place, each with its
default and a comment, as go-containerregistry keeps them in ``remote/options.go``.

The entry points take them as keyword arguments (``pull(ref, timeout=5)``).
:func:`using` changes the defaults inside a ``with`` block instead: that is how the
command line's ``--creds``, ``--insecure`` and ``--attempts`` reach every ``docker://``
transfer of one command, however deep it happens.

>>> with using(jobs=1):
...     current_options().jobs, current_options(jobs=2).jobs
(1, 2)
>>> current_options().jobs
4
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hardway.distribution.credentials import Credentials
from hardway.distribution.retry import RetryPolicy
from hardway.image.platform import Platform

__all__ = ["Options", "current_options", "using"]


@dataclass(frozen=True)
class Options:
    """Every option of ``pull``, ``push`` and ``client_for``, with its default."""

    #: user/password or tokens; ``None``: read docker's config.json (``authfile``)
    credentials: Credentials | None = None
    #: a docker ``config.json`` to read credentials from instead of the usual places
    authfile: Path | str | None = None
    #: plain HTTP? ``None``: only for localhost and 127.0.0.1
    insecure: bool | None = None
    #: seconds to wait for a connection or a read
    timeout: float = 60.0
    #: ``None``: monolithic PUT; a number: PATCH chunks of at least this many bytes
    chunk_size: int | None = None
    #: the platform to take from an index; ``None``: this machine's
    platform: Platform | None = None
    #: repositories (on the same registry) to try mounting blobs from before uploading
    mount_from: tuple[str, ...] = ()
    #: how many blobs to upload at once (the manifest always goes last, alone)
    jobs: int = 4
    #: progress bars (:mod:`hardway.distribution.progress`); ``None``: only when someone watches
    progress: bool | None = None
    #: tries per request (or per blob upload) in all, the first included; 1: never retry
    attempts: int = RetryPolicy.attempts
    #: seconds before the first retry, doubled for each next one (with jitter)
    backoff: float = RetryPolicy.backoff
    #: the longest wait between two tries
    backoff_max: float = RetryPolicy.backoff_max
    #: a registry's ``Retry-After`` is honoured up to this many seconds
    retry_after_max: float = RetryPolicy.retry_after_max

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.attempts, self.backoff, self.backoff_max, self.retry_after_max)


_DEFAULTS = Options()
_options: contextvars.ContextVar[Options] = contextvars.ContextVar("options", default=_DEFAULTS)


def current_options(**changes: Any) -> Options:
    """The options in force here (see :func:`using`), with ``changes`` on top."""
    return replace(_options.get(), **changes)


@contextlib.contextmanager
def using(**changes: Any) -> Iterator[Options]:
    """Change the default :class:`Options` inside a ``with`` block (the CLI's flags use it)."""
    token = _options.set(current_options(**changes))
    try:
        yield _options.get()
    finally:
        _options.reset(token)
