"""hardway.sys.mountinfo
~~~~~~~~~~~~~~~~~~~~~

``/proc/<pid>/mountinfo``, read once, the same way for everyone who asks: the cgroup
chapter looks for cgroup hierarchies in it, cleanup for the course's mount points.

A line is ``ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS…] - TYPE SOURCE SUPER-OPTIONS``;
the kernel writes space, tab, newline and backslash in paths as octal escapes
(``\\040``), so a path must be unescaped before it is compared with a real one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Mount", "parse_mountinfo", "read_mountinfo", "unescape_mount_path"]


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/<pid>/mountinfo``."""

    mount_point: Path
    root: str  #: the directory of the filesystem that is mounted there
    fstype: str
    source: str  #: as the kernel writes it (escaped)
    super_options: tuple[str, ...]


def unescape_mount_path(field: str) -> str:
    r"""A path as mountinfo writes it, with ``\040`` (space), ``\011`` (tab), ``\012``
    (newline) and ``\134`` (backslash) turned back into characters.

    >>> unescape_mount_path(r"/tmp/hardway-01-x/my\040root")
    '/tmp/hardway-01-x/my root'
    """
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse mountinfo text; lines that are not mountinfo lines are skipped.

    >>> m = parse_mountinfo("35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory")
    >>> m[0].fstype, m[0].mount_point, m[0].source, m[0].super_options
    ('cgroup', PosixPath('/sys/fs/cgroup/memory'), 'cgroup', ('rw', 'memory'))
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        fstype = fields[dash + 1]
        source = fields[dash + 2] if len(fields) > dash + 2 else ""
        super_options = fields[dash + 3] if len(fields) > dash + 3 else ""
        point, root = Path(unescape_mount_path(fields[4])), unescape_mount_path(fields[3])
        mounts.append(Mount(point, root, fstype, source, tuple(super_options.split(","))))
    return mounts


def read_mountinfo(pid: int | str = "self") -> list[Mount]:
    """The mounts ``pid`` sees (default: this process); ``[]`` if it is gone."""
    try:
        with open(f"/proc/{pid}/mountinfo", "rb") as f:
            return parse_mountinfo(f.read().decode(errors="surrogateescape"))
    except OSError:
        return []
