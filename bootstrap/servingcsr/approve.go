package servingcsr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ApprovalReason is the reason of the Approved condition kiln sets.
const ApprovalReason = "KilnApprove"

// Result is what one Approve saw and did.
type Result struct {
	// Approved are the names of the CSRs approved, in the order listed.
	Approved []string
	// Left are the pending kubelet-serving CSRs left pending, and why.
	Left []Left
}

// Left is a CSR left pending.
type Left struct {
	// Name is the CSR's name.
	Name string
	// Node is the node it comes from, empty if from none.
	Node   string
	Reason string
}

// Approve lists the cluster's CSRs (one List call), decides each pending kubelet-serving one against
// known (Decide), and approves those Decide approves through the approval subresource, with an
// Approved condition of reason ApprovalReason. It logs each approval, and each CSR left pending once
// per CSR name in this process, so that a pass every few seconds does not repeat itself. A failed
// approval does not stop the others: their errors are joined and returned with what was done.
func Approve(ctx context.Context, client kubernetes.Interface, known map[string][]netip.Addr, log *slog.Logger) (Result, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	list, err := client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return Result{}, fmt.Errorf("servingcsr: list certificate signing requests: %w", err)
	}
	var (
		r    Result
		errs []error
		now  = time.Now()
	)
	for i := range list.Items {
		csr := &list.Items[i]
		if csr.Spec.SignerName != certificatesv1.KubeletServingSignerName {
			continue
		}
		if _, done := decided(csr); done {
			continue
		}
		v := Decide(csr, known)
		if !v.Approve {
			r.Left = append(r.Left, Left{Name: csr.Name, Node: v.Node, Reason: v.Reason})
			if leftLogged.first(csr.Name, now) {
				log.Info("kubelet serving certificate request left pending", "csr", csr.Name, "node", v.Node, "reason", v.Reason)
			}
			continue
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type:           certificatesv1.CertificateApproved,
			Status:         corev1.ConditionTrue,
			Reason:         ApprovalReason,
			Message:        "approved by kiln: the " + v.Reason + ", one of kiln's machines",
			LastUpdateTime: metav1.NewTime(now),
		})
		if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("servingcsr: approve %s of node %s: %w", csr.Name, v.Node, err))
			continue
		}
		r.Approved = append(r.Approved, csr.Name)
		log.Info("kubelet serving certificate approved", "csr", csr.Name, "node", v.Node, "reason", v.Reason)
	}
	leftLogged.forget(now)
	return r, errors.Join(errs...)
}

// leftLogged are the CSRs whose being left pending this process has logged.
var leftLogged = &onceSet{seen: map[string]time.Time{}}

// forgetAfter is how long a name is remembered after it was last listed: longer than
// kube-controller-manager keeps a pending CSR (24 hours), so that no name still listed is forgotten,
// and the set does not grow with the life of a process.
const forgetAfter = 25 * time.Hour

// onceSet remembers names, each with when it was last seen.
type onceSet struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// first records that name was seen at now, and reports whether it had not been seen before.
func (s *onceSet) first(name string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.seen[name]
	s.seen[name] = now
	return !ok
}

// forget drops the names last seen more than forgetAfter before now.
func (s *onceSet) forget(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, at := range s.seen {
		if now.Sub(at) > forgetAfter {
			delete(s.seen, name)
		}
	}
}
