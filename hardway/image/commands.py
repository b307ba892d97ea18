"""hardway.image.commands
~~~~~~~~~~~~~~~~~~~~~~~

``python -m hardway layer …``: chapter 05 from the shell. Each verb is one function of
this part, with its options spelled as flags, and prints what a manifest needs to know
about the layer it wrote (:meth:`~hardway.image.layers.LayerInfo.to_json`)::

    layer create DIR -o FILE            a whole tree       (hardway.image.layers)
    layer diff LOWER UPPER -o FILE      what changed       (hardway.image.diff)
    layer overlay UPPER -o FILE         an overlayfs upper (hardway.image.overlay)
    layer apply ROOT LAYER…             unpack, safely     (hardway.image.apply)

>>> import argparse; parser = argparse.ArgumentParser(); register(parser.add_subparsers())
>>> parser.parse_args(["layer", "create", "rootfs", "-o", "l.tar"]).compression
'gzip'
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path

from hardway.image.apply import apply_layers
from hardway.image.compression import GZIP, NONE, ZSTD
from hardway.image.diff import diff_layer
from hardway.image.layers import write_layer
from hardway.image.overlay import overlay_layer
from hardway.sys.sizes import parse_size

__all__ = ["register"]


#: the verbs that write a layer: name, help, their path arguments, the function they call
_WRITERS = (
    ("create", "tar a directory into a layer", ("dir",), write_layer),
    ("diff", "the layer that turns LOWER into UPPER", ("lower", "upper"), diff_layer),
    ("overlay", "an overlayfs upper directory as an OCI layer", ("upper",), overlay_layer),
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``layer`` command and its verbs to ``sub`` (see :mod:`hardway.cli`)."""
    parser = sub.add_parser("layer", help="write layer tarballs (chapter 05)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, text, paths, write in _WRITERS:
        p = verbs.add_parser(name, help=text)
        for path in paths:
            p.add_argument(path, type=Path)
        p.add_argument("-o", "--output", type=Path, required=True, help="layer file to write")
        p.add_argument("--compression", choices=(GZIP, ZSTD, NONE), default=GZIP)
        p.add_argument("--level", type=int, help="compression level (default: a fast one)")
        p.add_argument("--implementation", choices=("isal", "zlib"), help="gzip library")
        p.add_argument("--source-date-epoch", type=int, help="clamp mtimes to this time")
        p.add_argument("--keep-owners", action="store_true", help="keep uids and gids")
        p.add_argument("--format", choices=("oci", "docker"), default="oci", help="mediaType")
        p.set_defaults(func=functools.partial(_report, write=write, paths=paths))
    apply = verbs.add_parser("apply", help="unpack layers, in order, into ROOT (safely)")
    apply.add_argument("root", type=Path)
    apply.add_argument("layers", type=Path, nargs="+")
    apply.add_argument(
        "--max-size",
        type=parse_size,
        help="refuse a layer that unpacks to more than this (e.g. 32G; default: "
        "$HARDWAY_MAX_LAYER_SIZE, else 100x the layer's size, at least 256M, at most 16G)",
    )
    apply.set_defaults(func=_apply)


def _report(args: argparse.Namespace, *, write: Callable, paths: tuple[str, ...]) -> int:
    """Write the layer with ``write``, the path arguments named ``paths``; print its info."""
    info = write(
        *(getattr(args, path) for path in paths),
        args.output,
        compression=args.compression,
        level=args.level,
        implementation=args.implementation,
        source_date_epoch=args.source_date_epoch,
        keep_owners=args.keep_owners,
    )
    print(json.dumps(info.to_json(args.format), indent=2))
    return 0


def _apply(args: argparse.Namespace) -> int:
    args.root.mkdir(parents=True, exist_ok=True)
    apply_layers(args.layers, args.root, max_size=args.max_size)
    return 0
