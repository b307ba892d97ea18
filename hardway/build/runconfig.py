"""hardway.build.runconfig
~~~~~~~~~~~~~~~~~~~~~~~~

What the config-only instructions of a Dockerfile — ``ENV``, ``LABEL``, ``WORKDIR``,
``USER``, ``EXPOSE``, ``CMD``, ``ENTRYPOINT``, ``VOLUME``, ``STOPSIGNAL``,
``HEALTHCHECK``, ``SHELL``, ``ONBUILD`` — do to an image's run settings (the ``config``
part of its config: :class:`~hardway.image.config.ContainerConfig`). They touch no file;
each makes a new config, so a new image ID, and a history entry marked ``empty_layer``.
(``WORKDIR`` also makes its directory, as a filesystem step.) Lab 10's checks compare
learners' answers with :func:`configured`.

Where Docker writes them: ``Volumes`` (a set: ``{"/data": {}}``) and ``StopSignal`` are
fields of the OCI image config's ``config``. ``Healthcheck``, ``Shell`` and ``OnBuild``
are not in the OCI spec: Docker writes them into the same ``config`` object anyway
(moby's "Docker OCI image config" extension; BuildKit does so for OCI and Docker media
types alike), and so do we. ``Healthcheck`` durations are integers in nanoseconds, a
zero one left out; ``HEALTHCHECK NONE`` is ``{"Test": ["NONE"]}``. ``OnBuild`` keeps each
trigger as written after ``ONBUILD``; a child image runs them right after its ``FROM``
and clears the list (:mod:`hardway.build.executor`). buildah writes these three only in
its ``docker`` format and drops them, with a warning, in OCI.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from hardway.build.dockerfile import DEFAULT_SHELL, exec_form, split_words
from hardway.errors import DockerfileError
from hardway.image.config import ContainerConfig

__all__ = [
    "DEFAULT_PATH",
    "argv_of",
    "configured",
    "duration",
    "from_base",
    "healthcheck",
    "join_workdir",
    "shell_of",
]

#: the ``PATH`` a build gives an image whose base has none (``scratch`` too), as Docker does
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: ``HEALTHCHECK`` options and the key Docker writes each under
_HEALTH_DURATIONS = {
    "interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
    "start-interval": "StartInterval",
}  # fmt: skip
_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9}  # fmt: skip


def configured(
    run: ContainerConfig,
    keyword: str,
    text: str,
    *,
    pairs: Sequence[tuple[str, str]] = (),
    cmd_set: bool = False,
    flags: Mapping[str, str] | None = None,
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
    extra = dict(run.extra)
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
        changes["cmd"] = argv_of(text, shell_of(run))
        cmd_set = True
    elif keyword == "ENTRYPOINT":
        changes["entrypoint"] = argv_of(text, shell_of(run))
        if not cmd_set:  # Docker: a new ENTRYPOINT drops the base image's CMD
            changes["cmd"] = None
    elif keyword == "VOLUME":
        form = exec_form(text)
        changes["volumes"] = (*run.volumes, *(split_words(text) if form is None else form))
    elif keyword == "STOPSIGNAL":
        changes["stop_signal"] = text
    elif keyword == "HEALTHCHECK":
        extra["Healthcheck"] = healthcheck(text, flags or {})
    elif keyword == "SHELL":
        form = exec_form(text)
        if not form:
            raise DockerfileError('SHELL takes the exec form, e.g. SHELL ["/bin/bash", "-c"]')
        extra["Shell"] = list(form)
    elif keyword == "ONBUILD":
        extra["OnBuild"] = [*(run.extra.get("OnBuild") or ()), text]
    return replace(run, **changes, extra=extra), cmd_set


def from_base(run: ContainerConfig) -> ContainerConfig:
    """The run settings a stage starts from after ``FROM``: the base image's, with its
    ``OnBuild`` triggers dropped (they fire in this build, and only here) and a ``PATH``
    if it had none — BuildKit's rule ("make sure that PATH is always set"), which
    buildah follows too.

    >>> from_base(ContainerConfig(extra={"OnBuild": ["RUN x"]}))
    ContainerConfig(user='', exposed_ports=(), env=('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',), entrypoint=None, cmd=None, volumes=(), working_dir='', labels={}, stop_signal='', extra={})
    """  # noqa: E501
    extra = {k: v for k, v in run.extra.items() if k != "OnBuild"}
    env = run.env if "PATH" in run.env_dict() else (*run.env, f"PATH={DEFAULT_PATH}")
    return replace(run, env=env, extra=extra)


def shell_of(run: ContainerConfig) -> tuple[str, ...]:
    """The shell of shell-form commands: ``SHELL``'s, else ``/bin/sh -c``."""
    return tuple(run.extra.get("Shell") or DEFAULT_SHELL)


