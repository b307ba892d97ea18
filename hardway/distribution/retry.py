"""hardway.distribution.retry
~~~~~~~~~~~~~~~~~~~~~~~~~~

Networks drop connections and registries shed load: a ``503`` from a load balancer, a
``429 Too Many Requests`` with ``Retry-After``, a connection reset halfway through a
layer. None of these mean the push or pull is wrong, so the client tries again — but
only what is safe to repeat, only a few times, and waiting longer each time (exponential
backoff with jitter, so that many clients do not retry in lock-step).

This module is the policy, pure and small: *which* failures are worth another try
(:func:`transient_status`, :func:`transient_exception`) and *how long* to wait
(:meth:`RetryPolicy.delay`). Which requests may be repeated, and how an upload resumes,
is the registry client's business (:mod:`hardway.distribution.http`,
:mod:`hardway.distribution.uploads`).

>>> policy = RetryPolicy(attempts=4, backoff=0.5, backoff_max=3.0)
>>> [policy.delay(n, jitter=1.0) for n in (1, 2, 3, 4)]
[0.5, 1.0, 2.0, 3.0]
>>> policy.delay(1, retry_after="7")  # the registry said how long: honour it (capped)
7.0
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

import requests
import urllib3.exceptions

from hardway.distribution.errors import TRANSIENT_STATUSES
from hardway.errors import HardwayError

__all__ = ["RetryPolicy", "transient_exception", "transient_status"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to try a request again.

    :param attempts: tries in all, the first included (``1``: never retry)
    :param backoff: seconds to wait before the second try; doubled for each further one
    :param backoff_max: no wait is longer than this (without ``Retry-After``)
    :param retry_after_max: a registry's ``Retry-After`` is honoured up to this many seconds
    """

    attempts: int = 5
    backoff: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")

    def delay(
        self, attempt: int, *, retry_after: str | None = None, jitter: float | None = None
    ) -> float:
        """Seconds to wait after failed try number ``attempt`` (1, 2, …).

        ``Retry-After`` (seconds or an HTTP date) wins when the registry sends it; else
        ``backoff · 2^(attempt-1)``, capped, times a random factor in [0.5, 1].
        """
        if retry_after is not None and (asked := parse_retry_after(retry_after)) is not None:
            return min(asked, self.retry_after_max)
        factor = random.uniform(0.5, 1.0) if jitter is None else jitter
        return min(self.backoff * 2 ** (attempt - 1), self.backoff_max) * factor


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: ``"120"`` or ``"Fri, 31 Dec 1999 23:59:59 GMT"``.

    >>> parse_retry_after("3"), parse_retry_after("soon")
    (3.0, None)
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", now=30.0)
    30.0
    """
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def transient_status(status: int) -> bool:
    """Is an answer with this status worth the same request again?

    >>> transient_status(503), transient_status(429), transient_status(404)
    (True, True, False)
    """
    return status in TRANSIENT_STATUSES


def transient_exception(exc: BaseException) -> bool:
    """Did the request fail on the way (reset, timeout, broken body) rather than never
    reaching a server? A refused connection or an unknown host is not retried: the
    registry is not running, or the name is wrong, and waiting will not change that.

    >>> transient_exception(requests.ConnectionError(ConnectionResetError(104, "reset")))
    True
    >>> refused = urllib3.exceptions.NewConnectionError(None, "refused")
    >>> transient_exception(requests.ConnectionError(
    ...     urllib3.exceptions.MaxRetryError(None, "/v2/", refused)))
    False

    Nor is a TLS failure (an untrusted certificate, HTTPS to a plain-HTTP registry):
    the same handshake fails the same way every time.

    >>> transient_exception(requests.exceptions.SSLError("certificate verify failed"))
    False
    """
    if isinstance(exc, HardwayError | requests.exceptions.SSLError):  # already judged, or TLS
        return False
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        cause = exc.args[0] if exc.args else None
        reason = getattr(cause, "reason", cause)
        return not isinstance(reason, urllib3.exceptions.NewConnectionError)
    return isinstance(
        exc,
        requests.Timeout
        | requests.exceptions.ChunkedEncodingError
        | urllib3.exceptions.ProtocolError
        | urllib3.exceptions.ReadTimeoutError
        | ConnectionError
        | TimeoutError,
    )
