"""carry: a later lab takes the learner's functions from an earlier lab's notebook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardway.course import carry as carry_module
from hardway.course.carry import carry, definitions, is_stub
from hardway.errors import NotebookError


def course_double(x: int) -> int:
    return 2 * x


def course_triple(x: int) -> int:
    return 3 * x


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    reference = {"my_double": course_double, "my_triple": course_triple}
    monkeypatch.setattr(carry_module, "_reference", lambda lab: reference)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_notebook(path: Path, *cells: str) -> None:
    path.write_text(
        json.dumps(
            {
                "cells": [
                    {"cell_type": "code", "source": cell, "metadata": {}, "outputs": []}
                    for cell in cells
                ]
                + [{"cell_type": "markdown", "source": "def not_code(): pass", "metadata": {}}],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )


def test_the_learner_s_function_is_carried_and_a_stub_is_replaced(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_notebook(
        lab / "98-thread.ipynb",
        "import os\nFACTOR = 1 << 1\n",
        "def my_double(x):\n    return FACTOR * x + helper()\n\ndef helper():\n    return 0\n",
        "def my_triple(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n",
        "os.mkdir('made-by-a-cell')\nmy_double(1)\n",
        "%time my_double(2)\n!ls\ndef my_double(x):\n    return x + x\n",  # the later wins
        "def broken(:\n",
    )
    double, triple = carry("98", "my_double", "my_triple")
    assert (double(5), triple(5)) == (10, 15)
    assert double is not course_double and triple is course_triple
    assert not (lab / "made-by-a-cell").exists()  # cells that act are not run
    assert capsys.readouterr().out.splitlines() == [
        "my_double: yours, from 98-thread.ipynb",
        "my_triple: the course's (yours in 98-thread.ipynb still raises NotImplementedError)",
    ]


def test_without_the_notebook_or_on_request_the_course_s_version_is_used(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert carry("98", "my_double") is course_double
    write_notebook(lab / "98-thread.ipynb", "def my_double(x):\n    return x + x\n")
    assert carry("98", "my_double", course=True) is course_double
    assert capsys.readouterr().out.splitlines() == [
        "my_double: the course's (lab 98 does not define it yet)",
        "my_double: the course's (as you asked)",
    ]


def test_an_unknown_name_or_lab_says_what_can_be_carried(lab: Path) -> None:
    with pytest.raises(NotebookError, match="my_double, my_triple"):
        carry("98", "my_quadruple")
    with pytest.raises(TypeError, match="name at least one"):
        carry("98")


def test_an_unknown_lab_is_a_clear_error() -> None:
    with pytest.raises(NotebookError, match="no lab '77'"):
        carry("77", "my_rootfs")


def test_definitions_keep_what_defines_and_drop_what_acts() -> None:
    tree = definitions(
        "import os\nfrom pathlib import Path\nA: int = 3\nB = A + 1\nC = os.getcwd()\n"
        "mine = carry('01', 'my_rootfs')\nclass K: pass\nprint(B)\n"
    )
    kinds = [type(node).__name__ for node in tree.body]
    assert kinds == ["Import", "ImportFrom", "AnnAssign", "Assign", "Assign", "ClassDef"]


def test_is_stub_sees_only_the_lab_s_stub() -> None:
    def stub() -> None:
        """Docstrings are fine."""
        raise NotImplementedError()

    def started() -> int:
        x = 1
        raise NotImplementedError(x)

    assert is_stub(stub) and not is_stub(started) and not is_stub(len)
