package providertest

import (
	"context"
	"sync/atomic"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/health"
)

// Nodes stands for a cluster's Kubernetes API as the converge executor reads it (its NodeLister):
// every machine that Provider lists as running in Cluster has a Ready Node, its kubelet having
// registered it at first boot, unless Slow says that the first boots have not got that far. It is
// for tests of providers driven by the executor, whose machines boot nothing: give it a provider of
// its own (its own session) where a test counts the provider's calls.
type Nodes struct {
	Provider provisioner.Provider
	Cluster  string
	// Slow, while true, keeps every Node from being registered: the machines run, and nothing of
	// them answers.
	Slow atomic.Bool
}

// NodeReady lists the machines and returns the Ready Node of each running one, by name.
func (n *Nodes) NodeReady(ctx context.Context) (map[string]health.Condition, error) {
	ms, err := n.Provider.List(ctx, n.Cluster)
	if err != nil {
		return nil, err
	}
	out := map[string]health.Condition{}
	for _, m := range ms {
		if m.State == provisioner.StateRunning && !n.Slow.Load() {
			out[m.Name] = health.Condition{Known: true, Ready: true}
		}
	}
	return out, nil
}
