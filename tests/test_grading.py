"""hardway.course.grading and hardway.course.checks.lab00: one friendly line per check, never a
traceback."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest

from hardway.course import grading
from hardway.course.grading import (
    NotGraded,
    Result,
    check,
    exercise,
    expect,
    run_check,
    summary,
)
from hardway.errors import PortInUseError
from hardway.image.digest import parse_digest as reference_parse

#: learner code is compiled under a notebook-like file name, as ipykernel does
CELL_FILE = "/tmp/ipykernel_4242/1234567.py"

SOLUTION = """
import gzip, hashlib, re

def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()

def gzip_layer(tar_bytes):
    return gzip.compress(tar_bytes, mtime=0)

def diff_id_and_digest(tar_bytes):
    return digest_of(tar_bytes), digest_of(gzip_layer(tar_bytes))

def parse_digest(s):
    algorithm, colon, encoded = s.partition(":")
    if not colon or not re.fullmatch(r"[a-z0-9]+([+._-][a-z0-9]+)*", algorithm):
        raise ValueError("bad algorithm")
    if not re.fullmatch(r"[a-zA-Z0-9=_-]+", encoded):
        raise ValueError("bad encoded")
    n = {"sha256": 64, "sha512": 128}.get(algorithm)
    if n and not re.fullmatch(f"[0-9a-f]{{{n}}}", encoded):
        raise ValueError("bad hex")
    return algorithm, encoded
"""


def learner(source: str, base: dict | None = None) -> dict:
    """The namespace a notebook would have after running ``source`` in a cell."""
    namespace = dict(base or {})
    exec(compile(source, CELL_FILE, "exec"), namespace)
    return namespace


def solved() -> dict:
    return learner(SOLUTION)


def stub(name: str, args: str = "data") -> str:
    return f"def {name}({args}):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"


# --- statuses and lines -----------------------------------------------------------------


@pytest.mark.parametrize("exercise_id", ["00.1", "00.2", "00.3"])
def test_the_solution_passes(exercise_id: str) -> None:
    result = run_check(exercise_id, solved())
    assert result == Result(exercise_id, "passed", 2, 2, "passed")
    assert repr(result) == str(result) == f"✅ {exercise_id} passed (2/2)"


def test_missing_name_is_not_attempted() -> None:
    result = run_check("00.1", {})
    assert result.status == "not attempted" and result.points == 0 and result.max_points == 2
    assert result.line == "⏳ 00.1 not attempted yet: define digest_of and run its cell first"


def test_stub_is_not_attempted() -> None:
    result = run_check("00.1", learner(stub("digest_of")))
    assert result.line == "⏳ 00.1 not attempted yet"


def test_a_stub_called_by_finished_code_is_named() -> None:
    namespace = learner(SOLUTION + stub("digest_of"))
    result = run_check("00.2", namespace)
    assert result.status == "not attempted"
    assert result.line == "⏳ 00.2 not attempted yet: digest_of() still raises NotImplementedError"


def test_assertion_from_the_check_is_a_failure_with_its_hint() -> None:
    namespace = learner(
        "import hashlib\ndef digest_of(data):\n    return hashlib.sha256(data).hexdigest()"
    )
    result = run_check("00.1", namespace)
    assert result.status == "failed" and result.points == 0
    assert result.line.startswith("❌ 00.1: digest_of(b'') returned the hex alone")
    hint = grading.exercises("00")[0].hint
    assert result.line.endswith(f"Hint: {hint} (more: hint('00.1'))")
    assert "\n" not in result.line


def test_an_exception_in_learner_code_shows_type_message_and_line_only() -> None:
    namespace = learner("def digest_of(data):\n    x = 1\n    raise KeyError('size')\n")
    result = run_check("00.1", namespace)
    assert result.status == "error"
    assert result.line == "💥 00.1: your code raised KeyError: 'size' (in digest_of, line 3)"


def test_learner_calling_a_library_wrongly_is_the_learners_error() -> None:
    namespace = learner("import hashlib\ndef digest_of(data):\n    return hashlib.sha256('text')\n")
    result = run_check("00.1", namespace)
    assert result.status == "error"
    assert "your code raised TypeError" in result.line and "(in digest_of, line 3)" in result.line


def test_a_wrong_signature_is_the_learners_error_not_the_checks() -> None:
    namespace = learner("def digest_of(data, extra):\n    return ''\n")
    result = run_check("00.1", namespace)
    assert result.status == "error"
    assert result.line.startswith("💥 00.1: your code raised TypeError: digest_of() missing")


def test_the_learners_own_assert_is_an_error_not_a_failure() -> None:
    namespace = learner("def digest_of(data):\n    assert len(data) > 100, 'too short'\n")
    result = run_check("00.1", namespace)
    assert result.status == "error"
    assert "your code raised AssertionError: too short" in result.line


def test_what_the_learner_prints_is_swallowed(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = learner(
        "import sys\n"
        + SOLUTION.replace(
            '    return "sha256:"',
            '    print("debug", file=sys.stderr); print("x")\n    return "sha256:"',
        )
    )
    assert run_check("00.1", namespace).status == "passed"
    assert capsys.readouterr() == ("", "")


def test_an_interrupt_is_reported_as_a_failure() -> None:
    namespace = learner("def digest_of(data):\n    raise KeyboardInterrupt\n")
    result = run_check("00.1", namespace)
    assert result.status == "failed"
    assert "interrupted" in result.line and "endless loop" in result.line


# --- bugs in checks and unknown exercises never raise --------------------------------------


@exercise("98.1", points=3, hint="never shown")
def _buggy_check(digest_of) -> None:
    """A check with a bug of its own, after the learner's code returned fine."""
    digest_of(b"")
    None.startswith("x")  # type: ignore[attr-defined]


