"""Building Dockerfiles against the real registry: Docker's cache rules (counted by the
executions of steps, not by the builder's own report), reproducible digests, COPY's
semantics, skopeo/umoci/runc accepting the result, and interrupts that leave nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from interrupting import jupyter_interrupt

from hardway.build import copyplan, runconfig
from hardway.build.cache import Cache
from hardway.build.dockerbuild import build
from hardway.course import leftovers
from hardway.course.seed import seed_base_image, seed_python_image, write_example
from hardway.distribution.transports import read_image, write_image
from hardway.errors import BuildError, DockerfileError
from hardway.image.unpack import unpack_image
from hardway.isolation import bundle, runtime

ROOT = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: overlayfs, namespaces")
pytestmark = needs_root


@pytest.fixture(scope="module")
def seeded(registry, tmp_path_factory) -> str:
    """The session registry with hardway/busybox and hardway/python."""
    seed_base_image(registry.port)
    seed_python_image(registry.port, cache=Cache(tmp_path_factory.mktemp("seed-cache")))
    return f"127.0.0.1:{registry.port}"


def context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    return ctx


def quiet(_line: str) -> None:
    pass


APP = """\
FROM hardway/busybox
ARG FLAVOUR=plain
ENV APP=/srv/app
WORKDIR $APP
RUN echo "$FLAVOUR" > flavour && mkdir -p /var/data && echo made > /var/data/x
COPY app/ ./
CMD ["cat", "flavour"]
"""


def test_rebuild_is_a_full_cache_hit_that_runs_nothing(seeded, tmp_path, executions) -> None:
    ctx = context(tmp_path, APP, {"app/main.txt": "v1\n"})
    cache = Cache(tmp_path / "cache")
    first = build(ctx, cache=cache, out=quiet)
    assert executions == ["mkdir", "run", "copy"]
    assert first.cache_hits == 0
    lines: list[str] = []
    again = build(ctx, cache=cache, out=lines.append)
    assert executions == ["mkdir", "run", "copy"]  # nothing ran the second time
    assert again.digest == first.digest
    assert again.cache_hits == len(again.reports) - 1 == 6
    assert lines.count(" ---> Using cache") == 6
    assert lines[0] == "Step 1/7 : FROM hardway/busybox"


def test_same_digest_without_cache_and_with_another_cache(seeded, tmp_path) -> None:
    ctx = context(tmp_path, APP, {"app/main.txt": "v1\n"})
    one = build(ctx, cache=tmp_path / "c1", out=quiet)
    two = build(ctx, cache=tmp_path / "c2", out=quiet)
    three = build(ctx, cache=tmp_path / "c1", no_cache=True, out=quiet)
    assert one.digest == two.digest == three.digest
    assert three.cache_hits == 0
    (ctx / "app" / "main.txt").touch()  # a newer mtime: COPY hashes content, not times
    assert build(ctx, cache=tmp_path / "c1", out=quiet).cache_hits == 6


def test_a_changed_file_misses_from_its_copy_on(seeded, tmp_path, executions) -> None:
    ctx = context(tmp_path, APP, {"app/main.txt": "v1\n"})
    cache = Cache(tmp_path / "cache")
    first = build(ctx, cache=cache, out=quiet)
    (ctx / "app" / "main.txt").write_text("v2\n")
    second = build(ctx, cache=cache, out=quiet)
    assert executions == ["mkdir", "run", "copy", "copy"]
    assert [s.cached for s in second.reports] == [False, True, True, True, True, False, False]
    assert second.digest != first.digest
    (ctx / "app" / "main.txt").chmod(0o600)  # a mode is content too
    assert not build(ctx, cache=cache, out=quiet).reports[5].cached


def test_a_changed_base_image_misses_every_step(seeded, tmp_path, executions) -> None:
    """The first key is the base image's ID: a new image under the same tag runs all."""
    from hardway.distribution.registry import pull, push
    from hardway.image.mutate import configure

    busybox = pull(f"{seeded}/hardway/busybox")
    name = f"hardway/base-{uuid.uuid4().hex[:6]}"
    push(busybox, f"{seeded}/{name}")
    ctx = context(tmp_path, APP.replace("hardway/busybox", name), {"app/main.txt": "v1\n"})
    cache = Cache(tmp_path / "cache")
    build(ctx, cache=cache, out=quiet)
    push(configure(busybox, labels={"rebuilt": "yes"}), f"{seeded}/{name}")
    executions.clear()
    second = build(ctx, cache=cache, out=quiet)
    assert second.cache_hits == 0
    assert executions == ["mkdir", "run", "copy"]


