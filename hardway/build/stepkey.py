"""hardway.build.stepkey
~~~~~~~~~~~~~~~~~~~~~

A Dockerfile step's history text and cache key, Docker's rule. The key of a step is its
*parent* (the image ID after the step before), its history text — the instruction after
``ARG``/``ENV`` substitution, as ``docker history`` shows it — and, for ``COPY``, the
content hash of every file copied (:func:`hardway.build.copyplan.copy_content`). Nothing
else: not the time, not the machine. A key seen before gives the stored result without
running anything; since every key contains its parent, the first miss runs that step and
all the steps after it. Hence "frequently changing steps go last".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hardway.build.cache import key_of
from hardway.build.dockerfile import Instruction, command, expand
from hardway.image.digest import Digest

__all__ = ["NOP", "copy_created_by", "created_by", "step_key"]

#: how ``created_by`` spells an instruction that only changes the config, as Docker does
NOP = "/bin/sh -c #(nop) "


def created_by(
    inst: Instruction,
    text: str,
    args: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
) -> str:
    """The history text of a step, Docker-style; it is also what its cache key hashes.

    ``RUN`` shows its command, *argv* if given (``SHELL``, heredocs), prefixed
    ``|N K=V`` by the build arguments in scope (whose values change what it does);
    everything else is ``/bin/sh -c #(nop)`` and the
    instruction with its variables replaced.

    >>> created_by(Instruction("RUN", "echo hi", 1), "echo hi", {"V": "1"})
    '|1 V=1 /bin/sh -c echo hi'
    >>> created_by(Instruction("ENV", "A=$B", 1), "A=2")
    '/bin/sh -c #(nop)  ENV A=2'
    """
    if inst.keyword == "RUN":
        line = " ".join(argv if argv is not None else command(text))
        if args:
            pairs = " ".join(f"{k}={v}" for k, v in sorted(args.items()))
            line = f"|{len(args)} {pairs} {line}"
        return line
    flags = "".join(f"--{k}={v} " for k, v in inst.flags.items())
    return f"{NOP} {inst.keyword} {flags}{text}"


def copy_created_by(inst: Instruction, content: str, dest: str, env: Mapping[str, str]) -> str:
    """The history text of a ``COPY`` (or ``ADD``): its ``--chown``/``--chmod`` as they will
    act (so a changed ``ARG`` behind them changes the key), the hash of what it copies,
    and where to.

    >>> inst = Instruction("COPY", "a /b/", 1, {"chown": "$ID"})
    >>> copy_created_by(inst, "file:9f86d0", "/b/", {"ID": "1000"})
    '/bin/sh -c #(nop) COPY --chown=1000 file:9f86d0 in /b/ '
    """
    flags = "".join(f"--{k}={expand(v, env)} " for k, v in inst.flags.items() if k != "from")
    return f"{NOP}{inst.keyword} {flags}{content} in {dest} "


def step_key(parent: Digest | str, history: str, content: str = "") -> str:
    """A step's cache key: its parent image ID, its history text and (for ``COPY``) the
    hash of what it copies. Anything else — the time, the machine — is left out.

    >>> step_key("sha256:aa", "/bin/sh -c echo") == step_key("sha256:aa", "/bin/sh -c echo")
    True
    >>> step_key("sha256:aa", "x") == step_key("sha256:bb", "x")
    False
    """
    return key_of({"parent": str(parent), "step": history, "content": content})
