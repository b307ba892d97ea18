"""Benchmarks: hardway against umoci, skopeo and tar | gzip, in the same run, as ratios.

``make bench`` runs this script. It prepares its own data in a temporary work directory
(removed at the end): a *real* tree (a copy of part of ``/usr/lib/x86_64-linux-gnu``:
shared libraries, a few hundred MB), the *full* tree (all of it: about 1 GB in 3,800
entries) and a *small-files* tree (20,000 files of 0–4 KiB),
starts its own registry, and runs each workload ``--runs`` times, alternating the tools
so that neither always comes first. Every command is a fresh process measured with
``time`` (GNU's, or busybox's): wall time, CPU time (user + sys, the process and its
children) and peak RSS. Medians are reported, and our/their ratio. Results go to
``bench/results.json``, ``BENCHMARKS.md`` (tables, machine, how to reproduce, and the
notes in ``bench/notes.md``) and ``bench/results.png``.

    .venv/bin/python bench/run.py            # the full run (5–15 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # a smoke run: small data, one run each

Not a test: nothing here runs in ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import random
import re
import shutil
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
HW = [PY, "-m", "hardway"]
SKOPEO = ["skopeo", "copy", "--insecure-policy", "-q"]
REAL_SOURCE = Path("/usr/lib/x86_64-linux-gnu")
sys.path.insert(0, str(HERE))

from layer_memory import make_tree  # noqa: E402  (a sibling script, not a package)

# --- measuring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One run of one command: wall seconds, CPU seconds (user + sys), peak RSS in MiB."""

    wall: float
    cpu: float
    rss: float


def _timer() -> tuple[list[str], int]:
    """A ``time`` command that reports its child's peak RSS, and what divides it to KiB.

    The peak RSS must be measured by a small process: a child forked from this Python
    would inherit its high-water mark. GNU time reports KiB; busybox 1.35's ``time``
    multiplies ru_maxrss (already KiB) by 4 (a known bug), so its figure is divided back.
    """
    if Path("/usr/bin/time").exists():
        return ["/usr/bin/time", "-f", "%U %S %M"], 1
    return ["busybox", "time", "-f", "%U %S %M"], os.sysconf("SC_PAGE_SIZE") // 1024


