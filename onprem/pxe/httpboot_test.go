package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/statetest"
)

// fakeRender stands in for bootstrap/ignition in handler tests: a config that names its machine,
// so a test can tell whose config it got. The CLI test and the network boot test use the real renderer.
func fakeRender(calls *atomic.Int64) RenderFunc {
	return func(m *Machine) ([]byte, error) {
		calls.Add(1)
		return []byte(fmt.Sprintf(`{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/hostname","contents":{"source":"data:,%s"}}]}}`, m.Name)), nil
	}
}

// newTestService returns a Service of cluster demo over st, loaded, that renders configs with
// fakeRender (counting into calls, when set).
func newTestService(t testing.TB, inv *Inventory, st Store, calls *atomic.Int64) *Service {
	t.Helper()
	if calls == nil {
		calls = &atomic.Int64{}
	}
	s := NewService(ServiceConfig{Cluster: "demo", Inventory: inv, Open: func() (Store, error) { return st, nil },
		Renderer: func(Store, time.Time) (RenderFunc, time.Time, error) {
			return fakeRender(calls), time.Now().Add(time.Hour), nil
		},
		Workers: 1})
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	return s
}

// armForTest arms the machine with mac as 'kiln pxe arm' does, and has s read it.
func armForTest(t testing.TB, s *Service, st Store, a Arm) {
	t.Helper()
	if a.By == "" {
		a.By, a.At = ArmedByCLI, time.Now().UTC()
	}
	if err := ArmMachine(st, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
}

type bootFixture struct {
	srv    *httptest.Server
	svc    *Service
	st     *statetest.Memory
	rec    *Recorder
	inv    *Inventory
	assets string
	calls  *atomic.Int64
}

func newBootFixture(t *testing.T, leases LeaseLookup) *bootFixture {
	t.Helper()
	inv := testInventory(t)
	assets := t.TempDir()
	if err := os.MkdirAll(filepath.Join(assets, "debian"), 0o755); err != nil {
		t.Fatal(err)
	}
	kernel := bytes.Repeat([]byte("kernel-bytes-"), 1000)
	for name, data := range map[string][]byte{"debian/vmlinuz": kernel, "debian/initrd.img": []byte("initrd"), "debian/firmware.img": []byte("fw")} {
		if err := os.WriteFile(filepath.Join(assets, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A file outside the assets directory, and a symlink pointing at it, must never be served.
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o600)
	os.Symlink(outside, filepath.Join(assets, "escape"))

	ipxeDir := t.TempDir()
	os.WriteFile(filepath.Join(ipxeDir, FileUEFI), []byte("MZ-efi"), 0o644)

	calls := &atomic.Int64{}
	st := statetest.NewEmpty()
	svc := newTestService(t, inv, st, calls)
	f := &bootFixture{svc: svc, st: st, rec: svc.Recorder(), inv: inv, assets: assets, calls: calls}
	boot, err := NewBoot(HTTPConfig{BaseURL: "http://kiln.test", Inventory: inv, Enroll: svc,
		Recorder: f.rec, AssetsDir: assets, IPXEDir: ipxeDir, Leases: leases})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { boot.Close() })
	f.srv = httptest.NewServer(boot)
	t.Cleanup(f.srv.Close)
	return f
}

// arm arms the machine with mac.
func (f *bootFixture) arm(t *testing.T, mac string) {
	t.Helper()
	armForTest(t, f.svc, f.st, Arm{MAC: mac})
}

func (f *bootFixture) do(t *testing.T, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return f.doFrom(t, netip.Addr{}, method, path, hdr...)
}

// doFrom sends the request from the loopback address from (any when invalid).
func (f *bootFixture) doFrom(t *testing.T, from netip.Addr, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// Send the path as written: no client-side cleaning of ".." or "%2e".
	req.URL.Opaque = path[:strings.IndexAny(path+"?", "?")]
	resp, err := clientFrom(from).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// clientFrom is an HTTP client whose connections come from the local address from (any when
// invalid): a loopback address other than 127.0.0.1 is another machine of the test.
func clientFrom(from netip.Addr) *http.Client {
	if !from.IsValid() {
		return http.DefaultClient
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from.AsSlice()}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// ignitionURL is the path and query of the Ignition URL in a script, or "".
func ignitionURL(script string) string {
	for _, f := range strings.Fields(script) {
		if u, ok := strings.CutPrefix(f, "ignition.config.url="); ok {
			return strings.TrimPrefix(u, "http://kiln.test")
		}
	}
	return ""
}

func TestBootHTTP(t *testing.T) {
	f := newBootFixture(t, nil)
	w0, w1 := "52:54:00:00:00:02", "52:54:00:00:00:03"
	f.arm(t, w0)
	tests := []struct {
		name, method, path string
		want               int
		body               string
		contains           string
	}{
		{name: "chain script", method: "GET", path: "/boot.ipxe", want: 200, contains: "chain http://kiln.test/ipxe?mac=${mac:hexhyp}"},
		{name: "HEAD of the chain script", method: "HEAD", path: "/boot.ipxe", want: 200},
		{name: "armed machine's script", method: "GET", path: "/ipxe?mac=52-54-00-00-00-02&uuid=x", want: 200,
			contains: "ignition.config.url=http://kiln.test/ignition?mac=52%3A54%3A00%3A00%3A00%3A02&token=kiln-enroll-v1."},
		{name: "known machine, not armed", method: "GET", path: "/ipxe?mac=" + w1, want: 200, body: NoBootScript},
		{name: "unknown MAC", method: "GET", path: "/ipxe?mac=52:54:00:99:99:99", want: 200, body: NoBootScript},
		{name: "no MAC", method: "GET", path: "/ipxe", want: 200, body: NoBootScript},
		{name: "HEAD of a script", method: "HEAD", path: "/ipxe?mac=" + w0, want: 405},
		{name: "ignition without token", method: "GET", path: "/ignition?mac=" + w0, want: 403, body: "no config for this request\n"},
		{name: "ignition with a made-up token", method: "GET", path: "/ignition?mac=" + w0 + "&token=kiln-enroll-v1.AAAA", want: 403, body: "no config for this request\n"},
		{name: "ignition of a machine never given a ticket", method: "GET", path: "/ignition?mac=" + w1 + "&token=x", want: 403, body: "no config for this request\n"},
		{name: "ignition of an unknown machine", method: "GET", path: "/ignition?mac=52:54:00:99:99:99&token=x", want: 403, body: "no config for this request\n"},
		{name: "HEAD of an ignition", method: "HEAD", path: "/ignition?mac=" + w0 + "&token=x", want: 405},
		{name: "asset", method: "GET", path: "/assets/debian/initrd.img", want: 200, contains: "initrd"},
		{name: "missing asset", method: "GET", path: "/assets/debian/nope", want: 404},
		{name: "asset dir", method: "GET", path: "/assets/debian", want: 404},
		{name: "dot-dot", method: "GET", path: "/assets/../../etc/passwd", want: 400},
		{name: "encoded dot-dot", method: "GET", path: "/assets/%2e%2e/%2e%2e/etc/passwd", want: 400},
		{name: "mixed-case encoded dot-dot", method: "GET", path: "/assets/%2E%2e/secret", want: 400},
		{name: "encoded slash and dot-dot", method: "GET", path: "/assets/debian%2f..%2f..%2fsecret", want: 400},
		{name: "symlink out of the assets", method: "GET", path: "/assets/escape", want: 404},
		{name: "iPXE binary over HTTP", method: "GET", path: "/ipxe/ipxe.efi", want: 200, contains: "MZ-efi"},
		{name: "not an iPXE binary", method: "GET", path: "/ipxe/grub.efi", want: 404},
		{name: "unknown path", method: "GET", path: "/metadata", want: 404},
		{name: "PUT", method: "PUT", path: "/assets/debian/vmlinuz", want: 405},
		{name: "POST", method: "POST", path: "/ignition?mac=" + w0 + "&token=x", want: 405},
		{name: "DELETE", method: "DELETE", path: "/boot.ipxe", want: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(t, tc.method, tc.path)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: %d, want %d\n%s", tc.method, tc.path, resp.StatusCode, tc.want, body)
			}
			if tc.want == 405 && resp.Header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
			if tc.body != "" && body != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("body lacks %q:\n%s", tc.contains, body)
			}
			if strings.Contains(body, "secret") && tc.want != 200 {
				t.Errorf("leaked the file outside the assets")
			}
		})
	}
	if n := f.rec.Snapshot(); len(n) != 1 || n[0].MAC != w0 {
		t.Errorf("records %+v: want the armed machine's script only", n)
	}
}

// TestBootEnrollment follows one armed machine's ticket: its script's URL is good once, from the
// address that asked for the script; the machine is disarmed once its config was served; every
// refusal is recorded in the ticket.
func TestBootEnrollment(t *testing.T) {
	f := newBootFixture(t, nil)
	mac := "52:54:00:00:00:01"
	machine, other := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	f.arm(t, mac)
	_, script := f.doFrom(t, machine, "GET", "/ipxe?mac="+mac)
	u := ignitionURL(script)
	if u == "" {
		t.Fatalf("no Ignition URL in the armed machine's script:\n%s", script)
	}
	// Another address with the machine's URL: refused, and the config is still there.
	if resp, body := f.doFrom(t, other, "GET", u); resp.StatusCode != 403 {
		t.Fatalf("URL used from another address: %d %s", resp.StatusCode, body)
	}
	if _, ok := f.rec.Get(mac); !ok {
		t.Fatal("no record")
	}
	if r, _ := f.rec.Get(mac); r.Steps[StepIgnition].Count != 0 {
		t.Errorf("a refused fetch was recorded as the ignition step: %+v", r.Steps)
	}
	resp, cfg := f.doFrom(t, machine, "GET", u)
	if resp.StatusCode != 200 || cfg != `{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/hostname","contents":{"source":"data:,demo-control-plane-0"}}]}}` {
		t.Fatalf("the machine's own fetch: %d %s", resp.StatusCode, cfg)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Content-Type") != "application/vnd.coreos.ignition+json" {
		t.Errorf("headers of a config: %v", resp.Header)
	}
	// A replay, from the machine's own address: refused.
	if resp, body := f.doFrom(t, machine, "GET", u); resp.StatusCode != 403 {
		t.Fatalf("replay: %d %s", resp.StatusCode, body)
	}
	// Disarmed: the next boot gets nothing.
	if _, ok, _ := GetArm(f.st, mac); ok {
		t.Error("still armed after its config was served")
	}
	if _, script := f.doFrom(t, machine, "GET", "/ipxe?mac="+mac); script != NoBootScript {
		t.Errorf("script after the config was served:\n%s", script)
	}
	ticket, err := enroll.Get(f.st, "demo", "demo-control-plane-0")
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, a := range ticket.Refused {
		reasons = append(reasons, a.From+": "+a.Reason)
	}
	want := []string{"127.0.0.2: " + enroll.ErrWrongAddress.Error(), "127.0.0.1: " + enroll.ErrSpent.Error()}
	if diff := cmp.Diff(want, reasons); diff != "" || ticket.Spent == nil || ticket.Spent.From != "127.0.0.1" || ticket.Bind != "127.0.0.1" {
		t.Errorf("ticket %+v; refusals (-want +got):\n%s", ticket, diff)
	}
	if !ticket.Suspect() {
		t.Error("a ticket tried from another address and replayed is not suspect")
	}
	if r, _ := f.rec.Get(mac); r.Steps[StepIgnition].Count != 1 || r.Ticket == nil || r.Ticket.Machine != "demo-control-plane-0" {
		t.Errorf("record %+v", r)
	}
}

// TestBootArmWithConfig: a machine armed with a config (the metal provider's) gets that config, under
// the name it was rendered for, not the one rendered from the inventory.
func TestBootArmWithConfig(t *testing.T) {
	f := newBootFixture(t, nil)
	mac := "52:54:00:00:00:02"
	armForTest(t, f.svc, f.st, Arm{MAC: mac, Cluster: "other", Machine: "other-workers-abc", By: ArmedByMetal, At: time.Now(),
		Config: []byte(`{"allocated":true}`)})
	_, script := f.do(t, "GET", "/ipxe?mac="+mac)
	if resp, cfg := f.do(t, "GET", ignitionURL(script)); resp.StatusCode != 200 || cfg != `{"allocated":true}` {
		t.Fatalf("armed with a config: %d %s", resp.StatusCode, cfg)
	}
	if ticket, err := enroll.Get(f.st, "other", "other-workers-abc"); err != nil || ticket.Spent == nil {
		t.Errorf("ticket of the allocated name: %+v %v", ticket, err)
	}
}

// TestBootScriptsIndistinguishable: a MAC of the inventory that is not armed, one that is armed but
// asks from an address other than its lease, and a MAC nobody knows get the same answer.
func TestBootScriptsIndistinguishable(t *testing.T) {
	armed := "52:54:00:00:00:02"
	f := newBootFixture(t, fixedLeases{armed: net.IPv4(10, 77, 0, 100)})
	f.arm(t, armed)
	var first *http.Response
	var firstBody string
	for _, mac := range []string{"52:54:00:00:00:01", armed, "52:54:00:99:99:99", "nonsense", ""} {
		resp, body := f.do(t, "GET", "/ipxe?mac="+mac)
		resp.Header.Del("Date")
		if first == nil {
			first, firstBody = resp, body
		}
		if resp.StatusCode != first.StatusCode || body != firstBody || body != NoBootScript {
			t.Errorf("mac %q: %d %q, want %d %q", mac, resp.StatusCode, body, first.StatusCode, firstBody)
		}
		if diff := cmp.Diff(first.Header, resp.Header); diff != "" {
			t.Errorf("mac %q: headers (-first +got):\n%s", mac, diff)
		}
	}
	if recs := f.rec.Snapshot(); len(recs) != 0 {
		t.Errorf("scripts that installed nothing were recorded: %+v", recs)
	}
}

func TestBootRecordsAndRanges(t *testing.T) {
	f := newBootFixture(t, nil)
	mac := "52:54:00:00:00:03"
	f.arm(t, mac)
	_, script := f.do(t, "GET", "/ipxe?mac="+mac)
	// Fetch exactly what the script says, as iPXE and then the kernel would.
	var urls []string
	for _, line := range strings.Split(script, "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) > 1 && fields[0] == "kernel":
			urls = append(urls, fields[1])
			for _, a := range fields[2:] {
				if u, ok := strings.CutPrefix(a, "ignition.config.url="); ok {
					urls = append(urls, u)
				}
			}
		case len(fields) > 3 && fields[0] == "initrd":
			urls = append(urls, fields[3])
		}
	}
	if len(urls) != 4 {
		t.Fatalf("script names %d URLs:\n%s", len(urls), script)
	}
	for _, u := range urls {
		path := strings.TrimPrefix(u, "http://kiln.test")
		if resp, body := f.do(t, "GET", path); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", u, resp.StatusCode, body)
		}
	}
	rec, ok := f.rec.Get(mac)
	if !ok {
		t.Fatal("no record")
	}
	for step, count := range map[Step]int{StepScript: 1, StepKernel: 1, StepInitrd: 2, StepIgnition: 1} {
		if rec.Steps[step].Count != count {
			t.Errorf("step %s recorded %d times, want %d (%+v)", step, rec.Steps[step].Count, count, rec.Steps)
		}
	}
	if rec.Name != "demo-workers-1" || rec.Steps[StepScript].Detail != "debian-gpu" {
		t.Errorf("record %+v", rec)
	}
	if _, other := f.rec.Get("52:54:00:00:00:02"); other {
		t.Error("another machine got a record")
	}

	// Range requests on a kernel.
	resp, body := f.do(t, "GET", "/assets/debian/vmlinuz", "Range", "bytes=13-25")
	if resp.StatusCode != http.StatusPartialContent || body != "kernel-bytes-" || resp.Header.Get("Content-Range") != "bytes 13-25/13000" {
		t.Fatalf("range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
	resp, _ = f.do(t, "HEAD", "/assets/debian/vmlinuz")
	if resp.Header.Get("Content-Length") != "13000" || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("HEAD: %v", resp.Header)
	}
}

