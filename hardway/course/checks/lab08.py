"""hardway.course.checks.lab08
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 08, the learner's own pull. Every check but 08.2 runs the learner's code
against the course's real registry, with images the check pushes under a fresh
repository each run (:mod:`hardway.course.checks.images`), and makes the registry lie
where a pull must not believe it:

* 08.1 ``accept_header() -> str``: sent as it is to the registry, which must then serve
  an OCI index, a Docker manifest list and both kinds of manifest;
* 08.2 ``verify_chunks(chunks, digest, size)``: a generator that passes chunks on and
  raises as soon as the stream is longer than ``size``, or hashes wrong at its end;
* 08.3 ``download_blob(registry_url, repository, descriptor, dest) -> Path``: the blob
  into ``dest`` only when whole and verified — refused when the registry sends more bytes
  than the descriptor says, or other bytes than its digest (the check rewrites the
  registry's storage);
* 08.4 ``my_pull(registry, repository, reference, rootfs, *, platform, …) -> dict``: index
  → platform → manifest → every layer applied, compared with ``skopeo copy`` + ``umoci
  unpack`` of the same image, for an OCI index and a Docker manifest list; and a layer
  the registry corrupted must not leave one file in the root filesystem.

``REFERENCE`` hands the course's ``my_pull`` on to the capstone
(:func:`hardway.course.carry.carry`).
"""

from __future__ import annotations

import gzip
import io
import json
import random
import string
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import requests

from hardway.course.checks import fresh_rng, scratch
from hardway.course.checks.child import in_child
from hardway.course.checks.images import (
    DIR,
    blob_file,
    layer,
    push_image,
    tool_unpack,
    tree,
)
from hardway.course.grading import exercise, expect
from hardway.image.digest import sha256_digest
from hardway.image.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

__all__ = ["REFERENCE", "accept_negotiated", "blob_downloaded", "chunks_verified", "image_pulled"]

MANIFEST_KINDS = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
#: seconds the learner's download (08.3) and pull (08.4) may take, each call
DOWNLOAD_TIME, PULL_TIME = 60.0, 90.0


def _word(rng: random.Random, n: int = 6) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def _raises(call: Callable[[], object]) -> BaseException | None:
    """The exception ``call`` raised (``NotImplementedError`` passes through), or None."""
    try:
        call()
    except NotImplementedError:
        raise
    except Exception as exc:
        return exc
    return None


def _what(error: BaseException | None) -> str:
    return "nothing" if error is None else type(error).__name__


def _registry() -> str:
    from hardway.course.checks.machine import course_registry

    return course_registry().url  # not graded, with the reason, if it cannot serve the check


def _http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


@exercise(
    "08.1",
    points=1,
    hints=(
        "a registry serves a manifest only in a type the Accept header names; an image "
        "can be any of four types.",
        "two kinds (index/list and manifest) times two vendors (OCI and Docker): name all "
        "four media types, separated by ', '.",
        "', '.join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])",
    ),
    against=("registry",),
)
def accept_negotiated(accept_header: Callable[[], str]) -> None:
    """With your Accept header, the registry serves OCI and Docker indexes and manifests."""
    header = accept_header()
    expect(isinstance(header, str), f"accept_header() should return a str, not {type(header)}")
    url, rng = _registry(), fresh_rng()
    repository = f"lab08/accept-{_word(rng, 8)}"
    files = layer({"etc": DIR, "etc/hostname": _word(rng).encode()})
    oci = push_image(url, repository, "oci", {"linux/amd64": [files]})
    docker = push_image(url, repository, "docker", {"linux/amd64": [files]}, docker=True)
    cases = [
        ("an OCI index", "oci", OCI_INDEX),
        ("a Docker manifest list", "docker", DOCKER_MANIFEST_LIST),
        ("an OCI manifest", oci.manifests["linux/amd64"], OCI_MANIFEST),
        ("a Docker V2.2 manifest", docker.manifests["linux/amd64"], DOCKER_MANIFEST),
    ]
    with _http() as http:
        for what, ref, kind in cases:
            got = http.get(
                f"{url}/v2/{repository}/manifests/{ref}", headers={"Accept": header}, timeout=30
            )
            served = got.headers.get("Content-Type", "").split(";")[0]
            expect(
                got.status_code == 200 and served == kind,
                f"asked for {what} with your Accept header, the registry answered "
                f"{got.status_code} {got.text[:90]!r}: your header does not name {kind}"
                + (
                    " (Distribution then tries to convert it to the old schema 1 and fails)"
                    if kind == DOCKER_MANIFEST_LIST
                    else ""
                ),
            )
    listed = [part.split(";")[0].strip() for part in header.split(",")]
    extra = sorted(set(listed) - set(MANIFEST_KINDS))
    expect(not extra, f"name only the four manifest and index types, not also {extra}")


