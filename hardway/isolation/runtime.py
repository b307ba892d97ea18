"""hardway.isolation.runtime
~~~~~~~~~~~~~~~~~~~~~~~~~

A container runtime is not one feature but the sum of the previous chapters, applied
to one process: its own root (01), every namespace with a hostname, ``/proc`` and a
``/dev`` like runc's (02), a cgroup with limits (03) — and then it is hardened as runc's
default spec asks (:mod:`hardway.isolation.hardening`): masked and read-only paths, a
read-only ``/sys``, Docker's default capabilities but ``MKNOD`` in all five sets,
``no_new_privs``, a seccomp filter (:mod:`hardway.isolation.seccomp`), and the image's
user. The order is not the chapters': the launcher joins the cgroup first, so that every
process is born inside it, then unshares, mounts ``/dev``, pivots, mounts ``/proc``, sets
the hostname, drops privileges (the seccomp filter last) and execs
(:mod:`hardway.isolation.launch`). :func:`run` is that sum, in the shape ``docker run`` has:

* *argv* follows Docker's rules against the image config: the ``Entrypoint`` is
  always kept; *argv* given replaces ``Cmd``, none given means ``Cmd``
  (:func:`command_line`);
* the config's ``Env`` is the environment (*env* overrides it), ``WorkingDir`` the
  working directory (made if missing), ``User`` the user (a name is looked up in the
  root filesystem's own ``/etc/passwd``: :func:`resolve_user`).

The privileged work happens in the launcher child (:mod:`hardway.isolation.launch`); this
module only decides. Whatever a run creates — processes, cgroup, mounts, network
namespace, veth pair — is gone when :func:`run` returns, also after Ctrl-C or a kernel
interrupt. ``python -m hardway run ROOTFS -- CMD…`` is the same from a shell.

Two more of ``docker run``'s options: ``init=True`` (``--init``) makes PID 1 a small
reaper that passes signals on and reaps orphans (:func:`hardway.isolation.launch.reap`);
``net="bridge"`` (``--net bridge``) plugs the container into the course's bridge
(:mod:`~hardway.isolation.bridge`), and ``publish=["127.0.0.1:8080:80"]``
(``--publish``) forwards a host port on the loopback address to it
(:mod:`~hardway.isolation.publish`). :func:`start` runs a container in the background.

>>> command_line(["/entry"], ["default"], ["override"])
['/entry', 'override']
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hardway.errors import ContainerError, IsolationError
from hardway.image.config import ContainerConfig, ImageConfig
from hardway.isolation import container, hardening, seccomp
from hardway.isolation.container import Completed, Container
from hardway.isolation.group import Group
from hardway.isolation.limits import Limits
from hardway.isolation.namespaces import Isolation
from hardway.isolation.publish import Port, Proxy

__all__ = [
    "DEFAULT_HOSTNAME",
    "Options",
    "Plan",
    "Running",
    "command_line",
    "config_of",
    "merge_env",
    "parse_group",
    "parse_passwd",
    "plan",
    "register",
    "resolve_user",
    "run",
    "start",
    "user_ids",
]

DEFAULT_HOSTNAME = "container"


def command_line(
    entrypoint: Sequence[str] | None,
    cmd: Sequence[str] | None,
    argv: Sequence[str] | None,
) -> list[str]:
    """What a container runs, by Docker's rule: ``Entrypoint + (argv or Cmd)``.

    In an image config ``Entrypoint`` and ``Cmd`` are always arrays. A Dockerfile's
    *shell form* is no exception: ``ENTRYPOINT top -b`` is stored as ``["/bin/sh", "-c",
    "top -b"]`` (:func:`hardway.build.runconfig.argv_of`), and the same rule applies to
    it. ``Cmd``'s elements, or *argv*, follow the script as its ``$0 $1 …``, which
    ``top -b`` never reads: that is all "a shell-form entrypoint ignores ``CMD``" means.
    A string is refused rather than guessed at: no image config holds one.

    >>> command_line(None, ["sh"], None), command_line(["echo"], ["hi"], None)
    (['sh'], ['echo', 'hi'])
    >>> command_line(["echo"], ["hi"], ["bye"]), command_line(None, ["sh"], ["ls", "/"])
    (['echo', 'bye'], ['ls', '/'])
    >>> command_line(["/bin/sh", "-c", "top -b"], ["-d", "1"], None)
    ['/bin/sh', '-c', 'top -b', '-d', '1']
    """
    for name, value in (("Entrypoint", entrypoint), ("Cmd", cmd), ("the command", argv)):
        if isinstance(value, str):
            raise IsolationError(
                f"{name} is a list of strings, not the string {value!r}",
                fix=f"a Dockerfile's shell form is stored as ['/bin/sh', '-c', {value!r}]",
            )
    line = [*(entrypoint or ()), *(argv if argv else (cmd or ()))]
    if not line:
        raise IsolationError(
            "nothing to run: no command given and the image has no Entrypoint or Cmd"
        )
    return line


def merge_env(image_env: Sequence[str], overrides: Mapping[str, str] | None = None) -> list[str]:
    """The container's environment as ``K=V`` entries: the image's ``Env``, then
    *overrides* (``docker run -e``). A name keeps its first place; the last value wins.

    >>> merge_env(["PATH=/bin", "A=1"], {"A": "2", "B": "3"})
    ['PATH=/bin', 'A=2', 'B=3']
    """
    merged = dict(entry.split("=", 1) if "=" in entry else (entry, "") for entry in image_env)
    merged.update(overrides or {})
    return [f"{key}={value}" for key, value in merged.items()]


def parse_passwd(text: str) -> dict[str, tuple[int, int]]:
    """``name -> (uid, gid)`` from ``/etc/passwd`` text.

    >>> parse_passwd("root:x:0:0:root:/root:/bin/sh\\nwww-data:x:33:33::/var/www:/bin/false")
    {'root': (0, 0), 'www-data': (33, 33)}
    """
    users = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[2].isdigit() and fields[3].isdigit():
            users[fields[0]] = (int(fields[2]), int(fields[3]))
    return users


def parse_group(text: str) -> dict[str, int]:
    """``name -> gid`` from ``/etc/group`` text.

    >>> parse_group("root:x:0:\\nstaff:x:50:alice")
    {'root': 0, 'staff': 50}
    """
    groups = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            groups[fields[0]] = int(fields[2])
    return groups


def _read_etc(root: Path, name: str) -> str:
    path = root / "etc" / name
    if path.is_symlink() or not path.is_file():  # a link could point out of the root
        return ""
    return path.read_text(errors="replace")


def user_ids(user: str, passwd: str = "", group: str = "") -> tuple[int, int]:
    """``(uid, gid)`` for an image's ``User`` against ``/etc/passwd`` and ``/etc/group``
    text: ``""`` (root), ``"uid"``, ``"uid:gid"``, ``"name"``, ``"name:group"``.

    A bare uid takes the gid of its passwd entry, or 0 (as Docker does); a name that is
    not there is an error.

    >>> user_ids(""), user_ids("1000"), user_ids("1000:50")
    ((0, 0), (1000, 0), (1000, 50))
    >>> user_ids("app:staff", "app:x:1000:1000::/:/bin/sh", "staff:x:50:")
    (1000, 50)
    """
    if not user:
        return 0, 0
    name, _, group_name = user.partition(":")
    users = parse_passwd(passwd)
    if name.isdigit():
        uid = int(name)
        gid = next((g for u, g in users.values() if u == uid), 0)
    elif name in users:
        uid, gid = users[name]
    else:
        raise ContainerError(f"user {name!r} is not in the image's /etc/passwd", step="user")
    if group_name:
        if group_name.isdigit():
            gid = int(group_name)
        elif group_name in (groups := parse_group(group)):
            gid = groups[group_name]
        else:
            raise ContainerError(
                f"group {group_name!r} is not in the image's /etc/group", step="user"
            )
    return uid, gid


def resolve_user(user: str, root: str | os.PathLike[str] | None = None) -> tuple[int, int]:
    """:func:`user_ids` with the root filesystem's own ``/etc/passwd`` and ``/etc/group``.

    >>> resolve_user(""), resolve_user("1000"), resolve_user("1000:50")
    ((0, 0), (1000, 0), (1000, 50))
    """
    if not user:
        return 0, 0
    if root is None:
        return user_ids(user)
    base = Path(root)
    return user_ids(user, _read_etc(base, "passwd"), _read_etc(base, "group"))


def config_of(config: ImageConfig | ContainerConfig | Mapping[str, Any] | None) -> ContainerConfig:
    """The ``config`` part of an image config, from any of its forms (or an empty one).

    >>> config_of({"Cmd": ["sh"]}).cmd, config_of({"config": {"User": "1"}}).user
    (('sh',), '1')
    """
    if config is None:
        return ContainerConfig()
    if isinstance(config, ImageConfig):
        return config.config
    if isinstance(config, ContainerConfig):
        return config
    if "config" in config or "architecture" in config:
        return ContainerConfig.from_dict(config.get("config") or {})
    return ContainerConfig.from_dict(config)


@dataclass(frozen=True, kw_only=True)
class Options:
    """What ``docker run`` takes besides the root filesystem and the command: the
    settings :func:`plan` and :func:`run` take as keyword arguments, defined once here.

    :param config: (optional) an image config (:class:`~hardway.image.config.ImageConfig`,
        its ``config`` part, or either as a dict): ``Entrypoint``, ``Cmd``, ``Env``,
        ``WorkingDir``, ``User``
    :param hostname: (optional) default :data:`DEFAULT_HOSTNAME`
    :param memory: (optional) bytes, or a size such as ``"64M"``
    :param cpus: (optional) CPUs' worth of time, e.g. ``0.5``
    :param pids: (optional) the most tasks at once (processes and threads: ``pids.max``)
    :param net: connect it to the host with a veth pair (root only): ``True`` or
        ``"veth"`` for a pair of its own, ``"bridge"`` for one on the course's bridge
    :param env: (optional) added to (and overriding) the image's ``Env``
    :param publish: (optional) ports to publish, ``"127.0.0.1:8080:80"`` (needs *net*)
    :param init: PID 1 is a small init that reaps orphans and passes signals on

    >>> Options(memory="64M", pids=16).limits
    Limits(memory='64M', pids=16)
    """

    config: ImageConfig | ContainerConfig | Mapping[str, Any] | None = None
    hostname: str | None = None
    memory: int | str | None = None
    cpus: float | None = None
    pids: int | None = None
    net: bool | str = False
    env: Mapping[str, str] | None = None
    publish: Sequence[str] = ()
    init: bool = False

    @property
    def limits(self) -> Limits:
        """The cgroup limits these options ask for."""
        return Limits(memory=self.memory, cpus=self.cpus, pids=self.pids)


@dataclass(frozen=True)
class Plan:
    """Everything :func:`run` decided before starting anything: a plain value to look at."""

    isolation: Isolation
    argv: tuple[str, ...]
    limits: Limits
    ports: tuple[Port, ...] = ()


def plan(rootfs: str | os.PathLike[str], argv: Sequence[str] | None = None, **options: Any) -> Plan:
    """What :func:`run` will do, decided but not started (see :func:`run`); *options*
    are those of :class:`Options`."""
    chosen = Options(**options)
    root = Path(rootfs)
    if not root.is_dir():
        raise IsolationError(f"the root filesystem {root} is not a directory")
    image = config_of(chosen.config)
    line = command_line(image.entrypoint, image.cmd, argv)
    uid, gid = resolve_user(image.user, root)
    rootless = os.geteuid() != 0
    if chosen.net not in (False, True, "veth", "bridge"):
        raise IsolationError(f"net is True, 'veth' or 'bridge', not {chosen.net!r}")
    ports = tuple(Port.parse(p) for p in chosen.publish)
    if ports and not chosen.net:
        raise IsolationError("a published port needs a network: add net='bridge'")
    if ports and rootless:
        raise IsolationError("a published port needs a veth pair, and that needs root")
    isolation = Isolation.container(
        root,
        chosen.hostname or DEFAULT_HOSTNAME,
        rootless=rootless,
        veth=bool(chosen.net) and not rootless,
        bridge=chosen.net == "bridge" and not rootless,
        init=chosen.init,
        env={**image.env_dict(), **(chosen.env or {})},
        cwd=image.working_dir or "/",
        make_cwd=bool(image.working_dir),
        # chapter 04's hardening, as runc's default spec asks (hardway.isolation.hardening)
        capabilities=hardening.RUNTIME_CAPS,
        no_new_privs=True,
        sys=True,
        masked_paths=hardening.MASKED_PATHS,
        readonly_paths=hardening.READONLY_PATHS,
        seccomp=seccomp.DENY,
        nodev=True,
        # as root, always: the supplementary groups are then [gid], not the kernel's
        run_as=None if rootless and (uid, gid) == (0, 0) else (uid, gid),
    )
    return Plan(isolation, tuple(line), chosen.limits, ports)


def run(
    rootfs: str | os.PathLike[str],
    argv: Sequence[str] | None = None,
    *,
    timeout: float = 60.0,
    **options: Any,
) -> Completed:
    """Run a container from the root filesystem *rootfs* and wait for it.

    :param argv: (optional) the command; replaces the image's ``Cmd`` (not its
        ``Entrypoint``); default: ``Entrypoint + Cmd``
    :param timeout: seconds before the whole container is killed
    :param options: those of :class:`Options`: ``config``, ``hostname``, ``memory``,
        ``cpus``, ``pids``, ``net``, ``env``, ``publish``, ``init``
    :rtype: :class:`~hardway.isolation.container.Completed` (``returncode``, ``stdout``,
        ``stderr``)
    :raises DelegationError: limits asked for without root and without a delegated cgroup
    """
    chosen = plan(rootfs, argv, **options)
    if chosen.ports:  # the proxies need the container's address: start, then wait
        with start(rootfs, argv, **options) as running:
            running.container.wait(timeout)
            return running.container.logs()
    if os.geteuid() != 0 and not chosen.limits.controllers:  # nothing to limit: no cgroup
        return container.run(chosen.isolation, chosen.argv, timeout=timeout)
    with Group(chosen.limits, label="run") as group:  # removed, with what is left in it
        spec = replace(chosen.isolation, cgroup_procs=group.procs_files)
        return container.run(spec, chosen.argv, timeout=timeout)


@dataclass(frozen=True)
class Running:
    """A container :func:`start` started: the container, and its published ports with
    the host ports they got (``docker port``)."""

    container: Container
    ports: tuple[Port, ...]


@contextlib.contextmanager
def start(
    rootfs: str | os.PathLike[str], argv: Sequence[str] | None = None, **options: Any
) -> Iterator[Running]:
    """Start a container as :func:`run` would (``docker run -d``), publish its ports, and
    stop it — processes, cgroup, veth pair, bridge, proxies — when the ``with`` block ends.

    :param options: those of :class:`Options`
    :rtype: :class:`Running`
    """
    chosen = plan(rootfs, argv, **options)
    with contextlib.ExitStack() as stack:
        spec = chosen.isolation
        if os.geteuid() == 0 or chosen.limits.controllers:
            group = stack.enter_context(Group(chosen.limits, label="run"))
            spec = replace(spec, cgroup_procs=group.procs_files)
        box = stack.enter_context(container.start(spec, chosen.argv))
        address = str(box.veth.container_address.ip) if box.veth else ""
        proxies = [stack.enter_context(Proxy(port, address)) for port in chosen.ports]
        yield Running(box, tuple(proxy.port for proxy in proxies))


# -- the command line --------------------------------------------------------------------


def _command(args: argparse.Namespace) -> int:
    if args.net not in (None, "veth", "bridge"):  # a bare --net took ROOTFS as its value
        args.argv = [args.rootfs, *args.argv]
        args.rootfs, args.net = args.net, "veth"
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    env = dict(item.split("=", 1) if "=" in item else (item, "") for item in args.env)
    result = run(
        args.rootfs, argv or None, hostname=args.hostname, memory=args.memory,
        cpus=args.cpus, pids=args.pids, net=args.net or False, env=env, timeout=args.timeout,
        publish=args.publish, init=args.init,
    )  # fmt: skip
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a command in a container made from a root filesystem",
        description="Run CMD in a container: pivot_root into ROOTFS, every namespace, "
        "/proc, /dev, a read-only /sys, cgroup limits, and runc's hardening: masked and "
        "read-only paths, Docker's default capabilities but MKNOD, no_new_privs, a seccomp "
        "filter. The exit status is the container's.",
    )
    parser.add_argument("--hostname", default=None)
    parser.add_argument("--memory", default=None, help="e.g. 64M")
    parser.add_argument("--cpus", type=float, default=None, help="e.g. 0.5")
    parser.add_argument(
        "--pids", type=int, default=None, help="the most tasks (processes and threads) at once"
    )
    parser.add_argument(
        "--net", nargs="?", const="veth", default=None, metavar="veth|bridge",
        help="a veth pair to the host (the default), or on the course's bridge hw-br0",
    )  # fmt: skip
    parser.add_argument(
        "--publish", "-p", action="append", default=[], metavar="127.0.0.1:8080:80",
        help="forward a host port on 127.0.0.1 to a port of the container (needs --net)",
    )  # fmt: skip
    parser.add_argument("--init", action="store_true", help="PID 1 reaps and passes signals on")
    parser.add_argument("--env", "-e", action="append", default=[], metavar="K=V")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("rootfs", metavar="ROOTFS")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD")
    parser.set_defaults(func=_command)
