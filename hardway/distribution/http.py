"""hardway.distribution.http
~~~~~~~~~~~~~~~~~~~~~~~~~~

How the registry client talks HTTP to one registry host: the part every endpoint
shares. An :class:`HttpClient` holds the host's base URL (plain ``http`` only for
loopback, :func:`scheme_for`), one :class:`requests.Session` with the auth hook, and
counters of what it sent; :class:`~hardway.distribution.registry.Registry` adds the
registry API on top of it, one method per endpoint.

Networks fail, so every request goes through :meth:`HttpClient._send`, which tries again
after a reset, a timeout, a 5xx or a 429 — but only a request that is safe to repeat
(an upload is not: :mod:`hardway.distribution.uploads` recovers those). A
:class:`Budget` counts the tries of one operation and waits between them as
:class:`~hardway.distribution.retry.RetryPolicy` says, ``Retry-After`` honoured; when
they run out it raises :class:`~hardway.distribution.errors.RetriesExhaustedError`.
What no retry can change — nothing listens on the port, the host is unknown, the TLS
handshake fails — becomes a :class:`~hardway.distribution.errors.RegistryUnreachableError`
at once.
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Self
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

from hardway.distribution.auth import BearerAuth, must_resend
from hardway.distribution.errors import RegistryUnreachableError, RetriesExhaustedError, error_for
from hardway.distribution.options import Options
from hardway.distribution.retry import RetryPolicy, transient_exception, transient_status

__all__ = ["Budget", "HttpClient", "again", "discard", "scheme_for"]

_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")


def scheme_for(host: str, insecure: bool | None = None) -> str:
    """``http`` for a loopback registry (or with ``insecure``), else ``https``.

    >>> scheme_for("127.0.0.1:5000"), scheme_for("docker.io"), scheme_for("r.lan", True)
    ('http', 'https', 'http')
    """
    if insecure is None:
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        insecure = name in _LOOPBACK
    return "http" if insecure else "https"


class HttpClient:
    """Requests to one registry host, retried when that is safe, counted.

    >>> HttpClient("127.0.0.1:5000").url("/v2/")
    'http://127.0.0.1:5000/v2/'

    :param host: ``host[:port]`` as the API is reached (``registry-1.docker.io``)
    :param auth: (optional) a requests auth, usually :class:`~hardway.distribution.auth.BearerAuth`
    :param insecure: (optional) see :attr:`Options.insecure`
    :param timeout: (optional) seconds
    :param retry: (optional) how often and how patiently to retry (see
    :mod:`hardway.distribution.retry`)

    One client may be shared by threads (parallel blob uploads): the session's
    connection pool, the token cache and the counters are safe to use concurrently.
    """

    def __init__(
        self,
        host: str,
        *,
        auth: requests.auth.AuthBase | None = None,
        insecure: bool | None = None,
        timeout: float = Options.timeout,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.host = host
        self.base = f"{scheme_for(host, insecure)}://{host}"
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        #: how to wait between tries (tests record the waits instead of sleeping)
        self.sleep: Callable[[float], None] = time.sleep
        self.auth = auth if auth is not None else BearerAuth()
        #: the session: ``session.mount()`` swaps in a fake transport for tests
        self.session = requests.Session()
        self.session.auth = self.auth
        self.session.headers["User-Agent"] = "hardway (Containers the Hard Way)"
        if urlsplit(self.base).hostname in ("localhost", "127.0.0.1", "::1"):
            self.session.trust_env = False  # a proxy must not swallow loopback requests
        #: requests sent, by ``"METHOD kind"`` (``"HEAD blob"``, ``"PATCH upload"``…)
        self.requests: Counter[str] = Counter()
        #: blob bytes sent in PUT and PATCH bodies
        self.bytes_uploaded = 0
        #: failed tries that were tried again, by ``"METHOD kind"``
        self.retries: Counter[str] = Counter()
        #: one lock for every counter (a worker client shares it, see :meth:`_worker`)
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base} auth={self.auth!r}>"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return urljoin(self.base, path)

    def _count(self, counter: Counter[str], key: str) -> None:
        with self._count_lock:
            counter[key] += 1

    def _sent(self, size: int) -> None:
        with self._count_lock:
            self.bytes_uploaded += size

    def _send(
        self, method: str, url: str, kind: str, *, retry: bool = True, **kwargs: Any
    ) -> requests.Response:
        """Send one request; with ``retry``, again after a transient failure.

        Only what is safe to repeat may pass ``retry=True``: everything but a request
        whose body is a stream or appends to an upload (the upload code recovers those).
        When the tries run out, :class:`~hardway.distribution.errors.RetriesExhaustedError`.
        """
        kwargs.setdefault("timeout", self.timeout)
        full = self.url(url)
        budget = Budget(self, f"{method} {urlsplit(full).path}", f"{method} {kind}")
        while True:
            self._count(self.requests, f"{method} {kind}")
            if not retry:
                return self._request(method, full, **kwargs)
            try:
                response = self._request(method, full, **kwargs)
            except requests.RequestException as exc:
                if not transient_exception(exc):
                    raise
                budget.spend(exc)
                continue
            if not again(response):
                return response
            discard(response)
            budget.spend(response=response)

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """``session.request``, with "nothing listens there" turned into a typed error."""
        try:
            return self.session.request(method, url, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise RegistryUnreachableError(
                f"no TLS connection to the registry at {self.host} ({_tls_reason(exc)})",
                fix="a registry that speaks plain HTTP needs --insecure (insecure=True); one "
                "with its own certificate needs it trusted (REQUESTS_CA_BUNDLE=ca.pem)",
            ) from exc
        except requests.ConnectionError as exc:
            cause = exc.args[0] if exc.args else None
            reason = getattr(cause, "reason", cause)
            if not isinstance(reason, urllib3.exceptions.NewConnectionError):
                raise
            why = str(reason).rpartition(": ")[2] or "no connection"
            raise RegistryUnreachableError(
                f"cannot connect to the registry at {self.host} ({why})",
                fix="start it (python -m hardway registry start), or check the host and "
                "port in the image reference",
            ) from exc

    @contextlib.contextmanager
    def _worker(self) -> Iterator[Self]:
        """A client for one thread: the same auth, transports (connection pools, any
        test adapter) and headers, but its own :class:`requests.Session`, because a
        Session is not documented as safe to share between threads. Its ``requests`` and
        ``bytes_uploaded`` are its own, added to ours by :meth:`_merge`; ``retries`` and
        the lock are ours, shared."""
        clone = copy.copy(self)
        clone.session = requests.Session()
        for name in ("headers", "auth", "proxies", "hooks", "verify", "cert", "trust_env"):
            setattr(clone.session, name, copy.copy(getattr(self.session, name)))
        clone.session.auth = self.session.auth  # one token cache (BearerAuth locks it)
        clone.session.adapters = self.session.adapters  # urllib3 pools are thread-safe
        clone.requests = Counter()
        clone.bytes_uploaded = 0
        try:
            yield clone
        finally:
            clone.session.adapters = OrderedDict()  # closing the clone must not close ours
            clone.session.close()

    def _merge(self, clone: HttpClient) -> None:
        with self._count_lock:  # the lock _count and _sent take: no update is lost
            self.requests.update(clone.requests)
            self.bytes_uploaded += clone.bytes_uploaded


class Budget:
    """The tries left for one operation: :meth:`spend` one per failure, which waits
    (backoff, or the registry's ``Retry-After``) or, when none are left, raises
    :class:`~hardway.distribution.errors.RetriesExhaustedError` naming ``what`` and the
    last failure."""

    def __init__(self, client: HttpClient, what: str, key: str) -> None:
        self.client, self.what, self.key = client, what, key
        self.failures = 0

    def spend(
        self, exc: BaseException | None = None, *, response: requests.Response | None = None
    ) -> None:
        self.failures += 1
        policy = self.client.retry
        if self.failures >= policy.attempts:
            diagnostics = error_for(response, self.what).diagnostics if response is not None else ()
            raise RetriesExhaustedError(
                self.what,
                attempts=self.failures,
                last=exc,
                response=response,
                diagnostics=diagnostics,
            ) from exc
        self.client._count(self.client.retries, self.key)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        self.client.sleep(policy.delay(self.failures, retry_after=retry_after))


def again(response: requests.Response) -> bool:
    """Is this answer worth the same request again? A transient status, or a 401 whose
    token :class:`~hardway.distribution.auth.BearerAuth` refreshed but could not re-send
    (a stream)."""
    return transient_status(response.status_code) or must_resend(response)


def discard(response: requests.Response) -> None:
    """Read and close an answer we will not use, so its connection can be reused."""
    with contextlib.suppress(requests.RequestException, OSError):
        response.content  # noqa: B018
    response.close()


def _tls_reason(exc: requests.exceptions.SSLError) -> str:
    """What OpenSSL said, from the ``[SSL: CODE] what (_ssl.c:N)`` urllib3 nests deep.

    >>> _tls_reason(requests.exceptions.SSLError("Max retries (Caused by SSLError(SSLError("
    ...     "1, '[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)')))"))
    'wrong version number'
    """
    found = re.search(r"\[SSL[^]]*\] ([^(]+?) \(_ssl", str(exc))
    return found[1] if found else "the TLS handshake failed"
