#!/bin/sh
# Install the Debian packages the course needs, if any are missing.
#
# Idempotent and quiet when everything is there, so `make lab` and `make test` can run it
# every time. As root it installs; with sudo it asks sudo; otherwise it prints the exact
# command to run and fails, because the course cannot work without these programs.
set -eu

# docker-registry  the real CNCF Distribution registry (chapters 07-10)
# skopeo umoci runc independent tools that check what we build (tests, chapters 04-08)
# busybox-static   a one-file root filesystem (chapter 01)
# iproute2         `ip` for veth pairs and network namespaces (chapter 02)
# chromium         a real browser for tests/test_browser.py (~100 MB; optional: the
#                  test is skipped without it, and Ubuntu ships it only as a snap)
PKGS="docker-registry skopeo umoci runc busybox-static iproute2"
OPTIONAL="chromium"
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
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
for pkg in $OPTIONAL; do
    installed "$pkg" || ! available "$pkg" || optional="$optional $pkg"
done
if [ -z "$missing$optional" ]; then
    echo "setup: Debian packages present ($PKGS)"
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
    echo "setup: optional Debian packages missing:$optional (the browser test will be skipped;"
    echo "       as root: apt-get install -y$optional)"
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
        echo "setup: no Debian package $pkg here: the browser test will be skipped"
    fi
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    $SUDO apt-get install -y -qq $missing >/dev/null
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
