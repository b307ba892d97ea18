"""hardway.course.labgen: labs are generated from solutions, deterministically, and kept in step."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from hardway.cli import main
from hardway.course.labgen import generate, generate_all, lab_text, stale_labs, strip_cell
from hardway.errors import MarkerError

ROOT = Path(__file__).resolve().parent.parent


def solution_notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return nb


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def lab_cells(src: Path, tmp_path: Path) -> list[nbformat.NotebookNode]:
    dst = tmp_path / "labs" / src.name
    generate(src, dst)
    return nbformat.read(dst, as_version=4).cells


# --- strip_cell -------------------------------------------------------------------------


def test_solution_becomes_stub_indented_like_the_marker() -> None:
    source = "\n".join(
        [
            "def f(x):",
            "    y = 1",
            "    ### BEGIN SOLUTION",
            "    return x + y",
            "    ### END SOLUTION",
            "",
            "class A:",
            "    def g(self):",
            "        ### BEGIN SOLUTION",
            "        if True:",
            "            return 2",
            "        ### END SOLUTION",
        ]
    )
    assert strip_cell(source, "code").split("\n") == [
        "def f(x):",
        "    y = 1",
        "    # YOUR CODE HERE",
        "    raise NotImplementedError()",
        "",
        "class A:",
        "    def g(self):",
        "        # YOUR CODE HERE",
        "        raise NotImplementedError()",
    ]


def test_top_level_solution_and_tabs() -> None:
    assert strip_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "code") == (
        "# YOUR CODE HERE\nraise NotImplementedError()"
    )
    assert strip_cell("if a:\n\t### BEGIN SOLUTION\n\tb()\n\t### END SOLUTION", "code") == (
        "if a:\n\t# YOUR CODE HERE\n\traise NotImplementedError()"
    )


def test_hidden_tests_disappear_with_their_markers() -> None:
    source = "check('01.1')\n### BEGIN HIDDEN TESTS\nassert secret()\n### END HIDDEN TESTS\nend()"
    assert strip_cell(source, "code") == "check('01.1')\nend()"


def test_markdown_answer() -> None:
    source = "Why?\n\n### BEGIN SOLUTION\nBecause gzip stores a time.\n### END SOLUTION"
    assert strip_cell(source, "markdown") == "Why?\n\nYOUR ANSWER HERE"


def test_text_without_markers_is_untouched() -> None:
    source = "x = '### BEGIN SOLUTION'  # only whole lines are markers\n  \nprint(x)\n"
    assert strip_cell(source, "code") == source


@pytest.mark.parametrize(
    ("source", "line", "says"),
    [
        ("a\n### BEGIN SOLUTION\nb", 2, "never closed"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", 2, "cannot be nested"),
        ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n", 2, "cannot be nested"),
        ("x\n### END SOLUTION", 2, "without its '### BEGIN SOLUTION'"),
        ("### BEGIN SOLUTION\n### END HIDDEN TESTS", 2, "without its '### BEGIN HIDDEN TESTS'"),
        ("### BEGIN HIDDEN TESTS\nx", 1, "never closed"),
    ],
)
def test_bad_markers_name_the_line(source: str, line: int, says: str) -> None:
    with pytest.raises(MarkerError) as caught:
        strip_cell(source, "code", where="here")
    assert f"here, line {line}:" in str(caught.value)
    assert says in str(caught.value)


# --- whole notebooks --------------------------------------------------------------------


def test_lab_notebook(tmp_path: Path) -> None:
    answer = new_code_cell(
        "def f():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION",
        id="answer",
        execution_count=3,
        outputs=[new_output("stream", name="stdout", text="secret\n")],
    )
    answer.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    only = new_code_cell("print('for the author')", id="only")
    only.metadata["tags"] = ["solution-only"]
    checked = new_code_cell("check('01.1')", id="check", execution_count=4)
    checked.metadata["tags"] = ["nbval-check-output"]
    essay = new_markdown_cell("### BEGIN SOLUTION\nBecause.\n### END SOLUTION", id="essay")
    nb = solution_notebook(new_markdown_cell("# T", id="title"), answer, only, checked, essay)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    src = write(nb, tmp_path / "solutions" / "01-demo.ipynb")

    cells = lab_cells(src, tmp_path)
    assert [c.id for c in cells] == ["title", "answer", "check", "essay"], "ids are kept"
    assert "return 42" not in cells[1].source and "raise NotImplementedError()" in cells[1].source
    assert cells[1].outputs == [] and cells[1].execution_count is None
    assert "execution" not in cells[1].metadata
    assert cells[2].metadata["tags"] == ["nbval-check-output"], "nbval tags are kept"
    assert cells[3].source == "YOUR ANSWER HERE"
    lab = nbformat.read(tmp_path / "labs" / "01-demo.ipynb", as_version=4)
    assert "widgets" not in lab.metadata
    nbformat.validate(lab)
    assert "42" in nbformat.read(src, as_version=4).cells[1].source, "the solution is untouched"


def test_marker_error_names_file_cell_and_id(tmp_path: Path) -> None:
    broken = new_code_cell("x = 1\n### BEGIN SOLUTION\ny = 2", id="broken-cell")
    nb = solution_notebook(new_markdown_cell("# T", id="t"), new_code_cell("a", id="a"), broken)
    src = write(nb, tmp_path / "solutions" / "02-broken.ipynb")
    with pytest.raises(MarkerError) as caught:
        generate(src, tmp_path / "labs" / "02-broken.ipynb")
    message = str(caught.value)
    assert "02-broken.ipynb" in message
    assert "cell 3 (id broken-cell), line 2" in message
    assert not (tmp_path / "labs" / "02-broken.ipynb").exists(), "no half-written lab"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    src = ROOT / "solutions" / "00-warmup.ipynb"
    generate(src, tmp_path / "a.ipynb")
    generate(src, tmp_path / "b.ipynb")
    assert (tmp_path / "a.ipynb").read_bytes() == (tmp_path / "b.ipynb").read_bytes()


def test_old_notebooks_without_ids_get_stable_ids(tmp_path: Path) -> None:
    nb = solution_notebook(new_markdown_cell("# T"), new_code_cell("x = 1"))
    nb.nbformat_minor = 4
    for cell in nb.cells:
        del cell["id"]
    src = write(nb, tmp_path / "03-old.ipynb")
    assert lab_text(src) == lab_text(src)
    ids = [c.id for c in nbformat.reads(lab_text(src), as_version=4).cells]
    assert len(set(ids)) == 2


# --- the repository's own labs ------------------------------------------------------------


def test_repository_labs_are_in_step_with_solutions() -> None:
    """labs/ is exactly what generate() makes of solutions/ now (the staleness test)."""
    solutions = sorted((ROOT / "solutions").glob("[0-9][0-9]-*.ipynb"))
    assert solutions, "no solutions found"
    for src in solutions:
        lab = ROOT / "labs" / src.name
        assert lab.is_file(), f"{lab.name} is missing: run make labs"
        assert lab.read_text(encoding="utf-8") == lab_text(src), (
            f"labs/{src.name} is stale: run make labs"
        )
    assert stale_labs(ROOT / "solutions", ROOT / "labs") == []


def test_every_lab_exercise_is_a_stub() -> None:
    for lab in sorted((ROOT / "labs").glob("*.ipynb")):
        text = lab.read_text(encoding="utf-8")
        assert "### BEGIN" not in text and "### END" not in text
        assert "raise NotImplementedError()" in text


def copy_course(tmp_path: Path) -> tuple[Path, Path]:
    solutions, labs = tmp_path / "solutions", tmp_path / "labs"
    shutil.copytree(ROOT / "solutions", solutions)
    shutil.copytree(ROOT / "labs", labs)
    return solutions, labs


def test_check_fails_after_a_solution_edit_and_make_labs_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    solutions, labs = copy_course(tmp_path)
    dirs = ["--solutions", str(solutions), "--labs", str(labs)]
    assert main(["labs", "--check", *dirs]) == 0

    src = solutions / "00-warmup.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.cells[0].source += "\n\nOne more sentence."
    nbformat.write(nb, src)
    capsys.readouterr()
    assert main(["labs", "--check", *dirs]) == 1
    out = capsys.readouterr().out
    assert "00-warmup.ipynb (out of date" in out and "make labs" in out

    assert main(["labs", *dirs]) == 0
    assert main(["labs", "--check", *dirs]) == 0
    assert "One more sentence." in (labs / "00-warmup.ipynb").read_text(encoding="utf-8")


def test_missing_and_orphan_labs_are_stale_and_generate_all_fixes_them(tmp_path: Path) -> None:
    solutions, labs = copy_course(tmp_path)
    (labs / "00-warmup.ipynb").unlink()
    shutil.copy(solutions / "00-warmup.ipynb", labs / "99-gone.ipynb")
    stale = stale_labs(solutions, labs)
    assert any("00-warmup.ipynb (missing)" in s for s in stale)
    assert any("99-gone.ipynb (no solution" in s for s in stale)

    written = generate_all(solutions, labs)
    assert labs / "00-warmup.ipynb" in written
    assert not (labs / "99-gone.ipynb").exists()
    assert stale_labs(solutions, labs) == []


def test_marker_errors_reach_the_command_line_without_a_traceback(tmp_path: Path) -> None:
    solutions, labs = copy_course(tmp_path)
    src = solutions / "00-warmup.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.cells.insert(2, new_code_cell("### END SOLUTION", id="stray"))
    nbformat.write(nb, src)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hardway",
            "labs",
            "--solutions",
            str(solutions),
            "--labs",
            str(labs),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "cell 3 (id stray), line 1" in result.stderr
    assert "make labs" not in result.stderr and "To fix:" in result.stderr
    assert "Traceback" not in result.stderr


def test_learner_lines_count_code_inside_solution_regions_only(tmp_path: Path) -> None:
    from hardway.course.labgen import learner_lines

    source = (
        "setup = 1\n"
        "def f():\n"
        "    ### BEGIN SOLUTION\n"
        "    # a comment\n"
        "\n"
        "    x = 1\n"
        "    return x\n"
        "    ### END SOLUTION\n"
        "after = 2\n"
    )
    cells = [
        {"cell_type": "code", "source": source, "metadata": {}, "outputs": []},
        {"cell_type": "markdown", "source": "### BEGIN SOLUTION\nwords\n### END SOLUTION"},
    ]
    path = tmp_path / "01-x.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    assert learner_lines(path) == 2