def duration(text: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds, as Docker reads
    ``HEALTHCHECK --interval``.

    >>> duration("1m30s"), duration("500ms"), duration("0")
    (90000000000, 500000000, 0)
    """
    if text == "0":
        return 0
    parts = re.findall(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise DockerfileError(f"{text!r} is not a duration", fix="write e.g. 30s, 1m30s or 500ms")
    return round(sum(float(number) * _UNITS[unit] for number, unit in parts))


def healthcheck(text: str, flags: Mapping[str, str]) -> dict[str, Any]:
    """``HEALTHCHECK``'s config, as Docker writes it: ``NONE``, or ``CMD`` and a command
    (``CMD-SHELL`` for the shell form), durations in nanoseconds, zero ones left out.

    >>> healthcheck("CMD wget -q localhost", {"interval": "30s", "retries": "3"})
    {'Test': ['CMD-SHELL', 'wget -q localhost'], 'Interval': 30000000000, 'Retries': 3}
    >>> healthcheck("NONE", {}), healthcheck('CMD ["true"]', {})["Test"]
    ({'Test': ['NONE']}, ['CMD', 'true'])
    """
    word, _, rest = text.partition(" ")
    if word.upper() == "NONE" and not rest.strip():
        if flags:
            raise DockerfileError("HEALTHCHECK NONE takes no options")
        return {"Test": ["NONE"]}
    rest = rest.strip()
    if word.upper() != "CMD" or not rest:
        raise DockerfileError("HEALTHCHECK takes NONE or CMD command", fix="HEALTHCHECK CMD true")
    form = exec_form(rest)
    check: dict[str, Any] = {"Test": ["CMD-SHELL", rest] if form is None else ["CMD", *form]}
    for flag, key in _HEALTH_DURATIONS.items():
        value = duration(flags.get(flag, "0"))
        if 0 < value < 10**6:
            raise DockerfileError(f"HEALTHCHECK --{flag} cannot be less than 1ms")
        if value:
            check[key] = value
    retries = flags.get("retries", "0")
    if not retries.isdigit():
        raise DockerfileError(f"HEALTHCHECK --retries={retries}: not a whole number")
    if int(retries):
        check["Retries"] = int(retries)
    return check


def argv_of(text: str, shell: Sequence[str] = DEFAULT_SHELL) -> tuple[str, ...] | None:
    """``CMD``/``ENTRYPOINT``'s argv: the exec form, ``[]`` clearing it, or the shell form
    (run by *shell*).

    >>> argv_of('["top"]'), argv_of("[]"), argv_of("top -b")
    (('top',), None, ('/bin/sh', '-c', 'top -b'))
    """
    form = exec_form(text)
    if form is None:
        return (*shell, text)
    return form or None


def join_workdir(current: str, path: str) -> str:
    """``WORKDIR`` is relative to the previous one (a path *in the image*: its links are
    the concern of :mod:`hardway.build.inroot`, when the directory is made).

    >>> join_workdir("/app", "src"), join_workdir("/app", "/srv/"), join_workdir("", "x")
    ('/app/src', '/srv', '/x')
    """
    return os.path.normpath(os.path.join(current or "/", path))
