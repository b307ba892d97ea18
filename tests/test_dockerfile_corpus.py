"""Real-world Dockerfiles (``tests/dockerfiles/``) built by our builder and by buildah.

Each corpus entry is built twice, offline: by :func:`hardway.build.dockerbuild.build`
(bases from the session registry) and by buildah (Debian's; ``--storage-driver vfs
--isolation chroot``, a temporary ``--root``/``--runroot``, bases pulled from an OCI
layout of the same images, ``--layers`` so that it keeps one layer per step). Then:

* the image configs agree field by field (:data:`FIELDS`), buildah built in its
  ``docker`` format, the only one in which it writes ``Healthcheck``, ``Shell`` and
  ``OnBuild`` (its OCI format drops them; Docker writes them in both);
* step by step (history entry by history entry), where both made a layer, the layers
  hold the same entries — names, types, modes, owners, contents, link targets (not
  times), and the merged root filesystems are the same.

Where buildah 1.28 and Docker differ, we follow Docker and the difference is written
here, once, as code (:func:`buildah_as_docker`), and in ``docs/dockerfiles.md``:

* ``RUN`` under buildah's chroot isolation leaves empty ``/etc/hostname``,
  ``/etc/hosts``, ``/etc/resolv.conf`` files and a ``/run`` directory in the layer
  (the mount points of its own files); Docker's layers have none of them;
* ``WORKDIR`` makes its directory in a layer of its own in Docker (and here, when the
  directory is new); buildah makes no layer for it and creates the directory in the
  next step's layer, or not at all when no step follows that writes;
* buildah adds its ``io.buildah.version`` label and writes empty ``Cmd``/``Entrypoint``
  lists where Docker leaves them out;
* buildah 1.28 has no heredocs (they came in buildah 1.33): ``heredocs/`` is built by
  buildah from ``Dockerfile.buildah``, the same steps written without heredocs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from hardway.build.cache import Cache
from hardway.build.dockerbuild import build
from hardway.course.seed import seed_base_image, seed_python_image
from hardway.distribution.transports import read_image, write_image
from hardway.image.protocols import Image
from hardway.sys.trees import remove_tree

CORPUS = Path(__file__).resolve().parent / "dockerfiles"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: overlayfs, namespaces")
needs_buildah = pytest.mark.skipif(not shutil.which("buildah"), reason="no buildah (apt)")
pytestmark = [needs_root, needs_buildah]

#: the keys of the image config's ``config`` that a Dockerfile sets
FIELDS = (
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
    "StopSignal", "Healthcheck", "Shell", "OnBuild",
)  # fmt: skip
#: files buildah's chroot isolation leaves in a RUN step's layer (its mount points)
BUILDAH_RUN_STUBS = ("etc/hostname", "etc/hosts", "etc/resolv.conf", "run")
#: the images the corpus builds FROM, and the seeded repositories they are
BASES = {"hardway/busybox": "busybox", "hardway/python": "python"}


def quiet(_line: str) -> None:
    pass


class Buildah:
    """buildah with its own storage in *top* (vfs, so no overlay mounts to leave
    behind), offline, never pulling."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.base = ["buildah", "--root", str(top / "root"), "--runroot", str(top / "run")]
        self.base += ["--storage-driver", "vfs"]
        self.env = {**os.environ, "TMPDIR": str(top / "tmp")}
        (top / "tmp").mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            [*self.base, *args], capture_output=True, text=True, env=self.env, timeout=600
        )
        assert done.returncode == 0, f"buildah {' '.join(args)}:\n{done.stderr[-3000:]}"
        return done.stdout

    def build(self, ctx: Path, tag: str, dockerfile: str = "Dockerfile") -> Image:
        self("bud", "--isolation", "chroot", "--layers", "--format", "docker", "--pull-never",
             "-f", str(ctx / dockerfile), "-t", tag, str(ctx))  # fmt: skip
        # a docker-archive keeps the docker-format config as it is; pushing to an OCI
        # layout would convert it, dropping Healthcheck, Shell and OnBuild
        archive = self.top / f"out-{uuid.uuid4().hex[:8]}.tar"
        self("push", tag, f"docker-archive:{archive}:{tag}")
        return read_image(f"docker-archive:{archive}")


@pytest.fixture(scope="module")
def builders(registry, tmp_path_factory):
    """``(registry host, buildah)``: the seeded bases in the session registry for ours
    and in buildah's storage (via an OCI layout) for buildah."""
    seed_base_image(registry.port)
    seed_python_image(registry.port, cache=Cache(tmp_path_factory.mktemp("seed-cache")))
    host = f"127.0.0.1:{registry.port}"
    top = tmp_path_factory.mktemp("buildah")
    buildah = Buildah(top)
    # buildah names what it pulls from oci:PATH after PATH, so each part of PATH must be a
    # valid reference component: a temporary directory's random name may hold "-_" or end
    # in "_", so the layout goes where every part is lowercase letters, digits and "-"
    layout = Path("/tmp") / f"hardway-bases-{uuid.uuid4().hex}"
    try:
        for name, tag in BASES.items():
            write_image(read_image(f"docker://{host}/{name}:latest"), f"oci:{layout}:{tag}")
            image_id = buildah("pull", "--quiet", f"oci:{layout}:{tag}").split()[-1]
            buildah("tag", image_id, name)
    finally:
        remove_tree(layout)
    yield host, buildah
    subprocess.run([*buildah.base, "rm", "--all"], capture_output=True)
    remove_tree(top)


