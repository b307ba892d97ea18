"""hardway.course.checks.lab04
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 04, a container runtime by hand. Fresh random inputs, compared with
:mod:`hardway.isolation.runtime` and :mod:`hardway.isolation.bundle` (what the course's own runtime
does):

* 04.1 ``command_line(entrypoint, cmd, override) -> list``: Docker's rule, a shell-form
  entrypoint too;
* 04.2 ``merge_env(image_env, overrides) -> list``: the image's ``Env`` plus ``-e``;
* 04.3 ``user_ids(user, passwd, group) -> (uid, gid)``: ``User`` against ``/etc`` text;
* 04.4 ``process_section(argv, env, cwd, uid, gid, capabilities, no_new_privs)``: the
  ``process`` object of an OCI ``config.json``.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from hardway.course.checks import fresh_rng
from hardway.course.grading import exercise, expect
from hardway.isolation import bundle, runtime
from hardway.sys import linux

__all__ = ["argv_built", "env_merged", "process_written", "users_resolved"]


def _word(rng: random.Random, size: int = 6) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(size))


@exercise(
    "04.1",
    points=2,
    hint="the Entrypoint always stays; an override replaces Cmd, no override means Cmd. A "
    "shell-form entrypoint ['/bin/sh', '-c', script] is no exception: Cmd or the override "
    "still follows it (as the script's $0 $1 …).",
)
def argv_built(command_line: Callable[..., list[str]]) -> None:
    """command_line follows Docker's rules for Entrypoint, Cmd and an override."""
    rng = fresh_rng()
    entry = [f"/{_word(rng)}", f"--{_word(rng, 3)}"]
    cmd, override = [_word(rng)], [_word(rng), _word(rng)]
    shell = ["/bin/sh", "-c", f"echo {_word(rng)} && {_word(rng)}"]
    cases = [
        (None, cmd, None),
        (None, cmd, override),
        (entry, cmd, None),
        (entry, cmd, override),
        (entry, None, None),
        (None, shell, None),
        (shell, cmd, None),
        (shell, cmd, override),
    ]
    for case in cases:
        got, want = command_line(*case), runtime.command_line(*case)
        expect(
            list(got) == want,
            f"command_line{case!r} is {got!r}, expected {want!r}",
        )


@exercise(
    "04.2",
    points=1,
    hint="read 'K=V' entries into a dict (split at the first '=' only), update it with the "
    "overrides, and write it back as 'K=V' strings — a dict keeps each name's first place.",
)
def env_merged(merge_env: Callable[..., list[str]]) -> None:
    """merge_env lists the image's Env with the overrides applied, as K=V entries."""
    rng = fresh_rng()
    names = [_word(rng, 4).upper() for _ in range(5)]
    image_env = [f"{name}={_word(rng)}" for name in names[:4]] + [f"URL=a=b{_word(rng, 2)}"]
    overrides = {names[1]: _word(rng), names[4]: _word(rng)}
    got = merge_env(list(image_env), dict(overrides))
    want = runtime.merge_env(image_env, overrides)
    expect(list(got) == want, f"merge_env({image_env!r}, {overrides!r}) is {got!r}, "
           f"expected {want!r}")  # fmt: skip
    expect(list(merge_env(image_env, {})) == image_env, "with no overrides, Env is unchanged")


@exercise(
    "04.3",
    points=2,
    hint="'' is root (0, 0); split at ':'; a number is a uid (its gid from passwd, else 0), "
    "a name is looked up in passwd (fields name:x:uid:gid:…); a group after ':' is a gid or "
    "a name from group (name:x:gid:…); raise an exception for an unknown name.",
)
def users_resolved(user_ids: Callable[[str, str, str], tuple[int, int]]) -> None:
    """user_ids resolves User ('name', 'uid', 'uid:gid', 'name:group') against /etc text."""
    rng = fresh_rng()
    name, other, group_name = _word(rng), _word(rng), _word(rng)
    uid, gid, other_uid, group_gid = rng.sample(range(100, 60000), 4)
    passwd = (
        "root:x:0:0:root:/root:/bin/sh\n"
        f"{name}:x:{uid}:{gid}:{name}:/home/{name}:/bin/sh\n"
        f"{other}:x:{other_uid}:{other_uid}::/:/bin/false\n"
    )
    group = f"root:x:0:\n{group_name}:x:{group_gid}:{name}\n"
    users = ["", "root", name, str(uid), f"{name}:{group_name}", f"{uid}:{group_gid}",
             str(rng.randint(60001, 65000)), f"{other}:{gid}"]  # fmt: skip
    for user in users:
        got, want = user_ids(user, passwd, group), runtime.user_ids(user, passwd, group)
        expect(tuple(got) == want, f"user_ids({user!r}, …) is {got!r}, expected {want!r}")
    for user in (f"ghost{uid}", f"{name}:nogroup{gid}"):
        try:
            got = user_ids(user, passwd, group)
        except NotImplementedError:
            raise
        except Exception:  # any exception will do
            continue
        expect(False, f"user_ids({user!r}, …) returned {got!r}; it should raise an exception")


@exercise(
    "04.4",
    points=2,
    hint="a dict with terminal (False), user {uid, gid, additionalGids: [gid]}, args, env "
    "as 'K=V' strings, cwd, capabilities {bounding, effective, permitted} each spelled "
    "'CAP_…', and noNewPrivileges.",
)
def process_written(process_section: Callable[..., dict]) -> None:
    """process_section writes the process object of an OCI config.json."""
    rng = fresh_rng()
    caps = rng.sample(linux.DOCKER_DEFAULT_CAPS, rng.randint(2, 6))
    args = (
        [_word(rng), f"--{_word(rng)}"],
        {"PATH": "/bin", _word(rng, 4).upper(): _word(rng)},
        f"/{_word(rng)}",
        rng.randint(1, 60000),
        rng.randint(1, 60000),
        caps,
        rng.choice([True, False]),
    )
    got = process_section(*args)
    want = bundle.process_section(*args)
    expect(isinstance(got, dict), f"process_section returned a {type(got).__name__}, not a dict")
    for key in want:
        expect(key in got, f"the process section has no {key!r}")
        expect(got[key] == want[key], f"{key!r} is {got[key]!r}, expected {want[key]!r}")
    extra = sorted(set(got) - set(want))
    expect(not extra, f"unexpected keys in the process section: {extra}")