def test_frequently_changing_steps_go_last(seeded, tmp_path, executions) -> None:
    """COPY before RUN: a changed file re-runs RUN. RUN before COPY: RUN stays cached."""
    run = "RUN echo compiling > /compiled\n"
    copy = "COPY app/ /app/\n"
    early = context(tmp_path, "FROM hardway/busybox\n" + copy + run, {"app/a": "1"})
    late = context(tmp_path, "FROM hardway/busybox\n" + run + copy, {"app/a": "1"})
    cache = Cache(tmp_path / "cache")
    for ctx in (early, late):
        build(ctx, cache=cache, out=quiet)
        (ctx / "app" / "a").write_text("2")
        executions.clear()
        build(ctx, cache=cache, out=quiet)
        assert executions == (["copy", "run"] if ctx == early else ["copy"])


def test_build_args_change_the_run_key(seeded, tmp_path, executions) -> None:
    ctx = context(tmp_path, APP, {"app/main.txt": "v1\n"})
    cache = Cache(tmp_path / "cache")
    plain = build(ctx, cache=cache, out=quiet)
    spicy = build(ctx, cache=cache, build_args={"FLAVOUR": "spicy"}, out=quiet)
    assert executions.count("run") == 2 and plain.digest != spicy.digest
    history = json.loads(spicy.image.raw_config())["history"]
    assert any(h["created_by"].startswith("|1 FLAVOUR=spicy /bin/sh -c") for h in history)
    root = tmp_path / "root"
    unpack_image(spicy.image, root)
    assert (root / "srv/app/flavour").read_text() == "spicy\n"


DIFFS = """\
FROM hardway/busybox
RUN echo hi > /greeting && rm /bin/vi && rm -r /mnt && mkdir -p /var/log \\
    && ln -s /greeting /etc/motd && echo new > /etc/group && ln /greeting /hard
WORKDIR /srv/app
COPY app/ ./
RUN chown -R 65534 /srv && chmod 700 /srv/app
"""


def test_overlay_and_snapshot_give_the_same_layers(seeded, tmp_path) -> None:
    ctx = context(tmp_path, DIFFS, {"app/a": "a\n", "app/sub/b": "b\n"})
    overlay = build(ctx, cache=tmp_path / "c1", method="overlay", out=quiet)
    snapshot = build(ctx, cache=tmp_path / "c2", method="snapshot", out=quiet)
    assert overlay.digest == snapshot.digest
    with (
        overlay.image.layers()[1].uncompressed() as blob,
        tarfile.open(fileobj=blob, mode="r|") as tar,
    ):
        names = tar.getnames()
    assert {"bin/.wh.vi", ".wh.mnt", "greeting", "hard", "etc/motd", "var/log"} <= set(names)
    root = tmp_path / "root"
    unpack_image(overlay.image, root)
    assert not (root / "bin/vi").exists() and (root / "hard").read_text() == "hi\n"
    assert (root / "srv/app/sub").stat().st_uid == 65534


def test_config_instructions(seeded, tmp_path) -> None:
    dockerfile = """\
ARG BASE=hardway/busybox
FROM ${BASE}
ENV A=1 B="two words"
ENV PATH=/opt/bin:$PATH
WORKDIR /srv
WORKDIR app
USER 1000:1000
LABEL org.opencontainers.image.title="demo" version=$A
EXPOSE 80 53/udp
CMD ["from", "base"]
ENTRYPOINT echo hi
"""
    result = build(context(tmp_path, dockerfile), cache=tmp_path / "c", out=quiet)
    config = json.loads(result.image.raw_config())["config"]
    # the busybox image sets no PATH: FROM gives it Docker's default one, first
    assert config["Env"] == [f"PATH=/opt/bin:{runconfig.DEFAULT_PATH}", "A=1", "B=two words"]
    assert config["WorkingDir"] == "/srv/app" and config["User"] == "1000:1000"
    assert config["Labels"] == {"org.opencontainers.image.title": "demo", "version": "1"}
    assert sorted(config["ExposedPorts"]) == ["53/udp", "80/tcp"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "echo hi"]
    assert config["Cmd"] == ["from", "base"]  # set in this stage: ENTRYPOINT keeps it
    history = json.loads(result.image.raw_config())["history"]
    assert history[-1]["created_by"] == "/bin/sh -c #(nop)  ENTRYPOINT echo hi"
    assert [h.get("empty_layer", False) for h in history[-9:]] == [True] * 2 + [False] * 2 + [
        True
    ] * 5


