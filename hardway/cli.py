"""hardway.cli
~~~~~~~~~~~

``python -m hardway COMMAND …``. Each command lives in the module of its concept, which
contributes a sub-parser through a ``register(subparsers)`` function; this module only
assembles them and turns a :class:`~hardway.errors.HardwayError` into a one-paragraph
message (no traceback) and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hardway.errors import HardwayError

__all__ = ["main"]

#: modules that contribute commands, in the order ``--help`` lists them
COMMAND_MODULES = (
    "hardway.doctor",
    "hardway.local_registry",
    "hardway.labgen",
    "hardway.autograde",
    "hardway.rootfs",
    "hardway.runtime",
    "hardway.leftovers",
    "hardway.layers",
    "hardway.image_cli",
    "hardway.dockerbuild",
    "hardway.cache",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hardway",
        description="Containers the Hard Way: the course's helper commands.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HardwayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
