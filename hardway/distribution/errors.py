"""hardway.distribution.errors
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The errors a registry answers with (chapters 07–08), as exceptions: the branch of
:mod:`hardway.errors`' tree under ``RegistryError``, with the spec's error codes and
what each means. They subclass ``requests.HTTPError`` (code that catches HTTP errors
catches these too), which is why they live here and not in :mod:`hardway.errors`:
importing ``requests`` costs about 70 ms, which every container launch (chapters
01–04) would pay for nothing.

:func:`error_for` turns an answer the client did not expect into the right one of them,
and :func:`check` raises it unless the status is one the caller expects, as
go-containerregistry's ``transport.CheckError`` does.
"""

from __future__ import annotations

import contextlib

import requests

from hardway.errors import HardwayError

__all__ = [
    "REGISTRY_ERROR_CODES",
    "TRANSIENT_STATUSES",
    "Diagnostic",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryUnreachableError",
    "RetriesExhaustedError",
    "UnauthorizedError",
    "check",
    "error_for",
]


#: the distribution spec's error codes, each with a sentence a learner understands
REGISTRY_ERROR_CODES: dict[str, str] = {
    "BLOB_UNKNOWN": "the registry has no blob with that digest in this repository",
    "BLOB_UPLOAD_INVALID": "the upload is broken (a chunk out of order, or a bad Content-Range)",
    "BLOB_UPLOAD_UNKNOWN": "the upload session is unknown: it expired, was cancelled or finished",
    "DIGEST_INVALID": "the bytes received do not hash to the digest given with them",
    "MANIFEST_BLOB_UNKNOWN": "the manifest names a blob (layer or config) not pushed yet: "
    "push blobs before the manifest",
    "MANIFEST_INVALID": "the registry rejected the manifest: bad JSON, a wrong media type, "
    "or a Content-Type that does not match its mediaType",
    "MANIFEST_UNKNOWN": "no manifest with that tag or digest in this repository",
    "MANIFEST_UNVERIFIED": "the manifest's signature did not verify (legacy schema 1)",
    "NAME_INVALID": "the repository name is not valid",
    "NAME_UNKNOWN": "the registry does not know this repository (nothing was pushed to it)",
    "SIZE_INVALID": "the number of bytes received differs from the length announced",
    "TAG_INVALID": "the tag in the URL does not match the manifest (legacy)",
    "UNAUTHORIZED": "authentication is required: log in, or the token lacks the scope",
    "DENIED": "access denied: these credentials may not do this",
    "UNSUPPORTED": "the registry does not support this operation",
    "TOOMANYREQUESTS": "too many requests: wait (see Retry-After) and try again",
    "RANGE_INVALID": "the Content-Range does not continue where the upload stands",
}

#: statuses after which trying again may work (ggcr's list)
TRANSIENT_STATUSES = frozenset({408, 429, 499, 500, 502, 503, 504, 522})


class Diagnostic:
    """One entry of a registry's ``{"errors": [{"code", "message", "detail"}]}`` body."""

    __slots__ = ("code", "detail", "message")

    def __init__(self, code: str, message: str = "", detail: object = None) -> None:
        self.code, self.message, self.detail = code, message, detail

    def __repr__(self) -> str:
        return f"Diagnostic(code={self.code!r}, message={self.message!r}, detail={self.detail!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Diagnostic) and (self.code, self.message, self.detail) == (
            other.code,
            other.message,
            other.detail,
        )

    __hash__ = None  # type: ignore[assignment]

    def explain(self) -> str:
        """``CODE: the sentence for the code (the registry's own message)``."""
        sentence = REGISTRY_ERROR_CODES.get(self.code, "")
        own = self.message and self.message.lower() != sentence.lower()
        text = f"{self.code}: {sentence}" if sentence else f"{self.code}: {self.message}"
        return f"{text} (registry says: {self.message})" if own and sentence else text


class RegistryError(HardwayError, requests.HTTPError):
    """The registry answered with an error: a status code and its JSON diagnostics.

    Like go-containerregistry's ``transport.Error``: :attr:`status_code`,
    :attr:`request`, :attr:`response`, :attr:`diagnostics` (the spec's ``code``,
    ``message``, ``detail``) and :attr:`temporary` (is a retry worth it?).

    >>> e = RegistryError("GET /v2/x/manifests/v9", status_code=404,
    ...                   diagnostics=[Diagnostic("MANIFEST_UNKNOWN", "manifest unknown")])
    >>> e.code, e.temporary
    ('MANIFEST_UNKNOWN', False)
    >>> print(e)  # doctest: +NORMALIZE_WHITESPACE
    GET /v2/x/manifests/v9: 404 MANIFEST_UNKNOWN: no manifest with that tag or digest in
    this repository (registry says: manifest unknown)
    """

    def __init__(
        self,
        what: str,
        *,
        status_code: int | None = None,
        diagnostics: list[Diagnostic] | tuple[Diagnostic, ...] = (),
        response: object = None,
        request: object = None,
        fix: str | None = None,
    ) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        self.status_code = status_code
        why = "; ".join(d.explain() for d in self.diagnostics)
        status = f"{status_code} " if status_code is not None else ""
        message = f"{what}: {status}{why}".rstrip(": ") if why or status else what
        super().__init__(message, fix=fix)
        self.response = response
        self.request = request if request is not None else getattr(response, "request", None)

    @property
    def code(self) -> str | None:
        """The first diagnostic's code (``MANIFEST_UNKNOWN``, ``DENIED``, …), if any."""
        return self.diagnostics[0].code if self.diagnostics else None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(d.code for d in self.diagnostics)

    @property
    def temporary(self) -> bool:
        """True when the same request may succeed later (429, 5xx, timeouts)."""
        return self.status_code in TRANSIENT_STATUSES or "TOOMANYREQUESTS" in self.codes


