"""hardway.course.checks.pushwatch
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 07 run the learner's push client against the real registry in token
mode, through :class:`PushWatch`: a small HTTP relay on 127.0.0.1 that forwards every
request to the registry (or, under ``/token-service/``, to its token service) unchanged
and writes down what it saw — method, path, which credentials, ``Content-Range``, how
many body bytes — so that a check can *count*: a mount sends no blob bytes, a blob the
registry has is not uploaded again, the password never reaches the registry.

Two answers are changed on the way back, both as the spec allows, so the learner's code
must follow them rather than guess: an upload's ``Location`` comes back *relative* to the
request (``4f1…?_state=…``: resolve it, as a browser resolves a link), and the
challenge's ``realm`` points at the relay, so the token requests are seen too.
"""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from hardway.distribution.server import local_registry
from hardway.distribution.server.local_registry import RegistryStatus

__all__ = ["Exchange", "PushWatch", "start_token_registry", "stop_token_registry"]

TOKEN_PREFIX = "/token-service"
_REALM = re.compile(r'realm="([^"]*)"')
_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


@dataclass
class Exchange:
    """One request the relay forwarded, and the status of its answer."""

    method: str
    path: str  #: as the client sent it, query included
    to_token_service: bool
    credentials: str  #: "basic", "bearer" or ""
    content_range: str | None
    sent: int  #: body bytes
    status: int = 0
    location: str | None = None  #: as the client got it
    scopes: list[str] = field(default_factory=list)  #: of a token request

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)


def start_token_registry() -> RegistryStatus:
    """A registry in token mode on a free port of its own, with the course's token
    service, for one check: the course's user is ``learner``/``containers``, anonymous
    users may do nothing. :func:`stop_token_registry` when the check ends."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return local_registry.start_mode(port, "token")


def stop_token_registry(status: RegistryStatus) -> None:
    """Stop the registry and its token service, and remove their state."""
    local_registry.stop(status.port)
    shutil.rmtree(status.state, ignore_errors=True)


class PushWatch:
    """The relay: ``with PushWatch(registry_url) as watch:`` then send to
    ``watch.address``; ``watch.log`` lists what came by."""

    def __init__(self, registry_url: str) -> None:
        self.upstream = urlsplit(registry_url).netloc
        self.token_upstream = ""
        self.log: list[Exchange] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PushWatch:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()

    def since(self, start: int) -> list[Exchange]:
        with self.lock:
            return list(self.log[start:])

    def record(self, exchange: Exchange) -> None:
        with self.lock:
            self.log.append(exchange)


def _relative(location: str, request_path: str) -> str:
    """``location`` (a path) relative to the request's directory when it lies there."""
    folder = urlsplit(request_path).path.rpartition("/")[0] + "/"
    if location.startswith(folder) and "/" not in location[len(folder) :].split("?")[0]:
        return location[len(folder) :]
    return location


def _handler(watch: PushWatch) -> type[BaseHTTPRequestHandler]:
    class Relay(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return data
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _relay(self) -> None:
            body = self._body()
            auth = self.headers.get("Authorization", "").split(" ")[0].lower()
            to_token = self.path.startswith(TOKEN_PREFIX)
            exchange = Exchange(
                self.command,
                self.path,
                to_token,
                auth,
                self.headers.get("Content-Range"),
                len(body),
            )
            if to_token:
                exchange.scopes = [
                    s
                    for item in parse_qs(urlsplit(self.path).query).get("scope", [])
                    for s in item.split()
                ]
            host = watch.token_upstream if to_token else watch.upstream
            path = self.path[len(TOKEN_PREFIX) :] if to_token else self.path
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            headers["Content-Length"] = str(len(body))
            upstream = http.client.HTTPConnection(host, timeout=60)
            try:
                upstream.request(self.command, path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
            finally:
                upstream.close()
            exchange.status = answer.status
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                low = key.lower()
                if low in _HOP:
                    continue
                if low == "location":
                    value = _relative(_path_of(value), self.path)
                    exchange.location = value
                elif low == "www-authenticate":
                    value = _REALM.sub(lambda m: f'realm="{_realm(watch, m[1])}"', value)
                self.send_header(key, value)
            length = answer.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            watch.record(exchange)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

    return Relay


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "") if parts.netloc else url


def _realm(watch: PushWatch, realm: str) -> str:
    parts = urlsplit(realm)
    watch.token_upstream = parts.netloc
    return f"http://{watch.address}{TOKEN_PREFIX}{parts.path}"
