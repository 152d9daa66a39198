package command

import (
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/api/window"
	"github.com/kiln-dev/kiln/nodeagent/reboot"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

type rebootOptions struct {
	kubeconfig, lockCert, lockKey             string
	node, pool, selector                      string
	schedule, zone, requiredFile, rebootCmd   string
	stateFile, bootIDFile                     string
	slots                                     int
	leaseDuration, drainTimeout, offlineAfter time.Duration
	rebootGrace, renewEvery                   time.Duration
}

func newReboot(g *globals) *cobra.Command {
	o := rebootOptions{}
	cmd := &cobra.Command{
		Use:   "reboot --pool POOL",
		Short: "Take the reboot that security updates need, one node of a pool at a time, drained first",
		Long: `reboot is one run of kiln's reboot coordinator; kiln-reboot.timer starts it every minute. When the
node needs a reboot (/run/reboot-required on Debian and Ubuntu, 'needs-restarting -r' on the RHEL
family) it:

  1. waits for the pool's maintenance window (--window, --time-zone), for every other Node of the
     pool to be Ready and schedulable, and for a free slot of the pool's reboot lock: the Leases
     kiln-reboot-<pool>-0..N-1 in kube-node-lease (--slots; the control plane has 1);
  2. takes a slot, cordons its Node and evicts its pods through the Eviction API
     (PodDisruptionBudgets hold; after --drain-timeout it gives up, uncordons, releases the slot
     and tries again at a later run; never a forced delete);
  3. renews the slot for --lease-duration and reboots (--reboot-command);
  4. after the reboot, waits for its Node to be Ready, uncordons it and releases the slot.

A node that dies holding a slot frees it when the lease runs out (--lease-duration). When the API
has not answered for --offline-after, the node reboots without the lock, undrained, at its own
minute of the window (its ordinal, from its name, modulo the window's length), so the nodes of a
pool never share a minute. What must survive the reboot is in --state-file.

Two credentials: the node's own (--kubeconfig, the kubelet's), with which it may cordon only its
own Node and evict only its own pods (NodeRestriction); and the agent's own (--lock-cert,
--lock-key, from the node's Ignition config), with which it may write only its pool's Leases, and
hold a slot only in its own name.`,
		Example: `  kiln-node reboot --pool workers --slots 1 --window "Mon-Fri 02:00-05:00" --time-zone Europe/Berlin`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			a, err := o.agent()
			if err != nil {
				return err
			}
			a.Log = log
			d, err := a.Run(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", d.Kind, d.Reason)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", DefaultKubeconfig, "kubeconfig of the node's own credential (the kubelet's): it cordons the Node and evicts its pods")
	f.StringVar(&o.lockCert, "lock-cert", reboot.DefaultLockCert, "client certificate of the agent's own credential, for the pool's reboot lock (from the node's Ignition config)")
	f.StringVar(&o.lockKey, "lock-key", reboot.DefaultLockKey, "private key of --lock-cert")
	f.StringVar(&o.node, "node-name", "", "name of this node's Node (default: the hostname, lower-cased, as the kubelet names it)")
	f.StringVar(&o.pool, "pool", "", `the node's pool ("control-plane" for the control plane); required`)
	f.StringVar(&o.selector, "pool-selector", "", "label selector of the pool's Nodes (default kiln.dev/pool=POOL, kiln.dev/role=control-plane for the control plane)")
	f.IntVar(&o.slots, "slots", 1, "how many nodes of the pool may reboot at once (nodePools[].maxConcurrentReboots; 1 for the control plane)")
	f.StringVar(&o.schedule, "window", "", `maintenance window, e.g. "Mon-Fri 02:00-05:00" (default: always open)`)
	f.StringVar(&o.zone, "time-zone", "", "IANA time zone of --window (default UTC)")
	f.DurationVar(&o.leaseDuration, "lease-duration", 15*time.Minute, "how long a slot outlives its holder's last renewal: the longest a reboot may take")
	f.DurationVar(&o.drainTimeout, "drain-timeout", reboot.DefaultDrainTimeout, "how long evictions may be refused (PodDisruptionBudgets) before the agent gives up for this run")
	f.DurationVar(&o.offlineAfter, "offline-after", reboot.DefaultOfflineAfter, "how long the API must be unreachable before the node reboots without the lock, at its minute of the window")
	f.DurationVar(&o.rebootGrace, "reboot-grace", reboot.DefaultRebootGrace, "how long after the reboot command the agent runs it again if the node is still up")
	f.DurationVar(&o.renewEvery, "renew-every", reboot.DefaultRenewEvery, "how often the slot is renewed while the node drains")
	f.StringVar(&o.stateFile, "state-file", reboot.DefaultStateFile, "where the agent keeps what must survive the reboot")
	f.StringVar(&o.bootIDFile, "boot-id-file", reboot.DefaultBootIDFile, "the kernel's boot id")
	f.StringVar(&o.requiredFile, "reboot-required-file", "", "a file whose presence means a reboot is needed (default: needs-restarting -r when it is installed, else "+reboot.DefaultRequiredFile+")")
	f.StringVar(&o.rebootCmd, "reboot-command", strings.Join(reboot.DefaultRebootCommand, " "), "the command that reboots the node, split on spaces")
	_ = cmd.MarkFlagRequired("pool")
	_ = cmd.MarkFlagFilename("kubeconfig")
	return cmd
}

// agent checks the options and builds the agent they describe.
func (o rebootOptions) agent() (*reboot.Agent, error) {
	switch {
	case o.pool == "":
		return nil, fmt.Errorf("--pool: required")
	case o.slots < 1:
		return nil, fmt.Errorf("--slots %d: at least 1", o.slots)
	case o.pool == rebootlock.ControlPlanePool && o.slots != 1:
		return nil, fmt.Errorf("--slots %d: the control plane reboots one node at a time", o.slots)
	case o.leaseDuration < 10*time.Second:
		return nil, fmt.Errorf("--lease-duration %s: at least 10s (a reboot takes longer)", o.leaseDuration)
	case o.drainTimeout <= 0 || o.offlineAfter <= 0 || o.rebootGrace <= 0 || o.renewEvery <= 0:
		return nil, fmt.Errorf("--drain-timeout, --offline-after, --reboot-grace and --renew-every must be positive")
	case o.renewEvery >= o.leaseDuration:
		return nil, fmt.Errorf("--renew-every %s: shorter than --lease-duration %s", o.renewEvery, o.leaseDuration)
	}
	var w window.Window
	if o.schedule != "" {
		var err error
		if w, err = window.Parse(o.schedule, o.zone); err != nil {
			return nil, fmt.Errorf("--window: %w", err)
		}
	} else if o.zone != "" {
		return nil, fmt.Errorf("--time-zone %q without --window", o.zone)
	}
	argv := strings.Fields(o.rebootCmd)
	if len(argv) == 0 {
		return nil, fmt.Errorf("--reboot-command: empty")
	}
	node := o.node
	if node == "" {
		var err error
		if node, err = hostName(); err != nil {
			return nil, err
		}
	}
	selector := o.selector
	if selector == "" {
		selector = "kiln.dev/pool=" + o.pool
		if o.pool == rebootlock.ControlPlanePool {
			selector = "kiln.dev/role=control-plane"
		}
	}
	required := reboot.RequiredFile(reboot.DefaultRequiredFile)
	if o.requiredFile != "" {
		required = reboot.RequiredFile(o.requiredFile)
	} else if _, err := exec.LookPath("needs-restarting"); err == nil {
		required = reboot.NeedsRestarting
	}
	rc, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	rc.UserAgent = "kiln-node/" + Version + " reboot"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", o.kubeconfig, err)
	}
	// The lock's client: the same API server and CA, the agent's own certificate. NodeRestriction
	// lets a node's credential write no Lease but its own heartbeat.
	lc := rest.CopyConfig(rc)
	lc.CertData, lc.KeyData, lc.CertFile, lc.KeyFile = nil, nil, o.lockCert, o.lockKey
	lc.ExecProvider, lc.AuthProvider, lc.BearerToken, lc.BearerTokenFile, lc.Username, lc.Password = nil, nil, "", "", "", ""
	lockClient, err := kubernetes.NewForConfig(lc)
	if err != nil {
		return nil, fmt.Errorf("--lock-cert %s, --lock-key %s: %w", o.lockCert, o.lockKey, err)
	}
	return &reboot.Agent{
		Client:        client,
		Lock:          &rebootlock.Semaphore{Client: lockClient, Namespace: rebootlock.Namespace, Pool: o.pool, Slots: o.slots, Duration: o.leaseDuration, Now: time.Now},
		Node:          node,
		PoolSelector:  selector,
		Window:        w,
		Policy:        reboot.Policy{OfflineAfter: o.offlineAfter, RebootGrace: o.rebootGrace},
		DrainTimeout:  o.drainTimeout,
		StateFile:     o.stateFile,
		BootIDFile:    o.bootIDFile,
		Required:      required,
		RebootCommand: argv,
		RenewEvery:    o.renewEvery,
		Now:           time.Now,
	}, nil
}
