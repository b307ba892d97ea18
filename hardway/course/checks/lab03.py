"""hardway.course.checks.lab03
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 03, cgroups. Fresh random inputs, compared with
:mod:`hardway.isolation.limits` (the course's own translations):

* 03.1 ``parse_size(text) -> int``: ``"64M"`` in bytes, as ``docker run --memory`` reads it;
* 03.2 ``cpu_settings(cpus, period) -> (v1, v2)``: ``--cpus`` as v1's
  ``(cfs_quota_us, cfs_period_us)`` and v2's ``cpu.max`` line;
* 03.3 ``parse_keyed(text) -> dict``: ``memory.events``, ``cpu.stat``, ``pids.events``.
"""

from __future__ import annotations

from collections.abc import Callable

from hardway.course.checks import fresh_rng
from hardway.course.grading import exercise, expect
from hardway.isolation import limits
from hardway.sys import sizes

__all__ = ["cpu_translated", "events_parsed", "sizes_parsed"]


@exercise(
    "03.1",
    points=1,
    hint="split the number from its unit; k, m, g are powers of 1024 (k = 1 << 10, "
    "m = 1 << 20, g = 1 << 30), either case; no unit means bytes.",
)
def sizes_parsed(parse_size: Callable[[str], int]) -> None:
    """parse_size reads sizes with binary units, in either case."""
    rng = fresh_rng()
    for unit in ("", "k", "K", "m", "M", "g", "G"):
        text = f"{rng.randint(1, 900)}{unit}"
        got, want = parse_size(text), sizes.parse_size(text)
        expect(isinstance(got, int), f"parse_size({text!r}) returned a {type(got).__name__}")
        expect(got == want, f"parse_size({text!r}) is {got}, expected {want}")


@exercise(
    "03.2",
    points=2,
    hint="the quota is cpus × period microseconds (rounded to an int); v1 wants the pair "
    "(quota, period), v2 one line 'QUOTA PERIOD' — and 'max PERIOD' when cpus is None.",
)
def cpu_translated(cpu_settings: Callable[[float | None, int], tuple]) -> None:
    """cpu_settings(cpus, period) gives v1's (quota, period) and v2's cpu.max line."""
    rng = fresh_rng()
    for _ in range(5):
        cpus, period = (
            rng.choice([0.25, 0.5, 1.0, 1.5, 2.0, 3.75]),
            rng.choice([100_000, 50_000, 200_000]),
        )
        v1, v2 = cpu_settings(cpus, period)
        want = limits.cpu_quota(cpus, period)
        expect(tuple(v1) == want, f"cpus={cpus}, period={period}: v1 is {v1}, expected {want}")
        line = limits.cpu_max(cpus, period)
        expect(v2 == line, f"cpus={cpus}, period={period}: cpu.max is {v2!r}, expected {line!r}")
    v1, v2 = cpu_settings(None, 100_000)
    expect(v2 == "max 100000", f"no limit: cpu.max should be 'max 100000', not {v2!r}")
    expect(tuple(v1) == (-1, 100_000), f"no limit: v1 writes quota -1, so (-1, 100000), not {v1}")


@exercise(
    "03.3",
    points=2,
    hint="one 'key value' pair a line: split each line, keep it when the value is an "
    "integer, and turn the value into an int.",
)
def events_parsed(parse_keyed: Callable[[str], dict[str, int]]) -> None:
    """parse_keyed reads a flat-keyed cgroup file into {key: int}."""
    rng = fresh_rng()
    keys = ["low", "high", "max", "oom", "oom_kill", "nr_periods", "nr_throttled"]
    values = {k: rng.randint(0, 10**9) for k in rng.sample(keys, 5)}
    text = "".join(f"{k} {v}\n" for k, v in values.items())
    got = parse_keyed(text)
    expect(got == limits.parse_keyed(text), f"parse_keyed({text!r}) is {got!r}")
    expect(parse_keyed("") == {}, "an empty file has no keys: {}")
