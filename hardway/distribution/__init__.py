"""hardway.distribution: chapters 07–08, images to and from a registry over HTTP.

Image references (:mod:`~hardway.distribution.reference`), the registry API client
(:mod:`~hardway.distribution.registry`), authentication — challenges, bearer tokens,
``~/.docker/config.json`` (:mod:`~hardway.distribution.auth`) — which failures are
retried (:mod:`~hardway.distribution.retry`), the registry's errors
(:mod:`~hardway.distribution.errors`), progress bars (:mod:`~hardway.distribution.progress`),
the ``oci:``/``docker-archive:``/``docker://`` names that tie the formats together
(:mod:`~hardway.distribution.transports`) and the image commands of ``python -m hardway``
(:mod:`~hardway.distribution.commands`). Beneath it, :mod:`hardway.distribution.server`
starts the course's own registry.

Public contract (notebooks and labs import these): ``registry`` with ``Registry``;
``auth.Credentials``, ``auth.parse_challenges``; ``commands.unpack_image``.

Grading references — checks compare learners' answers with these:
``auth.parse_challenges``, ``reference.parse_reference`` (07), ``registry.Registry``
(07–08).
"""
