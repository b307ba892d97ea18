"""hardway.build.runconfig
~~~~~~~~~~~~~~~~~~~~~~~~

What the config-only instructions of a Dockerfile — ``ENV``, ``LABEL``, ``WORKDIR``,
``USER``, ``EXPOSE``, ``CMD``, ``ENTRYPOINT`` — do to an image's run settings (the
``config`` part of its config: :class:`~hardway.image.config.ContainerConfig`). They
touch no file; each makes a new config, so a new image ID, and a history entry marked
``empty_layer``. (``WORKDIR`` also makes its directory, as a filesystem step.)
Lab 10's checks compare learners' answers with :func:`configured`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from hardway.build.dockerfile import exec_form
from hardway.image.config import ContainerConfig

__all__ = ["argv_of", "configured", "join_workdir"]


def configured(
    run: ContainerConfig,
    keyword: str,
    text: str,
    *,
    pairs: Sequence[tuple[str, str]] = (),
    cmd_set: bool = False,
) -> tuple[ContainerConfig, bool]:
    """The run settings after one config instruction, and whether ``Cmd`` is now set by
    this stage (*text* is substituted already; *pairs* are ``ENV``/``LABEL``'s).

    ``ENV`` replaces a name in place or appends it; ``WORKDIR`` is relative to the last
    one; ``EXPOSE 80`` means ``80/tcp``; ``CMD``/``ENTRYPOINT`` take the exec or the shell
    form; a new ``ENTRYPOINT`` drops a ``Cmd`` inherited from the base image.

    >>> run, _ = configured(ContainerConfig(cmd=("sh",)), "ENTRYPOINT", '["top"]')
    >>> run.entrypoint, run.cmd
    (('top',), None)
    >>> pairs = [("A", "2"), ("B", "3")]
    >>> configured(ContainerConfig(env=("A=1",)), "ENV", "A=2 B=3", pairs=pairs)[0].env
    ('A=2', 'B=3')
    """
    from hardway.isolation.runtime import merge_env

    changes: dict[str, Any] = {}
    if keyword == "ENV":
        changes["env"] = tuple(merge_env(run.env, dict(pairs)))
    elif keyword == "LABEL":
        changes["labels"] = {**run.labels, **dict(pairs)}
    elif keyword == "WORKDIR":
        changes["working_dir"] = join_workdir(run.working_dir, text)
    elif keyword == "USER":
        changes["user"] = text
    elif keyword == "EXPOSE":
        ports = [p if "/" in p else f"{p}/tcp" for p in text.split()]
        changes["exposed_ports"] = (*run.exposed_ports, *ports)
    elif keyword == "CMD":
        changes["cmd"] = argv_of(text)
        cmd_set = True
    elif keyword == "ENTRYPOINT":
        changes["entrypoint"] = argv_of(text)
        if not cmd_set:  # Docker: a new ENTRYPOINT drops the base image's CMD
            changes["cmd"] = None
    return replace(run, **changes), cmd_set


def argv_of(text: str) -> tuple[str, ...] | None:
    """``CMD``/``ENTRYPOINT``'s argv: the exec form, ``[]`` clearing it, or the shell form.

    >>> argv_of('["top"]'), argv_of("[]"), argv_of("top -b")
    (('top',), None, ('/bin/sh', '-c', 'top -b'))
    """
    form = exec_form(text)
    if form is None:
        return ("/bin/sh", "-c", text)
    return form or None


def join_workdir(current: str, path: str) -> str:
    """``WORKDIR`` is relative to the previous one (a path *in the image*: its links are
    the concern of :mod:`hardway.build.inroot`, when the directory is made).

    >>> join_workdir("/app", "src"), join_workdir("/app", "/srv/"), join_workdir("", "x")
    ('/app/src', '/srv', '/x')
    """
    return os.path.normpath(os.path.join(current or "/", path))
