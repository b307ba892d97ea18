"""Execute course notebooks in place, the way they are committed.

For authors: after editing `notebooks/NN-*.ipynb` or `solutions/NN-*.ipynb`, run

    .venv/bin/python tools/execute_notebook.py solutions/05-layers.ipynb [...]

It runs every cell in a fresh kernel (cwd = the notebook's folder, like nbval), then
keeps only the outputs nbval needs: cells tagged `nbval-ignore-output` lose theirs
(they would only carry machine-specific text), execution timing and widget state are
dropped, and cell ids stay as they are. Regenerate the labs afterwards: `make labs`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, timeout: int = 600) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        record_timing=False,
        store_widget_state=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code" and "nbval-ignore-output" in cell.metadata.get("tags", []):
            cell.outputs = []
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        execute(Path(arg))
        print(f"executed {arg}")
