"""hardway.course.seed
~~~~~~~~~~~~~~~~~~~

The base image every later chapter builds on: the busybox root filesystem of chapter 02
(:func:`hardway.isolation.rootfs.build_busybox`) as one layer
(:func:`hardway.image.mutate.from_dir`),
pushed to the course's registry as ``127.0.0.1:PORT/hardway/busybox:latest``.

Why reproducible: every file time is clamped to :data:`SOURCE_DATE_EPOCH` and the layer
is written the same way each time, so the same busybox gives the same digests — the
registry already has every blob on a second run, and nothing is uploaded twice. That is
also what lets chapter 07 *mount* this layer into another repository instead of sending
its bytes again.

Chapter 10 needs a Python to build and serve a static site, so :func:`seed_python_image`
pushes ``hardway/python:latest`` too: the same busybox layer (shared, not uploaded twice)
plus one layer with this machine's ``python3``, the libraries ``ldd`` names for it and
its extension modules, and the standard library minus what a container never needs
(tests, IDLE, tkinter, the static library, ``__pycache__``; :data:`PYTHON_SKIP`). That
layer is kept in the build cache (:mod:`hardway.build.cache`) under a key made of the host
files' names, sizes, modes and times, so seeding again costs a directory walk, not a
copy and a compression.

``python -m hardway registry seed`` pushes both. This module composes the ``registry``
command (:func:`register`): ``start|stop|status`` come from the registry's own floor
(:func:`hardway.distribution.server.local_registry.register`), which cannot know about
seed images, so ``seed`` is added here, one floor up.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hardway.image.digest import Digest

__all__ = [
    "BASE_REPOSITORY",
    "EXAMPLES",
    "MULTI_STAGE",
    "PYTHON_REPOSITORY",
    "PYTHON_SKIP",
    "SOURCE_DATE_EPOCH",
    "STATIC_SITE",
    "SeedResult",
    "base_image",
    "python_files",
    "python_image",
    "register",
    "seed_base_image",
    "seed_python_image",
    "write_example",
]

#: where the base image lives in the course's registry
BASE_REPOSITORY = "hardway/busybox"
#: where the Python base image lives (busybox plus the host's python3)
PYTHON_REPOSITORY = "hardway/python"
#: parts of the standard library a container never needs, by name (any depth)
PYTHON_SKIP = frozenset(
    {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
     "distutils", "__pycache__", "site-packages", "dist-packages"}
)  # fmt: skip
#: extension modules left out: test helpers, terminals, and ones with big libraries (ssl)
_SKIP_EXTENSIONS = ("_test", "_xx", "xx", "_ctypes_test", "_curses", "readline", "_dbm", "nis",
                    "ossaudiodev", "_ssl", "_hashlib", "_sqlite3", "_tkinter")  # fmt: skip
#: the fixed time of every file and of the image's ``created`` (2023-11-14T22:13:20Z)
SOURCE_DATE_EPOCH = 1700000000


@dataclass(frozen=True)
class SeedResult:
    """What :func:`seed_base_image` did: the reference, the manifest digest, and how
    many blobs it had to upload (0 when the registry had them all)."""

    reference: str
    digest: Digest
    uploaded: int


def base_image(workdir: Path | str):
    """The busybox base image, its rootfs and layer blob kept under ``workdir``.

    :rtype: hardway.image.blobs.StoredImage
    """
    from hardway.image.mutate import from_dir
    from hardway.isolation.rootfs import build_busybox

    workdir = Path(workdir)
    root = build_busybox(workdir / "rootfs").path
    return from_dir(
        root,
        workdir,
        source_date_epoch=SOURCE_DATE_EPOCH,
        created_by="hardway registry seed",
        cmd=["/bin/sh"],
    )


#: the interpreter the image gets: the system's (Debian's), not a virtual environment's
SYSTEM_PYTHON = "/usr/bin/python3"


@functools.cache
def _python() -> tuple[Path, Path, str]:
    """The system Python's real binary, its standard library directory and its version."""
    from hardway.errors import RootfsError

    if not os.path.isfile(SYSTEM_PYTHON):
        raise RootfsError(
            f"{SYSTEM_PYTHON} is missing: the Python base image copies the system's Python",
            fix="sudo apt-get install python3-minimal",
        )
    ask = "import sys, sysconfig; print(sysconfig.get_paths()['stdlib']); print(sys.version[:4])"
    done = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", ask], capture_output=True, text=True, timeout=30, check=True
    )
    stdlib, version = done.stdout.split()
    return Path(os.path.realpath(SYSTEM_PYTHON)), Path(stdlib), version.rstrip(".")


