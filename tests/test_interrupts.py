"""Interrupts and leftovers: Ctrl-C (SIGINT to ``python -m hardway …``), a notebook
kernel's interrupt (a ``KeyboardInterrupt`` in the middle of a call), and a SIGKILL
followed by ``python -m hardway cleanup``.

Each interrupt is sent when the operation is visibly in progress (an upload session in
the registry, a ``.tmp-`` blob in the layout, a downloaded layer, a partial root
filesystem), never after a fixed delay; each test then asserts that it really was
interrupted, and that nothing is left: no temporary file, no half-written layout entry,
no half root filesystem, no process, cgroup, veth or registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

import hardway.distribution.registry  # noqa: F401  (registers docker://)
from hardway.course import cleanup, leftovers
from hardway.distribution.server import local_registry, services
from hardway.distribution.transports import read_image, write_image
from hardway.image.mutate import from_dir
from hardway.image.unpack import unpack_image
from hardway.sys import mountinfo, proc

ROOT = Path(__file__).resolve().parent.parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
#: big enough that every step takes a while, even on a fast machine
LAYER_MIB = 96


# --- an image big enough to interrupt --------------------------------------------------


@pytest.fixture(scope="module")
def big_layout(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``oci:DIR:v1``: two uncompressed layers of random bytes (``LAYER_MIB`` each)."""
    top = tmp_path_factory.mktemp("big")
    image = None
    for i in range(2):
        rootfs = top / f"rootfs{i}"
        rootfs.mkdir()
        with open(rootfs / f"random{i}.bin", "wb") as out:
            for _ in range(LAYER_MIB):
                out.write(os.urandom(1 << 20))
        (top / f"work{i}").mkdir()
        image = from_dir(rootfs, top / f"work{i}", base=image, compression="none")
    write_image(image, f"oci:{top / 'layout'}:v1")
    return f"oci:{top / 'layout'}:v1"


@pytest.fixture(scope="module")
def pushed(big_layout: str, registry: local_registry.RegistryStatus) -> str:
    """``HOST/hardway/big:v1`` in the session registry."""
    ref = f"127.0.0.1:{registry.port}/hardway/big:v1"
    write_image(read_image(big_layout), f"docker://{ref}")
    return ref


@pytest.fixture
def temp(tmp_path: Path) -> Path:
    """The ``TMPDIR`` of the process under test: it must be empty at the end."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path


def cli(*args: str, temp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hardway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(temp)},
    )


def wait_for(what: str, found: Callable[[], object], proc: subprocess.Popen | None = None):
    """Poll until ``found()`` is true (or the process ended: then fail, saying so)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if value := found():
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"it ended before {what}: {proc.returncode}\n{proc.stderr.read()}")
        time.sleep(0.005)
    pytest.fail(f"never saw {what}")


# --- what "in progress" looks like, and what "nothing left" means -----------------------


def uploading(registry: local_registry.RegistryStatus, repo: str) -> Callable[[], bool]:
    """An upload session of ``repo`` is open in the registry's storage."""
    uploads = registry.state / "data/docker/registry/v2/repositories" / repo / "_uploads"
    return lambda: uploads.is_dir() and any(uploads.iterdir())


def writing_blob(layout: Path) -> Callable[[], bool]:
    return lambda: any((layout / "blobs").glob(".tmp-*"))  # hardway.image.blobs writes there


def downloaded_layer(temp: Path) -> Callable[[], bool]:
    return lambda: any(temp.glob("hardway-unpack-*/0.layer"))


def applying(target: Path) -> Callable[[], bool]:
    return lambda: any(target.parent.glob(f".{target.name}.partial-*/random0.bin"))


def assert_no_manifest(registry: local_registry.RegistryStatus, repo: str, tag: str) -> None:
    """The registry has no manifest for the tag: a push writes it only after every blob."""
    url = f"{registry.url}/v2/{repo}/manifests/{tag}"
    with requests.Session() as http:
        http.trust_env = False
        assert http.head(url, timeout=10).status_code == 404


def assert_layout_whole(layout: Path) -> None:
    """No ``.tmp-`` file, every blob is what its name says, index.json absent or whole."""
    assert not [p for p in layout.rglob(".tmp-*")], "a half-written blob is left"
    for blob in (layout / "blobs/sha256").glob("*"):
        digest = hashlib.sha256()
        with blob.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        assert digest.hexdigest() == blob.name, f"{blob.name} holds other bytes"
    if (layout / "index.json").exists():
        json.loads((layout / "index.json").read_text())


