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
* 06.3 ``my_select_platform(index, platform) -> dict``: the entry containerd picks —
  both platforms normalised first (``linux/arm`` is ``arm/v7``, ``arm64/v8`` is ``arm64``),
  named cases every run, their order shuffled. The expected entries are written by hand,
  not computed by :meth:`hardway.image.platform.Platform.matches` (the same rule: an
  answer is never checked against the code it is meant to reproduce);
* 06.4 ``tag_manifest(index, manifest_bytes, tag) -> dict``: the ``index.json`` that
  tags a manifest, moving the tag if another entry had it;
* 06.5 ``my_write_image(layout, layers, config, tag) -> str``: a whole OCI layout from
  layer directories, read back blob by blob, inspected by skopeo, unpacked by umoci;
* 06.6 ``my_write_index(layout, tags, tag) -> str``: an image index of two platforms
  (one with a variant), from which skopeo must pick each platform's image.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hardway.course.checks import fresh_rng, scratch
from hardway.course.checks.child import in_child
from hardway.course.checks.sandbox import tree_snapshot, umoci_unpack
from hardway.course.grading import exercise, expect
from hardway.errors import HardwayError, MissingToolError
from hardway.image import layout
from hardway.image.descriptor import Descriptor
from hardway.image.digest import sha256_digest
from hardway.image.layers import write_layer
from hardway.image.manifest import ANNOTATION_REF_NAME
from hardway.image.mediatypes import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST
from hardway.image.mutate import file_layer, from_layers
from hardway.image.platform import Platform
from hardway.image.random import random_image
from hardway.image.validate import config_problems, manifest_problems

__all__ = [
    "REFERENCE",
    "config_of_layers",
    "image_written",
    "index_entry",
    "index_written",
    "manifest_of",
    "platform_selected",
]


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
    points=1,
    hints=(
        "the config names each layer by what is *inside* the blob, not the blob",
        "diff_ids are sha256 digests of the uncompressed tars; the run settings go under 'config'",
        "a diff_id is the sha256 of the *uncompressed* tar: gzip.decompress(blob) first. "
        "Env is a list of 'KEY=VALUE' strings; rootfs is {'type': 'layers', 'diff_ids': [...]}.",
    ),
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
    points=1,
    hints=(
        "the manifest names blobs as they are stored in a registry: compressed",
        "three fields per descriptor, computed from the exact bytes; the layers' media type says "
        "gzip",
        "a descriptor is {'mediaType', 'digest', 'size'} of the exact bytes it points at; "
        "the manifest lists the compressed blobs (what a registry stores), the config lists "
        "the diff_ids.",
    ),
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


#: (index entries as (os, architecture, variant), platform asked, the entry containerd picks,
#: what a simpler rule gets wrong)
_PLATFORM_CASES = [
    (
        [("linux", "arm", "v6"), ("linux", "arm", "v7"), ("linux", "amd64", "")],
        "linux/arm",
        1,
        "linux/arm means linux/arm/v7: containerd gives an arm platform without a variant v7",
    ),
    (
        [("linux", "arm64", "v8"), ("linux", "amd64", "")],
        "linux/arm64",
        0,
        "linux/arm64 and linux/arm64/v8 are one platform: v8 is arm64's only variant",
    ),
    (
        [("linux", "arm64", ""), ("linux", "arm", "v7")],
        "linux/arm64/v8",
        0,
        "linux/arm64/v8 and linux/arm64 are one platform: v8 is arm64's only variant",
    ),
    (
        [("linux", "arm", ""), ("linux", "arm", "v6")],
        "linux/arm/v7",
        0,
        "an arm entry without a variant is arm/v7",
    ),
    (
        [("linux", "arm", "v7"), ("linux", "arm", "v6")],
        "linux/arm/v6",
        1,
        "linux/arm/v6 asks for v6: compare the variant when one is given",
    ),
    (
        [("windows", "amd64", ""), ("linux", "amd64", "")],
        "linux/amd64",
        1,
        "compare the os too",
    ),
]


def _index(entries: list[tuple[str, str, str]], rng: random.Random) -> dict:
    manifests: list[dict[str, Any]] = [
        Descriptor.of(rng.randbytes(16), OCI_MANIFEST).to_dict()  # no platform: skipped
    ]
    for os_name, arch, variant in entries:
        entry = Descriptor.of(rng.randbytes(16), OCI_MANIFEST).to_dict()
        entry["platform"] = {"os": os_name, "architecture": arch}
        if variant:
            entry["platform"]["variant"] = variant
        manifests.append(entry)
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}


