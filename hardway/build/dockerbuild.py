"""hardway.build.dockerbuild
~~~~~~~~~~~~~~~~~~~~~~~~~

``docker build``, the hard way. A Dockerfile (:mod:`hardway.build.dockerfile`) is executed one
instruction at a time, and each instruction turns the image so far into a new one:

* ``FROM`` starts from an image of the course's registry (or from nothing, ``scratch``,
  or from an earlier stage);
* ``ENV``, ``WORKDIR``, ``USER``, ``LABEL``, ``EXPOSE``, ``ENTRYPOINT``, ``CMD`` and ``ARG``
  only change the image *config* (plus a history entry);
* ``COPY`` and ``RUN`` change the *filesystem*: the step runs on an overlayfs mount
  whose lower directory is the image's unpacked root and whose upper directory starts
  empty, so afterwards the upper directory holds exactly the step's changes — and
  :func:`hardway.image.overlay.overlay_layer` turns it into the step's layer. ``RUN`` executes
  in the chapter 04 runtime (every namespace, no network); the mount lives in a child's
  private mount namespace and disappears with it (:func:`_in_overlay`).

**The build cache** is Docker's rule: a step's key is its parent (the image ID after the
previous step) plus the instruction's text after ``ARG``/``ENV`` substitution — which for
``COPY`` names the content hash of every file copied (paths, modes, bytes). A key seen
before gives the stored result (``---> Using cache``) without running anything; the
first miss runs that step and, since every later key includes its parent, all the steps
after it. Hence "frequently changing steps go last". Results live in
:class:`hardway.build.cache.Cache`: each step's layer blob and config blob, and a selector
from its key to them.

Same Dockerfile and context, same digests: every time in the image is
``SOURCE_DATE_EPOCH`` (else 1970) and layers are written deterministically.
``python -m hardway build -t DEST CONTEXT`` is the command line.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from hardway.build.cache import Cache, key_of
from hardway.build.dockerfile import (
    Dockerfile,
    Instruction,
    Stage,
    command,
    exec_form,
    expand,
    name_values,
    parse,
    split_words,
)
from hardway.errors import BuildError, ContainerError, DockerfileError, HardwayError
from hardway.image.blobs import StoredImage
from hardway.image.config import ContainerConfig, History, ImageConfig, RootFS, image_id
from hardway.image.descriptor import Descriptor
from hardway.image.digest import Digest
from hardway.image.entries import Entry
from hardway.image.layers import LayerInfo, source_epoch
from hardway.image.manifest import Manifest
from hardway.image.mediatypes import (
    CONFIG_TYPES,
    MANIFEST_TYPES,
    layer_compression,
    layer_media_type,
)
from hardway.image.mutate import empty_image, timestamp
from hardway.image.protocols import Image, Layer
from hardway.sys.trees import remove_tree

__all__ = [
    "BuildResult",
    "StepReport",
    "build",
    "configured",
    "copy_plan",
    "created_by",
    "register",
    "step_key",
    "tree_hash",
]

#: how ``created_by`` spells an instruction that only changes the config, as Docker does
NOP = "/bin/sh -c #(nop) "
#: the seconds one RUN may take before it is killed
RUN_TIMEOUT = 600.0
_EMPTY_LAYER = "empty"


# -- pure parts: keys, history, COPY planning -------------------------------------------------


def created_by(inst: Instruction, text: str, args: Mapping[str, str] | None = None) -> str:
    """The history text of a step, Docker-style; it is also what its cache key hashes.

    ``RUN`` shows its command (prefixed ``|N K=V`` by the build arguments in scope, whose
    values change what it does); everything else is ``/bin/sh -c #(nop)`` and the
    instruction with its variables replaced.

    >>> created_by(Instruction("RUN", "echo hi", 1), "echo hi", {"V": "1"})
    '|1 V=1 /bin/sh -c echo hi'
    >>> created_by(Instruction("ENV", "A=$B", 1), "A=2")
    '/bin/sh -c #(nop)  ENV A=2'
    """
    if inst.keyword == "RUN":
        line = " ".join(command(text))
        if args:
            pairs = " ".join(f"{k}={v}" for k, v in sorted(args.items()))
            line = f"|{len(args)} {pairs} {line}"
        return line
    flags = "".join(f"--{k}={v} " for k, v in inst.flags.items())
    return f"{NOP} {inst.keyword} {flags}{text}"


def step_key(parent: Digest | str, history: str, content: str = "") -> str:
    """A step's cache key: its parent image ID, its history text and (for ``COPY``) the
    hash of what it copies. Anything else — the time, the machine — is left out.

    >>> step_key("sha256:aa", "/bin/sh -c echo") == step_key("sha256:aa", "/bin/sh -c echo")
    True
    >>> step_key("sha256:aa", "x") == step_key("sha256:bb", "x")
    False
    """
    return key_of({"parent": str(parent), "step": history, "content": content})


def tree_hash(path: Path, follow: bool = True) -> str:
    """sha256 over names, modes, link targets and contents below *path* (a file or a
    directory): what ``COPY`` copies, and nothing it does not (no times, no owners)."""
    digest = hashlib.sha256()
    top = os.stat(path) if follow else os.lstat(path)
    items = [("", path, top)]
    while items:
        name, where, st = items.pop()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            digest.update(f"l {name} {os.readlink(where)}\n".encode())
        elif stat.S_ISDIR(st.st_mode):
            digest.update(f"d {name} {mode:o}\n".encode())
            for child in sorted(os.listdir(where), reverse=True):
                sub = os.path.join(where, child)
                items.append((f"{name}/{child}", sub, os.lstat(sub)))
        elif stat.S_ISREG(st.st_mode):
            with open(where, "rb") as fh:
                content = hashlib.file_digest(fh, "sha256").hexdigest()
            digest.update(f"f {name} {mode:o} {content}\n".encode())
        else:
            digest.update(f"o {name} {mode:o}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CopyItem:
    """One source of a ``COPY``: the file or directory on this machine, and where it
    goes in the image (a directory's *contents* go into ``dest``)."""

    source: str
    dest: str
    is_dir: bool
    #: the name the copy gets in an existing directory (the source's, not its link target's)
    name: str = ""


def copy_plan(
    root: Path, sources: Sequence[str], dest: str, workdir: str, *, where: str
) -> list[CopyItem]:
    """Docker's ``COPY`` rules, decided before anything is copied.

    Sources are relative to *root* (the build context, or a stage's root filesystem)
    and may not leave it — not with ``..``, nor through a symlink: links are followed
    *inside* *root*, as if it were ``/``; wildcards match; a directory's contents are
    copied, not the directory; several sources need a destination ending in ``/``; a
    destination ending in ``/`` (or a directory) gets the source's base name; a relative
    destination is relative to ``WORKDIR``.
    """
    if not dest.startswith("/"):
        dest = os.path.join(workdir or "/", dest) + ("/" if dest.endswith("/") else "")
    matched: list[tuple[str, str]] = []  # (name as written, resolved inside root)
    for source in sources:
        clean = os.path.normpath("/" + source).lstrip("/") or "."
        if os.path.normpath(source).split("/")[0] == ".." and not source.startswith("/"):
            raise BuildError(f"COPY {source}: outside {where}", fix="copy files inside it")
        hits = sorted(glob.glob(clean, root_dir=root, include_hidden=True)) or [clean]
        found = [(hit, real) for hit in hits if (real := _resolved(root, hit))]
        if not found:
            raise BuildError(
                f"COPY failed: {source!r} not found in {where}",
                fix="check the name (it is relative to the context directory, and a "
                "symlink is followed inside it, never out of it)",
            )
        matched += found
    if len(matched) > 1 and not dest.endswith("/"):
        raise BuildError(
            f"COPY with several sources ({', '.join(m[0] for m in matched)}) needs a "
            "directory as the destination, ending in /",
            fix=f"write {dest}/",
        )
    items = []
    for name, path in matched:
        is_dir = os.path.isdir(path)
        target = dest
        if not is_dir and dest.endswith("/"):
            target = os.path.join(dest, os.path.basename(name))
        items.append(CopyItem(path, target, is_dir, os.path.basename(name)))
    return items


def _resolved(root: Path, name: str) -> str | None:
    """*name* in *root* with its symlinks followed inside *root*; ``None`` if not there."""
    try:
        real = _inside(str(root), name)
    except OSError:  # a symlink loop
        return None
    return real if os.path.exists(real) else None


# -- what a build reports ------------------------------------------------------------------


@dataclass(frozen=True)
class StepReport:
    """One step as the build printed it: ``Step N/M : text``, cached or not, its image ID."""

    number: int
    text: str
    cached: bool
    image_id: Digest
    layer: LayerInfo | None = None


@dataclass(frozen=True)
class BuildResult:
    """The image built (its layers read from the cache) and what each step did."""

    image: StoredImage
    steps: tuple[StepReport, ...]

    @property
    def digest(self) -> Digest:
        return self.image.digest()

    @property
    def cache_hits(self) -> int:
        return sum(step.cached for step in self.steps)

    @property
    def executed(self) -> int:
        """Steps that did work (not FROM, not cached)."""
        return sum(not step.cached and not step.text.startswith("FROM") for step in self.steps)


# -- the image being built -----------------------------------------------------------------


@dataclass
class _State:
    """An image in the making: its config and its layers (base layers stream from the
    registry, new ones from the cache)."""

    config: ImageConfig
    layers: list[Layer]
    raw: bytes = b""
    cmd_set: bool = False

    def __post_init__(self) -> None:
        self.raw = self.raw or self.config.to_json()

    @property
    def id(self) -> Digest:
        return image_id(self.raw)

    def image(self, fmt: str = "oci") -> StoredImage:
        """This state as an image (``fmt``: ``"oci"`` or ``"docker"`` media types)."""
        descriptors = tuple(
            Descriptor(
                layer_media_type(fmt, layer_compression(layer.media_type) or "gzip"),
                layer.digest,
                layer.size,
            )
            for layer in self.layers
        )
        manifest = Manifest(
            Descriptor.of(self.raw, CONFIG_TYPES[fmt]), descriptors, MANIFEST_TYPES[fmt]
        )
        blobs = {layer.digest: layer for layer in self.layers}

        def opener(digest: Digest) -> BinaryIO:
            return blobs[digest].compressed()

        return StoredImage(manifest.to_json(), self.raw, opener)


@dataclass
class _Stage:
    """A stage during the build: its state, its build arguments and its unpacked root."""

    index: int
    state: _State
    args: dict[str, str | None]
    root: Path
    unpacked: int = 0  # how many of state.layers are applied to root

    def rootfs(self) -> Path:
        """The stage's root filesystem, up to date (applies layers not applied yet)."""
        from hardway.image.apply import apply_layer

        self.root.mkdir(parents=True, exist_ok=True)
        for layer in self.state.layers[self.unpacked :]:
            with layer.compressed() as blob:
                apply_layer(blob, self.root)
            self.unpacked += 1
        return self.root

    def env(self) -> dict[str, str]:
        """Variables for substitution: build arguments in scope, then ``ENV`` (which wins)."""
        values = {k: v for k, v in self.args.items() if v is not None}
        return {**values, **self.state.config.config.env_dict()}


def _base_reference(name: str) -> str:
    """``hardway/busybox`` means the course's registry; a name with a host is left alone."""
    from hardway.distribution.server.config import default_port

    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"127.0.0.1:{default_port()}/{name}"


def _read_base(name: str) -> Image:
    if name == "scratch":
        return empty_image()
    from hardway.distribution.registry import pull

    return pull(_base_reference(name))


# -- the privileged part: one step on an overlay, in a child -----------------------------------


def _overlay_options(lower: str, upper: str, work: str) -> str:
    # redirect_dir and metacopy would point into lower layers: an OCI layer cannot say that
    return f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off"


def _in_overlay(lower: str, upper: str, work: str, merged: str, action: dict) -> dict:
    """In a child with its own mount namespace: mount the overlay, do *action* on it.

    The mount vanishes with the child's namespace, also when it is killed.
    """
    from hardway.sys import linux

    linux.mount("overlay", merged, "overlay", 0, _overlay_options(lower, upper, work))
    return _act(merged, action)


def _act(root: str, action: dict) -> dict:
    """Do one step's filesystem work on *root* (a merged overlay or a snapshot copy)."""
    from hardway.isolation import container, runtime

    kind = action["kind"]
    if kind == "run":
        plan = runtime.plan(root, action["argv"], config=action["config"], env=action["env"])
        done = container.run(plan.isolation, plan.argv, timeout=action["timeout"])
        return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    if kind == "mkdir":
        target = _inside(root, action["path"])
        created = not os.path.isdir(target)
        os.makedirs(target, exist_ok=True)
        return {"created": created}
    owner = tuple(action["owner"])
    for item in action["items"]:
        _copy_item(root, item, owner, action.get("chmod"))
    return {}


def _inside(root: str, path: str, *, follow_last: bool = True) -> str:
    """*path* of the image, resolved inside *root* (symlinks cannot lead out of it)."""
    from hardway.sys.securejoin import resolve

    def readlink(rel: str) -> str | None:
        full = os.path.join(root, rel)
        return os.readlink(full) if os.path.islink(full) else None

    return os.path.join(root, resolve(path, readlink, follow_last=follow_last))


def _makedirs(root: str, path: str, owner: tuple[int, int]) -> str:
    """Create the directory *path* inside *root* (0755, owned by *owner*, as Docker does)."""
    target = _inside(root, path)
    if not os.path.isdir(target):
        parent = _makedirs(root, os.path.dirname(path.rstrip("/")) or "/", owner)
        target = os.path.join(parent, os.path.basename(path.rstrip("/")))
        os.mkdir(target, 0o755)
        os.lchown(target, *owner)
    return target


def _copy_item(root: str, item: dict, owner: tuple[int, int], chmod: str | None) -> None:
    src, dest = item["source"], item["dest"]
    if not item["is_dir"]:
        parent = _makedirs(root, os.path.dirname(dest) or "/", owner)
        target = _inside(root, dest)
        if os.path.isdir(target):  # an existing directory: the file goes into it
            name = item.get("name") or os.path.basename(src)
            parent, target = target, os.path.join(target, name)
        _copy_one(src, os.path.join(parent, os.path.basename(target)), owner, chmod, follow=True)
        return
    top = _makedirs(root, dest, owner)
    for current, dirs, files in os.walk(src):
        rel = os.path.relpath(current, src)
        here = top if rel == "." else _inside(root, os.path.join(dest, rel))
        for name in sorted(dirs):
            path = os.path.join(current, name)
            if os.path.islink(path):
                _copy_one(path, os.path.join(here, name), owner, chmod, follow=False)
            elif not os.path.isdir(os.path.join(here, name)):
                os.mkdir(os.path.join(here, name))
                _finish(os.path.join(here, name), os.lstat(path).st_mode, owner, chmod)
        for name in sorted(files):
            _copy_one(os.path.join(current, name), os.path.join(here, name), owner, chmod, False)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(current, d))]


