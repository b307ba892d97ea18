"""hardway.build.dockerfile
~~~~~~~~~~~~~~~~~~~~~~~~

A Dockerfile is a list of *instructions*, one per logical line: a keyword and its
arguments. Before a builder can do anything it has to read them the way Docker does:

* parser directives (``# syntax=…``, ``# escape=…``) only at the very top;
* a line ending in the escape character (``\\``) continues on the next one, and comment
  lines and blank lines inside a continuation are dropped;
* ``RUN``, ``CMD`` and ``ENTRYPOINT`` have two forms: the *exec form* is a JSON list
  (``["python3", "-m", "http.server"]``) run as it is, the *shell form* is a string run
  by ``/bin/sh -c``;
* ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` are replaced by the builder itself in
  ``FROM``, ``COPY``, ``ENV``, ``ARG``, ``LABEL``, ``EXPOSE``, ``USER`` and ``WORKDIR``,
  never in ``RUN``/``CMD``/``ENTRYPOINT`` (there the shell, if any, does it);
* ``FROM`` starts a *stage*; ``ARG`` before the first ``FROM`` is only for ``FROM`` lines;
* ``RUN``, ``COPY`` and ``ADD`` take *heredocs* (Dockerfile syntax 1.4): ``<<EOF`` on the
  instruction's line, then the document's lines up to a line ``EOF``. ``<<-EOF`` strips
  leading tabs (from the document and the closing line); ``<<"EOF"`` or ``<<'EOF'``
  turns off variable substitution in a ``COPY`` document (:class:`Heredoc`).

Everything here is a pure function of the text: :func:`parse` gives a
:class:`Dockerfile` of :class:`Stage` s of :class:`Instruction` s, and
:mod:`hardway.build.dockerbuild` executes them. Anything outside the subset this course
builds raises :class:`~hardway.errors.DockerfileError` naming the file and line.

>>> df = parse("FROM busybox AS build\\nRUN echo hi \\\\\\n  there\\nCMD [\\"sh\\"]\\n")
>>> [(i.line, i.keyword, i.args) for i in df.stages[0].instructions]
[(2, 'RUN', 'echo hi   there'), (4, 'CMD', '["sh"]')]
>>> df.stages[0].name, exec_form('["sh", "-c", "x"]'), exec_form("echo hi")
('build', ('sh', '-c', 'x'), None)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hardway.errors import DockerfileError

__all__ = [
    "DEFAULT_SHELL",
    "HEREDOC",
    "SUPPORTED",
    "Dockerfile",
    "Heredoc",
    "Instruction",
    "Stage",
    "command",
    "exec_form",
    "expand",
    "instructions_text",
    "logical_lines",
    "name_values",
    "parse",
    "split_words",
    "substitute",
]

#: the instructions this course's builder executes
SUPPORTED = (
    "FROM", "COPY", "ADD", "RUN", "ENV", "WORKDIR", "USER", "LABEL", "EXPOSE",
    "ENTRYPOINT", "CMD", "ARG", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "ONBUILD",
)  # fmt: skip
#: Docker instructions it knows but does not execute, and what to do instead
UNSUPPORTED = {
    "MAINTAINER": "deprecated by Docker; use LABEL maintainer=…",
}
#: the flags each instruction accepts (``--from=build``)
FLAGS = {
    "COPY": ("from", "chown", "chmod"),
    "ADD": ("chown", "chmod"),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries"),
}
#: the instructions that take heredocs, as in Docker's frontend
HEREDOC_KEYWORDS = ("RUN", "COPY", "ADD")
#: what ``ONBUILD`` may not wrap (Docker's rule)
NOT_ONBUILD = ("ONBUILD", "FROM", "MAINTAINER")
#: a heredoc word: ``<<EOF``, ``<<-EOF``, ``<<"EOF"``, ``2<<EOF`` — a word of its own, so
#: that ``$((1<<2))`` or ``<<<`` is not one
HEREDOC = re.compile(
    r"(?:(?<=\s)|^)\d*<<(-?)(?:\"([^\"\s]+)\"|'([^'\s]+)'|([A-Za-z0-9_.\-]+))(?=[\s>|;&)]|$)"
)
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")


@dataclass(frozen=True)
class Heredoc:
    """One here-document: its delimiter (``COPY <<EOF /x`` names the file ``EOF``), its
    lines as written, ``<<-`` (*chomp*: leading tabs go) and whether its delimiter was
    unquoted (*expand*: ``COPY`` replaces ``$VAR`` in it).

    >>> Heredoc("EOF", "\\tx=1\\n", chomp=True).text
    'x=1\\n'
    """

    name: str
    content: str
    chomp: bool = False
    expand: bool = True

    @property
    def text(self) -> str:
        """The document as Docker uses it (leading tabs stripped for ``<<-``)."""
        if not self.chomp:
            return self.content
        return "".join(line.lstrip("\t") for line in self.content.splitlines(keepends=True))


@dataclass(frozen=True)
class Instruction:
    """One instruction: ``keyword`` upper-cased, ``args`` the rest of its logical line
    (continuations joined), ``flags`` its ``--name=value`` options, ``line`` where it
    starts (1-based) — what every error message points at."""

    keyword: str
    args: str
    line: int
    flags: Mapping[str, str] = field(default_factory=dict)
    original: str = ""
    heredocs: tuple[Heredoc, ...] = ()

    def __str__(self) -> str:
        flags = "".join(f"--{k}={v} " for k, v in self.flags.items())
        return f"{self.keyword} {flags}{self.args}".rstrip()


@dataclass(frozen=True)
class Stage:
    """``FROM base [AS name]`` and the instructions up to the next ``FROM``."""

    base: str
    name: str | None
    line: int
    instructions: tuple[Instruction, ...] = ()


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: the global ``ARG`` s (before the first ``FROM``) and the stages."""

    args: tuple[Instruction, ...]
    stages: tuple[Stage, ...]
    path: str = "Dockerfile"

    def stage(self, target: str | None) -> int:
        """The index of stage *target* (a name or a number; ``None``: the last one)."""
        if target is None:
            return len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if stage.name == target.lower() or str(i) == target:
                return i
        names = [s.name or str(i) for i, s in enumerate(self.stages)]
        raise DockerfileError(
            f"{self.path}: no stage named {target!r} (stages: {', '.join(names)})", path=self.path
        )


