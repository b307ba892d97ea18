"""hardway.course.autograde: headless grading in a fresh kernel, robust to stubs, errors and loops.

Each grading starts a kernel (1–2 s), so every test grades as few notebooks as it can.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_output

from hardway.cli import main
from hardway.course.autograde import (
    _parse,
    find_submissions,
    grade_notebook,
    lab_of,
    without_feedback,
)
from hardway.course.grades import NotebookGrade, classroom_document, format_room, format_summary
from hardway.course.grading import Result, exercises
from hardway.errors import NotebookError

ROOT = Path(__file__).resolve().parent.parent
LABS = sorted((ROOT / "labs").glob("[0-9][0-9]-*.ipynb"))
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]-*.ipynb"))
WARMUP = ROOT / "solutions" / "00-warmup.ipynb"
SHORT_TIMEOUT = 3


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def variant(
    tmp_path: Path, name: str, edit: Callable[[nbformat.NotebookNode], None], src: Path = WARMUP
) -> Path:
    """A copy of ``src`` changed by ``edit``, saved as ``tmp_path/name``."""
    nb = nbformat.read(src, as_version=4)
    edit(nb)
    dst = tmp_path / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return dst


def cell(nb: nbformat.NotebookNode, cell_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.id == cell_id)


def grade_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hardway", "grade", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def max_points(lab: str) -> int:
    return sum(e.points for e in exercises(lab))


# --- the course's own notebooks -----------------------------------------------------------


@pytest.mark.parametrize("lab", LABS, ids=names(LABS))
def test_a_generated_lab_scores_zero_and_nothing_crashes(lab: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = grade_cli(str(lab.relative_to(ROOT)), "--json", str(out), "--fail-under", "1")
    assert result.returncode == 1, "0 points is under --fail-under 1"
    assert "below --fail-under" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr

    document = json.loads(out.read_text(encoding="utf-8"))
    lab_id = lab.name[:2]
    assert document["version"] == 1 and document["status"] == "fail"
    assert document["max_score"] == max_points(lab_id) > 0
    assert [t["name"].split()[0] for t in document["tests"]] == [e.id for e in exercises(lab_id)]
    for test in document["tests"]:
        assert test["status"] == "fail" and test["score"] == 0
        assert "not attempted yet" in test["message"], test["message"]
        assert test["filename"] == str(lab.relative_to(ROOT))
        assert test["test_code"] == f'check("{test["name"].split()[0]}")'
        assert test["line_no"] > 0 and isinstance(test["duration"], int)
    assert re.search(rf"^  total +0/{max_points(lab_id)} *$", result.stdout, re.M), result.stdout


@pytest.mark.parametrize("solution", SOLUTIONS, ids=names(SOLUTIONS))
def test_a_solution_scores_full_marks(solution: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    full = max_points(solution.name[:2])
    result = grade_cli(str(solution), "--json", str(out), "--fail-under", str(full))
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["status"] == "pass" and document["max_score"] == full
    assert sum(t["score"] for t in document["tests"]) == full
    assert all(t["status"] == "pass" for t in document["tests"])
    assert re.search(rf"^  total +{full}/{full} *$", result.stdout, re.M), result.stdout


# --- a machine that cannot serve a check -------------------------------------------------

PUSH_SOLUTION, PUSH_LAB = ROOT / "solutions" / "07-push.ipynb", ROOT / "labs" / "07-push.ipynb"


def grade_with(state: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m hardway grade`` as in a checkout whose state is ``state``, the course's
    registry expected on ``port``."""
    env = {**os.environ, "HARDWAY_STATE_DIR": str(state), "HARDWAY_REGISTRY_PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "hardway", "grade", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_another_checkouts_registry_on_the_port_changes_no_grade(
    tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instructor's ``/opt/course`` holds the port with its registry; a learner's clone
    (its own state directory, nothing running) grades the solutions of 07 and 08."""
    from hardway.distribution.server import local_registry

    monkeypatch.setenv("HARDWAY_STATE_DIR", str(tmp_path / "opt-course" / ".state"))
    theirs = local_registry.start(free_port, owned=False)
    try:
        out = tmp_path / "out.json"
        solutions = [str(PUSH_SOLUTION), str(ROOT / "solutions" / "08-pull.ipynb")]
        result = grade_with(tmp_path / "clone-state", free_port, *solutions, "--json", str(out))
        assert result.returncode == 0, result.stdout + result.stderr
        document = json.loads(out.read_text(encoding="utf-8"))
        full = max_points("07") + max_points("08")
        assert (document["status"], document["score"], document["max_score"]) == (
            "pass",
            full,
            full,
        )
        assert "not graded" not in result.stdout and "PortInUseError" not in result.stdout
        assert local_registry.status(free_port).pid == theirs.pid, "still theirs, untouched"
        assert not (
            tmp_path / "clone-state" / "registry" / str(free_port) / "registry.pid"
        ).exists()
    finally:
        local_registry.stop_at(theirs.state)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", [PUSH_SOLUTION, PUSH_LAB], ids=["solution", "blank lab"])
def test_a_registry_that_cannot_be_used_leaves_its_exercise_not_graded(
    notebook: Path, tmp_path: Path, free_port: int
) -> None:
    """Another program holds the registry's port: 07.6 is not graded, with the reason and
    its fix — not 0 points, not a bug in the check — and the other exercises are graded."""
    out, table = tmp_path / "out.json", tmp_path / "grades.csv"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free_port))
        squatter.listen()
        result = grade_with(
            tmp_path / "state", free_port, str(notebook), "--json", str(out), "--csv", str(table)
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bug in the course's check" not in result.stdout + result.stderr
    document = json.loads(out.read_text(encoding="utf-8"))
    tests = {t["name"].split()[0]: t for t in document["tests"]}
    upload = tests.pop("07.6")
    assert (upload["status"], upload["score"], upload["max_score"]) == ("error", None, 2)
    assert upload["message"].startswith("⏸ 07.6 not graded (2 points): the course's registry")
    assert f"in use by pid {os.getpid()}" in upload["message"] and "To fix: " in upload["message"]
    solved = notebook == PUSH_SOLUTION
    assert all(t["status"] == ("pass" if solved else "fail") for t in tests.values())
    assert document["status"] == "error", "an incomplete grade is not a pass"
    assert document["max_score"] == max_points("07") - 2
    assert sum(t["score"] or 0 for t in document["tests"]) == (
        document["max_score"] if solved else 0
    )
    row = re.search(r"^  07\.6 +not graded +–/2 +the course's registry", result.stdout, re.M)
    assert row, result.stdout
    points = document["max_score"] if solved else 0
    total = rf"^  total +{points}/{document['max_score']} +\(2 more not graded: 07\.6\)$"
    assert re.search(total, result.stdout, re.M), result.stdout
    with table.open(encoding="utf-8", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["points"], row["max_points"], row["not_graded"]) == (
        str(points),
        str(document["max_score"]),
        "07.6",
    )


def test_the_room_tables_mark_what_could_not_be_graded() -> None:
    results = (
        Result("07.5", "passed", 1, 1, "passed"),
        Result("07.6", "not graded", 0, 2, "the registry could not be used"),
    )
    ann = NotebookGrade(Path("ann/07-push.ipynb"), "07", results, "ann")
    bo = NotebookGrade(Path("bo/07-push.ipynb"), "07", (results[0],), "bo")
    assert (ann.points, ann.max_points, ann.not_graded, ann.status) == (1, 1, ("07.6",), "error")
    room = format_room([ann, bo]).splitlines()
    assert room[1].split() == ["ann", "1/1*", "1/1"] and room[2].split() == ["bo", "1/1", "1/1"]
    assert room[-1].startswith("* some exercises could not be graded")
    summary = format_summary([ann, bo]).splitlines()
    assert summary[1].endswith("ann/07-push.ipynb  (2 more not graded: 07.6)")
    assert summary[2].endswith("bo/07-push.ipynb")
    (test,) = [t for t in ann.to_classroom()["tests"] if t["name"].startswith("07.6")]
    assert test["score"] is None and test["status"] == "error"


# --- learners' mistakes -------------------------------------------------------------------


def test_one_wrong_exercise_costs_only_its_points(tmp_path: Path) -> None:
    def edit(nb: nbformat.NotebookNode) -> None:
        cell(
            nb, "ex-00-2a"
        ).source = "def gzip_layer(tar_bytes):\n    return gzip.compress(tar_bytes)"
        # a learner printing something that looks like a grader line changes nothing
        fake = '@@hardway-grade-0@@ {"exercise": "00.2", "status": "passed", "points": 2}'
        nb.cells.append(new_code_cell(f"print({fake!r})"))

    path = variant(tmp_path, "00-warmup.ipynb", edit)
    before = path.read_bytes()
    grade = grade_notebook(path)
    assert path.read_bytes() == before, "the grader never writes the learner's notebook"

    by_id = {r.exercise: r for r in grade.results}
    assert by_id["00.2"].status == "failed" and "records a time" in by_id["00.2"].message
    assert by_id["00.1"].status == by_id["00.3"].status == "passed"
    assert grade.points == max_points("00") - 2 and grade.status == "fail"

    document = classroom_document([grade])
    failed = [t for t in document["tests"] if t["status"] == "fail"]
    assert [t["name"].split()[0] for t in failed] == ["00.2"]
    assert failed[0]["score"] == 0 and failed[0]["max_score"] == 2
    assert failed[0]["message"].startswith("❌ 00.2: the gzip header")
    json.dumps(document)  # serialisable as it is


@pytest.mark.slow
def test_a_cell_that_loops_forever_times_out_alone(tmp_path: Path) -> None:
    """An endless loop in exercise 00.2's cells: 00.2 fails, the exercise after it passes."""

    def edit(nb: nbformat.NotebookNode) -> None:
        cell(nb, "ex-00-2a").source = "while True:\n    pass"

    grade = grade_notebook(variant(tmp_path, "00-warmup.ipynb", edit), timeout=SHORT_TIMEOUT)
    by_id = {r.exercise: r for r in grade.results}
    assert by_id["00.2"].status == "failed"
    assert by_id["00.2"].message.startswith(f"timed out after {SHORT_TIMEOUT} s (cell ")
    assert by_id["00.1"].status == by_id["00.3"].status == "passed"
    assert grade.error is None


@pytest.mark.slow
def test_a_function_that_loops_forever_times_out_in_the_grader_too(tmp_path: Path) -> None:
    """digest_of loops only when called: its check is interrupted, the next one still runs."""

    def edit(nb: nbformat.NotebookNode) -> None:
        keep = {"imports", "ex-00-1", "ex-00-2a", "ex-00-2b", "ex-00-3", "check-00-3"}
        nb.cells = [c for c in nb.cells if c.id in keep or c.cell_type == "markdown"]
        cell(nb, "ex-00-1").source = "def digest_of(data):\n    while True:\n        pass"

    grade = grade_notebook(variant(tmp_path, "00-warmup.ipynb", edit), timeout=SHORT_TIMEOUT)
    by_id = {r.exercise: r for r in grade.results}
    assert by_id["00.1"].status == "failed"
    assert by_id["00.1"].message == f"timed out after {SHORT_TIMEOUT} s"
    assert by_id["00.2"].status == "failed", "00.2 calls digest_of, so it loops too"
    assert by_id["00.3"].status == "passed"


@pytest.mark.parametrize(
    ("source", "graded"),
    [
        ('check("02.1")', "pass  # the grader checks it"),
        ("summary('02')", "pass  # the grader checks it"),
        (
            'my_cgroup_remove(hog)\ncheck("03.5")',
            "my_cgroup_remove(hog)\npass  # the grader checks it",
        ),
        ('result = check("02.1")', 'result = check("02.1")'),
        ('if ready:\n    check("02.1")', 'if ready:\n    check("02.1")'),
        ('check("02.1", verbose=True)', 'check("02.1", verbose=True)'),
    ],
)
def test_only_whole_feedback_lines_are_left_to_the_grader(source: str, graded: str) -> None:
    assert without_feedback(source) == graded


def test_the_learners_own_check_lines_do_not_run_when_graded(tmp_path: Path) -> None:
    """The grader's cells run every check once; the learner's check() and summary() lines
    would run them again (a hanging answer would cost its limit three times)."""
    ran = tmp_path / "ran"

    def edit(nb: nbformat.NotebookNode) -> None:
        note = f"open({str(ran)!r}, 'a').write"
        fakes = f"def check(_):\n    {note}('check ')\n\n\ndef summary(_):\n    {note}('summary ')"
        cell(nb, "imports").source += "\n\n\n" + fakes + "\n"
        cell(nb, "check-00-3").source = f"{note}('kept ')\ncheck(\"00.3\")"

    grade = grade_notebook(variant(tmp_path, "00-warmup.ipynb", edit))
    assert ran.read_text() == "kept "
    assert {r.status for r in grade.results} == {"passed"}


@pytest.mark.slow
def test_a_cell_that_kills_the_kernel_costs_only_its_exercise(tmp_path: Path) -> None:
    def edit(nb: nbformat.NotebookNode) -> None:
        index = nb.cells.index(cell(nb, "names"))
        nb.cells.insert(index, new_code_cell("import os\nos._exit(1)"))

    grade = grade_notebook(variant(tmp_path, "00-warmup.ipynb", edit))
    by_id = {r.exercise: r for r in grade.results}
    assert by_id["00.2"].status == "failed" and "kernel died in cell" in by_id["00.2"].message
    assert by_id["00.1"].status == by_id["00.3"].status == "passed"


# --- folders of submissions ---------------------------------------------------------------


def test_a_folder_of_submissions_gives_a_csv_row_per_learner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    submissions = tmp_path / "submissions"
    variant(submissions, "alice/00-warmup.ipynb", lambda nb: None)
    variant(submissions, "bob.ipynb", lambda nb: None, src=ROOT / "labs" / "00-warmup.ipynb")
    (submissions / ".ipynb_checkpoints").mkdir()
    variant(submissions, ".ipynb_checkpoints/bob-checkpoint.ipynb", lambda nb: None)

    grades_csv, grades_json = tmp_path / "grades.csv", tmp_path / "grades.json"
    status = main(["grade", str(submissions), "--csv", str(grades_csv), "--json", str(grades_json)])
    assert status == 0, "grading succeeded, whatever the scores"

    with grades_csv.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    full = str(max_points("00"))
    assert [(r["learner"], r["points"], r["max_points"]) for r in rows] == [
        ("alice", full, full),
        ("bob", "0", full),
    ]
    assert rows[0]["notebook"].endswith("alice/00-warmup.ipynb") and rows[1]["lab"] == "00"

    wrapper = json.loads(grades_json.read_text(encoding="utf-8"))
    assert wrapper["version"] == 1 and wrapper["score"] == int(full)
    assert [n["learner"] for n in wrapper["notebooks"]] == ["alice", "bob"]
    assert all("tests" in n and n["version"] == 1 for n in wrapper["notebooks"])
    out = capsys.readouterr().out
    assert "learner" in out and "alice" in out and "bob" in out


def test_find_submissions(tmp_path: Path) -> None:
    for name in ("b.ipynb", "a/x/00-warmup.ipynb", "a/.ipynb_checkpoints/y.ipynb", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    assert find_submissions(tmp_path) == [
        ("a", tmp_path / "a" / "x" / "00-warmup.ipynb"),
        ("b", tmp_path / "b.ipynb"),
    ]


# --- small parts, no kernel -----------------------------------------------------------------


def test_lab_of_reads_the_name_then_the_check_cells(tmp_path: Path) -> None:
    assert lab_of(Path("05-layers.ipynb")) == "05"
    nb = nbformat.read(WARMUP, as_version=4)
    assert lab_of(Path("alice.ipynb"), nb) == "00"
    nb.cells = [c for c in nb.cells if "check(" not in c.source]
    with pytest.raises(NotebookError, match="--lab NN"):
        lab_of(Path("alice.ipynb"), nb)


def test_unreadable_or_missing_notebooks_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "00-broken.ipynb").write_text("{not json")
    with pytest.raises(NotebookError, match="not a readable notebook"):
        grade_notebook(tmp_path / "00-broken.ipynb")
    assert main(["grade", str(tmp_path / "nope.ipynb")]) == 1
    assert "no notebook or folder at" in capsys.readouterr().err
    with pytest.raises(NotebookError, match=r"no exercise 00\.7"):
        grade_notebook(WARMUP, only=["00.7"])


def test_only_result_lines_with_this_runs_nonce_count() -> None:
    ex = exercises("00")[0]
    good = Result("00.1", "passed", 2, 2, "passed").to_dict()
    forged = {**good, "points": 99}
    text = (
        f"@@hardway-grade-other@@ {json.dumps(forged)}\n@@hardway-grade-mine@@ {json.dumps(good)}"
    )
    output = new_output("stream", name="stdout", text=text + "\n")
    parsed = _parse(new_code_cell("", outputs=[output]), ex, "@@hardway-grade-mine@@ ", None)
    assert parsed == Result("00.1", "passed", 2, 2, "passed")
    nothing = _parse(new_code_cell("", outputs=[]), ex, "@@hardway-grade-mine@@ ", None)
    assert nothing.status == "error" and nothing.points == 0


def test_only_grades_the_named_exercises() -> None:
    grade = grade_notebook(ROOT / "labs" / "00-warmup.ipynb", only=["00.3"])
    assert [(r.exercise, r.status) for r in grade.results] == [("00.3", "not attempted")]
    assert grade.max_points == 2


def test_a_real_check_s_cell_gets_the_longer_limit_a_pure_one_keeps_the_grader_s() -> None:
    from hardway.course.autograde import REAL_CHECK_TIMEOUT, _grader_source, _limit

    real = frozenset({"04.5"})
    assert _limit(_grader_source("04.5", "@@"), 20, real) == REAL_CHECK_TIMEOUT
    assert _limit(_grader_source("04.1", "@@"), 20, real) == 20
    assert _limit("check('04.5')", 20, real) == 20  # a learner's own cell keeps the limit
    assert _limit(_grader_source("04.5", "@@"), 900, real) == 900
