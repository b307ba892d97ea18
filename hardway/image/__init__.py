"""hardway.image: chapters 05–06, every byte of a container image.

Digests (:mod:`~hardway.image.digest`), compression (:mod:`~hardway.image.compression`),
layers — deterministic tar, diffs, whiteouts, safe application
(:mod:`~hardway.image.layers`, :mod:`~hardway.image.whiteouts`,
:mod:`~hardway.image.apply`) — the JSON documents of an image (config, manifest, index,
media types, platforms: :mod:`~hardway.image.documents`), their validation
(:mod:`~hardway.image.validate`), blobs and the local formats (:mod:`~hardway.image.blobs`,
:mod:`~hardway.image.layout` for OCI layouts, :mod:`~hardway.image.archive` for
``docker save``/``load``), edits that return new images (:mod:`~hardway.image.mutate`),
random images for tests (:mod:`~hardway.image.random`) and an image's layers unpacked
into a root filesystem (:mod:`~hardway.image.unpack`). No network and no
namespaces here: that is :mod:`hardway.distribution` and :mod:`hardway.isolation`.

Public contract (notebooks and labs import these): ``layers``, ``whiteouts``,
``archive``, ``layout``, ``mutate``, ``validate``; ``digest.sha256_digest``;
``blobs.BlobDir``, ``blobs.StoredImage``; from ``documents`` the media types
(``OCI_MANIFEST``, ``OCI_INDEX``, ``OCI_CONFIG``, ``OCI_LAYER_TAR``, ``DOCKER_MANIFEST``,
``DOCKER_MANIFEST_LIST``), ``Index``, ``Platform``, ``describe``, ``canonical_json``;
``unpack.unpack_image``.

Grading references — checks compare learners' answers with these: ``digest``
(``parse_digest``, ``sha256_digest``, ``digest_problem``; labs 00 and 05–09),
``compression`` (05), ``layers.tree_entries`` and ``whiteouts`` (05), ``documents``,
``validate``, ``layout`` (06), ``random`` (the inputs of 06 and 08).
"""
