"""hardway.course.checks.lab04
~~~~~~~~~~~~~~~~~~~~~~~~~~~

The checks of lab 04, a container runtime by hand. Two warm-ups are pure functions; the
rest runs the learner's code against the kernel, and ``my_run`` against runc:

* 04.1 ``command_line(entrypoint, cmd, override) -> list``: Docker's rule;
* 04.2 ``merge_env(image_env, overrides) -> list``: the image's ``Env`` plus ``-e``;
* 04.3 ``my_seccomp_filter(deny) -> bytes``: the learner's classic-BPF program, installed
  in a child, which then makes each system call: the denied ones must fail with ``EPERM``,
  the others must not;
* 04.4 ``my_drop_privileges(keep, uid)``: in a child, then ``/proc/self/status`` read:
  the bounding set, the other sets, the user, ``no_new_privs``;
* 04.5 ``my_run(rootfs, argv, …)``: a busybox shell that prints what it sees (hostname,
  PID, uid, capabilities, ``no_new_privs``, seccomp, mounts, masked paths, what the
  memory and pids limits let it do), run in the learner's runtime and in runc, compared
  fact by fact. The learner's runtime runs behind three safety nets: the mount net of
  :mod:`hardway.course.checks.mounts` (a forgotten ``MS_PRIVATE`` is caught in a stand-in
  for the host's mount namespace), a UTS namespace of its own (a ``sethostname`` before
  the UTS unshare changes a stand-in's hostname, not the host's), and the cgroup net of
  :mod:`hardway.course.checks.cgroupbox` (whatever it starts stays under a parent group
  with limits), all in a child with a time limit;
* 04.6 ``my_oci_config(rootfs, argv, …) -> dict``: the same container as runc's
  ``config.json``; the usual mistakes are named from the dict (``CAP_`` prefix, memory
  in bytes under ``linux.resources``, ``"network"``, ``maskedPaths``, ``/dev/pts``…),
  then runc runs it for real and its facts are compared with the course's bundle's.

``REFERENCE`` hands ``my_run`` on to the capstone (an adapter over
:func:`hardway.isolation.runtime.run`).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import string
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hardway.course.checks import cgroupbox, fresh_rng, scratch
from hardway.course.checks.child import ChildFailed, in_child
from hardway.course.checks.mounts import sandboxed
from hardway.course.grading import exercise, expect
from hardway.isolation import bundle, cgroups, hardening, rootfs, runtime, seccomp
from hardway.isolation.cgroups import detect, in_session
from hardway.sys import linux
from hardway.sys.state import session_from_env

__all__ = [
    "FACTS",
    "REFERENCE",
    "argv_built",
    "config_runs_like_runc",
    "env_merged",
    "facts",
    "filter_works",
    "privileges_dropped",
    "runs_like_runc",
]


def _word(rng: random.Random, size: int = 6) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(size))


# -- the course's versions ----------------------------------------------------------------------


def reference_run(
    rootfs: Path,
    argv: list[str],
    *,
    hostname: str = "container",
    memory: int | None = None,
    pids: int | None = None,
    env: list[str] | None = None,
    cwd: str = "/",
) -> tuple[int, str]:
    """The course's ``my_run``: :func:`hardway.isolation.runtime.run`."""
    variables = dict(entry.split("=", 1) for entry in env or [])
    config = {"WorkingDir": cwd} if cwd != "/" else None
    done = runtime.run(
        rootfs, argv, hostname=hostname, memory=memory, pids=pids, env=variables, config=config
    )
    return done.returncode, done.stdout + done.stderr


REFERENCE: dict[str, Callable[..., object]] = {"my_run": reference_run}


# -- 04.1, 04.2: warm-ups ------------------------------------------------------------------------


@exercise(
    "04.1",
    points=2,
    hints=(
        "the Entrypoint always stays; an override replaces Cmd, no override means Cmd.",
        "a shell-form entrypoint ['/bin/sh', '-c', script] is no exception: Cmd or the "
        "override still follows it (as the script's $0 $1 …).",
        "list(entrypoint or []) + list(override or cmd or [])",
    ),
)
def argv_built(command_line: Callable[..., list[str]]) -> None:
    """command_line follows Docker's rules for Entrypoint, Cmd and an override."""
    rng = fresh_rng()
    entry = [f"/{_word(rng)}", f"--{_word(rng, 3)}"]
    cmd, override = [_word(rng)], [_word(rng), _word(rng)]
    shell = ["/bin/sh", "-c", f"echo {_word(rng)} && {_word(rng)}"]
    cases = [
        (None, cmd, None),
        (None, cmd, override),
        (entry, cmd, None),
        (entry, cmd, override),
        (entry, None, None),
        (None, shell, None),
        (shell, cmd, None),
        (shell, cmd, override),
    ]
    for case in cases:
        got, want = command_line(*case), runtime.command_line(*case)
        expect(list(got) == want, f"command_line{case!r} is {got!r}, expected {want!r}")


