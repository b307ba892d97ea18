"""hardway.build.executor
~~~~~~~~~~~~~~~~~~~~~~~

The engine of ``docker build``: a parsed Dockerfile (:mod:`hardway.build.dockerfile`) is
executed stage by stage, instruction by instruction, and each instruction turns the image
so far (:class:`~hardway.build.stage.ImageState`) into a new one:

* ``FROM`` starts from an image of the course's registry, from nothing (``scratch``) or
  from an earlier stage; only the stages the target needs are built;
* ``ENV``, ``WORKDIR``, ``USER``, ``LABEL``, ``EXPOSE``, ``ENTRYPOINT``, ``CMD``, ``ARG``,
  ``VOLUME``, ``STOPSIGNAL``, ``HEALTHCHECK``, ``SHELL`` and ``ONBUILD`` change the image
  *config* (:mod:`hardway.build.runconfig`), plus a history entry;
* ``COPY``/``ADD`` (:mod:`hardway.build.copyplan`), ``RUN`` and ``WORKDIR``'s directory
  change the *filesystem*: the step runs on the image's root and its changes become the
  step's layer (:mod:`hardway.build.capture`). ``ADD`` unpacks a local tar archive
  (plain, gzip, bzip2 or xz) into its destination, as Docker does; ``ADD`` of a
  URL is refused;
* heredocs: ``RUN <<EOF`` runs the document with the shell (``RUN cmd <<EOF`` hands the
  whole text to the shell, which feeds the document to ``cmd``); ``COPY <<EOF /etc/x``
  copies the document as a file ``EOF`` (mode 0644), its ``$VAR`` replaced unless the
  delimiter was quoted;
* a base image's ``ONBUILD`` triggers run right after its ``FROM``, and the child's
  config drops them (Docker's rule: triggers fire one generation down only).

``RUN`` here has **no network** (a fresh network namespace with only ``lo``): Docker's
``RUN`` has the host's network by default (``--network=default``), so a Dockerfile that
downloads during ``RUN`` (``apt-get``, ``pip``) builds with Docker and fails here.

Before any of that, the step's cache key (:mod:`hardway.build.stepkey`) is looked up in
the build cache (:class:`~hardway.build.cache.Cache`), which keeps each step's layer blob
and config blob and a selector from its key to them: a hit loads the stored result
(``---> Using cache``) and runs nothing. Every step is printed and reported
(:class:`StepReport`) as ``docker build`` prints it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hardway.build import capture
from hardway.build.cache import Cache, Selector
from hardway.build.copyplan import CopyItem, copy_content, copy_plan, is_archive
from hardway.build.dockerfile import (
    Dockerfile,
    Instruction,
    Stage,
    command,
    exec_form,
    expand,
    heredoc_word,
    name_values,
    parse,
    split_words,
    substitute,
)
from hardway.build.runconfig import configured, from_base, join_workdir, shell_of
from hardway.build.stage import ImageState, StageState, base_reference, known, read_base
from hardway.build.stepkey import copy_created_by, created_by, step_key
from hardway.errors import BuildError, ContainerError, DockerfileError, HardwayError
from hardway.image.config import History, ImageConfig, RootFS
from hardway.image.digest import Digest
from hardway.image.layers import LayerInfo, source_epoch
from hardway.image.mutate import timestamp
from hardway.sys.trees import remove_tree

__all__ = ["Executor", "StepReport"]

_EMPTY_LAYER = "empty"


@dataclass(frozen=True)
class StepReport:
    """One step as the build printed it: ``Step N/M : text``, cached or not, its image ID,
    its new layer if it made one, and its instruction's keyword."""

    number: int
    text: str
    cached: bool
    image_id: Digest
    layer: LayerInfo | None = None
    keyword: str = ""

    @property
    def ran(self) -> bool:
        """It did work: not from the cache, and not a ``FROM`` (which only names a base)."""
        return not self.cached and self.keyword != "FROM"


