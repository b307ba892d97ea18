"""Build an image with the layer cache (``hardway.build.builder``), as the rebuild benchmark runs
it.

    python bench/build_driver.py --cache DIR --out oci:LAYOUT:TAG --report FILE \\
        NAME=SRC:DEST [NAME=SRC:DEST ...]

One layer per ``NAME=SRC:DEST`` source, in that order; the image goes to ``--out`` (an
``oci:`` layout: blobs already there are not copied again); ``--report`` gets one JSON
object per layer: name, built or cached, bytes read and written, digest — which is how
the benchmark shows which layers a rebuild redid. Not a test.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hardway.build.builder import LayerSource, build
from hardway.build.cache import Cache
from hardway.distribution.transports import write_image


def source(text: str) -> LayerSource:
    """``NAME=SRC:DEST`` → a :class:`LayerSource`."""
    name, _, rest = text.partition("=")
    src, _, dest = rest.rpartition(":")
    return LayerSource(name, Path(src), dest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", required=True, help="oci:LAYOUT:TAG")
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("sources", nargs="+", type=source, metavar="NAME=SRC:DEST")
    args = parser.parse_args()
    result = build(args.sources, cache=Cache(args.cache))
    write_image(result.image, args.out)
    rows = [
        {
            "name": r.name,
            "cached": r.cached,
            "read": r.bytes_read,
            "written": r.bytes_written,
            "digest": str(r.digest),
        }
        for r in result.reports
    ]
    args.report.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
