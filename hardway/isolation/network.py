"""hardway.isolation.network
~~~~~~~~~~~~~~~~~~~~~~~~~

A new network namespace starts with one device, the loopback ``lo``, and even that is
down: no address, no route, nothing to talk to. To connect it, a runtime creates a
*veth pair* — two virtual network devices joined like the ends of a cable — and
moves one end into the container's namespace. Whatever one end sends, the other end
receives.

Here each pair gets its own ``/30`` from a private range (four addresses: the network,
the host end ``.1``, the container end ``.2``, broadcast), chosen so that it overlaps
nothing this machine already routes. There is no default route and no forwarding:
the two ends can reach each other and nothing else. Host ends are named ``hw-<hex>``
and carry the alias ``hardway owner <pid>``, so leftovers are easy to recognise; when
the container's namespace goes away, the kernel deletes its end and with it the pair.

Chapter 04 puts the host end on a bridge instead (:mod:`hardway.isolation.bridge`): then
the pair carries the bridge's name and the container's address on the bridge's subnet,
the host end has no address of its own, and the container's default route goes via
the bridge.

Creating the pair needs ``CAP_NET_ADMIN`` in the *host's* namespace, i.e. root: this is
the one part of chapter 02 that the rootless path cannot do.

>>> free_subnet([IPv4Network("10.254.0.0/17")], rng=random.Random(1)).subnet_of(POOL)
True
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import secrets
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from hardway.errors import DOCTOR_HINT, MissingToolError, NetworkError, PrivilegeError

__all__ = [
    "POOL",
    "PREFIX",
    "Veth",
    "allocate",
    "configure_inside",
    "create",
    "free_subnet",
    "host_links",
    "host_networks",
    "loopback_up",
    "remove",
]

#: the private range the pairs' subnets come from
POOL = IPv4Network("10.254.0.0/16")
#: one subnet per pair: exactly two usable addresses
PREFIX = 30
#: the prefix of every host-side device the course creates
NAME_PREFIX = "hw-"
#: the name the container's end gets inside its namespace
INSIDE_NAME = "eth0"

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class Veth:
    """One veth pair: the host end's name and the ``/30`` the two ends share — or, on a
    *bridge*, the bridge's subnet and the container's *address* in it.

    >>> on_bridge = IPv4Network("10.253.0.0/24"), "hw-br0", IPv4Interface("10.253.0.7/24")
    >>> Veth("hw-1", *on_bridge).container_address, Veth("hw-1", *on_bridge).host_address
    (IPv4Interface('10.253.0.7/24'), IPv4Interface('10.253.0.1/24'))
    """

    name: str
    subnet: IPv4Network
    bridge: str | None = None
    address: IPv4Interface | None = None

    @property
    def peer(self) -> str:
        """The container end's name until it is renamed ``eth0`` inside."""
        return f"{self.name}-c"

    @property
    def host_address(self) -> IPv4Interface:
        """The host end's address, or on a bridge the bridge's: the container's gateway."""
        return IPv4Interface(f"{self.subnet[1]}/{self.subnet.prefixlen}")

    @property
    def container_address(self) -> IPv4Interface:
        return self.address or IPv4Interface(f"{self.subnet[2]}/{self.subnet.prefixlen}")

    def to_json(self) -> dict[str, str]:
        data = {"name": self.name, "subnet": str(self.subnet)}
        if self.bridge is not None:
            data.update(bridge=self.bridge, address=str(self.container_address))
        return data

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Veth:
        address = IPv4Interface(data["address"]) if "address" in data else None
        return cls(data["name"], IPv4Network(data["subnet"]), data.get("bridge"), address)


def free_subnet(
    taken: Iterable[IPv4Network], *, pool: IPv4Network = POOL, rng: random.Random | None = None
) -> IPv4Network:
    """A random ``/30`` of *pool* that overlaps none of the networks in *taken*."""
    rng = rng or random.Random(secrets.randbits(64))
    taken = [net for net in taken if net.version == 4]
    blocks = 2 ** (PREFIX - pool.prefixlen)
    for _ in range(256):
        start = int(pool.network_address) + rng.randrange(blocks) * 2 ** (32 - PREFIX)
        candidate = IPv4Network((start, PREFIX))
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise NetworkError(f"no free /{PREFIX} left in {pool}: too many veth pairs exist")


