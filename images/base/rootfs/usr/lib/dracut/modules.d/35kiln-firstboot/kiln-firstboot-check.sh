#!/bin/bash
# kiln-firstboot-check: mount the root device read-only, look for the first-boot stamp, and tell the
# Ignition stages whether to run by creating /run/kiln/ignition-firstboot.
set -euo pipefail

stamp=etc/kiln/ignition-firstboot
root=
for arg in $(</proc/cmdline); do
    case $arg in
    root=*) root=${arg#root=} ;;
    esac
done
case $root in
LABEL=*) dev=/dev/disk/by-label/${root#LABEL=} ;;
UUID=*) dev=/dev/disk/by-uuid/${root#UUID=} ;;
PARTUUID=*) dev=/dev/disk/by-partuuid/${root#PARTUUID=} ;;
/dev/*) dev=$root ;;
*)
    echo "kiln-firstboot: root=${root} on the kernel command line is not a device; Ignition will not run" >&2
    exit 1
    ;;
esac

# The root device may still be appearing: wait for it (90 s, as systemd waits for devices).
for ((i = 0; i < 900; i++)); do
    [[ -b $dev ]] && break
    sleep 0.1
done
[[ -b $dev ]] || {
    echo "kiln-firstboot: root device $dev did not appear" >&2
    exit 1
}

mkdir -p /run/kiln/root
mount -o ro,noload "$dev" /run/kiln/root
if [[ -e /run/kiln/root/$stamp ]]; then
    touch /run/kiln/ignition-firstboot
    echo "kiln-firstboot: $dev holds /$stamp: first boot, Ignition runs"
else
    echo "kiln-firstboot: $dev has no /$stamp: not the first boot, Ignition does not run"
fi
umount /run/kiln/root
