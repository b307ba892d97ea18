"""hardway.build: chapters 09–10, building images efficiently, and from a Dockerfile.

A Jib-style layer cache — blobs, selectors, LRU pruning (:mod:`~hardway.build.cache`),
incremental builds from layer sources (:mod:`~hardway.build.builder`), a Dockerfile
parser (:mod:`~hardway.build.dockerfile`) and the builder that runs it, ``RUN`` in the
course's runtime (:mod:`~hardway.build.dockerbuild`). It stands on all of image,
isolation and distribution.

Public contract (notebooks and labs import these): ``cache.Cache``, ``cache.key_of``;
``builder`` (``LayerSource``, ``Settings``, ``build``, ``selector_key``,
``source_entries``); ``dockerfile``; ``dockerbuild.build``, ``dockerbuild.step_key``.

Grading references — checks compare learners' answers with these: ``cache``
(``Cache``, ``key_of``; lab 09), ``dockerfile`` (``Instruction``, ``command``,
``expand``, ``name_values``) and ``dockerbuild.configured`` (lab 10).
"""
