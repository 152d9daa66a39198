package pxe

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

type bootFixture struct {
	srv    *httptest.Server
	rec    *Recorder
	inv    *Inventory
	key    []byte
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
	f := &bootFixture{rec: NewRecorder(nil), inv: inv, key: []byte("0123456789abcdef0123456789abcdef"), assets: assets, calls: calls}
	boot, err := NewBoot(HTTPConfig{BaseURL: "http://kiln.test", Inventory: inv, Ignition: NewIgnitionCache(fakeRender(calls)),
		Recorder: f.rec, URLKey: f.key, AssetsDir: assets, IPXEDir: ipxeDir, Leases: leases})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { boot.Close() })
	f.srv = httptest.NewServer(boot)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *bootFixture) do(t *testing.T, method, path string, hdr ...string) (*http.Response, string) {
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestBootHTTP(t *testing.T) {
	f := newBootFixture(t, nil)
	w0, w1 := "52:54:00:00:00:02", "52:54:00:00:00:03"
	tok0 := Token(f.key, w0)
	tests := []struct {
		name, method, path string
		want               int
		contains           string
	}{
		{name: "chain script", method: "GET", path: "/boot.ipxe", want: 200, contains: "chain http://kiln.test/ipxe?mac=${mac:hexhyp}"},
		{name: "HEAD of the chain script", method: "HEAD", path: "/boot.ipxe", want: 200},
		{name: "machine script", method: "GET", path: "/ipxe?mac=52-54-00-00-00-02&uuid=x", want: 200, contains: "ignition.config.url=http://kiln.test/ignition?mac=52%3A54%3A00%3A00%3A00%3A02&token=" + tok0},
		{name: "unknown MAC", method: "GET", path: "/ipxe?mac=52:54:00:99:99:99", want: 404},
		{name: "no MAC", method: "GET", path: "/ipxe", want: 404},
		{name: "own ignition", method: "GET", path: "/ignition?mac=" + w0 + "&token=" + tok0, want: 200, contains: "data:,demo-workers-0"},
		{name: "another machine's ignition with my token", method: "GET", path: "/ignition?mac=" + w1 + "&token=" + tok0, want: 403},
		{name: "ignition without token", method: "GET", path: "/ignition?mac=" + w0, want: 403},
		{name: "ignition of an unknown machine", method: "GET", path: "/ignition?mac=52:54:00:99:99:99&token=" + tok0, want: 404},
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
		{name: "POST", method: "POST", path: "/ignition?mac=" + w0 + "&token=" + tok0, want: 405},
		{name: "DELETE", method: "DELETE", path: "/boot.ipxe", want: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(t, tc.method, tc.path)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: %d, want %d\n%s", tc.method, tc.path, resp.StatusCode, tc.want, body)
			}
			if tc.want == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow: %q", resp.Header.Get("Allow"))
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("body lacks %q:\n%s", tc.contains, body)
			}
			if strings.Contains(body, "secret") && tc.want != 200 {
				t.Errorf("leaked the file outside the assets")
			}
		})
	}
}

func TestBootRecordsAndRanges(t *testing.T) {
	f := newBootFixture(t, nil)
	mac := "52:54:00:00:00:03"
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

func TestIgnitionBoundToLease(t *testing.T) {
	mac := "52:54:00:00:00:02"
	// The machine was leased another address than the one asking (127.0.0.1): refused.
	f := newBootFixture(t, fixedLeases{mac: net.IPv4(10, 77, 0, 100)})
	if resp, _ := f.do(t, "GET", "/ignition?mac="+mac+"&token="+Token(f.key, mac)); resp.StatusCode != 403 {
		t.Fatalf("config served to an address the machine was not leased: %d", resp.StatusCode)
	}
	g := newBootFixture(t, fixedLeases{mac: net.IPv4(127, 0, 0, 1)})
	if resp, _ := g.do(t, "GET", "/ignition?mac="+mac+"&token="+Token(g.key, mac)); resp.StatusCode != 200 {
		t.Fatalf("config refused to its own address: %d", resp.StatusCode)
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
	rec := NewRecorder(nil)
	st := statetest.NewEmpty()
	var flushes atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	cfg := Config{
		HTTP: HTTPConfig{BaseURL: "http://kiln.test", Inventory: inv, Ignition: NewIgnitionCache(fakeRender(&atomic.Int64{})),
			Recorder: rec, URLKey: bytes.Repeat([]byte{1}, 32)},
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
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if flushes.Load() < 2 {
		t.Fatalf("flushed %d times: want at least one while running and one on the way out", flushes.Load())
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
