#!/usr/bin/env bash
# tools.sh builds and caches the outside programs that kiln's tests drive.
#
# Usage:
#   hack/tools.sh deps        install (as root) the Debian packages the tests need; print their names
#   hack/tools.sh ignition    build github.com/coreos/ignition/v2 once; print the binary's absolute path
#   hack/tools.sh kubernetes  build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#                             kubectl and kube-proxy once, and etcd at the version Kubernetes requires;
#                             print kube-apiserver's path (the others are next to it)
#   hack/tools.sh containerd  build containerd v2 (containerd, containerd-shim-runc-v2, ctr) once; print
#                             containerd's path (the others are next to it)
#   hack/tools.sh node-images build kiln's pause and echo images (cmd/kiln-pause, cmd/kiln-echo, static)
#                             as image archives for `ctr -n k8s.io images import`, and kiln's node agent
#                             (cmd/kiln-node, static); print their directory
#   hack/tools.sh base-image  build the Debian 12 base image once (root: debootstrap, chroot); print the
#                             path of its launcher `base-image`, next to disk.qcow2, vmlinuz, initrd.img
#                             and cmdline (images/base/README.md)
#   hack/tools.sh baked-image bake the hardened image once: `kiln image build --target qemu` (kiln and
#                             packer-plugin-kiln built from this checkout) on the base image with packer
#                             and its QEMU builder under TCG; print the path of its disk.qcow2, next to
#                             the base image's vmlinuz, initrd.img and cmdline and the launcher baked-image
#   hack/tools.sh qemu        install QEMU, qemu-img and vde_switch if missing; print qemu-system-x86_64's path
#   hack/tools.sh packer      build packer v1.12.0 and its QEMU, amazon and vsphere plugins once (one
#                             module, so shared packages compile once); print packer's path
#   hack/tools.sh packer-plugin-qemu|packer-plugin-amazon|packer-plugin-vsphere
#                             the same build; print that plugin's path (install it into a plugin
#                             directory with `packer plugins install --path BINARY github.com/hashicorp/NAME`)
#
# Each tool prints only its absolute path on stdout; progress goes to stderr.
# Binaries live outside the repository in ${KILN_CACHE:-$HOME/.cache/kiln}/<tool>/<key>/,
# where <key> is the tool's version and a short hash of its recipe (the build
# function's text and the Go version), so a changed recipe builds anew and an
# unchanged one is reused.
#
# Adding a tool: write build_<name> OUT DIR (it builds the binary at OUT and
# may use DIR, the cache entry, as scratch space), a tool_<name> that calls
# `cached_build <name> <version> build_<name>`, and add the Debian packages it
# needs to APT_PACKAGES.
set -euo pipefail

# Debian packages the test suite needs. One list: extend it, do not fork it.
APT_PACKAGES=(
	gcc          # cgo (ignition)
	libblkid-dev # cgo: ignition links libblkid
	pkg-config   # cgo: finds blkid
	passwd       # useradd/groupadd --root, run by ignition's files stage
	openssh-client # ssh-keygen in the end-to-end test
	nftables     # nft -c on rendered firewall rulesets; nft -f in the firewall network test
	iproute2     # ip netns/link/addr: the firewall network test's namespaces, veths and bridge
	containernetworking-plugins # bridge, host-local, portmap in /usr/lib/cni: the pod network's data path test (nodeagent/podnet)
	systemd      # systemd-analyze verify on rendered units (kiln-firewall.service)
	etcd-client  # etcdctl: the control-plane security test reads raw Secrets from etcd
	openssh-server # sshd: kiln audit network --ssh reads a node's ruleset from a real sshd (internal/cli)
	sudo         # sudo -n nft -j list ruleset, run by kiln audit network --ssh over SSH
	debootstrap  # the Debian 12 base image (hack/tools.sh base-image)
	e2fsprogs    # mkfs.ext4 -d: the base image's root file system
	qemu-utils   # qemu-img: the base image's qcow2 and the QEMU provider's overlays
	qemu-system-x86 # qemu-system-x86_64: the local QEMU provider's VMs (onprem/qemu)
	vde2         # vde_switch: the QEMU provider's private network among a cluster's VMs
	socat        # relays a QEMU machine's fetch of its config to kiln's config server (onprem/qemu)
	ipxe         # undionly.kpxe, ipxe.efi: served by kiln pxe serve over TFTP and HTTP (onprem/pxe)
	ipxe-qemu    # iPXE option ROMs: the PXE client of the network boot test (onprem/pxe)
	busybox-static # the network boot test's initrd, which fetches the machine's Ignition
	ipmitool     # IPMI power control of the metal provider (onprem/metal)
	ssh-audit    # judges the baked image's sshd against images/harden/testdata/ssh-audit-policy.txt (images/bake)
	runc         # the OCI runtime under the built containerd in the node runtime test (images/nodeimages)
	haproxy      # haproxy -c on the rendered haproxy.cfg of the API endpoint (bootstrap/ignition)
	keepalived   # keepalived --config-test on the rendered keepalived.conf of the API endpoint (bootstrap/ignition)
)

