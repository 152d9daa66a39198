// Package rebootlocktest gives tests of the reboot lock a real API server (through
// controlplanetest, the one harness of tests that need one) with pools of Leases as kiln's cluster
// init makes them, and clients with the identities that hold them.
package rebootlocktest

import (
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

// spec is the smallest cluster whose control plane runs on loopback.
const spec = `apiVersion: kiln.dev/v1alpha1
kind: Cluster
metadata:
  name: rlt
spec:
  provider:
    name: qemu
  controlPlane:
    image: kiln-debian-12.qcow2
  nodePools:
    - name: workers
      count: 1
      image: kiln-debian-12.qcow2
  ssh:
    generate: true
`

// Cluster is a running control plane.
type Cluster struct {
	// Admin is a client in system:masters.
	Admin kubernetes.Interface

	cp *controlplane.ControlPlane
	ca pki.KeyPair
}

// Start starts a control plane for t (or skips t, or fails it under CI, when its programs are
// missing) and stops it when t ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	in := controlplanetest.Input(t, spec)
	cp := controlplanetest.Start(t, in)
	return &Cluster{Admin: controlplanetest.Admin(t, cp, in.Secrets), cp: cp, ca: in.Secrets.ClusterCA}
}

// CreatePool creates pool's slots Leases, free, as kiln's cluster init does, and lets the group
// rebootlock.Group(pool) hold them: a Role with rebootlock.Rule, bound to the group.
func (c *Cluster) CreatePool(t testing.TB, pool string, slots int) {
	t.Helper()
	ctx := t.Context()
	for _, l := range rebootlock.Leases(pool, slots) {
		if _, err := c.Admin.CoordinationV1().Leases(l.Namespace).Create(ctx, &l, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	name := rebootlock.Group(pool)
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: rebootlock.Namespace}, Rules: []rbacv1.PolicyRule{rebootlock.Rule(pool, slots)}}
	if _, err := c.Admin.RbacV1().Roles(rebootlock.Namespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: rebootlock.Namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: name}},
	}
	if _, err := c.Admin.RbacV1().RoleBindings(rebootlock.Namespace).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// ClientAs is a new client of the API as user in groups, with a client certificate of its own
// from the cluster CA.
func (c *Cluster) ClientAs(t testing.TB, user string, groups ...string) kubernetes.Interface {
	t.Helper()
	kp, err := c.ca.Issue(rand.Reader, pki.CertRequest{
		CommonName:   user,
		Organization: groups,
		Usages:       []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		Validity:     time.Hour,
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := controlplanetest.Config(c.cp, c.ca.CertPEM)
	cfg.CertData, cfg.KeyData = kp.CertPEM, kp.KeyPEM
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