def test_entrypoint_resets_an_inherited_cmd(seeded, tmp_path) -> None:
    result = build(context(tmp_path, 'FROM hardway/busybox\nENTRYPOINT ["ls"]\n'), out=quiet)
    config = json.loads(result.image.raw_config())["config"]
    assert config["Entrypoint"] == ["ls"] and "Cmd" not in config


def tree(root: Path) -> dict[str, tuple]:
    """Every entry below *root*: type and mode bits, owner, content or link target."""
    found = {}
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(current) / name
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                what = path.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            else:
                what = None
            found[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, what)
    return found


COPIES = """\
FROM hardway/busybox AS src
RUN mkdir -p /out/sub && echo deep > /out/sub/f && ln -s sub/f /out/link
FROM hardway/busybox
WORKDIR /w
COPY one.txt two.txt dest/
COPY one.txt renamed.txt
COPY dir/ copied/
COPY dir /flat/
COPY *.md /docs/
COPY --chown=1000:50 --chmod=600 one.txt /owned
COPY --from=src /out /from-stage
COPY --from=src /out/link /followed
"""


def test_copy_follows_dockers_rules(seeded, tmp_path) -> None:
    files = {
        "one.txt": "1\n", "two.txt": "2\n", "dir/a": "a\n", "dir/b/c": "c\n",
        "x.md": "x\n", "y.md": "y\n",
    }  # fmt: skip
    result = build(context(tmp_path, COPIES, files), cache=tmp_path / "c", out=quiet)
    root = tmp_path / "root"
    unpack_image(result.image, root)
    got = tree(root)
    assert got["w/dest/one.txt"][3] == b"1\n" and got["w/dest/two.txt"][3] == b"2\n"
    assert got["w/renamed.txt"][3] == b"1\n"
    assert got["w/copied/a"][3] == b"a\n" and got["w/copied/b/c"][3] == b"c\n"
    assert "w/copied/dir" not in got and got["flat/b/c"][3] == b"c\n"
    assert got["docs/x.md"][3] == b"x\n" and got["docs/y.md"][3] == b"y\n"
    mode, uid, gid, _ = got["owned"]
    assert (stat.S_IMODE(mode), uid, gid) == (0o600, 1000, 50)
    assert got["w/dest/one.txt"][1:3] == (0, 0)
    assert got["from-stage/sub/f"][3] == b"deep\n" and got["from-stage/link"][3] == "sub/f"
    assert got["followed"][3] == b"deep\n"  # a source that is a link: its target is copied
    assert "out" not in got  # nothing of the first stage but what was copied