@exercise(
    "04.2",
    points=1,
    hints=(
        "an image's Env and -e overrides are two lists of the same names: which one wins?",
        "split each entry at the first '=' only: values may contain '='.",
        "read 'K=V' entries into a dict, update it with the overrides, and write it back "
        "as 'K=V' strings — a dict keeps each name's first place.",
    ),
)
def env_merged(merge_env: Callable[..., list[str]]) -> None:
    """merge_env lists the image's Env with the overrides applied, as K=V entries."""
    rng = fresh_rng()
    names = [_word(rng, 4).upper() for _ in range(5)]
    image_env = [f"{name}={_word(rng)}" for name in names[:4]] + [f"URL=a=b{_word(rng, 2)}"]
    overrides = {names[1]: _word(rng), names[4]: _word(rng)}
    got = merge_env(list(image_env), dict(overrides))
    want = runtime.merge_env(image_env, overrides)
    expect(
        list(got) == want,
        f"merge_env({image_env!r}, {overrides!r}) is {got!r}, expected {want!r}",
    )
    expect(list(merge_env(image_env, {})) == image_env, "with no overrides, Env is unchanged")


# -- 04.3: the seccomp filter --------------------------------------------------------------------

#: system calls that are harmless with every argument 0 (they fail with EFAULT, EINVAL,
#: EBADF… or do nothing), so a child may make them for real to see what the filter does
_PROBES = ("keyctl", "unshare", "umount2", "pivot_root", "setns", "mount", "add_key",
           "request_key", "acct", "swapoff", "ptrace")  # fmt: skip
_LIBC = ctypes.CDLL(None, use_errno=True)


def _errno_of(number: int) -> int:
    """Make system call *number* with every argument 0: 0 if it succeeded, else errno."""
    ctypes.set_errno(0)
    result = _LIBC.syscall(ctypes.c_long(number), 0, 0, 0, 0, 0)
    return 0 if result != -1 else ctypes.get_errno()


def _arch() -> str:
    import platform

    return platform.machine()


@exercise(
    "04.3",
    points=3,
    against=("kernel",),
    hints=(
        "the program is a list of 8-byte instructions (struct.pack('=HBBI', code, jt, jf, k)); "
        "the kernel runs it on each system call with struct seccomp_data: nr at offset 0, "
        "arch at offset 4.",
        "load arch (BPF_LD|BPF_W|BPF_ABS, 4), jump over a KILL if it is AUDIT_ARCH; load nr "
        "(offset 0); one BPF_JMP|BPF_JEQ|BPF_K per denied number whose true branch jumps "
        "to a final 'ret ERRNO|EPERM'; before that, 'ret ALLOW'.",
        "for the i-th of n numbers: jt = n - i (to skip the rest, and the ALLOW), jf = 0; "
        "the program ends with ret SECCOMP_RET_ALLOW, ret SECCOMP_RET_ERRNO | errno.EPERM.",
    ),
)
def filter_works(my_seccomp_filter: Callable[[list[str]], bytes]) -> None:
    """Your filter, installed in a child: the denied calls fail with EPERM, the others don't."""
    rng = fresh_rng()
    arch = _arch()
    index = 0 if arch == "x86_64" else 1
    probes = [name for name in _PROBES if seccomp.SYSCALLS[name][index] is not None]
    denied = sorted(rng.sample(probes, rng.randint(3, len(probes) - 3)))
    program = in_child(
        lambda: bytes(my_seccomp_filter(list(denied))), what="your my_seccomp_filter"
    )
    expect(
        isinstance(program, bytes) and program and len(program) % 8 == 0,
        "the program is bytes, a whole number of 8-byte instructions",
    )
    decoded = [op for op, _, _ in seccomp.decode(program)] if program else []
    expect(
        decoded[:1] == ["ld arch"],
        "your program does not start by loading arch: the same number is another call on "
        "another ABI, so check arch (offset 4) against AUDIT_ARCH first and kill otherwise",
    )
    numbers = {name: seccomp.SYSCALLS[name][index] for name in probes}

    def installed() -> dict[str, int]:
        linux.set_no_new_privs()
        linux.set_seccomp_filter(program)
        return {name: _errno_of(number) for name, number in numbers.items() if number is not None}

    try:
        seen = in_child(installed, what="a child with your filter installed")
    except ChildFailed as exc:
        expect(
            "SIGSYS" not in str(exc),
            "your filter killed the process (SIGSYS) on a call it should refuse: return "
            "SECCOMP_RET_ERRNO | errno.EPERM for a denied call — KILL is only for a wrong arch",
        )
        raise
    except OSError as exc:
        raise AssertionError(
            f"the kernel refused your program ({exc}): a jump past its end?"
        ) from None
    for name in probes:
        if name in denied:
            expect(
                seen[name] == errno.EPERM,
                f"{name} is on the deny list, but with your filter it gave "
                f"{errno.errorcode.get(seen[name], 'success')}, not EPERM",
            )
        else:
            expect(
                seen[name] != errno.EPERM,
                f"{name} is not on the deny list, but your filter refused it with EPERM "
                "(does a jump land on the wrong return?)",
            )


