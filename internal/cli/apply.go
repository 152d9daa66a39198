package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/health"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/lease"
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
	yes         bool
	dryRun      bool
	lease       leaseOptions
}

func newApply(g *globals) *cobra.Command {
	o := applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply -f cluster.yaml",
		Short: "Create the cluster's network and machines, and replace the ones that fail",
		Long: `apply makes the cluster's machines match its spec. It ensures the cluster's private network, API
endpoint and firewall (on providers that make them), then runs passes until every machine of the
control plane and of each node pool exists, runs the pool's image and is up:

  - a missing machine is created with its Ignition config, rendered for it with a bootstrap token of
    its own, which is applied to the cluster before the machine is created (once the cluster's API
    answers; the first control plane carries its own in its first-boot manifests) and deleted from
    the cluster and the state store once the machine's Node is Ready, once the machine is gone, or
    once it expired;
  - a failed machine (gone, stopped, in error, not up within spec.health.nodeStartupTimeout, or with
    its probes failing for longer than spec.health.unhealthyTimeout) is replaced: the new machine is
    created first, the old one deleted once the new one is up;
  - a machine on an old image is replaced the same way, one at a time, never below count minus the
    pool's maxUnavailable;
  - guards hold replacements back and say why: above spec.health.maxUnhealthy unhealthy machines in a
    group nothing of it is replaced (a network partition is no reason to replace the fleet), at most
    one replacement is under way at once, and a machine is tried at most 3 times with backoff;
  - once the cluster's API answers, each pass approves the kubelets' serving certificate requests
    (signer kubernetes.io/kubelet-serving) of the machines the provider lists, and only for each
    machine's own name and private address: kube-apiserver checks a kubelet's serving certificate
    against the cluster CA, so kubectl logs and exec need it, and the controller manager approves
    none. A request for any other name or address, or from a node kiln does not manage, is left
    pending (never denied: you may approve it by hand) and its reason logged once;
  - surplus machines (a pool scaled down, removed or renamed) are deleted bounded: at most the pool's
    maxUnavailable healthy machines per pass (one per pass for a pool no longer in the spec), after
    the replacements are up, and the control plane never below etcd quorum. With --kubeconfig each
    machine's Node is drained first through the Eviction API (PodDisruptionBudgets respected, up to 2
    minutes, then the delete is held until a later pass) and its Node object deleted after it.

Before a pass acts, apply prints its plan (on stderr; with --log-format json as a "plan" event that
carries the plan document). When the plan deletes healthy machines that no replacement takes the
place of, apply asks first on a terminal; without one it refuses unless --yes (with --watch, it holds
that pass, says why, and goes on). --dry-run prints the plan, as kiln plan does, and does nothing.

` + planHelp + `

One kiln at a time changes a cluster: apply (and delete) take the cluster's lease in the state store,
renew it while they work and release it when they stop, interrupted too. A second apply refuses at
once, naming the holder's command, pid, host and since when; with --wait it waits until the lease is
released or expires (a holder that crashed blocks the cluster for at most 30 seconds), with
--wait-lease D at most D. Commands that only read (get, plan, validate, render, kubeconfig) never wait.

Without --watch, apply returns once the cluster has converged (or fails after --timeout). With
--watch it keeps converging and healing until interrupted, logging every action (as the root's
--log-format and --log-level say: kiln --log-format json apply --watch for structured events).

A machine is ready only once it answered: its Node is Ready, read with --kubeconfig, or once the
cluster's API answers kiln (at the address the provider forwards it to, else the spec's endpoint)
with a short-lived certificate of kiln's own; before the API answers, on providers whose machines
report their SSH host keys and forward their SSH to this host (qemu), once its SSH server proves the
keys it reported and kiln pinned. A VM powered on or an instance running is not ready. Only a ready
machine counts in "N of M machines ready", and only then is its provider told it joined: vSphere
removes its Ignition config from guestinfo, AWS deletes its bootstrap object from S3 and registers a
control plane with the API load balancer. When kiln can hear nothing of the machines (no SSH it can
check, and the API cannot be read: vsphere and aws with an endpoint not reachable from here), apply
says so once, naming what to configure, and waits: the machines stay unheard, neither ready nor
replaced for it, and keep their first-boot configs.

What apply remembers between passes (replacements under way, probe history) is kept in the state
store, so that an apply killed at any point continues where it stopped, without duplicate machines.`,
		Example: `  kiln apply -f cluster.yaml
  kiln apply -f cluster.yaml --dry-run
  kiln apply -f cluster.yaml --yes --wait
  kiln --log-format json apply -f cluster.yaml --watch`,
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
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "read the Nodes' Ready condition, and drain Nodes before their machines go, with this kubeconfig (default: a short-lived certificate of kiln's own, once the API answers at the spec's endpoint or the address the provider forwards)")
	f.BoolVar(&o.yes, "yes", false, "delete healthy machines that no replacement takes the place of without asking")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan, as kiln plan does, and do nothing")
	addLeaseFlags(cmd, &o.lease)
	return cmd
}

