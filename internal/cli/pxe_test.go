package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"

	"github.com/kiln-dev/kiln/onprem/metal"
)

const testInventory = `apiVersion: kiln.dev/v1alpha1
kind: MachineInventory
profiles:
  - name: debian
    kernel: vmlinuz
    initrd: [initrd.img]
    args: [console=ttyS0]
groups:
  - name: all
    profile: debian
machines:
  - name: demo-control-plane-0
    mac: 52:54:00:00:00:01
    role: control-plane
  - name: demo-workers-0
    mac: 52:54:00:00:00:02
    role: worker
    pool: workers
    labels: {rack: r1}
`

func TestPXELoadAndGetMachines(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "machines.yaml", testInventory)
	code, _, errOut := kiln(t, dir, "get", "machines")
	if code == 0 || !strings.Contains(errOut, "kiln pxe load") {
		t.Fatalf("get machines before any inventory: %d %s", code, errOut)
	}
	out := mustKiln(t, dir, "pxe", "load", "-i", "machines.yaml")
	if !strings.Contains(out, "loaded 2 machines, 1 groups, 1 profiles") {
		t.Fatalf("load said: %s", out)
	}
	out = mustKiln(t, dir, "get", "machines")
	want := regexp.MustCompile(`(?m)^NAME\s+MAC\s+ROLE\s+POOL\s+IP\s+PHASE\n` +
		`demo-control-plane-0\s+52:54:00:00:00:01\s+control-plane\s+control-plane\s+-\s+waiting\n` +
		`demo-workers-0\s+52:54:00:00:00:02\s+worker\s+workers\s+-\s+waiting\n$`)
	if !want.MatchString(out) {
		t.Fatalf("get machines:\n%s", out)
	}
	if out := mustKiln(t, dir, "get", "machines", "-o", "wide"); !strings.Contains(out, "rack=r1") || !strings.Contains(out, "IGNITION") {
		t.Fatalf("-o wide:\n%s", out)
	}
	var views []machineView
	if err := json.Unmarshal([]byte(mustKiln(t, dir, "get", "machines", "-o", "json")), &views); err != nil || len(views) != 2 {
		t.Fatalf("-o json: %v %+v", err, views)
	}
	if out := mustKiln(t, dir, "get", "machines", "-o", "yaml"); !strings.Contains(out, `mac: "52:54:00:00:00:02"`) {
		t.Fatalf("-o yaml:\n%s", out)
	}
	if code, _, errOut := kiln(t, dir, "get", "machines", "-o", "xml"); code == 0 || !strings.Contains(errOut, "-o xml") {
		t.Fatalf("-o xml: %d %s", code, errOut)
	}

	// A bad inventory is refused with its line, and nothing is loaded.
	write(t, dir, "bad.yaml", strings.Replace(testInventory, "mac: 52:54:00:00:00:02", "mac: 52:54:00:00:00", 1))
	code, _, errOut = kiln(t, dir, "pxe", "load", "-i", "bad.yaml")
	if code == 0 || !strings.Contains(errOut, `bad.yaml:16:5: machines[1].mac: "52:54:00:00:00" is not an Ethernet MAC address`) {
		t.Fatalf("bad inventory: %d %s", code, errOut)
	}
}

// TestPXEServe runs 'kiln pxe serve' in-process on loopback with the real renderer: each machine gets
// its own script and its own, valid, Ignition; boot steps end up in the state store for 'kiln get
// machines'.
func TestPXEServe(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo", "--provider", "metal")
	write(t, dir, "machines.yaml", testInventory)
	if err := os.MkdirAll(filepath.Join(dir, "assets"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "assets/vmlinuz", "kernel")
	write(t, dir, "assets/initrd.img", "initrd")
	// demo-workers-0 was allocated by the metal provider, with the config the provisioner rendered.
	g0 := &globals{stateDir: filepath.Join(dir, "state")}
	st, err := g0.openState()
	if err != nil {
		t.Fatal(err)
	}
	allocated := `{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/kiln-allocated","contents":{"source":"data:,demo-abc"}}]}}`
	if err := st.Put(metal.BucketMachines, "demo-workers-abc", metal.Allocation{Name: "demo-workers-abc", Cluster: "demo",
		MAC: "52:54:00:00:00:02", Ignition: []byte(allocated)}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	base := "http://" + addr

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut pxeLogBuffer
	log, err := newLogger(&errOut, "text", "info")
	if err != nil {
		t.Fatal(err)
	}
	g := &globals{stateDir: filepath.Join(dir, "state"), out: io.Discard, errOut: &errOut, log: log}
	done := make(chan error, 1)
	go func() {
		done <- runPXEServe(ctx, g, pxeServeOptions{specPath: filepath.Join(dir, "cluster.yaml"), invPath: filepath.Join(dir, "machines.yaml"),
			listen: addr, baseURL: base, assets: filepath.Join(dir, "assets"), dhcpMode: "off", flushEvery: 20 * time.Millisecond})
	}()
	for !strings.Contains(errOut.String(), "msg=serving") {
		select {
		case err := <-done:
			t.Fatalf("serve: %v\n%s", err, errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, m := range []struct{ mac, name string }{{"52:54:00:00:00:01", "demo-control-plane-0"}, {"52:54:00:00:00:02", "demo-workers-0"}} {
		code, script := get("/ipxe?mac=" + m.mac)
		if code != 200 {
			t.Fatalf("script of %s: %d %s", m.name, code, script)
		}
		u := regexp.MustCompile(`ignition\.config\.url=(\S+)`).FindStringSubmatch(script)
		if u == nil {
			t.Fatalf("no ignition URL:\n%s", script)
		}
		code, cfg := get(strings.TrimPrefix(u[1], base))
		if code != 200 {
			t.Fatalf("ignition of %s: %d %s", m.name, code, cfg)
		}
		if _, _, err := v3_5.Parse([]byte(cfg)); err != nil {
			t.Fatalf("ignition of %s does not parse: %v", m.name, err)
		}
		if m.name == "demo-workers-0" {
			if cfg != allocated {
				t.Fatalf("allocated machine got %s", cfg)
			}
		} else if !strings.Contains(cfg, m.name) {
			t.Fatalf("ignition of %s does not name it", m.name)
		}
	}
	if code, _ := get("/ipxe?mac=52:54:00:00:00:99"); code != 404 {
		t.Fatalf("unknown machine: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v\n%s", err, errOut.String())
	}
	out := mustKiln(t, dir, "get", "machines")
	if n := strings.Count(out, " ignition\n"); n != 2 {
		t.Fatalf("get machines after serving:\n%s", out)
	}
}

// pxeLogBuffer is a bytes.Buffer safe for the server's logger and the test to share.
type pxeLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *pxeLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *pxeLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