def assert_no_rootfs(target: Path) -> None:
    assert not target.exists(), "a half root filesystem is left"
    assert not list(target.parent.glob(f".{target.name}.partial-*"))


def assert_interrupted(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err, err


# --- Ctrl-C on the command line --------------------------------------------------------


def test_ctrl_c_during_a_push_leaves_no_manifest_and_no_temp_file(
    big_layout: str, registry: local_registry.RegistryStatus, temp: Path
) -> None:
    repo = "hardway/interrupted-push"
    proc = cli("copy", big_layout, f"docker://127.0.0.1:{registry.port}/{repo}:v1", temp=temp)
    wait_for("an upload session", uploading(registry, repo), proc)
    proc.send_signal(signal.SIGINT)
    assert_interrupted(proc)
    assert_no_manifest(registry, repo, "v1")
    assert list(temp.iterdir()) == []


def test_ctrl_c_during_a_pull_to_a_layout_leaves_no_half_blob(
    pushed: str, tmp_path: Path, temp: Path
) -> None:
    layout = tmp_path / "pulled"
    proc = cli("copy", f"docker://{pushed}", f"oci:{layout}:v1", temp=temp)
    wait_for("a blob being written", writing_blob(layout), proc)
    proc.send_signal(signal.SIGINT)
    assert_interrupted(proc)
    assert_layout_whole(layout)
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("step", ["download", "apply"])
def test_ctrl_c_during_a_pull_and_unpack_leaves_no_half_rootfs(
    pushed: str, tmp_path: Path, temp: Path, step: str
) -> None:
    target = tmp_path / "rootfs"
    proc = cli("pull", pushed, str(target), temp=temp)
    busy = downloaded_layer(temp) if step == "download" else applying(target)
    wait_for(f"the {step} step", busy, proc)
    proc.send_signal(signal.SIGINT)
    assert_interrupted(proc)
    assert_no_rootfs(target)
    assert list(temp.iterdir()) == []


def test_an_unpack_that_finishes_renames_the_whole_tree_into_place(
    big_layout: str, tmp_path: Path, temp: Path
) -> None:
    target = tmp_path / "rootfs"
    target.mkdir(mode=0o750)  # an empty directory is replaced, keeping its mode
    done = subprocess.run(
        [sys.executable, "-m", "hardway", "unpack", big_layout, str(target)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in target.iterdir()) == ["random0.bin", "random1.bin"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o750)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rootfs", "tmp"]
    assert list(temp.iterdir()) == []


# --- a kernel interrupt: KeyboardInterrupt in the middle of a call ----------------------


@pytest.fixture
def interrupt_when() -> Iterator[Callable[[Callable[[], bool]], None]]:
    """``interrupt_when(found)``: SIGINT this process, as Jupyter interrupts a kernel,
    once ``found()`` is true. The handler raises KeyboardInterrupt only while armed, so
    a late signal can never stop the test run."""
    armed = threading.Event()
    fired = threading.Event()

    def handler(*_: object) -> None:
        if armed.is_set():
            armed.clear()
            raise KeyboardInterrupt

    def start(found: Callable[[], bool]) -> None:
        def watch() -> None:
            deadline = time.monotonic() + 60
            while armed.is_set() and time.monotonic() < deadline:
                if found():
                    fired.set()
                    os.kill(os.getpid(), signal.SIGINT)
                    return
                time.sleep(0.005)

        armed.set()
        threading.Thread(target=watch, daemon=True).start()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield start
    finally:
        armed.clear()
        signal.signal(signal.SIGINT, previous)
    assert fired.is_set(), "the operation finished before it could be interrupted"


@pytest.fixture
def own_tempdir(temp: Path) -> Iterator[Path]:
    """``tempfile``'s directory, for this test only."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(temp)
    try:
        yield temp
    finally:
        tempfile.tempdir = saved


def test_kernel_interrupt_during_a_push(
    big_layout: str, registry: local_registry.RegistryStatus, own_tempdir: Path, interrupt_when
) -> None:
    repo = "hardway/kernel-push"
    image = read_image(big_layout)
    interrupt_when(uploading(registry, repo))
    with pytest.raises(KeyboardInterrupt):
        write_image(image, f"docker://127.0.0.1:{registry.port}/{repo}:v1")
    assert_no_manifest(registry, repo, "v1")
    assert list(own_tempdir.iterdir()) == []


def test_kernel_interrupt_during_a_pull_to_a_layout(
    pushed: str, tmp_path: Path, own_tempdir: Path, interrupt_when
) -> None:
    layout = tmp_path / "pulled"
    image = read_image(f"docker://{pushed}")
    interrupt_when(writing_blob(layout))
    with pytest.raises(KeyboardInterrupt):
        write_image(image, f"oci:{layout}:v1")
    assert_layout_whole(layout)
    assert list(own_tempdir.iterdir()) == []


def test_kernel_interrupt_during_a_pull_to_a_docker_archive(
    pushed: str, tmp_path: Path, own_tempdir: Path, interrupt_when
) -> None:
    image = read_image(f"docker://{pushed}")
    interrupt_when(lambda: any(tmp_path.glob(".tmp-*.tar")))
    with pytest.raises(KeyboardInterrupt):
        write_image(image, f"docker-archive:{tmp_path / 'big.tar'}:hardway/big:v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # no big.tar, no .tmp-
    assert list(own_tempdir.iterdir()) == []


@pytest.mark.parametrize("step", ["download", "apply"])
def test_kernel_interrupt_during_an_unpack(
    pushed: str, tmp_path: Path, own_tempdir: Path, interrupt_when, step: str
) -> None:
    target = tmp_path / "rootfs"
    image = read_image(f"docker://{pushed}")
    interrupt_when(downloaded_layer(own_tempdir) if step == "download" else applying(target))
    with pytest.raises(KeyboardInterrupt):
        unpack_image(image, target)
    assert_no_rootfs(target)
    assert list(own_tempdir.iterdir()) == []


# --- SIGKILL, then `python -m hardway cleanup` -----------------------------------------


def run_cleanup(*flags: str, temp: Path | None = None, env: dict | None = None) -> list[str]:
    """``python -m hardway cleanup --this-session`` as the learner runs it; its lines."""
    done = subprocess.run(
        [sys.executable, "-m", "hardway", "cleanup", "--this-session", *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env or {**os.environ, "TMPDIR": str(temp)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@needs_root
def test_sigkill_during_a_run_then_cleanup(busybox_rootfs: Path, temp: Path) -> None:
    before = leftovers.snapshot()
    proc = cli("run", "--memory", "32M", "--net", str(busybox_rootfs), "--", "sleep", "60",
               temp=temp)  # fmt: skip
    wait_for("the container", lambda: any("sleep 60" in p for p in leftovers.snapshot().processes))
    proc.kill()
    proc.communicate(timeout=30)
    time.sleep(0.2)  # the launcher dies with its parent; its cgroup stays behind
    left = leftovers.left_behind(before, leftovers.snapshot())
    assert any(item.startswith("cgroup ") for item in left), left
    removed = run_cleanup(temp=temp)
    assert any(line.startswith("removed cgroup ") for line in removed), removed
    assert leftovers.settle(before) == []
    assert run_cleanup("--dry-run", temp=temp) == ["nothing left over"]


@pytest.mark.parametrize("step", ["download", "apply"])
def test_sigkill_during_a_pull_then_cleanup(
    pushed: str, tmp_path: Path, temp: Path, step: str
) -> None:
    target = tmp_path / "rootfs"
    proc = cli("pull", pushed, str(target), temp=temp)
    wait_for(
        f"the {step} step", downloaded_layer(temp) if step == "download" else applying(target), proc
    )
    proc.kill()
    proc.communicate(timeout=30)
    assert not target.exists(), "the target only appears whole"
    assert [p.name[:15] for p in temp.iterdir()] == ["hardway-unpack-"]
    removed = run_cleanup(temp=temp)
    assert any(line.startswith("removed temporary directory ") for line in removed), removed
    assert list(temp.iterdir()) == []
    # what only a SIGKILL leaves: a partial tree, named as such (documented); a pull
    # applies its layers while they download, so a kill in the download may leave one too
    partial = list(tmp_path.glob(".rootfs.partial-*"))
    assert len(partial) == 1 if step == "apply" else len(partial) <= 1


def test_sigkill_during_a_push_then_cleanup(
    big_layout: str, registry: local_registry.RegistryStatus, temp: Path
) -> None:
    repo = "hardway/killed-push"
    proc = cli("copy", big_layout, f"docker://127.0.0.1:{registry.port}/{repo}:v1", temp=temp)
    wait_for("an upload session", uploading(registry, repo), proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert_no_manifest(registry, repo, "v1")
    run_cleanup(temp=temp)
    assert list(temp.iterdir()) == []
    assert local_registry.status(registry.port).running, "the session registry must stay"


KERNEL = """
import sys, time
from hardway.distribution.server import local_registry
local_registry.start_mode(int(sys.argv[1]), "token")
print("ready", flush=True)
time.sleep(600)
"""


def test_a_killed_kernels_registry_and_token_service_are_stopped_by_cleanup(
    tmp_path: Path, free_port: int, temp: Path
) -> None:
    """Notebook 07 starts a token registry of its own; the kernel dies (SIGKILL)."""
    env = {**os.environ, "HARDWAY_STATE_DIR": str(tmp_path / "state"), "TMPDIR": str(temp)}
    kernel = subprocess.Popen(
        [sys.executable, "-c", KERNEL, str(free_port)], stdout=subprocess.PIPE, text=True,
        env=env, cwd=ROOT,
    )  # fmt: skip
    assert kernel.stdout.readline() == "ready\n"
    ours = [s for s in services.services() if s.port == free_port]
    assert sorted(s.kind for s in ours) == ["registry", "token service"]
    kernel.kill()
    kernel.wait()
    assert [s for s in services.services() if s.port == free_port] == ours, "they outlive it"

    removed = run_cleanup(temp=temp)
    assert sorted(line for line in removed if f"port {free_port} " in line) == [
        f"removed {s}" for s in ours
    ]
    assert not [s for s in services.services() if s.port == free_port]
    # gone, or a zombie until init reaps it (its parent, the kernel, is dead)
    assert all(proc.stat_of(s.pid)[0] in ("", "Z") for s in ours)


def test_a_kernel_that_shuts_down_stops_the_registries_it_started(
    tmp_path: Path, free_port: int, temp: Path
) -> None:
    """A kernel shutdown or restart is a normal exit: what it owned stops with it."""
    env = {**os.environ, "HARDWAY_STATE_DIR": str(tmp_path / "state"), "TMPDIR": str(temp)}
    code = KERNEL.replace("time.sleep(600)", "")
    done = subprocess.run([sys.executable, "-c", code, str(free_port)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.stdout == "ready\n", done.stderr
    assert not [s for s in services.services() if s.port == free_port]


def test_cleanup_keeps_the_shared_and_the_detached_registries_unless_asked(
    tmp_path: Path, free_port: int, temp: Path
) -> None:
    """``registry start`` (the CLI, ``make lab``) starts a registry to stay; so is the one
    on the default port. Only ``--registries`` (``make clean``) stops them."""
    env = {**os.environ, "HARDWAY_STATE_DIR": str(tmp_path / "state"), "TMPDIR": str(temp)}
    env["HARDWAY_SESSION"] = other = uuid.uuid4().hex  # --registries must spare ours
    argv = [sys.executable, "-m", "hardway", "registry", "start", "--port", str(free_port)]
    subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)
    started = [s for s in services.services(other) if s.port == free_port]
    assert [s.kind for s in started] == ["registry"]
    root = started[0].root
    assert (root / services.OWNER_FILE).read_text() == "detached\n"
    assert not services.owner_gone(root)

    assert not [line for line in run_cleanup(env=env) if f"port {free_port} " in line]
    would = run_cleanup("--registries", "--dry-run", env=env)
    assert would == [f"would remove {started[0]}", "would remove 1 leftover(s)"]
    assert [s for s in services.services(other) if s.port == free_port] == started
    assert run_cleanup("--registries", env=env)[0] == f"removed {started[0]}"
    assert not [s for s in services.services(other) if s.port == free_port]


def test_the_registry_on_the_default_port_stays_even_when_its_kernel_died(
    tmp_path: Path, free_port: int, temp: Path
) -> None:
    env = {**os.environ, "HARDWAY_STATE_DIR": str(tmp_path / "state"), "TMPDIR": str(temp)}
    env["HARDWAY_REGISTRY_PORT"] = str(free_port)
    env["HARDWAY_SESSION"] = other = uuid.uuid4().hex  # --registries must spare ours
    code = "from hardway.distribution.server import local_registry; local_registry.ensure_running()"
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=60)
    started = [s for s in services.services(other) if s.port == free_port]
    assert services.owner_gone(started[0].root), "its kernel is gone"
    assert run_cleanup(env=env) == ["nothing left over"]
    assert run_cleanup("--registries", env=env)[0] == f"removed {started[0]}"
    assert not [s for s in services.services(other) if s.port == free_port]


# --- stale temporary directories ------------------------------------------------------


def test_stale_temp_dirs_are_those_nobody_can_still_use(tmp_path: Path) -> None:
    temp = tmp_path / "t"
    temp.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = [temp / "hardway-07-crashed", temp / f"hardway-pytest-{gone.pid}-x"]
    for path in [*stale, temp / "not-ours"]:
        path.mkdir()
    (temp / "hardway-file").write_text("a file, not a directory of ours")
    live_run = temp / f"hardway-pytest-{os.getpid()}-y"
    live_run.mkdir()
    in_use = temp / "hardway-02-cwd"
    in_use.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"], cwd=in_use)
    time.sleep(0.05)  # the kernel starts after the stale directories were made
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/ipykernel_launcher").symlink_to(shutil.which("sleep"))  # a stand-in
    kernel = subprocess.Popen(
        [str(tmp_path / "bin/ipykernel_launcher"), "60"], env={**os.environ, "TMPDIR": str(temp)}
    )
    try:
        wait_for(
            "the kernel", lambda: b"ipykernel" in Path(f"/proc/{kernel.pid}/cmdline").read_bytes()
        )
        time.sleep(0.05)
        held = temp / "hardway-03-held-by-a-live-kernel"
        held.mkdir()
        assert leftovers.stale_temp_dirs(temp) == sorted(stale)
        removed = cleanup.cleanup(os.environ["HARDWAY_SESSION"], temp=temp)
        assert [r for r in removed if r.startswith("temporary")] == [
            f"temporary directory {p}" for p in sorted(stale)
        ]
        assert sorted(p.name for p in temp.iterdir()) == sorted(
            ["not-ours", "hardway-file", live_run.name, in_use.name, held.name]
        )
    finally:
        sleeper.kill()
        kernel.kill()
        sleeper.wait()
        kernel.wait()


@needs_root
@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr")
def test_cleanup_says_what_it_could_not_remove(tmp_path: Path) -> None:
    """An immutable file (``chattr +i``) defeats even root, as a missing privilege
    defeats a learner: cleanup names what stays, and why, and exits with status 1."""
    temp = tmp_path / "t"
    stuck = temp / "hardway-07-crashed"
    stuck.mkdir(parents=True)
    (stuck / "pinned").write_text("")
    if subprocess.run(["chattr", "+i", str(stuck / "pinned")], capture_output=True).returncode:
        pytest.skip("this filesystem has no immutable flag")
    try:
        done = run_cleanup_status(temp)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stdout.splitlines() == ["removed 0 leftover(s)"]
        assert done.stderr.splitlines() == [
            f"could not remove temporary directory {stuck}: Operation not permitted",
            "1 leftover(s) remain; to fix: see why above, then remove them by hand",
        ]
    finally:
        subprocess.run(["chattr", "-i", str(stuck / "pinned")], check=True)
    assert run_cleanup_status(temp).stdout.splitlines() == [
        f"removed temporary directory {stuck}",
        "removed 1 leftover(s)",
    ]
    assert list(temp.iterdir()) == []


def run_cleanup_status(temp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hardway", "cleanup", "--this-session"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "TMPDIR": str(temp)},
    )  # fmt: skip


def test_mountinfo_escapes_are_undone() -> None:
    assert mountinfo.unescape_mount_path(r"/tmp/hardway-x/a\040b\011c\012d\134e") == (
        "/tmp/hardway-x/a b\tc\nd\\e"
    )
    assert mountinfo.unescape_mount_path("/plain") == "/plain"


@needs_root
def test_cleanup_unmounts_a_mount_whose_path_has_a_space(tmp_path: Path) -> None:
    point = tmp_path / "hardway mount point"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
    try:
        assert any(ascii(str(point)) in m for m in leftovers.snapshot().mounts)
        removed = cleanup.cleanup(os.environ["HARDWAY_SESSION"])
        assert f"mount {str(point)!a}" in removed
        assert not any(ascii(str(point)) in m for m in leftovers.snapshot().mounts)
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_process_that_merely_mentions_the_launcher_is_not_the_courses() -> None:
    """cleanup kills the course's processes as root: a ``grep hardway.isolation.launch`` (here, a
    sleeper with that word among its arguments) must never count as one."""
    mention = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "hardway.isolation.launch"]
    )
    try:
        wait_for("it to start", lambda: "hardway.isolation.launch" in proc.argv_of(mention.pid))
        assert not any(f"process {mention.pid} " in p for p in leftovers.snapshot().processes)
    finally:
        mention.kill()
        mention.wait()


def test_cleanup_finds_a_launcher_started_under_its_old_module_name(tmp_path: Path) -> None:
    """A checkout from before the package's parts layout ran ``python -m hardway.launch``;
    a container of such a run, left behind, is still the course's and cleanup removes it."""
    old = tmp_path / "old-checkout"
    (old / "hardway").mkdir(parents=True)
    (old / "hardway" / "__init__.py").write_text("")
    (old / "hardway" / "launch.py").write_text("import time\ntime.sleep(60)\n")
    child = subprocess.Popen(
        [sys.executable, "-m", "hardway.launch", "5", "6"],
        cwd=old,
        env={**os.environ, "PYTHONPATH": str(old)},
    )
    try:
        wait_for("it to start", lambda: "hardway.launch" in proc.argv_of(child.pid))
        assert any(f"process {child.pid} " in p for p in leftovers.snapshot().processes)
        assert f"process {child.pid}" in cleanup.cleanup(os.environ["HARDWAY_SESSION"])
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    "module", ["hardway.distribution.server.tokenserver", "hardway.tokenserver"]
)
def test_a_token_service_is_recognised_under_its_new_and_old_module_names(module: str) -> None:
    argv = ["/v/bin/python", "-m", module, "serve", "--htpasswd", "/s/registry/5123/htpasswd"]
    service = services.service_of(4242, argv)
    assert service is not None and (service.kind, service.port) == ("token service", 5123)
    assert services.service_of(4242, ["grep", "-m", module, "serve", "--htpasswd", "x"]) is None


