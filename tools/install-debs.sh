#!/bin/sh
# Install the Debian packages the course needs, if any are missing.
#
# Idempotent and quiet when everything is there, so `make lab` and `make test` can run it
# every time. As root it installs; with sudo it asks sudo; otherwise it prints the exact
# command to run and fails, because the course cannot work without these programs.
#
# `install-debs.sh --vm` installs instead the packages of the pure cgroup v2 VM test
# (`make test-vm`, tools/vm.py), which `make test` runs too. A learner never needs them:
# they are all optional, and without them that test is skipped with the reason.
set -eu

# docker-registry  the real CNCF Distribution registry (chapters 07-10)
# skopeo umoci runc independent tools that check what we build (tests, chapters 04-08)
# busybox-static   a one-file root filesystem (chapter 01)
# iproute2         `ip` for veth pairs and network namespaces (chapter 02)
# gcc libc6-dev    chapter 04 compiles a 10-line static `keyctl` probe into the container
#                  (busybox has no keyctl) to show the seccomp filter refusing it
# chromium         a real browser for tests/test_browser.py (~100 MB; optional: the
#                  test is skipped without it, and Ubuntu ships it only as a snap)
PKGS="docker-registry skopeo umoci runc buildah busybox-static iproute2 gcc libc6-dev"
OPTIONAL="chromium"
WITHOUT="the browser test will be skipped"
APT_OPTIONS=""
if [ "${1:-}" = "--vm" ]; then
    # qemu-system-x86  boots Debian's cloud kernel with software emulation: a real pure
    #                  cgroup v2 machine inside this one (~60 MB without its recommends,
    #                  which are a GUI and firmware the test never uses)
    # debootstrap      builds that guest's root filesystem from the Debian archive
    # e2fsprogs        `mkfs.ext4 -d`: the guest's disks, made without mounting anything
    # (the kernel itself is never installed here: tools/vm_image.py downloads and unpacks
    # linux-image-cloud-amd64 into the guest's image)
    PKGS=""
    OPTIONAL="qemu-system-x86 debootstrap e2fsprogs"
    WITHOUT="the VM test (make test-vm) will be skipped"
    APT_OPTIONS="--no-install-recommends"
elif ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    PKGS="$PKGS python3-venv"   # Debian splits `python3 -m venv` into its own package
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
available() {  # a real package in the archive (not Ubuntu's transitional snap wrapper)
    apt-cache show "$1" 2>/dev/null | grep -q '^Filename:.*/'"$1"'_'
}

missing=""
for pkg in $PKGS; do
    installed "$pkg" || missing="$missing $pkg"
done
# An optional package counts only where the archive has it: where it does not (Ubuntu),
# `make lab` must not run apt-get, or ask for a sudo password, every time for nothing.
optional=""
absent=""
for pkg in $OPTIONAL; do
    if installed "$pkg"; then
        continue
    elif available "$pkg"; then
        optional="$optional $pkg"
    else
        absent="$absent $pkg"
    fi
done
if [ -z "$missing$optional" ]; then
    if [ -z "$PKGS" ] && [ -n "$absent" ]; then
        echo "setup: no Debian package$absent here: $WITHOUT"
    else
        echo "setup: Debian packages present (${PKGS:-$OPTIONAL})"
    fi
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: this is not a Debian/Ubuntu machine; install these programs (or their" >&2
    echo "       equivalents) with your package manager, then run make again:$missing" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && { [ -t 0 ] || sudo -n true 2>/dev/null; }; then
    SUDO="sudo"
    echo "setup: installing$missing$optional with sudo (it may ask for your password)"
elif [ -z "$missing" ]; then
    echo "setup: optional Debian packages missing:$optional ($WITHOUT;"
    echo "       as root: apt-get install -y${APT_OPTIONS:+ $APT_OPTIONS}$optional)"
    exit 0
else
    echo "setup: these Debian packages are missing:$missing$optional" >&2
    echo "       Run this as root (or ask your administrator), then run make again:" >&2
    echo "       apt-get update && apt-get install -y$missing$optional" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
for pkg in $OPTIONAL; do  # asked again: the package lists may have been empty before
    if installed "$pkg"; then
        continue
    elif available "$pkg"; then
        missing="$missing $pkg"
    else
        echo "setup: no Debian package $pkg here: $WITHOUT"
    fi
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    $SUDO apt-get install -y -qq $APT_OPTIONS $missing >/dev/null
fi

# Under systemd, Debian's package starts its own registry on port 5000 for the whole
# machine. The course runs its own on 127.0.0.1 with project-local storage, so turn the
# system one off rather than let the two fight over the port.
case "$missing" in *docker-registry*)
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
        $SUDO systemctl disable --now docker-registry
        echo "setup: stopped and disabled Debian's docker-registry service (the course starts its own)"
    fi
esac
echo "setup: Debian packages installed"
