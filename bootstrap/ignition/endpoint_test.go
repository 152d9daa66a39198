package ignition

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	goldenfile "github.com/kiln-dev/kiln/internal/golden"
	"github.com/kiln-dev/kiln/internal/testtool"
)

// endpointFiles renders the fixture's control-plane node i with the placement's endpoint made on the
// nodes and returns its haproxy.cfg, keepalived.conf and keepalived-interface script.
func endpointFiles(t *testing.T, in Input, n Node) (haproxy, keepalived, script string) {
	t.Helper()
	raw, err := newRenderer(t, in).Render(n)
	if err != nil {
		t.Fatal(err)
	}
	got, byPath, _ := files(t, raw)
	for _, p := range []string{HAProxyConfigFile, KeepalivedConfigFile, KeepalivedInterfaceScript} {
		if _, ok := got[p]; !ok {
			t.Fatalf("the control-plane config has no %s", p)
		}
	}
	if m := byPath[KeepalivedInterfaceScript].Mode; m == nil || *m != 0o755 {
		t.Errorf("%s: mode %v, want 0755", KeepalivedInterfaceScript, m)
	}
	return got[HAProxyConfigFile], got[KeepalivedConfigFile], got[KeepalivedInterfaceScript]
}

// The endpoint's configs as the local QEMU provider's control-plane nodes get them: haproxy balancing
// to every control-plane node's address, keepalived holding 10.0.0.5. Readable copies of what the
// golden .ign files carry.
func TestEndpointGolden(t *testing.T) {
	haproxy, keepalived, script := endpointFiles(t, fixture(t), Node{Name: "golden-control-plane-0", Role: v1alpha1.RoleControlPlane, Address: cpAddr(0)})
	goldenfile.Check(t, *update, "haproxy.cfg", []byte(haproxy))
	goldenfile.Check(t, *update, "keepalived.conf", []byte(keepalived))
	goldenfile.Check(t, *update, "keepalived-interface", []byte(script))
}