class _Source:
    """Chunks of ``data``, then (if ``extra``) more chunks forever; counts what was taken."""

    def __init__(self, data: bytes, chunk: int, extra: bool = False) -> None:
        self.data, self.chunk, self.extra, self.taken = data, chunk, extra, 0

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            self.taken += 1
            yield self.data[start : start + self.chunk]
        while self.extra and self.taken < 10_000:
            self.taken += 1
            yield b"x" * self.chunk


def _consume(verify_chunks: Callable, source: Iterable[bytes], digest: str, size: int) -> bytes:
    return b"".join(verify_chunks(iter(source), digest, size))


@exercise(
    "08.2",
    points=2,
    hints=(
        "a generator's checks run only while someone iterates it: count and hash each "
        "chunk before you yield it.",
        "raise ValueError as soon as the count passes size (read no further); after the "
        "last chunk, raise when the count is short or the sha256 differs.",
        "sha, seen = hashlib.sha256(), 0; for chunk in chunks: seen += len(chunk); if seen "
        "> size: raise …; sha.update(chunk); yield chunk — then the two checks at the end.",
    ),
)
def chunks_verified(verify_chunks: Callable[[Iterable[bytes], str, int], Iterator[bytes]]) -> None:
    """verify_chunks passes good blobs on and stops bad ones: long, short, or wrong."""
    rng = fresh_rng()
    data = rng.randbytes(rng.randint(3000, 9000))
    digest, size, chunk = str(sha256_digest(data)), len(data), rng.randint(100, 700)
    got = _consume(verify_chunks, _Source(data, chunk), digest, size)
    expect(got == data, "verify_chunks should yield the blob's chunks unchanged, in order")
    cases = [
        ("a truncated blob", _Source(data[:-1], chunk), size),
        ("a blob with one byte flipped", _Source(bytes([data[0] ^ 1]) + data[1:], chunk), size),
        ("a blob checked against a smaller size", _Source(data, chunk), size - 1),
    ]
    for what, source, want_size in cases:
        error = _raises(lambda s=source, n=want_size: _consume(verify_chunks, s, digest, n))
        expect(isinstance(error, ValueError), f"{what} must raise ValueError, not {_what(error)}")
    endless = _Source(data, chunk, extra=True)
    error = _raises(lambda: _consume(verify_chunks, endless, digest, size))
    expect(isinstance(error, ValueError), "a blob that never ends must raise ValueError")
    expect(
        endless.taken <= -(-size // chunk) + 1,
        f"size bound not enforced while streaming: on a blob that never ends, verify_chunks "
        f"read {endless.taken} chunks before raising; stop as soon as more than {size} "
        "bytes arrived",
    )


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@exercise(
    "08.3",
    points=3,
    hints=(
        "the registry is not trusted: believe the descriptor (from a manifest you verified), "
        "never the Content-Length or the bytes until they hash right.",
        "refuse a Content-Length larger than descriptor['size'] before reading; stream "
        "through verify_chunks into a temporary file next to dest; rename it to dest only "
        "after the last chunk; remove it on any error.",
        "tempfile.mkstemp(dir=dest.parent); write every chunk of verify_chunks(response."
        "iter_content(65536), descriptor['digest'], descriptor['size']); os.replace(tmp, "
        "dest) after the loop; in except: os.unlink(tmp) and raise.",
    ),
    against=("registry",),
)
def blob_downloaded(download_blob: Callable[[str, str, dict, Path], Path]) -> None:
    """download_blob puts a verified blob at dest, and nothing at all when the registry lies."""
    from hardway.course.checks.machine import course_registry
    from hardway.distribution.registry import Registry

    running, rng = course_registry(), fresh_rng()
    url = running.url
    repository = f"lab08/blob-{_word(rng, 8)}"
    good, big, lied = (rng.randbytes(rng.randint(50_000, 200_000)) for _ in range(3))
    with Registry(url.removeprefix("http://")) as registry:
        for blob in (good, big, lied):
            digest = sha256_digest(blob)
            registry.push_blob(repository, lambda b=blob: io.BytesIO(b), digest, len(blob))
    # the registry lies: one byte flipped in its storage (same size, other bytes)
    blob_file(running, str(sha256_digest(lied))).write_bytes(bytes([lied[0] ^ 0xFF]) + lied[1:])

    def descriptor(blob: bytes, size: int | None = None) -> dict:
        return {"mediaType": "application/octet-stream", "digest": str(sha256_digest(blob)),
                "size": len(blob) if size is None else size}  # fmt: skip

    def run(what: str, desc: dict, dest: Path) -> object:
        return in_child(lambda: download_blob(url, repository, desc, dest), timeout=DOWNLOAD_TIME,
                        what=f"your download_blob ({what})")  # fmt: skip

    with scratch("08") as work:
        dest = work / "good.blob"
        got = run("a good blob", descriptor(good), dest)
        expect(
            Path(str(got)) == dest, f"download_blob should return dest ({dest.name}), not {got!r}"
        )
        expect(dest.is_file() and dest.read_bytes() == good, "dest does not hold the blob's bytes")
        cases = [
            ("a blob larger than its descriptor's size (Content-Length says more)",
             descriptor(big, len(big) - rng.randint(1, 999)), "size bound not enforced: "),
            ("a blob whose bytes the registry changed (same size, one byte flipped)",
             descriptor(lied), ""),
            ("a blob the registry does not have (404)", descriptor(rng.randbytes(9)), ""),
        ]  # fmt: skip
        for number, (what, desc, tag) in enumerate(cases):
            dest = work / f"bad-{number}.blob"
            error = _raises(lambda w=what, d=desc, p=dest: run(w, d, p))
            expect(error is not None, f"{tag}{what} must raise, but download_blob returned")
            expect(
                not dest.exists(),
                f"after {what}, dest exists: the bytes reached their final name before they "
                "were verified — write to a temporary file and rename it after the last chunk",
            )
        left = _leftovers(work, {"good.blob"})
        expect(not left, f"temporary files were left behind after a refused blob: {left}")


# --- 08.4: the whole pull --------------------------------------------------------------------

WANTED = "linux/amd64"


def _layers(rng: random.Random) -> tuple[list[tuple[bytes, str]], dict[str, bytes]]:
    """Three layers that only a pull in the right order gets right, and their marks."""
    marks = {name: _word(rng).encode() for name in ("low", "high", "gone", "old", "new", "top")}
    bottom = layer({"etc": DIR, "etc/motd": b"lower " + marks["low"], "gone": DIR,
                    "gone/file": marks["gone"], "opq": DIR, "opq/old": marks["old"],
                    "arch": b"amd64"})  # fmt: skip
    middle = layer({"etc": DIR, "etc/motd": b"upper " + marks["high"], ".wh.gone": b"",
                    "opq": DIR, "opq/.wh..wh..opq": b"", "opq/new": marks["new"]})  # fmt: skip
    top = layer({"srv": DIR, "srv/top": marks["top"]})
    return [bottom, middle, top], marks


def _same_size_evil(original: bytes) -> bytes | None:
    """A gzip layer of exactly ``len(original)`` bytes planting ``planted/evil``: stored
    (level 0) gzip has a size fixed by the tar's, and the tar's by its members' sizes."""
    for pad in range(0, 4096):
        raw = io.BytesIO()
        with tarfile_open(raw) as tar:
            _add(tar, "planted", None)
            _add(tar, "planted/evil", b"e" * pad)
        blob = gzip.compress(raw.getvalue(), compresslevel=0, mtime=0)
        if len(blob) == len(original):
            return blob
        if len(blob) > len(original):
            return None
    return None


def tarfile_open(raw: io.BytesIO):  # type: ignore[no-untyped-def]
    import tarfile

    return tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT)