@exercise(
    "06.3",
    points=2,
    hints=(
        "containerd does not compare the strings as written: it first *normalises* both "
        "platforms, then compares os, architecture and variant exactly",
        "normalise: arm without a variant (or '7') is arm/v7; arm64 with 'v8' (or '8') is "
        "plain arm64; then an entry matches when all three fields are equal",
        "def norm(os, arch, variant): if arch == 'arm' and variant in ('', '7'): variant = "
        "'v7'; if arch == 'arm64' and variant in ('v8', '8'): variant = ''; return (os, "
        "arch, variant) — and skip entries without 'platform'; LookupError when none match",
    ),
)
def platform_selected(my_select_platform: Callable[[dict, str], dict]) -> None:
    """my_select_platform(index, "os/arch[/variant]") picks the entry containerd would."""
    rng = fresh_rng()
    cases = list(_PLATFORM_CASES)
    rng.shuffle(cases)
    for entries, wanted, position, lesson in cases:
        index = _index(entries, rng)
        want = index["manifests"][position + 1]
        try:
            got = my_select_platform(json.loads(json.dumps(index)), wanted)
        except LookupError:
            raise AssertionError(
                f"my_select_platform(index, {wanted!r}) raised LookupError, but the index has "
                f"a match: {lesson}"
            ) from None
        expect(isinstance(got, dict), f"my_select_platform returned a {type(got).__name__}")
        expect(
            got.get("digest") == want["digest"],
            f"for {wanted!r} among {[str('/'.join(p for p in e if p)) for e in entries]} you "
            f"chose {got.get('platform')}: {lesson}",
        )
    index = _index([("linux", "amd64", ""), ("linux", "arm", "v6")], rng)
    for missing in ("linux/riscv64", "linux/arm"):
        try:
            got = my_select_platform(index, missing)
        except LookupError:
            continue
        raise AssertionError(
            f"my_select_platform(index, {missing!r}) returned {_short(got.get('platform'))}, "
            "but the index has no such platform (linux/arm is arm/v7, not v6): raise LookupError"
        )


def _ref(entry: object) -> object:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    return annotations.get(ANNOTATION_REF_NAME) if isinstance(annotations, dict) else None


@exercise(
    "06.4",
    points=2,
    against=("skopeo",),
    hints=(
        "a tag in a layout is an annotation on one entry of index.json",
        "build the manifest's descriptor, annotate it, and make sure no other entry keeps the same"
        " tag",
        "an index.json entry is the manifest's descriptor plus annotations "
        "{'org.opencontainers.image.ref.name': tag}; a tag names one entry, so take it off "
        "any other entry first, and keep schemaVersion and mediaType.",
    ),
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
                count > 0,
                f"no entry of index.json is annotated {ANNOTATION_REF_NAME}={name!r}: that "
                "annotation is the tag",
            )
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
            expect(
                _skopeo_digest(path, name) == str(new.digest()),
                f"skopeo finds another manifest under {name!r}",
            )
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


# --- 06.5 my_write_image -----------------------------------------------------------------


def _layer_dirs(work: Path, rng: random.Random) -> list[Path]:
    """Two layer directories: a program, then files of their own (no name in both)."""
    first, second = work / "layer-0", work / "layer-1"
    (first / "bin").mkdir(parents=True)
    (first / "bin" / "hello").write_bytes(b"#!/bin/sh\necho hello\n")
    (first / "bin" / "hello").chmod(0o755)
    (first / "bin" / "hi").symlink_to("hello")
    (second / "etc").mkdir(parents=True)
    for number in range(rng.randint(1, 4)):
        (second / "etc" / f"conf-{number}").write_bytes(rng.randbytes(rng.randint(0, 5000)))
    return [first, second]


def _blob(layout_dir: Path, digest: object, what: str) -> bytes:
    text = str(digest)
    expect(text.startswith("sha256:"), f"{what} has the digest {_short(digest)}")
    path = layout_dir / "blobs" / "sha256" / text.removeprefix("sha256:")
    expect(path.is_file(), f"{what} {text[:19]}… is not in blobs/sha256/")
    data = path.read_bytes()
    expect(str(sha256_digest(data)) == text, f"blobs/sha256/{path.name[:12]}… holds other bytes")
    return data


def _described(desc: object, data: bytes, media_type: str, what: str) -> None:
    expect(isinstance(desc, dict), f"{what}'s descriptor is not an object")
    expect(
        desc.get("mediaType") == media_type,
        f"{what}'s descriptor has mediaType {desc.get('mediaType')!r}; it is {media_type!r}",
    )
    expect(
        desc.get("size") == len(data),
        f"{what}'s descriptor says size {desc.get('size')!r}, but the blob has {len(data)} bytes",
    )


def _skopeo_digest(layout_dir: Path, tag: str) -> str:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise MissingToolError("skopeo is not installed", fix="sudo apt-get install skopeo")
    seen = subprocess.run(
        [skopeo, "inspect", f"oci:{layout_dir}:{tag}"], capture_output=True, text=True, check=False
    )
    expect(seen.returncode == 0, f"skopeo cannot read your image: {seen.stderr.strip()[-200:]}")
    return str(json.loads(seen.stdout)["Digest"])


