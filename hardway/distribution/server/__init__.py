"""hardway.distribution.server: the course's own registry (chapters 00 and 07–10).

The real CNCF Distribution registry (Debian's ``docker-registry``), started on
127.0.0.1 with its state under ``.state/``. Its modules, from the bottom up — each
imports only those above it in this list:

- :mod:`~.config` — what the registry is told: :class:`~.config.RegistryConfig`, the
  ``config.yml`` it becomes (JSON, which is YAML), the auth modes' names, the port;
- :mod:`~.paths` — where a registry's files live, ``.state/registry/<port>/``;
- :mod:`~.services` — the course's running registries and token services, found by
  their command lines, and who owns them;
- :mod:`~.process` — a server as a detached process: spawn, pid file, stop, reap;
- :mod:`~.tokenserver` — the token service that signs JWTs for token mode;
- :mod:`~.modes` — what the auth modes none, basic and token need besides the
  registry: the users' htpasswd file, the token service as a detached process;
- :mod:`~.local_registry` — the public API on top: ``status``, ``start``,
  ``start_mode``, ``ensure_running``, ``stop``, and ``registry start|stop|status``
  (``registry seed`` is added one floor up, by :mod:`hardway.course.seed`).

This is the floor beneath the client: nothing here speaks the registry API as a client.

Public contract (notebooks and labs import these): ``local_registry``
(``ensure_running``, ``start``, ``start_mode``, ``stop``, ``status``).

Grading references: none; checks of labs 07–08 start the registry through
``local_registry``.
"""
