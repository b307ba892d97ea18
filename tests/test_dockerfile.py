"""The Dockerfile parser: good and bad Dockerfiles as plain lists, Docker's word rules."""

from __future__ import annotations

import doctest
import os

import pytest

import hardway.build.dockerfile
from hardway.build import dockerignore
from hardway.build.dockerfile import (
    Instruction,
    command,
    exec_form,
    expand,
    logical_lines,
    name_values,
    parse,
)
from hardway.errors import BuildError, DockerfileError

#: (Dockerfile, [(stage base, stage name, [(line, keyword, args, flags)…])…])
GOOD = [
    ("FROM scratch\n", [("scratch", None, [])]),
    ("from busybox as Build\nrun echo hi\n", [("busybox", "build", [(2, "RUN", "echo hi", {})])]),
    (
        "# syntax=docker/dockerfile:1\n# a comment\n\nFROM a\n  RUN echo a \\\n    b\n",
        [("a", None, [(5, "RUN", "echo a     b", {})])],
    ),
    (
        "FROM a\nRUN echo \\\n# not part of it\n\n  done\nCMD x\n",
        [("a", None, [(2, "RUN", "echo   done", {}), (6, "CMD", "x", {})])],
    ),
    (
        "# escape=`\nFROM a\nRUN dir c:\\ `\n  /w\n",
        [("a", None, [(3, "RUN", "dir c:\\   /w", {})])],
    ),
    (
        "ARG V=1\nFROM a:$V AS one\nFROM one\nCOPY --from=one --chown=1:2 /x /y\n",
        [
            ("a:$V", "one", []),
            ("one", None, [(4, "COPY", "/x /y", {"from": "one", "chown": "1:2"})]),
        ],
    ),
    (
        'FROM a\nENTRYPOINT ["/bin/sh", "-c"]\nCMD echo "$HOME"\n',
        [("a", None, [(2, "ENTRYPOINT", '["/bin/sh", "-c"]', {}), (3, "CMD", 'echo "$HOME"', {})])],
    ),
    ("FROM a\r\nUSER 1000\r\n", [("a", None, [(2, "USER", "1000", {})])]),
]

#: (Dockerfile, the line the error names, a word the message contains)
BAD = [
    ("", 1, "no FROM"),
    ("# just a comment\n", 1, "no FROM"),
    ("RUN echo\nFROM a\n", 1, "before the first FROM"),
    ("FROM a\nHEALTHCHECK --interval 30s CMD true\n", 2, "HEALTHCHECK"),
    ("FROM a\n\nONBUILD FROM x\n", 3, "ONBUILD FROM"),
    ("FROM a\nONBUILD ONBUILD RUN x\n", 2, "not allowed"),
    ("FROM a\nMAINTAINER me\n", 2, "LABEL maintainer"),
    ("FROM a\nCOPY --chown=1 <<EOF /x\nno end\n", 2, "no closing line"),
    ("FROM a\nFROBNICATE x\n", 2, "unknown instruction"),
    ("FROM a\nRUN --mount=type=cache,target=/x make\n", 2, "--mount"),
    ("FROM a\nCOPY --link a b\n", 2, "--link"),
    ("FROM --platform=linux/arm64 a\n", 1, "--platform"),
    ("FROM a b c\n", 1, "FROM takes"),
    ("FROM a\nUSER\n", 2, "needs arguments"),
    ("FROM a AS x\nFROM b AS x\n", 0, "same name"),
    ("# escape=x\nFROM a\n", 1, "escape"),
    ("# syntax=a\n# syntax=b\nFROM a\n", 2, "twice"),
]


@pytest.mark.parametrize(("text", "stages"), GOOD)
def test_good_dockerfiles(text: str, stages: list) -> None:
    parsed = parse(text)
    got = [
        (s.base, s.name, [(i.line, i.keyword, i.args, dict(i.flags)) for i in s.instructions])
        for s in parsed.stages
    ]
    assert got == stages