def test_copy_never_follows_a_symlink_out_of_the_context(tmp_path) -> None:
    """A link in the context is followed *inside* it, as if the context were ``/``."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    ctx = context(tmp_path, "FROM scratch\n", {"outside/secret": "context's own\n"})
    (ctx / "abs").symlink_to(outside / "secret")  # absolute: means CONTEXT/<that path>
    (ctx / "up").symlink_to("../outside")  # relative, climbing out: stops at the context
    (ctx / "inner").symlink_to("outside/secret")
    (ctx / "absdir").symlink_to(outside)
    for source in ("abs", "absdir/secret", "absdir/"):
        (ctx / "Dockerfile").write_text(f"FROM scratch\nCOPY {source} /got\n")
        with pytest.raises(BuildError, match="not found in the build context"):
            build(ctx, cache=tmp_path / "c", out=quiet)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY up/ /dir/\nCOPY inner up/secret /x/\n")
    result = build(ctx, cache=tmp_path / "c", out=quiet)
    unpack_image(result.image, tmp_path / "root")
    got = tree(tmp_path / "root")
    assert got["dir/secret"][3] == got["x/inner"][3] == got["x/secret"][3] == b"context's own\n"


def test_copy_json_form_and_names_with_blanks(tmp_path) -> None:
    files = {"a b.txt": "blank\n", "c.txt": "c\n"}
    dockerfile = 'FROM scratch\nCOPY ["a b.txt", "/json/"]\nCOPY "a b.txt" c.txt /words/\n'
    result = build(context(tmp_path, dockerfile, files), cache=tmp_path / "c", out=quiet)
    unpack_image(result.image, tmp_path / "root")
    got = tree(tmp_path / "root")
    assert got["json/a b.txt"][3] == got["words/a b.txt"][3] == b"blank\n"
    assert got["words/c.txt"][3] == b"c\n"


def test_copy_into_an_existing_directory_keeps_the_source_name(tmp_path) -> None:
    """``COPY NAME /dir`` with /dir a directory gives /dir/NAME — also from the cache."""
    ctx = context(tmp_path, "", {"a.txt": "same\n", "b.txt": "same\n"})
    (ctx / "link").symlink_to("a.txt")
    cache = Cache(tmp_path / "c")
    for name in ("a.txt", "b.txt", "link"):
        (ctx / "Dockerfile").write_text(f"FROM scratch\nWORKDIR /dir\nCOPY {name} /dir\n")
        root = tmp_path / f"root-{name}"
        unpack_image(build(ctx, cache=cache, out=quiet).image, root)
        assert sorted(os.listdir(root / "dir")) == [name]


def test_a_build_arg_behind_chown_changes_the_copy_key(tmp_path) -> None:
    dockerfile = "FROM scratch\nARG ID=1000\nCOPY --chown=$ID:$ID --chmod=$MODE f /f\n"
    dockerfile = dockerfile.replace("$MODE", "640")
    ctx = context(tmp_path, dockerfile, {"f": "x\n"})
    owners = []
    for uid in ("1000", "2000"):
        result = build(ctx, build_args={"ID": uid}, cache=tmp_path / "c", out=quiet)
        root = tmp_path / f"root-{uid}"
        unpack_image(result.image, root)
        st = (root / "f").lstat()
        owners.append((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
    assert owners == [(1000, 1000, 0o640), (2000, 2000, 0o640)]


@pytest.mark.parametrize(
    ("dockerfile", "line", "words"),
    [
        ("FROM hardway/busybox\nCOPY a b dest\n", 2, "ending in /"),
        ("FROM hardway/busybox\n\nCOPY missing /x\n", 3, "not found"),
        ("FROM hardway/busybox\nCOPY ../secret /x\n", 2, "outside"),
        ("FROM hardway/busybox\nRUN exit 3\n", 2, "non-zero code: 3"),
        ("FROM hardway/busybox\nCOPY --from=nope /a /b\n", 2, "no earlier stage"),
        ("FROM hardway/nothing-here\n", 1, "FROM"),
        ("FROM scratch\nRUN true\n", 2, "RUN failed"),
        ("FROM hardway/busybox\nADD http://example.com/x /x\n", 2, "URL"),
        ("FROM hardway/busybox\nUSER a b\n", 2, "one argument"),
        ("FROM hardway/busybox\nENV A=${B\n", 2, "missing }"),
        ("FROM hardway/busybox\nCOPY --chmod=u+x a /a\n", 2, "not an octal mode"),
        ("FROM hardway/busybox\nRUN []\n", 2, "no command"),
        ("ARG BASE\n\nFROM $BASE\n", 3, "image name is empty"),
        ("FROM hardway/busybox\nRUN <<EOF\n#!/bin/sh\necho\nEOF\n", 2, "RUN python3 <<EOF"),
        ("FROM hardway/busybox\nHEALTHCHECK --interval=5x CMD true\n", 2, "not a duration"),
        ("FROM hardway/busybox\nHEALTHCHECK --timeout=1s NONE\n", 2, "no options"),
        ("FROM hardway/busybox\nSHELL /bin/bash -c\n", 2, "exec form"),
        ("FROM hardway/busybox\nCOPY <<A <<B /x\na\nA\nb\nB\n", 2, "ending in /"),
    ],
)
def test_failures_name_the_line(seeded, tmp_path, dockerfile, line, words) -> None:
    ctx = context(tmp_path, dockerfile, {"a": "", "b": ""})
    with pytest.raises(BuildError) as caught:
        build(ctx, cache=tmp_path / "c", out=quiet)
    assert caught.value.line == line and f"line {line}:" in str(caught.value)
    assert words in str(caught.value)


def test_tree_hash_sees_what_copy_copies_and_not_times(tmp_path) -> None:
    """Names, modes (directories' too), link targets and contents; no mtimes."""
    top = tmp_path / "t"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "f").write_text("x")
    (top / "link").symlink_to("sub/f")
    seen = {copyplan.tree_hash(top)}

    def changed() -> bool:
        new = copyplan.tree_hash(top)
        fresh = new not in seen
        seen.add(new)
        return fresh

    os.utime(top / "sub" / "f", (1, 1))
    assert not changed()
    (top / "sub").chmod(0o700)
    assert changed()
    (top / "sub" / "f").chmod(0o600)
    assert changed()
    (top / "link").unlink()
    (top / "link").symlink_to("sub")
    assert changed()
    (top / "sub" / "f").write_text("y")
    assert changed()
    (top / "sub" / "f").rename(top / "sub" / "g")
    assert changed()


