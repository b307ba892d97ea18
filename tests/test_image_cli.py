"""``python -m hardway image from-dir | copy | unpack | inspect``, checked against the real
tools: what we build, skopeo inspects and umoci unpacks to the very tree we started from;
what umoci builds (several layers, deletions, opaque directories, hard links, symlinks,
long and non-ASCII names, setuid files), we unpack to the very tree umoci unpacks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hardway.cli import main
from hardway.image import layout
from hardway.image.mediatypes import DOCKER_MANIFEST, OCI_MANIFEST
from hardway.image.validate import validate_image

ROOT = Path(__file__).resolve().parent.parent
TOOLS = all(shutil.which(t) for t in ("skopeo", "umoci"))
pytestmark = [
    pytest.mark.skipif(not TOOLS, reason="needs skopeo and umoci"),
    pytest.mark.skipif(os.geteuid() != 0, reason="umoci unpack keeps owners and setuid as root"),
]
LONG = "l" * 120


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(args, capture_output=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


def hardway(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run a hardway command in this process; its stdout (it must succeed)."""
    capsys.readouterr()
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def snapshot(root: Path, owners: bool = False) -> dict[str, tuple]:
    """Everything a layer records about every entry under ``root`` (mtimes aside).

    Hard links show as the sorted list of names sharing an inode.
    """
    entries: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            kind = stat.S_IFMT(st.st_mode)
            detail: object = None
            if kind == stat.S_IFREG:
                detail = hashlib.sha256(path.read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif kind == stat.S_IFLNK:
                detail = os.readlink(path)
            who = (st.st_uid, st.st_gid) if owners else None
            entries[rel] = (stat.filemode(st.st_mode), detail, who)
    for names in inodes.values():
        for name in names:
            entries[name] += (tuple(sorted(names)),)
    return entries


def rich_tree(root: Path) -> Path:
    """A small tree with every kind of entry a root filesystem has (devices aside)."""
    for d in ("bin", "etc", "private", "sticky", "empty", f"deep/{LONG}/{LONG}"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc" / "motd").write_text("hello\n")
    (root / "etc" / "ünïcødé-名前.txt").write_text("non-ASCII names\n")
    (root / "etc" / "empty-file").touch()
    (root / "bin" / "tool").write_bytes(os.urandom(5000))
    os.link(root / "bin" / "tool", root / "bin" / "tool-hardlink")
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "su").write_text("#!/bin/true\n")
    (root / "bin" / "su").chmod(0o4755)
    (root / "bin" / "sg").write_text("#!/bin/true\n")
    (root / "bin" / "sg").chmod(0o2711)
    (root / "bin" / "sh").symlink_to("tool")
    (root / "lib").symlink_to("/usr/lib")
    (root / "etc" / "dangling").symlink_to("../nowhere")
    (root / "deep" / LONG / LONG / ("f" * 200)).write_text("a long path\n")
    (root / "private" / "secret").write_text("s\n")
    (root / "private").chmod(0o700)
    (root / "sticky").chmod(0o1777)
    return root


def umoci_unpack(image: str, bundle: Path) -> Path:
    run("umoci", "unpack", "--image", image, str(bundle))
    return bundle / "rootfs"


# --- what we build, the tools read --------------------------------------------------------


def test_from_dir_to_oci_is_read_by_skopeo_and_unpacked_by_umoci_to_the_same_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = rich_tree(tmp_path / "src")
    dest = f"oci:{tmp_path / 'l'}:v1"
    out = hardway(
        capsys, "image", "from-dir", src, dest, "--cmd", '["/bin/sh"]', "--env", "A=1",
        "--workdir", "/etc", "--user", "1000", "--expose", "8080/tcp", "--label", "k=v",
    )  # fmt: skip
    image = layout.read_image(tmp_path / "l", "v1")
    assert f"manifest  {image.digest()}" in out and f"image ID  {image.image_id()}" in out
    validate_image(image)
    info = json.loads(run("skopeo", "inspect", dest).stdout)
    assert info["Digest"] == str(image.digest()) and info["Env"] == ["A=1"]
    assert info["Labels"] == {"k": "v"} and info["Created"] == "1970-01-01T00:00:00Z"
    config = json.loads(run("skopeo", "inspect", "--config", dest).stdout)["config"]
    assert config["Cmd"] == ["/bin/sh"] and config["WorkingDir"] == "/etc"
    assert config["User"] == "1000" and config["ExposedPorts"] == {"8080/tcp": {}}
    rootfs = umoci_unpack(f"{tmp_path / 'l'}:v1", tmp_path / "bundle")
    assert snapshot(rootfs) == snapshot(src)


def test_the_same_directory_gives_the_same_digests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = rich_tree(tmp_path / "src")
    first = hardway(capsys, "image", "from-dir", src, f"oci:{tmp_path / 'a'}:x")
    second = hardway(capsys, "image", "from-dir", src, f"oci:{tmp_path / 'b'}:x")
    assert first.splitlines()[1:] == second.splitlines()[1:]
    # a copy with other mtimes: SOURCE_DATE_EPOCH clamps them, so it builds the same too
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    copy = tmp_path / "copy"
    run("cp", "-a", str(src), str(copy))  # keeps hard links, unlike shutil.copytree
    os.utime(copy / "etc" / "motd", (1800000000, 1800000000))
    third = hardway(capsys, "image", "from-dir", src, f"oci:{tmp_path / 'c'}:x")
    fourth = hardway(capsys, "image", "from-dir", copy, f"oci:{tmp_path / 'd'}:x")
    assert third.splitlines()[1:] == fourth.splitlines()[1:]
    assert third.splitlines()[1:] != first.splitlines()[1:], "another time, another config"
    assert layout.read_image(tmp_path / "d").config().created == "2023-11-14T22:13:20Z"


def test_from_dir_to_docker_archive_is_read_by_skopeo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = rich_tree(tmp_path / "src")
    archive = tmp_path / "hello.tar"
    hardway(
        capsys, "image", "from-dir", src, f"docker-archive:{archive}:hello:v1", "--format", "docker"
    )
    inspected = json.loads(hardway(capsys, "inspect", f"docker-archive:{archive}:hello:v1"))
    assert inspected["Manifest"]["mediaType"] == DOCKER_MANIFEST
    run(
        "skopeo",
        "--insecure-policy",
        "copy",
        f"docker-archive:{archive}:hello:v1",
        f"oci:{tmp_path / 'l'}:t",
    )
    rootfs = umoci_unpack(f"{tmp_path / 'l'}:t", tmp_path / "bundle")
    assert snapshot(rootfs) == snapshot(src)
    config = json.loads(run("skopeo", "inspect", "--config", f"oci:{tmp_path / 'l'}:t").stdout)
    assert config["rootfs"]["diff_ids"] == inspected["Config"]["rootfs"]["diff_ids"]


def test_a_base_image_gets_one_more_layer_and_keeps_its_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lower = rich_tree(tmp_path / "lower")
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "motd").write_text("replaced\n")
    (upper / "app").mkdir()
    (upper / "app" / "run").write_text("#!/bin/sh\n")
    base = f"oci:{tmp_path / 'l'}:base"
    hardway(
        capsys,
        "image",
        "from-dir",
        lower,
        base,
        "--env",
        "PATH=/bin",
        "--env",
        "A=0",
        "--cmd",
        "sh",
    )
    hardway(
        capsys,
        "image",
        "from-dir",
        upper,
        f"oci:{tmp_path / 'l'}:app",
        "--base",
        base,
        "--env",
        "A=1",
    )
    image = layout.read_image(tmp_path / "l", "app")
    validate_image(image)
    config = image.config()
    assert config.config.env == ("PATH=/bin", "A=1") and config.config.cmd == ("sh",)
    assert len(config.rootfs.diff_ids) == len(config.history) == 2
    ours = tmp_path / "ours"
    hardway(capsys, "unpack", f"oci:{tmp_path / 'l'}:app", ours)
    theirs = umoci_unpack(f"{tmp_path / 'l'}:app", tmp_path / "bundle")
    assert snapshot(ours) == snapshot(theirs)
    assert (ours / "etc" / "motd").read_text() == "replaced\n" and (ours / "bin" / "su").exists()


