"""Lab 05's checks of my_write_layer and my_apply_layer: the solution passes, the blank lab
is not attempted, and each realistic wrong answer fails with a message naming its mistake.
(05.1–05.5 are pure functions; tests/test_autograde.py grades the blank lab and the solution.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from labcode import ROOT, edited_solution, failed, namespace

from hardway.course.autograde import grade_notebook
from hardway.course.checks import lab05
from hardway.course.grading import run_check


def test_the_solution_and_the_course_s_reference_pass() -> None:
    learner = namespace("solutions", "05")
    for exercise in ("05.6", "05.7", "05.8"):
        assert run_check(exercise, learner).status == "passed", exercise
    course = dict(lab05.REFERENCE)
    for exercise in ("05.6", "05.7", "05.8"):
        assert run_check(exercise, course).status == "passed", exercise


def test_the_blank_lab_is_not_attempted() -> None:
    blank = namespace("labs", "05")
    for exercise in ("05.6", "05.7", "05.8"):
        assert run_check(exercise, blank).status == "not attempted", exercise


WRITER = [
    pytest.param(
        [
            (
                'return f"sha256:{digest}", f"sha256:{diff_id}", stream.size',
                'return f"sha256:{diff_id}", f"sha256:{digest}", stream.size',
            )
        ],
        "swapped digest and diff_id",
        id="digest-and-diff-id-swapped",
    ),
    pytest.param(
        [
            (
                "for name in sorted(os.listdir(src / prefix)):",
                "for name in os.listdir(src / prefix):",
            )
        ],
        "sorts the names",
        id="listdir-order",
    ),
    pytest.param(
        [
            (
                'info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""',
                'info.uid, info.gid, info.uname, info.gname = 0, 0, "", ""',
            )
        ],
        "set every mtime to 0",
        id="mtime-kept",
    ),
    pytest.param(
        [
            (
                'info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""',
                "info.mtime = 0",
            )
        ],
        "owner",
        id="owner-kept",
    ),
    pytest.param(
        [
            (
                "self.send(self.gzip.compress(data))",
                'self.pending = getattr(self, "pending", b"") + self.gzip.compress(data)',
            ),
            ("self.send(self.gzip.flush())", "self.send(self.pending + self.gzip.flush())"),
        ],
        "at once",
        id="whole-layer-in-memory",
    ),
    pytest.param(
        [
            (
                "info = tar.gettarinfo(src / name, arcname=name)",
                "info = tar.gettarinfo(os.path.realpath(src / name), arcname=name)",
            )
        ],
        "is a symlink",
        id="symlink-followed",
    ),
    pytest.param(
        [
            (
                "info = tar.gettarinfo(src / name, arcname=name)",
                "tar.inodes.clear()\n            info = tar.gettarinfo(src / name, arcname=name)",
            )
        ],
        "hard link entry",
        id="hard-link-stored-twice",
    ),
]

OS_WALK = """
def my_write_layer(src, out):
    src, stream = Path(src), HashingGzip(out)
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in os.walk(src):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = Path(top) / name
                info = tar.gettarinfo(path, arcname=str(path.relative_to(src)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if info.isreg():
                    with open(path, "rb") as data:
                        tar.addfile(info, data)
                else:
                    tar.addfile(info)
    stream.close()
    return "sha256:" + stream.stored.hexdigest(), "sha256:" + stream.plain.hexdigest(), stream.size
"""


@pytest.mark.parametrize(("edits", "words"), WRITER)
def test_05_6_rejects_each_wrong_writer(edits: list[tuple[str, str]], words: str) -> None:
    failed("05.6", edited_solution("05", *edits), words)


def test_05_6_rejects_os_walk_s_order_files_before_directories() -> None:
    failed("05.6", edited_solution("05", extra=OS_WALK), "sorts the names")


FIRST_PASS = "for member in members:  # first: the whiteouts hide the layers below"
SKIP_WHITEOUTS = """            if not base or base.startswith(".wh."):
                continue"""
ONE_PASS = """            if base == ".wh..wh..opq":
                for child in os.listdir(inside(rootfs, parent)):
                    remove(inside(rootfs, parent) / child)
                continue
            if base.startswith(".wh."):
                remove(inside(rootfs, parent) / base[4:])
                continue
            if not base:
                continue"""
OPAQUE_LATE = """            if base == ".wh..wh..opq":
                for child in os.listdir(inside(rootfs, parent)):
                    remove(inside(rootfs, parent) / child)
                continue
            if not base or base.startswith(".wh."):
                continue"""

APPLIER = [
    pytest.param(
        [(FIRST_PASS, "for member in []:"), (SKIP_WHITEOUTS, ONE_PASS)],
        "a whiteout hides the *lower* layers only",
        id="whiteouts-in-tar-order",
    ),
    pytest.param(
        [
            (
                '            if base == ".wh..wh..opq":\n                where',
                "            if False:\n                where",
            ),
            (SKIP_WHITEOUTS, OPAQUE_LATE),
        ],
        "never this layer's own entries",
        id="opaque-deletes-the-layer-s-own-entries",
    ),
    pytest.param(
        [
            (
                'if base == ".wh..wh..opq":\n                where',
                'if base == "never":\n                where',
            )
        ],
        "removes everything the lower",
        id="opaque-ignored",
    ),
    pytest.param(
        [
            (
                "os.link(inside(rootfs, safe_name(member.linkname)), path)",
                "shutil.copy2(inside(rootfs, safe_name(member.linkname)), path)",
            )
        ],
        "hard links",
        id="hard-link-copied",
    ),
]


@pytest.mark.parametrize(("edits", "words"), APPLIER)
def test_05_7_rejects_each_wrong_applier(edits: list[tuple[str, str]], words: str) -> None:
    failed("05.7", edited_solution("05", *edits), words)


def test_05_7_a_whiteout_of_a_directory_with_os_remove_is_the_learner_s_error() -> None:
    learner = edited_solution("05", ("        shutil.rmtree(path)\n", "        os.remove(path)\n"))
    result = run_check("05.7", learner)
    assert result.status == "error" and "IsADirectoryError" in result.message, result


def test_05_7_a_file_in_the_way_of_a_directory_is_the_learner_s_error() -> None:
    learner = edited_solution(
        "05",
        (
            "                if path.is_symlink() or not path.is_dir():\n"
            "                    remove(path)\n"
            "                    path.mkdir()",
            "                path.mkdir(exist_ok=True)",
        ),
    )
    result = run_check("05.7", learner)
    assert result.status == "error" and "FileExistsError" in result.message, result


HOSTILE = [
    pytest.param(
        [
            (
                "            where = inside(rootfs, parent)\n            where.mkdir(",
                "            where = rootfs / parent\n            where.mkdir(",
            )
        ],
        "the symlink evil -> /outside, then evil/canary",
        id="symlink-followed-out-of-the-root",
    ),
    pytest.param(
        [
            (
                "os.link(inside(rootfs, safe_name(member.linkname)), path)",
                "os.link(rootfs / member.linkname, path)",
            )
        ],
        "a hard link to /outside/secret",
        id="hard-link-target-outside",
    ),
    pytest.param(
        [
            (
                "            remove(path)\n            if member.issym():",
                "            if member.issym():",
            ),
            ('open(path, "xb")', 'open(path, "wb")'),
        ],
        "then a file evil",
        id="written-through-a-symlink",
    ),
    pytest.param(
        [
            (
                'if name.startswith("/") or ".." in name.split("/"):',
                'if ".." in name.split("/"):',
            ),
            ('return name.strip("/")', 'return name.rstrip("/")'),
            (
                "            where = inside(rootfs, parent)\n            where.mkdir(",
                "            where = Path(os.path.join(rootfs, parent))\n            where.mkdir(",
            ),
        ],
        "an absolute name",
        id="absolute-name-joined",
    ),
]


@pytest.mark.parametrize(("edits", "words"), HOSTILE)
def test_05_8_catches_each_escape(edits: list[tuple[str, str]], words: str) -> None:
    failed("05.8", edited_solution("05", *edits), words)


def test_05_8_refusing_every_layer_is_not_safe_but_useless() -> None:
    refuses = "def my_apply_layer(layer, rootfs):\n    raise ValueError('no')\n"
    result = run_check("05.8", edited_solution("05", extra=refuses))
    assert result.status == "failed" and "ordinary layer" in result.message, result


@pytest.mark.slow
def test_the_grader_stops_a_hanging_layer_writer_and_its_child_and_grades_the_rest(
    tmp_path: Path,
) -> None:
    """my_write_layer starts a process and never returns: 05.6 fails at its time limit, the
    process is gone, and the applier's exercises (and the lab's total) are still graded."""
    notebook = json.loads((ROOT / "solutions" / "05-layers.ipynb").read_text(encoding="utf-8"))
    marker = f"{os.getpid()}.57"
    for cell in notebook["cells"]:
        if cell.get("id") == "lab05-6":
            cell["source"] = (
                "".join(cell["source"])
                + "\n\n\ndef my_write_layer(src, out):\n"
                + f"    subprocess.Popen(['sleep', '{marker}'])\n"
                + "    while True:\n        pass\n"
            )
        if cell.get("id") == "f832c25f":
            cell["source"] = "import subprocess\n" + "".join(cell["source"])
    path = tmp_path / "05-layers.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    grade = grade_notebook(path, timeout=20)  # the try-it cell's limit: it hangs too
    by_id = {r.exercise: r for r in grade.results}
    # the try-it cell calls it in the kernel (the cell's time limit), the check in a child
    assert by_id["05.6"].status == "failed" and "timed out after" in by_id["05.6"].message
    assert by_id["05.7"].status == by_id["05.8"].status == "passed"
    assert grade.error is None
    sleeping = [p for p in Path("/proc").glob("[0-9]*/cmdline") if marker in _cmdline(p)]
    assert not sleeping, "the learner's child outlived the check"


def _cmdline(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except OSError:
        return ""