@pytest.mark.parametrize(("text", "line", "word"), BAD)
def test_bad_dockerfiles_name_the_line(text: str, line: int, word: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        parse(text, "Dockerfile.bad")
    error = caught.value
    assert isinstance(error, BuildError) and isinstance(error, ValueError)
    assert word.lower() in str(error).lower()
    assert "Dockerfile.bad" in str(error) and error.line == line
    if line:
        assert f"line {line}:" in str(error)


def test_heredocs_as_dockers_frontend_reads_them() -> None:
    text = (
        "FROM a\nRUN <<EOF\necho one\n# not a comment here\nEOF\n"
        "COPY <<-'CONF' <<TWO /etc/\n\tkey=$V\n\tCONF\nx=$V\nTWO\n"
        "RUN cat <<EOF >/x\nhi\nEOF\nCMD done\n"
    )
    run, copy, cat, cmd = parse(text).stages[0].instructions
    assert (run.line, run.args, [(d.name, d.content) for d in run.heredocs]) == (
        2, "<<EOF", [("EOF", "echo one\n# not a comment here\n")]
    )  # fmt: skip
    conf, two = copy.heredocs
    assert (conf.name, conf.chomp, conf.expand, conf.text) == ("CONF", True, False, "key=$V\n")
    assert (two.name, two.chomp, two.expand, two.text) == ("TWO", False, True, "x=$V\n")
    assert (cat.line, cat.args, cat.heredocs[0].content) == (11, "cat <<EOF >/x", "hi\n")
    assert (cmd.line, cmd.keyword, cmd.heredocs) == (14, "CMD", ())
    shifts = parse("FROM a\nRUN echo $((1<<2)) <<<x\nCMD y\n").stages[0].instructions
    assert [(i.keyword, i.heredocs) for i in shifts] == [("RUN", ()), ("CMD", ())]  # no heredoc


def test_new_instructions_parse_with_their_flags() -> None:
    text = (
        "FROM a\nVOLUME /data\nSTOPSIGNAL SIGINT\n"
        'HEALTHCHECK --interval=5s --retries=2 CMD true\nSHELL ["/bin/ash", "-c"]\n'
        "ONBUILD COPY --chown=1 . /app\n"
    )
    got = [(i.keyword, i.args, dict(i.flags)) for i in parse(text).stages[0].instructions]
    assert got == [
        ("VOLUME", "/data", {}),
        ("STOPSIGNAL", "SIGINT", {}),
        ("HEALTHCHECK", "CMD true", {"interval": "5s", "retries": "2"}),
        ("SHELL", '["/bin/ash", "-c"]', {}),
        ("ONBUILD", "COPY --chown=1 . /app", {}),
    ]


def test_a_tab_separates_keyword_and_flags() -> None:
    stage = parse("FROM\tscratch\nCOPY\t--chown=1\ta /b\nRUN\techo hi\n").stages[0]
    copy, run = stage.instructions
    assert (stage.base, copy.keyword, copy.flags, copy.args) == (
        "scratch",
        "COPY",
        {"chown": "1"},
        "a /b",
    )
    assert (run.keyword, run.args) == ("RUN", "echo hi")


def test_global_args_come_before_the_first_from() -> None:
    parsed = parse("ARG A=1\nARG B\nFROM x\nARG A\n")
    assert [i.args for i in parsed.args] == ["A=1", "B"]
    assert [i.args for i in parsed.stages[0].instructions] == ["A"]


def test_stage_lookup_by_name_or_number() -> None:
    parsed = parse("FROM a AS build\nFROM b\n")
    assert parsed.stage(None) == 1 and parsed.stage("build") == 0 and parsed.stage("1") == 1
    with pytest.raises(DockerfileError, match="no stage named 'nope'"):
        parsed.stage("nope")


@pytest.mark.parametrize(
    ("args", "form"),
    [
        ('["a", "b c"]', ("a", "b c")),
        ("[]", ()),
        ("[sh, -c]", None),  # not JSON: the shell form, as Docker decides
        ('["a", 1]', None),
        ("echo [x]", None),
    ],
)
def test_exec_form_is_a_json_list_of_strings(args: str, form: tuple | None) -> None:
    assert exec_form(args) == form


def test_run_shell_form_goes_through_sh() -> None:
    assert command("echo $HOME") == ("/bin/sh", "-c", "echo $HOME")
    assert command('["echo", "$HOME"]') == ("echo", "$HOME")


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("$A", "1"),
        ("${A}x", "1x"),
        ("$Ax", ""),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${A:+set}", "set"),
        ("${UNSET:+set}", ""),
        ("${UNSET:-$A}", "1"),
        ("'$A'", "$A"),
        ('"$A b"', "1 b"),
        ("\\$A", "$A"),
        ("a$", "a$"),
        ("$1", "$1"),
        ("${UNSET:-${A}}x", "1x"),  # nested braces
        ('"C:\\dir\\$A"', "C:\\dir$A"),  # in "…" only \" \$ \\ are escapes
        ('"\\"q\\""', '"q"'),
        ("C:\\dir", "C:dir"),  # unquoted, every \ escapes
    ],
)
def test_variable_substitution(word: str, value: str) -> None:
    assert expand(word, {"A": "1", "EMPTY": ""}) == value


