"""hardway.course.checks
~~~~~~~~~~~~~~~~~~~~~

The self-checks of the labs, one module per lab: ``hardway.course.checks.lab05`` holds the
checks of ``labs/05-*.ipynb``. Each check is a function declared with
:func:`hardway.course.grading.exercise`; its parameters name the learner's objects, and it
fails through :func:`hardway.course.grading.expect` with a message that teaches. A check builds
its own fresh inputs and compares with the helper's reference module, so an answer
copied from a printed output does not pass; :func:`fresh_rng` is where those inputs'
randomness comes from.

:func:`hardway.course.grading.check` finds a lab's module from the exercise id; nothing here
needs importing by hand.
"""

from __future__ import annotations

import random
import secrets

__all__ = ["fresh_rng"]


def fresh_rng() -> random.Random:
    """A random generator with a seed from the operating system, new on every call: each
    run of a check draws other inputs, so no fixed answer passes twice by luck.

    >>> a, b = fresh_rng(), fresh_rng()
    >>> [a.random() for _ in range(3)] != [b.random() for _ in range(3)]
    True
    """
    return random.Random(secrets.randbits(64))