def measure(argv: list[str], *, env: dict[str, str] | None = None) -> Sample:
    """Run ``argv`` to completion: its wall time, and its own and its children's CPU and
    peak RSS (``time`` reports what ``wait4`` said)."""
    timer, divisor = _timer()
    if env is None:  # as on a learner's machine: Python caches compiled modules
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        start = time.perf_counter()
        done = subprocess.run(
            [*timer, "-o", report.name, *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            check=False,
        )
        wall = time.perf_counter() - start
        last = report.read().strip().splitlines()[-1]
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {err}")
    user, system, rss = last.split()
    return Sample(wall, float(user) + float(system), int(rss) / divisor / 1024)


def combine(*samples: Sample) -> Sample:
    """Commands run one after the other: times add up, peak RSS is the largest."""
    return Sample(
        sum(s.wall for s in samples), sum(s.cpu for s in samples), max(s.rss for s in samples)
    )


@dataclass
class Result:
    """Every sample of one tool in one workload, and their medians."""

    workload: str
    tool: str
    samples: list[Sample] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    def median(self, key: str) -> float:
        return statistics.median(getattr(s, key) for s in self.samples)


class Bench:
    """The results so far, and the order in which tools take turns."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.results: dict[tuple[str, str], Result] = {}

    def result(self, workload: str, tool: str) -> Result:
        return self.results.setdefault((workload, tool), Result(workload, tool))

    def compare(
        self,
        workload: str,
        tools: dict[str, Callable[[], Sample]],
        *,
        before: Callable[[str], None] | None = None,
        runs: int | None = None,
    ) -> None:
        """Run every tool ``runs`` times, rotating who goes first; ``before`` is untimed."""
        names = list(tools)
        for run in range(runs or self.runs):
            for i in range(len(names)):
                name = names[(run + i) % len(names)]
                if before is not None:
                    before(name)
                sample = tools[name]()
                self.result(workload, name).samples.append(sample)
                print(
                    f"  {workload:<28} {name:<22} {sample.wall:7.2f} s  cpu {sample.cpu:6.2f} s"
                    f"  rss {sample.rss:6.1f} MiB",
                    flush=True,
                )


# --- data -----------------------------------------------------------------------------------


def copy_real_tree(dest: Path, limit_mib: int | None) -> int:
    """Copy regular files and symlinks of :data:`REAL_SOURCE` (sorted) up to ``limit_mib``
    (``None``: all of it), hard links kept as hard links (Mesa's 13 names of one 26 MB
    driver are one file, as in the image a distribution ships); the bytes copied."""
    total, limit = 0, (2**62 if limit_mib is None else limit_mib * 2**20)
    copied: dict[tuple[int, int], Path] = {}  # (device, inode) → the first name copied
    for dirpath, dirnames, filenames in os.walk(REAL_SOURCE):
        dirnames.sort()
        rel = Path(dirpath).relative_to(REAL_SOURCE)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            src, dst = Path(dirpath, name), dest / rel / name
            st = src.lstat()
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            elif (first := copied.get((st.st_dev, st.st_ino))) is not None:
                os.link(first, dst)
            elif src.is_file() and total + st.st_size <= limit:
                shutil.copy2(src, dst)
                copied[st.st_dev, st.st_ino] = dst
                total += st.st_size
        if total >= limit * 0.98:
            break
    return total


def make_small_tree(dest: Path, files: int) -> int:
    """``files`` files of 0–4 KiB in 100 directories: text-like, so compressible."""
    rng = random.Random(9)
    words = [
        bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(500)
    ]
    total = 0
    for i in range(files):
        directory = dest / f"d{i % 100:03d}"
        directory.mkdir(exist_ok=True)
        size = rng.randint(0, 4096)
        text = b" ".join(rng.choices(words, k=size // 5 + 1))[:size]
        (directory / f"f{i:05d}.txt").write_bytes(text)
        total += size
    return total


def tree_size(root: Path) -> tuple[int, int]:
    """Bytes in regular files (a hard-linked file once), and the number of entries."""
    size = count = 0
    seen: set[int] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        count += len(dirnames) + len(filenames)
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode) and st.st_ino not in seen:
                seen.add(st.st_ino)
                size += st.st_size
    return size, count


def run(argv: list[str], **kw: object) -> str:
    """Run an untimed set-up command; its stdout."""
    done = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT, **kw)
    return done.stdout


def bundle(work: Path, name: str) -> Path:
    """An umoci bundle of an empty image, ``name``: its ``rootfs`` is where the tree goes."""
    layout = work / f"umoci-{name}"
    run(["umoci", "init", "--layout", str(layout)])
    run(["umoci", "new", "--image", f"{layout}:empty"])
    path = work / f"bundle-{name}"
    run(["umoci", "unpack", "--image", f"{layout}:empty", str(path)])
    return path


# --- the registry ---------------------------------------------------------------------------


class Registry:
    """The course's registry on a free port, with storage under the bench work directory."""

    def __init__(self, work: Path) -> None:
        os.environ["HARDWAY_STATE_DIR"] = str(work / "state")
        from hardway.distribution.server import local_registry

        with socket.socket() as probe:  # a free port: the kernel's choice
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self._lr, self.port = local_registry, port
        self.data = work / "state" / "registry" / str(self.port) / "data"
        self.log = self.data.parent / "registry.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._lr.start(self.port)

    def stop(self) -> None:
        self._lr.stop(self.port)

    def ensure(self) -> None:
        """Start it again if it has stopped (another test run on the machine may stop it)."""
        self._lr.ensure_running(self.port)

    def fresh(self) -> None:
        """Restart it empty: a push must upload every blob again."""
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        self.start()

    def log_offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def uploads_since(self, offset: int) -> int:
        """Blob upload requests (POST/PATCH/PUT on ``/blobs/uploads/``) logged since ``offset``."""
        with open(self.log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        pattern = r'http\.request\.method="?(POST|PATCH|PUT)"?[^\n]*blobs/uploads'
        alt = r'"(POST|PATCH|PUT) [^"]*blobs/uploads'
        return len(re.findall(pattern, text)) or len(re.findall(alt, text))


# --- workloads ------------------------------------------------------------------------------


def read_layout(path: Path, tag: str):
    from hardway.image.layout import read_image

    return read_image(path, tag)


def build_workload(
    bench: Bench,
    work: Path,
    name: str,
    bundle_dir: Path,
    *,
    with_tar: bool = True,
    runs: int | None = None,
) -> None:
    """One layer from the tree: hardway, umoci repack (onto an empty image), and (unless
    ``with_tar`` is false: 40 s a run on the full tree) tar | gzip -6."""
    rootfs, out = bundle_dir / "rootfs", work / "out"
    out.mkdir(exist_ok=True)
    layout = work / f"umoci-{name}"
    sizes: dict[str, int] = {}

    def hardway() -> Sample:
        sample = measure([*HW, "layer", "create", str(rootfs), "-o", str(out / "hw.tar.gz")])
        sizes["hardway"] = (out / "hw.tar.gz").stat().st_size
        return sample

    def umoci() -> Sample:
        sample = measure(["umoci", "repack", "--image", f"{layout}:built", str(bundle_dir)])
        sizes["umoci repack"] = read_layout(layout, "built").manifest().layers[-1].size
        return sample

    def tar_gzip() -> Sample:
        pipe = f"tar --sort=name -C {rootfs} -cf - . | gzip -6 > {out / 'tar.tar.gz'}"
        sample = measure(["bash", "-o", "pipefail", "-c", pipe])
        sizes["tar | gzip -6"] = (out / "tar.tar.gz").stat().st_size
        return sample

    tools = {"hardway layer create": hardway, "umoci repack": umoci, "tar | gzip -6": tar_gzip}
    if not with_tar:
        del tools["tar | gzip -6"]
    bench.compare(f"build layer ({name})", tools, runs=runs)
    for tool, size in sizes.items():
        key = "hardway layer create" if tool == "hardway" else tool
        bench.result(f"build layer ({name})", key).extra["layer MB"] = round(size / 1e6, 1)


def push_pull_workloads(
    bench: Bench, work: Path, name: str, rootfs: Path, reg: Registry, runs: int | None = None
) -> None:
    """Push (to an empty registry), no-op re-push, pull + unpack."""
    image = work / f"img-{name}"
    run([*HW, "image", "from-dir", str(rootfs), f"oci:{image}:v1"])
    ref = f"{reg.host}/bench/{name}:v1"
    push = {
        "hardway copy": lambda: measure([*HW, "copy", f"oci:{image}:v1", f"docker://{ref}"]),
        "skopeo copy": lambda: measure(
            [*SKOPEO, "--dest-tls-verify=false", f"oci:{image}:v1", f"docker://{ref}"]
        ),
    }
    uploads: dict[tuple[str, str], list[int]] = {}
    offsets: dict[str, int] = {}

    def mark(tool: str, fresh: bool) -> None:
        reg.fresh() if fresh else reg.ensure()
        offsets[tool] = reg.log_offset()

    def counted(workload: str, tool: str) -> Callable[[], Sample]:
        def go() -> Sample:
            sample = push[tool]()
            time.sleep(0.2)  # let the registry flush its log
            uploads.setdefault((workload, tool), []).append(reg.uploads_since(offsets[tool]))
            return sample

        return go

    for workload, fresh in ((f"push ({name})", True), (f"no-op re-push ({name})", False)):
        tools = {tool: counted(workload, tool) for tool in push}
        bench.compare(workload, tools, before=lambda tool, f=fresh: mark(tool, f), runs=runs)
    for (workload, tool), counts in uploads.items():
        bench.result(workload, tool).extra["upload requests"] = max(counts)
    # the same push from a process that has imported hardway already, as a notebook's
    # kernel has: what is left once the interpreter's start-up is not paid again
    kernel = []
    for i in range((runs or bench.runs) + 1):  # the first one imports the modules
        reg.fresh()
        wall = in_this_process(["copy", f"oci:{image}:v1", f"docker://{ref}"])
        kernel += [wall] if i else []
    bench.result(f"push ({name})", "hardway copy").extra["in a running kernel"] = (
        f"{statistics.median(kernel):.2f} s"
    )
    pull_workload(bench, work, f"pull + unpack ({name})", ref, reg, runs=runs)


def in_this_process(argv: list[str]) -> float:
    """Wall seconds of ``python -m hardway ARGV`` run by this process's interpreter."""
    from hardway.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        status = main(argv)
        wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"hardway {' '.join(argv)} failed ({status})")
    return wall


def pull_workload(
    bench: Bench, work: Path, title: str, ref: str, reg: Registry, runs: int | None = None
) -> None:
    """``hardway pull`` vs ``skopeo copy docker://… oci:…`` followed by ``umoci unpack``.

    Each run unpacks into a new directory, and all are removed only at the end: on ext4
    without a journal (this machine's disk), creating files right after deleting tens of
    thousands makes the inode allocator skip the recently deleted ones, and every run
    would be slower than the one before (GNU tar too: 0.9 s → 15 s of system time).
    """
    pulled = work / "pulled"
    runs_done = iter(range(10**6))
    target = pulled

    def fresh(_: str) -> None:
        nonlocal target
        reg.ensure()
        target = pulled / str(next(runs_done))
        target.mkdir(parents=True)
        settle_page_cache()

    def hardway() -> Sample:
        return measure([*HW, "pull", ref, str(target / "rootfs")])

    def skopeo_umoci() -> Sample:
        layout = target / "layout"
        copy = measure([*SKOPEO, "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:v1"])
        unpack = measure(["umoci", "unpack", "--image", f"{layout}:v1", str(target / "bundle")])
        return combine(copy, unpack)

    tools = {"hardway pull": hardway, "skopeo copy + umoci unpack": skopeo_umoci}
    bench.compare(title, tools, before=fresh, runs=runs)
    # untimed: the last trees each made, entry by entry (a fast pull must stay a right one)
    ours, theirs = (
        tree_entries(max(pulled.glob(pattern), key=lambda p: int(p.relative_to(pulled).parts[0])))
        for pattern in ("*/rootfs", "*/bundle/rootfs")
    )
    if differ := sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)):
        same = f"no: {len(differ)} differ ({differ[0]}, …)"
    else:
        same = f"yes, {len(ours) - 1} entries"  # less the "hardlinks" key
    bench.result(title, "hardway pull").extra["same tree as umoci"] = same
    shutil.rmtree(pulled, ignore_errors=True)