def test_write_example_names_the_examples_it_has(tmp_path) -> None:
    with pytest.raises(BuildError, match="static-site"):
        write_example("static", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_an_empty_exec_form_clears_cmd_and_entrypoint() -> None:
    from hardway.image.config import ContainerConfig

    base = ContainerConfig(cmd=("sh",), entrypoint=("top",))
    assert runconfig.configured(base, "CMD", "[]")[0].cmd is None
    assert runconfig.configured(base, "ENTRYPOINT", "[]")[0].entrypoint is None
    assert runconfig.configured(base, "CMD", "[ ]")[0].cmd is None


def test_cli_holds_the_cache_lock_until_the_image_is_written(tmp_path, monkeypatch) -> None:
    """``cache prune`` (an exclusive lock) cannot remove layers between build and write."""
    import fcntl

    from hardway.cli import main
    from hardway.distribution import transports

    real, tries = transports.write_image, []

    def writing(image, dest):
        with open(tmp_path / "cache" / "lock", "a+b") as fh:  # what prune does, not waiting
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                tries.append("prune could run")
            except BlockingIOError:
                tries.append("prune waits")
        return real(image, dest)

    monkeypatch.setattr(transports, "write_image", writing)
    ctx = context(tmp_path, "FROM scratch\nCOPY f /f\n", {"f": "x"})
    args = ["build", "--cache-dir", str(tmp_path / "cache"), "-t", f"oci:{tmp_path}/o:x"]
    assert main([*args, str(ctx)]) == 0
    assert tries == ["prune waits"]


def test_cli_reports_unsupported_instruction(seeded, tmp_path, capsys) -> None:
    from hardway.cli import main

    ctx = context(tmp_path, "FROM hardway/busybox\nMAINTAINER me\n")
    assert main(["build", "-t", f"oci:{tmp_path}/out:x", str(ctx)]) == 1
    err = capsys.readouterr().err
    assert "Dockerfile, line 2: MAINTAINER is not supported" in err
    with pytest.raises(DockerfileError):
        build(ctx, out=quiet)


SHOW = """\
FROM hardway/busybox
RUN echo app:x:1234:1234::/home/app:/bin/sh >> /etc/passwd && mkdir -p /home/app/work \\
    && chown 1234 /home/app/work
ENV GREETING=hello
WORKDIR /home/app/work
USER app
ENTRYPOINT ["/bin/sh", "-c", "echo $GREETING $(id -u) $(pwd) \\"$0\\" \\"$@\\""]
CMD ["from-cmd"]
"""


@pytest.mark.skipif(not (shutil.which("skopeo") and shutil.which("umoci")), reason="tools")
def test_skopeo_umoci_and_runc_accept_our_image(seeded, tmp_path) -> None:
    result = build(context(tmp_path, SHOW), cache=tmp_path / "c", out=quiet)
    layout = tmp_path / "layout"
    write_image(result.image, f"oci:{layout}:v1")
    inspected = subprocess.run(
        ["skopeo", "inspect", f"oci:{layout}:v1"], capture_output=True, text=True, check=True
    )
    assert json.loads(inspected.stdout)["Digest"] == str(result.digest)
    copied = tmp_path / "copied"
    subprocess.run(
        ["skopeo", "copy", f"oci:{layout}:v1", f"oci:{copied}:v1"], capture_output=True, check=True
    )
    assert read_image(f"oci:{copied}:v1").digest() == result.digest
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:v1", str(tmp_path / "bundle")],
        capture_output=True, check=True,
    )  # fmt: skip
    ours = tmp_path / "ours"
    unpack_image(read_image(f"oci:{layout}:v1"), ours)
    assert tree(tmp_path / "bundle" / "rootfs") == tree(ours)
    assert tree(ours)["home/app/work"][1] == 1234
    plan = runtime.plan(ours, config=result.image.config())
    done = bundle.run_runc(plan, tmp_path / "runc-bundle")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello 1234 /home/app/work from-cmd\n"
    assert runtime.run(ours, config=result.image.config()).stdout == done.stdout


