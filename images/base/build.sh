#!/usr/bin/env bash
# build.sh makes the kiln Debian 12 base image. hack/tools.sh base-image runs it (as root) and caches
# the result; run it by hand only to debug the recipe.
#
# Usage: images/base/build.sh OUTDIR IGNITION_BINARY KUBERNETES_DIR CONTAINERD_DIR NODE_IMAGES_DIR
#
# KUBERNETES_DIR holds the Kubernetes binaries (hack/tools.sh kubernetes), CONTAINERD_DIR containerd,
# containerd-shim-runc-v2 and ctr (hack/tools.sh containerd), NODE_IMAGES_DIR the node images' archives
# and kiln-node, kiln's node agent (hack/tools.sh node-images).
#
# Writes OUTDIR/disk.qcow2 (one ext4 file system labelled kiln-root, no partition table),
# OUTDIR/vmlinuz, OUTDIR/initrd.img (dracut, with Ignition and the first-boot gate) and OUTDIR/cmdline
# (the kernel command line to boot it with). Each appears atomically (temporary name, then mv); the
# work tree is removed and everything mounted in it unmounted, on success and on failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage="usage: build.sh OUTDIR IGNITION_BINARY KUBERNETES_DIR CONTAINERD_DIR NODE_IMAGES_DIR"
out=${1:?$usage}
ignition=${2:?$usage}
kubedir=${3:?$usage}
containerddir=${4:?$usage}
imagesdir=${5:?$usage}

SUITE=bookworm
DISK_SIZE=8G
LABEL=kiln-root
CMDLINE="root=LABEL=$LABEL rw console=ttyS0 ignition.firstboot ignition.platform.id=qemu"
KUBE_NODE_BINARIES=(kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd)
CONTAINERD_BINARIES=(containerd containerd-shim-runc-v2 ctr)
# Units that Debian's packages enable and that only a control-plane node's Ignition enables.
CONTROL_PLANE_UNITS=(keepalived.service haproxy.service)

log() { printf 'base-image: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

((EUID == 0)) || die "must run as root (debootstrap, chroot, mounts)"
[[ -x $ignition ]] || die "no Ignition binary at $ignition"
for b in "${KUBE_NODE_BINARIES[@]}"; do
	[[ -x $kubedir/$b ]] || die "no $b in $kubedir"
done
for b in "${CONTAINERD_BINARIES[@]}"; do
	[[ -x $containerddir/$b ]] || die "no $b in $containerddir"
done
compgen -G "$imagesdir/*.tar" >/dev/null || die "no image archives (*.tar) in $imagesdir"
[[ -x $imagesdir/kiln-node ]] || die "no kiln-node (kiln's node agent) in $imagesdir"

# mirror prints the Debian mirror this machine's apt uses for $SUITE (deb822 .sources or one-line
# sources.list), so that the image comes from where the host's packages come from.
mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		awk -v suite="$SUITE" '
			/^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
			tolower($1) == "uris:" { uri = $2 }
			tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
			END { if (uri != "" && ok) print uri }' "$f"
	done | head -n1 | grep . && return 0
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i + 1) == suite) { print $i; exit } } }' |
		grep . || die "no Debian mirror for $SUITE in /etc/apt/sources.list*"
}

MIRROR=$(mirror)
SECURITY_MIRROR=${MIRROR%/debian}/debian-security
mkdir -p "$out"
work=$(mktemp -d "$out/work.XXXXXX")
root=$work/root
mounted=()

cleanup() {
	local status=$? m
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		m=${mounted[i]}
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
	done
	# Never remove a tree that still has something mounted in it.
	if ! grep -q " $work" /proc/mounts; then
		rm -rf "$work"
	else
		log "left $work behind: something is still mounted in it"
	fi
	((status == 0)) || log "failed (status $status); removed the partial build"
	exit "$status"
}
trap cleanup EXIT

bindmount() {
	mkdir -p "$root$2"
	mount "${@:3}" "$1" "$root$2"
	mounted+=("$root$2")
}

# INITRD=No: the kernel's and dracut's package hooks make no initramfs; one is made below, once.
in_root() { LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive INITRD=No chroot "$root" "$@"; }

start=$SECONDS
log "debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase --components=main "$SUITE" "$root" "$MIRROR" >&2

cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
# No service starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

bindmount proc /proc -t proc
bindmount sysfs /sys -t sysfs
bindmount /dev /dev --bind
bindmount devpts /dev/pts -t devpts

# The recipe's files (dracut config and module, units, fstab, the first-boot stamp) go in first, so
# that the kernel's own dracut run already uses the config.
cp -r --no-preserve=ownership "$here/rootfs/." "$root/"

mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages")
log "installing ${#packages[@]} packages"
in_root apt-get update -q >&2
in_root apt-get install -y -q --no-install-recommends "${packages[@]}" >&2
in_root apt-get upgrade -y -q --no-install-recommends >&2