def settle_page_cache() -> None:
    """Start a pull from the same memory state as the others: the earlier runs' dirty pages
    written back (``sync``) and, as root, the page cache dropped.

    Without it a run's time depends on what ran before it: on this machine the kernel's
    reclaim starts once ~7 GB of page cache is full, and a pull of the full tree that took
    2.9 s took 4.3 s (system time 0.7 → 3.2 s) after ten others (umoci's unpack, four times
    slower, loses less to it). The registry then reads the blob from the disk: both tools
    pay that."""
    os.sync()
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):  # a container may refuse it: then sync alone
            Path("/proc/sys/vm/drop_caches").write_text("1\n")


def tree_entries(root: Path) -> dict[str, tuple]:
    """Every entry below ``root``: kind, mode, owner, size, mtime, and the link target or
    the content's sha256; plus ``"hardlinks"``, the groups of names sharing an inode."""
    found: dict[str, tuple] = {}
    inodes: dict[int, list[str]] = {}
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(current, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            what: object = ""
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    what = hashlib.file_digest(fh, "sha256").hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
            found[rel] = (st.st_mode, st.st_uid, st.st_gid, size, int(st.st_mtime), what)
    found["hardlinks"] = tuple(sorted(tuple(sorted(names)) for names in inodes.values()))
    return found


#: the rebuild workloads' layer sources: the real tree split by name, like a project's
#: dependencies (most bytes, change rarely), resources, and application files (change often)
SPLIT = (("deps", 0.85), ("resources", 0.98), ("app", 1.0))


def split_tree(rootfs: Path) -> dict[str, Path]:
    """Move the real tree's top-level entries (sorted) into ``deps/``, ``resources/`` and
    ``app/``, by their share of the bytes: the layer sources of the rebuild workloads."""
    names = sorted(p.name for p in rootfs.iterdir())
    total = sum(os.lstat(rootfs / n).st_size for n in names if (rootfs / n).is_file())
    dirs = {part: rootfs / part for part, _ in SPLIT}
    for path in dirs.values():
        path.mkdir()
    done, parts = 0, iter(SPLIT)
    part, share = next(parts)
    for name in names:
        path = rootfs / name
        while done > share * total and part != SPLIT[-1][0]:
            part, share = next(parts)
        if path.is_file() and not path.is_symlink():
            done += path.stat().st_size
        path.rename(dirs[part] / name)
    return dirs


def rebuild_workloads(bench: Bench, work: Path, bundle_dir: Path) -> None:
    """One file changed, then nothing changed: the image built again.

    hardway builds one layer per part of the tree (``deps``, ``resources``, ``app``)
    with its layer cache (``bench/build_driver.py``: ``hardway.build.builder``, a cache warmed
    before each workload); a rebuild should redo only the layer of the changed file.
    umoci compares the bundle with its mtree (refreshed before each workload) and writes
    a layer holding only the change. Both write an OCI layout.
    """
    layout, rootfs = work / "umoci-real", bundle_dir / "rootfs"
    dirs = split_tree(rootfs)
    cache, built, report = work / "build-cache", work / "built", work / "build-report.json"
    sources = [f"{name}={path}:/{name}" for name, path in dirs.items()]
    driver = [PY, str(HERE / "build_driver.py"), "--cache", str(cache), "--report", str(report)]
    counter = iter(range(10**6))
    cases = (
        ("rebuild, one app file changed", "app"),
        ("rebuild, one deps file changed", "deps"),
        ("rebuild, nothing changed", None),
    )
    for workload, part in cases:
        # both start from the tree as it is: umoci's mtree refreshed, hardway's cache warm
        run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:base", str(bundle_dir)])
        run([*driver, "--out", f"oci:{built}:warm", *sources])
        victim = None
        if part is not None:
            victim = next(p for p in sorted(dirs[part].iterdir()) if p.is_file())
        redone: list[str] = []
        written: dict[str, list[int]] = {"hardway": [], "umoci": []}

        def change(_: str, victim: Path | None = victim) -> None:
            if victim is not None:
                with open(victim, "ab") as fh:
                    fh.write(f"change {next(counter)}\n".encode())

        def hardway(redone: list[str] = redone, written: dict = written) -> Sample:
            sample = measure([*driver, "--out", f"oci:{built}:v1", *sources])
            layers = json.loads(report.read_text())
            redone.append("+".join(r["name"] for r in layers if not r["cached"]) or "none")
            written["hardway"].append(sum(r["written"] for r in layers))
            return sample

        def umoci(written: dict = written) -> Sample:
            sample = measure(["umoci", "repack", "--image", f"{layout}:rebuilt", str(bundle_dir)])
            written["umoci"].append(read_layout(layout, "rebuilt").manifest().layers[-1].size)
            return sample

        tools = {"hardway build (layer cache)": hardway, "umoci repack": umoci}
        bench.compare(workload, tools, before=change)
        ours = bench.result(workload, "hardway build (layer cache)")
        ours.extra["layers redone"] = ", ".join(sorted(set(redone)))
        ours.extra["expected"] = part or "none"
        for tool, key in (("hardway", ours), ("umoci", bench.result(workload, "umoci repack"))):
            key.extra["MB written"] = round(statistics.median(written[tool]) / 1e6, 3)


def memory_workload(bench: Bench, work: Path, size_mib: int, reg: Registry) -> None:
    """Peak RSS building and pulling a ``size_mib`` MiB layer (one run each)."""
    mem_bundle = bundle(work, "memory")
    rootfs = mem_bundle / "rootfs"
    make_tree(rootfs, size_mib)
    layout = work / "umoci-memory"
    out = work / "out" / "mem.tar.gz"
    tools = {
        "hardway layer create": lambda: measure(
            [*HW, "layer", "create", str(rootfs), "-o", str(out)]
        ),
        "umoci repack": lambda: measure(
            ["umoci", "repack", "--image", f"{layout}:m", str(mem_bundle)]
        ),
    }
    bench.compare(f"memory: build {size_mib} MiB layer", tools, runs=1)
    out.unlink(missing_ok=True)
    shutil.rmtree(layout, ignore_errors=True)
    image = work / "img-memory"
    run([*HW, "image", "from-dir", str(rootfs), f"oci:{image}:v1"])
    shutil.rmtree(mem_bundle)
    ref = f"{reg.host}/bench/memory:v1"
    run([*HW, "copy", f"oci:{image}:v1", f"docker://{ref}"])
    shutil.rmtree(image)
    pull_workload(bench, work, f"memory: pull + unpack {size_mib} MiB layer", ref, reg, runs=1)


# --- the machine ----------------------------------------------------------------------------


def version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        return "missing"
    return out.strip().splitlines()[0] if out.strip() else "?"


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?"
        )
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        mem = f"{int(fh.readline().split()[1]) / 2**20:.1f} GiB"
    from importlib.metadata import version as pkg

    git = ["git", "-C", str(ROOT)]
    return {
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "memory": mem,
        "kernel": platform.release(),
        "OS": version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "filesystem": version(["stat", "-f", "-c", "%T", str(tempfile.gettempdir())]),
        "Python": platform.python_version(),
        "hardway": f"{pkg('hardway')} (git {version([*git, 'rev-parse', '--short', 'HEAD'])})",
        "isal": pkg("isal"),
        "umoci": version(["umoci", "--version"]),
        "skopeo": version(["skopeo", "--version"]),
        "registry": version(["docker-registry", "--version"]),
        "tar": version(["tar", "--version"]),
        "gzip": version(["gzip", "--version"]),
    }


