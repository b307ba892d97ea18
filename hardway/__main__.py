"""``python -m hardway …``: the command line an instructor, a script or CI uses."""

from hardway.cli import main

raise SystemExit(main())
