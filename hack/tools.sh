#!/usr/bin/env bash
# tools.sh builds and caches the outside programs that kiln's tests drive.
#
# Usage:
#   hack/tools.sh deps        install (as root) the Debian packages the tests need; print their names
#   hack/tools.sh ignition    build github.com/coreos/ignition/v2 once; print the binary's absolute path
#   hack/tools.sh kubernetes  build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
#                             kubectl once; print kube-apiserver's path (the others are next to it)
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
	systemd      # systemd-analyze verify on rendered units (kiln-firewall.service)
	etcd-server  # etcd (3.4) for the control-plane security test (bootstrap/clustertest)
	etcd-client  # etcdctl: the control-plane security test reads raw Secrets from etcd
)

IGNITION_VERSION=v2.26.0
KUBERNETES_VERSION=v1.37.2
KUBERNETES_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

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

# recipe_key prints a short hash of the named functions' text and the Go
# toolchain, which names the cache entry of a build.
recipe_key() {
	{
		declare -f "$@"
		go env GOVERSION GOOS GOARCH
	} | sha256sum | cut -c1-12
}

# cached_build NAME VERSION BUILD_FN prints the path of NAME's binary, running
# BUILD_FN OUT DIR to make it when the cache has no binary for this recipe.
# Builds are serialized with a lock so that parallel test binaries wait for
# one build instead of racing; the binary appears atomically (temp name, mv).
cached_build() {
	local name=$1 version=$2 build_fn=$3
	command -v go >/dev/null || die "go is not on PATH"
	local dir
	dir="$KILN_CACHE/$name/$version-$(recipe_key "$build_fn")"
	local out="$dir/$name"
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
	fi
	printf '%s\n' "$out"
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

# usage prints the header comment and exits with status $1 (2 by default).
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
	)
	cp "$dir/kube-apiserver" "$out"
	"$out" --version >&2
}

tool_kubernetes() { cached_build kube-apiserver "$KUBERNETES_VERSION" build_kubernetes; }

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

main "$@"