@pytest.mark.parametrize("word", ["${A", "${A?x}", "${}", "'open", '"open'])
def test_bad_substitution_is_an_error(word: str) -> None:
    with pytest.raises(DockerfileError):
        expand(word, {"A": "1"})


def test_env_label_arg_pairs() -> None:
    env = {"A": "0"}
    pairs = name_values(Instruction("ENV", 'A=1 B="two words" C=$A D=a\\ b', 1), env)
    assert pairs == [("A", "1"), ("B", "two words"), ("C", "0"), ("D", "a b")]
    assert name_values(Instruction("ENV", "X hello  world", 1), env) == [("X", "hello  world")]
    assert name_values(Instruction("ARG", "V W=2", 1), env) == [("V", None), ("W", "2")]
    with pytest.raises(DockerfileError, match="line 7"):
        name_values(Instruction("LABEL", "novalue", 7), env)


def test_logical_lines_keep_numbers_of_first_lines() -> None:
    text = "FROM a\n\n# c\nRUN a \\\n  b \\\n  c\nCMD d\n"
    assert [n for n, _ in logical_lines(text)] == [1, 4, 7]


def test_doctests() -> None:
    assert doctest.testmod(hardway.build.dockerfile).failed == 0


# -- .dockerignore ---------------------------------------------------------------------------

#: (.dockerignore, name in the context, ignored?) — the Docker CLI's pattern rules
IGNORE_CASES = [
    ("secret.txt", "secret.txt", True),
    ("secret.txt", "sub/secret.txt", False),  # relative to the top, not anywhere
    ("/secret.txt", "secret.txt", True),  # a leading / is dropped
    ("**/*.log", "a.log", True),  # ** is none or more directories
    ("**/*.log", "x/y/z.log", True),
    ("*.log", "x/z.log", False),  # * stays within one name
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("docs", "docs/deep/file.md", True),  # a matching directory takes all below it
    ("docs/*.md\n!docs/keep.md", "docs/keep.md", False),  # the last match wins
    ("!docs/keep.md\ndocs/*.md", "docs/keep.md", True),
    ("# note\n  ./build// ", "build/out.o", True),  # cleaned like a path, blanks trimmed
    ("file?.txt", "file1.txt", True),
    ("file?.txt", "file10.txt", False),
    ("[a-c].txt", "b.txt", True),
    ("[^a-c].txt", "b.txt", False),
    ("Dockerfile\n.dockerignore", ".dockerignore", True),
]


@pytest.mark.parametrize(("text", "name", "expected"), IGNORE_CASES)
def test_dockerignore_patterns_as_docker_reads_them(text: str, name: str, expected: bool) -> None:
    assert dockerignore.ignored(name, dockerignore.patterns(text)) is expected


def test_send_context_copies_what_is_not_ignored(tmp_path) -> None:
    ctx = tmp_path / "ctx"
    for name in ("keep/a.txt", "skip/b.txt", "skip/back.txt", "x.log"):
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(name)
    (ctx / "empty").mkdir()
    (ctx / "keep" / "a.txt").chmod(0o600)
    os.symlink("/etc/passwd", ctx / "link")  # copied as a link, never followed
    (ctx / ".dockerignore").write_text("skip\n!skip/back.txt\n*.log\n")
    sent = dockerignore.send_context(ctx, tmp_path / "sent")
    names = sorted(str(p.relative_to(sent)) for p in sent.rglob("*"))
    assert names == [".dockerignore", "empty", "keep", "keep/a.txt", "link", "skip",
                     "skip/back.txt"]  # fmt: skip
    assert (sent / "keep" / "a.txt").stat().st_mode & 0o777 == 0o600
    assert os.readlink(sent / "link") == "/etc/passwd"
    (ctx / "app.Dockerfile.dockerignore").write_text("keep\n")  # this Dockerfile's own
    own = dockerignore.send_context(ctx, tmp_path / "own", ctx / "app.Dockerfile")
    assert not (own / "keep").exists() and (own / "skip" / "b.txt").exists()
    (ctx / ".dockerignore").unlink()
    assert dockerignore.send_context(ctx, tmp_path / "unused") == ctx  # nothing to leave out
    assert not (tmp_path / "unused").exists()


def test_dockerignore_doctests() -> None:
    assert doctest.testmod(dockerignore).failed == 0