type fixedLeases map[string]net.IP

func (l fixedLeases) Leased(mac string) (net.IP, bool) { ip, ok := l[mac]; return ip, ok }

// TestScriptBoundToLease: with leases (full DHCP), an armed machine's script, and so a ticket, only
// goes to the address it was leased, and the ticket is bound to it.
func TestScriptBoundToLease(t *testing.T) {
	mac := "52:54:00:00:00:02"
	// The machine was leased another address than the one asking (127.0.0.1): nothing.
	f := newBootFixture(t, fixedLeases{mac: net.IPv4(10, 77, 0, 100)})
	f.arm(t, mac)
	if _, script := f.do(t, "GET", "/ipxe?mac="+mac); script != NoBootScript {
		t.Fatalf("script served to an address the machine was not leased:\n%s", script)
	}
	if _, err := enroll.Get(f.st, "demo", "demo-workers-0"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("a ticket was issued: %v", err)
	}
	g := newBootFixture(t, fixedLeases{mac: net.IPv4(127, 0, 0, 1)})
	g.arm(t, mac)
	_, script := g.do(t, "GET", "/ipxe?mac="+mac)
	if resp, _ := g.do(t, "GET", ignitionURL(script)); resp.StatusCode != 200 {
		t.Fatalf("config refused to its own address: %d", resp.StatusCode)
	}
	if ticket, err := enroll.Get(g.st, "demo", "demo-workers-0"); err != nil || ticket.Bind != "127.0.0.1" {
		t.Fatalf("ticket %+v %v; want it bound to the lease", ticket, err)
	}
}