# -- 04.4: capabilities and no_new_privs ---------------------------------------------------------


def _status_fields() -> dict[str, str]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _caps(mask: str) -> list[str]:
    value = int(mask, 16)
    return sorted(name for name, bit in linux.CAPABILITIES.items() if value >> bit & 1)


@exercise(
    "04.4",
    points=3,
    against=("kernel",),
    hints=(
        "the bounding set caps what any later execve can grant: drop it first, while you "
        "still have CAP_SETPCAP — before setuid, which empties the other sets.",
        "drop_bounding_set(keep); clear_ambient(); for another user setgroups([]), setgid, "
        "setuid (while CAP_SETUID is still effective; it keeps nothing); then "
        "set_capabilities(keep, keep, []) for root; last set_no_new_privs().",
        "(all in hardway.sys.linux) — the order is the whole exercise.",
    ),
)
def privileges_dropped(my_drop_privileges: Callable[..., None]) -> None:
    """my_drop_privileges leaves a child with only the kept capabilities and no_new_privs."""
    rng = fresh_rng()
    for uid in (0, rng.randrange(1000, 60000)):
        # another user's keep never holds SETUID and SETGID: setuid must come before the
        # sets shrink (the edge case, every time)
        pool = [c for c in hardening.RUNTIME_CAPS if uid == 0 or c not in ("SETUID", "SETGID")]
        keep = sorted(rng.sample(pool, rng.randint(3, 8)))

        def drop(keep: list[str] = keep, uid: int = uid) -> dict[str, str]:
            try:
                my_drop_privileges(list(keep), uid)
            except OSError as exc:
                if os.getuid() != 0:
                    raise AssertionError(
                        f"your my_drop_privileges failed after setuid({uid}): {exc} — "
                        "capabilities dropped after setuid: setuid already emptied them and "
                        "took CAP_SETPCAP away; drop the bounding set and set the others first"
                    ) from None
                raise
            return _status_fields()

        status = in_child(drop, what="your my_drop_privileges")
        who = "root" if uid == 0 else f"uid {uid}"
        bounding = _caps(status["CapBnd"])
        expect(
            bounding == keep,
            f"as {who}, the bounding set is {_short(bounding)}, expected {keep}: the bounding "
            "set was not dropped (PR_CAPBSET_DROP), so an execve of a set-user-ID program "
            "would get the rest back",
        )
        mine = keep if uid == 0 else []
        for field in ("CapEff", "CapPrm"):
            got = _caps(status[field])
            expect(got == mine, f"as {who}, {field} is {_short(got)}, expected {mine}")
        expect(
            _caps(status["CapAmb"]) == [] and _caps(status["CapInh"]) == [],
            f"as {who}, the ambient or inheritable set is not empty",
        )
        expect(
            status["Uid"].split()[:2] == [str(uid)] * 2,
            f"the process runs as uid {status['Uid'].split()[0]}, expected {uid}",
        )
        expect(
            status["NoNewPrivs"] == "1",
            f"as {who}, NoNewPrivs is {status['NoNewPrivs']}: no_new_privs is missing "
            "(prctl PR_SET_NO_NEW_PRIVS), so a set-user-ID program could still gain privileges",
        )


