package servingcsr

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// named is csr with its name.
func named(name string, csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
	csr.Name = name
	return csr
}

// cluster holds, with names unique to the test (the log of CSRs left is per process):
// good (n1's own), stranger (an unknown node's), wrongip (n2 asking for n1's address), a client CSR
// and an already denied serving CSR.
func cluster(t *testing.T) (*fake.Clientset, map[string]string) {
	t.Helper()
	p := strings.ReplaceAll(t.Name(), "/", "-") + "-"
	names := map[string]string{"good": p + "good", "stranger": p + "stranger", "wrongip": p + "wrongip", "client": p + "client", "denied": p + "denied"}
	good := named(names["good"], servingCSR("n1", request(t, servingTemplate("n1", "10.0.0.10"), key(t, "p256"))))
	stranger := named(names["stranger"], servingCSR("stranger", request(t, servingTemplate("stranger", "10.0.0.50"), key(t, "p256"))))
	wrongIP := named(names["wrongip"], servingCSR("n2", request(t, servingTemplate("n2", "10.0.0.10"), key(t, "p256"))))
	client := named(names["client"], servingCSR("n1", request(t, servingTemplate("n1"), key(t, "p256"))))
	client.Spec.SignerName = certificatesv1.KubeAPIServerClientKubeletSignerName
	denied := named(names["denied"], servingCSR("n1", request(t, servingTemplate("n1", "10.0.0.10"), key(t, "p256"))))
	denied.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue}}
	return fake.NewClientset(good, stranger, wrongIP, client, denied), names
}

func TestApprove(t *testing.T) {
	ctx := t.Context()
	cs, names := cluster(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	r, err := Approve(ctx, cs, known, log)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{names["good"]}, r.Approved); diff != "" {
		t.Errorf("approved (-want +got):\n%s", diff)
	}
	want := []Left{
		{Name: names["stranger"], Node: "stranger", Reason: "node stranger is not a machine kiln manages"},
		{Name: names["wrongip"], Node: "n2", Reason: "IP address 10.0.0.10 is not an address of machine n2 (it has 10.0.0.11)"},
	}
	if diff := cmp.Diff(want, r.Left); diff != "" {
		t.Errorf("left (-want +got):\n%s", diff)
	}

	// One List, one approval through the subresource, nothing else.
	var verbs []string
	for _, a := range cs.Actions() {
		verbs = append(verbs, a.GetVerb()+" "+a.GetSubresource())
	}
	if diff := cmp.Diff([]string{"list ", "update approval"}, verbs); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, names["good"], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Status.Conditions); n != 1 {
		t.Fatalf("conditions %+v", got.Status.Conditions)
	}
	c := got.Status.Conditions[0]
	if c.Type != certificatesv1.CertificateApproved || c.Status != corev1.ConditionTrue || c.Reason != ApprovalReason ||
		!strings.Contains(c.Message, "kiln") || !strings.Contains(c.Message, "node n1 for n1, 10.0.0.10") || c.LastUpdateTime.IsZero() {
		t.Errorf("the approval's condition: %+v", c)
	}
	for _, n := range []string{"stranger", "wrongip", "client"} {
		csr, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, names[n], metav1.GetOptions{})
		if err != nil || len(csr.Status.Conditions) != 0 {
			t.Errorf("%s: %v, conditions %+v; want it left pending", n, err, csr.Status.Conditions)
		}
	}

	// Logged: the approval, and each CSR left, once however many passes see it.
	if _, err := Approve(ctx, cs, known, log); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, want := range []string{
		`msg="kubelet serving certificate approved" csr=` + names["good"] + ` node=n1`,
		`msg="kubelet serving certificate request left pending" csr=` + names["stranger"] + ` node=stranger reason="node stranger is not a machine kiln manages"`,
		`msg="kubelet serving certificate request left pending" csr=` + names["wrongip"] + ` node=n2`,
	} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("logged %d times, want once: %s\n%s", n, want, out)
		}
	}
	if strings.Contains(out, names["client"]) || strings.Contains(out, names["denied"]) {
		t.Errorf("logged a CSR that is not a pending kubelet-serving one:\n%s", out)
	}
}

// A failed approval does not stop the others, and is returned; a failed List is returned.
func TestApproveErrors(t *testing.T) {
	ctx := t.Context()
	t.Run("approval conflict", func(t *testing.T) {
		cs, names := cluster(t)
		n2 := named(strings.ReplaceAll(t.Name(), "/", "-")+"-n2", servingCSR("n2", request(t, servingTemplate("n2", "10.0.0.11"), key(t, "p256"))))
		if _, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, n2, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cs.PrependReactor("update", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() == "approval" && a.(k8stesting.UpdateAction).GetObject().(*certificatesv1.CertificateSigningRequest).Name == names["good"] {
				return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}, names["good"], errors.New("changed"))
			}
			return false, nil, nil
		})
		r, err := Approve(ctx, cs, known, nil)
		if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "approve "+names["good"]+" of node n1") {
			t.Errorf("Approve: %v; want the conflict of %s", err, names["good"])
		}
		if diff := cmp.Diff([]string{n2.Name}, r.Approved); diff != "" {
			t.Errorf("approved (-want +got):\n%s", diff)
		}
	})
	t.Run("list", func(t *testing.T) {
		cs, _ := cluster(t)
		cs.PrependReactor("list", "certificatesigningrequests", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}, "", errors.New("no"))
		})
		r, err := Approve(ctx, cs, known, nil)
		if !apierrors.IsForbidden(err) || len(r.Approved)+len(r.Left) != 0 {
			t.Errorf("Approve = %+v, %v; want nothing and the List's 403", r, err)
		}
	})
}

// The log of CSRs left forgets a name a day after it was last listed.
func TestOnceSetForgets(t *testing.T) {
	s := &onceSet{seen: map[string]time.Time{}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if !s.first("a", t0) || s.first("a", t0.Add(time.Hour)) {
		t.Fatal("first: want true once, then false")
	}
	s.forget(t0.Add(time.Hour + forgetAfter))
	if s.first("a", t0.Add(time.Hour+forgetAfter)) {
		t.Error("forgot a name seen forgetAfter ago")
	}
	s.forget(t0.Add(2*time.Hour + 2*forgetAfter))
	if len(s.seen) != 0 {
		t.Errorf("remembers %v after twice forgetAfter", s.seen)
	}
}
