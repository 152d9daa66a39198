#!/usr/bin/env bash
# quickstart.sh: kiln's main job on one machine, start to end. For now: start a cluster (spec +
# secrets), render the Ignition config of every node in the spec, and lint each against the
# cluster's secrets. Everything goes into ./demo (recreated on every run), state included.
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-$PWD/bin/kiln}
DEMO=${KILN_DEMO_DIR:-$PWD/demo}
rm -rf "$DEMO"
mkdir -p "$DEMO/ignition"
export KILN_STATE_DIR="$DEMO/state"

step() { printf '\n==> %s\n' "$*"; }

step "kiln init demo"
"$KILN" init demo -f "$DEMO/cluster.yaml"

step "kiln validate"
"$KILN" validate -f "$DEMO/cluster.yaml"

step "kiln render ignition (every node of the spec)"
nodes=(control-plane:demo-control-plane-0: worker:demo-workers-0:workers worker:demo-workers-1:workers)
for n in "${nodes[@]}"; do
	IFS=: read -r role node pool <<<"$n"
	args=(render ignition -f "$DEMO/cluster.yaml" --role "$role" --node "$node" -o "$DEMO/ignition/$node.ign")
	[[ -n $pool ]] && args+=(--pool "$pool")
	"$KILN" "${args[@]}"
done

step "kiln lint ignition (against the cluster's own secrets)"
for n in "${nodes[@]}"; do
	IFS=: read -r role node _ <<<"$n"
	"$KILN" lint ignition "$DEMO/ignition/$node.ign" --role "$role" -f "$DEMO/cluster.yaml"
done

step "done"
ls -l "$DEMO/ignition"
echo "spec: $DEMO/cluster.yaml   state: $KILN_STATE_DIR"
