"""hardway.widgets.meter
~~~~~~~~~~~~~~~~~~~~~

A live cgroup meter: memory and CPU of a running container against its limits, read
from the kernel's counters (:meth:`hardway.isolation.group.Group.stats`) a few times a second.

:func:`cgroup_meter` makes the group, starts the container in it, shows the meter and
samples from a background thread while the main thread waits for the container. When
the container ends — or the cell is interrupted, or the timeout passes — the sampler
stops and is joined, the container is killed and the group removed, in that order:
nothing outlives the call. The arithmetic (:func:`reading`) is a pure function of two
:class:`~hardway.isolation.stats.Stats`, so it is tested without a kernel in the loop.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hardway.errors import ContainerTimeoutError
from hardway.isolation.container import Completed, start
from hardway.isolation.group import Group
from hardway.isolation.limits import Limits
from hardway.isolation.namespaces import Isolation
from hardway.isolation.stats import Stats
from hardway.widgets.view import View, human_size

__all__ = ["CgroupMeter", "Reading", "cgroup_meter", "reading"]


@dataclass(frozen=True)
class Reading:
    """One sample: seconds since the start, memory in bytes, CPUs' worth of time used
    since the previous sample (``0.5`` = half of one CPU), processes; limits alongside
    (``None``: no limit)."""

    elapsed: float
    memory: int | None
    memory_max: int | None
    cpus: float | None
    cpus_max: float | None
    pids: int | None

    @property
    def memory_fraction(self) -> float | None:
        return _fraction(self.memory, self.memory_max)

    @property
    def cpu_fraction(self) -> float | None:
        return _fraction(self.cpus, self.cpus_max)


def _fraction(value: float | None, limit: float | None) -> float | None:
    if value is None or not limit:
        return None
    return min(value / limit, 1.0)


def reading(
    before: Stats | None, now: Stats, elapsed: float, interval: float, cpus_max: float | None
) -> Reading:
    """A :class:`Reading` from two consecutive stats *interval* seconds apart.

    >>> a = Stats("v2", cpu_usage_usec=0)
    >>> b = Stats("v2", memory_current=8 << 20, memory_max=32 << 20, cpu_usage_usec=50_000)
    >>> r = reading(a, b, 1.0, 0.1, 0.5)
    >>> r.cpus, r.cpu_fraction, r.memory_fraction
    (0.5, 1.0, 0.25)
    """
    cpus = None
    if before is not None and None not in (before.cpu_usage_usec, now.cpu_usage_usec) and interval:
        cpus = (now.cpu_usage_usec - before.cpu_usage_usec) / (interval * 1e6)
    return Reading(elapsed, now.memory_current, now.memory_max, cpus, cpus_max, now.pids_current)


class CgroupMeter(View):
    """Two bars — memory and CPU against their limits — and a line of text."""

    def __init__(self, limits: Limits, argv: Sequence[str] = ()) -> None:
        self.limits = limits
        self.argv = tuple(argv)
        self.readings: list[Reading] = []
        self.result: Completed | None = None
        self.error: BaseException | None = None
        self._widgets: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- data

    def add(self, new: Reading) -> None:
        with self._lock:
            self.readings.append(new)
        self._refresh()

    def peak(self, field: str) -> float | None:
        values = [getattr(r, field) for r in self.readings if getattr(r, field) is not None]
        return max(values) if values else None

    def mean(self, field: str) -> float | None:
        values = [getattr(r, field) for r in self.readings if getattr(r, field) is not None]
        return sum(values) / len(values) if values else None

    def status(self) -> str:
        if self.error is not None:
            return f"stopped reading the cgroup: {self.error}"
        if self.result is None:
            return "running" if self.readings else "starting"
        return f"ended with status {self.result.returncode}"

    def __str__(self) -> str:
        memory, cpus = self.peak("memory"), self.mean("cpus")
        memory_max, cpus_max = self.limits.memory, self.limits.cpus
        memory_limit = human_size(memory_max) if memory_max else "no limit"
        lines = [
            f"memory peak {human_size(memory)} of {memory_limit}",
            f"CPU on average {'–' if cpus is None else f'{cpus:.2f}'} of "
            f"{f'{cpus_max:g}' if cpus_max else 'no limit'} CPUs",
            f"{len(self.readings)} readings; {self.status()}",
        ]
        return "\n".join(lines)

    # -- drawing

    def widget(self) -> Any:
        import ipywidgets

        if not self._widgets:
            style = {"description_width": "5em"}
            layout = ipywidgets.Layout(width="28em")
            self._widgets = {
                "memory": ipywidgets.FloatProgress(
                    value=0.0, min=0.0, max=1.0, description="memory", style=style, layout=layout
                ),
                "memory_text": ipywidgets.Label(),
                "cpu": ipywidgets.FloatProgress(
                    value=0.0, min=0.0, max=1.0, description="CPU", style=style, layout=layout
                ),
                "cpu_text": ipywidgets.Label(),
                "status": ipywidgets.Label(),
            }
            w = self._widgets
            box = ipywidgets.VBox([
                ipywidgets.HBox([w["memory"], w["memory_text"]]),
                ipywidgets.HBox([w["cpu"], w["cpu_text"]]),
                w["status"],
            ])  # fmt: skip
            box.add_class("hw-cgroup-meter")
            self._widgets["box"] = box
            self._refresh()
        return self._widgets["box"]

    def _refresh(self) -> None:
        w = self._widgets
        if not w:
            return
        last = self.readings[-1] if self.readings else None
        if last is not None:
            limit = human_size(last.memory_max) if last.memory_max else "no limit"
            w["memory"].value = last.memory_fraction or 0.0
            w["memory_text"].value = f"{human_size(last.memory)} of {limit}"
            if last.cpus is not None:
                w["cpu"].value = last.cpu_fraction or 0.0
                cap = f"{last.cpus_max:g}" if last.cpus_max else "no limit"
                w["cpu_text"].value = f"{last.cpus:.2f} of {cap} CPUs"
        w["status"].value = f"{' '.join(self.argv)[:60]} — {self.status()}"

    # -- sampling

    def sample(self, group: Group, stop: threading.Event, interval: float) -> None:
        """Read *group* every *interval* s until *stop* is set (the sampler thread's body)."""
        start_time = before_time = time.monotonic()
        before: Stats | None = None
        try:
            while True:
                now = group.stats()
                at = time.monotonic()
                self.add(reading(before, now, at - start_time, at - before_time, self.limits.cpus))
                before, before_time = now, at
                if stop.wait(interval):
                    return
        except Exception as exc:  # shown in the status, never lost in a thread
            self.error = exc


def _display(meter: CgroupMeter) -> None:
    with contextlib.suppress(ImportError):
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(meter)


def cgroup_meter(
    rootfs: str | os.PathLike[str],
    argv: Sequence[str],
    limits: Limits,
    *,
    interval: float = 0.2,
    timeout: float = 60.0,
    show: bool = True,
) -> CgroupMeter:
    """Run *argv* in a container on *rootfs* limited by *limits*, with a live meter.

    Returns the meter once the container has ended: its ``readings``, its ``result``
    (a :class:`~hardway.isolation.container.Completed`) and, as text, the peaks.
    """
    meter = CgroupMeter(limits, argv)
    if show:
        _display(meter)
    with Group(limits, label="meter") as group:
        spec = Isolation.container(rootfs, "meter", cgroup_procs=group.procs_files)
        with start(spec, argv) as box:
            stop = threading.Event()
            sampler = threading.Thread(
                target=meter.sample, args=(group, stop, interval), name="hw-meter", daemon=True
            )
            sampler.start()
            try:
                box.wait(timeout)
            except ContainerTimeoutError:
                pass  # still running: its status says -1, and the with block kills it
            finally:
                stop.set()
                sampler.join()
            meter.result = box.logs()
    meter._refresh()
    return meter
