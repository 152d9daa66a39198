package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/onprem/pxe"
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

// testInventory3 is testInventory with one more worker.
const testInventory3 = testInventory + `  - name: demo-workers-1
    mac: 52:54:00:00:00:03
    role: worker
    pool: workers
`

func TestPXELoadAndGetMachines(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "machines.yaml", testInventory)
	code, _, errOut := kiln(t, dir, "get", "machines")
	if code == 0 || !strings.Contains(errOut, "kiln pxe load") {
		t.Fatalf("get machines before any inventory: %d %s", code, errOut)
	}
	if code, _, errOut := kiln(t, dir, "pxe", "arm", "demo-control-plane-0"); code == 0 || !strings.Contains(errOut, "kiln pxe load") {
		t.Fatalf("arm before any inventory: %d %s", code, errOut)
	}
	out := mustKiln(t, dir, "pxe", "load", "-i", "machines.yaml")
	if !strings.Contains(out, "loaded 2 machines, 1 groups, 1 profiles") {
		t.Fatalf("load said: %s", out)
	}
	out = mustKiln(t, dir, "get", "machines")
	want := regexp.MustCompile(`(?m)^NAME\s+MAC\s+ROLE\s+POOL\s+IP\s+PHASE\s+ENROLL\n` +
		`demo-control-plane-0\s+52:54:00:00:00:01\s+control-plane\s+control-plane\s+-\s+waiting\s+-\n` +
		`demo-workers-0\s+52:54:00:00:00:02\s+worker\s+workers\s+-\s+waiting\s+-\n$`)
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

	// Arms, by name or MAC, recorded and shown; an unknown machine is refused and nothing is armed.
	if code, _, errOut := kiln(t, dir, "pxe", "arm", "demo-workers-0", "demo-workers-9", "52:54:00:00:00:99"); code == 0 ||
		!strings.Contains(errOut, "demo-workers-9: no machine of that name or MAC in the inventory") || !strings.Contains(errOut, "52:54:00:00:00:99: no machine") {
		t.Fatalf("arm of unknown machines: %d %s", code, errOut)
	}
	if out := mustKiln(t, dir, "pxe", "arm", "demo-workers-0", "--for", "0"); !strings.Contains(out,
		"armed demo-workers-0 (52:54:00:00:00:02) until its config is fetched: its next network boot installs it") {
		t.Fatalf("arm said: %s", out)
	}
	if out := mustKiln(t, dir, "pxe", "arm", "52-54-00-00-00-01", "--for", "1ns"); !strings.Contains(out, "armed demo-control-plane-0 (52:54:00:00:00:01) until ") {
		t.Fatalf("arm said: %s", out)
	}
	views = nil
	if err := json.Unmarshal([]byte(mustKiln(t, dir, "get", "machines", "-o", "json")), &views); err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		want := map[string]string{"demo-control-plane-0": "arm expired", "demo-workers-0": "armed"}[v.Name]
		if v.Enroll != want || v.Arm == nil || v.Arm.By != "kiln pxe arm" {
			t.Errorf("%s: enroll %q, arm %+v; want %q by kiln pxe arm", v.Name, v.Enroll, v.Arm, want)
		}
	}
	if out := mustKiln(t, dir, "pxe", "disarm", "demo-workers-0"); !strings.Contains(out, "disarmed demo-workers-0") {
		t.Fatalf("disarm said: %s", out)
	}
	if out := mustKiln(t, dir, "get", "machines"); !regexp.MustCompile(`demo-workers-0\s.*waiting\s+-\n`).MatchString(out) {
		t.Fatalf("after disarm:\n%s", out)
	}

	// A bad inventory is refused with its line, and nothing is loaded.
	write(t, dir, "bad.yaml", strings.Replace(testInventory, "mac: 52:54:00:00:00:02", "mac: 52:54:00:00:00", 1))
	code, _, errOut = kiln(t, dir, "pxe", "load", "-i", "bad.yaml")
	if code == 0 || !strings.Contains(errOut, `bad.yaml:16:5: machines[1].mac: "52:54:00:00:00" is not an Ethernet MAC address`) {
		t.Fatalf("bad inventory: %d %s", code, errOut)
	}
}

