"""The guest of the pure cgroup v2 VM: a Debian system made here, from nothing, then cached.

    .venv/bin/python tools/vm.py build      (this module is the recipe; tools/vm.py runs it)

Every file of the guest comes from the project's own steps, never from a prebuilt image:

* **the system**: ``debootstrap --variant=minbase`` from the mirror and suite this
  machine's apt already uses (``apt_source``), plus only the packages the in-guest tests
  need (``PACKAGES``);
* **the kernel**: Debian's ``linux-image-cloud-amd64`` — the package it depends on, got
  with ``apt-get download`` and unpacked with ``dpkg-deb -x`` (nothing is installed on
  the host). Its ``vmlinuz`` boots under ``qemu -kernel``; its modules go into the
  guest's ``/lib/modules`` and ``depmod`` makes ``modprobe`` work there. The disks are
  NVMe, the one disk driver this kernel has built in, so no initramfs is needed;
* **Python**: a venv at ``/opt/hardway-venv`` with the package's dependencies and the test
  tools (``TEST_TOOLS``) at the versions of ``requirements.lock``. The host's pip
  downloads the wheels (so the host's index configuration applies), the guest's pip
  installs them offline;
* **a stage-1 init** (``STAGE1``): it mounts the run disk and hands PID 1 over to the
  init on it. The code under test, the tests and the notebooks are never in this image:
  ``tools/vm.py`` puts them on a fresh disk for every run.

The result is the kernel and one ext4 file made by ``mkfs.ext4 -d`` (no loop mount), in
``.state/vm/<key>/``. The key hashes every input: this file (the recipe and the package
lists), ``requirements.lock`` and the guest's requirements read from ``pyproject.toml``.
Change one and the next run builds a new image (about a minute and a half); otherwise it
boots the cached one. The archive is not part of the key: a newer kernel or security
update in the mirror reaches the guest when an input changes, or after ``vm.py clean``.

Building needs root (debootstrap and chroot). Everything runs in a temporary directory
next to the cache and is renamed into place at the end, so an interrupted build leaves
no half image that a later run would boot.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: the Debian packages in the guest besides debootstrap's minbase, and why each is there
PACKAGES = {
    "python3": "runs pytest, nbval and the notebook kernels",
    "python3-venv": "the venv the pinned wheels go into (ensurepip)",
    "busybox-static": "the containers' root filesystem in the tests and chapters 01-04",
    "iproute2": "`ip`: veth pairs and network namespaces (chapter 02, run --net)",
    "runc": "chapter 04 runs the same container with runc; cleanup asks `runc list`",
    "kmod": "modprobe: overlay, veth and bridge are modules in this kernel",
    "gcc": "chapter 04 compiles its static keyctl probe (busybox has no keyctl)",
    "libc6-dev": "the static libc that probe links against (gcc only recommends it)",
}
#: Debian's kernel for cloud VMs: small, virtio and NVMe drivers, boots fast under qemu
KERNEL_PACKAGE = "linux-image-cloud-amd64"
#: modules the stage-2 init loads before the tests (overlayfs, veth pairs, bridges)
MODULES = ("overlay", "veth", "bridge")
#: Python packages the in-guest tests need besides the package's own dependencies
#: (not ruff, playwright, jupyterlab: no lint, no browser in the guest)
TEST_TOOLS = ("pytest", "nbval", "ipywidgets")
#: where things are inside the guest
VENV = "/opt/hardway-venv"
SOURCE = "/src"  # the run disk: the checkout's code, tests and notebooks
INIT = "/sbin/hardway-vm-init"
#: the two disks, as namespaces of one NVMe controller (numbered in this order, always)
ROOT_DEVICE, RUN_DEVICE = "/dev/nvme0n1", "/dev/nvme0n2"
#: free space left in the guest's root filesystem (the file is sparse: it costs nothing)
HEADROOM = 2 << 30

STAGE1 = f"""#!/bin/sh
# Stage 1 of the VM's init, baked into the cached image by tools/vm_image.py: mount the
# run disk (this run's code, tests and notebooks) and hand PID 1 over to the init on it.
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev 2>/dev/null
if ! mount -t ext4 {RUN_DEVICE} {SOURCE}; then
    echo "hardway-vm: cannot mount the run disk {RUN_DEVICE}"
    echo o > /proc/sysrq-trigger
    sleep 60