@exercise(
    "06.5",
    points=5,
    hints=(
        "the order of a layout: every blob first (layers, then the config that names them, "
        "then the manifest that names the config), index.json last",
        "per layer directory: my_write_layer into a temporary file, which gives digest, "
        "diff_id and size; rename it to blobs/sha256/<hex of the digest>; the config is "
        "`config` plus rootfs {'type': 'layers', 'diff_ids': [...]}",
        "blob = lambda data: write data to blobs/sha256/<sha256 hex>; config_bytes = "
        "json.dumps({**config, 'rootfs': …}).encode(); manifest = {'schemaVersion': 2, "
        "'mediaType': OCI_MANIFEST, 'config': descriptor(config_bytes, OCI_CONFIG), 'layers': "
        "[…OCI_LAYER_GZIP…]}; index.json = tag_manifest(old index or empty, manifest_bytes, tag)",
    ),
    against=("skopeo", "umoci"),
)
def image_written(my_write_image: Callable[[Path, list[Path], dict, str], str]) -> None:
    """my_write_image writes an OCI layout that skopeo inspects and umoci unpacks."""
    rng = fresh_rng()
    tag = f"v{rng.randint(1, 99)}"
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/hello"], "Env": [f"SEED={rng.getrandbits(32)}"]},
    }
    with scratch("06") as tmp:
        work = Path(tmp)
        dirs = _layer_dirs(work, rng)
        layout_dir = work / "layout"
        got = in_child(
            lambda: my_write_image(layout_dir, list(dirs), json.loads(json.dumps(config)), tag),
            timeout=30,
            what="your my_write_image",
        )
        marker = layout_dir / "oci-layout"
        expect(marker.is_file(), "the layout has no oci-layout file")
        expect(
            json.loads(marker.read_text()).get("imageLayoutVersion") == "1.0.0",
            'oci-layout should be {"imageLayoutVersion": "1.0.0"}',
        )
        index_path = layout_dir / "index.json"
        expect(index_path.is_file(), "the layout has no index.json")
        entries = json.loads(index_path.read_text()).get("manifests", [])
        tagged = [e for e in entries if _ref(e) == tag]
        expect(
            tagged,
            f"no entry of index.json is annotated {ANNOTATION_REF_NAME}={tag!r}: that "
            "annotation is how tools find an image by its tag",
        )
        expect(len(tagged) == 1, f"{len(tagged)} entries of index.json are tagged {tag!r}")
        entry = tagged[0]
        manifest_bytes = _blob(layout_dir, entry.get("digest"), "the index.json entry")
        _described(entry, manifest_bytes, OCI_MANIFEST, "the index.json entry")
        expect(got == entry["digest"], f"my_write_image returned {_short(got)}, not the digest")
        manifest = json.loads(manifest_bytes)
        expect(
            manifest.get("mediaType") == OCI_MANIFEST and manifest.get("schemaVersion") == 2,
            f"the manifest says mediaType {manifest.get('mediaType')!r}, schemaVersion "
            f"{manifest.get('schemaVersion')!r}: an OCI manifest has {OCI_MANIFEST!r}, 2",
        )
        config_bytes = _blob(layout_dir, manifest.get("config", {}).get("digest"), "the config")
        _described(manifest["config"], config_bytes, OCI_CONFIG, "the config")
        layers = manifest.get("layers", [])
        expect(len(layers) == len(dirs), f"{len(dirs)} directories, {len(layers)} layers")
        blobs = [_blob(layout_dir, d.get("digest"), f"layer {n}") for n, d in enumerate(layers)]
        for number, (desc, blob) in enumerate(zip(layers, blobs, strict=True)):
            _described(desc, blob, OCI_LAYER_GZIP, f"layer {number}")
        written = json.loads(config_bytes)
        diff_ids = written.get("rootfs", {}).get("diff_ids")
        expect(
            diff_ids != [d["digest"] for d in layers],
            "the config's diff_ids are the digests of the gzip blobs; a diff_id names the tar",
        )
        want = [str(sha256_digest(gzip.decompress(b))) for b in blobs]
        expect(diff_ids == want, f"rootfs.diff_ids are {_short(diff_ids)}, expected {_short(want)}")
        expect(
            {k: written.get(k) for k in config} == config,
            "keep what the config you were given says (architecture, os, config)",
        )
        problems = manifest_problems(manifest) + config_problems(written)
        expect(not problems, f"the image is not valid: {problems[:2]}")
        expect(_skopeo_digest(layout_dir, tag) == got, "skopeo finds another manifest")
        unpacked = tree_snapshot(umoci_unpack(blobs, work / "umoci"))
        want_tree = {**tree_snapshot(dirs[0]), **tree_snapshot(dirs[1])}
        want_tree["hardlinks"] = ()
        wrong = sorted(
            k for k in set(want_tree) | set(unpacked) if want_tree.get(k) != unpacked.get(k)
        )
        expect(not wrong, f"umoci unpacked your image into another tree: {wrong[:4]} differ")


