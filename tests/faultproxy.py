"""A fault-injecting HTTP proxy for tests: it sits on loopback between our client and the
real registry and, on the requests a test picks, misbehaves the way networks and load
balancers do.

Why an HTTP-aware proxy rather than a byte pump: a fault must land on *one* request (the
third PATCH, the manifest PUT), and a reset must cut a body in the middle, so the proxy
reads each request and response whole and decides per request. Faults (:class:`Fault`):

``reset-request``   read half the request body, pass that half to the registry, then
                    reset both connections (the outcome of the request is unknown)
``reset-response``  forward the request, then send half of the answer's body, end the
                    stream there and reset: the client reads what arrived, then finds
                    the body broken off (no body: half the head, then a reset)
``status``          answer ``status`` (500, 502, 503, 429 with ``Retry-After``…) without
                    forwarding, as a load balancer in front of the registry does
``stall``           read the request and never answer (until ``stall`` seconds pass or
                    the proxy stops): the client's read timeout must fire
``expire-token``    forward the request with its bearer token replaced by the same
                    token expired (re-signed by the token service's key with ``exp`` in
                    the past): the real registry answers ``401`` with a fresh challenge.
                    Only a token that already went through on an earlier request expires
                    (a token refused the moment it was issued means bad credentials), and
                    it stays expired: every later request with it is refused too
                    (counted as ``expire-token-again``)

The Host header is passed through, so the registry's ``Location`` headers point back at
the proxy and every later request of an upload comes through it too.

>>> Fault("status", status=429, retry_after="1")
Fault(kind='status', status=429, retry_after='1', stall=5.0)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"}
KINDS = ("reset-request", "reset-response", "status", "stall", "expire-token")


@dataclass(frozen=True)
class Fault:
    """What to do to one request (see the module docstring)."""

    kind: str
    status: int = 503
    retry_after: str | None = None
    stall: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind {self.kind!r} is not one of {KINDS}")

    @property
    def label(self) -> str:
        """How :attr:`FaultProxy.injected` counts it: ``status-429``, ``reset-request``…"""
        return f"status-{self.status}" if self.kind == "status" else self.kind


@dataclass
class Rule:
    """Inject ``fault`` into the next ``times`` requests that match (``-1``: forever).

    :param method: only this method (``PATCH``), or these (``PATCH|PUT``)
    :param path: only paths matching this regular expression (``/blobs/uploads/``)
    :param bearer: only requests that carry a bearer token used on an earlier request
    """

    fault: Fault
    method: str | None = None
    path: str | None = None
    bearer: bool = False
    times: int = 1
    fired: int = field(default=0, init=False)

    def matches(self, method: str, path: str, used_token: bool) -> bool:
        if self.times != -1 and self.fired >= self.times:
            return False
        if self.method and method not in self.method.split("|"):
            return False
        if self.path and not re.search(self.path, path):
            return False
        return not self.bearer or used_token

    @property
    def done(self) -> bool:
        return self.times != -1 and self.fired >= self.times


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<upstream>``, injecting faults by rule.

    Use as a context manager (``with FaultProxy(5000) as proxy:``); :attr:`host` is what
    a client talks to. :meth:`add` queues rules; the first unspent matching rule fires.

    :param expire: (optional) turns a bearer token into an expired one (``expire-token``)
    :param ranges: (optional) ``False``: drop ``Range`` headers, as a server that does
        not support ranges would ignore them (the whole body comes back, ``200``)
    """

    def __init__(
        self, upstream: int, *, expire: Callable[[str], str] | None = None, ranges: bool = True
    ) -> None:
        self.upstream = upstream
        self.expire = expire
        self.forward_ranges = ranges
        self.rules: list[Rule] = []
        #: faults injected, by :attr:`Fault.label`
        self.injected: Counter[str] = Counter()
        #: ``(method, path, label or "")`` of every request seen
        self.log: list[tuple[str, str, str]] = []
        #: the ``Range`` header of every request that had one (resumed downloads)
        self.ranges: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._tokens: set[str] = set()
        self._expired: set[str] = set()
        self._server: socketserver.ThreadingTCPServer | None = None

    # --- rules ------------------------------------------------------------------------

    def add(self, fault: Fault | str, **match: Any) -> Rule:
        rule = Rule(Fault(fault) if isinstance(fault, str) else fault, **match)
        with self._lock:
            self.rules.append(rule)
        return rule

    def pending(self) -> list[Rule]:
        """Rules that have not fired as often as asked (a test asserts there are none)."""
        with self._lock:
            return [r for r in self.rules if r.times != -1 and not r.done]

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _pick(self, method: str, path: str, headers: Any) -> Fault | None:
        authorization = headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization[:7] == "Bearer " else ""
        with self._lock:
            used = bool(token) and token in self._tokens
            if token:
                self._tokens.add(token)
            if token in self._expired:
                self.injected["expire-token-again"] += 1
                self.log.append((method, path, "expire-token-again"))
                return Fault("expire-token")
            for rule in self.rules:
                if rule.matches(method, path, used):
                    if rule.fault.kind == "expire-token":
                        if self.expire is None:
                            continue
                        self._expired.add(token)
                    rule.fired += 1
                    self.injected[rule.fault.label] += 1
                    self.log.append((method, path, rule.fault.label))
                    return rule.fault
            self.log.append((method, path, ""))
            return None

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not started"
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = False
        self._server.block_on_close = True
        serve = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="faultproxy", daemon=True
        )
        serve.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut every open connection and wait for the handler threads."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads
        self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer sees ECONNRESET, not a clean end of stream."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def _cut(sock: socket.socket) -> None:
    """End the stream (FIN, after the bytes sent), wait for the client to notice and
    close, then reset. A reset alone could make the client's kernel drop bytes it had
    received but not yet read, so the client would never see the half answer."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.5)
        while sock.recv(65536):
            pass
    _reset(sock)


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.upstream: http.client.HTTPConnection | None = None
            with proxy._lock:
                proxy._sockets.add(self.connection)

        def finish(self) -> None:
            with proxy._lock:
                proxy._sockets.discard(self.connection)
            if self.upstream is not None:
                self.upstream.close()
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _proxy(self) -> None:
            method, path = self.command, self.path
            length = int(self.headers.get("Content-Length") or 0)
            fault = proxy._pick(method, path, self.headers)
            if "Range" in self.headers:
                with proxy._lock:
                    proxy.ranges.append(self.headers["Range"])
            dropped = _HOP_BY_HOP if proxy.forward_ranges else _HOP_BY_HOP | {"range"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
            if fault is not None and fault.kind == "reset-request":
                self._reset_mid_request(method, path, headers, length)
                return
            body = self.rfile.read(length) if length else b""
            if fault is not None and fault.kind == "status":
                self._answer(fault)
                return
            if fault is not None and fault.kind == "stall":
                proxy._stopping.wait(fault.stall)
                self.close_connection = True
                return
            if fault is not None and fault.kind == "expire-token":
                token = headers["Authorization"].removeprefix("Bearer ")
                headers["Authorization"] = f"Bearer {proxy.expire(token)}"  # type: ignore[misc]
            status, reason, answer, data = self._forward(method, path, headers, body)
            if fault is not None and fault.kind == "reset-response":
                whole = self._head(status, reason, answer) + data
                cut = (
                    len(whole) - len(data) // 2 if data else len(whole) // 2
                )  # no body: cut the head
                self.wfile.write(whole[:cut])
                self.wfile.flush()
                # a cut head is a plain reset: ended with FIN, http.client would take
                # the half head for a whole one
                (_cut if data else _reset)(self.connection)
                self.close_connection = True
                return
            self.wfile.write(self._head(status, reason, answer) + data)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy

        def _connection(self) -> http.client.HTTPConnection:
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=30)
            return self.upstream

        def _forward(
            self, method: str, path: str, headers: dict[str, str], body: bytes
        ) -> tuple[int, str, list[tuple[str, str]], bytes]:
            conn = self._connection()
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            answer = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            chunked = "chunked" in (response.getheader("Transfer-Encoding") or "")
            if chunked and method != "HEAD" and response.status not in (204, 304):
                answer.append(("Content-Length", str(len(data))))
            if response.will_close:
                conn.close()
                self.upstream = None
            return response.status, response.reason, answer, data

        def _head(self, status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
            lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

        def _answer(self, fault: Fault) -> None:
            code = "TOOMANYREQUESTS" if fault.status == 429 else "UNAVAILABLE"
            data = json.dumps({"errors": [{"code": code, "message": "injected"}]}).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
            if fault.retry_after is not None:
                headers.append(("Retry-After", fault.retry_after))
            reason = http.client.responses.get(fault.status, "Error")
            self.wfile.write(self._head(fault.status, reason, headers) + data)

        def _reset_mid_request(
            self, method: str, path: str, headers: dict[str, str], length: int
        ) -> None:
            """Pass half the body on, then reset both sides: nobody knows how far it got."""
            half = self.rfile.read(length // 2) if length else b""
            upstream = socket.create_connection(("127.0.0.1", proxy.upstream), timeout=5)
            try:
                head = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
                upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + half)
                time.sleep(0.05)  # let the registry read what arrived before the reset
            finally:
                _reset(upstream)
            _reset(self.connection)
            self.close_connection = True

    return Handler


def expired(token: str, key: Any, cert: Any) -> str:
    """``token`` re-signed with ``key`` and ``exp`` in the past: what the registry sees when
    a token the client still trusts has run out."""
    from hardway.distribution.server.tokenserver import decode_jwt, sign_jwt

    claims = decode_jwt(token)
    now = int(time.time())
    claims.update(exp=now - 60, nbf=now - 120, iat=now - 120)
    return sign_jwt(claims, key, cert)
