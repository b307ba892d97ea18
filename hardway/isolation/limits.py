"""hardway.isolation.limits
~~~~~~~~~~~~~~~~~~~~~~~~

What a learner types (``--memory 64M --cpus 0.5 --pids 64``) and what the kernel's
cgroup files want are two different languages. This module translates, with pure
functions only, so that every rule can be read and tested without a cgroup in sight:

* sizes: ``"64M"`` is 64 MiB, as ``docker run --memory`` reads it (binary units;
  :mod:`hardway.sys.sizes`, shared with the layer and cache limits);
* CPU: ``--cpus 0.5`` is a *quota* of 50 000 µs of CPU time per *period* of 100 000 µs.
  v1 writes the two numbers to ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``, v2 writes
  them together to ``cpu.max`` (``"50000 100000"``, or ``"max 100000"`` for no limit);
* relative CPU weight: v2's ``cpu.weight`` (1–10000, default 100) and v1's
  ``cpu.shares`` (2–262144, default 1024) say the same thing on different scales;
* the kernel's answers: ``memory.events``, ``cpu.stat``, ``pids.events`` and v1's
  ``memory.oom_control`` are all "flat keyed" files, one ``key value`` pair a line.

>>> parse_size("64M"), cpu_max(0.5)
(67108864, '50000 100000')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hardway.sys.sizes import format_size, parse_size

__all__ = [
    "DEFAULT_PERIOD",
    "Limits",
    "cpu_max",
    "cpu_quota",
    "parse_keyed",
    "weight_to_shares",
]

#: the CFS period both versions default to, in microseconds (100 ms)
DEFAULT_PERIOD = 100_000
#: the smallest quota the kernel accepts, in microseconds
MIN_QUOTA = 1_000


def cpu_quota(cpus: float, period: int = DEFAULT_PERIOD) -> tuple[int, int]:
    """``(quota, period)`` in µs for *cpus* CPUs: v1's ``cfs_quota_us`` and ``cfs_period_us``.

    >>> cpu_quota(0.5), cpu_quota(2), cpu_quota(0.25, period=20_000)
    ((50000, 100000), (200000, 100000), (5000, 20000))
    """
    if cpus <= 0:
        raise ValueError(f"--cpus must be more than 0, not {cpus}")
    return max(MIN_QUOTA, round(cpus * period)), period


def cpu_max(cpus: float | None, period: int = DEFAULT_PERIOD) -> str:
    """The line v2's ``cpu.max`` takes: ``"QUOTA PERIOD"``, or ``"max PERIOD"`` for no limit.

    >>> cpu_max(1.5), cpu_max(None)
    ('150000 100000', 'max 100000')
    """
    if cpus is None:
        return f"max {period}"
    quota, period = cpu_quota(cpus, period)
    return f"{quota} {period}"


def weight_to_shares(weight: int) -> int:
    """v2's ``cpu.weight`` (default 100) on v1's ``cpu.shares`` scale (default 1024).

    >>> weight_to_shares(100), weight_to_shares(1)
    (1024, 10)
    """
    if not 1 <= weight <= 10_000:
        raise ValueError(f"cpu.weight is 1–10000, not {weight}")
    return max(2, round(weight * 1024 / 100))


def parse_keyed(text: str) -> dict[str, int]:
    """A flat-keyed cgroup file (``memory.events``, ``cpu.stat``, ``pids.events``,
    ``memory.oom_control``) as a dict; lines that are not ``key integer`` are skipped.

    >>> parse_keyed("low 0\\nhigh 0\\nmax 12\\noom 1\\noom_kill 1\\n")
    {'low': 0, 'high': 0, 'max': 12, 'oom': 1, 'oom_kill': 1}
    """
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


@dataclass(frozen=True)
class Limits:
    """What a container may use; ``None`` means "no limit".

    :param memory: bytes of memory (a size string such as ``"64M"`` is converted)
    :param cpus: CPUs' worth of time per period (``0.5`` = half of one CPU)
    :param pids: how many processes and threads at most
    :param cpu_weight: (optional) relative share when CPUs are contended (v2 scale)
    :param period: the CFS period in µs

    >>> Limits(memory="32M", cpus=0.5, pids=16)
    Limits(memory='32M', cpus=0.5, pids=16)
    """

    memory: int | None = None
    cpus: float | None = None
    pids: int | None = None
    cpu_weight: int | None = None
    period: int = DEFAULT_PERIOD

    def __post_init__(self) -> None:
        if isinstance(self.memory, str):
            object.__setattr__(self, "memory", parse_size(self.memory))
        if self.memory is not None and self.memory < 4096:
            raise ValueError(f"a memory limit of {self.memory} bytes is too small to run anything")
        if self.cpus is not None:
            cpu_quota(self.cpus, self.period)  # validates
        if self.pids is not None and self.pids < 1:
            raise ValueError(f"pids must be at least 1, not {self.pids}")
        if self.cpu_weight is not None:
            weight_to_shares(self.cpu_weight)  # validates

    @property
    def controllers(self) -> tuple[str, ...]:
        """The controllers these limits need (``memory``, ``cpu``, ``pids``).

        >>> Limits(pids=5).controllers
        ('pids',)
        """
        wanted = {
            "memory": self.memory is not None,
            "cpu": self.cpus is not None or self.cpu_weight is not None,
            "pids": self.pids is not None,
        }
        return tuple(name for name, on in wanted.items() if on)

    def __repr__(self) -> str:
        shown = {
            "memory": None if self.memory is None else format_size(self.memory),
            "cpus": self.cpus,
            "pids": self.pids,
            "cpu_weight": self.cpu_weight,
        }
        if self.period != DEFAULT_PERIOD:
            shown["period"] = self.period
        return f"Limits({', '.join(f'{k}={v!r}' for k, v in shown.items() if v is not None)})"

    @classmethod
    def of(cls, settings: Mapping[str, object]) -> Limits:
        """From CLI-like settings, ignoring ``None`` values.

        >>> Limits.of({"memory": "64M", "cpus": None})
        Limits(memory='64M')
        """
        return cls(**{k: v for k, v in settings.items() if v is not None})  # type: ignore[arg-type]