# --- 06.6 an index of two platforms ----------------------------------------------------------


def _skopeo_layers(layout_dir: Path, tag: str, platform: Platform) -> list[str]:
    """The layers skopeo picks from ``tag`` for ``platform`` (containers/image's own choice)."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise MissingToolError("skopeo is not installed", fix="sudo apt-get install skopeo")
    override = ["--override-os", platform.os, "--override-arch", platform.architecture]
    override += ["--override-variant", platform.variant] if platform.variant else []
    seen = subprocess.run(
        [skopeo, *override, "inspect", f"oci:{layout_dir}:{tag}"],
        capture_output=True,
        text=True,
        check=False,
    )
    expect(
        seen.returncode == 0,
        f"skopeo cannot pick {platform} from your index: {seen.stderr.strip()[-200:]}",
    )
    return list(json.loads(seen.stdout).get("Layers") or [])


@exercise(
    "06.6",
    points=3,
    hints=(
        "an index is one more JSON blob: a list of manifest descriptors, each with the "
        "platform its config names — and index.json tags it like any manifest",
        "per tag: the index.json entry gives the manifest's descriptor; read the manifest, "
        "then its config: platform = {'os': …, 'architecture': …} plus 'variant' when the "
        "config has one; the index is {'schemaVersion': 2, 'mediaType': OCI_INDEX, "
        "'manifests': [...]}",
        "raw = json.dumps(index_doc).encode(); write_blob(layout, raw); index.json = "
        "tag_manifest(index, raw, tag) (its mediaType comes from raw: OCI_INDEX); return "
        "digest_of(raw)",
    ),
    against=("skopeo",),
)
def index_written(my_write_index: Callable[[Path, list[str], str], str]) -> None:
    """my_write_index(layout, tags, tag) writes an index skopeo picks platforms from."""
    rng = fresh_rng()
    platforms = [Platform("amd64", "linux"), Platform("arm", "linux", "v7")]
    rng.shuffle(platforms)
    images = [
        random_image(500, rng.randint(1, 2), seed=rng.getrandbits(32), platform=p)
        for p in platforms
    ]
    names = [f"{p.architecture}-{rng.getrandbits(16):04x}" for p in platforms]
    tag = f"multi-{rng.randint(1, 99)}"
    with scratch("06") as tmp:
        layout_dir = Path(tmp) / "layout"
        for image, name in zip(images, names, strict=True):
            layout.write_image(image, layout_dir, tag=name)
        got = in_child(
            lambda: my_write_index(layout_dir, list(names), tag),
            timeout=30,
            what="your my_write_index",
        )
        entries = json.loads((layout_dir / "index.json").read_text()).get("manifests", [])
        tagged = [e for e in entries if _ref(e) == tag]
        expect(len(tagged) == 1, f"{len(tagged)} entries of index.json are tagged {tag!r}")
        raw = _blob(layout_dir, tagged[0].get("digest"), "the index")
        _described(tagged[0], raw, OCI_INDEX, "the index.json entry of the index")
        expect(got == tagged[0]["digest"], f"my_write_index returned {_short(got)}")
        doc = json.loads(raw)
        expect(
            (doc.get("schemaVersion"), doc.get("mediaType")) == (2, OCI_INDEX),
            f"the index says schemaVersion {doc.get('schemaVersion')!r}, mediaType "
            f"{doc.get('mediaType')!r}: an OCI index has 2 and {OCI_INDEX!r}",
        )
        listed = doc.get("manifests", [])
        expect(len(listed) == len(images), f"the index lists {len(listed)} manifests, not 2")
        for image, entry in zip(images, listed, strict=True):
            platform = image.config().platform
            want = {"os": platform.os, "architecture": platform.architecture}
            want |= {"variant": platform.variant} if platform.variant else {}
            expect(
                entry.get("digest") == str(image.digest()),
                "the index lists the manifests in another order, or other ones: one entry "
                "per tag, in the order given",
            )
            _described(entry, image.raw_manifest(), OCI_MANIFEST, f"the {platform} entry")
            expect(
                entry.get("platform") == want,
                f"the {platform} entry has platform {_short(entry.get('platform'))}; the image's "
                f"config says {want} (a client picks by these fields, variant included)",
            )
        for image in images:
            platform = image.config().platform
            want_layers = [str(d.digest) for d in image.manifest().layers]
            expect(
                _skopeo_layers(layout_dir, tag, platform) == want_layers,
                f"asked for {platform}, skopeo picks another image from your index",
            )


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
