package reboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/api/window"
	"github.com/kiln-dev/kiln/nodeagent/drain"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

// Lock is the pool's reboot lock: a rebootlock.Semaphore.
type Lock interface {
	Acquire(ctx context.Context, id string) (int, error)
	Renew(ctx context.Context, id string) error
	Release(ctx context.Context, id string) error
	Holders(ctx context.Context) ([]rebootlock.Holder, error)
}

// Defaults of Agent.
const (
	DefaultStateFile    = "/var/lib/kiln-node/reboot.json"
	DefaultBootIDFile   = "/proc/sys/kernel/random/boot_id"
	DefaultRequiredFile = "/run/reboot-required"
	DefaultDrainTimeout = 10 * time.Minute
	DefaultOfflineAfter = time.Hour
	DefaultRebootGrace  = 10 * time.Minute
	DefaultRenewEvery   = 20 * time.Second
	// apiTimeout bounds each look at the API before the agent counts it as away.
	apiTimeout = 20 * time.Second
)

// DefaultRebootCommand reboots the node through systemd.
var DefaultRebootCommand = []string{"systemctl", "reboot"}

// Agent is one run of the reboot coordinator on a node: Run observes, Decide chooses, Run acts.
// systemd runs it every minute (kiln-reboot.timer); what must outlive a run, and the reboot, is in
// the Record at StateFile.
type Agent struct {
	Client kubernetes.Interface
	Lock   Lock
	// Node is this node's name; PoolSelector selects the Nodes of its pool (a label selector).
	Node, PoolSelector string
	Window             window.Window
	Policy             Policy
	DrainTimeout       time.Duration
	StateFile          string
	BootIDFile         string
	// Required says whether the node needs a reboot (see RequiredFile and NeedsRestarting).
	Required      func(context.Context) (bool, error)
	RebootCommand []string
	// RenewEvery is how often the lock is renewed while the node drains (DefaultRenewEvery).
	RenewEvery time.Duration
	Now        func() time.Time
	Log        *slog.Logger
}

// RequiredFile is the Debian and Ubuntu check: path (/run/reboot-required) exists.
func RequiredFile(path string) func(context.Context) (bool, error) {
	return func(context.Context) (bool, error) {
		_, err := os.Stat(path)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, fs.ErrNotExist):
			return false, nil
		}
		return false, fmt.Errorf("reboot required? %w", err)
	}
}

// NeedsRestarting is the RHEL family's check: `needs-restarting -r` exits 1 when a reboot is needed.
func NeedsRestarting(ctx context.Context) (bool, error) {
	err := exec.CommandContext(ctx, "needs-restarting", "-r").Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return false, nil
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return true, nil
	}
	return false, fmt.Errorf("needs-restarting -r: %w", err)
}

// Run is one run: it observes the node, its pool and the lock, decides, and acts. The decision is
// returned for the caller to report; an error is a run that could not observe or act (the next run
// tries again).
func (a *Agent) Run(ctx context.Context) (Decision, error) {
	o, node, err := a.observe(ctx)
	if err != nil {
		return Decision{}, err
	}
	d := Decide(o, a.Policy)
	a.Log.Info("decided", "node", a.Node, "decision", string(d.Kind), "reason", d.Reason)
	d, err = a.act(ctx, o, node, d)
	if o.APIUp {
		if rerr := a.report(ctx, node, o, d, err); rerr != nil {
			a.Log.Warn("cannot report the reboot status on the Node", "node", a.Node, "err", rerr)
		}
	}
	return d, err
}

// Annotations the agent keeps on its Node, for `kiln get reboots` and for people.
const (
	// AnnotationRequired is "true" while the node needs a reboot.
	AnnotationRequired = "reboot.kiln.dev/required"
	// AnnotationStatus is the last run's decision and reason ("wait: reboot required; window closed, ...").
	AnnotationStatus = "reboot.kiln.dev/status"
	// AnnotationLast is when the node last finished a reboot taken by the agent (RFC 3339).
	AnnotationLast = "reboot.kiln.dev/last"
)

