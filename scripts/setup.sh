#!/usr/bin/env bash
# Set up a machine to develop, test and demo snapd-vss.
#
# Runs as root on Debian 12. Idempotent: each step checks first and says nothing when it
# has nothing to do, so a second run takes a second or two.
#
#   1. Debian packages from scripts/debian-packages.txt (apt-get update only if some are missing).
#   2. A virtualenv at ${SNAPD_VSS_VENV:-/opt/snapd-vss/venv}, made with Debian's
#      /usr/bin/python3 so that non-root test users can run it (/root is mode 700).
#   3. The project, editable, with its extras (test, systemd, fuse), into that venv.
#   4. Kernel support: modprobe loop/btrfs/fuse when modprobe exists (failure is fine,
#      they may be built in), and /dev/loop-control.
#   5. Test accounts for the authorization tests: users `vsstest` and `vsstest2` (plain
#      users, uid >= 1000) and `vssoperator`, a member of the group `vssbackup` (the backup
#      group a test config names). The pytest fixture `nonroot_user` creates them too if
#      this script was not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SNAPD_VSS_VENV:-/opt/snapd-vss/venv}"
PACKAGES_FILE="$ROOT/scripts/debian-packages.txt"
STAMP="$VENV/.snapd-vss-installed"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# Run a command with its output kept aside; show the output only if it fails.
quietly() {
    local log rc=0
    log="$(mktemp)"
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$log" >&2
        rm -f "$log"
        die "'$*' failed with exit code $rc (its output is above)"
    fi
    rm -f "$log"
}

[ "$(id -u)" -eq 0 ] || die "run me as root (I install Debian packages and create test users)"

install_debian_packages() {
    local wanted=() missing=() pkg
    mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PACKAGES_FILE" | grep -v '^$' | sort -u)
    for pkg in "${wanted[@]}"; do
        if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            missing+=("$pkg")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    quietly apt-get update
    quietly apt-get install -y --no-install-recommends "${missing[@]}"
}

make_venv() {
    if [ -x "$VENV/bin/python" ]; then
        local base
        base="$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)')"
        [ "$base" = "/usr" ] && return 0
        say "the venv at $VENV is not built on Debian's /usr/bin/python3 (base $base); rebuilding it"
        rm -rf "$VENV"
    fi
    say "creating the virtualenv $VENV with /usr/bin/python3"
    mkdir -p "$(dirname "$VENV")"
    /usr/bin/python3 -m venv "$VENV"
    chmod 755 "$(dirname "$VENV")" "$VENV"
}

install_project() {
    # The stamp records which checkout and which pyproject.toml the venv was set up from;
    # a different checkout (a fresh clone in CI) or changed dependencies reinstall.
    local want
    want="$ROOT $(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        return 0
    fi
    say "installing snapd-vss (editable) and its test, systemd and fuse extras into $VENV"
    quietly "$VENV/bin/python" -m pip install -e "$ROOT[test,systemd,fuse]"
    printf '%s\n' "$want" >"$STAMP"
}

kernel_has() {
    case "$1" in
        loop) [ -d /sys/module/loop ] || [ -e /dev/loop-control ] ;;
        *) grep -qw "$1" /proc/filesystems ;;
    esac
}

load_kernel_support() {
    local mod
    for mod in loop btrfs fuse; do
        kernel_has "$mod" && continue
        if command -v modprobe >/dev/null 2>&1 && modprobe "$mod" 2>/dev/null; then
            say "loaded kernel module $mod"
        else
            say "the kernel has no $mod support and modprobe could not add it; tests needing it will fail"
        fi
    done
    if [ ! -e /dev/loop-control ]; then
        say "creating /dev/loop-control"
        mknod -m 660 /dev/loop-control c 10 237 || say "could not create /dev/loop-control"
    fi
}

ensure_group() {
    getent group "$1" >/dev/null && return 0
    say "creating group $1"
    groupadd "$1"
}

ensure_user() {
    local name="$1"; shift
    id -u "$name" >/dev/null 2>&1 && return 0
    say "creating test user $name"
    # -K UID_MIN=1000: a regular (non-system) uid, as a real desktop or service user has.
    useradd --no-create-home --shell /usr/sbin/nologin -K UID_MIN=1000 --user-group "$@" "$name"
}

# Two runs at once (two ./run test) would race in apt and pip: take turns.
LOCK_DIR=/run/lock
[ -d "$LOCK_DIR" ] || LOCK_DIR=/tmp
exec 9>"$LOCK_DIR/snapd-vss-setup.lock"
flock 9

install_debian_packages
make_venv
install_project
load_kernel_support
ensure_group vssbackup
ensure_user vsstest
ensure_user vsstest2
ensure_user vssoperator --groups vssbackup