def _copy_one(src: str, target: str, owner: tuple[int, int], chmod: str | None, follow: bool):
    if os.path.lexists(target) and not os.path.isdir(target):
        os.unlink(target)
    if not follow and os.path.islink(src):
        os.symlink(os.readlink(src), target)
        os.lchown(target, *owner)
        return
    shutil.copyfile(src, target, follow_symlinks=True)
    _finish(target, os.stat(src).st_mode, owner, chmod)


def _finish(target: str, mode: int, owner: tuple[int, int], chmod: str | None) -> None:
    os.lchown(target, *owner)
    os.chmod(target, int(chmod, 8) if chmod else stat.S_IMODE(mode))


#: how a step's changes are captured: an overlayfs upper directory, or a snapshot diff
METHODS = ("overlay", "snapshot")


def default_method() -> str:
    """overlayfs as root; without root, a snapshot copy and a diff (no mount needed)."""
    return "overlay" if os.geteuid() == 0 else "snapshot"


def _isolated(
    lower: Path, work: Path, action: dict, timeout: float, method: str = "overlay"
) -> Iterator[Entry]:
    """Run *action* on top of *lower*; return the entries of its changes (a layer).

    ``overlay``: on an overlayfs mount, in a child's private mount namespace; the upper
    directory is the change set (:func:`hardway.image.overlay.overlay_entries`). ``snapshot``:
    on a copy of *lower* (``cp -a``), compared with *lower* afterwards
    (:func:`hardway.image.diff.diff_entries`) — slower, but it needs no mount. Everything
    privileged happens in a child (:func:`hardway.isolation.container.call`), never in this
    process, which may be a Jupyter kernel.
    """
    from hardway.image.diff import diff_entries
    from hardway.image.overlay import overlay_entries
    from hardway.isolation import container, namespaces

    if method == "snapshot":
        copy = work / "snapshot"
        subprocess.run(["cp", "-a", f"{lower}/.", str(copy)], check=True, capture_output=True)
        result = container.call(
            namespaces.Isolation(), _act, str(copy), action, timeout=timeout + 30
        )
        action["result"] = result
        return diff_entries(lower, copy, keep_owners=True)
    upper, scratch, merged = (work / n for n in ("upper", "work", "merged"))
    for directory in (upper, scratch, merged):
        directory.mkdir(parents=True)
    spec = namespaces.Isolation({"mnt"})
    args = (str(lower), str(upper), str(scratch), str(merged), action)
    action["result"] = container.call(spec, _in_overlay, *args, timeout=timeout + 30)
    return overlay_entries(upper)