def test_multi_stage_example_keeps_only_the_result(seeded, tmp_path) -> None:
    ctx = write_example("multi-stage", tmp_path / "multi")
    result = build(ctx, cache=tmp_path / "c", out=quiet)
    root = tmp_path / "root"
    unpack_image(result.image, root)
    assert (root / "srv/www/index.html").read_text().count("<li>") == 2
    assert not list(root.glob("usr/lib/python3*")) and not (root / "build").exists()
    assert len(result.image.manifest().layers) == 2  # busybox + the copied site
    again = build(write_example("multi-stage", tmp_path / "again"), cache=tmp_path / "c2")
    assert again.digest == result.digest


def test_static_site_serves_a_file(seeded, tmp_path) -> None:
    result = build(write_example("static-site", tmp_path / "site"), out=quiet)
    root = tmp_path / "root"
    unpack_image(result.image, root)
    fetch = "python3 -m http.server $PORT & for i in $(seq 50); do wget -qO- "
    fetch += "127.0.0.1:$PORT/about.html && break; sleep 0.1; done; kill $!"
    done = runtime.run(root, ["/bin/sh", "-c", fetch], config=result.image.config(), timeout=30)
    assert done.stdout == "<p>Served by python3 -m http.server.</p>\n"


# -- interrupts -------------------------------------------------------------------------------


def _mounts_under(path: Path) -> list[str]:
    return [
        line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(path) in line
    ]


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def _cache_is_consistent(cache: Cache) -> None:
    """No temporary file is left, every selector names a blob that verifies."""
    assert not list((cache.root / "tmp").glob("*")) if (cache.root / "tmp").exists() else True
    for path in (cache.root / "selectors").rglob("*"):
        if path.is_file():
            hit = cache.get_selector(path.name)
            assert hit is not None, path
            with cache.open_blob(hit.layer.digest, hit.layer.size) as blob:
                blob.read()


def _settle(before, marker: str, tmp: Path) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        _processes_with(marker) or leftovers.left_behind(before, leftovers.snapshot())
    ):
        time.sleep(0.1)
    assert _processes_with(marker) == []
    assert leftovers.left_behind(before, leftovers.snapshot()) == []
    assert _mounts_under(tmp) == []
    assert not [p for p in tmp.iterdir() if p.name.startswith("hardway-build-")]


def test_keyboard_interrupt_during_run_leaves_nothing(seeded, tmp_path, monkeypatch) -> None:
    marker = uuid.uuid4().hex
    dockerfile = f"FROM hardway/busybox\nCOPY f /f\nRUN sleep 30 && echo {marker}\n"
    ctx = context(tmp_path, dockerfile, {"f": "x"})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cache = Cache(tmp_path / "cache")
    before = leftovers.snapshot()

    with jupyter_interrupt() as arm, pytest.raises(KeyboardInterrupt):
        build(ctx, cache=cache, out=lambda line: "Running in" in line and arm(0.5))
    _settle(before, marker, scratch)
    _cache_is_consistent(cache)
    selectors = [p for p in (cache.root / "selectors").rglob("*") if p.is_file()]
    assert len(selectors) == 1  # the COPY's: the interrupted RUN recorded nothing


