"""hardway.isolation.bridge and hardway.isolation.publish: containers on the course's bridge,
a port published on 127.0.0.1 (chapter 04, ``run --net bridge --publish``).

Traffic goes only to 127.0.0.1 and to the containers these tests start; nothing is
forwarded or NATed to the world. Every test checks that its bridge, pairs and proxies are
gone afterwards and that no host setting changed (``ip_forward``, ``route_localnet``).
"""

from __future__ import annotations

import doctest
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from interrupting import jupyter_interrupt

import hardway.isolation.bridge
import hardway.isolation.publish
from hardway.course import cleanup, leftovers
from hardway.errors import IsolationError, NetworkError
from hardway.isolation import bridge, network, rootfs, runtime
from hardway.isolation.publish import Port, Proxy

ROOT = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a bridge, veth pairs")
PAGE = "served from inside\n"
HTTPD = ["httpd", "-f", "-p", "80", "-h", "/www"]


def test_doctests() -> None:
    for module in (hardway.isolation.bridge, hardway.isolation.publish):
        assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("127.0.0.1:8080:80", Port("127.0.0.1", 8080, 80)),
        ("8080:80", Port("127.0.0.1", 8080, 80)),
        ("127.0.0.1::80", Port("127.0.0.1", 0, 80)),
        ("127.0.0.2:8080:80", Port("127.0.0.2", 8080, 80)),
    ],
)
def test_ports_are_read_as_docker_writes_them(text: str, port: Port) -> None:
    assert Port.parse(text) == port


@pytest.mark.parametrize("text", ["0.0.0.0:8080:80", "192.0.2.1:80:80", "80", "a:b:c", "1:99999"])
def test_ports_beyond_this_machine_or_unreadable_are_refused(text: str) -> None:
    with pytest.raises(NetworkError, match=r"127\.0\.0\.1|port"):
        Port.parse(text)


def test_a_range_this_machine_uses_is_a_clash() -> None:
    mine = [IPv4Network("10.253.0.128/25"), IPv4Network("192.0.2.0/24")]
    assert bridge.clash(bridge.SUBNET, mine) == mine[0]
    assert bridge.clash(bridge.SUBNET, mine[1:]) is None


def test_a_published_port_needs_a_network(tmp_path: Path) -> None:
    with pytest.raises(IsolationError, match="needs a network"):
        runtime.plan(tmp_path, ["true"], publish=["127.0.0.1:8080:80"])


def test_the_proxy_copies_both_ways_and_closes() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        Proxy(Port("127.0.0.1", 0, server.getsockname()[1]), "127.0.0.1") as proxy,
        socket.create_connection(("127.0.0.1", proxy.port.host_port), 5) as client,
    ):
        upstream, _ = server.accept()
        client.sendall(b"ping")
        client.shutdown(socket.SHUT_WR)
        assert upstream.recv(16) == b"ping"
        upstream.sendall(b"pong")
        upstream.close()
        assert client.recv(16) == b"pong"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port.host_port), 1)


# -- real containers -------------------------------------------------------------------


def _host_settings() -> dict[str, str]:
    paths = [Path("/proc/sys/net/ipv4/ip_forward")]
    paths += sorted(Path("/proc/sys/net/ipv4/conf").glob("*/route_localnet"))
    # not the course's own devices: veth pairs of other runs come and go meanwhile
    return {str(p): p.read_text() for p in paths if not p.parent.name.startswith("hw-")}


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Path]:
    """A busybox root with a page in ``/www``; and afterwards: no pair, no bridge of ours
    in use, no host setting changed."""
    before, links = _host_settings(), set(network.host_links())
    root = rootfs.build_busybox(tmp_path / "web").path
    (root / "www").mkdir()
    (root / "www" / "index.html").write_text(PAGE)
    yield root
    assert _host_settings() == before
    ours = {n for n in set(network.host_links()) - links if n.startswith(network.NAME_PREFIX)}
    assert ours <= {bridge.NAME}  # the bridge may be another run's, still in use
    assert not bridge.is_bridge(bridge.NAME) or bridge.ports()


