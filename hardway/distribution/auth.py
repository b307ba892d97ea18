"""hardway.distribution.auth
~~~~~~~~~~~~~~~~~~~~~~~~~

A registry says *how* to authenticate only when it refuses: a ``401`` whose
``WWW-Authenticate`` header names a scheme. ``Basic realm="…"`` wants a user and a
password on every request; ``Bearer realm="https://auth/token",service="…",scope="…"``
wants a token, fetched from ``realm`` for exactly those scopes, then the same request
again. That is why auth here is a :class:`requests.auth.AuthBase` with a response hook,
like requests' ``HTTPDigestAuth``: any request may be answered with a challenge, and the
hook answers it and re-sends, so the client code above never sees the dance.

What it answers with — a user and password, or tokens — is a
:class:`~hardway.distribution.credentials.Credentials`, read from Docker's
``config.json`` by :mod:`hardway.distribution.credentials`. Secrets never reach a repr,
a log line or an error message: :class:`BearerAuth` prints ``***``, as ``Credentials``
does.

>>> parse_challenges('Bearer realm="https://a/t",service="reg",scope="repository:x:pull,push"')
... # doctest: +NORMALIZE_WHITESPACE
[Challenge(scheme='bearer',
           params={'realm': 'https://a/t', 'service': 'reg', 'scope': 'repository:x:pull,push'})]
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from requests.auth import AuthBase

from hardway.distribution.credentials import Credentials
from hardway.distribution.errors import UnauthorizedError

__all__ = ["BearerAuth", "Challenge", "merge_scopes", "must_resend", "parse_challenges"]

#: tokens live at least this long (Distribution's token spec; containers/image clamps too)
MIN_EXPIRY = 60


# --- challenges -------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: a scheme and its parameters."""

    scheme: str
    params: dict[str, str]


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(?:,|$)')
_SCHEME = re.compile(rf"\s*,?\s*({_TOKEN})(?:\s+|$)")


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in a ``WWW-Authenticate`` value (RFC 9110 §11.6.1).

    Quoted values may hold commas (``scope="repository:x:pull,push"``), so the header is
    scanned, never split on ``,``.

    >>> [c.scheme for c in parse_challenges('Basic realm="a, b", Bearer realm="t"')]
    ['basic', 'bearer']
    """
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme = _SCHEME.match(header, pos)
        if not scheme:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while param := _PARAM.match(header, pos):
            quoted, plain = param.group(2), param.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain
            params[param.group(1).lower()] = value
            pos = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


#: the order actions are written in a scope: Distribution lists them in a random (Go map)
#: order, and a stable order keeps token caches and logs comparable
_ACTION_ORDER = {"pull": 0, "push": 1, "delete": 2, "*": 3}


def merge_scopes(*groups: str | list[str] | tuple[str, ...]) -> list[str]:
    """One scope per resource, actions joined, scopes that push first.

    Some registries read only the first scope, so it must be the repository pushed to:
    push scopes come first, those the earliest group asked to push (the challenge at
    hand, before scopes remembered from earlier) ahead of the others, then by name —
    never in the order a registry happened to list them.

    >>> merge_scopes("repository:a:pull", ["repository:b:pull", "repository:a:push"])
    ['repository:a:pull,push', 'repository:b:pull']
    >>> merge_scopes("repository:new:push,pull repository:old:pull", ["repository:old:push"])
    ['repository:new:pull,push', 'repository:old:pull,push']
    """
    merged: dict[tuple[str, str], list[str]] = {}
    pushed_in: dict[tuple[str, str], int] = {}
    for index, group in enumerate(groups):
        for text in [group] if isinstance(group, str) else group:
            for item in text.split():
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                have = merged.setdefault((kind, name), [])
                have += [a for a in actions.split(",") if a and a not in have]
                if "push" in actions.split(","):
                    pushed_in.setdefault((kind, name), index)

    def rank(key: tuple[str, str]) -> tuple[bool, int, tuple[str, str]]:
        return key not in pushed_in, pushed_in.get(key, 0), key

    def ordered(actions: list[str]) -> str:
        return ",".join(sorted(actions, key=lambda a: (_ACTION_ORDER.get(a, 9), a)))

    return [f"{k}:{n}:{ordered(merged[k, n])}" for k, n in sorted(merged, key=rank)]


def _covers(granted: list[str], wanted: list[str]) -> bool:
    return merge_scopes(granted, wanted) == merge_scopes(granted)


def _position(body: object) -> int | None:
    """Where a seekable body stream starts, to rewind it for a re-send; ``None`` if it can't."""
    try:
        return body.tell() if hasattr(body, "seekable") and body.seekable() else None
    except OSError:
        return None


