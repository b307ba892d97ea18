"""hardway.sys.sizes
~~~~~~~~~~~~~~~~~

Sizes as people type them (``64M``, ``1.5g``, ``512k``): ``docker run --memory`` reads
them this way, and so do the course's own limits — a cgroup's memory (chapter 03), the
most a layer may unpack to (chapter 05), the cache's prune target (chapter 09).
Binary units throughout: ``k`` is 1024.
"""

from __future__ import annotations

import re

__all__ = ["format_size", "parse_size"]

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes in a size such as ``"64M"``, ``"1.5g"``, ``"512k"``, ``"100"`` or ``64 << 20``.

    Units are binary (``k`` = 1024), as ``docker run --memory`` reads them; ``MB``,
    ``MiB`` and ``m`` mean the same.

    >>> parse_size("64M"), parse_size("1.5g"), parse_size("100"), parse_size(4096)
    (67108864, 1610612736, 100, 4096)
    """
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative: {text}")
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (try 64M, 512k, 1g or a number of bytes)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def format_size(size: int) -> str:
    """The shortest exact spelling of *size* bytes.

    >>> format_size(67108864), format_size(3072), format_size(100)
    ('64M', '3K', '100')
    """
    for unit in "TGMK":
        scale = _UNITS[unit.lower()]
        if size and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)