class UnauthorizedError(RegistryError):
    """401 or 403: credentials missing or wrong, or the token does not grant the scope."""


class RegistryNotFoundError(RegistryError, LookupError):
    """404: no such repository, manifest, blob or upload session."""


class RegistryUnreachableError(RegistryError, requests.ConnectionError):
    """No connection at all: refused (nothing listens on the port), an unknown host, or
    a TLS handshake that fails (HTTPS to a plain-HTTP registry, an untrusted
    certificate). Not retried, since waiting changes none of these. Also a
    ``requests.ConnectionError``, for code that catches that."""


class RetriesExhaustedError(RegistryError):
    """A request failed every time it was tried (resets, timeouts, 5xx, 429).

    :attr:`attempts` says how often, :attr:`last` is the last failure (an exception, or
    ``None`` when the registry answered: then :attr:`status_code` is its status).

    >>> e = RetriesExhaustedError("PATCH /v2/app/blobs/uploads/1f2e", attempts=5,
    ...                           last=ConnectionResetError(104, "Connection reset by peer"))
    >>> print(e)  # doctest: +NORMALIZE_WHITESPACE
    PATCH /v2/app/blobs/uploads/1f2e: gave up after 5 attempts; the last one failed with
    ConnectionResetError: [Errno 104] Connection reset by peer
      To fix: the registry or the network to it keeps failing: check that it runs
      (python -m hardway registry status) and read its log, then run the same command
      again (blobs the registry already has are not sent twice); to be more patient:
      --attempts 10, or attempts=10, backoff=2 in Python
    """

    def __init__(
        self,
        what: str,
        *,
        attempts: int,
        last: BaseException | None = None,
        response: requests.Response | None = None,
        diagnostics: list[Diagnostic] | tuple[Diagnostic, ...] = (),
    ) -> None:
        self.attempts, self.last = attempts, last
        if response is not None:
            why = f"{response.status_code} {response.reason or ''}".strip()
            if diagnostics:
                why += " " + "; ".join(d.explain() for d in diagnostics)
            retry_after = response.headers.get("Retry-After")
            why += f" (Retry-After: {retry_after})" if retry_after else ""
        else:
            why = f"{type(last).__name__}: {_short(last)}"
        super().__init__(
            f"{what}: gave up after {attempts} attempt{'s' * (attempts != 1)}; "
            f"the last one failed with {why}",
            response=response,
            fix=(
                "the registry or the network to it keeps failing: check that it runs "
                "(python -m hardway registry status) and read its log, then run the same "
                "command again (blobs the registry already has are not sent twice); to be "
                "more patient: --attempts 10, or attempts=10, backoff=2 in Python"
            ),
        )
        # after super(): the status and diagnostics are in the message already
        self.status_code = response.status_code if response is not None else None
        self.diagnostics = tuple(diagnostics)

    @property
    def temporary(self) -> bool:
        return True


def error_for(response: requests.Response, what: str) -> RegistryError:
    """The typed error for a registry's answer: its status, the diagnostics of its JSON
    body (``{"errors": [{"code", "message", "detail"}]}``) and a fix where one is known.

    >>> answer = requests.Response()
    >>> answer.status_code, answer._content = 404, b'{"errors": [{"code": "BLOB_UNKNOWN"}]}'
    >>> error = error_for(answer, "GET blob sha256:1f2e")
    >>> type(error).__name__, error.code
    ('RegistryNotFoundError', 'BLOB_UNKNOWN')
    """
    diagnostics = []
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        for item in response.json().get("errors", []):
            code = item.get("code", "UNKNOWN")
            diagnostics.append(Diagnostic(code, item.get("message", ""), item.get("detail")))
    status = response.status_code
    kind = {401: UnauthorizedError, 403: UnauthorizedError, 404: RegistryNotFoundError}.get(
        status, RegistryError
    )
    fix = None
    if status == 401 and not diagnostics:  # a HEAD has no body: say what the header says
        challenge = response.headers.get("WWW-Authenticate", "")
        sent = "Authorization" in response.request.headers if response.request else False
        sentence = (
            "the registry refused the credentials sent"
            if sent
            else f"the registry wants credentials ({challenge.split(' ')[0] or 'no challenge'})"
        )
        diagnostics.append(Diagnostic("UNAUTHORIZED", sentence))
    request = response.request
    if status == 401 and request is not None and "Authorization" in request.headers:
        what += " (the registry refused the credentials sent)"
    if kind is UnauthorizedError:
        fix = "give credentials: --creds USER:PASS, an --authfile, or Credentials(…)"
    elif "MANIFEST_BLOB_UNKNOWN" in (d.code for d in diagnostics):
        fix = "push every layer and the config before the manifest"
    return kind(what, status_code=status, diagnostics=diagnostics, response=response, fix=fix)


def check(response: requests.Response, what: str, *ok: int) -> requests.Response:
    """``response`` if its status is one of ``ok``, else raise :func:`error_for` it."""
    if response.status_code not in ok:
        raise error_for(response, what)
    return response


def _short(exc: BaseException | None) -> str:
    """An exception in one line: urllib3 nests the cause (``Connection aborted.``, …)."""
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "…"
