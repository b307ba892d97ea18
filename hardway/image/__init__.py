"""hardway.image: chapters 05–06, every byte of a container image.

One module per concept, like go-containerregistry's ``pkg/v1``; each opens with what
its concept is and why. From the bottom:

* names and bytes: :mod:`~hardway.image.digest` (digests), :mod:`~hardway.image.compression`
  (gzip, zstd, the expansion limit);
* layers (05): :mod:`~hardway.image.entries` (a layer's members, in their fixed order),
  :mod:`~hardway.image.tarwriter` (their tar bytes), :mod:`~hardway.image.layers` (writing
  a layer in one pass: digest, diff_id, size), :mod:`~hardway.image.diff` (the layer
  between two snapshots), :mod:`~hardway.image.overlay` (an overlayfs upper directory as a
  layer), :mod:`~hardway.image.whiteouts` (the deletion rules),
  :mod:`~hardway.image.apply` (unpacking safely), :mod:`~hardway.image.commands`
  (``python -m hardway layer``);
* the documents (06), small dataclasses with the spec's field names:
  :mod:`~hardway.image.mediatypes`, :mod:`~hardway.image.jsondoc` (canonical bytes, strict
  reading), :mod:`~hardway.image.platform`, :mod:`~hardway.image.descriptor`,
  :mod:`~hardway.image.config` (the image config, image ID, chain IDs),
  :mod:`~hardway.image.manifest` (manifest and index), :mod:`~hardway.image.protocols`
  (the read-only ``Image`` and ``Layer``, ``describe``);
* whole images (06): :mod:`~hardway.image.validate` (every problem at once),
  :mod:`~hardway.image.blobs` (verified blobs, ``StoredImage``), the local formats
  :mod:`~hardway.image.layout` (OCI layouts) and :mod:`~hardway.image.archive`
  (``docker save``/``load``), edits that return new images (:mod:`~hardway.image.mutate`)
  random images for tests (:mod:`~hardway.image.random`) and an image's layers unpacked
  into a root filesystem (:mod:`~hardway.image.unpack`).

No network and no namespaces here: that is :mod:`hardway.distribution` and
:mod:`hardway.isolation`.

Public contract (notebooks and labs import these): the modules ``layers``, ``diff``,
``overlay``, ``apply``, ``whiteouts``, ``archive``, ``layout``, ``mutate``, ``validate``;
``digest.sha256_digest``; ``blobs.BlobDir``, ``blobs.StoredImage``; the media types of
``mediatypes`` (``OCI_MANIFEST``, ``OCI_INDEX``, ``OCI_CONFIG``, ``OCI_LAYER_TAR``,
``DOCKER_MANIFEST``, ``DOCKER_MANIFEST_LIST``, ``DOCKER_CONFIG``, ``DOCKER_LAYER_TAR``);
``jsondoc.canonical_json``; ``config.ImageConfig``, ``config.image_id``;
``descriptor.Descriptor``; ``manifest.Manifest``, ``manifest.Index``,
``manifest.ANNOTATION_REF_NAME``; ``platform.Platform``; ``protocols.describe``;
``unpack.unpack_image``.

Grading references — checks compare learners' answers with these: ``digest``
(``parse_digest``, ``sha256_digest``, ``digest_problem``; labs 00 and 05–09),
``compression``, ``entries.tree_entries`` and ``whiteouts`` (05); ``mediatypes``,
``descriptor``, ``manifest`` and ``platform`` (06, 08); ``validate`` and ``layout`` (06);
``config.ContainerConfig`` (10); ``random`` (the inputs of 06 and 08).
"""