def _error(path: str, line: int, message: str, fix: str | None = None) -> DockerfileError:
    return DockerfileError(f"{path}, line {line}: {message}", fix=fix, path=path, line=line)


def _directives(lines: Sequence[str], path: str) -> tuple[dict[str, str], int]:
    """The parser directives at the top, and how many lines they take."""
    found: dict[str, str] = {}
    for number, text in enumerate(lines):
        match = _DIRECTIVE.match(text.strip())
        if not match or match.group(1).lower() not in _KNOWN_DIRECTIVES:
            return found, number
        name = match.group(1).lower()
        if name in found:
            raise _error(path, number + 1, f"the parser directive {name!r} is given twice")
        found[name] = match.group(2)
    return found, len(lines)


def logical_lines(text: str, path: str = "Dockerfile") -> list[tuple[int, str]]:
    """``(first line number, text)`` of each instruction: directives, comments and blank
    lines dropped, continuation lines joined (the escape character removed), heredoc
    documents left out (:func:`instructions_text` has them).

    >>> logical_lines("# syntax=docker/dockerfile:1\\nFROM a\\n\\nRUN x \\\\\\n# note\\n  y\\n")
    [(2, 'FROM a'), (4, 'RUN x   y')]
    >>> logical_lines("# escape=`\\nRUN a `\\n b")
    [(2, 'RUN a  b')]
    """
    return [(number, line) for number, line, _ in instructions_text(text, path)]