def _get(port: int, host: str = "127.0.0.1") -> str:
    """The page at *host*:*port*, once the server inside has started."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/", timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@needs_root
def test_a_published_port_reaches_a_server_inside(web: Path) -> None:
    with runtime.start(web, HTTPD, net="bridge", publish=["127.0.0.1::80"]) as running:
        veth = running.container.veth
        assert veth is not None and veth.bridge == bridge.NAME
        assert veth.container_address.ip in bridge.subnet()
        assert veth.name in bridge.ports()
        (port,) = running.ports
        assert port.host_ip == "127.0.0.1" and port.host_port > 0
        assert _get(port.host_port) == PAGE
        routes = running.container.exec(["ip", "-4", "route"]).stdout
        assert f"default via {bridge.subnet()[1]} dev eth0" in routes


def _bridge_firewalled() -> bool:
    """Frames between ports of a bridge pass iptables' FORWARD chain, and its policy drops
    them (a Docker host); only read here, never changed."""
    knob = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not knob.exists() or knob.read_text().strip() != "1" or not shutil.which("iptables"):
        return False
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True)
    return "-P FORWARD ACCEPT" not in rules.stdout


@needs_root
@pytest.mark.skipif(_bridge_firewalled(), reason="the firewall drops bridged frames (Docker?)")
def test_containers_on_the_bridge_reach_each_other(web: Path) -> None:
    with runtime.start(web, HTTPD, net="bridge") as server:
        with runtime.start(web, ["sleep", "30"], net="bridge") as client:
            assert (
                client.container.veth.container_address != server.container.veth.container_address
            )
            address = server.container.veth.container_address.ip
            fetch = ["wget", "-q", "-O", "-", f"http://{address}/"]
            deadline = time.monotonic() + 10
            while (got := client.container.exec(fetch)).returncode and time.monotonic() < deadline:
                time.sleep(0.05)
            assert got.stdout == PAGE
        assert client.container.veth.name not in network.host_links()


@needs_root
def test_a_veth_pair_of_its_own_still_works(web: Path) -> None:
    with runtime.start(web, HTTPD, net=True, publish=["127.0.0.1::80"]) as running:
        assert running.container.veth.bridge is None
        assert _get(running.ports[0].host_port) == PAGE


@needs_root
def test_a_port_in_use_is_refused_and_nothing_is_left(web: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = f"127.0.0.1:{taken.getsockname()[1]}:80"
        with pytest.raises(NetworkError, match="cannot publish") as caught:
            runtime.run(web, HTTPD, net="bridge", publish=[busy])
    assert "another host port" in caught.value.fix


@needs_root
@pytest.mark.parametrize("after", [0.02, 0.1, 0.3])
def test_a_keyboard_interrupt_leaves_no_pair_bridge_or_proxy(web: Path, after: float) -> None:
    """A Jupyter interrupt at whatever step a published run is in."""

    before = leftovers.snapshot()
    with jupyter_interrupt(after), pytest.raises(KeyboardInterrupt):
        runtime.run(web, HTTPD, net="bridge", publish=["127.0.0.1::80"], init=True)
    assert leftovers.settle(before) == []
    assert not any(t.name == "hardway-proxy" for t in threading.enumerate())


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


@needs_root
def test_cli_publish_then_ctrl_c_removes_everything(web: Path) -> None:
    port = _free_port()
    argv = ["run", "--net", "bridge", "--publish", f"127.0.0.1:{port}:80", str(web), "--", *HTTPD]
    cli = subprocess.Popen(
        [sys.executable, "-m", "hardway", *argv], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _get(port) == PAGE
    finally:
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=30)
    assert (cli.returncode, err) == (130, "interrupted\n")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), 1)


@needs_root
def test_cli_bare_net_is_still_a_pair_of_its_own(busybox_rootfs: Path) -> None:
    argv = ["run", "--net", str(busybox_rootfs), "--", "ip", "-4", "-o", "route"]
    done = subprocess.run(
        [sys.executable, "-m", "hardway", *argv], capture_output=True, text=True, cwd=ROOT,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "/30 dev eth0" in done.stdout and "default" not in done.stdout


@needs_root
@pytest.mark.skipif(bridge.is_bridge(bridge.NAME), reason="another run's bridge is up")
def test_a_clashing_range_is_refused(busybox_rootfs: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARDWAY_BRIDGE_SUBNET", "127.0.0.0/24")  # lo's 127.0.0.0/8
    with pytest.raises(NetworkError, match=r"overlaps 127\.0\.0\.0/8") as caught:
        runtime.run(busybox_rootfs, ["true"], net="bridge")
    assert "HARDWAY_BRIDGE_SUBNET" in caught.value.fix
    assert not bridge.is_bridge(bridge.NAME)


@needs_root
def test_cleanup_removes_an_empty_bridge() -> None:
    name = f"hw-brt{os.getpid() % 10**6}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        removed = cleanup.cleanup(os.environ.get("HARDWAY_SESSION"))
        assert f"network device {name}" in removed
        assert not bridge.is_bridge(name)
    finally:
        subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
