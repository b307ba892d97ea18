"""hardway.isolation.stats
~~~~~~~~~~~~~~~~~~~~~~~

A limit you cannot see bite is hard to believe, so chapter 03 reads back what the kernel
counted for a group after the container ran: how much memory it used and how often it
hit its limit, whether the OOM killer struck, how many CPU periods it was throttled in,
how many new tasks were refused. Both cgroup designs count the same things, in different
files and units:

* memory: v2 ``memory.current``, ``memory.max`` and ``memory.events`` (``max`` hits,
  ``oom_kill``); v1 ``memory.usage_in_bytes``, ``memory.limit_in_bytes`` (a huge number
  for "no limit"), ``memory.failcnt`` and ``memory.oom_control``;
* CPU: ``cpu.stat`` in both (periods run and throttled; time throttled in µs on v2, in
  ns on v1), and the time used: v2's ``usage_usec``, v1's ``cpuacct.usage`` in ns;
* tasks: ``pids.current``, ``pids.max`` and ``pids.events`` (``max``: forks and new
  threads refused) in both — the pids controller counts threads as well as processes.

:func:`read_stats` reads them into one :class:`Stats`, which prints as a table in a
terminal and renders as one in a notebook.

>>> Stats("v2", oom_kills=1).oom_killed
True
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hardway.isolation.limits import parse_keyed

__all__ = ["Stats", "read_stats"]


@dataclass(frozen=True)
class Stats:
    """What the kernel counted for one group; ``None`` where this machine does not say.

    ``oom_kills`` and ``memory_limit_hits`` come from v2 ``memory.events`` (``oom_kill``,
    ``max``) or v1 ``memory.oom_control`` (``oom_kill``) and ``memory.failcnt``;
    ``nr_throttled``/``throttled_usec`` from ``cpu.stat`` in both versions (v1 counts
    ``throttled_time`` in ns); ``pids_current`` counts tasks (threads too), and
    ``pids_refused`` comes from ``pids.events`` (``max``): forks and new threads refused
    at the limit.
    """

    version: str
    memory_current: int | None = None
    memory_max: int | None = None
    oom_kills: int = 0
    memory_limit_hits: int = 0
    cpu_usage_usec: int | None = None
    nr_periods: int = 0
    nr_throttled: int = 0
    throttled_usec: int = 0
    pids_current: int | None = None
    pids_max: int | None = None
    pids_refused: int = 0

    @property
    def oom_killed(self) -> bool:
        return self.oom_kills > 0

    @property
    def throttled(self) -> bool:
        return self.nr_throttled > 0

    @property
    def pids_limited(self) -> bool:
        return self.pids_refused > 0

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) pairs for a table."""

        def show(value: int | None, unit: str = "") -> str:
            return "–" if value is None else f"{value:,}{unit}"

        return [
            ("cgroup version", self.version),
            ("memory in use", show(self.memory_current, " B")),
            ("memory limit", show(self.memory_max, " B")),
            ("times the memory limit was hit", show(self.memory_limit_hits)),
            ("OOM kills", show(self.oom_kills)),
            ("CPU time used", show(self.cpu_usage_usec, " µs")),
            ("periods throttled / run", f"{self.nr_throttled:,} / {self.nr_periods:,}"),
            ("time throttled", show(self.throttled_usec, " µs")),
            ("tasks now / limit", f"{show(self.pids_current)} / {show(self.pids_max)}"),
            ("new tasks refused at the limit", show(self.pids_refused)),
        ]

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self.rows())
        return "\n".join(f"{k:<{width}}  {v}" for k, v in self.rows())

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        cells = "".join(
            f"<tr><td style='text-align:left'>{html.escape(k)}</td>"
            f"<td style='text-align:right'>{html.escape(v)}</td></tr>"
            for k, v in self.rows()
        )
        return {"text/plain": str(self), "text/html": f"<table>{cells}</table>"}


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _keyed(path: Path) -> dict[str, int]:
    try:
        return parse_keyed(path.read_text())
    except OSError:
        return {}


_UNLIMITED_V1 = 1 << 62  # v1 writes "no limit" as a huge number (PAGE_COUNTER_MAX pages)


def read_stats(version: str, paths: Mapping[str, Path]) -> Stats:
    """Read the kernel's counters of one group: *paths* maps ``memory``, ``cpu``, ``pids``
    (and, on v1, ``cpuacct`` when it has a hierarchy of its own) to the group's directory
    in that controller; *version* is ``"v1"`` or ``"v2"``. A file that is missing or
    unreadable counts as "not said" (``None``) or 0."""
    mem, cpu, pids = paths["memory"], paths["cpu"], paths["pids"]
    pid_counts = {
        "pids_current": _read_int(pids / "pids.current"),
        "pids_max": _read_int(pids / "pids.max"),
        "pids_refused": _keyed(pids / "pids.events").get("max", 0),
    }
    cpu_stat = _keyed(cpu / "cpu.stat")
    periods = {k: cpu_stat.get(k, 0) for k in ("nr_periods", "nr_throttled")}
    if version == "v2":
        events = _keyed(mem / "memory.events")
        return Stats(
            "v2",
            memory_current=_read_int(mem / "memory.current"),
            memory_max=_read_int(mem / "memory.max"),
            oom_kills=events.get("oom_kill", 0),
            memory_limit_hits=events.get("max", 0),
            cpu_usage_usec=cpu_stat.get("usage_usec"),
            throttled_usec=cpu_stat.get("throttled_usec", 0),
            **periods,
            **pid_counts,
        )
    limit = _read_int(mem / "memory.limit_in_bytes")
    usage_ns = _read_int(paths.get("cpuacct", cpu) / "cpuacct.usage")
    return Stats(
        "v1",
        memory_current=_read_int(mem / "memory.usage_in_bytes"),
        memory_max=None if limit is None or limit >= _UNLIMITED_V1 else limit,
        oom_kills=_keyed(mem / "memory.oom_control").get("oom_kill", 0),
        memory_limit_hits=_read_int(mem / "memory.failcnt") or 0,
        cpu_usage_usec=None if usage_ns is None else usage_ns // 1000,
        throttled_usec=cpu_stat.get("throttled_time", 0) // 1000,
        **periods,
        **pid_counts,
    )