log "Ignition: Debian's dracut module with the $("$ignition" -version) binary"
install -m 0755 "$ignition" "$root/usr/lib/dracut/modules.d/30ignition/ignition"
log "Kubernetes node binaries and etcd (hack/tools.sh kubernetes) into /usr/local/bin"
for b in "${KUBE_NODE_BINARIES[@]}"; do
	install -m 0755 "$kubedir/$b" "$root/usr/local/bin/$b"
done
log "containerd into /usr/local/bin: $("$containerddir/containerd" --version)"
for b in "${CONTAINERD_BINARIES[@]}"; do
	install -m 0755 "$containerddir/$b" "$root/usr/local/bin/$b"
done
log "kiln's node agent into /usr/local/bin/kiln-node"
install -m 0755 "$imagesdir/kiln-node" "$root/usr/local/bin/kiln-node"
log "node images into /usr/share/kiln/images: $(cd "$imagesdir" && echo *.tar)"
install -d -m 0755 "$root/usr/share/kiln/images"
install -m 0644 "$imagesdir"/*.tar "$root/usr/share/kiln/images/"

# Debian enables keepalived and haproxy; only a control-plane node's Ignition enables them.
in_root systemctl disable "${CONTROL_PLANE_UNITS[@]}" >&2
# containerd.service (upstream's, rootfs/usr/local/lib/systemd/system) and kiln-images.service, which
# imports the node images into it before the kubelet starts.
in_root systemctl enable systemd-networkd.service kiln-ssh-hostkeys.service containerd.service kiln-images.service >&2
# On first boot (machine-id "uninitialized") systemd applies the presets to every unit, and Debian's
# presets enable whatever they do not name: nftables.service (whose ruleset flushes kiln's
# firewall), ssh.socket. Presets that restate the image's own choices keep first boot from changing
# them; Ignition's 20-ignition.preset comes first, so the units a node's config enables still start.
mkdir -p "$root/etc/systemd/system-preset"
{
	echo "# kiln base image (images/base/build.sh): the units enabled when the image was built, and no other."
	in_root systemctl list-unit-files --state=enabled --no-legend --no-pager | awk '{ print "enable " $1 }'
	echo "disable *"
} >"$root/etc/systemd/system-preset/80-kiln.preset"
for u in ssh.service containerd.service kiln-images.service; do
	grep -qx "enable $u" "$root/etc/systemd/system-preset/80-kiln.preset" || die "$u is not enabled in the image"
done
for u in "${CONTROL_PLANE_UNITS[@]}"; do
	! grep -qx "enable $u" "$root/etc/systemd/system-preset/80-kiln.preset" || die "$u is enabled in the image"
done

kver=$(basename "$(ls -d "$root"/lib/modules/* | sort -V | tail -n1)")
# The kernel boots from outside the disk (QEMU -kernel): an upgrade in the guest would remove the
# running kernel's modules. A new kernel comes with a new image.
in_root apt-mark hold linux-image-cloud-amd64 "linux-image-$kver" >&2
log "initramfs for $kver with dracut"
in_root dracut --force --kver "$kver" "/boot/initrd.img-$kver" >&2
in_root lsinitrd "/boot/initrd.img-$kver" >"$work/lsinitrd"
for f in usr/bin/ignition usr/sbin/kiln-firstboot-check usr/lib/systemd/system-generators/ignition-generator \
	usr/lib/systemd/system/kiln-firstboot-check.service; do
	grep -q " $f\$" "$work/lsinitrd" || die "the initramfs lacks /$f"
done
grep -q 'qemu_fw_cfg.ko' "$work/lsinitrd" || die "the initramfs lacks the qemu_fw_cfg module"

log "hygiene: no host keys, no passwords, first boot armed"
rm -f "$root"/etc/ssh/ssh_host_*
in_root usermod -p '*' root
printf 'uninitialized\n' >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
printf 'localhost\n' >"$root/etc/hostname"
: >"$root/etc/resolv.conf"
rm -f "$root/usr/sbin/policy-rc.d"
in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* "$root"/var/tmp/*
find "$root/var/log" -type f -delete

cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"
chmod 0644 "$work/vmlinuz" "$work/initrd.img"

for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
	umount "${mounted[i]}"
	unset 'mounted[i]'
done

log "ext4 file system ($DISK_SIZE, sparse) and qcow2"
truncate -s "$DISK_SIZE" "$work/disk.raw"
mkfs.ext4 -q -F -L "$LABEL" -d "$root" "$work/disk.raw"
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
printf '%s\n' "$CMDLINE" >"$work/cmdline"

for f in vmlinuz initrd.img cmdline disk.qcow2; do
	mv -f "$work/$f" "$out/$f"
done
log "built in $((SECONDS - start))s: $(du -h "$out/disk.qcow2" | cut -f1) qcow2, kernel $kver"