def _add(tar: object, name: str, content: bytes | None) -> None:
    import tarfile

    info = tarfile.TarInfo(name)
    if content is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)  # type: ignore[attr-defined]
    else:
        info.size, info.mode = len(content), 0o644
        tar.addfile(info, io.BytesIO(content))  # type: ignore[attr-defined]


def _stored_layer(files: dict[str, bytes | None]) -> tuple[bytes, str]:
    """Like :func:`images.layer`, but gzip level 0 (same-size lies can be built for it)."""
    raw = io.BytesIO()
    with tarfile_open(raw) as tar:
        for name, content in files.items():
            _add(tar, name, content)
    data = raw.getvalue()
    return gzip.compress(data, compresslevel=0, mtime=0), str(sha256_digest(data))


def _compare(got: dict[str, tuple], want: dict[str, tuple], marks: dict[str, bytes]) -> None:
    """Fail with the mistake a difference points at, or with the first paths that differ."""
    if got.get("arch", ("",))[1:2] == (b"arm64",):
        raise AssertionError(
            f"your pull unpacked the linux/arm64 image, the index's first entry: pick the "
            f"entry whose platform is {WANTED} (my_select_platform), not manifests[0]"
        )
    motd = got.get("etc/motd", ("", b""))[1]
    if isinstance(motd, bytes) and motd.startswith(b"lower"):
        raise AssertionError(
            "etc/motd has the lower layer's content: the layers were applied in reverse "
            "order — apply them as the manifest lists them, the first (bottom) one first"
        )
    if "gone/file" in got or "opq/old" in got:
        raise AssertionError(
            "a file hidden by a whiteout or an opaque directory is still there: apply every "
            "layer with my_apply_layer (lab 05), which honours .wh. entries"
        )
    wrong = sorted(
        p for p in set(got) | set(want)
        if got.get(p, ("missing",))[:2] != want.get(p, ("missing",))[:2]
    )  # fmt: skip
    expect(not wrong, f"your root filesystem differs from umoci's unpack of the same image "
                      f"at {wrong[:5]} (first {min(len(wrong), 5)} of {len(wrong)})")  # fmt: skip