def corpus_context(name: str, tmp_path: Path) -> Path:
    """A copy of corpus entry *name*, with what git cannot hold made here: the host's
    static busybox, and the tar archives ``ADD`` unpacks."""
    ctx = tmp_path / name
    shutil.copytree(CORPUS / name, ctx, symlinks=True)
    if name == "scratch-static":
        shutil.copy(shutil.which("busybox") or pytest.skip("no busybox"), ctx / "busybox")
    if (ctx / "conf" / "src").is_dir():
        for archive, mode in (("settings.tar.gz", "w:gz"), ("plain.tar", "w")):
            with tarfile.open(ctx / "conf" / archive, mode) as tar:
                tar.add(ctx / "conf" / "src" / archive.split(".")[0], arcname=".")
    return ctx


def fields(image: Image) -> dict:
    """The config fields a Dockerfile sets, buildah's extras taken out."""
    config = json.loads(image.raw_config())
    run = config.get("config") or {}
    got = {key: run.get(key) or None for key in FIELDS}  # [] and {} mean "not set"
    labels = {k: v for k, v in (got["Labels"] or {}).items() if k != "io.buildah.version"}
    got["Labels"] = labels or None
    return {**got, "os": config["os"], "architecture": config["architecture"]}


def entries(layer) -> dict[str, tuple]:
    """A layer's entries: name -> (type, mode, uid, gid, content hash or link target)."""
    found = {}
    with layer.compressed() as blob, tarfile.open(fileobj=blob, mode="r|*") as tar:
        for member in tar:
            name = member.name.removeprefix("./").rstrip("/")
            data = member.linkname
            if member.isreg():
                data = hashlib.sha256(tar.extractfile(member).read()).hexdigest()  # type: ignore[union-attr]
            found[name] = (member.type, member.mode & 0o7777, member.uid, member.gid, data)
    return found


def steps(image: Image, skip: int) -> list[tuple[str, dict | None]]:
    """``(created_by, entries of its layer or None)`` for each history entry after the
    first *skip* (the base image's)."""
    config = json.loads(image.raw_config())
    layers = iter(image.layers())
    found = []
    for entry in config["history"]:
        layer = None if entry.get("empty_layer") else next(layers)
        found.append((entry.get("created_by", ""), layer))
    return [(text, entries(layer) if layer else None) for text, layer in found[skip:]]


def merged(layers: list[dict | None]) -> dict[str, tuple]:
    """The root filesystem *layers* (as :func:`entries`) make, whiteouts applied."""
    tree: dict[str, tuple] = {}
    for layer in filter(None, layers):
        for name, entry in layer.items():
            head, _, base = name.rpartition("/")
            if base.startswith(".wh."):
                gone = f"{head}/{base[4:]}".lstrip("/")
                tree = {k: v for k, v in tree.items() if k != gone and not k.startswith(gone + "/")}
            else:
                tree[name] = entry
    return tree


def root_of(image: Image) -> dict[str, tuple]:
    """The root filesystem of *image*, as entries."""
    return merged([layer for _, layer in steps(image, 0)])


def buildah_as_docker(ours: list, theirs: list) -> list:
    """buildah's steps as Docker's would be: the differences in the module docstring."""
    fixed = []
    workdirs: dict[str, tuple] = {}  # the directories Docker's WORKDIR layers made
    for (text, mine), (_, layer) in zip(ours, theirs, strict=True):
        if layer is not None and "#(nop)" not in text:
            stubs = {n for n in BUILDAH_RUN_STUBS if n not in (mine or {})}
            stubs |= {n.rpartition("/")[0] for n in stubs} - {""} - set(mine or {})
            kept = {k: v for k, v in layer.items() if k not in stubs}
            layer = {**kept, **{k: layer[k] for k in stubs & set(layer)
                                if any(n.startswith(k + "/") for n in kept)}}  # fmt: skip
        if layer is not None:  # buildah made them only now, with this step's owner
            layer = {k: workdirs.get(k, v) if v[0] == tarfile.DIRTYPE else v
                     for k, v in layer.items()}  # fmt: skip
        if mine is not None and layer is None and "#(nop)  WORKDIR" in text:
            layer = mine  # Docker's WORKDIR layer, which buildah does not make
            workdirs.update(mine)
        fixed.append((text, layer))
    return fixed


def base_steps(image: Image) -> int:
    """How many history entries the corpus's bases have (they come first)."""
    return len(json.loads(image.raw_config())["history"])


