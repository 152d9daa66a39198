#!/bin/bash
# kiln-firstboot: run Ignition on the first boot of a root file system only.
#
# The kernel command line always carries ignition.firstboot (a QEMU guest that reboots itself keeps its
# -append line), so Ignition's generator always queues ignition-complete.target. This module gates each
# Ignition stage on /run/kiln/ignition-firstboot, which kiln-firstboot-check.service creates only when the
# root file system still holds /etc/kiln/ignition-firstboot; kiln-firstboot-done.service removes that
# stamp right after Ignition's files stage succeeds.

check() {
    return 0
}

depends() {
    echo ignition
}

install() {
    inst_multiple mount umount rm mkdir sleep touch
    inst_script "$moddir/kiln-firstboot-check.sh" /usr/sbin/kiln-firstboot-check
    local u
    for u in kiln-firstboot-check.service kiln-firstboot-done.service; do
        inst_simple "$moddir/$u" "$systemdsystemunitdir/$u"
        mkdir -p "$initdir/$systemdsystemunitdir/ignition-complete.target.requires"
        ln_r "$systemdsystemunitdir/$u" "$systemdsystemunitdir/ignition-complete.target.requires/$u"
    done
    for u in fetch-offline fetch kargs disks mount files; do
        inst_simple "$moddir/ignition-gate.conf" \
            "$systemdsystemunitdir/ignition-$u.service.d/10-kiln-firstboot.conf"
    done
}