@needs_root
def test_a_mount_merely_named_hardway_is_not_the_courses() -> None:
    """Only a mount *point* inside the course's directories counts: a learner's mount
    whose source is called hardway, outside them, is never detached by cleanup."""
    outside = Path(tempfile.mkdtemp(prefix="review-", dir="/tmp"))
    try:
        subprocess.run(["mount", "-t", "tmpfs", "hardway-disk", str(outside)], check=True)
        try:
            assert not any(str(outside) in m for m in leftovers.snapshot().mounts)
            assert f"mount {str(outside)!a}" not in cleanup.cleanup(
                os.environ["HARDWAY_SESSION"], dry_run=True, temp="/tmp"
            )
        finally:
            subprocess.run(["umount", str(outside)], check=True)
    finally:
        outside.rmdir()


def test_stopping_owned_registries_at_exit_survives_a_removed_owner_file(
    tmp_path: Path, monkeypatch
) -> None:
    """The atexit hook must not raise (a traceback at every kernel exit) when a state
    directory lost its owner file, say to a cleanup meanwhile."""
    monkeypatch.setattr(local_registry, "_owned_roots", {tmp_path})
    local_registry._stop_owned()
    assert local_registry._owned_roots == set()


# --- the final check of the test suite (conftest.py) ----------------------------------

LEAKY = """
import os, subprocess, tempfile

def test_leaves_things_behind() -> None:
    tempfile.mkdtemp(prefix="hardway-leak-")
    env = {**os.environ, "container": "hardway"}
    subprocess.Popen(["sleep", "120"], env=env, start_new_session=True)
"""


def test_the_suites_final_check_lists_what_a_test_left(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_leaky.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    sleeper = re.search(r"process (\d+) \(started at tick \d+\): sleep 120", done.stdout)
    if sleeper:
        os.kill(int(sleeper[1]), signal.SIGKILL)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout and "LEFTOVERS" in done.stdout
    assert sleeper, done.stdout
    assert re.search(r"temporary file \S+/tmp/hardway-leak-\w+$", done.stdout, re.M), done.stdout
