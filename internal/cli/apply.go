package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/health"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
	"github.com/kiln-dev/kiln/state"
)

// convergeBucket holds the executor's memory of each cluster, keyed by cluster name.
const convergeBucket = "converge"

type applyOptions struct {
	specPath    string
	watch       bool
	interval    time.Duration
	timeout     time.Duration
	concurrency int
	qps         float64
	keepFailed  bool
	kubeconfig  string
}

func newApply(g *globals) *cobra.Command {
	o := applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply -f cluster.yaml",
		Short: "Create the cluster's network and machines, and replace the ones that fail",
		Long: `apply makes the cluster's machines match its spec. It ensures the cluster's private network, API
endpoint and firewall (on providers that make them), then runs passes until every machine of the
control plane and of each node pool exists, runs the pool's image and is up:

  - a missing machine is created with its Ignition config (rendered for it, with a fresh bootstrap
    token);
  - a failed machine (gone, stopped, in error, not up within spec.health.nodeStartupTimeout, or with
    its probes failing for longer than spec.health.unhealthyTimeout) is replaced: the new machine is
    created first, the old one deleted once the new one is up;
  - a machine on an old image is replaced the same way, one at a time, never below count minus the
    pool's maxUnavailable;
  - guards hold replacements back and say why: above spec.health.maxUnhealthy unhealthy machines in a
    group nothing of it is replaced (a network partition is no reason to replace the fleet), at most
    one replacement is under way at once, and a machine is tried at most 3 times with backoff.

Without --watch, apply returns once the cluster has converged (or fails after --timeout). With
--watch it keeps converging and healing until interrupted, logging every action (as the root's
--log-format and --log-level say: kiln --log-format json apply --watch for structured events).

What apply remembers between passes (replacements under way, probe history) is kept in the state
store, so that an apply killed at any point continues where it stopped, without duplicate machines.`,
		Example: `  kiln apply -f cluster.yaml
  kiln apply -f cluster.yaml --watch --log-format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runApply(ctx, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.specPath, "file", "f", "cluster.yaml", "cluster spec")
	f.BoolVar(&o.watch, "watch", false, "keep converging and healing until interrupted")
	f.DurationVar(&o.interval, "interval", 10*time.Second, "time between passes")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up converging after this long (not with --watch)")
	f.IntVar(&o.concurrency, "concurrency", 4, "provider calls and probes at once")
	f.Float64Var(&o.qps, "qps", 10, "most provider calls per second")
	f.BoolVar(&o.keepFailed, "keep-failed", false, "power failed machines off and keep them for forensics instead of deleting them")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "also judge machines by their Node's Ready condition, read with this kubeconfig")
	return cmd
}

func runApply(ctx context.Context, g *globals, o applyOptions) error {
	log := g.log
	c, _, err := g.loadCluster(o.specPath)
	if err != nil {
		return err
	}
	p, err := g.provider(ctx, c, o.specPath)
	if err != nil {
		return err
	}
	if err := checkImages(c, p); err != nil {
		return err
	}
	pl, err := placement(c.Spec.Provider.Name)
	if err != nil {
		return err
	}
	if _, ok := p.(provisioner.Addresser); pl.NodeAddresses && !ok {
		return fmt.Errorf("provider %s: its nodes' configs need their addresses, but it cannot reserve them (no provisioner.Addresser)", c.Spec.Provider.Name)
	}
	if np, ok := p.(provisioner.NetworkProvider); ok {
		spec, err := networkSpec(c)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.errOut, "ensuring the network of %s on %s\n", c.Metadata.Name, c.Spec.Provider.Name)
		n, err := np.EnsureNetwork(ctx, spec)
		if err != nil {
			return fmt.Errorf("ensure network of %s: %w", c.Metadata.Name, err)
		}
		log.Info("network ready", "id", n.ID, "api", n.APIEndpoint.Name, "subnets", strings.Join(n.Subnets, ","))
	}
	e := g.executor(c, p, log, o)
	if o.kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
		if err != nil {
			return fmt.Errorf("--kubeconfig: %w", err)
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return fmt.Errorf("--kubeconfig: %w", err)
		}
		e.Nodes = converge.KubeNodes{Client: client}
	}
	desired := e.Desired
	if o.watch {
		fmt.Fprintf(g.errOut, "converging %s every %s until interrupted\n", c.Metadata.Name, o.interval)
		err := e.Run(ctx, o.interval, func(r converge.Report, err error) {
			if err != nil {
				log.Error("pass failed", "err", err)
				return
			}
			log.Info("pass", "machines", len(r.Machines), "ready", countReady(r), "converged", r.Converged(desired))
		})
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(g.errOut, "interrupted")
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var last converge.Report
	for pass := 1; ; pass++ {
		r, err := e.Pass(ctx)
		if err != nil && ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("%s has not converged within --timeout %s; last pass: %s", c.Metadata.Name, o.timeout, summary(last))
		}
		if err != nil {
			return err
		}
		last = r
		want := 0
		for _, gr := range desired.Groups {
			want += gr.Count
		}
		fmt.Fprintf(g.errOut, "pass %d: %d of %d machines ready", pass, countReady(r), want)
		for _, a := range r.Actions {
			fmt.Fprintf(g.errOut, "; %s %s", a.Op, a.Machine)
		}
		fmt.Fprintln(g.errOut)
		if r.Converged(desired) {
			fmt.Fprintf(g.errOut, "%s has converged: %d machines\n", c.Metadata.Name, want)
			return nil
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("%s has not converged within --timeout %s; last pass: %s", c.Metadata.Name, o.timeout, summary(r))
			}
			return ctx.Err()
		case <-time.After(o.interval):
		}
	}
}

func countReady(r converge.Report) int {
	n := 0
	for _, v := range r.Verdicts {
		if v.Ready {
			n++
		}
	}
	return n
}

// summary says what kept a pass from converging.
func summary(r converge.Report) string {
	var parts []string
	for _, m := range r.Machines {
		if v := r.Verdicts[m.Name]; !v.Ready {
			parts = append(parts, m.Name+": "+v.Reason)
		}
	}
	for _, b := range r.Plan.Blocked {
		parts = append(parts, "held back: "+b.Reason)
	}
	if err := r.Err(); err != nil {
		parts = append(parts, err.Error())
	}
	if len(parts) == 0 {
		return "machines missing"
	}
	return strings.Join(parts, "; ")
}

// executor builds the executor of cluster c on provider p.
func (g *globals) executor(c *v1alpha1.Cluster, p provisioner.Provider, log *slog.Logger, o applyOptions) *converge.Executor {
	policy := reconcile.PolicyFromSpec(c.Spec.Health)
	policy.KeepFailed = o.keepFailed
	renderer := &nodeRenderer{g: g, c: c, p: p}
	e := &converge.Executor{
		Provider:    p,
		Desired:     reconcile.DesiredFromSpec(c),
		Policy:      policy,
		Health:      health.PolicyFromSpec(c.Spec.Health),
		Store:       stateMemory{g: g, cluster: c.Metadata.Name},
		Prober:      g.prober(c, p),
		Concurrency: o.concurrency,
		Log:         log,
		Ignition: func(ctx context.Context, cr reconcile.Create) ([]byte, error) {
			return renderer.render(ctx, cr)
		},
	}
	if o.qps > 0 {
		e.Limiter = rate.NewLimiter(rate.Limit(o.qps), max(1, int(o.qps)))
	}
	return e
}

// nodeRenderer renders the Ignition config of each machine apply creates. It keeps one
// ignition.Renderer (Butane translated once) for as long as the bootstrap token and the control
// plane's addresses stay the same, and holds the state store only to look the token up, so that
// concurrent creates neither translate the templates again nor wait on the store's lock.
type nodeRenderer struct {
	g       *globals
	c       *v1alpha1.Cluster
	p       provisioner.Provider
	mu      sync.Mutex
	token   string
	cpAddrs map[string]netip.Addr
	r       *ignition.Renderer
}

// render renders machine cr's config with a bootstrap token that has at least half its lifetime left.
// Where the provider gives machines their addresses before they exist (provisioner.Addresser), it
// first reserves the machine's and every control-plane node's, which the config names.
func (n *nodeRenderer) render(ctx context.Context, cr reconcile.Create) ([]byte, error) {
	pl, err := placement(n.c.Spec.Provider.Name)
	if err != nil {
		return nil, err
	}
	cpAddrs, addr, err := addresses(ctx, n.p, pl, n.c, cr.Name)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st, err := n.g.openState()
	if err != nil {
		return nil, err
	}
	b, tok, err := joinToken(st, n.c, time.Now())
	st.Close()
	if err != nil {
		return nil, err
	}
	if n.r == nil || n.token != tok.ID || !maps.Equal(n.cpAddrs, cpAddrs) {
		r, err := ignition.New(ignition.Input{Cluster: n.c, Secrets: b, Token: tok, Placement: pl, ControlPlaneAddresses: cpAddrs})
		if err != nil {
			return nil, err
		}
		n.r, n.token, n.cpAddrs = r, tok.ID, cpAddrs
	}
	pool := cr.Pool
	if cr.Role == v1alpha1.RoleControlPlane {
		pool = "" // the control plane is a group, not a node pool
	}
	return n.r.Render(ignition.Node{Name: cr.Name, Role: cr.Role, Pool: pool, Address: addr})
}

// networkSpec is the network the provider makes for cluster c.
func networkSpec(c *v1alpha1.Cluster) (provisioner.NetworkSpec, error) {
	pl, err := placement(c.Spec.Provider.Name)
	if err != nil {
		return provisioner.NetworkSpec{}, err
	}
	intent, err := pl.Intent(c)
	if err != nil {
		return provisioner.NetworkSpec{}, err
	}
	n := c.Spec.Network
	return provisioner.NetworkSpec{
		Cluster:  c.Metadata.Name,
		NodeCIDR: n.NodeCIDR,
		Subnets:  n.PrivateSubnets,
		APIEndpoint: provisioner.Endpoint{
			Name: n.APIEndpoint.LoadBalancerName, Address: n.APIEndpoint.Address, Port: n.APIEndpoint.Port,
		},
		Firewall: intent,
	}, nil
}

// stateMemory keeps the executor's memory in the state store, opening the store for each load and
// save so that other kiln commands can use it between passes.
type stateMemory struct {
	g       *globals
	cluster string
}

func (s stateMemory) Load(context.Context) (converge.Memory, error) {
	st, err := s.g.openState()
	if err != nil {
		return converge.Memory{}, err
	}
	defer st.Close()
	var m converge.Memory
	if err := st.Get(convergeBucket, s.cluster, &m); err != nil && !errors.Is(err, state.ErrNotFound) {
		return converge.Memory{}, err
	}
	return m, nil
}

func (s stateMemory) Save(_ context.Context, m converge.Memory) error {
	st, err := s.g.openState()
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Put(convergeBucket, s.cluster, m)
}

// imageChecker is the capability of providers that can tell before creating anything whether an
// image can be booted (the local QEMU provider: the file exists).
type imageChecker interface {
	CheckImage(image string) error
}

// checkImages checks every image of the spec with the provider, naming the field of each bad one.
func checkImages(c *v1alpha1.Cluster, p provisioner.Provider) error {
	ic, ok := p.(imageChecker)
	if !ok {
		return nil
	}
	var errs []error
	if err := ic.CheckImage(c.Spec.ControlPlane.Image); err != nil {
		errs = append(errs, fmt.Errorf("spec.controlPlane.image: %w", err))
	}
	for i, np := range c.Spec.NodePools {
		if err := ic.CheckImage(np.Image); err != nil {
			errs = append(errs, fmt.Errorf("spec.nodePools[%d].image: %w", i, err))
		}
	}
	return errors.Join(errs...)
}