# -- the builder -------------------------------------------------------------------------------


class _Builder:
    """One build: the Dockerfile, the context, the cache, and a scratch directory."""

    def __init__(
        self,
        dockerfile: Dockerfile,
        context: Path,
        cache: Cache,
        *,
        build_args: Mapping[str, str],
        use_cache: bool,
        workdir: Path,
        out: Callable[[str], None],
        fmt: str,
        method: str,
    ) -> None:
        self.df, self.context, self.cache = dockerfile, context, cache
        self.build_args, self.use_cache = dict(build_args), use_cache
        self.workdir, self.out, self.fmt, self.method = workdir, out, fmt, method
        self.epoch = source_epoch() or 0
        self.stages: dict[int, _Stage] = {}
        self.reports: list[StepReport] = []
        self.used_args: set[str] = set()
        self.meta = self._meta_args()
        self.total = 0
        self.number = 0

    def _fail(self, inst: Instruction | Stage, message: str, fix: str | None = None):
        return BuildError(
            f"{self.df.path}, line {inst.line}: {message}",
            fix=fix,
            path=self.df.path,
            line=inst.line,
        )

    def _meta_args(self) -> dict[str, str | None]:
        meta: dict[str, str | None] = {}
        for inst in self.df.args:
            for name, value in name_values(inst, _known(meta), self.df.path):
                meta[name] = self.build_args.get(name, value)
                self.used_args.add(name)
        return meta

    # stages

    def needed(self, target: int) -> list[int]:
        """The stages *target* depends on (``FROM stage``, ``COPY --from``), in order."""
        wanted, todo = set(), [target]
        while todo:
            index = todo.pop()
            if index in wanted:
                continue
            wanted.add(index)
            stage = self.df.stages[index]
            refs = [expand(stage.base, _known(self.meta))]
            refs += [i.flags["from"] for i in stage.instructions if "from" in i.flags]
            for ref in refs:
                found = self._stage_index(ref, before=index)
                if found is not None:
                    todo.append(found)
        return sorted(wanted)

    def _stage_index(self, ref: str, before: int) -> int | None:
        for i, stage in enumerate(self.df.stages[:before]):
            if stage.name == ref.lower() or str(i) == ref:
                return i
        return None

    def run(self, target: int) -> _State:
        order = self.needed(target)
        self.total = sum(1 + len(self.df.stages[i].instructions) for i in order)
        for index in order:
            self.build_stage(index)
        unused = sorted(set(self.build_args) - self.used_args)
        if unused:
            self.out(f"[Warning] One or more build-args {unused} were not consumed")
        return self.stages[target].state

    def build_stage(self, index: int) -> None:
        stage = self.df.stages[index]
        base = expand(stage.base, _known(self.meta))
        self._announce(f"FROM {stage.base}" + (f" AS {stage.name}" if stage.name else ""))
        if not base:
            raise self._fail(
                stage, f"FROM {stage.base}: the image name is empty", "pass --build-arg NAME=image"
            )
        found = self._stage_index(base, before=index)
        if found is not None:
            parent = self.stages[found].state
            state = _State(parent.config, list(parent.layers), parent.raw)
        else:
            try:
                image = _read_base(base)
            except HardwayError as exc:
                fix = exc.fix or "python -m hardway registry seed   (the course's base images)"
                raise self._fail(stage, f"FROM {base}: {exc.message}", fix) from None
            except OSError as exc:  # requests' ConnectionError is one: no registry there
                raise self._fail(
                    stage,
                    f"FROM {base}: cannot reach the registry for {_base_reference(base)} "
                    f"({type(exc).__name__})",
                    "python -m hardway registry start && python -m hardway registry seed",
                ) from None
            state = _State(image.config(), list(image.layers()), image.raw_config())
        root = self.workdir / f"stage-{index}" / "rootfs"
        current = _Stage(index, state, {}, root)
        self.stages[index] = current
        self._report(f"FROM {base}", cached=False, state=state)
        for inst in stage.instructions:
            self._announce(inst.original)
            self.step(current, inst)

    def _announce(self, text: str) -> None:
        self.number += 1
        self.out(f"Step {self.number}/{self.total} : {text}")

    def _report(self, text: str, *, cached: bool, state: _State, layer=None) -> None:
        if cached:
            self.out(" ---> Using cache")
        self.out(f" ---> {state.id.encoded[:12]}")
        self.reports.append(StepReport(self.number, text, cached, state.id, layer))

    # steps

    def step(self, stage: _Stage, inst: Instruction) -> None:
        env = stage.env()
        try:
            if inst.keyword == "ARG":
                self._arg(stage, inst, env)
            text = self._text(inst, env)
        except DockerfileError as exc:
            raise self._fail(inst, exc.message.split(": ", 1)[-1], exc.fix) from None
        run_args = {k: v for k, v in stage.args.items() if v is not None}
        history = created_by(inst, text, run_args if inst.keyword == "RUN" else None)
        content = ""
        items: list[CopyItem] = []
        if inst.keyword in ("COPY", "ADD"):
            words = self._copy_words(inst, env)
            items, content = self._copy_sources(stage, inst, words)
            # --chown/--chmod as they will act: a changed ARG behind them changes the key
            flags = "".join(
                f"--{k}={expand(v, env)} " for k, v in inst.flags.items() if k != "from"
            )
            history = f"{NOP}COPY {flags}{content} in {words[-1]} "
        key = step_key(stage.state.id, history, content)
        hit = self.cache.get_selector(key) if self.use_cache else None
        if hit is not None:
            loaded = self._load(stage, hit)
            if loaded is not None:
                stage.state = loaded
                self._report(history, cached=True, state=loaded, layer=self._layer_of(hit))
                return
        if inst.keyword in ("COPY", "ADD", "RUN", "WORKDIR"):
            layer = self._filesystem_step(stage, inst, text, items, env)
        else:
            layer = None
        state = self._configured(stage, inst, text, env, history, layer)
        config_blob = self.cache.put_bytes(state.raw)
        record = layer or LayerInfo(
            config_blob.digest, config_blob.digest, config_blob.size, "none"
        )
        notes = {"config": str(config_blob.digest), "layer": "new" if layer else _EMPTY_LAYER}
        notes["cmd_set"] = "1" if state.cmd_set else ""
        self.cache.put_selector(key, record, notes)
        stage.state = state
        self._report(history, cached=False, state=state, layer=layer)

    def _text(self, inst: Instruction, env: Mapping[str, str]) -> str:
        """The instruction's arguments after substitution, where Docker substitutes."""
        if inst.keyword == "RUN" and exec_form(inst.args) == ():
            raise DockerfileError("RUN [] has no command to run")
        if inst.keyword in ("RUN", "CMD", "ENTRYPOINT"):
            return inst.args
        if inst.keyword in ("ENV", "LABEL", "ARG"):
            pairs = name_values(inst, env, self.df.path)
            return " ".join(k if v is None else f"{k}={json.dumps(v)[1:-1]}" for k, v in pairs)
        if inst.keyword in ("COPY", "ADD"):
            return " ".join(self._copy_words(inst, env))
        words = [expand(w, env) for w in split_words(inst.args)]
        if inst.keyword in ("WORKDIR", "USER") and len(words) != 1:
            raise DockerfileError(f"{inst.keyword} takes one argument, not {inst.args!r}")
        return " ".join(words)

    def _copy_words(self, inst: Instruction, env: Mapping[str, str]) -> list[str]:
        """``COPY``'s sources and destination: the JSON form (``["a b.txt", "/x/"]``, for
        names with blanks) or words, variables replaced."""
        form = exec_form(inst.args)
        words = [expand(w, env) for w in (form if form is not None else split_words(inst.args))]
        if len(words) < 2:
            raise DockerfileError(f"{inst.keyword} needs a source and a destination")
        return words

    def _arg(self, stage: _Stage, inst: Instruction, env: Mapping[str, str]) -> None:
        for name, default in name_values(inst, env, self.df.path):
            self.used_args.add(name)
            if name in self.build_args:
                stage.args[name] = self.build_args[name]
            elif default is not None:
                stage.args[name] = default
            else:
                stage.args[name] = self.meta.get(name)

    def _layer_of(self, hit) -> LayerInfo | None:
        return None if hit.annotations.get("layer") == _EMPTY_LAYER else hit.layer

    def _load(self, stage: _Stage, hit) -> _State | None:
        """The state a cached step left, or ``None`` if its config blob was pruned."""
        config = hit.annotations.get("config", "")
        if not self.cache.has_blob(config):
            return None
        with self.cache.open_blob(config) as fh:
            raw = fh.read()
        layers = list(stage.state.layers)
        if (info := self._layer_of(hit)) is not None:
            layers.append(self.cache.layer(info, self.fmt))
        cmd_set = stage.state.cmd_set or bool(hit.annotations.get("cmd_set"))
        return _State(ImageConfig.from_json(raw), layers, raw, cmd_set)

    def _copy_sources(self, stage: _Stage, inst: Instruction, words: Sequence[str]):
        if inst.keyword == "ADD" and any("://" in w for w in words[:-1]):
            raise self._fail(inst, "ADD from a URL is not supported", "download it, then COPY")
        source = inst.flags.get("from")
        if source is None:
            root, where = self.context, "the build context"
        else:
            index = self._stage_index(source, before=stage.index)
            if index is None:
                raise self._fail(inst, f"COPY --from={source}: no earlier stage of that name")
            root, where = self.stages[index].rootfs(), f"stage {source!r}"
        workdir = stage.state.config.config.working_dir or "/"
        try:
            items = copy_plan(root, words[:-1], words[-1], workdir, where=where)
        except BuildError as exc:
            raise self._fail(inst, exc.message, exc.fix) from None
        if inst.keyword == "ADD" and any(_is_archive(i) for i in items):
            raise self._fail(
                inst,
                "ADD of a local archive (unpacking it) is not supported",
                "COPY it, then RUN tar",
            )
        hashes = [f"{tree_hash(Path(i.source))} {i.dest} {int(i.is_dir)}" for i in items]
        # a file copied to a DEST that may be a directory lands under its own name there
        hashes += [f"name {i.name}" for i in items if _may_rename(i)]
        content = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
        return items, f"{'dir' if any(i.is_dir for i in items) else 'file'}:{content}"

    def _filesystem_step(self, stage, inst, text, items, env) -> LayerInfo | None:
        config = stage.state.config.config
        if inst.keyword == "RUN":
            args = {k: v for k, v in stage.args.items() if v is not None}
            extra = {k: v for k, v in args.items() if k not in config.env_dict()}
            action = {
                "kind": "run",
                "argv": list(command(text)),
                "config": {"Env": list(config.env), "WorkingDir": config.working_dir,
                           "User": config.user},
                "env": extra,
                "timeout": RUN_TIMEOUT,
            }  # fmt: skip
        elif inst.keyword == "WORKDIR":
            action = {"kind": "mkdir", "path": _workdir(config.working_dir, text)}
        else:
            owner = self._owner(stage, inst, env)
            chmod = self._chmod(inst, env)
            items_json = [vars(i) for i in items]
            action = {"kind": "copy", "items": items_json, "owner": owner, "chmod": chmod}
        lower = stage.rootfs()
        if inst.keyword == "RUN":
            self.out(" ---> Running in a container")
        work = Path(tempfile.mkdtemp(prefix="step-", dir=self.workdir))
        try:
            changes = _isolated(lower, work, action, RUN_TIMEOUT, self.method)
            result = action["result"]
            if inst.keyword == "RUN":
                for stream in ("stdout", "stderr"):
                    if result[stream]:
                        self.out(result[stream].rstrip("\n"))
                if result["returncode"]:
                    raise self._fail(
                        inst,
                        f"the command '{' '.join(command(text))}' returned a non-zero code: "
                        f"{result['returncode']}",
                    )
            if inst.keyword == "WORKDIR" and not result["created"]:
                return None
            info = self.cache.write_layer(changes, source_date_epoch=self.epoch, keep_owners=True)
        except ContainerError as exc:
            raise self._fail(inst, f"{inst.keyword} failed: {exc.message}", exc.fix) from None
        finally:
            remove_tree(work)
        return info

    def _owner(self, stage: _Stage, inst: Instruction, env: Mapping[str, str]) -> list[int]:
        chown = inst.flags.get("chown")
        if not chown:
            return [0, 0]
        from hardway.isolation.runtime import resolve_user

        spec = expand(chown, env)
        try:
            uid, gid = resolve_user(spec, stage.rootfs())
        except ContainerError as exc:
            raise self._fail(inst, f"--chown={spec}: {exc.message}") from None
        if ":" not in spec and not spec.isdigit():
            return [uid, gid]
        return [uid, gid if ":" in spec else uid]

    def _chmod(self, inst: Instruction, env: Mapping[str, str]) -> str | None:
        """``--chmod``'s octal mode, checked here (not in the step's child)."""
        if "chmod" not in inst.flags:
            return None
        mode = expand(inst.flags["chmod"], env)
        if not re.fullmatch(r"[0-7]{3,4}", mode):
            raise self._fail(inst, f"--chmod={mode}: not an octal mode", "write e.g. --chmod=644")
        return mode

    def _configured(self, stage, inst, text, env, history, layer) -> _State:
        """The state after *inst*: its config changes, its history entry, its layer."""
        state = stage.state
        pairs = name_values(inst, env, self.df.path) if inst.keyword in ("ENV", "LABEL") else ()
        run, cmd_set = configured(
            state.config.config, inst.keyword, text, pairs=pairs, cmd_set=state.cmd_set
        )
        config = replace(state.config, config=run, created=timestamp())
        entry = History(created=timestamp(), created_by=history, empty_layer=layer is None)
        layers = list(state.layers)
        if layer is not None:
            layers.append(self.cache.layer(layer, self.fmt))
            diff_ids = (*config.rootfs.diff_ids, layer.diff_id)
            config = replace(config, rootfs=RootFS(diff_ids, config.rootfs.type or "layers"))
        config = replace(config, history=(*config.history, entry))
        return _State(config, layers, b"", cmd_set)


