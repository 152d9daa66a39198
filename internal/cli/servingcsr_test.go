package cli

import (
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/kiln-dev/kiln/bootstrap/access"
	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/bootstrap/servingcsr"
	"github.com/kiln-dev/kiln/provisioner"
)

func TestKnownMachines(t *testing.T) {
	tests := []struct {
		name string
		ms   []provisioner.Machine
		want map[string][]netip.Addr
	}{
		{name: "none", want: map[string][]netip.Addr{}},
		{
			name: "each machine with its private address",
			ms: []provisioner.Machine{
				{Name: "a", State: provisioner.StateRunning, Address: "10.0.0.10"},
				{Name: "b", State: provisioner.StateStopped, Address: "fd00::b"},
			},
			want: map[string][]netip.Addr{"a": {netip.MustParseAddr("10.0.0.10")}, "b": {netip.MustParseAddr("fd00::b")}},
		},
		{
			name: "a machine without an address yet is known by its name alone",
			ms:   []provisioner.Machine{{Name: "a", State: provisioner.StatePending}},
			want: map[string][]netip.Addr{"a": nil},
		},
		{
			name: "an address that does not parse is none",
			ms:   []provisioner.Machine{{Name: "a", State: provisioner.StateRunning, Address: "10.0.0.10:22"}},
			want: map[string][]netip.Addr{"a": nil},
		},
		{
			name: "an IPv4-mapped address is its IPv4 address",
			ms:   []provisioner.Machine{{Name: "a", State: provisioner.StateRunning, Address: "::ffff:10.0.0.10"}},
			want: map[string][]netip.Addr{"a": {netip.MustParseAddr("10.0.0.10")}},
		},
		{
			name: "a gone machine is not known",
			ms: []provisioner.Machine{
				{Name: "a", State: provisioner.StateGone, Address: "10.0.0.10"},
				{Name: "b", State: provisioner.StateError, Address: "10.0.0.11"},
			},
			want: map[string][]netip.Addr{"b": {netip.MustParseAddr("10.0.0.11")}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := knownMachines(tc.ms)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("knownMachines (-want +got):\n%s", diff)
			}
		})
	}
}

// servingCSRAs makes a kubelet serving CSR as node's kubelet does (with a client certificate of the
// node's from the cluster CA in b, so that the API server takes it as system:node:<node>), for
// node's name and ips, and returns its name.
func servingCSRAs(t *testing.T, cp *controlplane.ControlPlane, b *secrets.Bundle, node string, ips ...string) string {
	t.Helper()
	kp, err := access.ClientCertificate(&b.ClusterCA, rand.Reader, time.Now(), servingcsr.NodeUserPrefix+node, []string{servingcsr.NodesGroup}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := controlplanetest.Config(cp, b.ClusterCA.CertPEM)
	cfg.CertData, cfg.KeyData = kp.CertPEM, kp.KeyPEM
	return controlplanetest.KubeletCSR(t, cfg, node, certificatesv1.KubeletServingSignerName,
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}, append([]string{node}, ips...)...)
}
