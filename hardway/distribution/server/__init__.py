"""hardway.distribution.server: the course's own registry (chapters 00 and 07–10).

The real CNCF Distribution registry (Debian's ``docker-registry``), started on
127.0.0.1 with its state under ``.state/`` (:mod:`~.local_registry`), its config
(:mod:`~.config`), its auth modes — none, htpasswd, token (:mod:`~.modes`) — the small
token service that signs JWTs for token mode (:mod:`~.tokenserver`), and how the
course's running registries are found and who owns them (:mod:`~.services`). This is
the floor beneath the client: nothing here speaks the registry API as a client.

Public contract (notebooks and labs import these): ``local_registry``
(``ensure_running``, ``start``, ``stop``, ``status``), ``modes``.

Grading references: none; checks of labs 07–08 start the registry through
``local_registry``.
"""