func TestIgnitionCache(t *testing.T) {
	inv := testInventory(t)
	calls := &atomic.Int64{}
	c := NewIgnitionCache(fakeRender(calls))
	if err := c.Prerender(inv.Machines, 2); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		for i := range inv.Machines {
			cfg, err := c.Ignition(context.Background(), &inv.Machines[i])
			if err != nil || !bytes.Contains(cfg, []byte(inv.Machines[i].Name)) {
				t.Fatalf("%s: %s %v", inv.Machines[i].Name, cfg, err)
			}
		}
	}
	if calls.Load() != int64(len(inv.Machines)) {
		t.Fatalf("rendered %d times for %d machines", calls.Load(), len(inv.Machines))
	}
	bad := NewIgnitionCache(func(m *Machine) ([]byte, error) { return nil, fmt.Errorf("no pool %s", m.Pool) })
	if err := bad.Prerender(inv.Machines, 2); err == nil || !strings.Contains(err.Error(), "no pool") {
		t.Fatalf("render failure: %v", err)
	}
}

func TestRunServesAndFlushes(t *testing.T) {
	inv := testInventory(t)
	st := statetest.NewEmpty()
	svc := newTestService(t, inv, st, nil)
	armForTest(t, svc, st, Arm{MAC: inv.Machines[0].MAC})
	rec := svc.Recorder()
	var flushes atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	cfg := Config{
		HTTP:     HTTPConfig{BaseURL: "http://kiln.test", Inventory: inv, Enroll: svc, Recorder: rec},
		HTTPAddr: "127.0.0.1:0", FlushEvery: 10 * time.Millisecond,
		Flush: func() error { flushes.Add(1); return rec.Flush(st) },
	}
	go func() { done <- Run(ctx, cfg, func(a Addrs) { ready <- a }) }()
	var a Addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + a.HTTP.String() + "/ipxe?mac=52:54:00:00:00:01")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	for rec.Dirty() && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	// Run flushes on every tick, dirty or not (the service reads the arms again then).
	for n := flushes.Load(); flushes.Load() < n+2 && ctx.Err() == nil; {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if flushes.Load() < 3 {
		t.Fatalf("flushed %d times: want one on every tick while running and one on the way out", flushes.Load())
	}
	recs, err := LoadRecords(st)
	if err != nil || len(recs) != 1 || recs[0].Name != "demo-control-plane-0" || recs[0].Steps[StepScript].Count != 1 {
		t.Fatalf("records in the store: %+v %v", recs, err)
	}
	// A restarted server starts from what was kept.
	again := NewRecorder(nil)
	if err := again.Load(st); err != nil {
		t.Fatal(err)
	}
	again.Observe(&inv.Machines[0], StepScript, "debian")
	if r, _ := again.Get(inv.Machines[0].MAC); r.Steps[StepScript].Count != 2 {
		t.Fatalf("count after restart %+v", r)
	}
}
