// Package tokens gives every machine a bootstrap token of its own, with an owner and an end: the
// token is minted when the machine's config is rendered and kept in the state store against the
// machine's name (secrets.MachineToken), applied to the cluster as its bootstrap-token-<id> Secret
// before the machine is created (Ensure), and deleted from the cluster and the store once the
// machine's Node has joined, once the machine is gone, or once the token has expired (Sync). What a
// machine that is gone left pending (its CertificateSigningRequests, made with its token or as its
// node) goes with its token: no one is left to use what they would issue, and a replacement of the
// same name must not receive it.
//
// Decide holds the decisions, a pure function of what the store, the provider and the cluster hold
// and the time; Cluster is the thin part that reads and changes the cluster through client-go.
//
// The first control-plane node cannot wait for an API that it is the one to start: its config
// carries the tokens stored when it was rendered in its first-boot manifests (bootstrap/ignition),
// and its cluster init applies them. The tokens of machines created while the API was out of reach
// are applied by the first Sync that reaches it.
package tokens

import (
	"slices"
	"time"

	"github.com/kiln-dev/kiln/bootstrap/secrets"
)

// Reasons of a Deletion.
const (
	ReasonExpired  = "expired"
	ReasonReplaced = "its machine has a newer one"
	ReasonJoined   = "its Node joined"
	ReasonGone     = "its machine is gone"
	ReasonOrphan   = "kiln's, and not in the state store"
)

// DefaultGrace is how long a token is kept for a machine that the provider does not list (yet).
const DefaultGrace = 2 * time.Minute

// InCluster is a bootstrap token Secret as the cluster holds it.
type InCluster struct {
	ID string
	// Cluster and Machine are the Secret's kiln.dev/cluster and kiln.dev/machine labels: empty for a
	// token kiln did not apply itself (a control-plane node's first-boot manifests, kubeadm).
	Cluster, Machine string
}

// Node is what Decide needs of a Kubernetes Node.
type Node struct {
	Ready bool
	// Created is the Node's creation time: a Node older than a token was not registered with it.
	Created time.Time
}

// Observed is what Decide decides from.
type Observed struct {
	// Cluster is the cluster's name.
	Cluster string
	// Stored are the tokens in the state store.
	Stored []secrets.BootstrapToken
	// Machines are the names of the cluster's machines that the provider lists.
	Machines []string
	// Reachable: the cluster's API answered, and InCluster and Nodes say what it holds. Without it
	// only expired tokens are forgotten, and nothing else is decided.
	Reachable bool
	// InCluster are the cluster's bootstrap token Secrets.
	InCluster []InCluster
	// Nodes are the cluster's Nodes, by name.
	Nodes map[string]Node
	// PendingCSRs are the cluster's pending CertificateSigningRequests.
	PendingCSRs []CSR
}

// CSR is a pending CertificateSigningRequest (no Approved, Denied or Failed condition, no
// certificate) as the cluster holds it.
type CSR struct {
	Name string
	// Username is who made it, as the API server authenticated them (spec.username).
	Username string
}

// BootstrapUser is the user a bootstrap token authenticates as; NodeUser the user of a node's
// client certificate.
func BootstrapUser(id string) string { return "system:bootstrap:" + id }

// NodeUser is the user of node's client certificate.
func NodeUser(node string) string { return "system:node:" + node }

// CSRDeletion is a pending CSR to delete, and why.
type CSRDeletion struct {
	Name, Username, Machine, Reason string
}

// Policy tunes Decide.
type Policy struct {
	// Grace is how long after it was issued a token is kept for a machine that the provider does not
	// list: the machine may be being created, or the provider's list may lag behind its creates.
	// DefaultGrace if zero.
	Grace time.Duration
}

// Deletion is a token to delete, and why.
type Deletion struct {
	ID      string
	Machine string
	Reason  string
}

