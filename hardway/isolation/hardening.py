"""hardway.isolation.hardening
~~~~~~~~~~~~~~~~~~~~~~~~~~

Namespaces give a container its own *view*; they do not make root inside harmless.
Root in a container shares the host's kernel, and the kernel has interfaces that were
never namespaced: ``/proc/sys/kernel/core_pattern`` (a program the *host* runs on every
crash), ``/proc/sysrq-trigger``, the keyring, device nodes, module loading. An OCI
runtime closes them with five measures, and this module holds what they ask for —
runc's values, which ``runc spec`` writes into a ``config.json``:

* **masked paths** (:data:`MASKED_PATHS`): a file gets ``/dev/null`` bind-mounted on
  it, a directory an empty read-only tmpfs, so reading them shows nothing;
* **read-only paths** (:data:`READONLY_PATHS`): bind-mounted onto themselves, then
  remounted read-only, so ``/proc/sys`` can be read (``sysctl -a`` works) but not
  written;
* **capabilities**: every one of the five sets (:class:`CapabilitySets`);
* **seccomp**: a filter refusing the dangerous system calls
  (:mod:`hardway.isolation.seccomp`);
* **devices**: no ``CAP_MKNOD`` and a ``nodev`` root (:data:`RUNTIME_CAPS`).

The launcher applies them (:mod:`hardway.isolation.launch`), in runc's order: masks and
read-only paths while the mounts are made, then the bounding set, ``no_new_privs``, the
user, the other four sets, and the seccomp filter last, right before ``execve``.

>>> capability_sets(["KILL"], uid=1000).effective
()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from hardway.sys import linux

__all__ = ["MASKED_PATHS", "READONLY_PATHS", "RUNTIME_CAPS", "CapabilitySets", "capability_sets"]

#: what ``runc spec`` masks: kernel memory (``kcore``), other users' keys, timer and
#: scheduler internals that leak host activity, firmware tables
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)
#: what ``runc spec`` makes read-only: every sysctl, the magic SysRq key, interrupt
#: routing, bus devices, filesystem tuning
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

#: the capabilities the course's runtime keeps: Docker's default list without
#: ``MKNOD``. Docker keeps ``MKNOD`` and stops device access with the *devices* cgroup
#: (v1) or an eBPF program attached to the cgroup (v2); without ``MKNOD`` no device
#: node can be made at all, on either cgroup design and rootless too
RUNTIME_CAPS = tuple(name for name in linux.DOCKER_DEFAULT_CAPS if name != "MKNOD")


@dataclass(frozen=True)
class CapabilitySets:
    """A process's five capability sets, as capabilities(7) defines them.

    * *bounding*: the most any ``execve`` can ever grant; can only shrink;
    * *permitted*: what the process may switch on;
    * *effective*: what the kernel checks right now;
    * *inheritable*: what may pass through ``execve`` to a program whose file says so;
    * *ambient*: what passes through ``execve`` of *any* program for a non-root user.

    ``setuid`` from root to another user empties permitted, effective and ambient:
    a daemon that drops to a user must not keep root's powers by accident.
    """

    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()

    def to_json(self) -> dict[str, list[str]]:
        """The sets as lists, for the launch plan."""
        return {name: list(value) for name, value in asdict(self).items()}

    def oci(self) -> dict[str, list[str]]:
        """The sets as runc's ``process.capabilities`` spells them (``CAP_…``).

        >>> capability_sets(["KILL"], uid=0).oci()["effective"]
        ['CAP_KILL']
        """
        return {name: [f"CAP_{n}" for n in value] for name, value in asdict(self).items()}


def capability_sets(capabilities: Sequence[str], uid: int) -> CapabilitySets:
    """Docker's rule: *capabilities* bound everything; root (uid 0) has them permitted
    and effective; any other user has none (as ``setuid`` leaves it); inheritable and
    ambient are empty, so no program can receive a capability through ``execve``
    beyond what the bounding set and its own file allow.

    >>> capability_sets(["KILL", "CHOWN"], uid=0).permitted
    ('KILL', 'CHOWN')
    """
    caps = tuple(capabilities)
    unknown = [name for name in caps if name not in linux.CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown capability {unknown[0]!r}; names are like 'NET_RAW'")
    mine = caps if uid == 0 else ()
    return CapabilitySets(bounding=caps, effective=mine, permitted=mine)
