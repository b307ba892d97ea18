"""``python -m hardway …``: the command line an instructor, a script or CI uses."""

import gc

from hardway.cli import main

status = main()
# The command is done: the collector need not scan every object of requests, urllib3 and
# hardway again while the interpreter shuts down (~40 ms of a 0.25 s push). atexit
# handlers and finalizers still run.
gc.freeze()
raise SystemExit(status)
