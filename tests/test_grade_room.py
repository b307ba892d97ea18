"""Grading a room in one command: a folder with one sub-folder per learner, the
learner × lab summary table, JSON and CSV — on the real blank lab and its solution."""

from __future__ import annotations

import csv
import doctest
import json
import shutil
import subprocess
import sys
from pathlib import Path

import hardway.course.autograde
import hardway.course.grades

ROOT = Path(__file__).resolve().parent.parent


def test_doctests() -> None:
    assert doctest.testmod(hardway.course.autograde).failed == 0
    assert doctest.testmod(hardway.course.grades).attempted > 0
    assert doctest.testmod(hardway.course.grades).failed == 0


def test_a_folder_of_submissions_is_summarised(tmp_path: Path) -> None:
    room = tmp_path / "submissions"
    for learner, folder in (("alice", "solutions"), ("bob", "labs")):
        (room / learner).mkdir(parents=True)
        shutil.copy(ROOT / folder / "00-warmup.ipynb", room / learner)
    shutil.copy(ROOT / "labs/00-warmup.ipynb", room / "carol.ipynb")  # a loose notebook
    out = subprocess.run(
        [sys.executable, "-m", "hardway", "grade", str(room), "--quiet",
         "--json", str(tmp_path / "grades.json"), "--csv", str(tmp_path / "grades.csv")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "exercise" not in out.stdout, "--quiet prints no per-notebook table"
    table = out.stdout.split("\n\n")[-1].splitlines()
    assert table[0].split() == ["learner", "00", "total"]
    rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
    assert rows["alice"] == ["6/6", "6/6"]
    assert rows["bob"] == rows["carol"] == ["0/6", "0/6"]
    with (tmp_path / "grades.csv").open(newline="") as f:
        graded = {row["learner"]: row for row in csv.DictReader(f)}
    assert graded["alice"]["status"] == "pass" and graded["bob"]["status"] == "fail"
    document = json.loads((tmp_path / "grades.json").read_text())
    assert (document["score"], document["max_score"]) == (6, 18)
