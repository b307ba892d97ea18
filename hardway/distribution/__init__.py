"""hardway.distribution: chapters 07–08, images to and from a registry over HTTP.

Image references (:mod:`~hardway.distribution.reference`) and the registry API client,
built in floors: requests to one host, retried when that is safe and counted
(:mod:`~hardway.distribution.http`), blobs streamed down and resumed with ``Range``
(:mod:`~hardway.distribution.downloads`), blobs pushed up, monolithic or in chunks,
resumed or restarted (:mod:`~hardway.distribution.uploads`), and on them the
:class:`~hardway.distribution.registry.Registry` with manifests, tags, whole images and
the module-level ``pull``/``push`` (:mod:`~hardway.distribution.registry`), whose
keyword options have one home (:mod:`~hardway.distribution.options`). Around it:
authentication — challenges, scopes, bearer tokens (:mod:`~hardway.distribution.auth`)
— and the credentials it answers with, from ``~/.docker/config.json`` and credential
helpers, where ``login`` stores them (:mod:`~hardway.distribution.credentials`), which
failures are retried (:mod:`~hardway.distribution.retry`), the registry's errors
(:mod:`~hardway.distribution.errors`), progress bars (:mod:`~hardway.distribution.progress`),
the ``oci:``/``docker-archive:``/``docker://`` names that tie the formats together
(:mod:`~hardway.distribution.transports`) and the image commands of ``python -m hardway``
(:mod:`~hardway.distribution.commands`). Beneath it, :mod:`hardway.distribution.server`
starts the course's own registry.

Public contract (notebooks and labs import these): ``registry`` with ``Registry`` (its
methods from every floor: ``push_blob``, ``get_manifest``, ``write_image``, …),
``pull``, ``push``, ``push_index``, ``delete``, ``login`` and ``ACCEPT``;
``credentials.Credentials``, ``store_credentials``, ``erase_credentials``;
``auth.parse_challenges``. (Unpacking a pulled image is :mod:`hardway.image.unpack`.)

Grading references — checks compare learners' answers with these:
``auth.parse_challenges``, ``reference.parse_reference`` (07), ``registry.Registry``
(07–08).
"""