def configured(
    run: ContainerConfig,
    keyword: str,
    text: str,
    *,
    pairs: Sequence[tuple[str, str]] = (),
    cmd_set: bool = False,
) -> tuple[ContainerConfig, bool]:
    """The run settings after one config instruction, and whether ``Cmd`` is now set by
    this stage (*text* is substituted already; *pairs* are ``ENV``/``LABEL``'s).

    ``ENV`` replaces a name in place or appends it; ``WORKDIR`` is relative to the last
    one; ``EXPOSE 80`` means ``80/tcp``; ``CMD``/``ENTRYPOINT`` take the exec or the shell
    form; a new ``ENTRYPOINT`` drops a ``Cmd`` inherited from the base image.

    >>> run, _ = configured(ContainerConfig(cmd=("sh",)), "ENTRYPOINT", '["top"]')
    >>> run.entrypoint, run.cmd
    (('top',), None)
    >>> pairs = [("A", "2"), ("B", "3")]
    >>> configured(ContainerConfig(env=("A=1",)), "ENV", "A=2 B=3", pairs=pairs)[0].env
    ('A=2', 'B=3')
    """
    from hardway.isolation.runtime import merge_env

    changes: dict[str, Any] = {}
    if keyword == "ENV":
        changes["env"] = tuple(merge_env(run.env, dict(pairs)))
    elif keyword == "LABEL":
        changes["labels"] = {**run.labels, **dict(pairs)}
    elif keyword == "WORKDIR":
        changes["working_dir"] = _workdir(run.working_dir, text)
    elif keyword == "USER":
        changes["user"] = text
    elif keyword == "EXPOSE":
        ports = [p if "/" in p else f"{p}/tcp" for p in text.split()]
        changes["exposed_ports"] = (*run.exposed_ports, *ports)
    elif keyword == "CMD":
        changes["cmd"] = _argv(text)
        cmd_set = True
    elif keyword == "ENTRYPOINT":
        changes["entrypoint"] = _argv(text)
        if not cmd_set:  # Docker: a new ENTRYPOINT drops the base image's CMD
            changes["cmd"] = None
    return replace(run, **changes), cmd_set