def _ip_tool() -> str:
    dirs = os.environ.get("PATH", os.defpath).split(os.pathsep)
    found = shutil.which("ip", path=os.pathsep.join([*dirs, *_SBIN]))
    if found is None:
        raise MissingToolError(
            "ip (iproute2) is not installed", fix="sudo apt-get install iproute2"
        )
    return found


def _ip(*args: str, ip: str | None = None) -> str:
    """Run ``ip ARGS``; a refusal becomes PrivilegeError, any other failure NetworkError."""
    argv = [ip or _ip_tool(), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        problem = done.stderr.strip() or f"exit status {done.returncode}"
        command = "ip " + " ".join(args)
        if "Operation not permitted" in problem:
            refused = PrivilegeError(
                f"{command}: {problem}: creating a veth pair needs root (CAP_NET_ADMIN "
                "in the host's network namespace)",
                fix=DOCTOR_HINT,
            )
            refused.errno = errno.EPERM
            raise refused
        raise NetworkError(f"{command}: {problem}", step="network")
    return done.stdout


def host_networks() -> list[IPv4Network]:
    """Every IPv4 network this machine has an address in or a route to (any table)."""
    found = set()
    for entry in json.loads(_ip("-j", "-4", "address", "show") or "[]"):
        for addr in entry.get("addr_info", []):
            found.add(IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default" and route.get("type") not in ("broadcast",):
            found.add(IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
    return sorted(found)


def host_links() -> list[str]:
    """The network devices of the calling process's namespace (``ip link`` names)."""
    return sorted(os.listdir("/sys/class/net"))


def allocate() -> Veth:
    """A fresh pair name and a ``/30`` no route on this machine overlaps."""
    return Veth(f"{NAME_PREFIX}{secrets.token_hex(3)}", free_subnet(host_networks()))


def create(veth: Veth, pid: int) -> None:
    """Host side: create the pair, move its peer into *pid*'s network namespace, and
    address and raise the host end (or put it on its bridge, unaddressed). On any
    failure the pair is removed again.

    The alias ends in the owner's pid (``python -m hardway cleanup`` reads it); on a
    bridge it also names the container's address, so the next pair takes another.
    """
    bridged = f" {veth.container_address.ip}" if veth.bridge else ""
    try:
        _ip("link", "add", veth.name, "type", "veth", "peer", "name", veth.peer, "netns", str(pid))
        _ip("link", "set", "dev", veth.name, "alias", f"hardway{bridged} owner {os.getpid()}")
        if veth.bridge:
            _ip("link", "set", "dev", veth.name, "master", veth.bridge)
        else:
            _ip("address", "add", str(veth.host_address), "dev", veth.name)
        _ip("link", "set", "dev", veth.name, "up")
    except BaseException:
        remove(veth)
        raise


def configure_inside(veth: Veth, ip: str | None = None) -> None:
    """Container side, run *inside* the new network namespace: rename the peer to
    ``eth0``, give it the container's address and raise it; on a bridge, add a default
    route via the bridge's address."""
    _ip("link", "set", "dev", veth.peer, "name", INSIDE_NAME, ip=ip)
    _ip("address", "add", str(veth.container_address), "dev", INSIDE_NAME, ip=ip)
    _ip("link", "set", "dev", INSIDE_NAME, "up", ip=ip)
    if veth.bridge:
        _ip("route", "add", "default", "via", str(veth.host_address.ip), ip=ip)


def remove(veth: Veth) -> bool:
    """Delete the pair (both ends go together); ``False`` if it was already gone."""
    if not Path("/sys/class/net", veth.name).exists():
        return False
    try:
        _ip("link", "delete", "dev", veth.name)
    except NetworkError:
        if Path("/sys/class/net", veth.name).exists():
            raise
        return False  # the namespace died meanwhile and took the pair with it
    return True


def loopback_up(name: str = "lo") -> None:
    """Raise a device the way ``ip link set lo up`` does: read its flags with the
    ``SIOCGIFFLAGS`` ioctl, add ``IFF_UP``, write them back with ``SIOCSIFFLAGS``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", name.encode(), 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", name.encode(), flags | _IFF_UP))
