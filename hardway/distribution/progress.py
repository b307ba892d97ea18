"""hardway.distribution.progress
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~

Progress bars for blob transfers, with :mod:`tqdm.auto`: a widget bar in JupyterLab, a
text bar in a terminal, and nothing at all in a log, a test or a pipe (so outputs stay
small and deterministic). A bar also waits :data:`DELAY` seconds before it shows:
blobs that finish sooner never draw one.

:class:`ProgressReader` moves a bar as a stream is read, so the same code reports an
upload (requests reads the body) and a download (we read the response).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Any, BinaryIO

__all__ = ["DELAY", "NoBar", "ProgressReader", "interactive", "progress_bar"]

#: seconds before a bar appears
DELAY = 0.5


def interactive() -> bool:
    """Whether someone watches: a Jupyter kernel, or a terminal on stderr.

    ``HARDWAY_PROGRESS=0``/``1`` decides instead.
    """
    if (env := os.environ.get("HARDWAY_PROGRESS")) in ("0", "1"):
        return env == "1"
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(total: int, desc: str, *, enabled: bool | None = None, **kwargs: Any) -> Any:
    """A byte-counting tqdm bar (disabled unless :func:`interactive`, or ``enabled``).

    When no one watches it is a :class:`NoBar`: importing tqdm (and asyncio, through
    ``tqdm.auto``) costs ~40 ms, a sixth of a small push.
    """
    show = interactive() if enabled is None else enabled
    if not show:
        return NoBar()
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        delay=DELAY,
        leave=False,
        **kwargs,
    )


class NoBar:
    """The part of a tqdm bar's interface the transfers use, doing nothing."""

    def update(self, n: float = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class ProgressReader(io.RawIOBase):
    """``stream``, moving ``bar`` by every byte read; ``close_bar``: closing the stream
    closes the bar too (a download's bar lives exactly as long as its stream)."""

    def __init__(self, stream: BinaryIO, bar: Any, *, close_bar: bool = False) -> None:
        self._stream, self._bar, self._close_bar = stream, bar, close_bar

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        data = self._stream.read(size)
        if data:
            self._bar.update(len(data))
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()
        if self._close_bar:
            self._bar.close()
        super().close()
