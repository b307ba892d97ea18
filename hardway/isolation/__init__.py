"""hardway.isolation: chapters 01–04, a process made into a container.

A root filesystem (:mod:`~hardway.isolation.rootfs`), namespaces and the launcher child
that enters them (:mod:`~hardway.isolation.namespaces`, :mod:`~hardway.isolation.launch`),
a veth pair (:mod:`~hardway.isolation.network`), cgroups and the limits they take
(:mod:`~hardway.isolation.cgroups`, :mod:`~hardway.isolation.limits`), and the runtime
that combines them (:mod:`~hardway.isolation.runtime`) next to an OCI bundle run by runc
(:mod:`~hardway.isolation.bundle`). The runtime runs an image's config, so this part
stands on :mod:`hardway.image` (the documents only).

Public contract (notebooks and labs import these): ``rootfs``; ``namespaces`` with
``Isolation``, ``IdMap``, ``run``, ``start``, ``call``; ``network``; ``cgroups`` with
``Group``, ``Limits``; ``runtime``; ``bundle``.

Grading references — checks compare learners' answers with these: ``namespaces``
(``KINDS``, ``Isolation``, ``call``, ``run``, ``start``; labs 01–02), ``rootfs`` (01),
``limits`` (03), ``runtime`` and ``bundle`` (04).
"""
