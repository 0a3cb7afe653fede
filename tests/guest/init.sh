#!/bin/bash
# PID 1 of the User-Mode-Linux guest started by snapd_vss/testing/guest.py.
#
# The root filesystem is the host's / (hostfs, read-only). This script mounts the
# kernel filesystems and tmpfs where the guest must write, loads the device-mapper
# modules, gives LVM a writable config without udev, runs the command the host asked
# for (pytest over tests/guest by default) and writes its exit code to
# $RUN_DIR/exit_code, which the host reads after the guest powered off.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
set -u

say() { echo "guest-init: $*"; }
finish() {
    say "exit code $1"
    if [ -n "${RUN_DIR:-}" ] && [ -d "$RUN_DIR" ]; then
        echo "$1" > "$RUN_DIR/exit_code.tmp" && mv "$RUN_DIR/exit_code.tmp" "$RUN_DIR/exit_code"
    fi
    sync
    poweroff -f
    sleep 5
    exit "$1"
}

if [ -z "${SNAPD_VSS_GUEST_RUN_DIR:-}" ] || [ ! -r "$SNAPD_VSS_GUEST_RUN_DIR/guest.env" ]; then
    say "no SNAPD_VSS_GUEST_RUN_DIR/guest.env on the kernel command line"; finish 97
fi
# Defines RUN_DIR REPO VENV MODULES_DIR DISKS and the array COMMAND.
# shellcheck disable=SC1091
. "$SNAPD_VSS_GUEST_RUN_DIR/guest.env"

step() { "$@" || { say "FAILED: $*"; finish 98; }; }

step mount -t proc proc /proc
step mount -t sysfs sysfs /sys
mountpoint -q /dev || step mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm 2>/dev/null
mountpoint -q /dev/pts || step mount -t devpts devpts /dev/pts
step mount -t tmpfs -o mode=1777 tmpfs /dev/shm
step mount -t tmpfs -o mode=755 tmpfs /run
step mount -t tmpfs -o mode=1777 tmpfs /tmp
step mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mkdir -p /run/lock /run/home /run/lvm /run/lock/lvm

# tmpfs now hides whatever the host had below /tmp, /run, /var/tmp: show the host
# directories the guest needs again (the run directory writable, the rest read-only).
host_mount() {  # host_mount PATH ro|rw
    local path=$1 mode=$2
    case "$path" in
        /tmp/*|/run/*|/var/tmp/*|/dev/shm/*) ;;
        *) return 0 ;;
    esac
    mkdir -p "$path" || return 1
    mount -t hostfs -o "$mode,$path" hostfs "$path"
}
# The run directory is mounted at a private path, away from anything a test may unmount.
HOST_RUN_DIR=$RUN_DIR
RUN_DIR=/run/snapd-vss-guest-run
step mkdir -p "$RUN_DIR"
step mount -t hostfs -o "rw,$HOST_RUN_DIR" hostfs "$RUN_DIR"
step host_mount "$REPO" ro
step host_mount "$VENV" ro
step host_mount "$MODULES_DIR" ro  # a kernel fetched into a cache below /tmp (--kernel 6.12)

# Kernel modules: /lib/modules/<ver> does not exist on the host, so point modprobe
# at the UML package's tree through a writable root.
kver=$(uname -r)
mkdir -p /run/modroot/lib/modules
ln -s "$MODULES_DIR" "/run/modroot/lib/modules/$kver"
for m in loop dm_mod dm_thin_pool dm_snapshot fuse; do
    step modprobe -d /run/modroot "$m"
done

# LVM without udev, without dmeventd, without backups, with a writable config dir.
mkdir -p /run/lvm-etc
cat > /run/lvm-etc/lvm.conf <<'CONF'
devices {
    obtain_device_list_from_udev = 0
    external_device_info_source = "none"
    use_devicesfile = 0
    scan_lvs = 0
}
activation {
    udev_sync = 0
    udev_rules = 0
    verify_udev_operations = 0
    monitoring = 0
}
global {
    use_lvmpolld = 0
    event_activation = 0
}
backup {
    backup = 0
    archive = 0
}
CONF
export LVM_SYSTEM_DIR=/run/lvm-etc LVM_SUPPRESS_FD_WARNINGS=1 DM_DISABLE_UDEV=1
export HOME=/run/home TMPDIR=/tmp PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8
export HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis
export SNAPD_VSS_IN_GUEST=1 SNAPD_VSS_GUEST_DISKS="$DISKS" SNAPD_VSS_GUEST_RUN_DIR="$RUN_DIR"
export PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV"
hostname snapd-vss-guest 2>/dev/null

cd "$REPO" || finish 98
say "running: ${COMMAND[*]}"
set -o pipefail
"${COMMAND[@]}" 2>&1 | tee "$RUN_DIR/output.log"
finish "$?"
