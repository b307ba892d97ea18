"""hardway.isolation.seccomp
~~~~~~~~~~~~~~~~~~~~~~~~

A seccomp filter, written by hand. Capabilities decide what root may do; seccomp
decides which *system calls* a process may make at all — even an unprivileged one,
which is why Docker refuses ``keyctl`` (the kernel keyring is not namespaced),
``unshare`` (a new user namespace is a path to kernel attack surface), ``mount``,
``bpf``, ``ptrace`` and a few dozen more in every container.

The filter is a *classic BPF* program (the packet filter language of ``tcpdump``)
that the kernel runs on every system call. It reads a ``struct seccomp_data``::

    offset  field
    0       int   nr                   the system call number
    4       u32   arch                 AUDIT_ARCH_*: which ABI made the call
    8       u64   instruction_pointer
    16      u64   args[6]              the arguments (low half first, little endian)

and returns an action: ``SECCOMP_RET_ALLOW``, ``SECCOMP_RET_ERRNO | errno`` (the call
fails with that errno and nothing happens) or ``SECCOMP_RET_KILL_PROCESS``. This module
builds such a program as bytes — pure functions, no system call — and
:func:`hardway.sys.linux.set_seccomp_filter` installs it, in the launcher, right
before ``execve``. The program:

1. checks ``arch``: a number means a different syscall on another ABI (``mount`` is
   165 on x86_64 but 40 on aarch64), so a call from an unexpected ABI is killed; on
   x86_64 the x32 ABI (numbers with bit 30 set) is refused too;
2. refuses ``clone3`` with ``ENOSYS`` (its flags sit in memory a filter cannot read;
   the C library then falls back to ``clone``) and ``clone`` with any ``CLONE_NEW*``
   flag (argument 0) with ``EPERM``;
3. refuses every call on the deny list with ``EPERM``, and allows the rest.

Docker's default profile is an *allow* list of about 350 calls; a deny list of the
dangerous ones is shorter to read and refuses the same escapes (:data:`DENY`).

>>> len(program(["keyctl"], "x86_64")) // INSTRUCTION_SIZE
14
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Sequence
from typing import Any

__all__ = [
    "ARCHES",
    "DENY",
    "INSTRUCTION_SIZE",
    "SYSCALLS",
    "decode",
    "oci_section",
    "program",
]

# <linux/filter.h>: the parts of an instruction's code used here
BPF_LD, BPF_W, BPF_ABS = 0x00, 0x00, 0x20
BPF_JMP, BPF_JEQ, BPF_JGE, BPF_JSET, BPF_K = 0x05, 0x10, 0x30, 0x40, 0x00
BPF_RET = 0x06
# <linux/seccomp.h>: actions
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

#: ``struct sock_filter``: u16 code, u8 jt, u8 jf, u32 k
_INSTRUCTION = struct.Struct("=HBBI")
INSTRUCTION_SIZE = _INSTRUCTION.size
#: offsets in ``struct seccomp_data``
_NR, _ARCH, _ARG0 = 0, 4, 16
#: every ``CLONE_NEW*`` flag clone(2) takes (mount, cgroup, uts, ipc, user, pid, net)
CLONE_NAMESPACES = 0x7E020000
#: on x86_64, the x32 ABI's calls have this bit set in ``nr``
_X32_BIT = 0x40000000

#: ``AUDIT_ARCH_*`` of ``<linux/audit.h>`` for each ``platform.machine()``
ARCHES = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7, "arm64": 0xC00000B7}

#: system call numbers: x86_64 from ``<asm/unistd_64.h>``, aarch64 from
#: ``<asm-generic/unistd.h>``; ``None`` where the call does not exist there
SYSCALLS: dict[str, tuple[int | None, int | None]] = {
    "acct": (163, 89), "add_key": (248, 217), "bpf": (321, 280),
    "clock_adjtime": (305, 266), "clock_settime": (227, 112), "clone": (56, 220),
    "clone3": (435, 435), "create_module": (174, None), "delete_module": (176, 106),
    "finit_module": (313, 273), "fsconfig": (431, 431), "fsmount": (432, 432),
    "fsopen": (430, 430), "fspick": (433, 433), "get_kernel_syms": (177, None),
    "get_mempolicy": (239, 236), "init_module": (175, 105), "ioperm": (173, None),
    "iopl": (172, None), "kcmp": (312, 272), "kexec_file_load": (320, 294),
    "kexec_load": (246, 104), "keyctl": (250, 219), "lookup_dcookie": (212, 18),
    "mbind": (237, 235), "mount": (165, 40), "move_mount": (429, 429),
    "move_pages": (279, 239), "name_to_handle_at": (303, 264), "nfsservctl": (180, 42),
    "open_by_handle_at": (304, 265), "open_tree": (428, 428),
    "perf_event_open": (298, 241), "pivot_root": (155, 41),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "ptrace": (101, 117),
    "query_module": (178, None), "quotactl": (179, 60), "reboot": (169, 142),
    "request_key": (249, 218), "set_mempolicy": (238, 237), "setns": (308, 268),
    "settimeofday": (164, 170), "swapoff": (168, 225), "swapon": (167, 224),
    "sysfs": (139, None), "_sysctl": (156, None), "umount2": (166, 39),
    "unshare": (272, 97), "uselib": (134, None), "userfaultfd": (323, 282),
    "ustat": (136, None),
}  # fmt: skip

#: the calls every container is refused: Docker's default profile leaves these out
#: (module loading, kexec and reboot, the clock, the keyring, mounts and namespaces,
#: tracing other processes, swap, NUMA memory policy, kernel profiling, BPF)
DENY = tuple(sorted(name for name in SYSCALLS if name not in ("clone", "clone3")))


def _number(name: str, arch: str) -> int | None:
    if name not in SYSCALLS:
        raise ValueError(f"unknown system call {name!r}; known: {', '.join(sorted(SYSCALLS))}")
    return SYSCALLS[name][0 if arch == "x86_64" else 1]


def _stmt(code: int, k: int) -> tuple[int, int, int, int]:
    return code, 0, 0, k


def program(deny: Sequence[str] = DENY, arch: str = "x86_64") -> bytes:
    """The filter for *arch* (``platform.machine()``) as the kernel takes it: an array
    of ``struct sock_filter``, refusing the calls in *deny* with ``EPERM``.

    >>> [op[0] for op in decode(program(["mount"], "aarch64"))][:4]
    ['ld arch', 'jeq 0xc00000b7', 'ret KILL_PROCESS', 'ld nr']
    """
    if arch not in ARCHES:
        raise ValueError(f"no seccomp filter for {arch!r}; known: {', '.join(ARCHES)}")
    numbers = sorted({n for name in deny if (n := _number(name, arch)) is not None})
    eperm, enosys = SECCOMP_RET_ERRNO | errno.EPERM, SECCOMP_RET_ERRNO | errno.ENOSYS
    # the tail, from the end: ALLOW, clone's check (ld arg0, jset), EPERM, ENOSYS, ALLOW
    checks: list[tuple[str, int]] = [("jge", _X32_BIT)] if arch == "x86_64" else []
    checks += [("clone3", _number("clone3", arch) or 0), ("clone", _number("clone", arch) or 0)]
    checks += [("deny", n) for n in numbers]
    body: list[tuple[int, int, int, int]] = [
        _stmt(BPF_LD | BPF_W | BPF_ABS, _ARCH),
        (BPF_JMP | BPF_JEQ | BPF_K, 1, 0, ARCHES[arch]),
        _stmt(BPF_RET, SECCOMP_RET_KILL_PROCESS),
        _stmt(BPF_LD | BPF_W | BPF_ABS, _NR),
    ]
    # labels, counted from the first instruction after the checks
    clone_check, deny_at, enosys_at = 1, 3, 4  # 0 is ALLOW, the fall-through
    for i, (kind, value) in enumerate(checks):
        left = len(checks) - i - 1  # checks after this one
        target = {"jge": deny_at, "clone3": enosys_at, "clone": clone_check, "deny": deny_at}
        op = BPF_JGE if kind == "jge" else BPF_JEQ
        body.append((BPF_JMP | op | BPF_K, left + target[kind], 0, value))
    body += [
        _stmt(BPF_RET, SECCOMP_RET_ALLOW),
        _stmt(BPF_LD | BPF_W | BPF_ABS, _ARG0),  # clone's flags, low 32 bits
        (BPF_JMP | BPF_JSET | BPF_K, 0, 2, CLONE_NAMESPACES),  # a CLONE_NEW* bit? EPERM
        _stmt(BPF_RET, eperm),
        _stmt(BPF_RET, enosys),
        _stmt(BPF_RET, SECCOMP_RET_ALLOW),
    ]
    return b"".join(_INSTRUCTION.pack(*op) for op in body)


_RETURNS = {SECCOMP_RET_ALLOW: "ALLOW", SECCOMP_RET_KILL_PROCESS: "KILL_PROCESS"}


def _describe(code: int, k: int) -> str:
    if code == BPF_LD | BPF_W | BPF_ABS:
        return {_NR: "ld nr", _ARCH: "ld arch", _ARG0: "ld arg0"}.get(k, f"ld [{k}]")
    if code == BPF_RET:
        if k in _RETURNS:
            return f"ret {_RETURNS[k]}"
        return f"ret ERRNO({errno.errorcode.get(k & 0xFFFF, k & 0xFFFF)})"
    names = {BPF_JEQ: "jeq", BPF_JGE: "jge", BPF_JSET: "jset"}
    return f"{names[code & 0xF0]} {k:#x}"


def decode(data: bytes) -> list[tuple[str, int, int]]:
    """The program *data* made readable: ``(instruction, jt, jf)`` per instruction,
    where *jt* and *jf* are how many instructions a jump skips if true or false.

    >>> decode(program(["mount"], "x86_64"))[4:6]
    [('jge 0x40000000', 6, 0), ('jeq 0x1b3', 6, 0)]
    """
    if len(data) % INSTRUCTION_SIZE:
        raise ValueError(f"{len(data)} bytes is not a whole number of instructions")
    return [(_describe(code, k), jt, jf) for code, jt, jf, k in _INSTRUCTION.iter_unpack(data)]


def oci_section(deny: Sequence[str] = DENY) -> dict[str, Any]:
    """The same policy as the OCI runtime spec's ``linux.seccomp`` says it, for runc
    (which has libseccomp compile it into a program like :func:`program`'s).

    >>> section = oci_section(["keyctl"])
    >>> section["defaultAction"], section["syscalls"][0]
    ('SCMP_ACT_ALLOW', {'names': ['keyctl'], 'action': 'SCMP_ACT_ERRNO', 'errnoRet': 1})
    """
    rules: list[dict[str, Any]] = [
        {"names": sorted(deny), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
    ]
    for bit in range(32):  # one rule per CLONE_NEW* flag: refused when that bit is set
        if CLONE_NAMESPACES >> bit & 1:
            flag = 1 << bit
            arg = {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
            rules.append(
                {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [arg]}
            )
    arches = ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches, "syscalls": rules}