# --- reporting ------------------------------------------------------------------------------

#: workload (or its prefix) → (our tool, the peer, the target ratio); a whole name wins
TARGETS: dict[str, tuple[str, str, float]] = {
    "build layer": ("hardway layer create", "umoci repack", 0.35),
    "build layer/tar": ("hardway layer create", "tar | gzip -6", 0.2),
    "push": ("hardway copy", "skopeo copy", 1.2),
    "pull + unpack": ("hardway pull", "skopeo copy + umoci unpack", 0.5),
    "pull + unpack (full)": ("hardway pull", "skopeo copy + umoci unpack", 0.35),
}
#: the most memory any hardway command may take, in MB
MAX_RSS_MB = 64


def workloads(results: list[Result]) -> list[str]:
    seen: list[str] = []
    for r in results:
        if r.workload not in seen:
            seen.append(r.workload)
    return seen


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(results: list[Result], workload: str) -> list[str]:
    rows = [r for r in results if r.workload == workload]
    ours = next((r for r in rows if r.tool.startswith("hardway")), None)
    extras = sorted({k for r in rows for k in r.extra})
    head = ["tool", "runs", "wall s", "CPU s", "peak RSS MiB", "wall ratio (ours/theirs)", *extras]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = ""
        if ours is not None and r is not ours and not r.tool.startswith("hardway"):
            ratio = f"{ours.median('wall') / r.median('wall'):.2f}×"
        cells = [
            cell(r.tool),
            str(len(r.samples)),
            f"{r.median('wall'):.2f}",
            f"{r.median('cpu'):.2f}",
            f"{r.median('rss'):.0f}",
            ratio,
            *(str(r.extra.get(k, "")) for k in extras),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdicts(results: list[Result]) -> list[str]:
    """One line per target: the measured ratio and met / missed."""
    by = {(r.workload, r.tool): r for r in results}
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    for workload in workloads(results):
        prefix = workload.split(" (")[0]
        for key in (workload if workload in TARGETS else prefix, prefix + "/tar"):
            if key not in TARGETS:
                continue
            ours, peer, limit = TARGETS[key]
            if (workload, ours) not in by or (workload, peer) not in by:
                continue
            theirs = by[workload, peer].median("wall")
            ratio = by[workload, ours].median("wall") / theirs
            verdict = "met" if ratio <= limit else f"missed: {ratio / limit - 1:.0%} over"
            measured = f"{ratio:.2f}×"
            if kernel := by[workload, ours].extra.get("in a running kernel"):
                warm = float(str(kernel).removesuffix(" s")) / theirs
                measured += f" (from a running kernel: {warm:.2f}×)"
            lines.append(f"| {workload}: ≤ {limit}× {cell(peer)} | {measured} | {verdict} |")
    for r in results:
        if r.workload.startswith("no-op") and r.tool.startswith("hardway"):
            ok = r.extra.get("upload requests") == 0 and r.median("wall") < 1
            lines.append(
                f"| {r.workload}: no blob bytes, < 1 s | {r.extra.get('upload requests')} upload "
                f"requests, {r.median('wall'):.2f} s | {'met' if ok else 'missed'} |"
            )
        if r.workload.startswith("rebuild") and "expected" in r.extra:
            redone, expected = r.extra.get("layers redone"), r.extra["expected"]
            what = "no layer" if expected == "none" else f"only the {expected} layer"
            lines.append(
                f"| {r.workload}: {what} redone | layers redone: {redone} "
                f"({r.median('wall'):.2f} s) | {'met' if redone == expected else 'missed'} |"
            )
        if "same tree as umoci" in r.extra:
            same = str(r.extra["same tree as umoci"])
            lines.append(
                f"| {r.workload}: the tree equals umoci's unpack, entry by entry | {same} | "
                f"{'met' if same.startswith('yes') else 'missed'} |"
            )
        if r.workload.startswith("memory") and r.tool.startswith("hardway"):
            mb = r.median("rss") * 1.048576
            verdict = "met" if mb <= MAX_RSS_MB else "missed"
            lines.append(f"| {r.workload}: peak RSS ≤ {MAX_RSS_MB} MB | {mb:.0f} MB | {verdict} |")
    ours = [
        (s.rss * 1.048576, r.workload)
        for r in results
        if r.tool.startswith("hardway")
        for s in r.samples
    ]
    if ours:
        mb, where = max(ours)
        verdict = "met" if mb <= MAX_RSS_MB else "missed"
        lines.append(
            f"| peak RSS ≤ {MAX_RSS_MB} MB everywhere (every hardway run) | {mb:.0f} MB "
            f"({cell(where)}) | {verdict} |"
        )
    return lines


def write_report(doc: dict, path: Path, chart: Path | None) -> None:
    results = [
        Result(r["workload"], r["tool"], [Sample(**s) for s in r["samples"]], r["extra"])
        for r in doc["results"]
    ]
    out = [
        "# Benchmarks",
        "",
        "hardway against the tools people already use — umoci, skopeo, `tar | gzip` — measured",
        "in the same run on the same machine by `make bench` (`bench/run.py`), which regenerates",
        "this file. Each cell is the **median** of the runs; each run is a fresh process (so",
        "Python's start-up, 0.1–0.2 s, is in every hardway figure); CPU is user + sys of the",
        "process and its children; peak RSS is the largest resident set of any of them. A",
        "ratio below 1 means hardway is faster. Every pull starts after `sync` and, as root,",
        "with the page cache dropped, so that no run pays for the ones before it; after the",
        "runs, the trees hardway and umoci made are compared entry by entry.",
        "",
        f"Run {doc['date']} with `{doc['command']}`.",
        "",
        "## Data",
        "",
    ]
    for name, (size, count) in doc["data"].items():
        out.append(f"- **{name}**: {size / 1e6:.0f} MB in regular files, {count} entries")
    out += ["", "## Targets", "", *verdicts(results), ""]
    if chart is not None:
        out += [f"![median wall time per workload]({os.path.relpath(chart, path.parent)})", ""]
    out += ["## Results", ""]
    for workload in workloads(results):
        out += [f"### {workload}", "", *table(results, workload), ""]
    out += ["## Machine", ""]
    out += [f"- {k}: {v}" for k, v in doc["machine"].items()]
    out += [
        "",
        "The machine's 2 cores were shared with other work while this ran: absolute figures",
        "are noisy, ratios (tools alternate within each run) less so.",
        "",
        "## How to reproduce",
        "",
        "```",
        "make bench                              # make setup, then bench/run.py",
        ".venv/bin/python bench/run.py --quick   # a smoke run with small data",
        ".venv/bin/python bench/run.py --runs 9 --real-mib 600",
        "```",
        "",
    ]
    notes = HERE / "notes.md"
    if notes.exists():
        out += [notes.read_text().rstrip(), ""]
    path.write_text("\n".join(out))


def write_chart(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [
        Result(r["workload"], r["tool"], [Sample(**s) for s in r["samples"]], r["extra"])
        for r in doc["results"]
    ]
    names = workloads(results)
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.1 * len(names) + 1.5 * len(names) / 2))
    for ax, workload in zip(axes, names, strict=True):
        rows = [r for r in results if r.workload == workload]
        walls = [r.median("wall") for r in rows]
        colors = ["tab:green" if r.tool.startswith("hardway") else "tab:gray" for r in rows]
        ax.barh([r.tool for r in rows], walls, color=colors)
        for y, w in enumerate(walls):
            ax.text(w, y, f" {w:.2f} s", va="center", fontsize=8)
        ax.set_title(workload, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(walls) * 1.25)
    axes[-1].set_xlabel("median wall time, seconds (green: hardway)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per tool and workload")
    parser.add_argument("--real-mib", type=int, default=300, help="size of the real tree")
    parser.add_argument(
        "--full-runs", type=int, default=3, help="runs on the full tree (0: leave it out)"
    )
    parser.add_argument("--small-files", type=int, default=20000)
    parser.add_argument("--memory-mib", type=int, default=1024, help="the memory workload's layer")
    parser.add_argument("--quick", action="store_true", help="small data, one run: a smoke run")
    parser.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    parser.add_argument("--report", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--chart", type=Path, default=HERE / "results.png")
    parser.add_argument("--only", nargs="*", help="workloads: build push rebuild memory")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the report")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.real_mib, args.small_files, args.memory_mib = 1, 40, 2000, 64
        args.full_runs = 0
    if args.from_json:
        doc = json.loads(args.json.read_text())
        write_chart(doc, args.chart)
        write_report(doc, args.report, args.chart)
        return
    for tool in ("umoci", "skopeo", "tar", "gzip"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is missing: run `make setup` (tools/install-debs.sh)")
    only = set(args.only or ["build", "push", "rebuild", "memory"])
    bench = Bench(args.runs)
    with workdir(args.work) as work:
        reg = Registry(work)
        reg.start()
        try:
            data = prepare(work, args)
            for name in ("real", "small", "full"):
                if name == "full" and not args.full_runs:
                    continue
                runs = args.full_runs if name == "full" else None
                if "build" in only:
                    bundle_dir = work / f"bundle-{name}"
                    build_workload(
                        bench, work, name, bundle_dir, with_tar=name != "full", runs=runs
                    )
                if "push" in only:
                    rootfs = work / f"bundle-{name}" / "rootfs"
                    push_pull_workloads(bench, work, name, rootfs, reg, runs=runs)
                if name == "full":
                    shutil.rmtree(work / "bundle-full", ignore_errors=True)
            if "rebuild" in only:
                rebuild_workloads(bench, work, work / "bundle-real")
            if "memory" in only:
                shutil.rmtree(work / "bundle-small", ignore_errors=True)
                memory_workload(bench, work, args.memory_mib, reg)
                data[f"memory ({args.memory_mib} MiB synthetic, half compressible)"] = (
                    args.memory_mib * 2**20,
                    16,
                )
        finally:
            reg.stop()
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["bench/run.py", *sys.argv[1:]]),
        "machine": machine(),
        "data": data,
        "results": [
            {
                "workload": r.workload,
                "tool": r.tool,
                "samples": [asdict(s) for s in r.samples],
                "extra": r.extra,
            }
            for r in bench.results.values()
        ],
    }
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    write_chart(doc, args.chart)
    write_report(doc, args.report, args.chart)
    print(f"wrote {args.report}, {args.chart} and {args.json}")


def prepare(work: Path, args: argparse.Namespace) -> dict[str, tuple[int, int]]:
    print(f"preparing data in {work}", flush=True)
    real = bundle(work, "real")
    copy_real_tree(real / "rootfs", args.real_mib)
    small = bundle(work, "small")
    make_small_tree(small / "rootfs", args.small_files)
    data = {
        f"real ({REAL_SOURCE}, part)": tree_size(real / "rootfs"),
        "small (synthetic 0–4 KiB text files)": tree_size(small / "rootfs"),
    }
    if args.full_runs:
        full = bundle(work, "full")
        copy_real_tree(full / "rootfs", None)
        data[f"full (all of {REAL_SOURCE})"] = tree_size(full / "rootfs")
    return data


@contextlib.contextmanager
def workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="hardway-bench-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
