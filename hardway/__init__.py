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
01 rootfs          :mod:`hardway.rootfs` (busybox or host programs + libraries; the
                   chroot escape)
01–02              :mod:`hardway.linux` (syscalls through ctypes),
                   :mod:`hardway.namespaces` (Isolation, run, start, Container;
                   the child side is :mod:`hardway.launch`), :mod:`hardway.network`
                   (veth pairs), :mod:`hardway.leftovers` (what a run left behind)
03 cgroups         :mod:`hardway.cgroups` (detect, Group, Stats, delegation),
                   :mod:`hardway.limits` (sizes, CPU quota, flat-keyed files)
04 runtime         :mod:`hardway.runtime` (``run``, ``python -m hardway run``),
                   :mod:`hardway.bundle` (OCI bundle, ``runc run``);
                   ``python -m hardway cleanup`` lives in :mod:`hardway.leftovers`
05 layers          :mod:`hardway.layers` (write, diff, overlayfs upper dirs, CLI),
                   :mod:`hardway.compression`, :mod:`hardway.whiteouts`,
                   :mod:`hardway.apply` (safe unpacking), :mod:`hardway.securejoin`
06 images          :mod:`hardway.image` (config, manifest, index), :mod:`hardway.validate`,
                   :mod:`hardway.blobs`, :mod:`hardway.layout` (OCI layout),
                   :mod:`hardway.archive` (docker save/load), :mod:`hardway.mutate`,
                   :mod:`hardway.transports` + :mod:`hardway.image_cli` (the image
                   commands), :mod:`hardway.testing` (random images)
07 push            :mod:`hardway.reference` (image references), :mod:`hardway.registry`
                   (the registry API client, ``docker://``), :mod:`hardway.auth`
                   (challenges, tokens, config.json), :mod:`hardway.tokenserver`
08 pull            :mod:`hardway.registry` (pull, verify), :mod:`hardway.image_cli`
                   (``pull REF ROOTFS``), :mod:`hardway.retry` (which failures are
                   retried, backoff, ``Retry-After``)
09 builder         :mod:`hardway.cache` (Jib-style layer cache: blobs, selectors, LRU
                   prune), :mod:`hardway.builder` (incremental image builds from layer
                   sources), :mod:`hardway.atomic` (atomic file writes),
                   :mod:`hardway.progress` (transfer progress bars)
10 dockerfile      :mod:`hardway.dockerfile` (parsing: lines, forms, substitution),
                   :mod:`hardway.dockerbuild` (steps, cache keys, RUN on overlayfs,
                   ``python -m hardway build``), :mod:`hardway.seed` (base images,
                   example build contexts)
11 cleanup         :mod:`hardway.leftovers` (``python -m hardway cleanup``)
pictures           :mod:`hardway.widgets` (layer explorer 05, image map 06/08, cgroup
                   meter 03, namespace table 02: ipywidgets, with a text fallback)
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