def _argv(text: str) -> tuple[str, ...] | None:
    """``CMD``/``ENTRYPOINT``'s argv: the exec form, ``[]`` clearing it, or the shell form.

    >>> _argv('["top"]'), _argv("[]"), _argv("top -b")
    (('top',), None, ('/bin/sh', '-c', 'top -b'))
    """
    form = exec_form(text)
    if form is None:
        return ("/bin/sh", "-c", text)
    return form or None


def _may_rename(item: CopyItem) -> bool:
    """Whether the name *item* gets depends on its source's name (``COPY a.txt /dir``)."""
    return not item.is_dir and item.name != os.path.basename(item.dest)


def _is_archive(item: CopyItem) -> bool:
    import tarfile

    return not item.is_dir and tarfile.is_tarfile(item.source)


def _known(values: Mapping[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}


def _workdir(current: str, path: str) -> str:
    """``WORKDIR`` is relative to the previous one.

    >>> _workdir("/app", "src"), _workdir("/app", "/srv/")
    ('/app/src', '/srv')
    """
    return os.path.normpath(os.path.join(current or "/", path))


def build(
    context: str | os.PathLike[str],
    dockerfile: str | os.PathLike[str] | None = None,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    cache: Cache | str | os.PathLike[str] | None = None,
    no_cache: bool = False,
    fmt: str = "oci",
    method: str | None = None,
    out: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build the Dockerfile (default ``CONTEXT/Dockerfile``) in directory *context*.

    :param build_args: (optional) ``--build-arg`` values for ``ARG`` s
    :param target: (optional) the stage to build; default: the last
    :param cache: (optional) a :class:`~hardway.build.cache.Cache` or its directory;
        default ``HARDWAY_CACHE_DIR`` or ``.state/cache``
    :param no_cache: run every step (results are still stored)
    :param method: (optional) ``"overlay"`` or ``"snapshot"`` (:func:`_isolated`);
        default :func:`default_method`. Both give the same layers.
    :param out: (optional) where each progress line goes; default ``print``
    :raises DockerfileError: the Dockerfile is malformed or outside the supported subset
    :raises BuildError: a step failed (``.line`` names its instruction)
    """
    context = Path(context).resolve()  # the step child runs in /, not here
    if not context.is_dir():
        raise BuildError(f"the build context {context} is not a directory")
    path = Path(dockerfile) if dockerfile is not None else context / "Dockerfile"
    try:
        text = path.read_text()
    except OSError as exc:
        raise BuildError(f"cannot read {path}: {exc.strerror}", fix="pass -f DOCKERFILE") from None
    parsed = parse(text, path.name)
    if method is not None and method not in METHODS:
        raise BuildError(f"method is one of {METHODS}, not {method!r}")
    store = cache if isinstance(cache, Cache) else Cache(cache)
    index = parsed.stage(target)
    workdir = Path(tempfile.mkdtemp(prefix="hardway-build-"))
    try:
        with store.lock():
            builder = _Builder(
                parsed, context, store, build_args=build_args or {}, use_cache=not no_cache,
                workdir=workdir, out=out or print, fmt=fmt, method=method or default_method(),
            )  # fmt: skip
            state = builder.run(index)
    finally:
        remove_tree(workdir)
    image = state.image(fmt)
    (out or print)(f"Successfully built {state.id.encoded[:12]}")
    return BuildResult(image, tuple(builder.reports))


# -- the command line --------------------------------------------------------------------------


def _command(args: argparse.Namespace) -> int:
    from hardway.distribution.transports import write_image

    build_args = {}
    for item in args.build_arg:
        name, eq, value = item.partition("=")
        build_args[name] = value if eq else os.environ.get(name, "")
    cache = Cache(args.cache_dir)
    with cache.lock():  # the image's layers are read from the cache: no prune until written
        result = build(
            args.context, args.file, build_args=build_args, target=args.target,
            cache=cache, no_cache=args.no_cache,
        )  # fmt: skip
        for dest in args.tag:
            written = write_image(result.image, dest)
            digest = f" ({written.digest})" if written is not None else ""
            print(f"Successfully tagged {dest}{digest}")
    sys.stdout.flush()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build an image from a Dockerfile (chapter 10)",
        description="Build CONTEXT/Dockerfile step by step with Docker's cache rules, and "
        "write the image to each -t DEST (docker://HOST/REPO:TAG, oci:DIR:TAG, "
        "docker-archive:FILE:REF).",
    )
    parser.add_argument("-f", "--file", default=None, help="default: CONTEXT/Dockerfile")
    parser.add_argument("-t", "--tag", action="append", default=[], metavar="DEST")
    parser.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    parser.add_argument("--target", default=None, help="the stage to build (default: last)")
    parser.add_argument("--no-cache", action="store_true", help="run every step")
    parser.add_argument("--cache-dir", default=None, help="default: HARDWAY_CACHE_DIR")
    parser.add_argument("context", metavar="CONTEXT")
    parser.set_defaults(func=_command)
