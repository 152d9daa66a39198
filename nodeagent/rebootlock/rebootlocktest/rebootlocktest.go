// Package rebootlocktest gives tests of the reboot lock a real API server (through
// controlplanetest, the one harness of tests that need one) with pools of Leases as kiln's cluster
// init makes them, and clients with the identities that hold them.
package rebootlocktest

import (
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/bootstrap/clusterapply"
	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/pki"
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

	adminConfig *rest.Config
	cp          *controlplane.ControlPlane
	ca          pki.KeyPair
}

// Start starts a control plane for t (or skips t, or fails it under CI, when its programs are
// missing) and stops it when t ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	in := controlplanetest.Input(t, spec)
	cp := controlplanetest.Start(t, in)
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return &Cluster{Admin: controlplanetest.Admin(t, cp, in.Secrets), adminConfig: cfg, cp: cp, ca: in.Secrets.ClusterCA}
}

// CreatePool applies pool's reboot lock of slots slots as kiln renders it (kubecfg.RebootLock):
// its Leases, free, and the ClusterRole and binding that let the group rebootlock.Group(pool) hold
// them. A pool of the cluster's spec exists already (its cluster init made it): applying it again
// changes nothing.
func (c *Cluster) CreatePool(t testing.TB, pool string, slots int) {
	t.Helper()
	objects, policy := kubecfg.RebootLock([]kubecfg.RebootPool{{Name: pool, Slots: slots}})
	if _, err := clusterapply.Apply(t.Context(), c.adminConfig, objects, policy); err != nil {
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