@exercise("98.2", points=1)
def _missing_import(digest_of) -> None:
    """A check that raises NotImplementedError itself (unfinished check)."""
    raise NotImplementedError("check not written yet")


@exercise("98.3", points=1)
def _optional(digest_of, level=3) -> None:
    """Parameters with defaults are not required from the learner."""
    expect(level == 3, "the default was replaced")
    expect(digest_of(b"") != "", "empty")


def test_a_bug_in_a_check_is_reported_without_traceback() -> None:
    result = run_check("98.1", solved())
    assert result.status == "error" and result.points == 0 and result.max_points == 3
    assert "could not be checked (AttributeError: 'NoneType' object has no attribute" in result.line
    assert "bug in the course's check" in result.line
    assert "Traceback" not in result.line and "never shown" not in result.line


def test_an_unfinished_check_is_not_blamed_on_the_learner() -> None:
    result = run_check("98.2", solved())
    assert result.status == "error" and "could not be checked" in result.line


def test_parameters_with_defaults_are_optional() -> None:
    assert run_check("98.3", solved()).status == "passed"


# --- checks that cannot run here: not graded, neither 0 points nor a bug ------------------


@exercise("98.4", points=2)
def _port_taken(digest_of) -> None:
    """A check whose registry cannot listen: another program holds the port."""
    digest_of(b"")
    raise PortInUseError(
        "port 5000 on 127.0.0.1 is already in use by pid 7 (python3)",
        fix="python -m hardway registry start --port 5001",
    )


@exercise("98.5", points=1)
def _says_not_graded(digest_of) -> None:
    """A check that finds out itself that it cannot run here."""
    raise NotGraded("the registry asks for credentials", fix="make registry")


@exercise("98.6", points=1)
def _no_permission(digest_of) -> None:
    """A check that may not write where it must (not root, say)."""
    raise PermissionError(13, "Permission denied", "/var/lib/registry")


def test_a_check_the_machine_cannot_run_is_not_graded() -> None:
    result = run_check("98.4", solved())
    assert (result.status, result.points, result.max_points) == ("not graded", 0, 2)
    assert result.line == (
        "⏸ 98.4 not graded (2 points): port 5000 on 127.0.0.1 is already in use by pid 7 "
        "(python3) (nothing to change in your code). To fix: python -m hardway registry "
        "start --port 5001"
    )
    assert "bug" not in result.line
    said = run_check("98.5", solved())
    assert said.status == "not graded" and said.message.endswith("To fix: make registry")
    denied = run_check("98.6", solved())
    assert denied.status == "not graded" and "PermissionError" in denied.message


def test_the_learners_code_cannot_claim_not_graded() -> None:
    """The same exceptions from the learner's own code are the learner's error."""
    for raised in ("NotGraded('no')", "PermissionError('no')", "PortInUseError('no')"):
        source = f"def digest_of(data):\n    raise {raised}\n"
        base = {"NotGraded": NotGraded, "PortInUseError": PortInUseError}
        result = run_check("98.4", learner(source, base))
        assert result.status == "error" and result.line.startswith("💥 98.4: your code raised")


