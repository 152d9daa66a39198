#!/usr/bin/env bash
# quickstart.sh: kiln's main job on one machine, start to end. It starts a cluster `demo` on the
# local QEMU provider (one control-plane node and two workers, booting kiln's hardened node image
# with Ignition), brings it up with `kiln apply` until every Kubernetes Node is Ready, runs a pod on each
# worker, kills a worker's VM, watches `kiln apply --watch` replace it with a node that joins and goes
# Ready, and logs in to the new worker with the cluster's SSH key. Each step says how long it took.
#
# Everything goes into ./demo (spec, encrypted state, the VMs' disks, a kubeconfig); a previous
# demo's VMs are deleted first. The VMs stay up afterwards:
# `KILN_STATE_DIR=demo/state bin/kiln delete -f demo/cluster.yaml --yes` removes them.
#
# Needs root (the base image is built with debootstrap and mounts) and the tools of `make tools`.
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-$PWD/bin/kiln}
DEMO=${KILN_DEMO_DIR:-$PWD/demo}
# How long the cluster may take to come up; TCG on 2 busy cores is slow.
BOOT_TIMEOUT=${KILN_BOOT_TIMEOUT:-30m}
export KILN_STATE_DIR="$DEMO/state"
SPEC="$DEMO/cluster.yaml"

began=$SECONDS
step_began=$SECONDS
step() {
	if ((SECONDS > began)); then
		printf '    (%d s)\n' "$((SECONDS - step_began))"
	fi
	step_began=$SECONDS
	printf '\n==> %s\n' "$*"
}
die() {
	printf 'quickstart: %s\n' "$*" >&2
	exit 1
}
# kubectl_retry ARGS...: kubectl ARGS, tried again for up to a minute: under TCG the control plane's
# API server can be too busy to finish a TLS handshake in time.
kubectl_retry() {
	local i
	for i in {1..12}; do
		"$kubectl" "$@" && return
		sleep 5
	done
	return 1
}
# until_true SECONDS WHAT COMMAND...: runs COMMAND every 5 s until it succeeds, or fails after SECONDS
# saying that WHAT did not happen.
until_true() {
	local limit=$1 what=$2 deadline=$((SECONDS + $1))
	shift 2
	until "$@"; do
		((SECONDS < deadline)) || die "$what did not happen within $limit s"
		sleep 5
	done
}

if [[ -f $SPEC ]]; then
	step "deleting the previous demo's machines"
	"$KILN" delete -f "$SPEC" --yes || true
fi
rm -rf "$DEMO"
mkdir -p "$DEMO/ignition"

step "the node image: kiln image build --target qemu (packer, QEMU and kiln-harden) on the Debian 12 base image with Ignition, etcd, Kubernetes, containerd and kiln's node agent (built once, cached in ~/.cache/kiln)"
image=$(hack/tools.sh baked-image)
echo "$image"
kubectl="$(dirname "$(hack/tools.sh kubernetes)")/kubectl"

step "kiln init demo (qemu: one control-plane node, two workers)"
"$KILN" init demo -f "$SPEC" --provider qemu --image "$image" --workers 2

# TCG on a small, busy machine can take many minutes to bring a node up: give new nodes 25 minutes
# to go Ready before they count as failed (the default, 10m, suits real hardware).
sed -i 's/^    nodeStartupTimeout: 10m$/    nodeStartupTimeout: 25m/' "$SPEC"
grep -q '^    nodeStartupTimeout: 25m$' "$SPEC" || die "could not set spec.health.nodeStartupTimeout in $SPEC"

step "kiln validate"
"$KILN" validate -f "$SPEC"

step "kiln render ignition + lint (what a worker boots with)"
"$KILN" render ignition -f "$SPEC" --role worker --pool workers --node demo-workers-0 --output-file "$DEMO/ignition/demo-workers-0.ign"
"$KILN" lint ignition "$DEMO/ignition/demo-workers-0.ign" --role worker -f "$SPEC"

step "kiln apply: the control-plane node first, the 2 workers once its Node is Ready; apply ends when every Node is Ready"
applied=$SECONDS
"$KILN" apply -f "$SPEC" --yes --interval 5s --timeout "$BOOT_TIMEOUT"
"$KILN" get nodes -f "$SPEC" -o wide

step "kubectl: wait until the 3 Nodes are Ready (kiln kubeconfig: an admin certificate from the cluster CA, valid 1 h)"
"$KILN" kubeconfig -f "$SPEC" --admin --ttl 1h --output-file "$DEMO/kubeconfig"
export KUBECONFIG="$DEMO/kubeconfig"
nodes_ready() { [[ $("$kubectl" get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l) == 3 ]]; }
until_true 1800 "3 Ready Nodes" nodes_ready
echo "all 3 Nodes Ready $((SECONDS - applied)) s after kiln apply started"
kubectl_retry get nodes -o wide