// report writes the run's outcome on the Node's annotations, when it changed.
func (a *Agent) report(ctx context.Context, node *corev1.Node, o Observation, d Decision, runErr error) error {
	status := string(d.Kind) + ": " + d.Reason
	if runErr != nil {
		status = "error: " + runErr.Error()
	}
	want := map[string]*string{AnnotationStatus: &status, AnnotationRequired: nil}
	if o.RebootRequired && d.Kind != Finish {
		yes := "true"
		want[AnnotationRequired] = &yes
	}
	if d.Kind == Finish && runErr == nil {
		last := o.Now.UTC().Format(time.RFC3339)
		want[AnnotationLast] = &last
	}
	changed := false
	for k, v := range want {
		have, ok := node.Annotations[k]
		if (v == nil && ok) || (v != nil && (!ok || have != *v)) {
			changed = true
		}
	}
	if !changed {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": want}})
	if err != nil {
		return err
	}
	_, err = a.Client.CoreV1().Nodes().Patch(ctx, a.Node, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// act carries out decision d.
func (a *Agent) act(ctx context.Context, o Observation, node *corev1.Node, d Decision) (Decision, error) {
	switch d.Kind {
	case Idle, Wait:
		return d, nil
	case Release:
		return d, a.Lock.Release(ctx, a.Node)
	case Acquire:
		slot, err := a.Lock.Acquire(ctx, a.Node)
		if errors.Is(err, rebootlock.ErrBusy) {
			return Decision{Wait, "reboot required; " + err.Error()}, nil
		}
		if err != nil {
			return d, err
		}
		a.Log.Info("took the reboot lock", "node", a.Node, "slot", slot)
		// The look and the take are two requests. A slot whose lease ran out between them was
		// counted as held (its node left out of the pool's health) and then taken as free: its
		// holder may be a node that never came back. Look again now that the slot is ours.
		var again Observation
		if _, err := a.lookAtCluster(ctx, &again); err != nil {
			return d, errors.Join(err, a.Lock.Release(ctx, a.Node))
		}
		if len(again.Blockers) > 0 {
			if err := a.Lock.Release(ctx, a.Node); err != nil {
				return d, err
			}
			a.Log.Info("gave the reboot lock back: the pool turned unhealthy", "node", a.Node, "blockers", again.Blockers)
			return Decision{Wait, "reboot required; pool unhealthy: " + strings.Join(again.Blockers, ", ") + " (seen after taking the lock, given back)"}, nil
		}
		return a.drainAndReboot(ctx, o, node)
	case Drain:
		return a.drainAndReboot(ctx, o, node)
	case Reboot:
		rec := o.Record
		rec.Since = o.Now
		return d, a.reboot(ctx, rec)
	case RebootOffline:
		return d, a.reboot(ctx, Record{Version: recordVersion, Phase: Rebooting, BootID: o.BootID, Since: o.Now, Offline: true,
			APIDownSince: o.Record.APIDownSince})
	case Finish, Abandon:
		if o.Record.Cordoned {
			if err := a.uncordon(ctx); err != nil {
				return d, err
			}
		}
		if err := a.Lock.Release(ctx, a.Node); err != nil {
			return d, err
		}
		if err := a.save(Record{Version: recordVersion}); err != nil {
			return d, err
		}
		a.Log.Info("done", "node", a.Node, "decision", string(d.Kind), "uncordoned", o.Record.Cordoned)
		return d, nil
	}
	return d, fmt.Errorf("reboot: no action for decision %q", d.Kind)
}

// observe reads the Record, the boot id and the reboot flag, and, when the API answers, the node,
// its pool and the lock. It keeps Record.APIDownSince up to date.
func (a *Agent) observe(ctx context.Context) (Observation, *corev1.Node, error) {
	rec, err := a.load()
	if err != nil {
		return Observation{}, nil, err
	}
	boot, err := os.ReadFile(a.BootIDFile)
	if err != nil {
		return Observation{}, nil, fmt.Errorf("reboot: boot id: %w", err)
	}
	required, err := a.Required(ctx)
	if err != nil {
		return Observation{}, nil, fmt.Errorf("reboot: %w", err)
	}
	now := a.Now()
	o := Observation{Now: now, BootID: strings.TrimSpace(string(boot)), RebootRequired: required, Record: rec}
	o.WindowOpen = a.Window.Open(now)
	o.WindowOpens = a.Window.Next(now)
	o.StaggerDue = a.Window.StaggerDue(now, window.StaggerMinute(a.Node, a.Window.Minutes()))

	node, err := a.lookAtCluster(ctx, &o)
	switch {
	case err == nil:
		o.APIUp = true
		o.Record.APIDownSince = time.Time{}
	case away(err):
		a.Log.Warn("the API does not answer", "node", a.Node, "err", err)
		if o.Record.APIDownSince.IsZero() {
			o.Record.APIDownSince = now
		}
	default:
		return Observation{}, nil, err
	}
	if o.Record.APIDownSince != rec.APIDownSince {
		if err := a.save(o.Record); err != nil {
			return Observation{}, nil, err
		}
	}
	return o, node, nil
}

// lookAtCluster fills in what the API says: the node, the lock's holders and the pool's health.
func (a *Agent) lookAtCluster(ctx context.Context, o *Observation) (*corev1.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	node, err := a.Client.CoreV1().Nodes().Get(ctx, a.Node, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reboot: get Node %s: %w", a.Node, err)
	}
	o.NodeReady, o.NodeCordoned = drain.Ready(node), node.Spec.Unschedulable
	holders, err := a.Lock.Holders(ctx)
	if err != nil {
		return nil, fmt.Errorf("reboot: the lock: %w", err)
	}
	holding := map[string]bool{}
	for _, h := range holders {
		if h.Identity != "" && !h.Expired {
			holding[h.Identity] = true
		}
	}
	o.Holding = holding[a.Node]
	pool, err := a.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: a.PoolSelector})
	if err != nil {
		return nil, fmt.Errorf("reboot: list the pool's Nodes (%s): %w", a.PoolSelector, err)
	}
	o.Blockers = Blockers(pool.Items, a.Node, holding)
	return node, nil
}

// Blockers are the Nodes of nodes, other than self, that stop self from taking the lock: not Ready,
// or cordoned without holding the lock (being drained or replaced). A holder that is rebooting is
// counted by the lock itself.
func Blockers(nodes []corev1.Node, self string, holding map[string]bool) []string {
	var out []string
	for _, n := range nodes {
		switch {
		case n.Name == self || holding[n.Name]:
		case !drain.Ready(&n):
			out = append(out, n.Name+": not Ready")
		case n.Spec.Unschedulable:
			out = append(out, n.Name+": cordoned")
		}
	}
	slices.Sort(out)
	return out
}

// drainAndReboot drains the node, renewing the lock meanwhile, and reboots. A drain that fails gives
// everything back: the node is uncordoned (when the agent cordoned it) and the lock released, and a
// later run tries again.
func (a *Agent) drainAndReboot(ctx context.Context, o Observation, node *corev1.Node) (Decision, error) {
	rec := o.Record
	if rec.Phase != Draining {
		rec = Record{Version: recordVersion, Phase: Draining, Since: o.Now, Cordoned: !node.Spec.Unschedulable}
		if err := a.save(rec); err != nil {
			return Decision{}, err
		}
	}
	renewCtx, stop := context.WithCancel(ctx)
	renewed := make(chan error, 1)
	go func() { renewed <- a.renew(renewCtx) }()
	res, drainErr := drain.Drainer{Client: a.Client, Timeout: a.DrainTimeout}.Drain(ctx, a.Node)
	stop()
	if err := <-renewed; err != nil && drainErr == nil {
		drainErr = err
	}
	if drainErr != nil {
		a.Log.Warn("drain failed; giving the lock back", "node", a.Node, "err", drainErr)
		var errs []error
		if rec.Cordoned {
			errs = append(errs, a.uncordon(ctx))
		}
		errs = append(errs, a.Lock.Release(ctx, a.Node), a.save(Record{Version: recordVersion}))
		if err := errors.Join(errs...); err != nil {
			return Decision{}, fmt.Errorf("%w (after the drain failed: %w)", err, drainErr)
		}
		return Decision{Wait, "drain failed, the lock is released and a later run tries again: " + drainErr.Error()}, nil
	}
	a.Log.Info("drained", "node", a.Node, "evicted", len(res.Evicted), "skipped", len(res.Skipped))
	// A fresh lease for the reboot: the node cannot renew while it reboots, and a node that does not
	// come back frees the lock when the lease runs out.
	if err := a.Lock.Renew(ctx, a.Node); err != nil {
		return Decision{}, fmt.Errorf("reboot: renew the lock before rebooting: %w", err)
	}
	rec.Phase, rec.BootID, rec.Since = Rebooting, o.BootID, a.Now()
	return Decision{Reboot, "drained"}, a.reboot(ctx, rec)
}

// renew renews the lock every RenewEvery until ctx is done; an error ends it (the lock was lost:
// someone else took the slot after it expired).
func (a *Agent) renew(ctx context.Context) error {
	every := a.RenewEvery
	if every <= 0 {
		every = DefaultRenewEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := a.Lock.Renew(ctx, a.Node); err != nil && ctx.Err() == nil {
				return fmt.Errorf("reboot: renew the lock while draining: %w", err)
			}
		}
	}
}