def _stdlib() -> Path:
    return _python()[1]


def _python_binary() -> Path:
    return _python()[0]


def python_files() -> Iterator[Path]:
    """The standard library files the Python image gets, sorted (see :data:`PYTHON_SKIP`)."""
    root = _stdlib()
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in PYTHON_SKIP and not d.startswith("config-"))
        for name in sorted(files):
            if name.endswith((".pyc", ".a", ".exe")) or name.startswith(_SKIP_EXTENSIONS):
                continue
            path = Path(current) / name
            if path.is_file():  # dangling links (Debian's sitecustomize) are left out
                yield path


def _python_tree(dest: Path) -> None:
    """Fill *dest* with the interpreter, its libraries and the trimmed standard library."""
    import shutil

    from hardway.isolation.rootfs import add_binary, ldd

    binary = _python_binary()
    add_binary(dest, str(binary))
    (dest / "usr/bin/python3").symlink_to(binary.name)
    seen: set[str] = set()
    for path in python_files():
        target = dest / str(path).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        if path.suffix == ".so":
            for lib in ldd(path):
                if lib not in seen and not (dest / lib.lstrip("/")).exists():
                    seen.add(lib)
                    (dest / lib.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(lib, dest / lib.lstrip("/"))


def _python_key() -> str:
    """What the Python layer is made of: each host file's path, size, mode and mtime."""
    from hardway.build.cache import key_of

    files = [_python_binary(), *python_files()]
    stats = [
        (str(p), *(lambda st: (st.st_size, st.st_mode, st.st_mtime_ns))(p.stat())) for p in files
    ]
    return key_of({"python-layer": stats, "epoch": SOURCE_DATE_EPOCH, "v": 1})


def python_image(workdir: Path | str, cache=None):
    """busybox plus a layer with this machine's Python (cached in *cache*, a
    :class:`hardway.build.cache.Cache`; default the course's cache).

    :rtype: hardway.image.blobs.StoredImage
    """
    from hardway.build.cache import Cache
    from hardway.image.config import History
    from hardway.image.entries import tree_entries
    from hardway.image.mutate import append_layers, configure, timestamp

    cache = cache if cache is not None else Cache()
    key = _python_key()
    with cache.lock():
        hit = cache.get_selector(key)
        if hit is None:
            tree = Path(workdir) / "python"
            _python_tree(tree)
            info = cache.write_layer(tree_entries(tree), source_date_epoch=SOURCE_DATE_EPOCH)
            hit = cache.put_selector(key, info, {"what": "hardway/python layer"})
        layer = cache.layer(hit.layer)
    created = timestamp(SOURCE_DATE_EPOCH)
    version = _python()[2]
    image = append_layers(
        base_image(workdir),
        [layer],
        history=[History(created=created, created_by=f"hardway registry seed: python{version}")],
    )
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"]  # fmt: skip
    return configure(image, env=env, cmd=["python3"], created=created)


def _push(image, port: int | None, repository: str, tag: str) -> SeedResult:
    """Push with the credentials of the docker config file, as every command does (after
    ``python -m hardway login 127.0.0.1:PORT``, a basic or token registry takes it)."""
    from hardway.distribution.registry import client_for
    from hardway.distribution.server.config import default_port

    port = default_port() if port is None else port
    host = f"127.0.0.1:{port}"
    with client_for(f"{host}/{repository}:{tag}", push=True) as registry:
        digest = registry.write_image(image, repository, tag)
        uploaded = registry.requests["PUT upload"]
    return SeedResult(f"{host}/{repository}:{tag}", digest, uploaded)


def seed_python_image(port: int | None = None, *, tag: str = "latest", cache=None) -> SeedResult:
    """Build the Python base image and push it as ``hardway/python:TAG`` (idempotent)."""
    with tempfile.TemporaryDirectory(prefix="hardway-seed-") as tmp:
        return _push(python_image(tmp, cache), port, PYTHON_REPOSITORY, tag)


def seed_base_image(port: int | None = None, *, tag: str = "latest") -> SeedResult:
    """Build the base image and push it to the registry on ``port`` (idempotent).

    The registry must be running
    (:func:`hardway.distribution.server.local_registry.ensure_running`); with auth on,
    log in to it first (credentials come from the docker config file).
    """
    with tempfile.TemporaryDirectory(prefix="hardway-seed-") as tmp:
        return _push(base_image(tmp), port, BASE_REPOSITORY, tag)


def _cmd_seed(args: argparse.Namespace) -> int:
    from hardway.distribution.server import local_registry

    local_registry.ensure_running(args.port, owned=False)
    for seed in (seed_base_image, seed_python_image):
        result = seed(args.port)
        print(f"seeded {result.reference} ({result.digest}, {result.uploaded} blobs uploaded)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``registry start|stop|status|seed [--port N]`` to the ``python -m hardway`` CLI."""
    from hardway.distribution.server import local_registry

    seed = (
        "seed",
        _cmd_seed,
        "push the base images hardway/busybox:latest and hardway/python:latest",
    )
    local_registry.register(subparsers, more=(seed,))


# -- chapter 10's example build contexts ---------------------------------------------------

#: a static site served by Python's ``http.server``, built ``FROM hardway/python``
STATIC_SITE: dict[str, str] = {
    "Dockerfile": """\
# A static site, served by Python's http.server
FROM hardway/python
ENV PORT=8000
WORKDIR /srv/www
COPY site/ ./
USER nobody
EXPOSE $PORT
CMD python3 -m http.server $PORT
""",
    "site/index.html": "<h1>Hello from a container built the hard way</h1>\n",
    "site/about.html": "<p>Served by python3 -m http.server.</p>\n",
}

#: two stages: Python renders the pages, the final busybox image keeps only the HTML
MULTI_STAGE: dict[str, str] = {
    "Dockerfile": """\
# Stage 1: render the pages with Python
FROM hardway/python AS build
WORKDIR /build
COPY render.py pages/ ./
RUN python3 render.py . /out

# Stage 2: only the result, served by busybox httpd (no Python)
FROM hardway/busybox
COPY --from=build /out /srv/www
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/srv/www"]
""",
    "render.py": '''\
"""Render every pages/*.txt (title line, then text) to HTML, plus an index."""
import html, pathlib, sys

src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
links = []
for page in sorted(src.glob("*.txt")):
    title, _, body = page.read_text().partition("\\n")
    name = page.stem + ".html"
    text = html.escape(body.strip())
    (out / name).write_text(f"<h1>{html.escape(title)}</h1>\\n<p>{text}</p>\\n")
    links.append(f'<li><a href="{name}">{html.escape(title)}</a></li>')
(out / "index.html").write_text("<ul>\\n" + "\\n".join(links) + "\\n</ul>\\n")
print(f"rendered {len(links)} pages")
''',
    "pages/layers.txt": "Layers\nA layer is a tar of changes.\n",
    "pages/cache.txt": "The build cache\nA step's key is its parent plus its text.\n",
}

#: the examples by name
EXAMPLES = {"static-site": STATIC_SITE, "multi-stage": MULTI_STAGE}


def write_example(name: str, dest: Path | str) -> Path:
    """Write the build context *name* (``static-site``, ``multi-stage``) into *dest*.

    Every file gets mode 0644 whatever the umask, so two copies give the same COPY
    hashes (which see names, modes and contents, not times).
    """
    from hardway.errors import BuildError

    if name not in EXAMPLES:
        raise BuildError(f"no example build context {name!r}", fix=f"use one of {list(EXAMPLES)}")
    dest = Path(dest)
    for rel, text in EXAMPLES[name].items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)
    return dest
