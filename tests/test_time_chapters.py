"""tools/time_chapters.py: the instructor's timings come from really executing a chapter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def test_times_a_chapter_without_touching_it(tmp_path: Path) -> None:
    chapter = ROOT / "notebooks/00-welcome.ipynb"
    before = chapter.read_bytes()
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools/time_chapters.py"), str(chapter),
         "--json", str(tmp_path / "t.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    cells = sum(c.cell_type == "code" for c in nbformat.read(chapter, as_version=4).cells)
    assert f"| 00-welcome | {cells} |" in out.stdout
    assert out.stdout.startswith("Measured on ") and "CPU(s)" in out.stdout
    timing = json.loads((tmp_path / "t.json").read_text())["chapters"]
    assert [t["chapter"] for t in timing] == ["00-welcome"] and timing[0]["seconds"] > 0
    assert chapter.read_bytes() == before, "without --write the notebook is left as it is"
