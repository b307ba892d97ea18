"""hardway.isolation: chapters 01–04, a process made into a container.

* 01, a root filesystem, and whether a program in it is static:
  :mod:`~hardway.isolation.rootfs`;
* 02, what to isolate — namespace kinds, id maps, an
  :class:`~hardway.isolation.namespaces.Isolation`: :mod:`~hardway.isolation.namespaces`;
  a veth pair: :mod:`~hardway.isolation.network`;
* running a process that way — ``run``, ``start``, ``call``:
  :mod:`~hardway.isolation.container`, through a launcher child that
  :mod:`~hardway.isolation.child` starts and answers, whose code is
  :mod:`~hardway.isolation.launch`, and whose failed steps
  :mod:`~hardway.isolation.failures` turns into the caller's exceptions;
* 03, cgroups — which design this machine mounts, delegation, the course's groups:
  :mod:`~hardway.isolation.cgroups`; one group's lifecycle:
  :mod:`~hardway.isolation.group`; what the kernel counted: :mod:`~hardway.isolation.stats`;
  the limits in the kernel's words: :mod:`~hardway.isolation.limits`;
* 04, the runtime that combines them all: :mod:`~hardway.isolation.runtime`, next to an OCI
  bundle run by runc: :mod:`~hardway.isolation.bundle`; the filesystems besides the root
  (mount points, ``/dev``, ``/sys``, masks): :mod:`~hardway.isolation.mounts`; runc's
  hardening — masked and read-only paths, the five capability sets:
  :mod:`~hardway.isolation.hardening`; a seccomp filter written as BPF:
  :mod:`~hardway.isolation.seccomp`; the escapes it all refuses:
  :mod:`~hardway.isolation.escapes`; its network: the course's bridge
  :mod:`~hardway.isolation.bridge` and ports published on ``127.0.0.1`` by a userland
  proxy, :mod:`~hardway.isolation.publish`.

The runtime runs an image's config, so this part stands on :mod:`hardway.image` (its
:mod:`~hardway.image.config` only).

Public contract (notebooks and labs import these): ``rootfs``; ``namespaces`` with
``Isolation``, ``IdMap``, ``KINDS``; ``container`` with ``run``, ``start``, ``call``;
``network``; ``cgroups``; ``group.Group``; ``limits.Limits``; ``runtime``; ``bundle``;
``hardening``, ``seccomp``, ``escapes``, ``bridge``, ``publish``.

Grading references — checks compare learners' answers with these: ``namespaces``
(``KINDS``, ``Isolation``, ``FEATURES``, ``clone_flags``, ``rootless_map``, ``host_id``,
``shared_namespaces``, ``ns_inodes``) and ``container`` (``call``, ``run``, ``start``;
labs 01–02), ``rootfs`` (01), ``limits`` (03), ``runtime`` and ``bundle`` (04).
"""
