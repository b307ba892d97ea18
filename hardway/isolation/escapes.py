"""hardway.isolation.escapes
~~~~~~~~~~~~~~~~~~~~~~~~

The classic ways out of a container that is not hardened, as one shell script that
chapter 04 runs in its own runtime and under runc (and the tests require refused in
both). Every attempt is harmless when it *succeeds*: it writes back the value a file
already has, opens a file without writing to it, mounts inside the container's own
mount namespace, reads one byte. Refusal is proven by the error, never by changing
the host.

====================  ==========================================================
attempt               what stops it
====================  ==========================================================
``mknod``             no ``CAP_MKNOD``
``mknod`` + read      no ``CAP_MKNOD`` (and a ``nodev`` root; the host's device
                      cgroup may refuse the read already)
``/proc/sys``         read-only paths
``sysrq-trigger``     read-only paths
``timer_list``        masked paths (read as empty)
``keyctl``            seccomp (the keyring is not namespaced)
``mount``             no ``CAP_SYS_ADMIN``, and seccomp
``unshare -U``        seccomp (a user namespace needs no capability at all)
====================  ==========================================================

``keyctl`` has no busybox applet: :func:`build_keyctl` compiles a 10-line C program
(static, with the host's ``cc``) into the root filesystem.

>>> parse("keyctl: refused\\nmount: ALLOWED\\n")
{'keyctl': 'refused', 'mount': 'ALLOWED'}
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from hardway.errors import MissingToolError

__all__ = ["ATTEMPTS", "KEYCTL_C", "build_keyctl", "host_disk", "parse", "script"]

#: name -> a shell command that succeeds only if the escape works
ATTEMPTS = {
    "mknod": "mknod /hardway-sda b {device} && rm /hardway-sda",
    "mknod + read": "mknod /hardway-sda b {device} && head -c 1 /hardway-sda",
    "write /proc/sys": "cat /proc/sys/kernel/hostname > /proc/sys/kernel/hostname",
    "open sysrq-trigger": "true > /proc/sysrq-trigger",
    "read timer_list": "head -c 1 /proc/timer_list | grep -q .",
    "keyctl": "/bin/keyctl",
    "mount": "mkdir -p /hardway-mnt && mount -t tmpfs none /hardway-mnt && umount /hardway-mnt",
    "unshare -U": "unshare -U true",
}
#: what an attempt needs that a kernel or a root filesystem may lack
_NEEDS = {"open sysrq-trigger": "/proc/sysrq-trigger", "keyctl": "/bin/keyctl"}

#: ``keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)``: only reads an id
KEYCTL_C = r"""
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    long id = syscall(SYS_keyctl, 0, -3, 0);
    if (id < 0) { perror("keyctl"); return 1; }
    return 0;
}
"""


def host_disk() -> str:
    """``MAJOR MINOR`` of a block device of this machine with data on it (the
    ``mknod`` attempt reads its first byte), from ``/sys/class/block``.

    >>> len(host_disk().split())
    2
    """
    for entry in sorted(Path("/sys/class/block").iterdir()):
        try:
            if int((entry / "size").read_text()) > 0:
                return (entry / "dev").read_text().strip().replace(":", " ")
        except (OSError, ValueError):
            continue
    return "8 0"  # /dev/sda's numbers: refused either way on a machine without disks


def script(device: str | None = None) -> str:
    """One line per attempt: ``NAME: refused``, ``NAME: ALLOWED`` or ``NAME: absent``
    (the kernel or the root has no such thing); leftovers are removed. *device* is
    the block device to ``mknod`` (default: :func:`host_disk`)."""
    lines = []
    disk = device or host_disk()
    for name, template in ATTEMPTS.items():
        command = template.replace("{device}", disk)
        test = f"( {command} ) >/dev/null 2>&1"
        line = f'if {test}; then echo "{name}: ALLOWED"; else echo "{name}: refused"; fi'
        if name in _NEEDS:
            line = f'if [ ! -e {_NEEDS[name]} ]; then echo "{name}: absent"; else {line}; fi'
        lines.append(line)
    lines.append("rm -f /hardway-sda; rmdir /hardway-mnt 2>/dev/null; true")
    return "\n".join(lines) + "\n"


def parse(stdout: str) -> dict[str, str]:
    """``{attempt: outcome}`` from the script's output."""
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


def build_keyctl(bin_dir: str | os.PathLike[str]) -> Path:
    """Compile :data:`KEYCTL_C` as a static program ``keyctl`` in *bin_dir*."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise MissingToolError("no C compiler to build the keyctl probe", fix="apt-get install gcc")
    target = Path(bin_dir) / "keyctl"
    with tempfile.TemporaryDirectory(prefix="hardway-keyctl-") as tmp:
        source = Path(tmp) / "keyctl.c"
        source.write_text(KEYCTL_C)
        subprocess.run([cc, "-static", "-O2", "-o", str(target), str(source)], check=True)
    return target
