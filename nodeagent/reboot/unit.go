package reboot

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/nodeagent/podnet"
)

// The units that run the agent on a node.
const (
	// ServiceName is one run of the agent; TimerName starts it every minute.
	ServiceName = "kiln-reboot.service"
	TimerName   = "kiln-reboot.timer"
)

// UnitInput is what a node's units say.
type UnitInput struct {
	// Node is the node's name (a placeholder that rendering fills in per node); Pool its pool
	// ("control-plane" for the control plane) and Slots the pool's maxConcurrentReboots.
	Node, Pool string
	Slots      int
	// Schedule and TimeZone are the pool's maintenance window; empty is always open.
	Schedule, TimeZone string
	// Kubeconfig is the node's own credential (the kubelet's): its Node, its pods.
	Kubeconfig string
	// LockCert and LockKey are the agent's own credential, for its pool's reboot lock.
	LockCert, LockKey string
}

// Where a node keeps its agent's own credential (from its Ignition config).
const (
	DefaultLockCert = "/etc/kiln/reboot/agent.crt"
	DefaultLockKey  = "/etc/kiln/reboot/agent.key"
)

// Units returns the text of ServiceName and TimerName for Ignition to write, the timer enabled.
// The service runs as root: it reads the kubelet's credential and reboots the node.
func Units(in UnitInput) (service, timer string, err error) {
	switch {
	case in.Node == "" || in.Pool == "" || in.Kubeconfig == "" || in.LockCert == "" || in.LockKey == "":
		return "", "", fmt.Errorf("reboot: units: node %q, pool %q, kubeconfig %q and the lock's certificate %q and key %q are all needed",
			in.Node, in.Pool, in.Kubeconfig, in.LockCert, in.LockKey)
	case in.Slots < 1:
		return "", "", fmt.Errorf("reboot: units: pool %s: %d slots, want at least 1", in.Pool, in.Slots)
	}
	args := []string{podnet.BinaryPath, "reboot", "--kubeconfig=" + in.Kubeconfig, "--lock-cert=" + in.LockCert, "--lock-key=" + in.LockKey,
		"--node-name=" + in.Node, "--pool=" + in.Pool,
		"--slots=" + strconv.Itoa(in.Slots)}
	if in.Schedule != "" {
		// systemd splits ExecStart on spaces unless quoted.
		args = append(args, strconv.Quote("--window="+in.Schedule))
		if in.TimeZone != "" {
			args = append(args, "--time-zone="+in.TimeZone)
		}
	}
	service = `[Unit]
Description=kiln reboot coordinator: the reboot that updates need, one node of a pool at a time (kiln-node reboot)
Wants=network-online.target
After=network-online.target kubelet.service
# The kubelet's TLS bootstrap writes the credential the agent uses.
ConditionPathExists=` + in.Kubeconfig + `

[Service]
Type=oneshot
ExecStart=` + strings.Join(args, " ") + `
NoNewPrivileges=yes
ProtectHome=yes
PrivateTmp=yes
`
	timer = `[Unit]
Description=kiln reboot coordinator, every minute

[Timer]
OnBootSec=2min
OnUnitInactiveSec=1min
AccuracySec=5s

[Install]
WantedBy=timers.target
`
	return service, timer, nil
}