step "a pod on each worker (kiln's echo image, carried by the node image: nothing is pulled)"
echo_image=$("$KILN" version -o json | sed -n 's/.*"echo": *"\([^"]*\)".*/\1/p')
[[ -n $echo_image ]] || die "kiln version -o json names no echo image"
for node in demo-workers-0 demo-workers-1; do
	# The default namespace enforces Pod Security "restricted": the pod says it runs as non-root with
	# no privileges.
	"$kubectl" apply -f - <<POD
apiVersion: v1
kind: Pod
metadata:
  name: echo-$node
  labels: {app: echo}
spec:
  nodeSelector: {kubernetes.io/hostname: $node}
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: echo
      image: $echo_image
      imagePullPolicy: Never
      ports: [{containerPort: 8080}]
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
POD
done
"$kubectl" wait --for=condition=Ready pod -l app=echo --timeout=10m
kubectl_retry get pods -o wide

step "kill demo-workers-0's VM, and let kiln apply --watch replace it"
"$KILN" apply -f "$SPEC" --watch --interval 5s --log-format json >"$DEMO/watch.log" 2>&1 &
watch=$!
trap 'kill -INT $watch 2>/dev/null || true' EXIT
pid=$(cat "$KILN_STATE_DIR/qemu/demo/demo-workers-0/qemu.pid")
kill -KILL "$pid"
killed=$SECONDS
echo "killed demo-workers-0 (qemu pid $pid)"
# Replaced: demo-workers-0's machine is gone and its Node too (kiln deletes it with the machine, or
# once the API answers again), and two workers' Nodes are Ready, as the API says.
# (Each command's output is taken whole: under pipefail, kubectl's exit 1 for NotFound would fail
# a pipe into grep.)
replaced() {
	local machines old workers pending
	machines=$("$KILN" get nodes -f "$SPEC") || return 1
	old=$("$kubectl" get node demo-workers-0 2>&1) && return 1
	workers=$("$kubectl" get nodes --no-headers -l kiln.dev/role=worker) || return 1
	# ... and kiln has approved the new kubelet's serving certificate (kubectl logs and exec need it):
	# apply --watch does it in its next pass, which stopping it at the first Ready could cut off.
	pending=$("$kubectl" get csr --no-headers --field-selector spec.signerName=kubernetes.io/kubelet-serving 2>&1) || return 1
	[[ $(awk '$1 == "demo-workers-0"' <<<"$machines") == "" && $old == *NotFound* &&
		$(awk '$2 == "Ready"' <<<"$workers" | wc -l) == 2 && $pending != *Pending* ]]
}
until_true 1800 "the replacement of demo-workers-0 (see $DEMO/watch.log)" replaced
echo "the replacement's Node is Ready and demo-workers-0's Node is gone, $((SECONDS - killed)) s after the kill"
kill -INT "$watch"
wait "$watch" || true
trap - EXIT
grep -E '"msg":"(create|delete|delete-node)"' "$DEMO/watch.log" || true
"$KILN" get nodes -f "$SPEC" -o wide
kubectl_retry get nodes -o wide
new=$("$KILN" get nodes -f "$SPEC" | awk '$3 == "workers" && $1 != "demo-workers-1" && NR > 1 { print $1 }')

step "log in to the new worker $new with the cluster's key"
"$KILN" ssh-key -f "$SPEC" --output-file "$DEMO/id_demo"
ssh_addr=$("$KILN" get nodes -f "$SPEC" -o wide | awk -v n="$new" '$1 == n { print $8 }')
# Only the host key that the node reported on its console, and kiln pinned, is accepted.
"$KILN" known-hosts -f "$SPEC" --wait 2m --output-file "$DEMO/known_hosts"
ssh -i "$DEMO/id_demo" -p "${ssh_addr##*:}" -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$DEMO/known_hosts" \
	-o LogLevel=ERROR -o BatchMode=yes kiln@127.0.0.1 'echo "logged in to $(hostname) as $(id -un)"'

step "done"
echo "in $((SECONDS - began)) s. spec: $SPEC   state: $KILN_STATE_DIR   kubeconfig: $DEMO/kubeconfig"
echo "the nodes keep running; remove them with:"
echo "  KILN_STATE_DIR=$KILN_STATE_DIR $KILN delete -f $SPEC --yes"