class Executor:
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
        self.stages: dict[int, StageState] = {}
        self.reports: list[StepReport] = []
        self.used_args: set[str] = set()
        self.meta = self._meta_args()
        self.total = 0
        self.number = 0

    def _fail(self, inst: Instruction | Stage, message: str, fix: str | None = None) -> BuildError:
        return BuildError(
            f"{self.df.path}, line {inst.line}: {message}",
            fix=fix,
            path=self.df.path,
            line=inst.line,
        )

    def _meta_args(self) -> dict[str, str | None]:
        meta: dict[str, str | None] = {}
        for inst in self.df.args:
            for name, value in name_values(inst, known(meta), self.df.path):
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
            refs = [expand(stage.base, known(self.meta))]
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

    def run(self, target: int) -> ImageState:
        """Build stage *target* and the stages it needs; return its final state."""
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
        base = expand(stage.base, known(self.meta))
        self._announce(f"FROM {stage.base}" + (f" AS {stage.name}" if stage.name else ""))
        if not base:
            raise self._fail(
                stage, f"FROM {stage.base}: the image name is empty", "pass --build-arg NAME=image"
            )
        found = self._stage_index(base, before=index)
        if found is not None:
            parent = self.stages[found].state
            state = ImageState(parent.config, list(parent.layers), parent.raw)
        else:
            try:
                image = read_base(base)
            except HardwayError as exc:
                fix = exc.fix or "python -m hardway registry seed   (the course's base images)"
                raise self._fail(stage, f"FROM {base}: {exc.message}", fix) from None
            except OSError as exc:  # requests' ConnectionError is one: no registry there
                raise self._fail(
                    stage,
                    f"FROM {base}: cannot reach the registry for {base_reference(base)} "
                    f"({type(exc).__name__})",
                    "python -m hardway registry start && python -m hardway registry seed",
                ) from None
            state = ImageState(image.config(), list(image.layers()), image.raw_config())
        triggers = list(state.config.config.extra.get("OnBuild") or ())
        run = from_base(state.config.config)  # no triggers (they fire here), a PATH
        if run != state.config.config:
            state = ImageState(replace(state.config, config=run), state.layers)
        root = self.workdir / f"stage-{index}" / "rootfs"
        current = StageState(index, state, {}, root)
        self.stages[index] = current
        self._report(f"FROM {base}", "FROM", cached=False, state=state)
        if triggers:
            self.out(f"# Executing {len(triggers)} build trigger(s)")
        for inst in self._triggers(stage, triggers):
            self.out(f"Trigger : {inst.original}")
            self.step(current, inst)
        for inst in stage.instructions:
            self._announce(inst.original)
            self.step(current, inst)

    def _triggers(self, stage: Stage, triggers: Sequence[str]) -> list[Instruction]:
        """The base image's ``ONBUILD`` triggers as instructions of this stage."""
        try:
            found = parse("FROM scratch\n" + "\n".join(triggers), "ONBUILD").stages[0]
        except DockerfileError as exc:
            raise self._fail(stage, f"a trigger of the base image: {exc.message}") from None
        return [replace(i, line=stage.line) for i in found.instructions]

    def _announce(self, text: str) -> None:
        self.number += 1
        self.out(f"Step {self.number}/{self.total} : {text}")

    def _report(
        self,
        text: str,
        keyword: str,
        *,
        cached: bool,
        state: ImageState,
        layer: LayerInfo | None = None,
    ) -> None:
        if cached:
            self.out(" ---> Using cache")
        self.out(f" ---> {state.id.encoded[:12]}")
        self.reports.append(StepReport(self.number, text, cached, state.id, layer, keyword))

    # steps

    def step(self, stage: StageState, inst: Instruction) -> None:
        env = stage.env()
        try:
            if inst.keyword == "ARG":
                self._arg(stage, inst, env)
            text = self._text(inst, env)
        except DockerfileError as exc:
            raise self._fail(inst, exc.message.split(": ", 1)[-1], exc.fix) from None
        run_args = known(stage.args)
        argv = self._argv(stage, inst, text) if inst.keyword == "RUN" else None
        history = created_by(inst, text, run_args if inst.keyword == "RUN" else None, argv)
        content = ""
        items: list[CopyItem] = []
        if inst.keyword in ("COPY", "ADD"):
            words = self._copy_words(inst, env)
            items, content = self._copy_sources(stage, inst, words, env)
            history = copy_created_by(inst, content, words[-1], env)
        key = step_key(stage.state.id, history, content)
        hit = self.cache.get_selector(key) if self.use_cache else None
        if hit is not None:
            loaded = self._load(stage, hit)
            if loaded is not None:
                stage.state = loaded
                layer = self._layer_of(hit)
                self._report(history, inst.keyword, cached=True, state=loaded, layer=layer)
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
        self._report(history, inst.keyword, cached=False, state=state, layer=layer)

    def _text(self, inst: Instruction, env: Mapping[str, str]) -> str:
        """The instruction's arguments after substitution, where Docker substitutes."""
        if inst.keyword == "RUN" and exec_form(inst.args) == ():
            raise DockerfileError("RUN [] has no command to run")
        if inst.keyword in ("RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK", "SHELL", "ONBUILD"):
            return inst.args  # Docker substitutes nothing in these
        if inst.keyword == "VOLUME" and (form := exec_form(inst.args)) is not None:
            return json.dumps([expand(w, env) for w in form])
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

    def _arg(self, stage: StageState, inst: Instruction, env: Mapping[str, str]) -> None:
        for name, default in name_values(inst, env, self.df.path):
            self.used_args.add(name)
            if name in self.build_args:
                stage.args[name] = self.build_args[name]
            elif default is not None:
                stage.args[name] = default
            else:
                stage.args[name] = self.meta.get(name)

    def _layer_of(self, hit: Selector) -> LayerInfo | None:
        return None if hit.annotations.get("layer") == _EMPTY_LAYER else hit.layer

    def _load(self, stage: StageState, hit: Selector) -> ImageState | None:
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
        return ImageState(ImageConfig.from_json(raw), layers, raw, cmd_set)

    def _argv(self, stage: StageState, inst: Instruction, text: str) -> tuple[str, ...]:
        """What a ``RUN`` executes: :func:`~hardway.build.dockerfile.command` with the
        stage's ``SHELL``, its heredocs as Docker's frontend passes them to the shell."""
        shell = shell_of(stage.state.config.config)
        docs = inst.heredocs
        if not docs:
            return command(text, shell)
        if heredoc_word(text) and len(docs) == 1:
            if docs[0].text.startswith("#!"):
                raise self._fail(
                    inst,
                    "a RUN heredoc that starts with #! (a script file) is not supported here",
                    f"name the interpreter: RUN python3 <<{docs[0].name}",
                )
            return (*shell, docs[0].text)  # the document is the shell's command
        return (*shell, text + "".join(f"\n{d.content}{d.name}" for d in docs))

    def _copy_sources(
        self, stage: StageState, inst: Instruction, words: Sequence[str], env: Mapping[str, str]
    ) -> tuple[list[CopyItem], str]:
        """What a ``COPY`` copies (:func:`~hardway.build.copyplan.copy_plan`: files of the
        context or a stage, and heredoc documents) and its content hash
        (:func:`~hardway.build.copyplan.copy_content`)."""
        if inst.keyword == "ADD" and any("://" in w for w in words[:-1]):
            raise self._fail(inst, "ADD from a URL is not supported", "download it, then COPY")
        docs = {d.name: d for d in inst.heredocs}
        named = [name for w in words[:-1] if (name := heredoc_word(w))]
        sources = [w for w in words[:-1] if not heredoc_word(w)]
        source = inst.flags.get("from")
        if source is None:
            root, where = self.context, "the build context"
        else:
            index = self._stage_index(source, before=stage.index)
            if index is None:
                raise self._fail(inst, f"COPY --from={source}: no earlier stage of that name")
            root, where = self.stages[index].rootfs(), f"stage {source!r}"
        workdir = stage.state.config.config.working_dir or "/"
        dest = words[-1]
        if len(sources) + len(named) > 1 and not dest.endswith("/"):
            raise self._fail(inst, f"{inst.keyword} with several sources needs a directory "
                             "as the destination, ending in /", fix=f"write {dest}/")  # fmt: skip
        try:
            items = copy_plan(root, sources, dest, workdir, where=where) if sources else []
            if named:
                documents = Path(tempfile.mkdtemp(prefix="heredoc-", dir=self.workdir))
                for name in named:
                    doc = docs[name]
                    path = documents / name
                    path.write_text(substitute(doc.text, env) if doc.expand else doc.text)
                    path.chmod(0o644)
                items += copy_plan(documents, named, dest, workdir, where="the heredocs")
        except BuildError as exc:
            raise self._fail(inst, exc.message, exc.fix) from None
        if inst.keyword == "ADD":
            items = [_unpacked(i, dest) if is_archive(i) else i for i in items]
        return items, copy_content(items)

    def _filesystem_step(
        self,
        stage: StageState,
        inst: Instruction,
        text: str,
        items: Sequence[CopyItem],
        env: Mapping[str, str],
    ) -> LayerInfo | None:
        """Do ``RUN``, ``COPY`` or ``WORKDIR``'s directory; the step's layer, or ``None``
        when ``WORKDIR``'s directory was there already."""
        config = stage.state.config.config
        if inst.keyword == "RUN":
            extra = {k: v for k, v in known(stage.args).items() if k not in config.env_dict()}
            action = capture.run_action(self._argv(stage, inst, text), config, extra)
        elif inst.keyword == "WORKDIR":
            action = capture.mkdir_action(join_workdir(config.working_dir, text))
        else:
            owner = self._owner(stage, inst, env)
            action = capture.copy_action(items, owner, self._chmod(inst, env))
        lower = stage.rootfs()
        if inst.keyword == "RUN":
            self.out(" ---> Running in a container")
        work = Path(tempfile.mkdtemp(prefix="step-", dir=self.workdir))
        try:
            changes = capture.changes(lower, work, action, capture.RUN_TIMEOUT, self.method)
            result = action["result"]
            if inst.keyword == "RUN":
                for stream in ("stdout", "stderr"):
                    if result[stream]:
                        self.out(result[stream].rstrip("\n"))
                if result["returncode"]:
                    raise self._fail(
                        inst,
                        f"the command '{' '.join(action['argv'])}' returned a non-zero code: "
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

    def _owner(self, stage: StageState, inst: Instruction, env: Mapping[str, str]) -> list[int]:
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

    def _configured(
        self,
        stage: StageState,
        inst: Instruction,
        text: str,
        env: Mapping[str, str],
        history: str,
        layer: LayerInfo | None,
    ) -> ImageState:
        """The state after *inst*: its config changes, its history entry, its layer."""
        state = stage.state
        pairs = name_values(inst, env, self.df.path) if inst.keyword in ("ENV", "LABEL") else ()
        try:
            run, cmd_set = configured(
                state.config.config, inst.keyword, text, pairs=pairs, cmd_set=state.cmd_set,
                flags=inst.flags,
            )  # fmt: skip
        except DockerfileError as exc:
            raise self._fail(inst, exc.message, exc.fix) from None
        config = replace(state.config, config=run, created=timestamp())
        entry = History(created=timestamp(), created_by=history, empty_layer=layer is None)
        layers = list(state.layers)
        if layer is not None:
            layers.append(self.cache.layer(layer, self.fmt))
            diff_ids = (*config.rootfs.diff_ids, layer.diff_id)
            config = replace(config, rootfs=RootFS(diff_ids, config.rootfs.type or "layers"))
        config = replace(config, history=(*config.history, entry))
        return ImageState(config, layers, b"", cmd_set)


def _unpacked(item: CopyItem, dest: str) -> CopyItem:
    """``ADD archive DEST``: unpacked into directory *DEST* (``DEST/`` too, where a file
    would get the archive's name inside it)."""
    return replace(
        item, unpack=True, dest=os.path.dirname(item.dest) if dest.endswith("/") else item.dest
    )
