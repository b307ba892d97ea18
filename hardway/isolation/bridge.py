"""hardway.isolation.bridge
~~~~~~~~~~~~~~~~~~~~~~~~

Docker's default network is a *bridge*: a virtual switch on the host (``docker0``) with
an address of its own, and one veth pair per container whose host end is plugged into
it. The containers on it reach each other and the host; the host reaches them; their
default route goes via the bridge's address.

The course's bridge is :data:`NAME` (``hw-br0``) on :data:`SUBNET`, ``10.253.0.0/24``
(``.1`` is the bridge, containers get ``.2``–``.254``), a range next to chapter 02's
veth pool (``10.254.0.0/16``). If this machine already has an address or a route in that
range, :func:`attach` refuses and says so; ``HARDWAY_BRIDGE_SUBNET`` picks another /24.

There is deliberately no outbound NAT and no forwarding: the containers reach the host
and each other, never the world. (Where ``br_netfilter`` is loaded and
``net.bridge.bridge-nf-call-iptables`` is 1, as on a Docker host, frames between two
containers pass the firewall's FORWARD chain; Docker adds rules for its own bridge only,
so there, containers on ``hw-br0`` reach the host but not each other.)

The bridge exists only while a container is plugged in: :func:`attach` creates it if it
is missing, :func:`detach` deletes it with its last port. Both hold a lock (``flock`` on
``/sys/class/net``), so parallel runs neither take the same address nor delete the
bridge under each other. A crash leaves at most an empty bridge: ``python -m hardway
cleanup`` removes it (:func:`remove_if_unused`).

>>> str(SUBNET), NAME
('10.253.0.0/24', 'hw-br0')
>>> str(free_address(SUBNET, {"10.253.0.2", "10.253.0.3"}))
'10.253.0.4/24'
>>> clash(SUBNET, [IPv4Network("10.0.0.0/8"), IPv4Network("192.168.1.0/24")])
IPv4Network('10.0.0.0/8')
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Collection, Iterable, Iterator
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from hardway.errors import NetworkError
from hardway.isolation import network

__all__ = [
    "NAME",
    "SUBNET",
    "attach",
    "clash",
    "detach",
    "free_address",
    "is_bridge",
    "ports",
    "remove_if_unused",
    "subnet",
]

#: the course's bridge (a network device name: at most 15 characters)
NAME = "hw-br0"
#: the private range the course reserves for it
SUBNET = IPv4Network("10.253.0.0/24")
_SYS = Path("/sys/class/net")


def subnet() -> IPv4Network:
    """:data:`SUBNET`, or the /24 in ``HARDWAY_BRIDGE_SUBNET`` where that one clashes."""
    chosen = os.environ.get("HARDWAY_BRIDGE_SUBNET")
    try:
        return IPv4Network(chosen) if chosen else SUBNET
    except ValueError:
        raise NetworkError(
            f"HARDWAY_BRIDGE_SUBNET={chosen!r} is not a network",
            fix="export HARDWAY_BRIDGE_SUBNET=10.252.0.0/24 (a private /24 nothing here uses)",
        ) from None


def is_bridge(name: str) -> bool:
    """Is the network device *name* a bridge? (It has a ``bridge/`` directory in sysfs.)"""
    return (_SYS / name / "bridge").is_dir()


def ports(name: str = NAME) -> list[str]:
    """The devices plugged into bridge *name* (``[]`` when it does not exist)."""
    try:
        return sorted(os.listdir(_SYS / name / "brif"))
    except FileNotFoundError:
        return []


def free_address(net: IPv4Network, taken: Collection[str]) -> IPv4Interface:
    """The lowest address of *net* after the bridge's own (``.1``) not in *taken*."""
    for host in list(net.hosts())[1:]:
        if str(host) not in taken:
            return IPv4Interface(f"{host}/{net.prefixlen}")
    raise NetworkError(f"no free address left on the bridge's {net}: too many containers")


def clash(net: IPv4Network, networks: Iterable[IPv4Network]) -> IPv4Network | None:
    """The first of *networks* (this machine's: :func:`~hardway.isolation.network.host_networks`)
    that overlaps *net*, or ``None``: a bridge there would hijack or shadow its traffic."""
    return next((other for other in networks if other.overlaps(net)), None)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Hold the course's network lock: ``flock`` on ``/sys/class/net``, which always exists
    (a lock file would be one more thing to clean up)."""
    fd = os.open(_SYS, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _taken() -> set[str]:
    """The addresses the pairs on the bridge carry in their alias (``hardway IP owner PID``)."""
    found = set()
    for port in ports():
        alias = (_SYS / port / "ifalias").read_text().split()
        if len(alias) == 4 and alias[0] == "hardway":
            found.add(alias[1])
    return found


def _ensure(net: IPv4Network) -> None:
    """Create the bridge with ``.1`` of *net* and raise it, unless it is there already;
    refuse a range this machine already uses for something else."""
    if is_bridge(NAME):
        return
    used = clash(net, network.host_networks())
    if used is not None:
        raise NetworkError(
            f"the course's bridge range {net} overlaps {used}, which this machine "
            "already has an address or a route in",
            fix="export HARDWAY_BRIDGE_SUBNET=10.252.0.0/24 (any private /24 nothing here uses)",
            step="bridge",
        )
    network._ip("link", "add", NAME, "type", "bridge")
    try:
        network._ip("link", "set", "dev", NAME, "alias", "hardway bridge")
        network._ip("address", "add", f"{net[1]}/{net.prefixlen}", "dev", NAME)
        network._ip("link", "set", "dev", NAME, "up")
    except BaseException:
        network._ip("link", "delete", "dev", NAME)
        raise


def attach(pid: int) -> network.Veth:
    """Create the bridge if need be, and plug a new veth pair into it whose other end goes
    into *pid*'s network namespace, with the next free address."""
    net = subnet()
    veth = None
    try:
        with _locked():
            _ensure(net)
            address = free_address(net, _taken())
            veth = network.Veth(f"{network.NAME_PREFIX}{secrets.token_hex(3)}", net, NAME, address)
            network.create(veth, pid)
    except BaseException:  # also an interrupt as the lock is let go: no pair, no bridge left
        if veth is not None:
            detach(veth)
        else:
            remove_if_unused()
        raise
    return veth


def detach(veth: network.Veth) -> None:
    """Remove *veth*'s pair, and the bridge with it when it was the last one."""
    with _locked():
        try:
            network.remove(veth)
        finally:
            _remove_if_unused()


def _remove_if_unused(name: str = NAME) -> bool:
    if not is_bridge(name) or ports(name):
        return False
    try:
        network._ip("link", "delete", "dev", name)
    except NetworkError:
        if is_bridge(name):
            raise
    return True


def remove_if_unused(name: str = NAME) -> bool:
    """Delete bridge *name* if nothing is plugged into it (what a crash leaves); ``True``
    if it was deleted. Takes the lock, so a container being attached is safe."""
    with _locked():
        return _remove_if_unused(name)