fi
exec {SOURCE}/.vm/init
"""


class BuildError(RuntimeError):
    """A step of the image build failed; the message says which and shows its output."""


@dataclass(frozen=True)
class Image:
    """A built guest: the kernel to pass to ``qemu -kernel`` and the root disk."""

    directory: Path

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def disk(self) -> Path:
        return self.directory / "root.ext4"

    @property
    def manifest(self) -> dict:
        """What was built and how long each step took (``manifest.json``)."""
        return json.loads((self.directory / "manifest.json").read_text())

    def exists(self) -> bool:
        return (self.directory / "manifest.json").is_file()


# -- inputs --------------------------------------------------------------------------------


def guest_requirements(root: Path = ROOT) -> list[str]:
    """The package's dependencies (``pyproject.toml``) plus ``TEST_TOOLS``, pinned by the lock.

    >>> any(r.startswith("pytest==") for r in guest_requirements())
    True
    """
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (root / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[_normalise(name)] = f"{name.strip()}=={version.strip()}"
    tools = []
    for tool in TEST_TOOLS:
        if _normalise(tool) not in pins:
            raise BuildError(f"requirements.lock has no pin for {tool}: run `make lock`")
        tools.append(pins[_normalise(tool)])
    return [*project["dependencies"], *tools]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).strip().lower()


def cache_key(root: Path = ROOT) -> str:
    """A hash of every input of the image: this recipe, the lock, the guest's requirements."""
    digest = hashlib.sha256()
    for part in (
        Path(__file__).read_bytes(),
        (root / "requirements.lock").read_bytes(),
        "\n".join(guest_requirements(root)).encode(),
    ):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def cache_dir(root: Path = ROOT) -> Path:
    """``.state/vm`` of the checkout (``HARDWAY_VM_DIR`` moves it)."""
    return Path(os.environ.get("HARDWAY_VM_DIR") or root / ".state" / "vm")


def image(root: Path = ROOT) -> Image:
    """The image for this checkout's inputs (it may not be built yet)."""
    return Image(cache_dir(root) / cache_key(root))


def apt_source(etc: Path = Path("/etc/apt")) -> tuple[str, str, str | None]:
    """The mirror, suite and keyring this machine's apt uses for its release.

    The first ``deb`` source (one-line ``.list`` or deb822 ``.sources``) whose suite is
    the release's codename, e.g. ``("http://deb.debian.org/debian", "bookworm", None)``.
    """
    codename = _os_release().get("VERSION_CODENAME")
    if not codename:
        raise BuildError("/etc/os-release names no VERSION_CODENAME: not a Debian release?")
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file() or path.suffix not in (".list", ".sources"):
            continue
        text = path.read_text(errors="replace")
        entries = _deb822(text) if path.suffix == ".sources" else _one_line(text)
        for types, uris, suites, keyring in entries:
            if "deb" in types and codename in suites and uris:
                return uris[0], codename, keyring
    raise BuildError(f"no `deb` source for {codename} in {etc}/sources.list*")


def _one_line(text: str) -> list[tuple[list[str], list[str], list[str], str | None]]:
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        keyring = None
        if match := re.search(r"\[([^]]*)\]", line):
            options = dict(o.split("=", 1) for o in match[1].split() if "=" in o)
            keyring = options.get("signed-by")
            line = line.replace(match[0], " ")
        words = line.split()
        if len(words) >= 3:
            entries.append(([words[0]], [words[1]], [words[2]], keyring))
    return entries


