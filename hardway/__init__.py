"""hardway: the helper package of *Containers the Hard Way*.

Every notebook of the course calls this package, and every module maps onto a chapter,
so a learner who wants to see "the real thing" behind a cell knows where to look:

=================  ==========================================================
chapter            module(s)
=================  ==========================================================
00 welcome         :mod:`hardway.doctor` (and its child-process :mod:`hardway.probes`),
                   :mod:`hardway.local_registry` (with :mod:`hardway.registry_config`,
                   :mod:`hardway.yamlish`)
00 warm-up lab     :mod:`hardway.digest`
01–02              :mod:`hardway.linux` (syscalls through ctypes)
03                 :mod:`hardway.cgroups`
course machinery   :mod:`hardway.grading` (self-checks), :mod:`hardway.checks`,
                   :mod:`hardway.labgen` (labs from solutions),
                   :mod:`hardway.autograde` (headless grading)
=================  ==========================================================

Errors raised on purpose are all :class:`hardway.errors.HardwayError` subclasses, with a
message that says what went wrong and how to fix it.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