def instructions_text(
    text: str, path: str = "Dockerfile"
) -> list[tuple[int, str, tuple[Heredoc, ...]]]:
    """:func:`logical_lines` with each instruction's heredocs: after a ``RUN``, ``COPY``
    or ``ADD`` line naming ``<<EOF``, the lines up to ``EOF`` are its document.

    >>> instructions_text("RUN <<EOF\\necho hi\\nEOF\\nCMD x\\n")
    [(1, 'RUN <<EOF', (Heredoc(name='EOF', content='echo hi\\n', chomp=False, expand=True),)), (4, 'CMD x', ())]
    """  # noqa: E501
    lines = text.splitlines()
    directives, start = _directives(lines, path)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise _error(path, 1, f"the escape character must be \\ or `, not {escape!r}")
    continued = re.compile(re.escape(escape) + r"[ \t]*$")
    result: list[tuple[int, str, tuple[Heredoc, ...]]] = []
    pending: list[str] = []
    first, number = 0, start
    while number < len(lines):
        raw = lines[number]
        number += 1
        stripped = raw.strip()
        if stripped.startswith("#") or (pending and not stripped):
            continue  # a comment, or a blank line inside a continuation
        if not pending:
            if not stripped:
                continue
            first, raw = number, raw.lstrip()
        body, ends = continued.subn("", raw)
        pending.append(body)  # Docker keeps a continuation line's leading blanks
        if not ends:
            line = "".join(pending).strip()
            docs, number = _heredocs(line, lines, number, path, first)
            result.append((first, line, docs))
            pending = []
    if pending:
        result.append((first, "".join(pending).strip(), ()))
    return result


def heredoc_word(word: str) -> str | None:
    """The delimiter if *word* opens a heredoc (``<<EOF``, ``<<-"EOF"``), else ``None``.

    >>> heredoc_word("<<-'EOF'"), heredoc_word("$((1<<2))")
    ('EOF', None)
    """
    match = HEREDOC.fullmatch(word)
    return next(g for g in match.groups()[1:] if g) if match else None


def _heredocs(
    line: str, lines: Sequence[str], number: int, path: str, first: int
) -> tuple[tuple[Heredoc, ...], int]:
    """The documents *line* opens, read from ``lines[number:]``, and the line after them."""
    if not line or line.split(None, 1)[0].upper() not in HEREDOC_KEYWORDS:
        return (), number
    docs = []
    for match in HEREDOC.finditer(line):
        chomp, name = match.group(1) == "-", next(g for g in match.groups()[1:] if g)
        content: list[str] = []
        while True:
            if number >= len(lines):
                raise _error(path, first, f"the heredoc <<{name} has no closing line {name!r}")
            text, number = lines[number], number + 1
            if (text.lstrip("\t") if chomp else text) == name:
                break
            content.append(text + "\n")
        docs.append(Heredoc(name, "".join(content), chomp, match.group(4) is not None))
    return tuple(docs), number


def _first_word(text: str) -> tuple[str, str]:
    """Split off the first word at any run of blanks (a tab too, as Docker does).

    >>> _first_word("RUN\techo  hi")
    ('RUN', 'echo  hi')
    """
    word, *rest = text.split(None, 1)
    return word, rest[0].strip() if rest else ""


def _instruction(
    number: int, text: str, path: str, heredocs: tuple[Heredoc, ...] = ()
) -> Instruction:
    keyword, rest = _first_word(text)
    keyword = keyword.upper()
    if keyword in UNSUPPORTED:
        raise _error(
            path, number, f"{keyword} is not supported by this builder", UNSUPPORTED[keyword]
        )
    if keyword not in SUPPORTED:
        raise _error(
            path,
            number,
            f"unknown instruction {keyword!r}",
            fix=f"use one of {', '.join(SUPPORTED)}",
        )
    if keyword == "ONBUILD":
        trigger = _instruction(number, rest, path) if rest else None
        if trigger is not None and trigger.keyword in NOT_ONBUILD:
            raise _error(path, number, f"ONBUILD {trigger.keyword} is not allowed (Docker's rule)")
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        word, rest = _first_word(rest)
        name, eq, value = word[2:].partition("=")
        if name not in FLAGS.get(keyword, ()) or not eq:
            allowed = ", ".join(f"--{f}=…" for f in FLAGS.get(keyword, ())) or "no flags"
            raise _error(path, number, f"{keyword} does not support {word!r} here ({allowed})")
        flags[name] = value
        rest = rest.strip()
    if not rest:
        raise _error(path, number, f"{keyword} needs arguments")
    return Instruction(keyword, rest, number, flags, text, heredocs)


