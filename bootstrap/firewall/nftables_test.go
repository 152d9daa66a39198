package firewall

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	goldenfile "github.com/kiln-dev/kiln/internal/golden"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/internal/testtool"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// specs are the fixtures under testdata whose rulesets are golden.
var specs = []string{"ipv4", "ipv6", "restricted"}

// decodeFixture decodes testdata/NAME.yaml.
func decodeFixture(t *testing.T, name string) *v1alpha1.Cluster {
	t.Helper()
	file := filepath.Join("testdata", name+".yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v1alpha1.Decode(data, file)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, *update, name, got)
}

// command returns the path of a program the test needs: it skips the test when the program is
// missing, and fails it under CI=true.
func command(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := "%s not found (Debian package %s; install it with hack/tools.sh deps): %v"
		if testtool.CI() {
			t.Fatalf(msg, name, pkg, err)
		}
		t.Skipf(msg, name, pkg, err)
	}
	return p
}

// requireRoot is testtool.RequireRoot, first saying why this test needs root (its message speaks of
// other tests).
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Logf("this test needs root: %s", why)
	}
	testtool.RequireRoot(t)
}

// nftCheck runs `nft -c -f FILE` on ruleset: a dry run of loading it, which changes nothing.
func nftCheck(t *testing.T, ruleset []byte) {
	t.Helper()
	requireRoot(t, "nft -c talks to the kernel's nf_tables over netlink (CAP_NET_ADMIN)")
	nft := command(t, "nft", "nftables")
	file := filepath.Join(t.TempDir(), "firewall.nft")
	if err := os.WriteFile(file, ruleset, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nft, "-c", "-f", file).CombinedOutput()
	if err != nil {
		t.Fatalf("nft -c -f %s: %v\n%s\nruleset:\n%s", file, err, out, ruleset)
	}
}

func TestNftablesGolden(t *testing.T) {
	for _, spec := range specs {
		c := decodeFixture(t, spec)
		intent, err := NewIntent(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, role := range []string{v1alpha1.RoleControlPlane, v1alpha1.RoleWorker} {
			t.Run(spec+"/"+role, func(t *testing.T) {
				pool := ""
				if role == v1alpha1.RoleWorker {
					pool = c.Spec.NodePools[0].Name
				}
				got, err := Nftables(intent.Node(role, pool), role)
				if err != nil {
					t.Fatalf("Nftables: %v", err)
				}
				golden(t, spec+"-"+role+".nft", got)
				nftCheck(t, got)
			})
		}
	}
}

// TestNftablesVIPGolden renders the control plane's rulesets for an endpoint made on the nodes
// (keepalived and haproxy); workers' are the same as for a load balancer (TestNewIntentVIP).
func TestNftablesVIPGolden(t *testing.T) {
	for _, spec := range specs {
		t.Run(spec, func(t *testing.T) {
			intent, err := NewIntentFor(decodeFixture(t, spec), EndpointVIP)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Nftables(intent.Node(v1alpha1.RoleControlPlane, ""), v1alpha1.RoleControlPlane)
			if err != nil {
				t.Fatalf("Nftables: %v", err)
			}
			golden(t, spec+"-vip-control-plane.nft", got)
			nftCheck(t, got)
		})
	}
}

func TestNftablesEmpty(t *testing.T) {
	got, err := Nftables(nil, "bastion")
	if err != nil {
		t.Fatalf("Nftables: %v", err)
	}
	if !bytes.Contains(got, []byte("policy drop;")) {
		t.Errorf("ruleset without rules does not drop:\n%s", got)
	}
	nftCheck(t, got)
}

func TestNftablesErrors(t *testing.T) {
	nodes := prefixes("10.0.0.0/16")
	tcs := []struct {
		name  string
		rules []Rule
		role  string
		want  []string
	}{
		{
			name: "bad role",
			role: `worker"; flush ruleset; "`,
			want: []string{"role"},
		},
		{
			name:  "unknown protocol",
			rules: []Rule{{Proto: "sctp", Ports: Port(9), From: nodes, Why: "discard"}},
			role:  v1alpha1.RoleWorker,
			want:  []string{`protocol "sctp"`},
		},
		{
			name: "bad ports",
			rules: []Rule{
				{Proto: TCP, From: nodes, Why: "no port"},
				{Proto: UDP, Ports: PortRange{First: 10, Last: 9}, From: nodes, Why: "backwards"},
				{Proto: ICMP, Ports: Port(8), From: nodes, Why: "icmp with a port"},
			},
			role: v1alpha1.RoleWorker,
			want: []string{"rule 0 (\"no port\"): ports 0-0", "rule 1 (\"backwards\"): ports 10-9", "rule 2 (\"icmp with a port\"): icmp with ports 8"},
		},
		{
			name: "sources",
			rules: []Rule{
				{Proto: TCP, Ports: Port(22), Why: "from nowhere"},
				{Proto: TCP, Ports: Port(22), From: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/16")}, Why: "host bits"},
				{Proto: TCP, Ports: Port(22), From: []netip.Prefix{{}}, Why: "zero prefix"},
			},
			role: v1alpha1.RoleWorker,
			want: []string{"no source network", "source 10.0.0.1/16", "source invalid Prefix"},
		},
		{
			name: "comments",
			rules: []Rule{
				{Proto: TCP, Ports: Port(22), From: nodes},
				{Proto: TCP, Ports: Port(22), From: nodes, Why: `ssh" accept; tcp dport 1-65535 accept comment "`},
				{Proto: TCP, Ports: Port(22), From: nodes, Why: strings.Repeat("x", 129)},
			},
			role: v1alpha1.RoleWorker,
			want: []string{"no comment", "quote", "129 bytes"},
		},
	}
	for _, tc := range tcs {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Nftables(tc.rules, tc.role)
			if err == nil {
				t.Fatalf("Nftables = %s, want an error", got)
			}
			if !errors.Is(err, ErrInvalidRule) {
				t.Errorf("error %v does not wrap ErrInvalidRule", err)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) {
				t.Errorf("got %d findings, want %d:\n%v", n, len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestUnit(t *testing.T) {
	got := Unit()
	golden(t, UnitName, []byte(got))
	for _, line := range []string{
		"Type=oneshot",
		"DefaultDependencies=no",
		"Before=network-pre.target shutdown.target",
		"Wants=network-pre.target",
		"ExecStart=/usr/sbin/nft -f /etc/kiln/firewall.nft",
		"RemainAfterExit=yes",
		"WantedBy=sysinit.target",
	} {
		if !strings.Contains(got, "\n"+line+"\n") {
			t.Errorf("unit has no line %q:\n%s", line, got)
		}
	}

	// systemd-analyze verify exits 0 on many problems it only prints, so any output is a failure.
	sa := command(t, "systemd-analyze", "systemd")
	file := filepath.Join(t.TempDir(), UnitName)
	if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", file).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", file, err, out)
	}
}