def _short(names: list[str]) -> str:
    return (
        str(names) if len(names) <= 8 else f"{len(names)} capabilities ({', '.join(names[:4])}, …)"
    )


# -- 04.5: my_run against runc -------------------------------------------------------------------

#: what the shell prints about its container, one ``key=value`` a line; builtins where a
#: fork would cost a process slot. The pids limit is measured last, by a subshell that
#: starts sleepers until a fork fails (which ends a busybox shell: hence the subshell)
FACTS = r"""
echo "hostname=$(hostname)"
echo "pid=$$"
echo "uid=$(id -u)"
while read -r key value rest; do
  case "$key" in CapBnd:|CapEff:|NoNewPrivs:|Seccomp:) echo "${key%:}=$value";; esac
done < /proc/self/status
echo "cwd=$PWD"
echo "env=$HARDWAY_FACT"
for path in /proc/kcore /proc/keys /proc/timer_list; do
  [ -c "$path" ] && echo "masked=$path"
done
other=0
while read -r device point fstype options rest; do
  case "$point" in
    /proc) echo "proc=$fstype";;
    /dev) echo "dev=$fstype";;
    /dev/pts) echo "devpts=$fstype";;
    /dev/shm) echo "shm=$fstype";;
    /proc/sys) echo "procsys=${options%%,*}";;
  esac
  case "$point" in /|/proc|/proc/*|/dev|/dev/*|/sys|/sys/*) ;; *) other=$((other + 1));; esac
done < /proc/mounts
echo "other_mounts=$other"
echo x > /dev/null && echo "devnull=ok"
for path in /dev/ptmx /dev/fd/0 /dev/stdin /dev/stdout /dev/stderr; do
  [ -e "$path" ] && echo "devs=$path"
done
dd if=/dev/zero of=/dev/null bs=$1 count=1 2>/dev/null
echo "dd=$?"
(i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i + 1)); done) 2>/dev/null
n=0
for p in /proc/[0-9]*; do n=$((n + 1)); done
echo "procs=$n"
"""


#: the facts that may come on several lines, gathered into one value
_GATHERED = ("masked", "devs")