// Plan is what Decide decided.
type Plan struct {
	// Apply are machines' tokens that the cluster lacks.
	Apply []secrets.BootstrapToken
	// Delete are tokens to delete from the cluster.
	Delete []Deletion
	// Forget are tokens to remove from the state store: each once its Secret, if the cluster has one,
	// is deleted (a token in Delete is forgotten only once that delete succeeded).
	Forget []Deletion
	// DeleteCSRs are pending CSRs of machines that are gone, made with their tokens or as their nodes.
	DeleteCSRs []CSRDeletion
}

// Empty reports whether the plan does nothing.
func (p Plan) Empty() bool {
	return len(p.Apply)+len(p.Delete)+len(p.Forget)+len(p.DeleteCSRs) == 0
}

// Decide decides, at now, which tokens to apply to the cluster, which to delete from it and which to
// forget:
//
//   - an expired token is forgotten and deleted;
//   - a machine's token is forgotten and deleted once the machine has a newer one (a render late in
//     the old one's life mints a new one);
//   - a machine's token is forgotten and deleted once a Ready Node of the machine's name, registered
//     after the token was issued, exists, or once the provider no longer lists the machine (and the
//     token is older than the grace period);
//   - a machine's token that is still needed and that the cluster lacks is applied;
//   - a Secret that kiln applied for this cluster (by its labels) and that the store no longer holds
//     is deleted;
//   - a pending CSR made with the token of a machine that is gone, or as that machine's node, is
//     deleted.
//
// Shared tokens (those of no machine) are left until they expire: who holds them is not known. When
// the cluster is not reachable only expired tokens are forgotten: a token whose machine is gone stays
// in the store until its Secret can be deleted too.
func Decide(o Observed, now time.Time, p Policy) Plan {
	grace := p.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	inCluster := map[string]bool{}
	for _, s := range o.InCluster {
		inCluster[s.ID] = true
	}
	var plan Plan
	drop := func(t secrets.BootstrapToken, reason string) {
		d := Deletion{ID: t.ID, Machine: t.Machine, Reason: reason}
		if inCluster[t.ID] {
			plan.Delete = append(plan.Delete, d)
		}
		plan.Forget = append(plan.Forget, d)
	}
	latest := map[string]secrets.BootstrapToken{}
	for _, t := range o.Stored {
		if l, ok := latest[t.Machine]; t.Machine != "" && (!ok || t.Expires.After(l.Expires)) {
			latest[t.Machine] = t
		}
	}
	stored := map[string]bool{}
	goneUsers := map[string]string{}
	for _, t := range o.Stored {
		stored[t.ID] = true
		switch {
		case t.Expired(now):
			drop(t, ReasonExpired)
		case !o.Reachable || t.Machine == "":
		case latest[t.Machine].ID != t.ID:
			drop(t, ReasonReplaced)
		case joined(o.Nodes, t):
			drop(t, ReasonJoined)
		case !slices.Contains(o.Machines, t.Machine) && (t.Issued.IsZero() || now.Sub(t.Issued) >= grace):
			drop(t, ReasonGone)
			goneUsers[BootstrapUser(t.ID)] = t.Machine
			goneUsers[NodeUser(t.Machine)] = t.Machine
		case !inCluster[t.ID]:
			plan.Apply = append(plan.Apply, t)
		}
	}
	if o.Reachable {
		for _, s := range o.InCluster {
			if s.Cluster == o.Cluster && s.Cluster != "" && !stored[s.ID] {
				plan.Delete = append(plan.Delete, Deletion{ID: s.ID, Machine: s.Machine, Reason: ReasonOrphan})
			}
		}
		for _, r := range o.PendingCSRs {
			if m, ok := goneUsers[r.Username]; ok {
				plan.DeleteCSRs = append(plan.DeleteCSRs, CSRDeletion{Name: r.Name, Username: r.Username, Machine: m, Reason: ReasonGone})
			}
		}
	}
	return plan
}

// joined reports whether t's machine has a Ready Node registered after t was issued (to the second,
// the precision of a creation timestamp).
func joined(nodes map[string]Node, t secrets.BootstrapToken) bool {
	n, ok := nodes[t.Machine]
	return ok && n.Ready && !n.Created.Before(t.Issued.Truncate(time.Second))
}
