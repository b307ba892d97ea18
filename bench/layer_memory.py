"""How much memory and time does writing a layer cost?

``write_layer`` streams (tar → sha256 → compressor → sha256 → file), so building a
1 GiB layer should cost a few MB of memory, not a gigabyte. This script builds a tree of
``--size-mib`` MiB (random 2 KiB runs, each written twice: about half compressible), writes
it as a layer in a *fresh child process* for each compression, and reports the child's
peak RSS (``ru_maxrss``) next to its RSS just before the call, plus the throughput.
``--tree DIR`` measures an existing tree instead (e.g. ``/usr/share``: many small files).

    .venv/bin/python bench/layer_memory.py                 # 1 GiB synthetic tree
    .venv/bin/python bench/layer_memory.py --tree /usr/share --compression gzip zstd

Not a test: it takes a minute and needs a couple of GB of free disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
from hardway.image.layers import write_layer
tree, out, compression, impl = sys.argv[1:5]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
info = write_layer(Path(tree), Path(out), compression=compression,
                   implementation=impl or None, source_date_epoch=0)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rss_before_kib": before, "peak_rss_kib": peak,
                  "size": info.size, "codec": info.codec}))
"""


def make_tree(root: Path, size_mib: int, files: int = 16) -> int:
    """``files`` files adding up to ``size_mib`` MiB; returns the byte count."""
    rng = random.Random(5)
    per_file = size_mib * 2**20 // files
    block = 1 << 20
    for index in range(files):
        with open(root / f"blob-{index:02d}.bin", "wb") as fh:
            for _ in range(per_file // block):
                noise = rng.randbytes(block // 2)  # each 2 KiB twice: gzip halves it
                fh.write(b"".join(noise[i : i + 2048] * 2 for i in range(0, len(noise), 2048)))
    return per_file // block * block * files


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                total += os.lstat(path).st_size
    return total


def measure(tree: Path, out: Path, compression: str, impl: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), str(out), compression, impl],
        check=True,
        capture_output=True,
        text=True,
    )
    out.unlink(missing_ok=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--tree", type=Path, help="measure this tree instead of a synthetic one")
    parser.add_argument("--compression", nargs="+", default=["gzip", "gzip/zlib", "zstd", "none"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hardway-bench-"))
    try:
        if args.tree:
            tree, total = args.tree, tree_bytes(args.tree)
        else:
            tree = work / "tree"
            tree.mkdir()
            total = make_tree(tree, args.size_mib)
        print(f"tree: {tree} ({total / 1e6:.0f} MB in regular files)")
        for choice in args.compression:
            compression, _, impl = choice.partition("/")
            r = measure(tree, work / "layer", compression, impl)
            print(
                f"{r['codec']:<34} {total / 1e6 / r['seconds']:7.1f} MB/s  "
                f"ratio {r['size'] / total:5.3f}  peak RSS {r['peak_rss_kib'] / 1024:6.1f} MiB "
                f"(before the call {r['rss_before_kib'] / 1024:.1f} MiB)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
