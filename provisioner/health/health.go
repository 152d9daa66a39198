// Package health judges whether one machine is healthy, as a pure function of the machine, what the
// probes saw, the time and the policy. It decides only; provisioner/reconcile decides what to do
// about it, and the probes themselves run elsewhere.
package health

import (
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
)

// Policy says how long a machine may take to come up and how long its probes may fail.
type Policy struct {
	// NodeStartupTimeout is how long after creation a machine may take to come up. Defaults to 10m.
	NodeStartupTimeout time.Duration
	// UnhealthyTimeout is how long a probe of a machine that has been up may fail. Defaults to 5m.
	UnhealthyTimeout time.Duration
}

// PolicyFromSpec is the policy of the cluster spec's health block; empty durations take the defaults.
func PolicyFromSpec(h v1alpha1.Health) Policy {
	return Policy{NodeStartupTimeout: h.NodeStartupTimeout.Duration, UnhealthyTimeout: h.UnhealthyTimeout.Duration}
}

func (p Policy) withDefaults() Policy {
	if p.NodeStartupTimeout <= 0 {
		p.NodeStartupTimeout = v1alpha1.DefaultNodeStartupTimeout
	}
	if p.UnhealthyTimeout <= 0 {
		p.UnhealthyTimeout = v1alpha1.DefaultUnhealthyTimeout
	}
	return p
}

// Probe is the result of one kind of probe (a TCP connect to a port).
type Probe struct {
	// OK is whether the last probe succeeded.
	OK bool
	// Off is true when this probe is not run (no prober, or a cluster whose nodes run no kubelet yet);
	// it then fails no machine, and an SSH probe that is off makes none up (Observation.IsUp).
	Off bool
	// Since is when the probe last changed between succeeding and failing; zero if not known.
	Since time.Time
}

// Condition is what the Kubernetes API says about the machine's Node Ready condition.
type Condition struct {
	// Known is false when there is no kubeconfig or no Node of that name yet; then only the probes count.
	Known bool
	// Ready is whether the condition's status is True (False and Unknown are both not ready).
	Ready bool
	// Since is the condition's last transition time.
	Since time.Time
	// RebootUntil, when set, is when the reboot slot that the node holds in its pool's lock runs out
	// (kiln-node reboot renews it before it reboots): until then a node that is down is rebooting,
	// not failed, and is not replaced.
	RebootUntil time.Time
}

// Observation is what the prober saw of one machine.
type Observation struct {
	// SSH is whether the machine's SSH server answered, proving one of its pinned host keys.
	SSH Probe
	// Kubelet is a TCP connect to the kubelet's port.
	Kubelet Probe
	// NodeReady is the Node's Ready condition.
	NodeReady Condition
	// NodeRequired is true when the machine joins a Kubernetes cluster whose Nodes kiln reads: it is
	// then up only once its Node is Ready, never on the probes alone. While the cluster's API does not
	// answer (NodeReady not Known) a machine that was up before stays judged by its probes.
	NodeRequired bool
	// Up is when the machine was first seen up (IsUp); zero if never.
	// Until then the machine is judged by NodeStartupTimeout, afterwards by UnhealthyTimeout.
	Up time.Time
}

// IsUp reports whether the observation shows the machine working right now, as the machine itself
// said it: its Node Ready, when the cluster's API knows a Node of its name; before that, its SSH probe
// passing (a prober counts SSH only when the machine's server proves one of its pinned host keys). A
// probe that is off answers nothing: a machine of which nothing was heard is never up, whatever its
// provider says of its power (a VM powered on, an instance running). Probes that run must pass, and
// a machine that must have a Node (NodeRequired) and was never up is up only with its Node Ready.
func (o Observation) IsUp() bool {
	if !o.SSH.passes() || !o.Kubelet.passes() {
		return false
	}
	if o.NodeReady.Known {
		return o.NodeReady.Ready
	}
	return !o.SSH.Off && (!o.NodeRequired || !o.Up.IsZero())
}

// Unheard reports whether nothing can answer for the machine: no Node of its name is known, kiln does
// not require one (it cannot read the cluster's Nodes), and no SSH probe runs.
func (o Observation) Unheard() bool { return !o.NodeReady.Known && !o.NodeRequired && o.SSH.Off }