func runApply(ctx context.Context, g *globals, o applyOptions) (err error) {
	if o.dryRun {
		return runPlan(ctx, g, planOptions{specPath: o.specPath, format: formatText, kubeconfig: o.kubeconfig})
	}
	log := g.log
	c, _, err := g.loadCluster(o.specPath)
	if err != nil {
		return err
	}
	l, err := g.takeLease(ctx, c.Metadata.Name, "kiln apply", o.lease)
	if err != nil {
		return err
	}
	defer l.release()
	log.Info("lease taken", "cluster", c.Metadata.Name, "pid", l.holder.PID, "host", l.holder.Host, "ttl", l.ttl)
	ctx, stopKeeping := l.keep(ctx)
	defer stopKeeping()
	defer func() {
		// A lost lease ends apply with its cause, whatever the pass under way said.
		if cause := context.Cause(ctx); cause != nil && errors.Is(cause, lease.ErrLost) {
			err = fmt.Errorf("stopped acting on %s: %w", c.Metadata.Name, cause)
		}
	}()
	p, err := g.provider(ctx, c, o.specPath)
	if err != nil {
		return err
	}
	if err := checkImages(c, p); err != nil {
		return err
	}
	pl, err := placement(c)
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
	e, keeper := g.executor(c, p, log, o)
	if keeper.configs != nil {
		defer keeper.configs.close()
		if err := keeper.configs.resume(ctx); err != nil {
			return err
		}
	}
	e.Store = stateMemory{g: g, cluster: c.Metadata.Name, lease: l}
	e.Approve = approver{g: g, cluster: c.Metadata.Name, yes: o.yes}.approve
	// Once per pass, after it: the tokens of joined, deleted and expired machines go, and those stored
	// while the API was out of reach are applied; once the API answers, the kubelets' serving
	// certificates of the machines listed are approved. A failure is logged, and the next pass tries
	// again. The tokens' error is returned.
	afterPass := func(ctx context.Context) error {
		err, serr := keeper.afterPass(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("bootstrap tokens are not in step with the machines yet; the next pass tries again", "err", err)
		}
		if serr != nil && ctx.Err() == nil {
			log.Warn("kubelet serving certificates could not all be approved; the next pass tries again", "err", serr)
		}
		return err
	}
	// Machines are judged by their Node's Ready condition once the API answers, by their probes before;
	// then a machine's Node is drained before the machine goes, and deleted with it (kiln's own certificate).
	e.Nodes = keeper
	if err := withNodes(e, o.kubeconfig); err != nil {
		return err
	}
	desired := e.Desired
	if o.watch {
		fmt.Fprintf(g.errOut, "converging %s every %s until interrupted\n", c.Metadata.Name, o.interval)
		err := e.Run(ctx, o.interval, func(r converge.Report, err error) {
			_ = afterPass(ctx) // logged; tried again after the next pass
			switch {
			case errors.Is(err, converge.ErrNotApproved):
				log.Warn("pass held: its plan is not approved", "reason", err)
				return
			case err != nil:
				log.Error("pass failed", "err", err)
				return
			}
			log.Info("pass", "machines", len(r.Machines), "ready", countReady(r), "converged", r.Converged(desired))
		})
		if errors.Is(err, context.Canceled) { // interrupted, or the lease lost (see the deferred func)
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
		terr := afterPass(ctx)
		if err != nil && (ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded)) {
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
			if terr != nil {
				fmt.Fprintf(g.errOut, "kiln: warning: bootstrap tokens of %s could not all be cleaned up (%v); "+
					"those left expire within spec.security.bootstrapTokenTTL, and the next apply cleans them up\n", c.Metadata.Name, terr)
			}
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

// executor builds the executor of cluster c on provider p, and the keeper of its machines' bootstrap
// tokens, whose afterPass runs once per pass.
func (g *globals) executor(c *v1alpha1.Cluster, p provisioner.Provider, log *slog.Logger, o applyOptions) (*converge.Executor, *tokenKeeper) {
	policy := reconcile.PolicyFromSpec(c.Spec.Health)
	policy.KeepFailed = o.keepFailed
	// On emulated machines (QEMU under TCG) the control plane comes up alone, the workers once its
	// Node is Ready: booting them beside it starves its API server of the host's CPU.
	if s, ok := p.(provisioner.StagedBoot); ok {
		policy.ControlPlaneFirst = s.ControlPlaneFirst()
	}
	keeper := &tokenKeeper{g: g, c: c, p: p, log: log}
	renderer := &nodeRenderer{c: c, p: p, ensureToken: keeper.ensureToken, forgetPin: func(name string) error {
		return openingStore{g: g, mu: &g.state}.do(func(st *state.Store) error { return hostkeys.Forget(st, name) })
	}}
	// Where machines fetch their configs once, they are created with a stub.
	if cs, ok := provisioner.ServesConfigs(p); ok {
		keeper.configs = &configServer{g: g, c: c, p: cs, log: log}
		renderer.stub = keeper.configs.stub
	}
	e := &converge.Executor{
		Provider:    p,
		Desired:     reconcile.DesiredFromSpec(c),
		Policy:      policy,
		Health:      health.PolicyFromSpec(c.Spec.Health),
		Store:       stateMemory{g: g, cluster: c.Metadata.Name},
		Prober:      g.prober(c, p),
		Concurrency: o.concurrency,
		Log:         log,
		Ignition:    renderer.render,
		// A deleted machine's pinned host keys go with it: a new machine gets its own; and so does its
		// enrollment ticket, spent or not.
		Deleted: func(_ context.Context, name string) error {
			err := openingStore{g: g, mu: &g.state}.do(func(st *state.Store) error { return hostkeys.Forget(st, name) })
			if keeper.configs != nil {
				err = errors.Join(err, keeper.configs.revoke(name))
			}
			return err
		},
	}
	// With a kubeconfig a machine is ready once its Node is Ready, not when SSH answers. Without one,
	// kiln's own credential reads the Nodes once the API answers, and from then on a machine needs a
	// Ready Node too; before that, SSH proving the machine's pinned host keys is the fallback, where
	// kiln can check it. A machine of which nothing can be heard is never ready.
	e.RequireNodes = o.kubeconfig != ""
	e.UnheardHint = unheardHint(c, o.kubeconfig)
	if o.qps > 0 {
		e.Limiter = rate.NewLimiter(rate.Limit(o.qps), max(1, int(o.qps)))
	}
	return e, keeper
}

// nodeRenderer renders the Ignition config of each machine apply creates, with the machine's own
// bootstrap token, which ensureToken mints (and applies to the cluster when it can) before the
// machine is created. Each machine's config is rendered from a renderer of its own, as the token is
// part of it. Where the provider gives machines their addresses before they exist
// (provisioner.Addresser), it first reserves the machine's and every control-plane node's, which the
// config names.
type nodeRenderer struct {
	c           *v1alpha1.Cluster
	p           provisioner.Provider
	ensureToken func(ctx context.Context, cr reconcile.Create) (*secrets.Bundle, secrets.BootstrapToken, error)
	// forgetPin, when set, forgets the pinned host keys of a name about to get a new machine.
	forgetPin func(machine string) error
	// stub, when set, turns a machine's config into the stub it is created with (configServer.stub).
	stub func(ctx context.Context, machine string, cfg []byte, b *secrets.Bundle) ([]byte, error)
}

// render renders machine cr's config.
func (n *nodeRenderer) render(ctx context.Context, cr reconcile.Create) ([]byte, error) {
	pl, err := placement(n.c)
	if err != nil {
		return nil, err
	}
	// A new machine makes its own host keys: a pin left under its name by an earlier machine (deleted
	// by kiln delete, or by an apply that stopped before it forgot the pin) would refuse it forever.
	if n.forgetPin != nil {
		if err := n.forgetPin(cr.Name); err != nil {
			return nil, err
		}
	}
	cpAddrs, addr, err := addresses(ctx, n.p, pl, n.c, cr.Name)
	if err != nil {
		return nil, err
	}
	b, tok, err := n.ensureToken(ctx, cr)
	if err != nil {
		return nil, err
	}
	r, err := ignition.New(ignition.Input{Cluster: n.c, Secrets: b, Token: tok, Placement: pl, ControlPlaneAddresses: cpAddrs})
	if err != nil {
		return nil, err
	}
	pool := cr.Pool
	if cr.Role == v1alpha1.RoleControlPlane {
		pool = "" // the control plane is a group, not a node pool
	}
	cfg, err := r.Render(ignition.Node{Name: cr.Name, Role: cr.Role, Pool: pool, Address: addr})
	if err != nil || n.stub == nil {
		return cfg, err
	}
	return n.stub(ctx, cr.Name, cfg, b)
}

// networkSpec is the network the provider makes for cluster c.
func networkSpec(c *v1alpha1.Cluster) (provisioner.NetworkSpec, error) {
	pl, err := placement(c)
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
	// lease, when set, is renewed right before each save, with the store held open (and its file
	// locked) in between: only the cluster's lease holder writes its memory (lease.ErrLost otherwise).
	lease *clusterLease
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

func (s stateMemory) Save(ctx context.Context, m converge.Memory) error {
	st, err := s.g.openState()
	if err != nil {
		return err
	}
	defer st.Close()
	if s.lease != nil {
		if err := s.lease.renew(ctx, st); err != nil {
			return err
		}
	}
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