def test_not_graded_counts_in_neither_the_points_nor_the_maximum() -> None:
    results = (Result("98.1", "passed", 3, 3, "passed"), run_check("98.4", solved()))
    lab = grading.Summary("98", results)
    assert (lab.points, lab.max_points, lab.not_graded) == (3, 3, ("98.4",))
    assert repr(lab).splitlines()[-1] == (
        "Lab 98: 3/3 points, 2 not graded — 98.4 could not be graded here: see above"
    )
    failed = grading.Summary("98", (Result("98.1", "failed", 0, 3, "no"), results[1]))
    assert repr(failed).endswith(
        "0/3 points, 2 not graded — fix the others and run their cells again"
    )


def test_07_6_with_a_registry_that_asks_for_credentials_is_not_graded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another checkout's registry in token mode serves the port: the check says whose it
    is and how to stop it, before it calls the learner's code."""
    from hardway.distribution.server import local_registry

    state = tmp_path / "other" / ".state"
    theirs = local_registry.RegistryStatus(
        5999, True, 4242, "http://127.0.0.1:5999", state / "registry" / "5999", "token"
    )
    monkeypatch.setattr(local_registry, "ensure_running", lambda *a, **k: theirs)
    called = []
    result = run_check("07.6", {"upload_blob": lambda *args: called.append(args)})
    assert result.status == "not graded" and called == []
    assert "asks for credentials (auth token)" in result.message
    assert f"the state directory {state} (pid 4242)" in result.message
    assert result.message.endswith(
        f"To fix: HARDWAY_STATE_DIR={state} python -m hardway registry stop --port 5999"
    )


@pytest.mark.parametrize(
    ("exercise_id", "says"),
    [
        ("00.9", "there is no exercise 00.9; lab 00 has 00.1, 00.2, 00.3"),
        ("77.1", "there are no checks for lab 77"),
        ("1", "exercise ids look like '00.1'"),
    ],
)
def test_unknown_exercises_are_errors_not_exceptions(exercise_id: str, says: str) -> None:
    result = run_check(exercise_id, {})
    assert result.status == "error" and says in result.line


def test_exercise_ids_are_validated() -> None:
    with pytest.raises(ValueError, match="look like"):
        exercise("5.2")


# --- lab 00: the checks catch the mistakes they are meant to catch --------------------------


def test_hard_coded_answers_fail() -> None:
    table = {d: "sha256:" + hashlib.sha256(d).hexdigest() for d in (b"", b"hello\n")}
    namespace = {"digest_of": lambda data: table.get(data, "sha256:" + "0" * 64)}
    assert run_check("00.1", namespace).status == "failed"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("return hashlib.sha256(data).digest()", "returned bytes"),
        ("return 'sha256:' + hashlib.sha256(data).hexdigest().upper()", "uppercase"),
        ("return 'sha256:' + hashlib.sha1(data).hexdigest()", "expected 'sha256:"),
        ("return len(data)", "returned a int, not a str"),
    ],
)
def test_00_1_mistakes(body: str, says: str) -> None:
    result = run_check("00.1", learner(f"import hashlib\ndef digest_of(data):\n    {body}\n"))
    assert result.status == "failed" and says in result.line


@pytest.mark.parametrize(
    ("gzip_body", "pair_body", "says"),
    [
        ("return gzip.compress(tar_bytes)", None, "records a time"),
        ("return tar_bytes", None, "not gzip data"),
        ("return gzip.compress(tar_bytes[:-512], mtime=0)", None, "does not give the tar back"),
        (
            None,
            "return digest_of(gzip_layer(tar_bytes)), digest_of(tar_bytes)",
            "diff_id and digest are swapped",
        ),
        (None, "return digest_of(tar_bytes), digest_of(tar_bytes)", "digest of gzip_layer"),
        (None, "return digest_of(tar_bytes)", "should return a (diff_id, digest) pair"),
    ],
)
def test_00_2_mistakes(gzip_body: str | None, pair_body: str | None, says: str) -> None:
    source = ""
    if gzip_body:
        source += f"def gzip_layer(tar_bytes):\n    {gzip_body}\n"
    if pair_body:
        source += f"def diff_id_and_digest(tar_bytes):\n    {pair_body}\n"
    namespace = learner("import gzip\n" + source, solved())
    result = run_check("00.2", namespace)
    assert result.status == "failed" and says in result.line, result.line


