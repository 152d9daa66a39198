#!/usr/bin/env bash
# base-image boots the kiln base image next to it once, for a look by hand: a throwaway qcow2 overlay,
# QEMU with TCG in the foreground on the serial console (Ctrl-A X quits), the Ignition config through
# fw_cfg, and the guest's SSH forwarded to 127.0.0.1:PORT. hack/tools.sh base-image installs it as
# <cache entry>/base-image, beside disk.qcow2, vmlinuz, initrd.img and cmdline.
#
# Usage: base-image CONFIG.ign [PORT]     (PORT defaults to 2222)
set -euo pipefail

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
config=${1:?usage: base-image CONFIG.ign [PORT]}
port=${2:-2222}
[[ -r $config ]] || {
	echo "base-image: cannot read $config" >&2
	exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
qemu-img create -q -f qcow2 -F qcow2 -b "$dir/disk.qcow2" "$tmp/disk.qcow2"
qemu-system-x86_64 -machine q35 -accel tcg,thread=multi -m 2048 -smp 2 -nographic \
	-kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" -append "$(<"$dir/cmdline")" \
	-drive "file=$tmp/disk.qcow2,if=virtio,format=qcow2" \
	-fw_cfg "name=opt/com.coreos/config,file=$config" -device virtio-rng-pci \
	-netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=net0
