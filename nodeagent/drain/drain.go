package drain

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Defaults of Drainer.
const (
	DefaultTimeout  = 2 * time.Minute
	DefaultInterval = 5 * time.Second
)

// Drainer drains Nodes through a cluster's API.
type Drainer struct {
	Client kubernetes.Interface
	// Timeout bounds one Drain: evictions that a PodDisruptionBudget refuses are tried again, and
	// evicted pods waited for, until it has passed. Defaults to DefaultTimeout.
	Timeout time.Duration
	// Interval between tries and checks. Defaults to DefaultInterval.
	Interval time.Duration
}

// Result is what a Drain did.
type Result struct {
	// Found is false when there is no Node of that name: there was nothing to drain.
	Found bool
	// Ready is whether the Node was Ready; only then does a drain wait for evicted pods to
	// terminate (the kubelet of a Node that is not Ready cannot end them; deleting the machine does).
	Ready bool
	// Evicted are the pods evicted, as namespace/name.
	Evicted []string
	// Skipped are the pods left alone, and why.
	Skipped []Skip
}

func (d Drainer) timeout() time.Duration {
	if d.Timeout > 0 {
		return d.Timeout
	}
	return DefaultTimeout
}

func (d Drainer) interval() time.Duration {
	if d.Interval > 0 {
		return d.Interval
	}
	return DefaultInterval
}

// Drain cordons the Node node, evicts its pods as Select says, and, when the Node is Ready, waits
// until they have terminated. A Node that does not exist is not an error (Result.Found is false).
// When a PodDisruptionBudget refuses an eviction until the timeout, Drain fails with ErrBudget and
// the budget's reason; when evicted pods outlive the timeout, with ErrPodsLeft. The Node stays
// cordoned either way.
func (d Drainer) Drain(ctx context.Context, node string) (Result, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, d.timeout(), errTimedOut)
	defer cancel()

	n, err := d.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Result{}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("drain %s: get node: %w", node, err)
	}
	r := Result{Found: true, Ready: Ready(n)}
	if !n.Spec.Unschedulable {
		patch := []byte(`{"spec":{"unschedulable":true}}`)
		if _, err := d.Client.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return r, fmt.Errorf("drain %s: cordon: %w", node, err)
		}
	}
	pods, err := d.pods(ctx, node)
	if err != nil {
		return r, fmt.Errorf("drain %s: %w", node, err)
	}
	sel := Select(pods)
	r.Skipped = sel.Skip

	errs := make([]error, len(sel.Evict))
	var wg sync.WaitGroup
	for i, p := range sel.Evict {
		wg.Go(func() { errs[i] = d.evict(ctx, p) })
	}
	wg.Wait()
	var failed []error
	for i, p := range sel.Evict {
		if errs[i] != nil {
			failed = append(failed, errs[i])
		} else {
			r.Evicted = append(r.Evicted, key(p))
		}
	}
	if len(failed) > 0 {
		return r, fmt.Errorf("drain %s: %w", node, errors.Join(failed...))
	}
	if !r.Ready {
		return r, nil
	}
	if err := d.waitGone(ctx, node, append(sel.Evict, sel.Terminating...)); err != nil {
		return r, fmt.Errorf("drain %s: %w", node, err)
	}
	return r, nil
}

// pods lists the pods bound to node.
func (d Drainer) pods(ctx context.Context, node string) ([]corev1.Pod, error) {
	list, err := d.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	return list.Items, nil
}

// evict evicts p, trying again while a PodDisruptionBudget refuses (429) until ctx is done. A pod
// that is gone, or was replaced by another of its name, is evicted already.
func (d Drainer) evict(ctx context.Context, p corev1.Pod) error {
	ev := &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}},
	}
	refused := ""
	err := wait.PollUntilContextCancel(ctx, d.interval(), true, func(ctx context.Context) (bool, error) {
		err := d.Client.CoreV1().Pods(p.Namespace).EvictV1(ctx, ev)
		switch {
		case err == nil, apierrors.IsNotFound(err), apierrors.IsConflict(err):
			return true, nil
		case apierrors.IsTooManyRequests(err):
			refused = reason(err)
			return false, nil
		}
		return false, err
	})
	switch {
	case err == nil:
		return nil
	case refused != "" && errors.Is(context.Cause(ctx), errTimedOut):
		return fmt.Errorf("pod %s: %w for %s: %s", key(p), ErrBudget, d.timeout(), refused)
	case errors.Is(context.Cause(ctx), errTimedOut):
		return fmt.Errorf("pod %s: evict: %w after %s", key(p), errTimedOut, d.timeout())
	}
	return fmt.Errorf("pod %s: evict: %w", key(p), err)
}

// waitGone waits until none of pods is bound to node any more (gone, or replaced by another of its
// name).
func (d Drainer) waitGone(ctx context.Context, node string, pods []corev1.Pod) error {
	if len(pods) == 0 {
		return nil
	}
	left := make([]string, 0, len(pods))
	for _, p := range pods {
		left = append(left, key(p))
	}
	// A failed list is tried again at the next tick: near the timeout, client-go's rate limiter
	// refuses a call that would outlast the deadline, which is no reason to give up early.
	var listErr error
	err := wait.PollUntilContextCancel(ctx, d.interval(), true, func(ctx context.Context) (bool, error) {
		now, err := d.pods(ctx, node)
		if err != nil {
			listErr = err
			return false, nil
		}
		listErr = nil
		uids := map[types.UID]bool{}
		for _, p := range now {
			uids[p.UID] = true
		}
		left = left[:0]
		for _, p := range pods {
			if uids[p.UID] {
				left = append(left, key(p))
			}
		}
		return len(left) == 0, nil
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(context.Cause(ctx), errTimedOut) && listErr != nil:
		return fmt.Errorf("%w after %s: %s (the last list of the node's pods failed: %w)", ErrPodsLeft, d.timeout(), strings.Join(left, ", "), listErr)
	case errors.Is(context.Cause(ctx), errTimedOut):
		return fmt.Errorf("%w after %s: %s", ErrPodsLeft, d.timeout(), strings.Join(left, ", "))
	case listErr != nil:
		return fmt.Errorf("wait for evicted pods: %w (the last list of the node's pods failed: %w)", err, listErr)
	}
	return fmt.Errorf("wait for evicted pods: %w", err)
}

// DeleteNode deletes the Node node, once its machine is gone. A Node that does not exist is not an
// error.
func (d Drainer) DeleteNode(ctx context.Context, node string) error {
	err := d.Client.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s: %w", node, err)
	}
	return nil
}

// Ready reports whether n's Ready condition is True.
func Ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// reason is what a refused eviction says: the message and the causes the API gives (the disruption
// budget's name and how many healthy pods it needs).
func reason(err error) string {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return err.Error()
	}
	s := st.Status()
	parts := []string{strings.TrimSuffix(s.Message, ".")}
	if s.Details != nil {
		for _, c := range s.Details.Causes {
			parts = append(parts, strings.TrimSuffix(c.Message, "."))
		}
	}
	return strings.Join(parts, ": ")
}
