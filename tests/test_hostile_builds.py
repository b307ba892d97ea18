"""Hostile build contexts and base images: a Dockerfile build never writes outside its root.

A base image (or a build context) may hold symlinks that point out of it: ``etc ->
/etc``, ``app/conf -> /home/you/.bashrc``, ``up -> ../../../..``. Every path the builder
writes in an image's root filesystem (``COPY``'s destination and what lies below it,
``WORKDIR``) and every path it reads in a context or a stage (``COPY``'s sources and their
wildcards) is resolved *inside* that root, as the kernel would after ``chroot``: such a
link means the same path inside the root. Here the links point at ``outside/``, a
directory on this machine full of canaries; its whole listing must be the same after the
build, and the files must land where the link leads *inside* the image.

The "hostile base image" is built by the Dockerfile itself (``FROM scratch``, then
``COPY base/ /`` of a directory holding the links), so no registry is needed.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from pathlib import Path

import pytest

from hardway.build.dockerbuild import build
from hardway.errors import BuildError, HardwayError
from hardway.image.apply import apply_layer

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: overlayfs, namespaces")
pytestmark = [needs_root, pytest.mark.parametrize("method", ["overlay", "snapshot"])]


def listing(top: Path) -> dict[str, tuple]:
    """Everything below *top*: type, mode, owner, size, times, content hash, link target."""
    seen = {}
    for path in sorted([top, *top.rglob("*")]):
        st = path.lstat()
        data = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        link = os.readlink(path) if path.is_symlink() else None
        seen[str(path.relative_to(top))] = (
            st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, data, link
        )  # fmt: skip
    return seen


@pytest.fixture
def outside(tmp_path: Path):
    """A directory of canaries that the links below point at; it must not change."""
    out = tmp_path / "outside"
    (out / "dir").mkdir(parents=True)
    for path in (out / "conf", out / "dir" / "keep"):
        path.write_text("original\n")
    before = listing(out)
    yield out
    assert listing(out) == before, "the build wrote outside its root"


def inside(root: Path, host_path: Path) -> Path:
    """Where the absolute *host_path* is inside *root* (what a link to it means there)."""
    return root / str(host_path).lstrip("/")


def hostile_context(tmp_path: Path, outside: Path, dockerfile: str) -> Path:
    """A context with ``base/``, the hostile image's files, plus ``a.txt`` and ``tree/``."""
    ctx = tmp_path / "ctx"
    (ctx / "base" / "app").mkdir(parents=True)
    (ctx / "tree" / "dir").mkdir(parents=True)
    (ctx / "a.txt").write_text("from the context\n")
    (ctx / "tree" / "top.txt").write_text("top\n")
    (ctx / "tree" / "dir" / "deep.txt").write_text("deep\n")
    os.symlink(outside / "conf", ctx / "base" / "app" / "conf")  # a file out there
    os.symlink(outside / "dir", ctx / "base" / "app" / "dir")  # a directory out there
    os.symlink("../" * 12 + str(outside).lstrip("/"), ctx / "base" / "app" / "up")
    os.symlink(outside / "work", ctx / "base" / "work")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY base/ /\n" + dockerfile)
    return ctx


def built_root(ctx: Path, tmp_path: Path, method: str) -> Path:
    """Build *ctx* and unpack the image into a fresh directory."""
    result = build(ctx, cache=tmp_path / "cache", method=method, out=lambda line: None)
    root = tmp_path / "root"
    root.mkdir()
    for layer in result.image.layers():
        with layer.compressed() as blob:
            apply_layer(blob, root)
    return root


def test_copy_onto_a_link_out_of_the_root_writes_where_it_leads_inside(
    tmp_path, outside, method
) -> None:
    """``COPY a.txt /app/conf`` with ``conf -> OUTSIDE/conf``: the file is written at
    ROOT/OUTSIDE/conf, the link stays, the host's OUTSIDE/conf is untouched."""
    ctx = hostile_context(tmp_path, outside, "COPY a.txt /app/conf\n")
    root = built_root(ctx, tmp_path, method)
    assert inside(root, outside / "conf").read_text() == "from the context\n"
    assert os.readlink(root / "app" / "conf") == str(outside / "conf")


def test_copy_into_a_directory_through_a_link_out_of_the_root(tmp_path, outside, method) -> None:
    """``COPY a.txt /app/dir/`` and ``COPY tree/ /app/dir/`` with ``dir -> OUTSIDE/dir``,
    which the image does not have: it is made inside the root."""
    ctx = hostile_context(tmp_path, outside, "COPY a.txt /app/dir/\nCOPY tree/ /app/dir/\n")
    root = built_root(ctx, tmp_path, method)
    there = inside(root, outside / "dir")
    assert (there / "a.txt").read_text() == "from the context\n"
    assert (there / "dir" / "deep.txt").read_text() == "deep\n"
    assert not (there / "keep").exists()  # the host's directory was never looked into
    assert os.readlink(root / "app" / "dir") == str(outside / "dir")


def test_copy_of_a_tree_meets_a_link_out_of_the_root_below_its_destination(
    tmp_path, outside, method
) -> None:
    """``COPY tree/ /app/`` where the image's ``/app/dir`` (the tree has ``dir/`` too) is a
    link to OUTSIDE/dir, a directory on the host but not in the image."""
    ctx = hostile_context(tmp_path, outside, "COPY tree/ /app/\n")
    root = built_root(ctx, tmp_path, method)
    assert (root / "app" / "top.txt").read_text() == "top\n"
    assert (inside(root, outside / "dir") / "deep.txt").read_text() == "deep\n"
    assert stat.S_ISLNK((root / "app" / "dir").lstat().st_mode)