def compare(ours: Image, theirs: Image, base: Image | None) -> None:
    assert fields(ours) == fields(theirs)
    skip = base_steps(base) if base is not None else 0
    mine, other = steps(ours, skip), steps(theirs, skip)
    assert len(mine) == len(other), (
        [t for t, _ in mine],
        [t for t, _ in other],
    )
    other = buildah_as_docker(mine, other)
    for (text, layer), (_, their_layer) in zip(mine, other, strict=True):
        assert layer == their_layer, text
    below = [layer for _, layer in steps(theirs, 0)[:skip]]
    assert root_of(ours) == merged(below + [layer for _, layer in other])


SIMPLE = ["app", "scratch-static", "multistage", "python"]


@pytest.mark.parametrize("name", SIMPLE)
def test_corpus_builds_like_buildah(builders, tmp_path, name) -> None:
    host, buildah = builders
    ctx = corpus_context(name, tmp_path)
    ours = build(ctx, cache=tmp_path / "cache", fmt="docker", out=quiet).image
    theirs = buildah.build(ctx, f"corpus/{name}")
    base = first_base(ctx, host)
    compare(ours, theirs, base)


def first_base(ctx: Path, host: str) -> Image | None:
    """The seeded base image the last stage of *ctx*'s Dockerfile starts from."""
    text = (ctx / "Dockerfile").read_text()
    if "hardway/python" in text:
        return read_image(f"docker://{host}/hardway/python:latest")
    if "hardway/busybox" in text:
        return read_image(f"docker://{host}/hardway/busybox:latest")
    return None


def test_heredocs_build_like_buildah_without_them(builders, tmp_path) -> None:
    host, buildah = builders
    ctx = corpus_context("heredocs", tmp_path)
    ours = build(ctx, cache=tmp_path / "cache", fmt="docker", out=quiet).image
    theirs = buildah.build(ctx, "corpus/heredocs", "Dockerfile.buildah")
    base = read_image(f"docker://{host}/hardway/busybox:latest")
    assert fields(ours) == fields(theirs)
    skip = base_steps(base)
    mine, other = steps(ours, skip), buildah_as_docker(steps(ours, skip), steps(theirs, skip))
    assert [layer for _, layer in mine] == [layer for _, layer in other]
    assert root_of(ours)["etc/app/raw.conf"] == root_of(theirs)["etc/app/raw.conf"]


def test_onbuild_triggers_run_in_the_child_like_buildah(builders, tmp_path) -> None:
    host, buildah = builders
    parent_ctx = corpus_context("onbuild-parent", tmp_path)
    parent = build(parent_ctx, cache=tmp_path / "cache", fmt="docker", out=quiet).image
    write_image(parent, f"docker://{host}/hardway/onbuild-parent:latest")
    buildah_parent = buildah.build(parent_ctx, "hardway/onbuild-parent")
    compare(parent, buildah_parent, read_image(f"docker://{host}/hardway/busybox:latest"))
    assert fields(parent)["OnBuild"] == ["COPY . /app/", "RUN ls /app > /app/listing.txt"]

    ctx = corpus_context("onbuild-child", tmp_path)
    ours = build(ctx, cache=tmp_path / "cache", fmt="docker", out=quiet).image
    theirs = buildah.build(ctx, "corpus/onbuild-child")
    assert fields(ours)["OnBuild"] is None  # triggers fire one generation down only
    compare(ours, theirs, parent)
    listing = root_of(ours)["app/listing.txt"][4]
    assert listing == hashlib.sha256(b"Dockerfile\nlisting.txt\none.txt\ntwo.txt\n").hexdigest()


# -- .dockerignore: never in a layer, never in a cache key ---------------------------------


IGNORED = ["secret.txt", "logs/a.log", "sub/b.log", "build/output.bin", "docs/README.md",
           "Dockerfile", ".dockerignore", "conf/src/plain/deep/file.txt"]  # fmt: skip
SENT = ["main.txt", "keep.log", "sub/secret.txt", "docs/keep.md", "bin/run.sh"]


def test_dockerignored_files_reach_no_layer(builders, tmp_path) -> None:
    ctx = corpus_context("app", tmp_path)
    image = build(ctx, cache=tmp_path / "cache", out=quiet).image
    tree = root_of(image)
    assert [name for name in IGNORED if f"srv/app/{name}" in tree] == []
    assert [name for name in SENT if f"srv/app/{name}" not in tree] == []
    assert "srv/app/logs" in tree and "srv/app/build" not in tree


def test_a_change_to_an_ignored_file_never_misses_the_cache(builders, tmp_path, executions):
    ctx = corpus_context("app", tmp_path)
    cache = Cache(tmp_path / "cache")
    first = build(ctx, cache=cache, out=quiet).image
    assert "copy" in executions
    executions.clear()
    for name in IGNORED[:-3]:
        (ctx / name).write_text(f"changed {uuid.uuid4()}\n")
    (ctx / "logs" / "new.log").write_text("new\n")
    again = build(ctx, cache=cache, out=quiet).image
    assert executions == [] and again.raw_config() == first.raw_config()
    (ctx / "keep.log").write_text("brought back by !keep.log, so it counts\n")
    build(ctx, cache=cache, out=quiet)
    assert executions[0] == "copy"
