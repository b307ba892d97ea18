"""hardway.course.checks.lab10
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 10, Dockerfile the hard way. Every exercise is a pure function,
compared with hardway's own builder (:mod:`hardway.build.dockerfile`,
:mod:`hardway.build.runconfig`) on fresh random inputs every run:

* 10.1 ``logical_lines(text) -> [(line, text)]``: comments and blank lines dropped,
  continuation lines joined;
* 10.2 ``run_argv(args) -> list``: the exec form as it is, the shell form via ``/bin/sh -c``;
* 10.3 ``substitute(word, env) -> str``: ``$VAR``, ``${VAR}``, ``${VAR:-default}``;
* 10.4 ``cache_keys(base, steps) -> list``: a chain of cache keys, each from its parent;
* 10.5 ``apply_instruction(config, keyword, args) -> dict``: ``ENV``, ``WORKDIR``,
  ``USER``, ``EXPOSE``, ``CMD``, ``ENTRYPOINT`` on a config's ``config`` object.
"""

from __future__ import annotations

import copy
import json
import random
import string
from collections.abc import Callable
from typing import Any

from hardway.build import dockerfile as reference
from hardway.build.cache import key_of
from hardway.build.dockerfile import Instruction, command, expand, name_values
from hardway.build.runconfig import configured
from hardway.course.checks import fresh_rng
from hardway.course.grading import exercise, expect
from hardway.image.config import ContainerConfig

__all__ = [
    "config_applied",
    "forms_told_apart",
    "keys_chained",
    "lines_joined",
    "variables_substituted",
]


def _word(rng: random.Random, n: int = 5) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def _dockerfile(rng: random.Random) -> str:
    """A random Dockerfile: instructions, comments, blank lines, continuations."""
    lines = [f"FROM {_word(rng)}"]
    for _ in range(rng.randint(3, 7)):
        kind = rng.random()
        if kind < 0.2:
            lines.append(f"# {_word(rng)} {_word(rng)}")
        elif kind < 0.3:
            lines.append("")
        elif kind < 0.7:
            parts = [f"RUN {_word(rng)}"] + [f"{' ' * rng.randint(0, 4)}&& {_word(rng)}"
                                             for _ in range(rng.randint(1, 3))]  # fmt: skip
            body = []
            for i, part in enumerate(parts):
                body.append(part + (" \\" if i < len(parts) - 1 else ""))
                if i < len(parts) - 1 and rng.random() < 0.3:
                    body.append(rng.choice(["# inside", "", "  # indented"]))
            lines += body
        else:
            lines.append(f"ENV {_word(rng).upper()}={_word(rng)}")
    return "\n".join(lines) + "\n"


@exercise(
    "10.1",
    points=2,
    hint="go line by line and keep a list of pending pieces: skip lines that start with "
    "'#' (after spaces) and, inside a continuation, blank ones; a line ending in '\\' "
    "adds its text without the '\\' and waits for more; remember the number of the "
    "first line. Docker keeps the spaces of a continuation line.",
)
def lines_joined(logical_lines: Callable[[str], list]) -> None:
    """logical_lines(text) gives (first line number, joined text) per instruction."""
    rng = fresh_rng()
    for _ in range(5):
        text = _dockerfile(rng)
        want = reference.logical_lines(text)
        got = logical_lines(text)
        got = [tuple(item) for item in got] if isinstance(got, list) else got
        expect(got == want, f"for\n{text}\nlogical_lines should give {want},\nnot {got}")


@exercise(
    "10.2",
    points=1,
    hint="try json.loads: a list whose items are all strings is the exec form; anything "
    "else (not JSON, not a list, a number inside) is the shell form, run by /bin/sh -c.",
)
def forms_told_apart(run_argv: Callable[[str], list]) -> None:
    """run_argv(args) is the exec form's list, or ['/bin/sh', '-c', args]."""
    rng = fresh_rng()
    words = [_word(rng) for _ in range(3)]
    cases = [
        json.dumps(words),
        json.dumps([f"{words[0]} {words[1]}", "$HOME"]),
        f"{words[0]} $HOME && {words[1]}",
        f"[{words[0]}, {words[1]}]",
        json.dumps([words[0], rng.randint(1, 9)]),
        f"echo [{words[2]}]",
    ]
    rng.shuffle(cases)
    for args in cases:
        want = list(command(args))
        got = run_argv(args)
        expect(list(got) == want, f"run_argv({args!r}) should be {want}, not {got!r}")


