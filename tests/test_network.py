"""hardway.isolation.network: a new network namespace is empty; a veth pair joins it to the host.

The traffic here stays on this machine, between the host end of a pair and the
container's end: each pair has its own private /30, and there is no default route.
"""

from __future__ import annotations

import doctest
import os
import random
import socket
import subprocess
import time
from ipaddress import IPv4Network
from pathlib import Path

import pytest

import hardway.isolation.network
from hardway.errors import NetworkError
from hardway.isolation import network
from hardway.isolation.container import run, start
from hardway.isolation.namespaces import Isolation

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: veth pairs")


def test_doctests() -> None:
    assert doctest.testmod(hardway.isolation.network).failed == 0


def test_free_subnet_avoids_what_is_taken() -> None:
    rng = random.Random(7)
    taken = [IPv4Network("10.254.0.0/17"), IPv4Network("10.254.128.0/18")]
    for _ in range(200):
        subnet = network.free_subnet(taken, rng=rng)
        assert subnet.prefixlen == 30 and subnet.subnet_of(network.POOL)
        assert not any(subnet.overlaps(t) for t in taken)
        assert subnet.network_address >= IPv4Network("10.254.192.0/18").network_address
    with pytest.raises(NetworkError, match="no free /30"):
        network.free_subnet([IPv4Network("10.0.0.0/8")], rng=rng)


def test_a_pair_has_two_ends_in_one_subnet() -> None:
    veth = network.Veth("hw-abcdef", IPv4Network("10.254.7.8/30"))
    ends = (str(veth.host_address), str(veth.container_address))
    assert ends == ("10.254.7.9/30", "10.254.7.10/30")
    assert veth.peer == "hw-abcdef-c" and len(veth.peer) < 16  # IFNAMSIZ
    assert network.Veth.from_json(veth.to_json()) == veth


def test_allocate_picks_a_subnet_no_route_uses() -> None:
    veth = network.allocate()
    assert veth.name.startswith("hw-") and len(veth.name) == 9
    assert not any(veth.subnet.overlaps(net) for net in network.host_networks())


@needs_root
def test_a_new_network_namespace_has_only_loopback_and_it_is_up() -> None:
    done = run(Isolation({"net"}), ["ip", "-o", "link", "show"])
    assert done.ok, done
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].split()[1] == "lo:"
    assert "UP" in lines[0].split()[2]
    addresses = run(Isolation({"net"}), ["ip", "-o", "-4", "addr"]).stdout
    assert [line.split()[1:4] for line in addresses.splitlines()] == [["lo", "inet", "127.0.0.1/8"]]


@needs_root
def test_veth_pair_connects_host_and_container_and_then_goes(busybox_rootfs: Path) -> None:
    spec = Isolation.container(busybox_rootfs, "net-box", veth=True)
    script = "nc -l -p 7777 -e echo hello-from-the-container & sleep 30"
    with start(spec, ["sh", "-c", script]) as box:
        veth = box.veth
        assert veth is not None and veth.name in network.host_links()
        alias = Path(f"/sys/class/net/{veth.name}/ifalias").read_text().strip()
        assert alias == f"hardway owner {os.getpid()}"
        inside = box.exec(["ip", "-o", "-4", "addr"]).stdout.splitlines()
        assert [line.split()[1:4] for line in inside] == [
            ["lo", "inet", "127.0.0.1/8"],
            ["eth0", "inet", str(veth.container_address)],
        ]
        routes = box.exec(["ip", "route"]).stdout
        assert "default" not in routes and str(veth.subnet) in routes
        ping = box.exec(["ping", "-c", "1", "-W", "2", str(veth.host_address.ip)])
        assert ping.ok and "1 packets received" in ping.stdout, ping
        deadline, reply = time.monotonic() + 5, b""
        while not reply and time.monotonic() < deadline:
            try:
                with socket.create_connection((str(veth.container_address.ip), 7777), 1) as s:
                    reply = s.recv(100)
            except OSError:
                time.sleep(0.05)
        assert reply == b"hello-from-the-container\n"
    assert veth.name not in network.host_links()
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    assert str(veth.subnet.network_address) not in routes


@needs_root
def test_remove_is_idempotent(busybox_rootfs: Path) -> None:
    with start(Isolation({"net"}, veth=True), ["sleep", "30"]) as box:
        veth = box.veth
        assert network.remove(veth) is True
        assert network.remove(veth) is False
    assert veth.name not in network.host_links()
