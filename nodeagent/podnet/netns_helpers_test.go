package podnet

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/kiln-dev/kiln/internal/testtool"
)

// requireNetAdmin skips the test unless it runs as root with ip and nft at hand, saying how to run
// it; under CI=true (CI runs as root) it fails instead.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	how := "run it as root: sudo -E go test -count=1 -run '" + t.Name() + "' ./nodeagent/podnet"
	if os.Geteuid() != 0 {
		unavailable(t, "this test makes network namespaces, which needs root; %s", how)
	}
	for _, tool := range []struct{ bin, pkg string }{{"ip", "iproute2"}, {"nft", "nftables"}} {
		if _, err := exec.LookPath(tool.bin); err != nil {
			unavailable(t, "%s: %v; install Debian's %s (hack/tools.sh deps)", tool.bin, err, tool.pkg)
		}
	}
}

func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	if testtool.CI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

var nsSeq atomic.Int32

// newNetns makes a network namespace for the test, removed when it ends, and returns its name and a
// netlink handle in it. Nothing outside the namespaces a test makes is ever addressed.
func newNetns(t *testing.T, role string) (string, *netlink.Handle) {
	t.Helper()
	name := fmt.Sprintf("kpn%d-%d-%s", os.Getpid()%100000, nsSeq.Add(1), role)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return name, h
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipRoute is a route as `ip -json route` prints it.
type ipRoute struct {
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
}

// routesIn reads the main table of a namespace with iproute2, not with the code under test, and
// returns one line per route: "DST via GW dev DEV proto PROTO".
func routesIn(t *testing.T, ns string) []string {
	t.Helper()
	var rs []ipRoute
	if err := json.Unmarshal([]byte(run(t, "ip", "-n", ns, "-json", "route", "show", "table", "main")), &rs); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		s := r.Dst
		if r.Gateway != "" {
			s += " via " + r.Gateway
		}
		out = append(out, s+" dev "+r.Dev+" proto "+r.Protocol)
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
