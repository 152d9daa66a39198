// Package drain empties a Kubernetes Node before its machine goes (the provisioner) or before it
// reboots (kiln-node reboot): it cordons the Node, evicts its
// pods through the Eviction API (policy/v1), so that PodDisruptionBudgets hold, waits for them to
// terminate, and, once the machine is deleted, deletes the Node object. It never deletes a pod by
// force: an eviction that a PodDisruptionBudget refuses is tried again until the drain's timeout, and
// then the drain fails (ErrBudget) and the machine stays.
//
// Which pods to evict is a pure function, Select; Drainer is the thin layer that acts, over
// client-go's kubernetes.Interface.
package drain

import (
	"cmp"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Selection is what a drain does with the pods of a Node.
type Selection struct {
	// Evict are the pods to evict.
	Evict []corev1.Pod
	// Terminating are going already: they are waited for, not evicted again.
	Terminating []corev1.Pod
	// Skip are left alone, each with the reason.
	Skip []Skip
}

// Skip is a pod a drain leaves alone, and why.
type Skip struct {
	// Pod is namespace/name.
	Pod    string
	Reason string
}

// Skip reasons.
const (
	SkipDaemonSet = "DaemonSet pod: its controller keeps one on every node, cordoned or not"
	SkipMirror    = "mirror pod: the kubelet runs it from a file, the API cannot evict it"
	SkipFinished  = "finished: nothing runs"
)

// Select sorts the pods of a Node into those to evict, those terminating already, and those to leave:
// DaemonSet pods, mirror pods (static pods of the kubelet) and pods that have finished. Every other
// pod is evicted, whether a controller makes it again or not: the machine is going, and the pod with
// it. Each list is ordered by namespace and name.
func Select(pods []corev1.Pod) Selection {
	var s Selection
	for _, p := range pods {
		switch {
		case p.DeletionTimestamp != nil:
			s.Terminating = append(s.Terminating, p)
		case p.Annotations[corev1.MirrorPodAnnotationKey] != "":
			s.Skip = append(s.Skip, Skip{Pod: key(p), Reason: SkipMirror})
		case daemon(p):
			s.Skip = append(s.Skip, Skip{Pod: key(p), Reason: SkipDaemonSet})
		case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
			s.Skip = append(s.Skip, Skip{Pod: key(p), Reason: SkipFinished + " (" + string(p.Status.Phase) + ")"})
		default:
			s.Evict = append(s.Evict, p)
		}
	}
	byKey := func(a, b corev1.Pod) int { return cmp.Compare(key(a), key(b)) }
	slices.SortFunc(s.Evict, byKey)
	slices.SortFunc(s.Terminating, byKey)
	slices.SortFunc(s.Skip, func(a, b Skip) int { return cmp.Compare(a.Pod, b.Pod) })
	return s
}

// daemon reports whether a DaemonSet controls p.
func daemon(p corev1.Pod) bool {
	c := metav1.GetControllerOf(&p)
	return c != nil && c.Kind == "DaemonSet" && c.APIVersion == appsv1.SchemeGroupVersion.String()
}

func key(p corev1.Pod) string { return p.Namespace + "/" + p.Name }