def test_copy_through_a_link_climbing_out_with_dotdot(tmp_path, outside, method) -> None:
    """``up -> ../../…/OUTSIDE``: ``..`` stops at the root, as after ``chroot``."""
    ctx = hostile_context(tmp_path, outside, "COPY a.txt /app/up/new.txt\n")
    root = built_root(ctx, tmp_path, method)
    assert (inside(root, outside) / "new.txt").read_text() == "from the context\n"


def test_workdir_through_a_link_out_of_the_root(tmp_path, outside, method) -> None:
    """``WORKDIR /work/deeper`` with ``work -> OUTSIDE/work``, then relative ``COPY`` s."""
    ctx = hostile_context(tmp_path, outside, "WORKDIR /work/deeper\nCOPY a.txt tree/ ./\n")
    root = built_root(ctx, tmp_path, method)
    deeper = inside(root, outside / "work" / "deeper")
    assert (deeper / "a.txt").read_text() == "from the context\n"
    assert (deeper / "dir" / "deep.txt").read_text() == "deep\n"
    assert not (outside / "work").exists()


def test_wildcards_never_list_a_directory_out_of_the_context(tmp_path, outside, method) -> None:
    """``COPY out/* /got/`` with ``out -> OUTSIDE``: the wildcard is matched in
    CONTEXT/OUTSIDE, never in the host's OUTSIDE (whose names must not leak in)."""
    ctx = tmp_path / "ctx"
    own = inside(ctx, outside)
    own.mkdir(parents=True)
    (own / "own.txt").write_text("the context's own\n")
    os.symlink(outside, ctx / "out")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY out/* /got/\n")
    root = built_root(ctx, tmp_path, method)
    assert sorted(os.listdir(root / "got")) == ["own.txt"]


def test_copy_from_a_stage_follows_its_links_inside_that_stage(tmp_path, outside, method) -> None:
    """``COPY --from=base /app/conf`` reads the stage's OUTSIDE/conf, not the host's."""
    ctx = hostile_context(tmp_path, outside, "COPY a.txt /app/conf\n")
    dockerfile = (ctx / "Dockerfile").read_text().replace("FROM scratch", "FROM scratch AS base")
    dockerfile += "FROM scratch\nCOPY --from=base /app/conf /app/dir/keep /got/\n"
    (ctx / "Dockerfile").write_text(dockerfile)
    with pytest.raises(BuildError, match="'/app/dir/keep' not found in stage 'base'"):
        built_root(ctx, tmp_path, method)
    dockerfile = dockerfile.replace(" /app/dir/keep", "")
    (ctx / "Dockerfile").write_text(dockerfile)
    root = built_root(ctx, tmp_path, method)
    assert (root / "got" / "conf").read_text() == "from the context\n"


def test_copy_refuses_special_files_instead_of_waiting_on_them(tmp_path, method) -> None:
    """A FIFO or a socket in the context (alone, or in a copied tree) fails the step at
    once: a FIFO would wait for a writer forever."""
    ctx = tmp_path / "ctx"
    (ctx / "tree").mkdir(parents=True)
    os.mkfifo(ctx / "pipe")
    os.mkfifo(ctx / "tree" / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(ctx / "sock"))
        for source in ("pipe", "tree/", "sock"):
            (ctx / "Dockerfile").write_text(f"FROM scratch\nCOPY {source} /got/\n")
            with pytest.raises(BuildError, match="COPY copies files, directories and symlinks"):
                built_root(ctx, tmp_path, method)


def hostile_archive(path: Path, outside: Path, entry: str) -> None:
    """A tar that tries one way out: a link out then a file through it, a hard link to
    a file out there, or a name climbing out with ``..``."""
    import io
    import tarfile

    def add(tar: tarfile.TarFile, name: str, kind: bytes, link: str = "", data: bytes = b""):
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, link, len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(path, "w:gz") as tar:
        if entry == "link":
            add(tar, "out", tarfile.SYMTYPE, str(outside))
            add(tar, "out/pwned", tarfile.REGTYPE, data=b"pwned\n")
        elif entry == "hard":
            add(tar, "hard", tarfile.LNKTYPE, str(outside / "conf"))
        else:
            climb = "../" * 12 + str(outside).lstrip("/") + "/pwned"
            add(tar, climb, tarfile.REGTYPE, data=b"pwned\n")


@pytest.mark.parametrize("entry", ["link", "hard", "dotdot"])
def test_add_of_a_hostile_archive_stays_inside_the_root(tmp_path, outside, method, entry):
    """``ADD`` unpacks with the layer applier: a link is followed inside the destination,
    a name or hard link that would leave it is refused. *outside* must not change (its
    fixture checks)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    hostile_archive(ctx / "bad.tar.gz", outside, entry)
    (ctx / "Dockerfile").write_text("FROM scratch\nADD bad.tar.gz /opt/\n")
    if entry != "link":
        with pytest.raises(HardwayError, match=r"line 2: ADD failed: .*unsafe layer entry"):
            built_root(ctx, tmp_path, method)
        return
    root = built_root(ctx, tmp_path, method)
    assert (inside(root / "opt", outside) / "pwned").read_text() == "pwned\n"
