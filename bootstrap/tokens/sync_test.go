package tokens

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/state/statetest"
)

// The effects against a real kube-apiserver are tested in realapi_test.go; these use client-go's fake
// clientset to check the order of Sync's effects and what it does when one fails.

func testCluster(t *testing.T) (*v1alpha1.Cluster, *statetest.Memory) {
	t.Helper()
	c := v1alpha1.Starter("demo")
	c.Spec.Security.BootstrapTokenTTL = v1alpha1.Duration{Duration: time.Hour}
	b, err := secrets.Generate(c, rand.Reader, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return c, statetest.NewFixed(t, statetest.Values{secrets.Bucket: {"demo": b}})
}

func storedIDs(t *testing.T, s *statetest.Memory) []string {
	t.Helper()
	b, err := secrets.Load(s, "demo")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tok := range b.BootstrapTokens {
		ids = append(ids, tok.ID)
	}
	slices.Sort(ids)
	return ids
}

func clusterIDs(t *testing.T, k *Cluster) []string {
	t.Helper()
	in, err := k.Tokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range in {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	return ids
}

func readyNode(name string, created time.Time) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
}

func TestEnsureAndSync(t *testing.T) {
	ctx := t.Context()
	c, s := testCluster(t)
	client := fake.NewClientset()
	k := &Cluster{Name: "demo", Client: client}

	// Out of reach: stored only.
	_, early, err := Ensure(ctx, StateStore{State: s}, nil, c, "demo-control-plane-0", "control-plane", t0)
	if err != nil {
		t.Fatal(err)
	}
	// Reachable: stored and applied before the machine is created.
	b, w0, err := Ensure(ctx, StateStore{State: s}, k, c, "demo-workers-0", "workers", t0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(b.BootstrapTokens, w0) || !slices.Contains(b.BootstrapTokens, early) {
		t.Error("the bundle Ensure returns lacks the tokens")
	}
	if diff := cmp.Diff([]string{w0.ID}, clusterIDs(t, k)); diff != "" {
		t.Errorf("cluster tokens after Ensure (-want +got):\n%s", diff)
	}
	sec, err := client.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+w0.ID, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(sec.Data["auth-extra-groups"]); got != "system:bootstrappers:kiln:default-node-token,system:bootstrappers:kiln:workers" {
		t.Errorf("auth-extra-groups = %q", got)
	}
	if sec.Labels[LabelMachine] != "demo-workers-0" || sec.Labels[LabelCluster] != "demo" || string(sec.Data["token-secret"]) != w0.Secret {
		t.Errorf("the Secret is not w0's: labels %v", sec.Labels)
	}
	if _, ok := sec.Data["usage-bootstrap-signing"]; ok {
		t.Error("a machine's token may sign")
	}
	// An orphan of kiln's, and someone else's token.
	orphan, err := Secret("demo", token("oooooo", "demo-workers-7", t0))
	if err != nil {
		t.Fatal(err)
	}
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-kkkkkk", Namespace: "kube-system"}, Type: corev1.SecretTypeBootstrapToken,
		Data: map[string][]byte{"token-id": []byte("kkkkkk")}}
	for _, o := range []*corev1.Secret{orphan, theirs} {
		if _, err := client.CoreV1().Secrets("kube-system").Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The API is up: the early token is applied, the orphan deleted.
	machines := []string{"demo-control-plane-0", "demo-workers-0"}
	plan, err := Sync(ctx, StateStore{State: s}, k, c, machines, t0.Add(time.Minute), Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Apply) != 1 || plan.Apply[0].ID != early.ID || len(plan.Delete) != 1 || plan.Delete[0].ID != "oooooo" {
		t.Errorf("plan %+v", plan)
	}
	if diff := cmp.Diff(sorted(early.ID, w0.ID, "kkkkkk"), clusterIDs(t, k)); diff != "" {
		t.Errorf("cluster tokens after the first Sync (-want +got):\n%s", diff)
	}

	// w0's Node joins, but deleting its token fails: it stays in the store, for the next Sync.
	if _, err := client.CoreV1().Nodes().Create(ctx, readyNode("demo-workers-0", t0.Add(5*time.Minute)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	errDenied := errors.New("denied")
	client.PrependReactor("delete", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errDenied
	})
	if _, err := Sync(ctx, StateStore{State: s}, k, c, machines, t0.Add(6*time.Minute), Policy{}); !errors.Is(err, errDenied) || !strings.Contains(err.Error(), "delete bootstrap token "+w0.ID) {
		t.Errorf("Sync with a failing delete = %v", err)
	}
	if diff := cmp.Diff(sorted(early.ID, w0.ID), storedIDs(t, s)); diff != "" {
		t.Errorf("stored tokens after a failed delete (-want +got):\n%s", diff)
	}
	client.ReactionChain = client.ReactionChain[1:]
	if _, err := Sync(ctx, StateStore{State: s}, k, c, machines, t0.Add(7*time.Minute), Policy{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sorted(early.ID), storedIDs(t, s)); diff != "" {
		t.Errorf("stored tokens after w0 joined (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sorted(early.ID, "kkkkkk"), clusterIDs(t, k)); diff != "" {
		t.Errorf("cluster tokens after w0 joined (-want +got):\n%s", diff)
	}

	// The control plane is deleted: its token goes too; someone else's stays.
	if _, err := Sync(ctx, StateStore{State: s}, k, c, nil, t0.Add(8*time.Minute), Policy{}); err != nil {
		t.Fatal(err)
	}
	if ids := storedIDs(t, s); len(ids) != 0 {
		t.Errorf("stored tokens after every machine is gone: %v", ids)
	}
	if diff := cmp.Diff([]string{"kkkkkk"}, clusterIDs(t, k)); diff != "" {
		t.Errorf("cluster tokens after every machine is gone (-want +got):\n%s", diff)
	}
}

func sorted(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

func TestSyncErrors(t *testing.T) {
	c, _ := testCluster(t)
	if _, err := Sync(t.Context(), StateStore{State: statetest.NewEmpty()}, nil, c, nil, t0, Policy{}); err == nil || !strings.Contains(err.Error(), "secrets: load demo") {
		t.Errorf("Sync without secrets = %v", err)
	}
	_, s := testCluster(t)
	client := fake.NewClientset()
	client.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("forbidden")
	})
	k := &Cluster{Name: "demo", Client: client}
	if _, err := Sync(t.Context(), StateStore{State: s}, k, c, nil, t0, Policy{}); err == nil || !strings.Contains(err.Error(), "tokens: list bootstrap tokens of demo: forbidden") {
		t.Errorf("Sync with a failing list = %v", err)
	}
	client.PrependReactor("patch", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("quota")
	})
	_, tok, err := Ensure(context.Background(), StateStore{State: s}, k, c, "demo-workers-0", "workers", t0)
	if err == nil || !strings.Contains(err.Error(), "quota") || tok.ID != "" {
		t.Errorf("Ensure with a failing apply = %v, %v; want the error and no token", tok.ID, err)
	}
	if _, err := Secret("demo", secrets.BootstrapToken{ID: "x"}); err == nil {
		t.Error("Secret of a malformed token succeeded")
	}
}