# --- the auth hook ----------------------------------------------------------------------


class BearerAuth(AuthBase):
    """Answer a registry's 401 challenges: fetch a bearer token (or use Basic) and re-send.

    :param credentials: (optional) sent to the token service, or as Basic auth
    :param scopes: (optional) scopes to ask for besides the challenge's (e.g. ``pull`` on
        the repository a layer is mounted from)

    Tokens are cached per (realm, service, scopes) until ``expires_in`` runs out; a
    challenge naming a scope the current token lacks fetches a new one for the union.
    """

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        scopes: tuple[str, ...] | list[str] = (),
        timeout: float = 30.0,
    ) -> None:
        self.credentials = credentials or Credentials()
        self.scopes: list[str] = list(scopes)
        self.timeout = timeout
        #: how many tokens were fetched (tests and notebooks look)
        self.tokens_fetched = 0
        self._cache: dict[tuple[str, str, tuple[str, ...]], tuple[str, float]] = {}
        self._current: tuple[str, float, list[str], Challenge] | None = None
        self._basic = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        token = "***" if self._current else None
        return (
            f"BearerAuth(credentials={self.credentials!r}, scopes={self.scopes!r}, token={token})"
        )

    def add_scope(self, scope: str) -> None:
        """Ask for ``scope`` too from now on (the next token fetched includes it)."""
        with self._lock:  # parallel uploads add mount scopes at once
            if scope not in self.scopes:
                self.scopes.append(scope)

    # requests calls this on every request
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.credentials.registry_token:
            request.headers["Authorization"] = f"Bearer {self.credentials.registry_token}"
        elif self._basic:
            request.headers["Authorization"] = self.credentials.basic()
        elif self._current is not None:
            token, expiry, scopes, challenge = self._current
            if time.monotonic() >= expiry:  # refresh before sending: a body can't be re-sent
                token = self._token(challenge, merge_scopes(scopes, self.scopes))
            request.headers["Authorization"] = f"Bearer {token}"
        request._hardway_pos = _position(request.body)  # type: ignore[attr-defined]
        request.register_hook("response", self.handle_401)
        return request

    def handle_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """The response hook: answer a challenge, re-send, and return the new response.

        A bearer token refused on the re-send is answered once more, if a newer token is
        to be had: under threads, the token just fetched may already have been refused
        on another request, and its successor is in the cache.
        """
        history: list[requests.Response] = []
        for _ in range(2):
            if response.status_code != 401:
                break
            request = response.request
            header = self._answer(response)
            if header is None or header == request.headers.get("Authorization"):
                break  # nothing (new) to answer with
            if request.body is not None:
                position = getattr(request, "_hardway_pos", None)
                if position is None and not isinstance(request.body, bytes | str):
                    # a stream that cannot be rewound: the caller opens it again, re-sends
                    response.hardway_resend = True  # type: ignore[attr-defined]
                    break
                if position is not None:
                    request.body.seek(position)
            response.content  # noqa: B018 - read the body so the connection can be reused
            response.close()
            retry = request.copy()
            retry.headers["Authorization"] = header
            retry._hardway_pos = getattr(request, "_hardway_pos", None)  # type: ignore[attr-defined]
            again = response.connection.send(retry, **kwargs)
            again.request = retry
            history.append(response)
            response = again
        response.history = history + response.history
        return response

    def _answer(self, response: requests.Response) -> str | None:
        """The ``Authorization`` that answers a 401's challenge, or ``None`` if none can."""
        challenges = {
            c.scheme: c for c in parse_challenges(response.headers.get("WWW-Authenticate", ""))
        }
        # judge what this request carried: in a parallel push, a request sent before
        # another thread got the token (or learned to send Basic) refused nothing
        sent = response.request.headers.get("Authorization", "")
        if "bearer" in challenges:
            challenge = challenges["bearer"]
            wanted = merge_scopes(challenge.params.get("scope", ""), self.scopes)
            current = self._current
            granted = current is not None and _covers(current[2], wanted)
            if (
                granted
                and sent == f"Bearer {current[0]}"
                and challenge.params.get("error") == "insufficient_scope"
            ):
                return None  # the service granted less than asked: nothing to retry
            # a token refused although we thought it valid (expired early, revoked) is
            # never used again; another thread may have fetched its successor already
            return f"Bearer {self._token(challenge, wanted, stale=sent.removeprefix('Bearer '))}"
        if "basic" in challenges and self.credentials.username:
            if sent == self.credentials.basic():
                return None  # these credentials were refused
            self._basic = True
            return self.credentials.basic()
        return None

    def _token(self, challenge: Challenge, scopes: list[str], *, stale: str = "") -> str:
        """A token for ``scopes``: cached if still valid and not ``stale`` (one the
        registry just refused), else fetched. Threads share it: under concurrent 401s,
        the first fetches and the others reuse its token."""
        realm = challenge.params.get("realm", "")
        service = challenge.params.get("service", "")
        key = (realm, service, tuple(scopes))
        with self._lock:
            cached = self._cache.get(key)
            if stale:
                for other, (token, _) in list(self._cache.items()):
                    if token == stale:
                        del self._cache[other]
                cached = self._cache.get(key)
            if cached and time.monotonic() < cached[1]:
                token, expiry = cached
            else:
                token, lifetime = self._fetch(realm, service, scopes)
                expiry = time.monotonic() + lifetime - 5
                self._cache[key] = (token, expiry)
            self._current = (token, expiry, scopes, challenge)
            return token

    def _fetch(self, realm: str, service: str, scopes: list[str]) -> tuple[str, float]:
        if not realm.startswith(("http://", "https://")):
            raise UnauthorizedError(
                f"the registry's Bearer challenge has no usable realm: {realm!r}"
            )
        creds = self.credentials
        with requests.Session() as session:
            if creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "service": service,
                    "scope": " ".join(scopes),
                    "client_id": "hardway",
                }
                reply = session.post(realm, data=form, timeout=self.timeout)
                if reply.status_code == 404:  # the service has no OAuth2 endpoint: plain GET
                    reply = session.get(
                        realm, params=self._params(service, scopes), timeout=self.timeout
                    )
            else:
                auth = (creds.username, creds.password) if creds.username else None
                reply = session.get(
                    realm, params=self._params(service, scopes), auth=auth, timeout=self.timeout
                )
        self.tokens_fetched += 1
        if reply.status_code != 200:
            who = f"user {creds.username!r}" if creds.username else "anonymous access"
            raise UnauthorizedError(
                f"the token service {realm} refused {who} for {' '.join(scopes) or 'no scope'}",
                status_code=reply.status_code,
                response=reply,
                fix="check the user and password (--creds USER:PASS, or the authfile)",
            )
        doc = reply.json()
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise UnauthorizedError(f"the token service {realm} answered without a token")
        return token, max(MIN_EXPIRY, int(doc.get("expires_in") or MIN_EXPIRY))

    @staticmethod
    def _params(service: str, scopes: list[str]) -> list[tuple[str, str]]:
        return [("service", service), *(("scope", s) for s in scopes)]


def must_resend(response: requests.Response) -> bool:
    """Did :class:`BearerAuth` answer this 401 but leave the re-send to the caller? It
    does when the body is a stream it cannot rewind: the caller opens it again."""
    return getattr(response, "hardway_resend", False)
