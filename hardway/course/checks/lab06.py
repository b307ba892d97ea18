"""hardway.course.checks.lab06
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 06, config and manifests. Each run builds fresh random layers and
indexes, and compares the learner's documents with :mod:`hardway.image.config`,
:mod:`hardway.image.manifest`, :mod:`hardway.image.validate` and a real OCI layout read
back by :mod:`hardway.image.layout`.

* 06.1 ``image_config(layer_blobs, entrypoint, env) -> bytes``: a config whose
  ``rootfs.diff_ids`` name the *uncompressed* layers;
* 06.2 ``oci_manifest(config_bytes, layer_blobs) -> bytes``: descriptors of the config
  and of the *compressed* layer blobs;
* 06.3 ``image_id(config_bytes) -> str``: the digest of the exact bytes, never of a
  re-serialisation;
* 06.4 ``pick_platform(index_bytes, platform) -> str``: the manifest digest for
  ``os/arch[/variant]``, or ``LookupError``;
* 06.5 ``tag_manifest(index, manifest_bytes, tag) -> dict``: the ``index.json`` that
  tags a manifest, moving the tag if another entry had it.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hardway.course.checks import fresh_rng, scratch
from hardway.course.grading import exercise, expect
from hardway.errors import HardwayError
from hardway.image import layout
from hardway.image.descriptor import Descriptor
from hardway.image.digest import sha256_digest
from hardway.image.layers import write_layer
from hardway.image.manifest import ANNOTATION_REF_NAME
from hardway.image.mediatypes import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST
from hardway.image.mutate import file_layer, from_layers
from hardway.image.platform import Platform
from hardway.image.random import random_image, random_index
from hardway.image.validate import config_problems, manifest_problems

__all__ = ["config_of_layers", "digest_of_config", "index_entry", "manifest_of", "platform_pick"]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:50] + "…" + text[-12:]


def _tar(rng: random.Random) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(rng.randint(1, 3)):
            data = rng.randbytes(rng.randint(0, 3000))
            info = tarfile.TarInfo(f"dir{i}/file-{rng.getrandbits(24):06x}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _layers(rng: random.Random) -> tuple[list[bytes], list[bytes]]:
    """(uncompressed tars, gzip blobs) of 1–3 random layers."""
    tars = [_tar(rng) for _ in range(rng.randint(1, 3))]
    return tars, [gzip.compress(t, mtime=0) for t in tars]


def _json(data: object, call: str) -> dict[str, Any]:
    expect(isinstance(data, bytes), f"{call} returned a {type(data).__name__}, not bytes")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise AssertionError(f"{call} is not valid JSON: {exc}") from None
    expect(isinstance(doc, dict), f"{call} is a JSON {type(doc).__name__}, not an object")
    return doc


@exercise(
    "06.1",
    points=2,
    hint="a diff_id is the sha256 of the *uncompressed* tar: gzip.decompress(blob) first. "
    "Env is a list of 'KEY=VALUE' strings; rootfs is {'type': 'layers', 'diff_ids': [...]}.",
)
def config_of_layers(
    image_config: Callable[[list[bytes], list[str], dict[str, str]], bytes],
) -> None:
    """image_config(...) writes a config whose diff_ids name the uncompressed layers."""
    rng = fresh_rng()
    tars, blobs = _layers(rng)
    entrypoint = ["/bin/app", f"--seed={rng.getrandbits(16)}"]
    env = {"PATH": "/usr/bin:/bin", f"K{rng.getrandbits(16)}": "a=b c"}
    call = "image_config(layer_blobs, entrypoint, env)"
    doc = _json(image_config(blobs, entrypoint, env), call)
    expect(
        (doc.get("architecture"), doc.get("os")) == ("amd64", "linux"),
        f"the config's architecture and os should be 'amd64' and 'linux', not "
        f"{doc.get('architecture')!r} and {doc.get('os')!r}",
    )
    rootfs = doc.get("rootfs")
    expect(isinstance(rootfs, dict), "the config has no 'rootfs' object")
    expect(rootfs.get("type") == "layers", f"rootfs.type is {rootfs.get('type')!r}, not 'layers'")
    diff_ids = rootfs.get("diff_ids")
    want = [str(sha256_digest(t)) for t in tars]
    expect(isinstance(diff_ids, list), "rootfs.diff_ids should be a list")
    expect(
        diff_ids != [str(sha256_digest(b)) for b in blobs],
        "rootfs.diff_ids are the digests of the gzip blobs; a diff_id names the tar inside",
    )
    expect(
        diff_ids != [d.removeprefix("sha256:") for d in want],
        "each diff_id starts with its algorithm: 'sha256:'",
    )
    expect(len(diff_ids) == len(want), f"{len(blobs)} layers need {len(want)} diff_ids")
    expect(diff_ids == want, f"rootfs.diff_ids is {_short(diff_ids)}, expected {_short(want)}")
    run = doc.get("config")
    expect(isinstance(run, dict), "the config has no 'config' object (Entrypoint and Env go there)")
    expect(
        run.get("Entrypoint") == entrypoint,
        f"config.Entrypoint is {_short(run.get('Entrypoint'))}, expected {_short(entrypoint)}",
    )
    want_env = [f"{k}={v}" for k, v in env.items()]
    expect(
        run.get("Env") == want_env, f"config.Env is {_short(run.get('Env'))}, expected {want_env}"
    )
    problems = config_problems(doc)
    expect(not problems, "the config breaks the spec: " + "; ".join(problems))


@exercise(
    "06.2",
    points=2,
    hint="a descriptor is {'mediaType', 'digest', 'size'} of the exact bytes it points at; "
    "the manifest lists the compressed blobs (what a registry stores), the config lists "
    "the diff_ids.",
)
def manifest_of(oci_manifest: Callable[[bytes, list[bytes]], bytes]) -> None:
    """oci_manifest(config_bytes, layer_blobs) points at the config and the gzip blobs."""
    rng = fresh_rng()
    tars, blobs = _layers(rng)
    image = random_image(rng.randint(1, 200), len(blobs), seed=rng.getrandbits(32))
    config_bytes = image.raw_config()
    doc = _json(oci_manifest(config_bytes, blobs), "oci_manifest(config_bytes, layer_blobs)")
    expect(doc.get("schemaVersion") == 2, f"schemaVersion is {doc.get('schemaVersion')!r}, not 2")
    expect(
        doc.get("mediaType") == OCI_MANIFEST,
        f"mediaType is {doc.get('mediaType')!r}; an OCI manifest's is {OCI_MANIFEST!r}",
    )
    want_config = Descriptor.of(config_bytes, OCI_CONFIG).to_dict()
    expect(
        doc.get("config") == want_config,
        f"config is {_short(doc.get('config'))}, expected {_short(want_config)}",
    )
    layers = doc.get("layers")
    expect(isinstance(layers, list), "layers should be a list of descriptors")
    expect(len(layers) == len(blobs), f"{len(blobs)} blobs need {len(blobs)} layer descriptors")
    for i, (got, tar, blob) in enumerate(zip(layers, tars, blobs, strict=True)):
        want = Descriptor.of(blob, OCI_LAYER_GZIP).to_dict()
        expect(isinstance(got, dict), f"layers[{i}] is not a JSON object")
        expect(
            got.get("digest") != str(sha256_digest(tar)),
            f"layers[{i}].digest is the diff_id; the manifest names the compressed blob",
        )
        expect(got == want, f"layers[{i}] is {_short(got)}, expected {_short(want)}")
    problems = manifest_problems(doc)
    expect(not problems, "the manifest breaks the spec: " + "; ".join(problems))


def _unusual_bytes(rng: random.Random) -> bytes:
    """A valid config, written the way another tool might: indented, unsorted keys."""
    doc = json.loads(random_image(64, rng.randint(1, 3), seed=rng.getrandbits(32)).raw_config())
    doc = dict(reversed(list(doc.items())))
    doc["config"] = {"Env": [f"X={rng.getrandbits(20)}"], "Cmd": ["/bin/sh"]}
    return (json.dumps(doc, indent=rng.choice([2, 3, 4])) + "\n").encode()


@exercise(
    "06.3",
    points=1,
    hint="hash the bytes exactly as they are: json.loads + json.dumps gives other bytes "
    "(spacing, key order), so another digest and another image.",
)
def digest_of_config(image_id: Callable[[bytes], str]) -> None:
    """image_id(config_bytes) is the digest of those exact bytes."""
    rng = fresh_rng()
    for data in (_unusual_bytes(rng), random_image(16, 1, seed=rng.getrandbits(32)).raw_config()):
        want = str(sha256_digest(data))
        got = image_id(data)
        expect(isinstance(got, str), f"image_id(...) returned a {type(got).__name__}, not a str")
        parsed = json.loads(data)
        rewritten = {
            str(sha256_digest(json.dumps(parsed, **kw).encode()))
            for kw in ({}, {"sort_keys": True}, {"separators": (",", ":"), "sort_keys": True})
        }
        expect(
            got not in rewritten or got == want,
            "image_id parsed and re-serialised the config; hash the bytes you were given",
        )
        expect(got != want.removeprefix("sha256:"), "an image ID starts with 'sha256:'")
        expect(got == want, f"image_id(...) returned {_short(got)}, expected {_short(want)}")


@exercise(
    "06.4",
    points=2,
    hint="compare os and architecture; compare the variant only when the wanted platform "
    "has one ('linux/arm' takes the first arm entry); skip entries without a platform; "
    "raise LookupError when nothing matches.",
)
def platform_pick(pick_platform: Callable[[bytes, str], str]) -> None:
    """pick_platform(index_bytes, "os/arch[/variant]") returns the right manifest digest."""
    rng = fresh_rng()
    for _ in range(4):
        index, chosen = random_index(rng)
        raw = index.to_json()
        wanted = [str(p) for p in chosen] + ["linux/arm"] * any(
            p.architecture == "arm" for p in chosen
        )
        for text in wanted:
            want_entry = index.select(Platform.parse(text))
            want = str(want_entry.digest)
            try:
                got = pick_platform(raw, text)
            except LookupError:
                also = (
                    " (no variant asked for: any variant will do)" if text.count("/") == 1 else ""
                )
                raise AssertionError(
                    f"pick_platform(index, {text!r}) raised LookupError, but the index has "
                    f"{want_entry.platform}{also}"
                ) from None
            expect(
                got == want,
                f"pick_platform(index, {text!r}) returned {_short(got)}, expected {_short(want)}",
            )
        missing = next(
            t for t in ("linux/riscv64", "linux/ppc64le", "freebsd/amd64") if t not in wanted
        )
        try:
            got = pick_platform(raw, missing)
        except LookupError:
            continue
        except NotImplementedError:
            raise
        except Exception as exc:
            raise AssertionError(
                f"pick_platform(index, {missing!r}) raised {type(exc).__name__}; raise "
                "LookupError (KeyError is one) when no manifest matches"
            ) from None
        raise AssertionError(
            f"pick_platform(index, {missing!r}) returned {_short(got)}, but the index has no "
            "such platform: raise LookupError"
        )


def _ref(entry: object) -> object:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    return annotations.get(ANNOTATION_REF_NAME) if isinstance(annotations, dict) else None


@exercise(
    "06.5",
    points=2,
    hint="an index.json entry is the manifest's descriptor plus annotations "
    "{'org.opencontainers.image.ref.name': tag}; a tag names one entry, so take it off "
    "any other entry first, and keep schemaVersion and mediaType.",
)
def index_entry(tag_manifest: Callable[[dict, bytes, str], dict]) -> None:
    """tag_manifest(index, manifest_bytes, tag) gives an index.json that skopeo reads."""
    rng = fresh_rng()
    with scratch("06") as tmp:
        path = Path(tmp) / "layout"
        old, new = (random_image(100, 1, seed=rng.getrandbits(32)) for _ in range(2))
        layout.write_image(old, path, tag="stable")
        layout.write_image(new, path)  # blobs in, entry untagged …
        index = json.loads((path / "index.json").read_bytes())
        index["manifests"] = index["manifests"][:1]  # … and the entry removed again
        tag = f"v{rng.randint(1, 99)}"
        for name, moves in ((tag, False), ("stable", True)):
            got = tag_manifest(index, new.raw_manifest(), name)
            expect(
                isinstance(got, dict), f"tag_manifest returned a {type(got).__name__}, not a dict"
            )
            (path / "index.json").write_text(json.dumps(got))
            try:
                count = layout.tags(path).count(name)
            except HardwayError as exc:
                raise AssertionError(f"the new index.json cannot be read: {exc}") from None
            expect(
                count == 1,
                f"{count} entries are tagged {name!r}: a tag names exactly one entry "
                "(take it off the old one)",
            )
            try:
                found = layout.read_image(path, name)
            except HardwayError as exc:
                raise AssertionError(f"after tagging {name!r}, reading it fails: {exc}") from None
            expect(found.digest() == new.digest(), f"tag {name!r} does not name the new manifest")
            entries = got.get("manifests", [])
            entry = next(e for e in entries if _ref(e) == name)
            want = Descriptor.of(new.raw_manifest(), OCI_MANIFEST).to_dict()
            want["annotations"] = {ANNOTATION_REF_NAME: name}
            expect(
                entry == want, f"the entry for {name!r} is {_short(entry)}, expected {_short(want)}"
            )
            expect(
                (got.get("schemaVersion"), got.get("mediaType")) == (2, OCI_INDEX),
                "keep the index's schemaVersion (2) and mediaType",
            )
            if not moves:
                expect(
                    layout.read_image(path, "stable").digest() == old.digest(),
                    f"tagging {name!r} changed what 'stable' names; leave other tags alone",
                )
            index = got


# --- what lab 06 hands on (hardway.course.carry) --------------------------------------------


def course_write_image(layout_dir: Path, layers: list[Path], config: dict, tag: str) -> str:
    """The course's my_write_image: each layer directory as a reproducible gzip layer, the
    config (``rootfs.diff_ids`` filled in), the manifest and ``index.json`` (``tag`` as its
    ref name) in the OCI layout ``layout_dir``; the manifest's digest."""
    written = []
    with scratch("06") as tmp:
        for number, directory in enumerate(layers):
            blob = Path(tmp) / f"layer-{number}.tar.gz"
            info = write_layer(Path(directory), blob, source_date_epoch=0)
            written.append(file_layer(blob, info, OCI_LAYER_GZIP))
        diff_ids = [str(x.diff_id) for x in written]
        doc = {**config, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        image = from_layers(json.dumps(doc, indent=2).encode(), written)
        layout.write_image(image, Path(layout_dir), tag=tag)
    return str(image.digest())


def course_select_platform(index: dict, platform: str) -> dict:
    """The course's my_select_platform: the first entry of ``index["manifests"]`` for
    ``platform`` as containerd matches it (both sides normalised: ``linux/arm`` is
    ``linux/arm/v7``); LookupError when there is none."""
    wanted = Platform.parse(platform).normalized()
    for entry in index.get("manifests", []):
        if "platform" not in entry:
            continue
        offered = Platform.from_dict(entry["platform"]).normalized()
        if (offered.os, offered.architecture, offered.variant) == (
            wanted.os,
            wanted.architecture,
            wanted.variant,
        ):
            return dict(entry)
    raise LookupError(f"the index has no manifest for {platform}")


REFERENCE: dict[str, Callable[..., object]] = {
    "my_write_image": course_write_image,
    "my_select_platform": course_select_platform,
}