def _from(inst: Instruction, path: str) -> Stage:
    words = inst.args.split()
    if len(words) == 3 and words[1].lower() == "as" and re.fullmatch(r"[a-zA-Z][\w.-]*", words[2]):
        return Stage(words[0], words[2].lower(), inst.line)
    if len(words) == 1:
        return Stage(words[0], None, inst.line)
    raise _error(
        path, inst.line, f"FROM takes an image and optionally 'AS name', not {inst.args!r}"
    )


def parse(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile's *text*; *path* is only for messages."""
    args: list[Instruction] = []
    stages: list[Stage] = []
    body: list[Instruction] = []
    for number, line, heredocs in instructions_text(text, path):
        inst = _instruction(number, line, path, heredocs)
        if inst.keyword == "FROM":
            if stages:
                stages[-1] = Stage(stages[-1].base, stages[-1].name, stages[-1].line, tuple(body))
            stages.append(_from(inst, path))
            body = []
        elif not stages:
            if inst.keyword != "ARG":
                raise _error(
                    path, number, f"{inst.keyword} before the first FROM", "start with FROM"
                )
            args.append(inst)
        else:
            body.append(inst)
    if not stages:
        raise _error(path, 1, "no FROM instruction", fix="start the Dockerfile with FROM image")
    stages[-1] = Stage(stages[-1].base, stages[-1].name, stages[-1].line, tuple(body))
    names = [s.name for s in stages if s.name]
    if len(names) != len(set(names)):
        raise DockerfileError(f"{path}: two stages have the same name", path=path)
    return Dockerfile(tuple(args), tuple(stages), path)


# -- forms, words and variables ------------------------------------------------------------


def exec_form(args: str) -> tuple[str, ...] | None:
    """The JSON list of an exec-form instruction, or ``None`` for the shell form.

    Docker's rule: if the arguments parse as a JSON array of strings they are the exec
    form; anything else, even ``[sh, -c]`` (not JSON), is the shell form.
    """
    if not args.startswith("["):
        return None
    try:
        value = json.loads(args)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


#: the shell of shell-form commands until a ``SHELL`` instruction changes it
DEFAULT_SHELL = ("/bin/sh", "-c")


def command(args: str, shell: Sequence[str] = DEFAULT_SHELL) -> tuple[str, ...]:
    """What a ``RUN`` executes: the exec form as it is, the shell form via *shell*
    (``/bin/sh -c``, or what ``SHELL`` set).

    >>> command('["echo", "$HOME"]'), command("echo $HOME")
    (('echo', '$HOME'), ('/bin/sh', '-c', 'echo $HOME'))
    >>> command("echo hi", ["/bin/bash", "-eo", "pipefail", "-c"])
    ('/bin/bash', '-eo', 'pipefail', '-c', 'echo hi')
    """
    form = exec_form(args)
    return form if form is not None else (*shell, args)


def split_words(text: str) -> list[str]:
    """Split on unquoted whitespace; quotes and escapes are kept for :func:`expand`.

    >>> split_words('a="x y" b=\\'1 2\\' c\\\\ d')
    ['a="x y"', "b='1 2'", 'c\\\\ d']
    """
    words, word, quote, i = [], "", "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quote != "'" and i + 1 < len(text):
            word += text[i : i + 2]
            i += 2
            continue
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch.isspace():
            if word:
                words.append(word)
            word = ""
            i += 1
            continue
        word += ch
        i += 1
    if word:
        words.append(word)
    return words


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand(word: str, env: Mapping[str, str]) -> str:
    """Docker's word processing: remove quotes and escapes, replace ``$VAR``,
    ``${VAR}``, ``${VAR:-default}``, ``${VAR:+alternative}`` (not inside ``'…'``).

    An unset variable becomes the empty string, as in the shell.

    >>> env = {"APP": "/srv", "EMPTY": ""}
    >>> expand("$APP/site", env), expand("${APP}_x", env), expand("'$APP'", env)
    ('/srv/site', '/srv_x', '$APP')
    >>> expand("${EMPTY:-dflt}", env), expand("${NOPE:+alt}", env), expand('"a b"\\\\$x', env)
    ('dflt', '', 'a b$x')
    """
    out, quote, i = [], "", 0
    while i < len(word):
        ch = word[i]
        if ch == "\\" and quote == '"' and word[i + 1 : i + 2] not in ('"', "$", "\\"):
            out.append(ch)  # inside "…" only \" \$ \\ are escapes: "C:\dir" keeps its \
            i += 1
        elif ch == "\\" and quote != "'" and i + 1 < len(word):
            out.append(word[i + 1])
            i += 2
        elif ch in "\"'" and (not quote or quote == ch):
            quote = "" if quote else ch
            i += 1
        elif ch == "$" and quote != "'":
            value, i = _variable(word, i + 1, env)
            out.append(value)
        else:
            out.append(ch)
            i += 1
    if quote:
        raise DockerfileError(f"unmatched {quote} in {word!r}")
    return "".join(out)


def substitute(text: str, env: Mapping[str, str]) -> str:
    """Replace ``$VAR`` and ``${VAR…}`` in *text* and nothing else (quotes and
    backslashes stay): what Docker does to an unquoted ``COPY <<EOF`` document.

    >>> substitute('name="$APP" ${NOPE:-x} \\\\n', {"APP": "web"})
    'name="web" x \\\\n'
    """
    out, i = [], 0
    while i < len(text):
        if text[i] == "$":
            value, i = _variable(text, i + 1, env)
            out.append(value)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _closing_brace(word: str, i: int) -> int:
    """Where the ``{`` at ``word[i]`` closes (``${A:-${B}}`` nests), or -1."""
    depth = 0
    for j in range(i, len(word)):
        depth += {"{": 1, "}": -1}.get(word[j], 0)
        if depth == 0:
            return j
    return -1


def _variable(word: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    """The value of the variable starting at ``word[i]`` (just after ``$``), and where it ends."""
    if i < len(word) and word[i] == "{":
        end = _closing_brace(word, i)
        if end < 0:
            raise DockerfileError(f"missing }} in {word!r}")
        inner = word[i + 1 : end]
        match = _NAME.match(inner)
        if not match:
            raise DockerfileError(f"bad substitution ${{{inner}}} in {word!r}")
        name, rest = match.group(), inner[match.end() :]
        value = env.get(name)
        if not rest:
            return value or "", end + 1
        for op in (":-", ":+", "-", "+"):
            if rest.startswith(op):
                alt = expand(rest[len(op) :], env)
                unset = value is None or (op.startswith(":") and value == "")
                if op.endswith("-"):
                    return (alt if unset else value or ""), end + 1
                return ("" if unset else alt), end + 1
        raise DockerfileError(f"unsupported substitution ${{{inner}}} in {word!r}")
    match = _NAME.match(word, i)
    if not match:
        return "$", i
    return env.get(match.group(), ""), match.end()


def name_values(
    inst: Instruction, env: Mapping[str, str], path: str = "Dockerfile"
) -> list[tuple[str, str]]:
    """``ENV``/``LABEL``/``ARG`` arguments as ``(name, value)`` pairs, values expanded.

    ``ENV A=1 B="two words"`` sets several; the old ``ENV NAME value with spaces`` one;
    ``ARG NAME`` (no value) declares a build argument without a default.

    >>> i = Instruction("ENV", 'A=1 B="two words" C=$A', 1)
    >>> name_values(i, {"A": "0"})
    [('A', '1'), ('B', 'two words'), ('C', '0')]
    >>> name_values(Instruction("ENV", "PATH /opt/bin:$PATH", 1), {"PATH": "/bin"})
    [('PATH', '/opt/bin:/bin')]
    """
    words = split_words(inst.args)
    if inst.keyword == "ENV" and "=" not in words[0]:
        if len(words) < 2:
            raise _error(path, inst.line, f"ENV {words[0]} needs a value", "ENV NAME=value")
        rest = inst.args[len(words[0]) :].strip()
        return [(words[0], expand(rest, env))]
    pairs = []
    for word in words:
        name, eq, value = word.partition("=")
        name = expand(name, env)
        if inst.keyword == "ARG" and not eq:
            pairs.append((name, None))
            continue
        if not eq or not name:
            raise _error(path, inst.line, f"{inst.keyword} wants NAME=value, not {word!r}")
        pairs.append((name, expand(value, env)))
    return pairs  # type: ignore[return-value]