// reboot records rec (phase Rebooting) and runs the reboot command.
func (a *Agent) reboot(ctx context.Context, rec Record) error {
	if err := a.save(rec); err != nil {
		return err
	}
	a.Log.Info("rebooting", "node", a.Node, "offline", rec.Offline, "command", strings.Join(a.RebootCommand, " "))
	out, err := exec.CommandContext(ctx, a.RebootCommand[0], a.RebootCommand[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("reboot: %s: %w: %s", strings.Join(a.RebootCommand, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (a *Agent) uncordon(ctx context.Context) error {
	patch := []byte(`{"spec":{"unschedulable":null}}`)
	if _, err := a.Client.CoreV1().Nodes().Patch(ctx, a.Node, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("reboot: uncordon %s: %w", a.Node, err)
	}
	return nil
}

// load reads the Record; a missing file is the empty Record.
func (a *Agent) load() (Record, error) {
	data, err := os.ReadFile(a.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{Version: recordVersion}, nil
	}
	if err != nil {
		return Record{}, fmt.Errorf("reboot: state: %w", err)
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return Record{}, fmt.Errorf("reboot: state %s: %w (remove it to start over)", a.StateFile, err)
	}
	if rec.Version != recordVersion {
		return Record{}, fmt.Errorf("reboot: state %s: version %d, this agent reads version %d", a.StateFile, rec.Version, recordVersion)
	}
	return rec, nil
}

// save writes the Record atomically and durably: it must survive the reboot that follows.
func (a *Agent) save(rec Record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("reboot: state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(a.StateFile), 0o700); err != nil {
		return fmt.Errorf("reboot: state: %w", err)
	}
	tmp := a.StateFile + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("reboot: state: %w", err)
	}
	_, werr := f.Write(append(data, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("reboot: state %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, a.StateFile); err != nil {
		return fmt.Errorf("reboot: state: %w", err)
	}
	if d, err := os.Open(filepath.Dir(a.StateFile)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// away says whether err means the API did not answer, as opposed to answering no.
func away(err error) bool {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		code := st.Status().Code
		return code >= 500 || code == 0
	}
	// Not any net.Error: *url.Error is one, and a certificate the agent does not trust is an answer
	// to act on (an error), not an absent API.
	var (
		op  *net.OpError
		dns *net.DNSError
		ne  net.Error
	)
	return errors.As(err, &op) || errors.As(err, &dns) || (errors.As(err, &ne) && ne.Timeout()) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
