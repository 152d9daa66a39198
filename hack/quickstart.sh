#!/usr/bin/env bash
# quickstart.sh: kiln's main job on one machine, start to end. It starts a cluster `demo` on the
# local QEMU provider (one control-plane node and one worker, booting the Debian 12 base image with
# Ignition), brings it up with `kiln apply`, kills the worker's VM, watches `kiln apply --watch`
# replace it, and logs in to the new worker with the cluster's SSH key.
#
# Everything goes into ./demo (spec, encrypted state, the VMs' disks); a previous demo's VMs are
# deleted first. The VMs stay up afterwards:
# `KILN_STATE_DIR=demo/state bin/kiln delete -f demo/cluster.yaml --yes` removes them.
#
# Needs root (the base image is built with debootstrap and mounts) and the tools of `make tools`.
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-$PWD/bin/kiln}
DEMO=${KILN_DEMO_DIR:-$PWD/demo}
# How long a node may take to boot to SSH; TCG on 2 busy cores can be slow.
BOOT_TIMEOUT=${KILN_BOOT_TIMEOUT:-20m}
export KILN_STATE_DIR="$DEMO/state"
SPEC="$DEMO/cluster.yaml"

step() { printf '\n==> %s\n' "$*"; }
die() {
	printf 'quickstart: %s\n' "$*" >&2
	exit 1
}

if [[ -f $SPEC ]]; then
	step "deleting the previous demo's machines"
	"$KILN" delete -f "$SPEC" --yes || true
fi
rm -rf "$DEMO"
mkdir -p "$DEMO/ignition"

step "the Debian 12 base image (built once, cached in ~/.cache/kiln)"
image="$(dirname "$(hack/tools.sh base-image)")/disk.qcow2"
echo "$image"

step "kiln init demo (qemu: one control-plane node, one worker)"
"$KILN" init demo -f "$SPEC" --provider qemu --image "$image" --workers 1

# TCG on a small, busy machine can take minutes to boot a node: give new nodes 20 minutes before
# they count as failed (the default, 10m, suits real hardware).
sed -i 's/^    nodeStartupTimeout: 10m$/    nodeStartupTimeout: 20m/' "$SPEC"
grep -q '^    nodeStartupTimeout: 20m$' "$SPEC" || die "could not set spec.health.nodeStartupTimeout in $SPEC"

step "kiln validate"
"$KILN" validate -f "$SPEC"

step "kiln render ignition + lint (what the worker boots with)"
"$KILN" render ignition -f "$SPEC" --role worker --pool workers --node demo-workers-0 --output-file "$DEMO/ignition/demo-workers-0.ign"
"$KILN" lint ignition "$DEMO/ignition/demo-workers-0.ign" --role worker -f "$SPEC"

step "kiln apply: boot the nodes, wait until each answers on SSH"
"$KILN" apply -f "$SPEC" --interval 5s --timeout "$BOOT_TIMEOUT"
"$KILN" get nodes -f "$SPEC" -o wide

step "kill the worker's VM, and let kiln apply --watch replace it"
"$KILN" apply -f "$SPEC" --watch --interval 5s --log-format json >"$DEMO/watch.log" 2>&1 &
watch=$!
trap 'kill -INT $watch 2>/dev/null || true' EXIT
pid=$(cat "$KILN_STATE_DIR/qemu/demo/demo-workers-0/qemu.pid")
kill -KILL "$pid"
echo "killed demo-workers-0 (qemu pid $pid)"
deadline=$((SECONDS + 1800))
until "$KILN" get nodes -f "$SPEC" | awk '$1 == "demo-workers-1" && $5 == "ready" { ok = 1 } $1 == "demo-workers-0" { old = 1 } END { exit !(ok && !old) }'; do
	((SECONDS < deadline)) || die "demo-workers-0 was not replaced within 30 minutes; see $DEMO/watch.log"
	sleep 5
done
kill -INT "$watch"
wait "$watch" || true
trap - EXIT
grep -E '"msg":"(create|delete)"' "$DEMO/watch.log" || true
"$KILN" get nodes -f "$SPEC" -o wide

step "log in to the new worker with the cluster's key"
"$KILN" ssh-key -f "$SPEC" --output-file "$DEMO/id_demo"
ssh_addr=$("$KILN" get nodes -f "$SPEC" -o wide | awk '$1 == "demo-workers-1" { print $8 }')
"$KILN" known-hosts -f "$SPEC" --wait 2m --output-file "$DEMO/known_hosts"
ssh -i "$DEMO/id_demo" -p "${ssh_addr##*:}" -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$DEMO/known_hosts" \
	-o LogLevel=ERROR -o BatchMode=yes kiln@127.0.0.1 'echo "logged in to $(hostname) as $(id -un)"'

step "done"
echo "spec: $SPEC   state: $KILN_STATE_DIR"
echo "the nodes keep running; remove them with:"
echo "  KILN_STATE_DIR=$KILN_STATE_DIR $KILN delete -f $SPEC --yes"