// passes reports whether the probe lets the machine count as up: it succeeded, or it is off.
func (p Probe) passes() bool { return p.OK || p.Off }

// Verdict is the judgement of one machine.
type Verdict struct {
	// Healthy is false when the machine has failed and should be replaced.
	Healthy bool
	// Ready is true when the machine works right now and counts as available. A healthy machine that
	// is not ready is starting, or failing for less than the timeout.
	Ready bool
	// Reason says why, for people.
	Reason string
}

// Judge judges machine m from the observation obs at time now. A machine is unhealthy when its
// provider reports it gone, stopped or in error; when it has not come up within NodeStartupTimeout
// of its creation; or, once it has been up, when a probe has failed for longer than
// UnhealthyTimeout. A failure that began before the machine was first up counts from then. A machine
// without a creation time has no startup deadline. A running machine of which nothing can be heard
// (Observation.Unheard) is neither ready nor failed, however long it has run: kiln cannot tell.
func Judge(m provisioner.Machine, obs Observation, now time.Time, p Policy) Verdict {
	p = p.withDefaults()
	switch m.State {
	case provisioner.StateGone:
		return Verdict{Reason: "machine is gone"}
	case provisioner.StateStopped:
		return Verdict{Reason: "machine is stopped"}
	case provisioner.StateError:
		return Verdict{Reason: "provider reports the machine in error"}
	}
	up := m.State == provisioner.StateRunning && obs.IsUp()
	if !up && m.State == provisioner.StateRunning && obs.Unheard() {
		return Verdict{Healthy: true, Reason: "unheard: " + notUp(m, obs)}
	}
	if obs.Up.IsZero() {
		if up {
			return Verdict{Healthy: true, Ready: true, Reason: "up"}
		}
		if m.Created.IsZero() {
			return Verdict{Healthy: true, Reason: "starting (creation time unknown)"}
		}
		if age := now.Sub(m.Created); age > p.NodeStartupTimeout {
			return Verdict{Reason: fmt.Sprintf("not up within %s of creation (%s ago): %s", p.NodeStartupTimeout, age, notUp(m, obs))}
		}
		return Verdict{Healthy: true, Reason: "starting: " + notUp(m, obs)}
	}
	if up {
		return Verdict{Healthy: true, Ready: true, Reason: "up"}
	}
	if until := obs.NodeReady.RebootUntil; now.Before(until) {
		return Verdict{Healthy: true, Reason: fmt.Sprintf("rebooting: holds its pool's reboot lock until %s (%s): %s",
			until.UTC().Format(time.RFC3339), until.Sub(now).Round(time.Second), notUp(m, obs))}
	}
	failures := []struct {
		what    string
		failing bool
		since   time.Time
	}{
		{"ssh unanswered", !obs.SSH.passes(), obs.SSH.Since},
		{"kubelet port unreachable", !obs.Kubelet.passes(), obs.Kubelet.Since},
		{"node not ready", obs.NodeReady.Known && !obs.NodeReady.Ready, obs.NodeReady.Since},
	}
	for _, f := range failures {
		if !f.failing {
			continue
		}
		since := f.since
		if since.Before(obs.Up) {
			since = obs.Up
		}
		if d := now.Sub(since); d > p.UnhealthyTimeout {
			return Verdict{Reason: fmt.Sprintf("%s for %s, longer than %s", f.what, d, p.UnhealthyTimeout)}
		}
	}
	return Verdict{Healthy: true, Reason: "failing for less than " + p.UnhealthyTimeout.String() + ": " + notUp(m, obs)}
}

// notUp says what keeps the machine from being up.
func notUp(m provisioner.Machine, obs Observation) string {
	switch {
	case m.State != provisioner.StateRunning:
		return "machine is " + string(m.State)
	case !obs.SSH.passes():
		return "ssh unanswered (no SSH server proved its pinned host key)"
	case !obs.Kubelet.passes():
		return "kubelet port unreachable"
	case !obs.NodeReady.Known && obs.NodeRequired:
		return "no Ready Node yet (no Node of this name, or the cluster's API does not answer)"
	case obs.Unheard():
		return "no Node of its name can be read and no SSH probe runs, so nothing has answered for it"
	default:
		return "node not ready"
	}
}