// Where the endpoint is a load balancer outside the nodes, no node runs haproxy or keepalived and
// kube-apiserver listens on the endpoint's port itself.
func TestEndpointExternal(t *testing.T) {
	in := fixture(t)
	in.Placement = Placement{Endpoint: EndpointExternal, NodeAddresses: true}
	raw, err := newRenderer(t, in).Render(Node{Name: "golden-control-plane-0", Role: v1alpha1.RoleControlPlane, Address: cpAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	got, _, cfg := files(t, raw)
	for _, p := range []string{HAProxyConfigFile, KeepalivedConfigFile, KeepalivedInterfaceScript} {
		if _, ok := got[p]; ok {
			t.Errorf("%s rendered for an external load balancer", p)
		}
	}
	for _, u := range cfg.Systemd.Units {
		if u.Name == "haproxy.service" || u.Name == "keepalived.service" {
			t.Errorf("%s in the config of an external load balancer", u.Name)
		}
	}
	if api := unit(cfg, "kube-apiserver.service"); !strings.Contains(api, "--secure-port=6443") || !strings.Contains(api, "--advertise-address=10.0.0.10") {
		t.Errorf("kube-apiserver does not listen on the endpoint's port at its address:\n%s", api)
	}
	if !strings.Contains(got["/etc/kubernetes/controller-manager.conf"], "server: https://127.0.0.1:6443") {
		t.Errorf("the controller manager does not reach its local API server on the endpoint's port")
	}
}

// Without addresses before rendering (the provider makes node names resolve), haproxy's backends
// and etcd's members are names, and haproxy starts while a name does not resolve yet.
func TestEndpointByName(t *testing.T) {
	in := fixture(t)
	in.Placement = Placement{Endpoint: EndpointVIP}
	in.ControlPlaneAddresses = nil
	raw, err := newRenderer(t, in).Render(Node{Name: "golden-control-plane-1", Role: v1alpha1.RoleControlPlane})
	if err != nil {
		t.Fatal(err)
	}
	got, _, cfg := files(t, raw)
	if h := got[HAProxyConfigFile]; !strings.Contains(h, "server golden-control-plane-2 golden-control-plane-2:6444\n") || !strings.Contains(h, "init-addr libc,none") {
		t.Errorf("haproxy.cfg does not name its backends by name:\n%s", h)
	}
	etcd := unit(cfg, "etcd.service")
	for _, want := range []string{"--advertise-client-urls=https://golden-control-plane-1:2379", "golden-control-plane-0=https://golden-control-plane-0:2380"} {
		if !strings.Contains(etcd, want) {
			t.Errorf("etcd.service lacks %s:\n%s", want, etcd)
		}
	}
	if api := unit(cfg, "kube-apiserver.service"); strings.Contains(api, "--advertise-address") || !strings.Contains(api, "--secure-port=6444") {
		t.Errorf("kube-apiserver flags:\n%s", api)
	}
	if strings.Contains(got["/etc/kiln/node.env"], "@@") || !strings.Contains(got["/etc/kiln/node.env"], "KILN_NODE_ADDRESS=\n") {
		t.Errorf("node.env:\n%s", got["/etc/kiln/node.env"])
	}
}

// IPv6 addresses go into etcd's URLs in brackets, the node's own (a placeholder at translation) too.
func TestEtcdURLsIPv6(t *testing.T) {
	in := fixture(t)
	in.Placement = Placement{NodeAddresses: true}
	in.ControlPlaneAddresses = map[string]netip.Addr{}
	for i := range 3 {
		in.ControlPlaneAddresses[fmt.Sprintf("golden-control-plane-%d", i)] = netip.MustParseAddr(fmt.Sprintf("fd00:10::%d", 10+i))
	}
	raw, err := newRenderer(t, in).Render(Node{Name: "golden-control-plane-1", Role: v1alpha1.RoleControlPlane, Address: netip.MustParseAddr("fd00:10::11")})
	if err != nil {
		t.Fatal(err)
	}
	_, _, cfg := files(t, raw)
	etcd := unit(cfg, "etcd.service")
	for _, want := range []string{
		"--listen-client-urls=https://[fd00:10::11]:2379,https://127.0.0.1:2379 ",
		"--advertise-client-urls=https://[fd00:10::11]:2379 ",
		"--listen-peer-urls=https://[fd00:10::11]:2380 ",
		"--initial-advertise-peer-urls=https://[fd00:10::11]:2380 ",
		"--initial-cluster=golden-control-plane-0=https://[fd00:10::10]:2380,golden-control-plane-1=https://[fd00:10::11]:2380,golden-control-plane-2=https://[fd00:10::12]:2380 ",
	} {
		if !strings.Contains(etcd, want) {
			t.Errorf("etcd.service lacks %s:\n%s", want, etcd)
		}
	}
	if api := unit(cfg, "kube-apiserver.service"); !strings.Contains(api, "--advertise-address=fd00:10::11 ") {
		t.Errorf("kube-apiserver.service does not advertise fd00:10::11:\n%s", api)
	}
}

func TestVirtualRouterID(t *testing.T) {
	seen := map[int]string{}
	for _, name := range []string{"demo", "golden", "prod-eu", "a", strings.Repeat("k", 40)} {
		id := VirtualRouterID(name)
		if id < 1 || id > 255 {
			t.Errorf("VirtualRouterID(%q) = %d, want 1 to 255", name, id)
		}
		if id != VirtualRouterID(name) {
			t.Errorf("VirtualRouterID(%q) changes", name)
		}
		if other, dup := seen[id]; dup {
			t.Logf("%s and %s share virtual router ID %d", name, other, id)
		}
		seen[id] = name
	}
}

// TestEndpointWithRealPrograms checks the rendered haproxy.cfg with `haproxy -c` and keepalived.conf
// with `keepalived --config-test` (Debian 12: haproxy 2.6, keepalived 2.2.7), in a network namespace
// the test makes, whose interface holds a node's address: the rendered keepalived-interface script
// runs there first and names it, as it does before keepalived starts on a node. keepalived refuses a
// missing or loopback interface, so the check covers the script too.
func TestEndpointWithRealPrograms(t *testing.T) {
	haproxyBin := program(t, "haproxy", "haproxy")
	keepalivedBin := program(t, "keepalived", "keepalived")
	ipBin := program(t, "ip", "iproute2")

	type endpoint struct {
		haproxy, keepalived, script string
		node                        netip.Prefix // the node's address on the endpoint's subnet
	}
	ipv4 := func() endpoint {
		h, k, s := endpointFiles(t, fixture(t), Node{Name: "golden-control-plane-0", Role: v1alpha1.RoleControlPlane, Address: cpAddr(0)})
		return endpoint{h, k, s, netip.MustParsePrefix("10.0.0.10/24")}
	}
	byName := func() endpoint {
		in := fixture(t)
		in.Placement, in.ControlPlaneAddresses = Placement{Endpoint: EndpointVIP}, nil
		h, k, s := endpointFiles(t, in, Node{Name: "golden-control-plane-0", Role: v1alpha1.RoleControlPlane})
		return endpoint{h, k, s, netip.MustParsePrefix("10.0.0.77/24")}
	}
	ipv6 := func() endpoint {
		subnet := netip.MustParsePrefix("fd00:10::/64")
		servers := []backend{{"c-control-plane-0", "fd00:10::10"}, {"c-control-plane-1", "fd00:10::11"}, {"c-control-plane-2", "fd00:10::12"}}
		return endpoint{
			haproxy:    haproxyConfig(443, v1alpha1.APIServerPortBehindVIP, true, servers),
			keepalived: keepalivedConfig("c", netip.MustParseAddr("fd00:10::5"), subnet),
			script:     keepalivedInterfaceScript(subnet),
			node:       netip.MustParsePrefix("fd00:10::11/64"),
		}
	}
	for _, tc := range []struct {
		name string
		ep   func() endpoint
		// unresolved: haproxy warns that it cannot resolve the backends' names here, and starts.
		unresolved bool
	}{
		{name: "ipv4 by address", ep: ipv4},
		{name: "ipv4 by name", ep: byName, unresolved: true},
		{name: "ipv6", ep: ipv6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := tc.ep()
			dir := t.TempDir()
			hcfg := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(hcfg, []byte(ep.haproxy), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(haproxyBin, "-c", "-f", hcfg).CombinedOutput()
			t.Logf("haproxy -c -f haproxy.cfg: %s", strings.TrimSpace(string(out)))
			if err != nil || !strings.Contains(string(out), "Configuration file is valid") {
				t.Errorf("haproxy -c: %v\n%s\n%s", err, out, ep.haproxy)
			}
			if warned := strings.Contains(string(out), "WARNING"); warned != tc.unresolved {
				t.Errorf("haproxy -c warned: %v, want %v", warned, tc.unresolved)
			}

			testtool.RequireRoot(t)
			ns := netns(t, ipBin)
			run := func(args ...string) {
				t.Helper()
				if out, err := exec.Command(ipBin, args...).CombinedOutput(); err != nil {
					t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
			run("-n", ns, "link", "add", "eth7", "type", "veth", "peer", "name", "eth8")
			args := []string{"-n", ns, "addr", "add", ep.node.String(), "dev", "eth7"}
			if ep.node.Addr().Is6() {
				args = append(args, "nodad")
			}
			run(args...)
			run("-n", ns, "link", "set", "eth7", "up")
			run("-n", ns, "link", "set", "eth8", "up")

			// The script and the configuration, with the include file in the test's directory.
			include := filepath.Join(dir, "keepalived-interface.conf")
			script := filepath.Join(dir, "keepalived-interface")
			kcfg := filepath.Join(dir, "keepalived.conf")
			for _, f := range []struct {
				path, contents string
				mode           os.FileMode
			}{
				{script, strings.ReplaceAll(ep.script, KeepalivedInterfaceFile, include), 0o755},
				{kcfg, strings.ReplaceAll(ep.keepalived, KeepalivedInterfaceFile, include), 0o644},
			} {
				if err := os.WriteFile(f.path, []byte(f.contents), f.mode); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := exec.Command(ipBin, "netns", "exec", ns, script).CombinedOutput(); err != nil {
				t.Fatalf("keepalived-interface: %v\n%s", err, out)
			}
			if got, _ := os.ReadFile(include); string(got) != "$"+KeepalivedInterfaceParam+"=eth7\n" {
				t.Fatalf("keepalived-interface wrote %q, want the interface that holds %s", got, ep.node)
			}
			out, err = exec.Command(ipBin, "netns", "exec", ns, keepalivedBin, "--config-test", "-f", kcfg).CombinedOutput()
			t.Logf("keepalived --config-test -f keepalived.conf: exit %v, %q", err, out)
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("keepalived --config-test: %v\n%s\n%s", err, out, ep.keepalived)
			}

			// Without an address on the endpoint's subnet, the script fails and keepalived does not start.
			run("-n", ns, "addr", "flush", "dev", "eth7")
			if out, err := exec.Command(ipBin, "netns", "exec", ns, script).CombinedOutput(); err == nil || !strings.Contains(string(out), "no interface has an address in") {
				t.Errorf("keepalived-interface without the subnet's address: %v, %s", err, out)
			}
		})
	}
}

// program returns the path of a program the test needs: it skips the test when the program is
// missing, and fails it under CI=true.
func program(t *testing.T, name, pkg string) string {
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

// netns makes a network namespace for the test and deletes it when the test ends.
func netns(t *testing.T, ipBin string) string {
	t.Helper()
	id := make([]byte, 3)
	rand.Read(id)
	ns := "kigntest-" + hex.EncodeToString(id)
	if out, err := exec.Command(ipBin, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ipBin, "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", ns, err, out)
		}
	})
	return ns
}
