package reboot

import (
	"fmt"
	"strings"
	"time"
)

// Phase is where a reboot taken by the agent stands, kept in the Record across runs and across the
// reboot itself.
type Phase string

// Phases of a Record. The empty phase is no reboot under way.
const (
	// Draining: the agent holds the lock and has started to cordon and drain the node.
	Draining Phase = "draining"
	// Rebooting: the node is drained and the reboot command ran in the boot Record.BootID.
	Rebooting Phase = "rebooting"
)

// Record is what the agent keeps on the node's disk between runs (see Agent.StateFile).
type Record struct {
	Version int   `json:"version"`
	Phase   Phase `json:"phase,omitempty"`
	// BootID is the boot the reboot was started in: another boot id means the node has rebooted.
	BootID string    `json:"bootID,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	// Cordoned says that the agent cordoned the node (it was schedulable), so the agent uncordons it
	// when it is done; a node that someone else cordoned stays cordoned.
	Cordoned bool `json:"cordoned,omitempty"`
	// Offline says the reboot was taken without the lock, the API being unreachable.
	Offline bool `json:"offline,omitempty"`
	// APIDownSince is when the API was first found unreachable, zero while it answers.
	APIDownSince time.Time `json:"apiDownSince,omitzero"`
}

// recordVersion is the version of Record the agent writes.
const recordVersion = 1

// Observation is what one run of the agent sees.
type Observation struct {
	Now    time.Time
	BootID string
	// RebootRequired: /run/reboot-required exists (Debian, Ubuntu), or needs-restarting -r says so.
	RebootRequired bool
	Record         Record
	// APIUp is false when the cluster's API did not answer; the fields below are then unknown.
	APIUp bool
	// Holding says the node holds a slot of its pool's lock.
	Holding bool
	// NodeReady and NodeCordoned are the node's own state.
	NodeReady, NodeCordoned bool
	// Blockers are the other nodes of the pool that are not Ready or are cordoned while they do not
	// hold the lock (being drained or replaced), each as "name: why".
	Blockers []string
	// WindowOpen says the maintenance window is open; WindowOpens is when it next opens.
	WindowOpen  bool
	WindowOpens time.Time
	// StaggerDue says this is the node's own minute of the window (see window.StaggerMinute).
	StaggerDue bool
}

// Policy is what the decisions depend on besides the observation.
type Policy struct {
	// OfflineAfter is how long the API must have been unreachable before the agent reboots without
	// the lock, at its own staggered minute of the window.
	OfflineAfter time.Duration
	// RebootGrace is how long after the reboot command the agent waits, in the same boot, before it
	// runs the command again.
	RebootGrace time.Duration
}

// Kind is what the agent does in a run.
type Kind string

// Kinds of Decision.
const (
	// Idle: no reboot needed and nothing held.
	Idle Kind = "idle"
	// Wait: a reboot is needed or under way, and the agent waits; Reason says for what.
	Wait Kind = "wait"
	// Release: the node holds a slot it does not need (no reboot required): give it back.
	Release Kind = "release"
	// Acquire the lock, then drain and reboot.
	Acquire Kind = "acquire"
	// Drain and reboot, the lock being held already (a run that stopped half-way).
	Drain Kind = "drain"
	// Reboot again: the reboot command ran in this boot, RebootGrace ago, and the node is still up.
	Reboot Kind = "reboot"
	// Finish: the node rebooted and is Ready: uncordon it if the agent cordoned it, release the lock,
	// forget the record.
	Finish Kind = "finish"
	// Abandon: a drain stopped half-way and the lock is no longer held: uncordon if the agent
	// cordoned, forget the record, start over.
	Abandon Kind = "abandon"
	// RebootOffline: the API has been away for OfflineAfter and this is the node's minute of the
	// window: reboot without draining.
	RebootOffline Kind = "reboot-offline"
)

// Decision is what Decide chose, and why.
type Decision struct {
	Kind   Kind
	Reason string
}

// Decide chooses what one run of the agent does. It is a pure function of what the run observed.
func Decide(o Observation, p Policy) Decision {
	rec := o.Record
	switch rec.Phase {
	case Rebooting:
		if rec.BootID == o.BootID {
			if o.Now.Sub(rec.Since) >= p.RebootGrace {
				return Decision{Reboot, fmt.Sprintf("the reboot started %s ago and the node is still in the same boot", since(o.Now, rec.Since))}
			}
			return Decision{Wait, "reboot under way"}
		}
		switch {
		case !o.APIUp:
			return Decision{Wait, "rebooted; the API does not answer yet"}
		case !o.NodeReady:
			return Decision{Wait, "rebooted; waiting for the Node to be Ready"}
		}
		return Decision{Finish, "rebooted and the Node is Ready"}
	case Draining:
		switch {
		case !o.APIUp:
			return Decision{Wait, "drain interrupted; the API does not answer"}
		case !o.Holding:
			return Decision{Abandon, "drain interrupted and the lock is no longer held"}
		case !o.RebootRequired:
			return Decision{Abandon, "drain interrupted and no reboot is required any more"}
		}
		return Decision{Drain, "drain interrupted; the lock is still held"}
	}

	if !o.RebootRequired {
		if o.APIUp && o.Holding {
			return Decision{Release, "no reboot required, but the node holds a slot of the lock"}
		}
		return Decision{Idle, "no reboot required"}
	}
	if !o.APIUp {
		down := o.Now.Sub(rec.APIDownSince)
		switch {
		case rec.APIDownSince.IsZero() || down < p.OfflineAfter:
			return Decision{Wait, fmt.Sprintf("reboot required; the API does not answer (for %s; the node reboots on its own after %s, at its minute of the window)",
				since(o.Now, rec.APIDownSince), p.OfflineAfter)}
		case !o.WindowOpen:
			return Decision{Wait, "reboot required; the API has been away for " + since(o.Now, rec.APIDownSince) + "; window closed, opens " + o.WindowOpens.UTC().Format(time.RFC3339)}
		case !o.StaggerDue:
			return Decision{Wait, "reboot required; the API has been away for " + since(o.Now, rec.APIDownSince) + "; waiting for the node's own minute of the window"}
		}
		return Decision{RebootOffline, "the API has been away for " + since(o.Now, rec.APIDownSince) + " and this is the node's minute of the window"}
	}
	if o.Holding {
		return Decision{Drain, "reboot required and the lock is held already"}
	}
	switch {
	case !o.WindowOpen:
		return Decision{Wait, "reboot required; window closed, opens " + o.WindowOpens.UTC().Format(time.RFC3339)}
	case !o.NodeReady:
		return Decision{Wait, "reboot required; this Node is not Ready (the healer, not a reboot, deals with it)"}
	case len(o.Blockers) > 0:
		return Decision{Wait, "reboot required; pool unhealthy: " + strings.Join(o.Blockers, ", ")}
	}
	return Decision{Acquire, "reboot required, window open, pool healthy"}
}

// since is how long ago t was, rounded to the second, or "an unknown time" for the zero time.
func since(now, t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return now.Sub(t).Round(time.Second).String()
}
