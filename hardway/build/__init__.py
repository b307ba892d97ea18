"""hardway.build: chapters 09–10, building images efficiently, and from a Dockerfile.

A Jib-style layer cache — blobs, selectors, LRU pruning (:mod:`~hardway.build.cache`) —
and two builders on it, which give back the same kind of result, the image and a report
per unit of work (:mod:`~hardway.build.result`):

* incremental builds from layer sources (:mod:`~hardway.build.builder`);
* ``docker build`` (:mod:`~hardway.build.dockerbuild`, also ``python -m hardway build``):
  the Dockerfile parser (:mod:`~hardway.build.dockerfile`), the context as Docker sends
  it, without what ``.dockerignore`` names (:mod:`~hardway.build.dockerignore`), the
  executor that runs it
  stage by stage (:mod:`~hardway.build.executor`, on the images in the making of
  :mod:`~hardway.build.stage`), the cache keys of its steps (:mod:`~hardway.build.stepkey`),
  what config instructions do (:mod:`~hardway.build.runconfig`), what ``COPY`` copies
  (:mod:`~hardway.build.copyplan`), every path resolved inside its root so that no
  symlink leads out of it (:mod:`~hardway.build.inroot`), and ``RUN``/``COPY``/``WORKDIR``
  done in the course's runtime on an overlayfs mount, captured as a layer
  (:mod:`~hardway.build.capture`).

It stands on all of image, isolation and distribution.

Public contract (notebooks and labs import these): ``cache.Cache``, ``cache.key_of``;
``builder`` (``LayerSource``, ``Settings``, ``build``, ``selector_key``,
``source_entries``); ``dockerfile``; ``dockerbuild.build``; ``stepkey.step_key``; the
results' ``reports``, ``digest``, ``cache_hits`` and ``executed``
(``result.BuildResult``), plus ``table()``, ``bytes_read`` and ``bytes_written`` of
``builder.LayerBuildResult``.

Grading references — checks compare learners' answers with these: ``cache``
(``Cache``, ``key_of``; lab 09), ``dockerfile`` (``Instruction``, ``command``,
``expand``, ``name_values``) and ``runconfig.configured`` (lab 10).
"""
