"""Measure how long each chapter takes to execute, for the instructor's kit.

    .venv/bin/python tools/time_chapters.py [--write] [--json FILE] [NOTEBOOK ...]

Executes each notebook (default: every ``notebooks/NN-*.ipynb``) top to bottom in a fresh
kernel, as nbval and ``tools/execute_notebook.py`` do, and prints a Markdown table of wall
times. That is the floor of a chapter's time in a workshop — the machine's share; the
learner's reading and typing come on top (docs/instructors.md adds them). ``--write``
keeps the outputs, exactly as ``tools/execute_notebook.py`` commits them.

Like the test suite, it sets ``HARDWAY_SESSION`` (chapter 11 cleans up only what carries
it) and starts a registry of its own on a free port with its state in a temporary
directory (chapters 07-08 push to it), stopped at the end: the registry of ``make lab``
is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from execute_notebook import execute  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_copy(path: Path, timeout: int) -> None:
    """Execute *path* and throw the outputs away (the committed file stays as it is)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},
    )  # fmt: skip
    client.execute()


def machine() -> str:
    """The OS, kernel and CPU count: what the timings depend on (no host name)."""
    try:
        name = platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        name = platform.system()
    return f"{name}, kernel {platform.release()}, {os.cpu_count()} CPU(s)"


def table(rows: list[dict]) -> str:
    lines = ["| chapter | code cells | execution (s) |", "|---|---:|---:|"]
    lines += [f"| {r['chapter']} | {r['cells']} | {r['seconds']:.0f} |" for r in rows]
    total = sum(r["seconds"] for r in rows)
    lines.append(f"| **all** | {sum(r['cells'] for r in rows)} | {total:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--write", action="store_true", help="keep outputs (execute_notebook)")
    parser.add_argument("--json", type=Path, help="also write the timings here")
    parser.add_argument("--timeout", type=int, default=600, help="per cell, seconds")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))

    state = tempfile.mkdtemp(prefix="hardway-timing-")
    os.environ.update(
        HARDWAY_STATE_DIR=state,
        HARDWAY_REGISTRY_PORT=str(free_port()),
        HARDWAY_SESSION=uuid.uuid4().hex,  # tags cgroups: chapter 11 cleans up only its own
    )
    from hardway.distribution.server import local_registry

    rows = []
    try:
        local_registry.start()  # inside the try: a failed start still removes its state
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            cells = sum(1 for c in nb.cells if c.cell_type == "code")
            began = time.monotonic()
            execute(path, args.timeout) if args.write else run_copy(path, args.timeout)
            seconds = time.monotonic() - began
            rows.append({"chapter": path.stem, "cells": cells, "seconds": round(seconds, 1)})
            print(f"{path.stem}: {seconds:.1f} s", file=sys.stderr, flush=True)
    finally:
        local_registry.stop()
        shutil.rmtree(state, ignore_errors=True)
    print(f"Measured on {machine()}, {time.strftime('%Y-%m-%d', time.gmtime())}:\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "chapters": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