def test_copy_keeps_the_config_and_inspect_agrees_with_skopeo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = rich_tree(tmp_path / "src")
    oci = f"oci:{tmp_path / 'l'}:v1"
    hardway(capsys, "image", "from-dir", src, oci, "--compression", "zstd")
    hardway(capsys, "copy", oci, f"docker-archive:{tmp_path / 'a.tar'}:x:1")
    hardway(capsys, "copy", f"docker-archive:{tmp_path / 'a.tar'}", f"oci:{tmp_path / 'l'}:back")
    one, back = (
        json.loads(hardway(capsys, "inspect", f"oci:{tmp_path / 'l'}:{t}")) for t in ("v1", "back")
    )
    assert one["ImageID"] == back["ImageID"], "the config's bytes survive the round trip"
    assert back["Manifest"]["mediaType"] == OCI_MANIFEST
    assert one["Manifest"]["layers"][0]["mediaType"].endswith("+zstd")
    assert back["Manifest"]["layers"][0]["mediaType"].endswith(".tar"), "archives hold plain tars"
    assert (
        back["Digest"]
        == json.loads(run("skopeo", "inspect", f"oci:{tmp_path / 'l'}:back").stdout)["Digest"]
    )
    raw = run(
        sys.executable, "-m", "hardway", "inspect", "--raw", f"oci:{tmp_path / 'l'}:back"
    ).stdout
    assert raw == run("skopeo", "inspect", "--raw", f"oci:{tmp_path / 'l'}:back").stdout
    ours = tmp_path / "ours"
    hardway(capsys, "unpack", f"oci:{tmp_path / 'l'}:back", ours)
    assert snapshot(ours) == snapshot(src)


