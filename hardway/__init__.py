"""hardway: the helper package of *Containers the Hard Way*.

Every notebook of the course calls this package, and its folders are the course's parts,
so a learner who wants to see "the real thing" behind a cell knows where to look:

=====================  ===================================================================
chapters               package
=====================  ===================================================================
(all)                  :mod:`hardway.sys` — OS plumbing: syscalls through ctypes, ``/proc``,
                       mountinfo, safe path resolution, atomic writes, sizes, state
01–04 a container      :mod:`hardway.isolation` — rootfs and the chroot escape, namespaces and
                       their launcher child, veth, cgroups and limits, the runtime, runc
05–06 an image         :mod:`hardway.image` — digests, compression, layer entries and their
                       tar, diffs, overlayfs, whiteouts, safe unpacking, media types,
                       platforms, descriptors, config/manifest/index, validation, OCI
                       layout, docker save/load, mutate, random images
07–08 a registry       :mod:`hardway.distribution` — references, the registry API client,
                       auth, retries, the image commands; beneath it
                       :mod:`hardway.distribution.server`, the course's own registry
09–10 a builder        :mod:`hardway.build` — the layer cache, incremental builds, the
                       Dockerfile parser and builder
00, 11, labs           :mod:`hardway.course` — doctor, cleanup, seed images, grading and the
                       checks of each lab, lab generation, the headless grader
pictures               :mod:`hardway.widgets` — layer explorer (05), image map (06, 08),
                       cgroup meter (03), namespace table (02)
=====================  ===================================================================

Imports go only downward — ``sys`` ← ``image`` ← ``isolation``/``distribution`` ←
``build`` ← ``widgets`` ← ``course`` ← :mod:`hardway.cli` — and a test
(``tests/test_layering.py``) keeps it so. Each package's ``__init__`` names its public
contract (what notebooks and labs import) and the modules the graders compare learners'
answers with.

Errors raised on purpose are all :class:`hardway.errors.HardwayError` subclasses, with a
message that says what went wrong and how to fix it; the tree is drawn in
:mod:`hardway.errors`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