def facts(output: str) -> dict[str, str]:
    """The ``key=value`` lines of the facts script (``masked`` and ``devs`` gathered)."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep or " " in key:
            continue
        found[key] = f"{found[key]} {value}" if key in found and key in _GATHERED else value
    return found


#: the facts compared, in the order a mistake shows first, with what each one tells
_FACTS_TOLD = {
    "pid": "the shell's PID: 1 in a new PID namespace — unshare(CLONE_NEWPID) moves only "
    "the children of the caller, so fork after it and exec in the child",
    "proc": "a /proc of the container's own: mount a fresh proc after pivot_root, in the "
    "new PID namespace",
    "procs": "the processes the shell could run and see in /proc",
    "hostname": "the hostname: set it in the new UTS namespace",
    "uid": "the user",
    "CapBnd": "the bounding set: drop every capability but the runtime's with PR_CAPBSET_DROP",
    "CapEff": "the effective capabilities (capset)",
    "NoNewPrivs": "no_new_privs (prctl PR_SET_NO_NEW_PRIVS) is missing",
    "Seccomp": "the seccomp mode: 2 once a filter is installed, right before exec",
    "masked": "the masked paths: /dev/null bind-mounted on each file",
    "procsys": "/proc/sys read-only: bind it onto itself, remount it ro",
    "dev": "/dev: a tmpfs with the harmless device nodes bind-mounted",
    "devnull": "a working /dev/null",
    "devpts": "/dev/pts: a devpts of the container's own (newinstance), as runc mounts it",
    "shm": "/dev/shm: a tmpfs for POSIX shared memory",
    "devs": "the /dev links: fd, stdin, stdout, stderr into /proc/self/fd, ptmx to pts/ptmx",
    "other_mounts": "no host mount left: unmount the old root after pivot_root",
    "cwd": "the working directory",
    "env": "the environment",
    "dd": "the memory limit: a dd bigger than it is OOM-killed (exit status 137)",
}


def _rootfs(directory: Path) -> Path:
    root = directory / "rootfs"
    rootfs.build_busybox(root)
    (root / "proc").mkdir(exist_ok=True)
    (root / "dev").mkdir(exist_ok=True)
    (root / "work").mkdir(exist_ok=True)
    return root


def _runc_facts(root: Path, argv: list[str], options: dict[str, Any], bundle_dir: Path) -> dict:
    variables = dict(entry.split("=", 1) for entry in options["env"])
    plan = runtime.plan(
        root,
        argv,
        hostname=options["hostname"],
        memory=options["memory"],
        pids=options["pids"],
        env=variables,
        config={"WorkingDir": options["cwd"]},
    )
    done = bundle.run_runc(plan, bundle_dir, timeout=60)
    return facts(done.stdout)


def _top_groups() -> set[Path]:
    """The course's groups at the top of each hierarchy (a learner's my_run makes one)."""
    mode = detect()
    tops = (
        [mode.v2_path]
        if cgroupbox.version(mode) == "v2"
        else sorted(set(mode.v1_controllers.values()))  # cpuacct too, where it is its own
    )
    session = session_from_env() or ""  # never another test run's groups
    return {
        p
        for top in tops
        if top
        for p in top.iterdir()
        if p.name.startswith("hardway-") and in_session(p.name, session)
    }


def _diagnose_failure(status: object, output: str, asked_pids: int) -> str:
    """What went wrong when the shell did not run to its end."""
    tail = " | ".join(output.strip().splitlines()[-3:])[-400:]
    if "PR_SET_SECCOMP" in output:
        return (
            "installing your seccomp filter was refused: the filter was installed before "
            "no_new_privs, after CAP_SYS_ADMIN was dropped — set no_new_privs first"
        )
    if "PR_CAPBSET_DROP" in output or "capset" in output:
        return f"dropping capabilities failed ({tail}): drop them before anything takes CAP_SETPCAP"
    if "can't fork" in output or "Resource temporarily unavailable" in output:
        return (
            f"the shell could not fork (its output: {tail}): pids.max of your container's "
            f"cgroup is too low to start the shell — the check asked for pids={asked_pids}"
        )
    if status in (-9, 137, 247):  # SIGKILL, however the runtime passed it on
        return (
            f"your container was killed by SIGKILL before the shell's end (output: {tail}): "
            "the OOM killer? Is a process of your runtime, not the container's, in the "
            "container's cgroup, where the memory and pids limits count it? Join it from "
            "PID 1 itself"
        )
    return f"your container did not run the shell to its end: status {status!r}, output: {tail}"


def _fact_run(prefix: str) -> tuple[dict[str, Any], list[str]]:
    """Fresh options for a container and the facts script's argv: its ``dd`` writes twice
    the memory limit, so the limit shows from inside."""
    rng = fresh_rng()
    memory = rng.randrange(24, 40) << 20
    options = {
        "hostname": f"{prefix}-{_word(rng, 5)}",
        "memory": memory,
        "pids": rng.randrange(10, 24),
        "env": [f"HARDWAY_FACT={_word(rng)}", "PATH=/bin:/sbin:/usr/bin:/usr/sbin"],
        "cwd": "/work",
    }
    return options, ["sh", "-c", FACTS, "facts", str((memory >> 20) * 2) + "M"]


@exercise(
    "04.5",
    points=8,
    against=("kernel", "runc"),
    hints=(
        "the order is the runtime: unshare → fork → (uid maps) → mounts → pivot_root → "
        "cgroup → hostname → capabilities → no_new_privs → seccomp → exec; the check "
        "compares what a shell sees in your container with what it sees in runc's.",
        "my_spawn(container, namespaces=[...], hostname=...) forks PID 1; in container(): "
        "join the cgroup, make / private, mount /dev into the rootfs, my_pivot_root, "
        "my_mount_proc, mask and make read-only, my_drop_privileges(RUNTIME_CAPS), "
        "set_seccomp_filter(my_seccomp_filter(DENY)), chdir(cwd), execvpe.",
        "wrap container() in try/except that writes the traceback to fd 2 and os._exit(126), so a "
        "failure shows in the output; my_cgroup_remove in a finally.",
    ),
)
def runs_like_runc(my_run: Callable[..., tuple[int, str]]) -> None:
    """A busybox shell in your my_run sees what it sees in runc, fact by fact."""
    options, argv = _fact_run("box")
    with scratch("04") as tmp, cgroupbox.parent("lab04") as parent:
        root = _rootfs(tmp)
        want = _runc_facts(root, argv, options, tmp / "bundle")
        before = _top_groups()

        def learners() -> tuple[object, str, str]:
            parent.enter()  # whatever it starts stays under the check's limits
            linux.unshare(linux.CLONE_NEWUTS)  # a stand-in hostname for a wrong sethostname
            host = linux.gethostname()
            status, output = my_run(root, list(argv), **options)
            return status, output, linux.gethostname() != host

        try:
            status, output, renamed = sandboxed(learners, timeout=30, what="your my_run")
        finally:
            left = _top_groups() - before
            for group in left:
                cgroupbox.remove_tree(group)
        expect(
            not renamed,
            "your my_run changed the host's hostname (the check caught it in a stand-in): "
            "the hostname was set before the UTS unshare — set it in the new namespace",
        )
        expect(
            not left,
            f"your my_run left its cgroup {sorted(p.name for p in left)} behind: remove it "
            "(kill what is left inside first) when the container is done",
        )
        got = facts(str(output))
        finished = "procs" in got and "hostname" in got
        for key, told in _FACTS_TOLD.items():
            if not finished and key not in got:
                continue  # what it printed before it stopped is compared first
            mine, theirs = got.get(key, "(nothing)"), want.get(key, "(nothing)")
            expect(
                mine == theirs,
                f"{key}: your container says {mine!r}, runc's says {theirs!r} — {told}"
                + _limit_note(key, mine, theirs, options["pids"]),
            )
        expect(finished, _diagnose_failure(status, str(output), options["pids"]))
        expect(status == 0, f"the shell ended with status {status!r}, in runc's with 0")


def _limit_note(key: str, mine: str, theirs: str, pids: int) -> str:
    if key == "procs" and mine.isdigit() and theirs.isdigit() and int(mine) < int(theirs):
        return (
            f" (pids.max={pids}: is a process of your runtime, not the container's, in the "
            "container's cgroup? join it from PID 1 itself)"
        )
    if key == "procs" and mine.isdigit() and int(mine) > 100:
        return " (that is the host's /proc: not remounted)"
    return ""


# -- 04.6: the same container as runc's config.json ---------------------------------------------

#: the namespaces of my_run in the runtime spec's spelling, and the usual wrong ones
_NAMESPACES = {"pid", "network", "ipc", "uts", "mount"}
_MISSPELT = {"net": "network", "mnt": "mount", "ns": "mount", "utsname": "uts"}
#: the mounts runc's container has, with their filesystem types
_MOUNTS = {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
           "/dev/mqueue": "mqueue", "/sys": "sysfs"}  # fmt: skip

#: the facts compared for 04.6, with the part of config.json each one comes from
_CONFIG_TOLD = {
    "pid": 'linux.namespaces: {"type": "pid"}',
    "proc": 'mounts: /proc, type "proc"',
    "hostname": "hostname (and the uts namespace)",
    "uid": 'process.user: {"uid": 0, "gid": 0}',
    "CapBnd": "process.capabilities.bounding",
    "CapEff": "process.capabilities.effective (and permitted)",
    "NoNewPrivs": "process.noNewPrivileges",
    "Seccomp": "linux.seccomp",
    "masked": "linux.maskedPaths",
    "procsys": "linux.readonlyPaths (/proc/sys among them)",
    "dev": 'mounts: /dev, a "tmpfs"',
    "devpts": 'mounts: /dev/pts, a "devpts" (newinstance, ptmxmode=0666)',
    "shm": 'mounts: /dev/shm, a "tmpfs"',
    "devs": "mounts: /dev/pts (runc links /dev/ptmx and /dev/fd to it and /proc)",
    "devnull": "a working /dev/null",
    "other_mounts": "mounts: only the six of the list",
    "cwd": "process.cwd",
    "env": "process.env, a list of K=V",
    "dd": "linux.resources.memory.limit, in bytes",
    "procs": "linux.resources.pids.limit",
}


def _get(document: object, *keys: str) -> object:
    """``document[k1][k2]…``, or None where a level is missing or not a dict."""
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _schema(doc: dict[str, Any], root: Path, argv: list[str], options: dict[str, Any]) -> None:
    """The parts of *doc* the usual mistakes break, each named, before runc sees it."""
    expect("hooks" not in doc, "hooks run programs on the host: not part of this exercise")
    expect(
        _get(doc, "root", "path") == str(root),
        f"root.path is {_get(doc, 'root', 'path')!r}, expected the rootfs, {str(root)!r}",
    )
    expect(_get(doc, "root", "readonly") is False, "root.readonly: false (the shell writes)")
    process = _get(doc, "process")
    expect(isinstance(process, dict), "process is missing: what to run, as whom, with what")
    expect(_get(doc, "process", "args") == argv, "process.args is not the argv given")
    user = _get(doc, "process", "user")
    expect(
        isinstance(user, dict) and user.get("uid") == 0 and user.get("gid") == 0,
        f'process.user is {user!r}: runc needs it, {{"uid": 0, "gid": 0}} for root',
    )
    wanted = sorted(f"CAP_{name}" for name in hardening.RUNTIME_CAPS)
    for kind in ("bounding", "effective", "permitted"):
        caps = _get(doc, "process", "capabilities", kind)
        expect(isinstance(caps, list), f"process.capabilities.{kind} is missing (a list)")
        bare = [c for c in caps if isinstance(c, str) and not c.startswith("CAP_")]
        expect(
            not bare,
            f"process.capabilities.{kind} has {bare[:3]}: the spec spells capabilities "
            f"with the CAP_ prefix ({bare[0] if bare else ''} → CAP_{bare[0] if bare else ''})",
        )
        odd = sorted(set(caps) ^ set(wanted))
        expect(
            sorted(caps) == wanted,
            f"process.capabilities.{kind} is not RUNTIME_CAPS: {_short(odd)} differ",
        )
    expect(
        _get(doc, "process", "noNewPrivileges") is True,
        f"process.noNewPrivileges is {_get(doc, 'process', 'noNewPrivileges')!r}: it must be "
        "true, or a set-user-ID program in the container could gain privileges",
    )
    _mounts_right(_get(doc, "mounts"))
    _linux_right(_get(doc, "linux"), options)


def _mounts_right(mounts: object) -> None:
    expect(isinstance(mounts, list), "mounts is missing: a list of {destination, type, source}")
    seen = {m.get("destination"): m for m in mounts if isinstance(m, dict)}  # type: ignore[union-attr]
    for mount in seen.values():
        options = mount.get("options") or []
        expect(
            mount.get("type") != "bind" and not {"bind", "rbind"} & set(options),
            f"the mount on {mount.get('destination')} binds a host path into the container: "
            "not part of this exercise (only the six filesystems of runc's list)",
        )
    expect(
        "/dev/pts" in seen,
        "no /dev/pts mount: without a devpts (newinstance, ptmxmode=0666) the container has "
        "no /dev/ptmx, no terminal",
    )
    for destination, fstype in _MOUNTS.items():
        got = seen.get(destination, {}).get("type")
        expect(got == fstype, f"mounts: {destination} should be a {fstype!r}, yours is {got!r}")
    expect("ro" in (seen["/sys"].get("options") or []), "mounts: /sys must be read-only (ro)")


def _linux_right(section: object, options: dict[str, Any]) -> None:
    expect(isinstance(section, dict), "linux is missing: namespaces, resources, paths, seccomp")
    kinds = [n.get("type") for n in _get(section, "namespaces") or [] if isinstance(n, dict)]
    for kind in kinds:
        expect(
            kind not in _MISSPELT,
            f'linux.namespaces has "{kind}": the spec spells it "{_MISSPELT.get(kind)}"',
        )
    expect(
        set(kinds) == _NAMESPACES,
        f"linux.namespaces are {sorted(map(str, kinds))}, expected {sorted(_NAMESPACES)}",
    )
    memory = _get(section, "resources", "memory")
    expect(
        memory is not None,
        "linux.resources.memory is missing: the memory limit goes in "
        '"linux": {"resources": {"memory": {"limit": …}}}',
    )
    limit = _get(memory, "limit")
    expect(
        isinstance(memory, dict) and limit is not None,
        f'linux.resources.memory is {memory!r}: the limit goes in its "limit" key',
    )
    expect(
        limit == options["memory"],
        f"linux.resources.memory.limit is {limit!r}, expected {options['memory']}: the unit "
        "is bytes, an int (not MiB, not a string like '32M')",
    )
    pids = _get(section, "resources", "pids", "limit")
    expect(
        pids == options["pids"],
        f"linux.resources.pids.limit is {pids!r}, expected {options['pids']}",
    )
    masked = _get(section, "maskedPaths")
    expect(
        isinstance(masked, list) and set(hardening.MASKED_PATHS) <= set(masked),
        "linux.maskedPaths is missing or short: every path of MASKED_PATHS (runc hides each "
        "under /dev/null or an empty tmpfs)",
    )
    _seccomp_right(_get(section, "seccomp"))


def _seccomp_right(section: object) -> None:
    expect(isinstance(section, dict), "linux.seccomp is missing: the filter of 04.3, said in JSON")
    action = _get(section, "defaultAction")
    expect(
        action == "SCMP_ACT_ALLOW",
        f"linux.seccomp.defaultAction is {action!r}: SCMP_ACT_ALLOW, the rules name the denied",
    )
    denied: set[str] = set()
    for rule in _get(section, "syscalls") or []:
        if not isinstance(rule, dict) or rule.get("args"):
            continue
        expect(
            rule.get("action") == "SCMP_ACT_ERRNO" and rule.get("errnoRet", 1) == errno.EPERM,
            f"a seccomp rule says {rule.get('action')!r} with errnoRet {rule.get('errnoRet')!r}: "
            "the denied calls fail with EPERM — SCMP_ACT_ERRNO, errnoRet 1, as in 04.3",
        )
        denied |= set(rule.get("names") or [])
    missing, extra = set(seccomp.DENY) - denied, denied - set(seccomp.DENY)
    expect(
        not missing and not extra,
        f"linux.seccomp denies {sorted(extra)[:3]} too / not {sorted(missing)[:3]}: "
        "the names of DENY, no more",
    )


@exercise(
    "04.6",
    points=3,
    against=("runc",),
    hints=(
        "write the container of your my_run the way any OCI runtime reads it: a dict that "
        "json.dumps turns into config.json — the check runs runc on it.",
        "ociVersion, root {path, readonly}, process {args, env, cwd, user, capabilities, "
        "noNewPrivileges}, hostname, mounts (six of them), linux {namespaces, resources, "
        "maskedPaths, readonlyPaths, seccomp}; capabilities are 'CAP_…', namespaces "
        "'network' and 'mount', memory in bytes.",
        'linux.seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": '
        'list(DENY), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}; a mount is '
        '{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": […]}.',
    ),
)
def config_runs_like_runc(my_oci_config: Callable[..., dict[str, Any]]) -> None:
    """runc, given your config.json, runs the container the course's bundle runs."""
    options, argv = _fact_run("oci")
    with scratch("04") as tmp:
        root = _rootfs(tmp)
        doc = in_child(
            lambda: my_oci_config(root, list(argv), **options), what="your my_oci_config"
        )
        expect(isinstance(doc, dict), f"my_oci_config returned {type(doc).__name__}, not a dict")
        try:
            json.dumps(doc)
        except (TypeError, ValueError) as exc:
            raise AssertionError(
                f"json.dumps cannot write your dict ({exc}): a Path? write str(rootfs)"
            ) from None
        _schema(doc, root, argv, options)
        want = _runc_facts(root, argv, options, tmp / "course")
        name = cgroups.group_name("runc")
        try:
            done = in_child(
                lambda: bundle.run_config(doc, tmp / "yours", name=name, timeout=40),
                timeout=60,
                what="runc with your config.json",
            )
        finally:
            bundle.delete(name)
        got = facts(done.stdout)
        expect(
            "procs" in got or done.returncode == 0,
            f"runc did not run your config.json to the end: status {done.returncode}, "
            f"{(done.stderr or done.stdout).strip()[-400:]}",
        )
        for key, told in _CONFIG_TOLD.items():
            mine, theirs = got.get(key, "(nothing)"), want.get(key, "(nothing)")
            expect(
                mine == theirs,
                f"{key}: runc with your config.json says {mine!r}, with the course's "
                f"{theirs!r} — {told}",
            )


if __name__ == "__main__":  # pragma: no cover - a demo: the facts of runc's container
    with tempfile.TemporaryDirectory() as directory:
        print(_runc_facts(_rootfs(Path(directory)), ["sh", "-c", FACTS, "facts", "64M"],
                          {"hostname": "demo", "memory": 32 << 20, "pids": 16,
                           "env": ["HARDWAY_FACT=demo"], "cwd": "/work"},
                          Path(directory) / "bundle"), file=sys.stderr)  # fmt: skip