@exercise(
    "08.4",
    points=6,
    hints=(
        "a pull is a walk down: tag → index → the platform's manifest → config and layers; "
        "every step verified before the next one uses it.",
        "GET the manifest with your Accept header; if it is an index or manifest list, pick "
        "the platform's entry (my_select_platform) and GET that manifest by digest; download "
        "the config and every layer with download_blob; only when all are verified, apply "
        "the layers in order with my_apply_layer.",
        "for each layer in manifest['layers']: download_blob(url, repository, layer, "
        "tmp / f'{i}.tar.gz'); then a second loop: my_apply_layer(path, rootfs); return "
        "json.loads(config_path.read_bytes()).",
    ),
    against=("registry", "skopeo", "umoci"),
)
def image_pulled(my_pull: Callable[..., dict]) -> None:
    """my_pull gives the tree umoci gives, for OCI and Docker images, and nothing from a lie."""
    from hardway.course.checks.machine import course_registry

    running, rng = course_registry(), fresh_rng()
    url, host = running.url, running.url.removeprefix("http://")
    repository = f"lab08/pull-{_word(rng, 8)}"
    layers, marks = _layers(rng)
    arm = [layer({"arch": b"arm64", "etc": DIR, "etc/motd": b"arm " + marks["high"]})]
    platforms = {"linux/arm64": arm, WANTED: layers}
    pushed = {
        "oci": push_image(url, repository, "oci", platforms),
        "docker": push_image(url, repository, "docker", platforms, docker=True),
    }

    def pull(reference: str, rootfs: Path) -> object:
        return in_child(lambda: my_pull(host, repository, reference, rootfs, platform=WANTED),
                        timeout=PULL_TIME, what=f"your my_pull of {reference}")  # fmt: skip

    with scratch("08") as work:
        want = tree(tool_unpack(url, repository, "oci", WANTED, work / "tools"))
        for reference in ("oci", "docker"):
            rootfs = work / f"rootfs-{reference}"
            rootfs.mkdir()
            config = pull(reference, rootfs)
            _compare(tree(rootfs), want, marks)
            expect(
                config == pushed[reference].configs[WANTED],
                f"my_pull({reference!r}) should return the image config of {WANTED} (the "
                f"config blob, parsed), not {str(config)[:80]}",
            )
        # the registry lies about the top layer: same size, other (valid) bytes
        liar = f"{repository}-lies"
        honest = _stored_layer({"srv": None, "srv/top": marks["top"] * 8})
        evil = _same_size_evil(honest[0])
        expect(evil is not None, "the check could not build its lie (a bug in the check)")
        push_image(url, liar, "v1", {WANTED: [layers[0], honest]})
        blob_file(running, str(sha256_digest(honest[0]))).write_bytes(evil)  # type: ignore[arg-type]
        rootfs = work / "rootfs-lie"
        rootfs.mkdir()
        error = _raises(
            lambda: in_child(
                lambda: my_pull(host, liar, "v1", rootfs, platform=WANTED),
                timeout=PULL_TIME,
                what="your my_pull of a corrupted image",
            )
        )
        planted = (rootfs / "planted").exists()
        expect(
            not planted,
            "a layer whose bytes do not match its digest was applied: planted/evil reached the "
            "root filesystem — verify each blob (download_blob) before applying it",
        )
        expect(error is not None, "my_pull returned for an image the registry corrupted: raise")


# --- what lab 08 hands on (hardway.course.carry) --------------------------------------------


def course_pull(
    registry: str,
    repository: str,
    reference: str,
    rootfs: Path,
    *,
    platform: str = WANTED,
    username: str | None = None,
    password: str | None = None,
) -> dict:
    """The course's my_pull: ``registry/repository:reference`` (an index resolved to
    ``platform``), every layer verified, then applied into ``rootfs``; the image config."""
    from hardway.distribution.credentials import Credentials
    from hardway.distribution.registry import pull
    from hardway.image.platform import Platform
    from hardway.image.unpack import unpack_image

    separator = "@" if reference.startswith("sha256:") else ":"
    credentials = Credentials(username, password or "") if username else Credentials()
    image = pull(f"{registry}/{repository}{separator}{reference}", credentials=credentials,
                 platform=Platform.parse(platform), progress=False)  # fmt: skip
    unpack_image(image, Path(rootfs))
    return json.loads(image.raw_config())  # type: ignore[no-any-return]


REFERENCE: dict[str, Callable[..., object]] = {"my_pull": course_pull}
