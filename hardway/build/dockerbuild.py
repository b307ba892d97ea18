"""hardway.build.dockerbuild
~~~~~~~~~~~~~~~~~~~~~~~~~

``docker build``, the hard way: :func:`build` runs a Dockerfile in a build context and
returns the image, and ``python -m hardway build -t DEST CONTEXT`` writes it to each
destination. The parts, each a module of this package:

* :mod:`~hardway.build.dockerfile` reads the Dockerfile, and
  :mod:`~hardway.build.dockerignore` makes the context Docker would send (without what
  ``.dockerignore`` names);
* :mod:`~hardway.build.executor` executes it stage by stage, instruction by instruction,
  each turning the image so far (:mod:`~hardway.build.stage`) into a new one;
* :mod:`~hardway.build.runconfig` is what ``ENV``, ``CMD`` and the other config-only
  instructions do to the image config;
* :mod:`~hardway.build.copyplan` decides what a ``COPY`` copies, and
  :mod:`~hardway.build.inroot` resolves every path of a context, a stage or the image's
  root inside that root, so that a symlink never leads a build out of it;
* :mod:`~hardway.build.capture` does a ``RUN``, ``COPY`` or ``WORKDIR`` on an overlayfs
  mount in a child process (``RUN`` in the chapter 04 runtime) and takes its changes as
  the step's layer;
* :mod:`~hardway.build.stepkey` is the build cache's rule: a step's key is its parent
  image ID plus its text after substitution (and, for ``COPY``, the hash of the files
  copied), and its results live in :class:`hardway.build.cache.Cache`.

Same Dockerfile and context, same digests: every time in the image is
``SOURCE_DATE_EPOCH`` (else 1970) and layers are written deterministically.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from hardway.build.cache import Cache
from hardway.build.capture import METHODS, default_method
from hardway.build.dockerfile import parse
from hardway.build.dockerignore import send_context
from hardway.build.executor import Executor, StepReport
from hardway.build.result import BuildResult
from hardway.errors import BuildError
from hardway.sys.trees import remove_tree

__all__ = ["build", "register"]


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
) -> BuildResult[StepReport]:
    """Build the Dockerfile (default ``CONTEXT/Dockerfile``) in directory *context*.

    :param build_args: (optional) ``--build-arg`` values for ``ARG`` s
    :param target: (optional) the stage to build; default: the last
    :param cache: (optional) a :class:`~hardway.build.cache.Cache` or its directory;
        default ``HARDWAY_CACHE_DIR`` or ``.state/cache``
    :param no_cache: run every step (results are still stored)
    :param method: (optional) ``"overlay"`` or ``"snapshot"``
        (:func:`hardway.build.capture.changes`); default
        :func:`~hardway.build.capture.default_method`. Both give the same layers.
    :param out: (optional) where each progress line goes; default ``print``
    :raises DockerfileError: the Dockerfile is malformed or outside the supported subset
    :raises BuildError: a step failed (``.line`` names its instruction)
    :rtype: a :class:`~hardway.build.result.BuildResult` with one
        :class:`~hardway.build.executor.StepReport` per step
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
        sent = send_context(context, workdir / "context", path)
        with store.lock():
            executor = Executor(
                parsed, sent, store, build_args=build_args or {}, use_cache=not no_cache,
                workdir=workdir, out=out or print, fmt=fmt, method=method or default_method(),
            )  # fmt: skip
            state = executor.run(index)
    finally:
        remove_tree(workdir)
    image = state.image(fmt)
    (out or print)(f"Successfully built {state.id.encoded[:12]}")
    return BuildResult(image, tuple(executor.reports))


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