def _deb822(text: str) -> list[tuple[list[str], list[str], list[str], str | None]]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        keyring = fields.get("signed-by")
        entries.append(
            (
                fields.get("types", "").split(),
                fields.get("uris", "").split(),
                fields.get("suites", "").split(),
                keyring if keyring and keyring.startswith("/") else None,
            )
        )
    return entries


def _os_release() -> dict[str, str]:
    fields = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        if "=" in line:
            name, value = line.split("=", 1)
            fields[name] = value.strip().strip('"')
    return fields


# -- the build -----------------------------------------------------------------------------


def build(root: Path = ROOT, *, log=print) -> Image:
    """Build the image for *root*'s inputs unless it is cached; return it.

    Prints one line per step with its time. Older images in the cache are removed once
    the new one is in place.
    """
    target = image(root)
    if target.exists():
        return target
    if os.geteuid() != 0:
        raise BuildError("building the VM's image needs root (debootstrap, chroot)")
    cache = target.directory.parent
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    started = time.monotonic()
    times: dict[str, float] = {}

    def step(name: str, function, *args):
        log(f"vm build: {name} …")
        start = time.monotonic()
        result = function(*args)
        times[name] = round(time.monotonic() - start, 1)
        log(f"vm build: {name}: {times[name]} s")
        return result

    try:
        tree = work / "root"
        mirror, suite, keyring = apt_source()
        step(f"debootstrap {suite} from {mirror}", _debootstrap, tree, mirror, suite, keyring, work)
        kernel = step(f"kernel ({KERNEL_PACKAGE})", _kernel, tree, work)
        python = step("Python venv (pinned wheels)", _venv, tree, work, root)
        _configure(tree)
        step("ext4 image", _ext4, tree, work / "root.ext4")
        shutil.rmtree(tree)
        manifest = {
            "key": target.directory.name,
            "suite": suite,
            "mirror": mirror,
            "kernel": kernel,
            "python": python,
            "packages": sorted(PACKAGES),
            "requirements": guest_requirements(root),
            "seconds": times,
            "built": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            work.rename(target.directory)
        except OSError:
            if not target.exists():
                raise
            shutil.rmtree(work)  # a concurrent build of the same inputs finished first
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    for old in cache.iterdir():
        if old.is_dir() and old != target.directory and re.fullmatch(r"[0-9a-f]{16}", old.name):
            shutil.rmtree(old, ignore_errors=True)
    log(f"vm build: {target.directory} ({time.monotonic() - started:.0f} s in all)")
    return target


def _run(argv: list[str], what: str, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a build step; on failure, raise with the last lines of its output."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise BuildError(f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n{tail}")
    return done


def _chroot(tree: Path, *argv: str, what: str) -> subprocess.CompletedProcess[str]:
    """Run *argv* inside the guest's tree, with a clean environment (no host PIP_* etc.)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
    return _run(["chroot", str(tree), *argv], what, env=env)


def _debootstrap(tree: Path, mirror: str, suite: str, keyring: str | None, work: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed (tools/install-debs.sh --vm)")
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}"]
    if keyring:
        argv.append(f"--keyring={keyring}")
    _run([*argv, suite, str(tree), mirror], "debootstrap", cwd=work)


def _kernel(tree: Path, work: Path) -> str:
    """Unpack the cloud kernel: vmlinuz next to the image, its modules into the guest."""
    package = _kernel_dependency()
    download = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package]
    try:
        _run(download, f"apt-get download {package}", cwd=work)
    except BuildError:  # package lists older than the mirror (a superseded version): once more
        _run(["apt-get", "update", "-qq"], "apt-get update")
        package = _kernel_dependency()
        _run([*download[:-1], package], f"apt-get download {package}", cwd=work)
    (deb,) = work.glob(f"{package}_*.deb")
    unpacked = work / "kernel"
    _run(["dpkg-deb", "-x", str(deb), str(unpacked)], f"dpkg-deb -x {deb.name}")
    (vmlinuz,) = (unpacked / "boot").glob("vmlinuz-*")
    release = vmlinuz.name.removeprefix("vmlinuz-")
    shutil.copy2(vmlinuz, work / "vmlinuz")
    modules = tree / "usr/lib/modules"
    modules.mkdir(parents=True, exist_ok=True)
    shutil.copytree(unpacked / "lib/modules" / release, modules / release, symlinks=True)
    _chroot(tree, "depmod", release, what="depmod")
    shutil.rmtree(unpacked)
    deb.unlink()
    return f"{package} ({deb.name.split('_')[1]})"


def _kernel_dependency() -> str:
    """The versioned kernel package that ``linux-image-cloud-amd64`` stands for."""
    for attempt in (1, 2):
        done = subprocess.run(
            ["apt-cache", "depends", KERNEL_PACKAGE], capture_output=True, text=True, check=False
        )
        found = re.search(r"Depends: (linux-image-\S+)", done.stdout)
        if found:
            return found[1]
        if attempt == 1 and os.geteuid() == 0:  # empty package lists: read them once
            _run(["apt-get", "update", "-qq"], "apt-get update")
    raise BuildError(
        f"this machine's archive has no {KERNEL_PACKAGE} (a Debian package; apt-cache "
        f"depends said: {done.stdout.strip() or done.stderr.strip()})"
    )


def _venv(tree: Path, work: Path, root: Path) -> str:
    """Make the venv in the guest and install the pinned wheels into it, offline."""
    python = os.readlink(tree / "usr/bin/python3")  # "python3.11"
    version = python.removeprefix("python")
    _chroot(tree, "python3", "-m", "venv", VENV, what="python3 -m venv")
    wheels = tree / "tmp/wheels"
    requirements = guest_requirements(root)
    # the host's pip, so the host's index configuration applies; wheels for the guest's Python
    _run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"),
            *("--only-binary=:all:", "--python-version", version, "-d", str(wheels)),
            *("-c", str(root / "requirements.lock"), *requirements),
        ],
        "pip download",
    )
    shutil.copy2(root / "requirements.lock", wheels / "requirements.lock")
    _chroot(
        tree,
        f"{VENV}/bin/python",
        *("-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index"),
        *("--find-links", "/tmp/wheels", "-c", "/tmp/wheels/requirements.lock", *requirements),
        what="pip install (in the guest)",
    )
    shutil.rmtree(wheels)
    # the run disk's checkout is importable as `hardway`, as the host's editable install is
    site = tree / VENV.lstrip("/") / "lib" / python / "site-packages"
    (site / "hardway-src.pth").write_text(SOURCE + "\n")
    return version


def _configure(tree: Path) -> None:
    """The guest's own files: the stage-1 init, host name, mount points; and less disk."""
    init = tree / INIT.lstrip("/")
    init.write_text(STAGE1)
    init.chmod(0o755)
    (tree / SOURCE.lstrip("/")).mkdir(exist_ok=True)
    (tree / "etc/hostname").write_text("hardway-vm\n")
    (tree / "etc/hosts").write_text("127.0.0.1\tlocalhost hardway-vm\n::1\tlocalhost\n")
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        for entry in (tree / junk).glob("*"):
            if entry.name in ("lock", "partial"):
                continue  # apt's own
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _ext4(tree: Path, disk: Path) -> None:
    used = _run(["du", "-sb", str(tree)], "du").stdout.split()[0]
    size = (int(used) + HEADROOM) // (1 << 20)
    # no journal: the guest's writes go to qemu's throw-away overlay (snapshot=on) anyway
    _run(
        [
            *("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-L", "hardway-root"),
            *("-d", str(tree), str(disk), f"{size}M"),
        ],
        "mkfs.ext4 -d",
    )


if __name__ == "__main__":
    print(build().directory)
