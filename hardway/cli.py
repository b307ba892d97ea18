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

#: the module each command comes from, in the order ``--help`` lists them: running a
#: command imports only its module (importing them all costs ~0.15 s per command), and
#: tests/test_cli.py checks that every module's commands are here
COMMAND_HOMES = {
    "doctor": "hardway.course.doctor",
    "registry": "hardway.course.seed",
    "labs": "hardway.course.labgen",
    "grade": "hardway.course.autograde",
    "rootfs": "hardway.isolation.rootfs",
    "run": "hardway.isolation.runtime",
    "cleanup": "hardway.course.cleanup",
    "layer": "hardway.image.commands",
    **dict.fromkeys(
        ("image", "copy", "unpack", "pull", "inspect", "delete", "login", "logout"),
        "hardway.distribution.commands",
    ),
    "build": "hardway.build.dockerbuild",
    "cache": "hardway.build.cache",
}

#: modules that contribute commands (derived, so the two can never disagree)
COMMAND_MODULES = tuple(dict.fromkeys(COMMAND_HOMES.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of ``command`` when its module is known."""
    parser = argparse.ArgumentParser(
        prog="python -m hardway",
        description="Containers the Hard Way: the course's helper commands.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    home = COMMAND_HOMES.get(command or "")
    for name in (home,) if home else COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HardwayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
