"""A Jupyter interrupt, for the tests that stop a cell at whatever step it has reached
and then look for anything it left behind (:func:`hardway.course.leftovers.settle`)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def jupyter_interrupt(after: float | None = None) -> Iterator[Callable[[float], None]]:
    """Raise ``KeyboardInterrupt`` in the main thread ``after`` seconds from now, or when
    the ``arm(seconds)`` this yields is called: what Jupyter's interrupt does to the
    kernel. The timer and the previous SIGALRM handler are restored on the way out."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    def arm(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        if after is not None:
            arm(after)
        yield arm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
