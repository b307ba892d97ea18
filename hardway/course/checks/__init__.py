"""hardway.course.checks
~~~~~~~~~~~~~~~~~~~~~

The self-checks of the labs, one module per lab: ``hardway.course.checks.lab05`` holds the
checks of ``labs/05-*.ipynb``. Each check is a function declared with
:func:`hardway.course.grading.exercise`; its parameters name the learner's objects, and it
fails through :func:`hardway.course.grading.expect` with a message that teaches. A check builds
its own fresh inputs and compares with the helper's reference module, so an answer
copied from a printed output does not pass. What the checks of several labs share lives
here: :func:`fresh_rng`, where those inputs' randomness comes from, and :func:`scratch`,
a temporary directory for a check's files.

:func:`hardway.course.grading.check` finds a lab's module from the exercise id; nothing here
needs importing by hand.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["fresh_rng", "scratch"]


def fresh_rng() -> random.Random:
    """A random generator with a seed from the operating system, new on every call: each
    run of a check draws other inputs, so no fixed answer passes twice by luck.

    >>> a, b = fresh_rng(), fresh_rng()
    >>> [a.random() for _ in range(3)] != [b.random() for _ in range(3)]
    True
    """
    return random.Random(secrets.randbits(64))


@contextlib.contextmanager
def scratch(lab: str) -> Iterator[Path]:
    """A fresh temporary directory (``hardway-labNN-…``) for one run of a check of *lab*,
    removed afterwards whatever happened in it.

    >>> with scratch("09") as work:
    ...     work.name.startswith("hardway-lab09-"), work.is_dir()
    (True, True)
    >>> work.exists()
    False
    """
    with tempfile.TemporaryDirectory(
        prefix=f"hardway-lab{lab}-", ignore_cleanup_errors=True
    ) as tmp:
        yield Path(tmp)
