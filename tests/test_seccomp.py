"""hardway.isolation.seccomp: the program decoded and run by a small classic-BPF
interpreter (every path, both architectures), then installed for real in a child."""

from __future__ import annotations

import ctypes
import doctest
import errno
import os
import platform
import struct

import pytest

import hardway.isolation.escapes
import hardway.isolation.hardening
import hardway.isolation.seccomp
from hardway.isolation import seccomp
from hardway.sys import linux


def test_doctests() -> None:
    for module in (hardway.isolation.seccomp, hardway.isolation.hardening,
                   hardway.isolation.escapes):  # fmt: skip
        assert doctest.testmod(module).failed == 0


def evaluate(program: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """What the kernel's interpreter returns for one system call (the subset of
    classic BPF the program may use: ld abs, jeq/jge/jset with a constant, ret)."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    code = list(struct.iter_unpack("=HBBI", program))
    pc, acc = 0, 0
    for _ in range(len(code)):  # jumps only go forward: one pass at most
        op, jt, jf, k = code[pc]
        if op == seccomp.BPF_LD | seccomp.BPF_W | seccomp.BPF_ABS:
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif op == seccomp.BPF_RET:
            return k
        else:
            test = {seccomp.BPF_JEQ: acc == k, seccomp.BPF_JGE: acc >= k,
                    seccomp.BPF_JSET: bool(acc & k)}[op & 0xF0]  # fmt: skip
            pc += 1 + (jt if test else jf)
        assert pc < len(code), "a jump out of the program"
    raise AssertionError("no ret reached")


EPERM = seccomp.SECCOMP_RET_ERRNO | errno.EPERM


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_the_program_refuses_what_it_lists_and_allows_the_rest(arch: str) -> None:
    program = seccomp.program(seccomp.DENY, arch)
    audit = seccomp.ARCHES[arch]
    index = 0 if arch == "x86_64" else 1
    denied = {numbers[index] for name, numbers in seccomp.SYSCALLS.items() if name in seccomp.DENY}
    denied.discard(None)
    assert evaluate(program, seccomp.SYSCALLS["keyctl"][index], audit) == EPERM
    for nr in range(500):
        expected = EPERM if nr in denied else seccomp.SECCOMP_RET_ALLOW
        if nr == seccomp.SYSCALLS["clone3"][index]:
            expected = seccomp.SECCOMP_RET_ERRNO | errno.ENOSYS
        assert evaluate(program, nr, audit) == expected, nr
    other = seccomp.ARCHES["aarch64" if arch == "x86_64" else "x86_64"]
    assert evaluate(program, 0, other) == seccomp.SECCOMP_RET_KILL_PROCESS
    assert evaluate(program, 0, 0x40000003) == seccomp.SECCOMP_RET_KILL_PROCESS  # i386


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_clone_is_refused_only_with_a_namespace_flag(arch: str) -> None:
    program, audit = seccomp.program(["mount"], arch), seccomp.ARCHES[arch]
    clone = seccomp.SYSCALLS["clone"][0 if arch == "x86_64" else 1]
    fork_flags = 0x01200011  # what glibc's fork() passes: SIGCHLD, CHILD_SETTID|CLEARTID
    assert evaluate(program, clone, audit, fork_flags) == seccomp.SECCOMP_RET_ALLOW
    for flag in ("NEWUSER", "NEWNS", "NEWPID", "NEWNET", "NEWUTS", "NEWIPC", "NEWCGROUP"):
        value = getattr(linux, f"CLONE_{flag}")
        assert evaluate(program, clone, audit, fork_flags | value) == EPERM, flag


def test_x32_calls_are_refused_on_x86_64() -> None:
    program = seccomp.program(["mount"], "x86_64")
    assert evaluate(program, 0x40000000 | 39, seccomp.ARCHES["x86_64"]) == EPERM


def test_decode_shows_the_arch_check_first() -> None:
    ops = [op for op, _, _ in seccomp.decode(seccomp.program(["keyctl"], "x86_64"))]
    assert ops[:4] == ["ld arch", "jeq 0xc000003e", "ret KILL_PROCESS", "ld nr"]
    assert "jeq 0xfa" in ops and ops[-3:] == ["ret ERRNO(EPERM)", "ret ERRNO(ENOSYS)", "ret ALLOW"]
    with pytest.raises(ValueError, match="unknown system call"):
        seccomp.program(["no_such_call"])


def test_the_oci_section_names_the_same_calls() -> None:
    section = seccomp.oci_section()
    assert section["syscalls"][0]["names"] == sorted(seccomp.DENY)
    clone_rules = [r for r in section["syscalls"] if r["names"] == ["clone"]]
    assert sum(r["args"][0]["value"] for r in clone_rules) == seccomp.CLONE_NAMESPACES


@pytest.mark.skipif(platform.machine() not in seccomp.ARCHES, reason="no filter for this arch")
def test_installed_in_a_child_the_kernel_refuses_the_listed_calls() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            linux.set_no_new_privs()
            linux.set_seccomp_filter(seccomp.program(seccomp.DENY, platform.machine()))
            keyctl = libc.syscall(seccomp.SYSCALLS["keyctl"][0 if platform.machine() ==
                                  "x86_64" else 1], 0, -3, 0)  # fmt: skip
            refused = keyctl == -1 and ctypes.get_errno() == errno.EPERM
            try:
                linux.unshare(linux.CLONE_NEWUSER)
                unshared = True
            except OSError:
                unshared = False
            os._exit(0 if refused and not unshared and os.getpid() > 0 else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