@exercise(
    "10.3",
    points=2,
    hint="scan the word; at '$' read either a name ([A-Za-z_][A-Za-z0-9_]*) or '{' up "
    "to '}'. Inside braces, 'NAME:-default' uses the default when NAME is unset or "
    "empty. An unset variable becomes ''.",
)
def variables_substituted(substitute: Callable[[str, dict], str]) -> None:
    """substitute(word, env) replaces $VAR, ${VAR} and ${VAR:-default}."""
    rng = fresh_rng()
    env = {_word(rng).upper(): _word(rng) for _ in range(3)}
    env["EMPTY"] = ""
    names = [*env, "UNSET_" + _word(rng).upper()]
    for _ in range(6):
        parts = []
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(names)
            form = rng.choice(["$N", "${N}", "${N:-D}", "/x/${N}.y", "$N/z"])
            parts.append(form.replace("N", name).replace("D", _word(rng, 3)))
        word = rng.choice(["", "a-", "/"]) + "".join(parts)
        want = expand(word, env)
        got = substitute(word, dict(env))
        expect(got == want, f"substitute({word!r}, {env}) should be {want!r}, not {got!r}")


@exercise(
    "10.4",
    points=1,
    hint="walk the steps in order with a variable 'parent' that starts as base; each "
    "step's key is key_of({'parent': parent, 'step': step}) and becomes the next parent.",
)
def keys_chained(cache_keys: Callable[[str, list], list]) -> None:
    """cache_keys(base, steps) chains key_of({'parent': …, 'step': …}) along the steps."""
    rng = fresh_rng()
    base = f"sha256:{rng.getrandbits(256):064x}"
    steps = [f"/bin/sh -c #(nop)  ENV {_word(rng).upper()}={_word(rng)}" for _ in range(3)]
    steps.insert(rng.randint(0, 3), f"/bin/sh -c {_word(rng)} > /{_word(rng)}")
    want, parent = [], base
    for step in steps:
        parent = key_of({"parent": parent, "step": step})
        want.append(parent)
    got = cache_keys(base, list(steps))
    expect(list(got) == want, f"cache_keys({base[:15]}…, {steps}) should be {want}, not {got}")
    swapped = [steps[1], steps[0], *steps[2:]]
    again = cache_keys(base, swapped)
    expect(
        list(again)[2:] != want[2:],
        "after swapping two steps, the keys of the steps after them must change too: "
        "each key includes its parent",
    )


def _config(rng: random.Random) -> dict[str, Any]:
    return {
        "Env": ["PATH=/usr/bin:/bin", f"{_word(rng).upper()}={_word(rng)}"],
        "Cmd": ["/bin/sh"],
        "WorkingDir": rng.choice(["", "/srv"]),
    }


def _reference(config: dict[str, Any], keyword: str, args: str) -> dict[str, Any]:
    pairs = name_values(Instruction(keyword, args, 1), {}) if keyword == "ENV" else ()
    run, _ = configured(ContainerConfig.from_dict(config), keyword, args, pairs=pairs)
    return run.to_dict()


@exercise(
    "10.5",
    points=2,
    hint="ENV NAME=value replaces NAME's entry in place or appends it; WORKDIR joins a "
    "relative path to the old WorkingDir, or to / if there is none (os.path.join + "
    "normpath); EXPOSE adds '/tcp' "
    "when no protocol is given; CMD/ENTRYPOINT: the exec form or ['/bin/sh', '-c', "
    "args]; a new ENTRYPOINT removes the Cmd. Return a new dict.",
)
def config_applied(apply_instruction: Callable[[dict, str, str], dict]) -> None:
    """apply_instruction(config, keyword, args) changes the config as Docker's builder does."""
    rng = fresh_rng()
    key = _config(rng)["Env"][1].split("=")[0]
    cases = [
        ("ENV", f"{key}={_word(rng)}"),
        ("ENV", f"{_word(rng).upper()}={_word(rng)}"),
        ("WORKDIR", f"/{_word(rng)}"),
        ("WORKDIR", f"{_word(rng)}/{_word(rng)}"),
        ("USER", f"{rng.randint(1, 9999)}:{rng.randint(1, 99)}"),
        ("EXPOSE", f"{rng.randint(1, 65535)}"),
        ("EXPOSE", f"{rng.randint(1, 65535)}/udp"),
        ("CMD", json.dumps([_word(rng), _word(rng)])),
        ("CMD", f"{_word(rng)} $HOME"),
        ("ENTRYPOINT", json.dumps([_word(rng)])),
        ("ENTRYPOINT", f"{_word(rng)} -v"),
    ]
    rng.shuffle(cases)
    for keyword, args in cases:
        config = _config(rng)
        before = copy.deepcopy(config)
        want = _reference(config, keyword, args)
        got = apply_instruction(config, keyword, args)
        expect(config == before, "apply_instruction must not change the config it is given")
        expect(isinstance(got, dict), f"apply_instruction should return a dict, not {got!r:.40}")
        got = ContainerConfig.from_dict(got).to_dict()  # the same wire form for both
        expect(
            got == want,
            f"{keyword} {args} on {before}\nshould give {want},\nnot {got}",
        )
