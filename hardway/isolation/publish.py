"""hardway.isolation.publish
~~~~~~~~~~~~~~~~~~~~~~~~~

``docker run -p 127.0.0.1:8080:80`` *publishes* a container's port: a client on the
host connects to ``127.0.0.1:8080`` and talks to port 80 inside. Docker does it two
ways at once:

* with a *DNAT rule* (iptables/nftables): the kernel rewrites the destination of each
  packet to the container's address. For a packet that comes from ``127.0.0.1`` this
  needs ``net.ipv4.conf.<if>.route_localnet=1`` — a host setting — because the kernel
  otherwise refuses to route a loopback address anywhere but ``lo``;
* with ``docker-proxy``, a small userland forwarder that listens on the host port and
  copies bytes to the container's address and back. That is what answers a client on
  the loopback address when no such sysctl is set.

The course does it the second way — :class:`Proxy`, a thread in the calling process —
because it changes nothing on the host: no rule, no sysctl, and nothing outlives the
process that published the port. Only loopback host addresses are accepted: what a
container serves stays on this machine.

>>> Port.parse("127.0.0.1:8080:80"), Port.parse("8080:80").host_ip
(Port(host_ip='127.0.0.1', host_port=8080, container_port=80), '127.0.0.1')
>>> Port.parse("127.0.0.1::80").host_port
0
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import threading
from dataclasses import dataclass, replace
from typing import Self

from hardway.errors import NetworkError

__all__ = ["Port", "Proxy"]

_CHUNK = 65536


@dataclass(frozen=True)
class Port:
    """One published port: ``HOST_IP:HOST_PORT:CONTAINER_PORT`` (a host port of 0 means
    any free one, as ``-p 127.0.0.1::80`` does)."""

    host_ip: str
    host_port: int
    container_port: int

    @classmethod
    def parse(cls, text: str) -> Port:
        """``[HOST_IP:][HOST_PORT]:CONTAINER_PORT`` as ``docker run -p`` writes it; the host
        address defaults to ``127.0.0.1`` (Docker's is every address: not here)."""
        parts = text.split(":")
        if len(parts) == 2:
            parts.insert(0, "127.0.0.1")
        try:
            host_ip, host_port, container_port = parts
            port = cls(host_ip, int(host_port or 0), int(container_port))
            loopback = ipaddress.ip_address(host_ip).is_loopback
        except ValueError:
            raise NetworkError(
                f"cannot read the published port {text!r}",
                fix="write it as HOST_IP:HOST_PORT:CONTAINER_PORT, e.g. 127.0.0.1:8080:80",
            ) from None
        if not loopback:
            raise NetworkError(
                f"{text!r} would publish the port on {host_ip}, beyond this machine",
                fix="publish on a loopback address: 127.0.0.1:HOST_PORT:CONTAINER_PORT",
            )
        if not (0 <= port.host_port < 65536 and 0 < port.container_port < 65536):
            raise NetworkError(f"{text!r}: a port is a number from 1 to 65535")
        return port

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/tcp"


class Proxy:
    """``docker-proxy`` in a thread: listen on *port*'s host address, and copy each
    connection's bytes to ``target:container_port`` and back.

    The socket is bound at once (a port already in use is an error here, not later);
    :attr:`port` is then the bound one. Use it in a ``with`` block: at its end the
    listener and every open connection are closed and the thread is gone.
    """

    def __init__(self, port: Port, target: str) -> None:
        self.target = (target, port.container_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((port.host_ip, port.host_port))
        except OSError as exc:
            self._listener.close()
            raise NetworkError(
                f"cannot publish on {port.host_ip}:{port.host_port}: {exc.strerror}",
                fix="choose another host port (or none: HOST_IP::CONTAINER_PORT)",
            ) from None
        self._listener.listen(16)
        self.port = replace(port, host_port=self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Proxy {self.port} to {self.target[0]}>"

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="hardway-proxy")
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                self._listener.settimeout(0.1)
                client, _ = self._listener.accept()
                self._spawn(self._forward, client)

    def _forward(self, client: socket.socket) -> None:
        """Copy bytes both ways until both sides have finished (or :meth:`close`)."""
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()  # the container does not answer: so does the port
            return
        pair = {client: upstream, upstream: client}
        with self._lock:
            self._open.update(pair)
        with selectors.DefaultSelector() as selector:
            for sock in pair:
                sock.setblocking(True)
                selector.register(sock, selectors.EVENT_READ)
            while selector.get_map() and not self._stop.is_set():
                for key, _ in selector.select(0.1):
                    self._copy(key.fileobj, pair[key.fileobj], selector)  # type: ignore[index]
        for sock in pair:
            with self._lock:
                self._open.discard(sock)
            sock.close()

    @staticmethod
    def _copy(source: socket.socket, sink: socket.socket, selector: selectors.BaseSelector) -> None:
        try:
            data = source.recv(_CHUNK)
            if data:
                sink.sendall(data)
                return
            with contextlib.suppress(OSError):  # EOF: pass it on, keep the other way open
                sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # reset: stop reading this side
        selector.unregister(source)

    def close(self) -> None:
        """Stop listening, close every connection and wait for the threads; idempotent."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()
            self._open.clear()