IGNITION_VERSION=v2.26.0
KUBERNETES_VERSION=v1.37.2
KUBERNETES_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy)
CONTAINERD_VERSION=v2.4.2
PACKER_VERSION=v1.12.0
PACKER_PLUGIN_QEMU_VERSION=v1.0.9
PACKER_PLUGIN_AMAZON_VERSION=v1.2.1
PACKER_PLUGIN_VSPHERE_VERSION=v1.4.2

KILN_CACHE=${KILN_CACHE:-$HOME/.cache/kiln}

log() { printf 'tools.sh: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# missing_apt prints the packages of its arguments that are not installed.
missing_apt() {
	local p
	for p in "$@"; do
		if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]]; then
			printf '%s\n' "$p"
		fi
	done
}

# ensure_apt installs the named Debian packages when missing: itself when
# running as root, otherwise it fails and says what to run.
ensure_apt() {
	local missing
	mapfile -t missing < <(missing_apt "$@")
	((${#missing[@]} == 0)) && return 0
	if ((EUID != 0)); then
		die "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -q "${missing[@]}" >&2; then
		apt-get update -q >&2
		apt-get install -y -q "${missing[@]}" >&2
	fi
}

cmd_deps() {
	ensure_apt "${APT_PACKAGES[@]}"
	printf '%s\n' "${APT_PACKAGES[@]}"
}

# RECIPE_SETTINGS names, per build function, the settings outside its text that
# its product depends on: `declare -f` gives a function's text, in which a
# setting such as KUBERNETES_BINARIES is only a name, so that a changed value
# would otherwise reuse the old cache entry.
declare -A RECIPE_SETTINGS=([build_kubernetes]=KUBERNETES_BINARIES)

# recipe_key prints a short hash of the named functions' text, the values of
# their RECIPE_SETTINGS and the Go toolchain, which names the cache entry of a
# build.
recipe_key() {
	{
		declare -f "$@"
		local fn v
		for fn in "$@"; do
			for v in ${RECIPE_SETTINGS[$fn]:-}; do
				declare -p "$v"
			done
		done
		go env GOVERSION GOOS GOARCH
	} | sha256sum | cut -c1-12
}

# cached_build NAME VERSION BUILD_FN [FILE] prints the path of NAME's binary (DIR/FILE, FILE defaulting
# to NAME), running BUILD_FN OUT DIR to make it when the cache has no binary for this recipe.
# Builds are serialized with a lock so that parallel test binaries wait for
# one build instead of racing; the binary appears atomically (temp name, mv).
cached_build() {
	local name=$1 version=$2 build_fn=$3 file=${4:-$1}
	command -v go >/dev/null || die "go is not on PATH"
	local dir
	dir="$KILN_CACHE/$name/$version-$(recipe_key "$build_fn")"
	local out="$dir/$file"
	if [[ ! -x "$out" ]]; then
		mkdir -p "$dir"
		exec {lock}>"$dir/.lock"
		flock "$lock"
		if [[ ! -x "$out" ]]; then
			log "building $name $version into $dir"
			local start=$SECONDS
			# Called plainly, not in an if or ||, so that set -e stops the
			# build at its first failing command; the trap then cleans up.
			building="$name $version" building_tmp="$out.tmp.$$"
			trap 'rm -f "$building_tmp"; log "building $building failed"' EXIT
			rm -f "$building_tmp"
			"$build_fn" "$building_tmp" "$dir"
			mv -f "$building_tmp" "$out"
			trap - EXIT
			log "built $name $version in $((SECONDS - start))s"
		fi
		flock -u "$lock"
		exec {lock}>&-
		prune_cache "$name" "$dir"
	fi
	touch "$dir" # the entry's time is its last use: prune_cache keeps the newest
	printf '%s\n' "$out"
}

# KEEP_BUILDS is how many entries of each tool prune_cache keeps: the current one and the last few
# used (another worktree, an older commit). A recipe or source change makes a new entry, and a
# bisect or a second worktree would rebuild for minutes if the last ones were gone; without a
# limit the images alone (1.3-1.4 GiB an entry) filled the disk.
KEEP_BUILDS=${KEEP_BUILDS:-3}

# prune_cache NAME KEEP removes NAME's cache entries beyond the KEEP_BUILDS most recently used,
# never KEEP itself nor an entry whose build lock is held (being built).
prune_cache() {
	local name=$1 keep=$2 d l
	local -a old
	mapfile -t old < <(ls -1dt "$KILN_CACHE/$name"/*/ 2>/dev/null | tail -n +"$((KEEP_BUILDS + 1))")
	for d in "${old[@]}"; do
		d=${d%/}
		[[ "$d" == "$keep" ]] && continue
		exec {l}>>"$d/.lock"
		if flock -n "$l"; then
			log "removing $name's cache entry $d ($(du -sh "$d" | cut -f1)), unused since $(date -r "$d" '+%F %R')"
			rm -rf "$d"
		fi
		exec {l}>&-
	done
}

# build_ignition OUT DIR builds Ignition's main package
# (github.com/coreos/ignition/v2/internal) from a scratch module under DIR.
# Building the internal main package by import path from another module is
# allowed (only importing it is not); `go get` of the package path (not just
# the module) records the go.sum lines of everything it imports, so no
# `go mod tidy` is needed. The dependency versions are Ignition's own go.mod
# minima, as nothing else is required.
build_ignition() {
	local out=$1 dir=$2
	if ! pkg-config --exists blkid 2>/dev/null && [[ ! -e /usr/include/blkid/blkid.h ]]; then
		ensure_apt libblkid-dev pkg-config
	fi
	local src="$dir/src"
	rm -rf "$src"
	mkdir -p "$src"
	(
		cd "$src"
		export GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=1
		local pkg=github.com/coreos/ignition/v2/internal
		go mod init kilntools-ignition >&2
		go get "$pkg@$IGNITION_VERSION" >&2
		go build -o "$out" -ldflags "-X $pkg/distro.selinuxRelabel=false -X $pkg/version.Raw=$IGNITION_VERSION" "$pkg" >&2
	)
	local got
	got=$("$out" -version)
	[[ "$got" == "Ignition $IGNITION_VERSION" ]] || die "built ignition reports ${got@Q}"
}

tool_ignition() { cached_build ignition "$IGNITION_VERSION" build_ignition; }

# build_kubernetes OUT DIR builds the Kubernetes binaries from k8s.io/kubernetes through a scratch
# module: k8s.io/kubernetes cannot be required as a library as it is, because its go.mod replaces
# every k8s.io/<staging> module with a local path; the scratch module replaces each with its published
# v0.Y.Z instead. All binaries land in DIR; OUT (kube-apiserver) is the one cached_build checks.
build_kubernetes() {
	local out=$1 dir=$2
	local src="$dir/src" minor=${KUBERNETES_VERSION#v1.}
	local staging=v0.$minor
	rm -rf "$src"
	mkdir -p "$src"
	(
		cd "$src"
		export GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
		go mod init kilntools-kubernetes >&2
		local gomod
		gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
		[[ -f "$gomod" ]] || die "no go.mod for k8s.io/kubernetes@$KUBERNETES_VERSION"
		local m
		while read -r m; do
			go mod edit -replace "$m=$m@$staging"
		done < <(sed -n 's|^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/.*|\1|p' "$gomod")
		go mod edit -require "k8s.io/kubernetes@$KUBERNETES_VERSION"
		local pkgs=() b
		for b in "${KUBERNETES_BINARIES[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
		go get "${pkgs[@]/%/@$KUBERNETES_VERSION}" >&2
		local ld="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
		for b in "${KUBERNETES_BINARIES[@]}"; do
			log "building $b"
			go build -trimpath -ldflags "$ld" -o "$dir/$b.tmp" "k8s.io/kubernetes/cmd/$b" >&2
			mv -f "$dir/$b.tmp" "$dir/$b"
		done
		# etcd at the version Kubernetes' own go.mod requires of go.etcd.io/etcd/server/v3 (its client
		# and the server then share every compiled package): etcd's main is two lines around etcdmain,
		# so the scratch module carries them rather than requiring etcd's root module, whose go.mod
		# replaces its parts with local paths like Kubernetes' does.
		local etcd
		etcd=$(sed -n 's|^[[:space:]]*go.etcd.io/etcd/server/v3 \(v[^[:space:]]*\).*|\1|p' "$gomod")
		[[ -n "$etcd" ]] || die "k8s.io/kubernetes@$KUBERNETES_VERSION's go.mod requires no go.etcd.io/etcd/server/v3"
		mkdir -p etcd
		printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >etcd/main.go
		go get "go.etcd.io/etcd/server/v3/etcdmain@$etcd" >&2
		log "building etcd $etcd"
		go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module" -o "$dir/etcd.tmp" ./etcd >&2
		mv -f "$dir/etcd.tmp" "$dir/etcd"
		"$dir/etcd" --version >&2
	)
	cp "$dir/kube-apiserver" "$out"
	"$out" --version >&2
}

tool_kubernetes() { cached_build kube-apiserver "$KUBERNETES_VERSION" build_kubernetes; }

# build_containerd OUT DIR builds containerd, containerd-shim-runc-v2 and ctr from the module
# github.com/containerd/containerd/v2 through a scratch module, the way containerd's Makefile builds
# them (urfave_cli_no_docs; the shim also no_grpc), but with CGO_ENABLED=0 for static binaries: the btrfs
# snapshotter needs cgo and is left out (no_btrfs), as are the devmapper and ZFS snapshotters (no_devmapper,
# no_zfs), which a kiln node does not use; overlayfs and native remain. CRI is built in. The version
# package gets the version and, for lack of a git revision in a module zip, the module's go.sum hash.
# All three binaries land in DIR; OUT (containerd) is made last and is the one cached_build checks.
# Cold: 448 s on 2 cores busy with a Kubernetes build; with a warm Go build cache, about a minute.
build_containerd() {
	local out=$1 dir=$2
	log "containerd $CONTAINERD_VERSION: containerd, containerd-shim-runc-v2 and ctr, static (CGO_ENABLED=0); about 7 min cold"
	local src="$dir/src" m=github.com/containerd/containerd/v2
	rm -rf "$src"
	mkdir -p "$src"
	(
		cd "$src"
		export GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
		go mod init kilntools-containerd >&2
		go get "$m/cmd/containerd@$CONTAINERD_VERSION" "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" "$m/cmd/ctr@$CONTAINERD_VERSION" >&2
		local sum
		sum=$(go mod download -json "$m@$CONTAINERD_VERSION" | sed -n 's/.*"Sum": "\(.*\)",/\1/p')
		local ld="-s -w -X $m/version.Version=$CONTAINERD_VERSION -X $m/version.Revision=$sum -X $m/version.Package=$m"
		local tags=urfave_cli_no_docs,no_btrfs,no_devmapper,no_zfs
		log "building containerd-shim-runc-v2"
		go build -trimpath -tags "$tags,no_grpc" -ldflags "$ld" -o "$dir/containerd-shim-runc-v2.tmp" "$m/cmd/containerd-shim-runc-v2" >&2
		mv -f "$dir/containerd-shim-runc-v2.tmp" "$dir/containerd-shim-runc-v2"
		log "building ctr"
		go build -trimpath -tags "$tags" -ldflags "$ld" -o "$dir/ctr.tmp" "$m/cmd/ctr" >&2
		mv -f "$dir/ctr.tmp" "$dir/ctr"
		# containerd last and straight to OUT: its presence marks the entry complete.
		log "building containerd"
		go build -trimpath -tags "$tags" -ldflags "$ld" -o "$out" "$m/cmd/containerd" >&2
	)
	local got
	got=$("$out" --version)
	[[ "$got" == "containerd $m $CONTAINERD_VERSION "* ]] || die "built containerd reports ${got@Q}"
	"$dir/ctr" --version >&2
	log "$got"
}

tool_containerd() { cached_build containerd "$CONTAINERD_VERSION" build_containerd; }

# node_images_source prints a short hash of the kiln source that the node images are built from: the Go
# files of every kiln package that cmd/kiln-pause, cmd/kiln-echo, cmd/kiln-node-images and cmd/kiln-node depend on
# (the image names included: bootstrap/kubecfg), go.mod and go.sum. It names the node-images cache
# entry, so that a changed program or name builds anew.
node_images_source() {
	local repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	(
		cd "$repo"
		export GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
		go list -deps -f '{{if and .Module (eq .Module.Path "github.com/kiln-dev/kiln")}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}' \
			./cmd/kiln-pause ./cmd/kiln-echo ./cmd/kiln-node-images ./cmd/kiln-node | LC_ALL=C sort | xargs sha256sum | sed "s| $repo/| |"
		sha256sum go.mod go.sum
	) | sha256sum | cut -c1-12
}

# build_node_images OUT DIR builds kiln's node images from this checkout: the static binaries
# kiln-pause and kiln-echo (CGO_ENABLED=0) into DIR, and with cmd/kiln-node-images their image
# archives DIR/pause.tar and DIR/echo.tar, named as bootstrap/kubecfg says (SandboxImage, EchoImage);
# and kiln's node agent DIR/kiln-node (static), which the base image installs as /usr/local/bin/kiln-node.
# OUT is kiln-pause, made last, which marks the entry complete. Cold: 92 s on 2 busy cores.
build_node_images() {
	local out=$1 dir=$2
	log "node images: kiln-pause, kiln-echo (static) and their image archives; about 1.5 min cold"
	local repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	local work="$dir/work"
	rm -rf "$work"
	mkdir -p "$work"
	(
		cd "$repo"
		export GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
		local ld="-s -w -X github.com/kiln-dev/kiln/images/nodeimages/pause.Version=$(node_images_source)" b
		for b in kiln-pause kiln-echo kiln-node-images kiln-node; do
			log "building $b"
			go build -trimpath -ldflags "$ld" -o "$work/$b" "./cmd/$b" >&2
		done
	)
	"$work/kiln-node-images" -bin "$work" -out "$dir" >&2
	install -m 0755 "$work/kiln-echo" "$dir/kiln-echo"
	install -m 0755 "$work/kiln-node" "$dir/kiln-node"
	install -m 0755 "$work/kiln-pause" "$out"
	rm -rf "$work"
}

# tool_node-images prints the directory of the node images: pause.tar, echo.tar and the binaries
# kiln-pause and kiln-echo they hold.
tool_node-images() {
	local pause
	pause=$(cached_build node-images "$(node_images_source)" build_node_images kiln-pause)
	dirname "$pause"
}

# build_packer_set OUT DIR builds packer and the three builder plugins the tests drive (QEMU, which
# bakes; amazon and vsphere, whose schemas `packer validate` checks the templates against) in ONE
# scratch module, so that what they share (packer-plugin-sdk, the AWS SDK, hcl, grpc, ...) is resolved
# to one version and compiled once: 1,121 s for all four on a busy 2-core machine (load 13 to 15),
# where four modules took 1,678 s. The go-cty replace is the one Packer and its plugins name in their
# own go.mod (github.com/zclconf/go-cty => github.com/nywilken/go-cty v1.13.3). The plugins are
# installed into a Packer plugin directory with `packer plugins install --path BINARY
# github.com/hashicorp/NAME`, which takes release versions only, so the QEMU plugin's prerelease
# suffix is cleared. All four land in DIR; OUT is packer.
build_packer_set() {
	local out=$1 dir=$2 src="$2/src"
	local qemu=github.com/hashicorp/packer-plugin-qemu amazon=github.com/hashicorp/packer-plugin-amazon \
		vsphere=github.com/hashicorp/packer-plugin-vsphere packer=github.com/hashicorp/packer
	rm -rf "$src"
	mkdir -p "$src"
	(
		cd "$src"
		export GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
		go mod init kilntools-packer >&2
		go mod edit -replace github.com/zclconf/go-cty=github.com/nywilken/go-cty@v1.13.3
		printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "%s"\n\t_ "%s"\n\t_ "%s"\n\t_ "%s"\n)\n' \
			"$packer" "$qemu" "$amazon" "$vsphere" >tools.go
		go get "$packer@$PACKER_VERSION" "$qemu@$PACKER_PLUGIN_QEMU_VERSION" \
			"$amazon@$PACKER_PLUGIN_AMAZON_VERSION" "$vsphere@$PACKER_PLUGIN_VSPHERE_VERSION" >&2
		go mod tidy >&2
		local m ld
		for m in "$packer" "$qemu" "$amazon" "$vsphere"; do
			ld="-s -w"
			[[ $m == "$qemu" ]] && ld+=" -X $qemu/version.VersionPrerelease="
			log "building ${m##*/} (of packer and its plugins, about 10 to 20 min cold on 2 cores)"
			go build -trimpath -ldflags "$ld" -o "$dir/${m##*/}.tmp" "$m" >&2
			mv -f "$dir/${m##*/}.tmp" "$dir/${m##*/}"
		done
	)
	local got
	got=$("$dir/packer" version | head -n1)
	[[ "$got" == "Packer v${PACKER_VERSION#v}" ]] || die "built packer reports ${got@Q}"
	for m in packer-plugin-qemu packer-plugin-amazon packer-plugin-vsphere; do
		"$dir/$m" describe >&2
	done
	cp "$dir/packer" "$out"
}

# packer_set_version prints the version part of the packer-set cache entry's name.
packer_set_version() {
	echo "$PACKER_VERSION-qemu$PACKER_PLUGIN_QEMU_VERSION-amazon$PACKER_PLUGIN_AMAZON_VERSION-vsphere$PACKER_PLUGIN_VSPHERE_VERSION"
}

# packer_set prints the directory that holds packer and its plugins, building them once.
packer_set() {
	dirname "$(cached_build packer-set "$(packer_set_version)" build_packer_set)"
}

tool_packer() { echo "$(packer_set)/packer"; }
tool_packer-plugin-qemu() { echo "$(packer_set)/packer-plugin-qemu"; }
tool_packer-plugin-amazon() { echo "$(packer_set)/packer-plugin-amazon"; }
tool_packer-plugin-vsphere() { echo "$(packer_set)/packer-plugin-vsphere"; }

# build_base_image OUT DIR builds the Debian 12 base image with images/base/build.sh (debootstrap; the
# Ignition, Kubernetes and containerd binaries and the node images built above; a dracut initramfs) into
# DIR, and installs OUT, the launcher that boots it by hand. The cache key also covers every file under
# images/base (see base_image_key), so a changed recipe builds anew.
build_base_image() {
	local out=$1 dir=$2
	local repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	((EUID == 0)) || die "base-image needs root (debootstrap, chroot, mounts); run: sudo hack/tools.sh base-image"
	ensure_apt debootstrap e2fsprogs qemu-utils
	local ign kube ctrd images
	ign=$(tool_ignition)
	kube=$(dirname "$(tool_kubernetes)")
	ctrd=$(dirname "$(tool_containerd)")
	images=$(tool_node-images)
	bash "$repo/images/base/build.sh" "$dir" "$ign" "$kube" "$ctrd" "$images"
	install -m 0755 "$repo/images/base/boot.sh" "$out"
}

# base_image_key prints a short hash of the base image's recipe files and of the versions and recipes
# of the binaries it carries.
base_image_key() {
	local repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	{
		(cd "$repo/images/base" && find . -type f ! -name "*.md" -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
		printf '%s\n' "$IGNITION_VERSION" "$KUBERNETES_VERSION" "${KUBERNETES_BINARIES[*]}" "$CONTAINERD_VERSION" "$(node_images_source)"
		declare -f build_ignition build_kubernetes build_containerd build_node_images
	} | sha256sum | cut -c1-12
}

tool_base-image() { cached_build base-image "debian12-$(base_image_key)" build_base_image; }

# baked_image_source prints a short hash of the kiln source that bakes the image: the Go files and
# embedded files of every kiln package that cmd/kiln and cmd/packer-plugin-kiln depend on, the
# templates in images/templates, go.mod and go.sum.
baked_image_source() {
	local repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	(
		cd "$repo"
		export GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
		go list -deps -f '{{if and .Module (eq .Module.Path "github.com/kiln-dev/kiln")}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}' \
			./cmd/kiln ./cmd/packer-plugin-kiln | LC_ALL=C sort -u | xargs sha256sum | sed "s| $repo/| |"
		find images/templates -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
		sha256sum go.mod go.sum
	) | sha256sum | cut -c1-12
}

# baked_image_key prints a short hash of what the baked image is made of: the base image's key, the
# version and recipe of packer and its plugins, kiln's source (baked_image_source) and the helper
# that installs the plugins.
baked_image_key() {
	{
		printf '%s\n' "$(base_image_key)" "$(packer_set_version)" "$(recipe_key build_packer_set)" "$(baked_image_source)"
		declare -f install_packer_plugin
	} | sha256sum | cut -c1-12
}

# install_packer_plugin PACKER PLUGIN_DIR BINARY SOURCE installs a plugin binary into a Packer plugin
# directory without the network, as images/packer/packertest does for tests: `packer plugins install
# --path` takes a binary named packer-plugin-NAME (NAME the last element of SOURCE) with a release
# version.
install_packer_plugin() {
	local packer=$1 plugins=$2 binary=$3 source=$4
	local name="packer-plugin-${source##*/}"
	[[ "$(basename "$binary")" == "$name" ]] || die "install_packer_plugin: $binary is not named $name"
	PACKER_PLUGIN_PATH=$plugins CHECKPOINT_DISABLE=1 "$packer" plugins install --path "$binary" "$source" >&2
}

# build_baked_image OUT DIR bakes the hardened image into DIR with `kiln image build --target qemu`,
# as a user would: kiln and packer-plugin-kiln are built from this checkout, the plugins are installed
# into a plugin directory of the entry's own, and kiln makes the one-time build access itself. It
# bakes the base image (--base-image) under TCG with RSA-3072 host keys (RSA-4096 at each first boot
# takes minutes under TCG; images/bake's ssh-audit policy says 3072). DIR gets disk.qcow2, the base
# image's vmlinuz, initrd.img and cmdline (the QEMU provider boots an image with the kernel beside
# it), the build machine's console log build-console.log, and OUT, the launcher baked-image
# (images/base/boot.sh), made last. On failure the console's last lines go to stderr.
build_baked_image() {
	local out=$1 dir=$2
	local repo
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	ensure_apt qemu-system-x86 qemu-utils
	local base set
	base=$(dirname "$(tool_base-image)")
	set=$(packer_set)
	local work="$dir/work"
	rm -rf "$work"
	mkdir -p "$work/bin" "$work/plugins"
	(
		cd "$repo"
		export GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
		local b
		for b in kiln packer-plugin-kiln; do
			log "building $b from $repo"
			go build -trimpath -o "$work/bin/$b" "./cmd/$b" >&2
		done
	)
	install_packer_plugin "$set/packer" "$work/plugins" "$work/bin/packer-plugin-kiln" github.com/kiln-dev/kiln
	install_packer_plugin "$set/packer" "$work/plugins" "$set/packer-plugin-qemu" github.com/hashicorp/qemu
	log "baking the hardened image with packer under TCG: about 2 to 6 minutes (more on a busy machine)"
	local start=$SECONDS console="$dir/build-console.log"
	if ! PACKER_PLUGIN_PATH="$work/plugins" PACKER_CACHE_DIR="$work/packer-cache" PACKER_CONFIG_DIR="$work/packer-config" \
		CHECKPOINT_DISABLE=1 "$work/bin/kiln" image build --target qemu --packer "$set/packer" --work-dir "$work/build" \
		--base-image "$base" --var accelerator=tcg --var rsa_host_key_bits=3072 --var "serial_log=$console" >&2; then
		log "the build machine's console ($console), last lines:"
		tail -n 60 "$console" >&2 || true
		die "kiln image build --target qemu failed after $((SECONDS - start))s"
	fi
	log "baked in $((SECONDS - start))s"
	mv -f "$work/build/output-kiln-qemu/kiln.qcow2" "$dir/disk.qcow2"
	local f
	for f in vmlinuz initrd.img cmdline; do
		cp -f "$base/$f" "$dir/$f"
	done
	rm -rf "$work"
	install -m 0755 "$repo/images/base/boot.sh" "$out"
}

# tool_baked-image prints the path of the baked image, DIR/disk.qcow2; DIR is laid out as the base
# image's directory is (vmlinuz, initrd.img, cmdline; the launcher baked-image boots it by hand).
tool_baked-image() {
	local launcher
	launcher=$(cached_build baked-image "debian12-$(baked_image_key)" build_baked_image)
	echo "$(dirname "$launcher")/disk.qcow2"
}

# tool_qemu installs QEMU, qemu-img, vde_switch and socat when missing (Debian packages; nothing to build)
# and prints qemu-system-x86_64's path. The local QEMU provider's tests (onprem/qemu) use it.
tool_qemu() {
	ensure_apt qemu-system-x86 qemu-utils vde2 socat
	command -v qemu-system-x86_64 || die "qemu-system-x86_64 is not on PATH"
}

# build_pxe_kernel OUT DIR extracts the kernel of Debian 12's linux-image-amd64 (the package that
# its dependency names, fetched with apt-get download) to OUT and its e1000 driver to DIR/e1000.ko:
# the network boot test (onprem/pxe) serves them to a QEMU machine booting with iPXE.
build_pxe_kernel() {
	local out=$1 dir=$2 pkg deb
	ensure_apt ipxe-qemu ipxe busybox-static qemu-system-x86
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
	if [[ -z "$pkg" ]]; then
		apt-get update -q >&2
		pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
	fi
	[[ -n "$pkg" ]] || die "cannot resolve linux-image-amd64"
	rm -rf "$dir/deb" && mkdir -p "$dir/deb"
	(cd "$dir/deb" && apt-get download "$pkg" >&2)
	deb=$(ls "$dir"/deb/*.deb)
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir/deb" --wildcards './boot/vmlinuz-*' './lib/modules/*/e1000.ko*'
	cp "$(ls "$dir"/deb/boot/vmlinuz-*)" "$out"
	cp "$(find "$dir/deb/lib/modules" -name 'e1000.ko*' | head -n1)" "$dir/e1000.ko"
	chmod 0755 "$out"
	rm -rf "$dir/deb"
}

# tool_pxe-kernel prints the path of the network boot test's kernel; e1000.ko is next to it. It
# installs QEMU, the iPXE ROMs and binaries and busybox-static when missing.
tool_pxe-kernel() {
	ensure_apt ipxe-qemu ipxe busybox-static qemu-system-x86
	cached_build pxe-kernel debian12 build_pxe_kernel
}

# usage prints the header comment and exits with status $1 (2 by default).
usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit "${1:-2}"
}

main() {
	(($# == 1)) || usage
	case $1 in
	deps) cmd_deps ;;
	-h | --help | help) usage 0 ;;
	*)
		declare -F "tool_$1" >/dev/null || die "unknown tool: $1 (hack/tools.sh help lists the tools)"
		"tool_$1"
		;;
	esac
}

# In braces with exit, so that bash has read the whole line before it runs: an edit of this file
# while a long build runs cannot change what runs next.
{ main "$@"; exit; }
