package drain

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pod(ns, name string, change ...func(p *corev1.Pod)) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	for _, c := range change {
		c(&p)
	}
	return p
}

func ownedBy(apiVersion, kind string, controller bool) func(p *corev1.Pod) {
	return func(p *corev1.Pod) {
		p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: "owner", UID: "u", Controller: &controller})
	}
}

func phase(ph corev1.PodPhase) func(p *corev1.Pod) {
	return func(p *corev1.Pod) { p.Status.Phase = ph }
}

func mirror(p *corev1.Pod) {
	p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "hash"}
}

func terminating(p *corev1.Pod) {
	now := metav1.Now()
	p.DeletionTimestamp = &now
}

func names(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, key(p))
	}
	return out
}

func TestSelect(t *testing.T) {
	tests := []struct {
		name            string
		pods            []corev1.Pod
		wantEvict       []string
		wantTerminating []string
		wantSkip        []Skip
	}{
		{name: "no pods"},
		{
			name:      "pods of a ReplicaSet, a StatefulSet, a Job and none are evicted, in order",
			pods:      []corev1.Pod{pod("b", "web-1", ownedBy("apps/v1", "ReplicaSet", true)), pod("a", "db-0", ownedBy("apps/v1", "StatefulSet", true)), pod("a", "batch", ownedBy("batch/v1", "Job", true)), pod("a", "bare")},
			wantEvict: []string{"a/bare", "a/batch", "a/db-0", "b/web-1"},
		},
		{
			name:     "a DaemonSet pod stays",
			pods:     []corev1.Pod{pod("kube-system", "cni-x7", ownedBy("apps/v1", "DaemonSet", true))},
			wantSkip: []Skip{{Pod: "kube-system/cni-x7", Reason: SkipDaemonSet}},
		},
		{
			name:      "a pod a DaemonSet owns but does not control, or a DaemonSet of another group, is evicted",
			pods:      []corev1.Pod{pod("a", "adopted", ownedBy("apps/v1", "DaemonSet", false)), pod("a", "lookalike", ownedBy("example.com/v1", "DaemonSet", true))},
			wantEvict: []string{"a/adopted", "a/lookalike"},
		},
		{
			name:     "a mirror pod stays",
			pods:     []corev1.Pod{pod("kube-system", "kube-apiserver-cp-0", mirror, ownedBy("v1", "Node", true))},
			wantSkip: []Skip{{Pod: "kube-system/kube-apiserver-cp-0", Reason: SkipMirror}},
		},
		{
			name: "finished pods stay",
			pods: []corev1.Pod{pod("a", "done", phase(corev1.PodSucceeded)), pod("a", "crashed", phase(corev1.PodFailed))},
			wantSkip: []Skip{
				{Pod: "a/crashed", Reason: SkipFinished + " (Failed)"},
				{Pod: "a/done", Reason: SkipFinished + " (Succeeded)"},
			},
		},
		{
			name:      "pending and unknown pods are evicted",
			pods:      []corev1.Pod{pod("a", "pending", phase(corev1.PodPending)), pod("a", "unknown", phase(corev1.PodUnknown))},
			wantEvict: []string{"a/pending", "a/unknown"},
		},
		{
			name:            "terminating pods are waited for, not evicted again, a DaemonSet's too",
			pods:            []corev1.Pod{pod("a", "going", terminating), pod("a", "ds-going", terminating, ownedBy("apps/v1", "DaemonSet", true)), pod("a", "staying")},
			wantEvict:       []string{"a/staying"},
			wantTerminating: []string{"a/ds-going", "a/going"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Select(tc.pods)
			if diff := cmp.Diff(tc.wantEvict, names(got.Evict)); diff != "" {
				t.Errorf("evict (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantTerminating, names(got.Terminating)); diff != "" {
				t.Errorf("terminating (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantSkip, got.Skip); diff != "" {
				t.Errorf("skip (-want +got):\n%s", diff)
			}
		})
	}
}