# --- what umoci builds, we unpack -----------------------------------------------------------


def tar_layer(path: Path, entries: list[tuple[str, str, object]]) -> Path:
    """A hand-made layer: ``(name, kind, data_or_target)`` with kind file/dir/link/hard."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind in ("link", "hard"):
                info.type = tarfile.SYMTYPE if kind == "link" else tarfile.LNKTYPE
                info.linkname = str(value)
                tar.addfile(info)
            else:
                data = bytes(value)  # type: ignore[arg-type]
                info.size, info.mode = len(data), 0o4755 if name.endswith("suid") else 0o644
                tar.addfile(info, io.BytesIO(data))
    return path


def test_images_made_by_umoci_unpack_to_the_tree_umoci_unpacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = f"{tmp_path / 'u'}:t"
    run("umoci", "init", "--layout", str(tmp_path / "u"))
    run("umoci", "new", "--image", image)
    # layer 1: a rich tree
    rootfs = umoci_unpack(image, tmp_path / "b1")
    shutil.rmtree(rootfs)
    rich_tree(rootfs)
    run("umoci", "repack", "--image", image, str(tmp_path / "b1"))
    # layer 2: deletions (a file, a directory tree), a type change, changes, a new hard link
    rootfs = umoci_unpack(image, tmp_path / "b2")
    (rootfs / "etc" / "motd").unlink()
    shutil.rmtree(rootfs / "private")
    (rootfs / "bin" / "sh").unlink()
    (rootfs / "bin" / "sh").write_text("now a file\n")
    (rootfs / "bin" / "tool").write_bytes(b"changed, and still hard-linked")
    os.link(rootfs / "etc" / "empty-file", rootfs / "etc" / "empty-link")
    (rootfs / "etc" / "ünïcødé-名前.txt").chmod(0o600)
    run("umoci", "repack", "--image", image, str(tmp_path / "b2"))
    # layer 3, by hand: an opaque directory, a whiteout, a hard link, a setuid file
    layer = tar_layer(
        tmp_path / "l3.tar",
        [
            ("deep/", "dir", None),
            ("deep/.wh..wh..opq", "file", b""),
            ("deep/fresh", "file", b"only this survives in deep/"),
            ("deep/fresh-link", "hard", "deep/fresh"),
            ("sticky/.wh.gone", "file", b""),
            ("etc/.wh.dangling", "file", b""),
            ("bin/new-suid", "file", b"#!/bin/true\n"),
            ("lib2", "link", "lib/../etc"),
        ],
    )
    run("umoci", "raw", "add-layer", "--image", image, str(layer))
    manifest = json.loads(hardway(capsys, "inspect", f"oci:{image}"))["Manifest"]
    assert len(manifest["layers"]) == 3
    theirs = umoci_unpack(image, tmp_path / "theirs")
    ours = tmp_path / "ours"
    hardway(capsys, "unpack", f"oci:{image}", ours)
    assert snapshot(ours, owners=True) == snapshot(theirs, owners=True)
    # and the tree is what the layers say, not just what both tools agree on
    assert sorted(p.name for p in (ours / "deep").iterdir()) == ["fresh", "fresh-link"]
    assert not (ours / "private").exists() and not (ours / "etc" / "motd").exists()
    assert (ours / "bin" / "new-suid").stat().st_mode & stat.S_ISUID
    assert (ours / "bin" / "tool").stat().st_ino == (ours / "bin" / "tool-hardlink").stat().st_ino


# --- errors -------------------------------------------------------------------------------


def test_a_tampered_layer_is_refused_before_anything_is_unpacked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = rich_tree(tmp_path / "src")
    hardway(capsys, "image", "from-dir", src, f"oci:{tmp_path / 'l'}:v1", "--compression", "none")
    image = layout.read_image(tmp_path / "l", "v1")
    blob = layout.blob_path(tmp_path / "l", image.layers()[0].digest)
    data = bytearray(blob.read_bytes())
    data[data.find(b"hello\n")] = ord("j")
    blob.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = run(
        sys.executable, "-m", "hardway", "unpack", f"oci:{tmp_path / 'l'}:v1", str(out), check=False
    )
    assert result.returncode == 1
    assert b"error: blob sha256:" in result.stderr and b"tampered" in result.stderr
    assert b"Traceback" not in result.stderr
    assert not out.exists() or not list(out.iterdir()), "nothing of the image was written"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "docker:example.com/x:1"], "should be docker://REF"),
        (
            ["image", "from-dir", ".", "oci:x:y", "--format", "docker", "--compression", "zstd"],
            "no zstd layer type",
        ),
        (["image", "from-dir", ".", "oci:x:y", "--env", "NOVALUE"], "is not KEY=VALUE"),
        (["inspect", "oci:does-not-exist"], "no index.json"),
    ],
)
def test_command_errors_are_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