def test_sigint_to_the_cli_leaves_nothing(seeded, tmp_path) -> None:
    marker = uuid.uuid4().hex
    ctx = context(tmp_path, f"FROM hardway/busybox\nRUN sleep 30 && echo {marker}\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch), HARDWAY_CACHE_DIR=str(tmp_path / "cache"))
    before = leftovers.snapshot()
    cli = subprocess.Popen(
        [sys.executable, "-m", "hardway", "build", "-t", f"oci:{tmp_path}/o:x", str(ctx)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        for line in cli.stdout:
            if "Running in" in line:
                break
        deadline = time.monotonic() + 10
        while not _processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_with(marker), "the RUN never started"
        cli.send_signal(signal.SIGINT)
        assert cli.wait(20) == 130
        assert "interrupted" in cli.stderr.read()
    finally:
        cli.kill()
        cli.wait()
    _settle(before, marker, scratch)
    _cache_is_consistent(Cache(tmp_path / "cache"))


@pytest.mark.parametrize(
    "module",
    ["capture", "copyplan", "dockerbuild", "dockerignore", "executor", "inroot", "result",
     "runconfig", "stage", "stepkey"],
)  # fmt: skip
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(f"hardway.build.{module}")).failed == 0


def test_python_seed_is_cached_and_reproducible(registry, tmp_path, monkeypatch) -> None:
    from hardway.course import seed

    first = seed_python_image(registry.port, tag="t1", cache=Cache(tmp_path / "a"))
    other = seed_python_image(registry.port, tag="t2", cache=Cache(tmp_path / "b"))
    assert first.digest == other.digest  # two cold caches, the same bytes
    monkeypatch.setattr(seed, "_python_tree", lambda dest: pytest.fail("copied again"))
    again = seed_python_image(registry.port, tag="t1", cache=Cache(tmp_path / "a"))
    assert again.digest == first.digest and again.uploaded == 0
    image = read_image(f"docker://{first.reference}")
    assert [h.created_by for h in image.config().history][-1].startswith("hardway registry seed")
    assert "PYTHONDONTWRITEBYTECODE=1" in image.config().config.env


def test_pushing_a_rebuild_uploads_no_blob(seeded, tmp_path) -> None:
    from hardway.distribution.registry import Registry

    ctx = context(tmp_path, APP, {"app/main.txt": uuid.uuid4().hex})  # new bytes: a new layer
    cache = Cache(tmp_path / "cache")
    repository = f"hardway/rebuilt-{uuid.uuid4().hex[:8]}"
    with Registry(seeded) as first:
        digest = first.write_image(build(ctx, cache=cache, out=quiet).image, repository, "v1")
        sent = first.requests["PUT upload"]
    with Registry(seeded) as again:
        rebuilt = build(ctx, cache=cache, out=quiet)
        assert again.write_image(rebuilt.image, repository, "v1") == digest
        assert again.requests["PUT upload"] == 0 < sent


def test_run_on_a_base_with_only_bin(tmp_path) -> None:
    """``FROM scratch`` has no /dev, /proc or /sys: the runtime makes the mount points
    inside the root (issue #16: this failed with ``mount /dev failed``)."""
    ctx = context(
        tmp_path, 'FROM scratch\nCOPY sh /bin/sh\nRUN ["/bin/sh", "-c", "echo hi > /hi"]\n'
    )
    shutil.copy(shutil.which("busybox") or pytest.skip("no busybox"), ctx / "sh")
    result = build(ctx, cache=tmp_path / "c", out=quiet)
    unpack_image(result.image, tmp_path / "root")
    assert (tmp_path / "root" / "hi").read_text() == "hi\n"
    # the mount points stay behind, empty, as runc leaves them in a root filesystem
    root = tmp_path / "root"
    assert sorted(p.name for p in root.iterdir()) == ["bin", "dev", "hi", "proc", "sys"]
    assert [list((root / name).iterdir()) for name in ("dev", "proc", "sys")] == [[], [], []]


def test_shell_healthcheck_volume_and_stopsignal(seeded, tmp_path) -> None:
    """``SHELL`` runs later shell-form steps and ``CMD``; the rest is config, as Docker
    writes it (``Healthcheck``/``Shell`` in ``config``, durations in nanoseconds)."""
    dockerfile = """\
FROM hardway/busybox
SHELL ["/bin/sh", "-e", "-c"]
RUN echo "$0 $-" > /shell.txt
VOLUME ["/data"]
VOLUME /logs /cache
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=1m30s --start-interval=500ms CMD ["true"]
CMD serve
"""
    result = build(context(tmp_path, dockerfile), cache=tmp_path / "c", out=quiet)
    config = json.loads(result.image.raw_config())["config"]
    assert config["Shell"] == ["/bin/sh", "-e", "-c"]
    assert config["Cmd"] == ["/bin/sh", "-e", "-c", "serve"]
    assert config["Volumes"] == {"/cache": {}, "/data": {}, "/logs": {}}
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Healthcheck"] == {
        "Test": ["CMD", "true"], "Interval": 90_000_000_000, "StartInterval": 500_000_000
    }  # fmt: skip
    unpack_image(result.image, tmp_path / "root")
    assert "e" in (tmp_path / "root" / "shell.txt").read_text().split()[1]  # sh -e ran it
    history = json.loads(result.image.raw_config())["history"]
    assert history[2]["created_by"] == '/bin/sh -e -c echo "$0 $-" > /shell.txt'


def test_healthcheck_none_turns_off_the_base_images_check(seeded, tmp_path) -> None:
    parent = context(tmp_path, "FROM hardway/busybox\nHEALTHCHECK --retries=2 CMD true\n")
    image = build(parent, cache=tmp_path / "c", out=quiet).image
    write_image(image, f"docker://{seeded}/hardway/checked:latest")
    child = context(tmp_path, "FROM hardway/checked\nHEALTHCHECK NONE\n")
    config = json.loads(build(child, cache=tmp_path / "c", out=quiet).image.raw_config())
    assert json.loads(image.raw_config())["config"]["Healthcheck"]["Retries"] == 2
    assert config["config"]["Healthcheck"] == {"Test": ["NONE"]}


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_add_unpacks_a_local_archive(tmp_path, mode) -> None:
    """``ADD`` unpacks a tar, plain or compressed (found by its content, not its name),
    keeping the archive's owners and links; ``COPY`` copies the same file as it is."""
    ctx = context(tmp_path, "FROM scratch\nADD bundle /opt/\nCOPY bundle /copied\n")
    tree = tmp_path / "tree"
    (tree / "lib").mkdir(parents=True)
    (tree / "lib" / "a.txt").write_text("a\n")
    os.symlink("lib/a.txt", tree / "link")
    with tarfile.open(ctx / "bundle", mode) as tar:
        tar.add(tree, arcname=".", filter=lambda m: m.replace(uid=7, gid=8, deep=False))
    result = build(ctx, cache=tmp_path / "c", out=quiet)
    root = tmp_path / "root"
    unpack_image(result.image, root)
    assert (root / "opt" / "lib" / "a.txt").read_text() == "a\n"
    assert os.readlink(root / "opt" / "link") == "lib/a.txt"
    assert (root / "opt" / "lib" / "a.txt").stat().st_uid == 7
    assert (root / "copied").read_bytes() == (ctx / "bundle").read_bytes()


def test_copy_heredocs_substitute_unless_quoted(tmp_path) -> None:
    dockerfile = """\
FROM scratch
ARG WHO=you
COPY <<EOF /greeting
hello $WHO, "${WHO:-x}" \\n
EOF
COPY --chmod=600 <<-"RAW" <<TWO /etc/
\t$WHO stays
\tRAW
two
TWO
"""
    result = build(context(tmp_path, dockerfile), cache=tmp_path / "c", out=quiet)
    root = tmp_path / "root"
    unpack_image(result.image, root)
    assert (root / "greeting").read_text() == 'hello you, "you" \\n\n'
    assert (root / "greeting").stat().st_mode & 0o777 == 0o644
    assert (root / "etc" / "RAW").read_text() == "$WHO stays\n"
    assert (root / "etc" / "TWO").stat().st_mode & 0o777 == 0o600