def test_00_2_hint_teaches_mtime() -> None:
    result = run_check("00.2", learner("import gzip\ngzip_layer = gzip.compress", solved()))
    assert "mtime=0" in result.line


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("def parse_digest(s):\n    return tuple(s.split(':', 1))", "should raise ValueError"),
        (
            "def parse_digest(s):\n    a, e = s.split(':')\n    return a, e",
            "should raise ValueError",
        ),
        (
            "import re\ndef parse_digest(s):\n    m = re.match(r'([a-z0-9]+):([a-f0-9]{64})$', s)\n"
            "    if not m: raise ValueError(s)\n    return m.groups()",
            "but that is a valid digest",
        ),
        ("def parse_digest(s):\n    raise KeyError(s)", "raised KeyError"),
        (
            "def parse_digest(s):\n    if ':' not in s: raise ValueError(s)\n    return s",
            "returned",
        ),
    ],
)
def test_00_3_mistakes(source: str, says: str) -> None:
    result = run_check("00.3", learner(source))
    assert result.status == "failed" and says in result.line, result.line


def test_00_3_uses_fresh_inputs_each_time() -> None:
    seen: list[str] = []
    namespace = learner(SOLUTION)
    inner = namespace["parse_digest"]

    def recording(s: str) -> tuple[str, str]:
        seen.append(s)
        return inner(s)

    assert run_check("00.3", {"parse_digest": recording}).status == "passed"
    first = set(seen)
    seen.clear()
    assert run_check("00.3", {"parse_digest": recording}).status == "passed"
    assert first != set(seen), "the check must draw new digests on every run"
    good = [s for s in first if re.fullmatch(r"sha256:[0-9a-f]{64}", s)]
    assert good and all(reference_parse(s) for s in good)


# --- the notebook side ------------------------------------------------------------------


def test_check_reads_the_callers_globals_and_summary_totals() -> None:
    namespace = learner(SOLUTION, {"check": check, "summary": summary})
    namespace["parse_digest"] = learner(stub("parse_digest", "s"))["parse_digest"]
    exec("first = check('00.1')\nlast = summary()", namespace)
    assert namespace["first"].status == "passed"
    report = repr(namespace["last"])
    assert report.splitlines() == [
        "✅ 00.1 passed (2/2)",
        "✅ 00.2 passed (2/2)",
        "⏳ 00.3 not attempted yet",
        "Lab 00: 4/6 points — fix the others and run their cells again",
    ]
    assert (namespace["last"].points, namespace["last"].max_points) == (4, 6)


def test_check_all_returns_every_result() -> None:
    results = grading.check_all("00", solved())
    assert [r.exercise for r in results] == ["00.1", "00.2", "00.3"]
    assert all(r.status == "passed" for r in results)


def test_a_notebook_cell_shows_the_line_exactly_once(capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_cell(SOLUTION + "\nfrom hardway.course.grading import check")
        capsys.readouterr()
        shell.run_cell('check("00.1")')
        out = capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()
    assert out.count("00.1 passed (2/2)") == 1, out
    assert "Traceback" not in out


def test_emit_prints_one_json_line_behind_the_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    grading.emit("00.1", solved(), "@@x@@ ")
    out = capsys.readouterr().out
    assert out.startswith("@@x@@ {") and out.count("\n") == 1
    assert '"status": "passed"' in out


def test_checks_are_quick() -> None:
    started = time.monotonic()
    for exercise_id in ("00.1", "00.2", "00.3"):
        run_check(exercise_id, solved())
    assert time.monotonic() - started < 2, "a check cell should answer at once"


def test_hints_come_one_step_at_a_time() -> None:
    @exercise("97.1", points=1, hints=("a nudge", "the idea", "the near-answer"))
    def stepped(value: int) -> None:
        expect(value == 1, "value is not 1")

    failed = grading.run_check("97.1", {"value": 2})
    assert failed.line == "❌ 97.1: value is not 1. Hint: a nudge (more: hint('97.1'))"
    shown = [repr(grading.hint("97.1")) for _ in range(4)]
    assert shown == [
        "💡 97.1 hint 1/3: a nudge",
        "💡 97.1 hint 2/3: the idea",
        "💡 97.1 hint 3/3 (the last one): the near-answer",
        "💡 97.1 hint 3/3 (the last one): the near-answer",
    ]


def test_hint_of_an_unknown_exercise_says_why() -> None:
    assert "there is no exercise 00.99" in repr(grading.hint("00.99"))
    with pytest.raises(ValueError, match="not both"):
        exercise("97.2", hint="one", hints=("two",))