func TestEnrollState(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	arm := &pxe.Arm{At: now.Add(-time.Hour)}
	lapsed := &pxe.Arm{At: now.Add(-time.Hour), Expires: now.Add(-time.Minute)}
	pending := &enroll.Ticket{Issued: now.Add(-time.Minute), Expires: now.Add(14 * time.Minute)}
	old := &enroll.Ticket{Issued: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)}
	spent := &enroll.Ticket{Issued: now.Add(-time.Minute), Expires: now.Add(time.Minute), Spent: &enroll.Attempt{At: now}}
	stolen := &enroll.Ticket{Issued: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour), Spent: &enroll.Attempt{At: now},
		Refused: []enroll.Attempt{{At: now, From: "10.0.0.9", Reason: enroll.ErrSpent.Error()}}}
	tests := []struct {
		name   string
		arm    *pxe.Arm
		ticket *enroll.Ticket
		want   string
	}{
		{name: "nothing", want: "-"},
		{name: "armed", arm: arm, want: "armed"},
		{name: "armed, lapsed", arm: lapsed, want: "arm expired"},
		{name: "armed after an old ticket", arm: arm, ticket: old, want: "armed"},
		{name: "armed again after a theft", arm: arm, ticket: stolen, want: "armed (possible theft)"},
		{name: "script given", arm: arm, ticket: pending, want: "pending"},
		{name: "config served", ticket: spent, want: "spent"},
		{name: "ticket expired", ticket: old, want: "expired"},
		{name: "stolen", ticket: stolen, want: "spent (possible theft)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := enrollState(tc.arm, tc.ticket, now); got != tc.want {
				t.Errorf("enrollState = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPXEListenAddr(t *testing.T) {
	tests := []struct {
		name    string
		o       pxeServeOptions
		want    string
		wantErr string
	}{
		{name: "--listen", o: pxeServeOptions{listen: "10.0.0.1:80", iface: "lo"}, want: "10.0.0.1:80"},
		{name: "--server-ip", o: pxeServeOptions{serverIP: "10.0.0.1"}, want: "10.0.0.1:8080"},
		{name: "--interface", o: pxeServeOptions{iface: "lo"}, want: "127.0.0.1:8080"},
		{name: "nothing", wantErr: "--interface is required: the boot network's interface, whose address kiln listens on (or pass --server-ip, or --listen ADDRESS:PORT)"},
		{name: "no such interface", o: pxeServeOptions{iface: "kiln-nonexistent0"}, wantErr: "--interface kiln-nonexistent0: "},
		{name: "bad --server-ip", o: pxeServeOptions{serverIP: "::1"}, wantErr: `--server-ip "::1": not an IPv4 address`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := listenAddr(tc.o)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("listenAddr = %q, %v; want an error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("listenAddr = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// pxeServer is 'kiln pxe serve' run in-process on loopback, with the real renderer.
type pxeServer struct {
	base   string
	log    *pxeLogBuffer
	done   chan error
	cancel context.CancelFunc
}

// startPXEServe initialises cluster demo in dir with testInventory3 and two assets, and serves it.
func startPXEServe(t *testing.T, dir string) *pxeServer {
	t.Helper()
	mustKiln(t, dir, "init", "demo", "--provider", "metal")
	write(t, dir, "machines.yaml", testInventory3)
	if err := os.MkdirAll(filepath.Join(dir, "assets"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "assets/vmlinuz", "kernel")
	write(t, dir, "assets/initrd.img", "initrd")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &pxeServer{base: "http://" + addr, log: &pxeLogBuffer{}, done: make(chan error, 1)}
	log, err := newLogger(s.log, "text", "info")
	if err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, s.cancel = context.WithCancel(context.Background())
	t.Cleanup(s.cancel)
	g := &globals{stateDir: filepath.Join(dir, "state"), out: io.Discard, errOut: s.log, log: log}
	go func() {
		s.done <- runPXEServe(ctx, g, pxeServeOptions{specPath: filepath.Join(dir, "cluster.yaml"), invPath: filepath.Join(dir, "machines.yaml"),
			listen: addr, baseURL: s.base, assets: filepath.Join(dir, "assets"), dhcpMode: "off", flushEvery: 20 * time.Millisecond,
			ticketTTL: enroll.DefaultTTL})
	}()
	for !strings.Contains(s.log.String(), "msg=serving") {
		select {
		case err := <-s.done:
			t.Fatalf("serve: %v\n%s", err, s.log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return s
}

// stop stops the server, which flushes its records.
func (s *pxeServer) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	if err := <-s.done; err != nil {
		t.Fatalf("serve: %v\n%s", err, s.log.String())
	}
}

// get fetches path (and query) from the loopback address from: 127.0.0.1 is the machine, another
// loopback address another host of the provisioning network.
func (s *pxeServer) get(t *testing.T, from, path string) (*http.Response, string) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	resp, err := c.Get(s.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// waitScript asks for the machine's script from from until the server has read its arm and answers
// with its Ignition URL (path and query).
func (s *pxeServer) waitScript(t *testing.T, from, mac string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, script := s.get(t, from, "/ipxe?mac="+mac)
		if u := regexp.MustCompile(`ignition\.config\.url=(\S+)`).FindStringSubmatch(script); u != nil {
			return strings.TrimPrefix(u[1], s.base)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no script with an Ignition URL for %s:\n%s\n%s", mac, script, s.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPXEServe runs 'kiln pxe serve' in-process on loopback with the real renderer: each armed
// machine gets its own script and its own, valid, Ignition (the metal provider's config when its
// arm carries one); boot steps end up in the state store for 'kiln get machines'.
func TestPXEServe(t *testing.T) {
	dir := t.TempDir()
	s := startPXEServe(t, dir)
	// demo-workers-0 was armed by the metal provider, with the config the provisioner rendered.
	g0 := &globals{stateDir: filepath.Join(dir, "state")}
	st, err := g0.openState()
	if err != nil {
		t.Fatal(err)
	}
	allocated := `{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/kiln-allocated","contents":{"source":"data:,demo-abc"}}]}}`
	if err := pxe.ArmMachine(st, pxe.Arm{MAC: "52:54:00:00:00:02", Cluster: "demo", Machine: "demo-workers-abc", By: pxe.ArmedByMetal,
		At: time.Now(), Config: []byte(allocated)}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	mustKiln(t, dir, "pxe", "arm", "demo-control-plane-0")
	for _, m := range []struct{ mac, name string }{{"52:54:00:00:00:01", "demo-control-plane-0"}, {"52:54:00:00:00:02", "demo-workers-0"}} {
		resp, cfg := s.get(t, "127.0.0.1", s.waitScript(t, "127.0.0.1", m.mac))
		if resp.StatusCode != 200 {
			t.Fatalf("ignition of %s: %d %s", m.name, resp.StatusCode, cfg)
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
	if resp, script := s.get(t, "127.0.0.1", "/ipxe?mac=52:54:00:00:00:99"); resp.StatusCode != 200 || script != pxe.NoBootScript {
		t.Fatalf("unknown machine: %d %s", resp.StatusCode, script)
	}
	s.stop(t)
	out := mustKiln(t, dir, "get", "machines")
	if n := len(regexp.MustCompile(`(?m) ignition\s+spent$`).FindAllString(out, -1)); n != 2 {
		t.Fatalf("get machines after serving:\n%s", out)
	}
}

// TestPXEServeAttacker plays an attacker on the provisioning network against a running 'kiln pxe
// serve': 127.0.0.1 is the machine's address, 127.0.0.2 the attacker's own, and the attacker also
// sends from 127.0.0.1, as one who took over the machine's address would.
func TestPXEServeAttacker(t *testing.T) {
	const (
		cp, w0, w1 = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"
		machine    = "127.0.0.1"
		attacker   = "127.0.0.2"
	)
	dir := t.TempDir()
	s := startPXEServe(t, dir)
	leaks := func(t *testing.T, what, body string) {
		t.Helper()
		for _, secret := range []string{"kiln-enroll-v1.", "ignition.config.url", "PRIVATE KEY", "token=", `"ignition"`} {
			if strings.Contains(body, secret) {
				t.Fatalf("%s gave away %q:\n%s", what, secret, body)
			}
		}
	}

	// (a) A control-plane MAC that is not armed: no request gives a config or a token.
	t.Run("not armed", func(t *testing.T) {
		for _, from := range []string{attacker, machine} {
			for _, path := range []string{
				"/ipxe?mac=" + cp, "/ipxe?mac=52-54-00-00-00-01&uuid=6a1e8e43-0000-4000-8000-000000000001&hostname=demo-control-plane-0",
				"/ipxe?mac=525400000001", "/boot.ipxe",
				"/ignition?mac=" + cp, "/ignition?mac=" + cp + "&token=", "/ignition?mac=" + cp + "&token=kiln-enroll-v1.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
				"/ignition?mac=" + cp + "&token=587bbfcd53975faa6bba0df849ee85fe", "/assets/vmlinuz?mac=" + cp,
			} {
				resp, body := s.get(t, from, path)
				leaks(t, fmt.Sprintf("GET %s from %s (%d)", path, from, resp.StatusCode), body)
				if strings.HasPrefix(path, "/ignition") && resp.StatusCode != http.StatusForbidden {
					t.Errorf("GET %s: %d, want 403", path, resp.StatusCode)
				}
			}
		}
	})

	// (b) Known MACs that are not armed and unknown MACs get the same answer, in about the same time.
	t.Run("no enumeration", func(t *testing.T) {
		macs := []string{cp, w0, "52:54:00:99:99:99", "02:00:00:00:00:01"}
		var first *http.Response
		var firstBody string
		took := make([][]time.Duration, len(macs))
		for round := range 100 {
			for i, mac := range macs {
				start := time.Now()
				resp, body := s.get(t, attacker, "/ipxe?mac="+mac)
				took[i] = append(took[i], time.Since(start))
				resp.Header.Del("Date")
				if round == 0 && first == nil {
					first, firstBody = resp, body
				}
				if resp.StatusCode != first.StatusCode || body != firstBody || !maps.EqualFunc(resp.Header, first.Header, slices.Equal) {
					t.Fatalf("%s: %d %v %q; %s: %d %v %q", mac, resp.StatusCode, resp.Header, body, macs[0], first.StatusCode, first.Header, firstBody)
				}
			}
		}
		medians := make([]time.Duration, len(macs))
		for i := range macs {
			slices.Sort(took[i])
			medians[i] = took[i][len(took[i])/2]
		}
		lo, hi := slices.Min(medians), slices.Max(medians)
		t.Logf("median time of /ipxe per MAC %v: %v", macs, medians)
		if hi-lo > max(lo/2, 500*time.Microsecond) {
			t.Errorf("known and unknown MACs differ in time: medians %v", medians)
		}
	})

	// (c) The attacker uses the machine's one-time URL first, from the machine's own address: it
	// gets the config (the theft), the machine's own fetch fails cleanly, and kiln shows the theft.
	mustKiln(t, dir, "pxe", "arm", "demo-control-plane-0", "demo-workers-0", "demo-workers-1")
	t.Run("stolen URL", func(t *testing.T) {
		u := s.waitScript(t, machine, cp)
		if resp, _ := s.get(t, attacker, u); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("the URL from another address: %d, want 403", resp.StatusCode)
		}
		if resp, cfg := s.get(t, machine, u); resp.StatusCode != 200 || !strings.Contains(cfg, "demo-control-plane-0") {
			t.Fatalf("the attacker at the machine's address, first: %d", resp.StatusCode)
		}
		resp, body := s.get(t, machine, u)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("the machine's own fetch after the theft: %d, want 403", resp.StatusCode)
		}
		leaks(t, "the refused fetch", body)
		// Disarmed: the machine's next boot installs nothing either.
		if _, script := s.get(t, machine, "/ipxe?mac="+cp); script != pxe.NoBootScript {
			t.Fatalf("script after the config was taken:\n%s", script)
		}
	})

	// (d) The machine fetches its config; the attacker, from elsewhere before and from the machine's
	// address after, gets nothing.
	t.Run("replay", func(t *testing.T) {
		u := s.waitScript(t, machine, w0)
		if resp, _ := s.get(t, attacker, u); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("the URL from another address: %d, want 403", resp.StatusCode)
		}
		if resp, cfg := s.get(t, machine, u); resp.StatusCode != 200 || !strings.Contains(cfg, "demo-workers-0") {
			t.Fatalf("the machine's fetch: %d", resp.StatusCode)
		}
		for _, from := range []string{machine, attacker} {
			resp, body := s.get(t, from, u)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("replay from %s: %d, want 403", from, resp.StatusCode)
			}
			leaks(t, "a replay", body)
		}
	})

	// A clean install is not a theft.
	t.Run("clean install", func(t *testing.T) {
		if resp, _ := s.get(t, machine, s.waitScript(t, machine, w1)); resp.StatusCode != 200 {
			t.Fatalf("the machine's fetch: %d", resp.StatusCode)
		}
	})
	s.stop(t)

	out := mustKiln(t, dir, "get", "machines")
	for _, want := range []string{
		`(?m)^demo-control-plane-0\s.*\signition\s+spent \(possible theft\)$`,
		`(?m)^demo-workers-0\s.*\signition\s+spent \(possible theft\)$`,
		`(?m)^demo-workers-1\s.*\signition\s+spent$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("get machines does not match %s:\n%s", want, out)
		}
	}
	var views []machineView
	if err := json.Unmarshal([]byte(mustKiln(t, dir, "get", "machines", "-o", "json")), &views); err != nil {
		t.Fatal(err)
	}
	refusals := map[string][]string{}
	for _, v := range views {
		if v.Ticket == nil || v.Ticket.Spent == nil || v.Ticket.Bind != machine {
			t.Fatalf("%s: ticket %+v", v.Name, v.Ticket)
		}
		if v.Steps[pxe.StepIgnition].Count != 1 {
			t.Errorf("%s: ignition step %+v, want the one config served", v.Name, v.Steps[pxe.StepIgnition])
		}
		for _, a := range v.Ticket.Refused {
			refusals[v.Name] = append(refusals[v.Name], a.From+": "+a.Reason)
		}
	}
	want := map[string][]string{
		"demo-control-plane-0": {attacker + ": " + enroll.ErrWrongAddress.Error(), machine + ": " + enroll.ErrSpent.Error()},
		"demo-workers-0": {attacker + ": " + enroll.ErrWrongAddress.Error(), machine + ": " + enroll.ErrSpent.Error(),
			attacker + ": " + enroll.ErrSpent.Error()},
	}
	if diff := cmp.Diff(want, refusals); diff != "" {
		t.Errorf("refused attempts in get machines -o json (-want +got):\n%s", diff)
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
