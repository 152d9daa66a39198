package converge

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/nodeagent/drain"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
	"github.com/kiln-dev/kiln/provisioner/health"
)

// KubeNodes is the executor's way to the cluster's Kubernetes API: it reads the Ready condition of
// every Node in one list call, and drains a machine's Node before the machine goes (drain.Drainer).
type KubeNodes struct {
	Client kubernetes.Interface
	// DrainTimeout bounds the drain of one Node. Defaults to drain.DefaultTimeout.
	DrainTimeout time.Duration
}

var _ interface {
	NodeLister
	Drainer
} = KubeNodes{}

// Drain cordons and drains the Node node (see drain.Drainer.Drain).
func (k KubeNodes) Drain(ctx context.Context, node string) (drain.Result, error) {
	return drain.Drainer{Client: k.Client, Timeout: k.DrainTimeout}.Drain(ctx, node)
}

// DeleteNode deletes the Node node (see drain.Drainer.DeleteNode).
func (k KubeNodes) DeleteNode(ctx context.Context, node string) error {
	return drain.Drainer{Client: k.Client}.DeleteNode(ctx, node)
}

// NodeReady returns the Ready condition of each Node, by name. A Node without the condition is
// reported as known and not ready.
func (k KubeNodes) NodeReady(ctx context.Context) (map[string]health.Condition, error) {
	list, err := k.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out := make(map[string]health.Condition, len(list.Items))
	for _, n := range list.Items {
		c := health.Condition{Known: true}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				c.Ready = cond.Status == corev1.ConditionTrue
				c.Since = cond.LastTransitionTime.Time
			}
		}
		out[n.Name] = c
	}
	// The nodes that hold a slot of their pool's reboot lock are rebooting until it runs out.
	leases, err := k.Client.CoordinationV1().Leases(rebootlock.Namespace).List(ctx, metav1.ListOptions{LabelSelector: rebootlock.PoolLabel})
	if err != nil {
		return nil, fmt.Errorf("list the reboot locks: %w", err)
	}
	now := time.Now()
	for i, l := range leases.Items {
		h := rebootlock.HolderOf(i, &l, now, 0)
		if c, ok := out[h.Identity]; ok && !h.Expired {
			c.RebootUntil = h.Expires
			out[h.Identity] = c
		}
	}
	return out, nil
}
