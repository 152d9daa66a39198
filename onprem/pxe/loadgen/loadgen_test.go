package loadgen

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/onprem/metal"
	"github.com/kiln-dev/kiln/onprem/pxe"
	"github.com/kiln-dev/kiln/state"
)

// server is a boot server on loopback with n workers in its inventory, each with its real Ignition
// rendered ahead (as 'kiln pxe serve' does), its enrollment tickets in a real state store, and an
// asset of assetMB megabytes.
type server struct {
	url  string
	macs []string
	svc  *pxe.Service
	st   *state.Store
}

func startServer(tb testing.TB, n, assetMB int) server {
	tb.Helper()
	c := v1alpha1.Starter("demo")
	spec, err := v1alpha1.Marshal(c)
	if err != nil {
		tb.Fatal(err)
	}
	if c, err = v1alpha1.Decode(spec, "cluster.yaml"); err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	b, err := secrets.Generate(c, rand.Reader, now)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := secrets.NewBootstrapToken(rand.Reader, now, time.Hour, "kiln node join")
	if err != nil {
		tb.Fatal(err)
	}
	b.BootstrapTokens = append(b.BootstrapTokens, tok)
	r, err := ignition.New(ignition.Input{Cluster: c, Secrets: b, Token: tok, Placement: metal.Placement()})
	if err != nil {
		tb.Fatal(err)
	}
	inv := &pxe.Inventory{APIVersion: pxe.APIVersion, Kind: pxe.InventoryKind,
		Profiles: []pxe.Profile{{Name: "debian", Kernel: "vmlinuz", Initrd: []string{"initrd.img"}, Args: []string{"console=ttyS0"}}},
		Groups:   []pxe.Group{{Name: "all", Profile: "debian"}}}
	var macs []string
	for i := range n {
		mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
		macs = append(macs, mac)
		inv.Machines = append(inv.Machines, pxe.Machine{Name: fmt.Sprintf("demo-workers-%d", i), MAC: mac, Role: "worker", Pool: "workers"})
	}
	st, err := state.Open(filepath.Join(tb.TempDir(), "state.db"), make([]byte, state.KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	render := func(m *pxe.Machine) ([]byte, error) {
		return r.Render(ignition.Node{Name: m.Name, Role: m.Role, Pool: m.Pool})
	}
	svc := pxe.NewService(pxe.ServiceConfig{Cluster: "demo", Inventory: inv, Open: func() (pxe.Store, error) { return unclosed{st}, nil },
		Renderer: func(pxe.Store, time.Time) (pxe.RenderFunc, time.Time, error) { return render, tok.Expires, nil }})
	if err := svc.Load(); err != nil {
		tb.Fatal(err)
	}
	assets := tb.TempDir()
	if err := os.WriteFile(filepath.Join(assets, "vmlinuz"), make([]byte, assetMB<<20), 0o644); err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	boot, err := pxe.NewBoot(pxe.HTTPConfig{BaseURL: base, Inventory: inv, Enroll: svc, Recorder: svc.Recorder(), AssetsDir: assets})
	if err != nil {
		tb.Fatal(err)
	}
	hs := pxe.NewHTTPServer("", boot)
	go hs.Serve(ln)
	tb.Cleanup(func() {
		hs.Close()
		boot.Close()
	})
	s := server{url: base, macs: macs, svc: svc, st: st}
	s.armAll(tb)
	return s
}

// unclosed is the test's state store, which the service does not close after each use.
type unclosed struct{ *state.Store }

func (unclosed) Close() error { return nil }

// armAll arms every machine, as 'kiln pxe arm' does.
func (s server) armAll(tb testing.TB) {
	tb.Helper()
	for _, mac := range s.macs {
		if err := pxe.ArmMachine(s.st, pxe.Arm{MAC: mac, By: pxe.ArmedByCLI, At: time.Now()}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.svc.Flush(); err != nil {
		tb.Fatal(err)
	}
}

func TestStorm(t *testing.T) {
	s := startServer(t, 50, 1)
	paced, err := Run(context.Background(), Config{BaseURL: s.url, MACs: s.macs, Rate: 2000})
	if err != nil || paced.Errors != 0 || paced.Requests != 100 || paced.Configs != 50 {
		t.Fatalf("open loop: %s %v", paced, err)
	}
	// Two rounds: every machine installs in the first, and gets the script that installs nothing in
	// the second.
	s.armAll(t)
	res, err := Run(context.Background(), Config{BaseURL: s.url, MACs: s.macs, Rounds: 2, Asset: "vmlinuz"})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Errors != 0 || res.Requests != 150 || res.Configs != 50 || res.AssetBytes != 50<<20 {
		t.Fatalf("storm: %s", res)
	}
	if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 || res.RPS <= 0 {
		t.Fatalf("statistics: %+v", res)
	}
	for _, mac := range s.macs {
		r, ok := s.svc.Recorder().Get(mac)
		if !ok || r.Steps[pxe.StepScript].Count != 2 || r.Steps[pxe.StepIgnition].Count != 2 || r.Steps[pxe.StepKernel].Count != 1 {
			t.Fatalf("records of %s: %+v", mac, r)
		}
	}
	// Nothing is armed now: every script installs nothing, and a MAC the server does not know gets
	// the same.
	res, err = Run(context.Background(), Config{BaseURL: s.url, MACs: append(s.macs[:3:3], "52:54:00:ff:ff:ff")})
	if err != nil || res.Errors != 0 || res.Requests != 4 || res.Configs != 0 {
		t.Fatalf("nothing armed: %s %v", res, err)
	}
}

func TestOnlyLoopback(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:8080", "http://example.com", "http://192.168.1.1"} {
		if _, err := Run(context.Background(), Config{BaseURL: u, MACs: []string{"52:54:00:00:00:01"}}); err == nil ||
			!strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// BenchmarkBootStorm: 1,000 armed machines against a server in the same process on both cores, its
// enrollment tickets in a real state store (each issued and spent in a transaction of its own).
// open-loop-200rps: installs (a script that issues a ticket, the Ignition that spends it) start at
// 100/s, one per machine, and the latency is the server's. closed-loop: all 1,000 start at once,
// each booting five times (one install, four scripts that install nothing) and then fetching a 20 MB
// kernel; with 1,000 requests in flight the latency is mostly queueing (Little's law: in-flight /
// throughput).
//
//	go test -run '^$' -bench BootStorm -benchtime 3x ./onprem/pxe/loadgen
func BenchmarkBootStorm(b *testing.B) {
	s := startServer(b, 1000, 20)
	b.Run("open-loop-200rps", func(b *testing.B) {
		var last Result
		for b.Loop() {
			b.StopTimer()
			s.armAll(b)
			b.StartTimer()
			res, err := Run(context.Background(), Config{BaseURL: s.url, MACs: s.macs, Rate: 200, Timeout: 5 * time.Minute})
			if err != nil || res.Errors != 0 {
				b.Fatalf("%s %v", res, err)
			}
			last = res
		}
		b.ReportMetric(last.RPS, "req/s")
		b.ReportMetric(float64(last.P50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(last.P99.Microseconds())/1000, "p99-ms")
		b.Log(last)
	})
	b.Run("closed-loop", func(b *testing.B) { benchmarkClosedLoop(b, s) })
}

func benchmarkClosedLoop(b *testing.B, s server) {
	var last Result
	for b.Loop() {
		b.StopTimer()
		s.armAll(b)
		b.StartTimer()
		res, err := Run(context.Background(), Config{BaseURL: s.url, MACs: s.macs, Rounds: 5, Asset: "vmlinuz", Timeout: 5 * time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		if res.Errors != 0 {
			b.Fatalf("errors: %s", res)
		}
		last = res
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(last.RPS, "req/s")
	b.ReportMetric(float64(last.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(last.P99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(last.AssetMBps(), "asset-MB/s")
	b.ReportMetric(float64(ms.Sys)/(1<<20), "sys-MiB")
	b.Log(last)
}

func TestMainCommand(t *testing.T) {
	s := startServer(t, 3, 1)
	var y strings.Builder
	y.WriteString("apiVersion: kiln.dev/v1alpha1\nkind: MachineInventory\nmachines:\n")
	for i, mac := range s.macs {
		fmt.Fprintf(&y, "  - {name: demo-workers-%d, mac: %q, role: worker, pool: workers}\n", i, mac)
	}
	inv := filepath.Join(t.TempDir(), "machines.yaml")
	os.WriteFile(inv, []byte(y.String()), 0o644)
	var out, errOut strings.Builder
	if code := Main([]string{"-url", s.url, "-i", inv, "-rounds", "2", "-asset", "vmlinuz"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "3 machines: 9 script+ignition requests (3 configs)") || !strings.Contains(out.String(), "0 errors; assets 3 MB") {
		t.Fatalf("output: %s", out.String())
	}
	if code := Main([]string{"-url", "http://10.1.2.3:8080", "-i", inv}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "not a loopback address") {
		t.Fatalf("non-loopback: %d %s", code, errOut.String())
	}
}
