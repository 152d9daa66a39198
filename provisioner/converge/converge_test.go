package converge_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/health"
	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
)

// memStore keeps the memory as JSON, as a real store would, so that what is saved must survive a
// round trip.
type memStore struct {
	mu     sync.Mutex
	data   []byte
	onSave func()
}

func (s *memStore) Load(context.Context) (converge.Memory, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m converge.Memory
	if s.data == nil {
		return m, nil
	}
	err := json.Unmarshal(s.data, &m)
	return m, err
}

func (s *memStore) Save(_ context.Context, m converge.Memory) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.data = b
	s.mu.Unlock()
	if s.onSave != nil {
		s.onSave()
	}
	return nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time                                  { return c.t }
func (c *clock) advance(d time.Duration)                         { c.t = c.t.Add(d) }
func newClock() *clock                                           { return &clock{t: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)} }
func ignition(context.Context, reconcile.Create) ([]byte, error) { return []byte(`{}`), nil }

func desired(workers int) reconcile.Desired {
	return reconcile.Desired{Cluster: "kt", Groups: []reconcile.Group{
		{Pool: provisioner.ControlPlanePool, Role: v1alpha1.RoleControlPlane, Count: 1, Image: "img-1"},
		{Pool: "workers", Role: v1alpha1.RoleWorker, Count: workers, Image: "img-1", MaxUnavailable: 1},
	}}
}

type harness struct {
	mem   *providertest.Memory
	store *memStore
	clk   *clock
}

func newHarness() *harness {
	clk := newClock()
	return &harness{mem: providertest.NewMemory(clk.now), store: &memStore{}, clk: clk}
}

func (h *harness) executor(d reconcile.Desired, p reconcile.Policy) *converge.Executor {
	return &converge.Executor{
		Provider: h.mem.New(), Desired: d, Policy: p, Ignition: ignition, Store: h.store, Now: h.clk.now,
	}
}

func (h *harness) pass(t *testing.T, e *converge.Executor) converge.Report {
	t.Helper()
	r, err := e.Pass(t.Context())
	if err != nil {
		t.Fatalf("Pass: %v", err)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("Pass actions: %v", err)
	}
	return r
}

func (h *harness) names() []string {
	var out []string
	for _, m := range h.mem.Machines() {
		out = append(out, m.Name)
	}
	return out
}

func TestCreatesThenConverges(t *testing.T) {
	h := newHarness()
	d := desired(2)
	e := h.executor(d, reconcile.Policy{})
	r := h.pass(t, e)
	if len(r.Actions) != 3 || r.Converged(d) {
		t.Fatalf("first pass: actions %v, converged %v; want 3 creates, not converged", r.Actions, r.Converged(d))
	}
	r = h.pass(t, e)
	if !r.Converged(d) || len(r.Actions) != 0 {
		t.Fatalf("second pass: actions %v, converged %v; want none, converged", r.Actions, r.Converged(d))
	}
	want := "kt-control-plane-0 kt-workers-0 kt-workers-1"
	if got := strings.Join(h.names(), " "); got != want {
		t.Fatalf("machines = %s, want %s", got, want)
	}
}

func TestReplacesAFailedMachine(t *testing.T) {
	h := newHarness()
	d := desired(3)
	e := h.executor(d, reconcile.Policy{})
	h.pass(t, e)
	h.mem.SetState("kt-workers-1", provisioner.StateError)
	h.clk.advance(time.Minute)

	r := h.pass(t, e)
	if len(r.Actions) != 1 || r.Actions[0].Op != "create" || r.Actions[0].Machine != "kt-workers-3" {
		t.Fatalf("pass after failure: %+v, want one create of kt-workers-3", r.Actions)
	}
	r = h.pass(t, e)
	if len(r.Actions) != 1 || r.Actions[0].Op != "delete" || r.Actions[0].Machine != "kt-workers-1" {
		t.Fatalf("pass after replacement: %+v, want the delete of kt-workers-1", r.Actions)
	}
	if r = h.pass(t, e); !r.Converged(d) {
		t.Fatalf("not converged: %+v", r.Plan)
	}
	want := "kt-control-plane-0 kt-workers-0 kt-workers-2 kt-workers-3"
	if got := strings.Join(h.names(), " "); got != want {
		t.Fatalf("machines = %s, want %s", got, want)
	}
}

func TestTooManyUnhealthyReplacesNothing(t *testing.T) {
	h := newHarness()
	d := desired(5)
	e := h.executor(d, reconcile.Policy{MaxUnhealthy: "40%"})
	h.pass(t, e)
	for _, n := range []string{"kt-workers-0", "kt-workers-1", "kt-workers-2"} {
		h.mem.SetState(n, provisioner.StateStopped)
	}
	r := h.pass(t, e)
	if len(r.Actions) != 0 {
		t.Fatalf("3 of 5 unhealthy with maxUnhealthy 40%%: actions %+v, want none", r.Actions)
	}
	if len(r.Plan.Blocked) == 0 || !strings.Contains(r.Plan.Blocked[0].Reason, "unhealthy") {
		t.Fatalf("plan does not say why it holds back: %+v", r.Plan.Blocked)
	}
}

// TestKilledMidReplacement stops a pass right after it stored its memory, before it acted, as a
// controller killed at the worst moment; a new executor with the same store converges to exactly the
// desired machines.
func TestKilledMidReplacement(t *testing.T) {
	h := newHarness()
	d := desired(2)
	h.pass(t, h.executor(d, reconcile.Policy{}))
	h.mem.SetState("kt-workers-0", provisioner.StateError)

	ctx, kill := context.WithCancel(t.Context())
	h.store.onSave = kill
	e := h.executor(d, reconcile.Policy{})
	if r, err := e.Pass(ctx); err != nil || r.Err() == nil {
		t.Fatalf("killed pass: err %v, actions %+v; want actions failing on the cancelled context", err, r.Actions)
	}
	h.store.onSave = nil

	restarted := h.executor(d, reconcile.Policy{})
	for i := 0; i < 5; i++ {
		if r := h.pass(t, restarted); r.Converged(d) {
			want := "kt-control-plane-0 kt-workers-1 kt-workers-2"
			if got := strings.Join(h.names(), " "); got != want {
				t.Fatalf("machines = %s, want %s", got, want)
			}
			return
		}
	}
	t.Fatalf("not converged after 5 passes: %v", h.names())
}

// TestProbes judges machines by real TCP probes: a listener on loopback stands for a node's SSH port.
func TestProbes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-test\r\n"))
			c.Close()
		}
	}()
	h := newHarness()
	d := reconcile.Desired{Cluster: "kt", Groups: []reconcile.Group{
		{Pool: "workers", Role: v1alpha1.RoleWorker, Count: 1, Image: "img-1", MaxUnavailable: 1},
	}}
	e := h.executor(d, reconcile.Policy{})
	e.Health = health.Policy{UnhealthyTimeout: time.Minute}
	e.Prober = converge.TCPProber{Endpoint: func(provisioner.Machine, int) string { return ln.Addr().String() }}
	h.pass(t, e)
	if r := h.pass(t, e); !r.Converged(d) {
		t.Fatalf("with SSH answering: %+v", r.Verdicts)
	}
	ln.Close()
	h.clk.advance(30 * time.Second)
	r := h.pass(t, e)
	if v := r.Verdicts["kt-workers-0"]; !v.Healthy || v.Ready {
		t.Fatalf("SSH down for less than the timeout: %+v, want healthy and not ready", v)
	}
	h.clk.advance(61 * time.Second) // the failure counts from the pass that first saw it
	r = h.pass(t, e)
	if v := r.Verdicts["kt-workers-0"]; v.Healthy || !strings.Contains(v.Reason, "ssh port unreachable") {
		t.Fatalf("SSH down for longer than the timeout: %+v, want unhealthy", v)
	}
	if len(r.Actions) != 1 || r.Actions[0].Machine != "kt-workers-1" {
		t.Fatalf("actions %+v, want the create of kt-workers-1", r.Actions)
	}
}

func TestMemoryOfAnotherVersion(t *testing.T) {
	h := newHarness()
	h.store.data = []byte(`{"version":2}`)
	_, err := h.executor(desired(1), reconcile.Policy{}).Pass(t.Context())
	if err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("err = %v, want one about version 2", err)
	}
}

func TestBoundedConcurrency(t *testing.T) {
	h := newHarness()
	var mu sync.Mutex
	inFlight, most := 0, 0
	release := make(chan struct{})
	var once sync.Once
	e := h.executor(desired(9), reconcile.Policy{})
	e.Concurrency = 3
	e.Ignition = func(ctx context.Context, c reconcile.Create) ([]byte, error) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		full := inFlight == 3
		mu.Unlock()
		if full {
			once.Do(func() { close(release) })
		}
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
		return []byte(`{}`), nil
	}
	h.pass(t, e)
	if most != 3 {
		t.Fatalf("at most %d creates at once, want 3", most)
	}
	if n := len(h.mem.Machines()); n != 10 {
		t.Fatalf("%d machines, want 10", n)
	}
}

// joiner is the reference provider with a Joined that fails the first time for each machine.
type joiner struct {
	provisioner.Provider
	mu     sync.Mutex
	calls  map[string]int
	joined []string
}

func (j *joiner) Joined(_ context.Context, name string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls[name]++
	if j.calls[name] == 1 {
		return errors.New("transient")
	}
	j.joined = append(j.joined, name)
	return nil
}

func TestJoinedOnceUpRetriedUntilItWorks(t *testing.T) {
	h := newHarness()
	j := &joiner{Provider: h.mem.New(), calls: map[string]int{}}
	d := desired(1)
	e := h.executor(d, reconcile.Policy{})
	e.Provider = j
	if _, err := e.Pass(t.Context()); err != nil { // creates
		t.Fatal(err)
	}
	r, err := e.Pass(t.Context()) // ready: Joined fails once each
	if err != nil || r.Err() == nil {
		t.Fatalf("pass: %v, actions %+v; want the Joined failures", err, r.Actions)
	}
	for range 3 {
		if _, err := e.Pass(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(j.joined)
	if got := strings.Join(j.joined, " "); got != "kt-control-plane-0 kt-workers-0" {
		t.Fatalf("joined %q, want each machine exactly once", got)
	}
}

// TestSSHProbeNeedsBanner: a port that accepts connections but says nothing (a forwarded port with no
// sshd behind it yet) does not count as SSH up; one that sends the SSH banner does.
func TestSSHProbeNeedsBanner(t *testing.T) {
	for _, tc := range []struct {
		name   string
		banner string
		want   bool
	}{
		{"silent", "", false},
		{"not ssh", "HTTP/1.1 400 Bad Request\r\n", false},
		{"sshd", "SSH-2.0-OpenSSH_9.2p1\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(tc.banner))
				c.Close()
			}()
			p := converge.TCPProber{Timeout: time.Second, Endpoint: func(provisioner.Machine, int) string { return ln.Addr().String() }}
			if got := *p.Probe(t.Context(), provisioner.Machine{}).SSH; got != tc.want {
				t.Fatalf("SSH probe = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDeletedHook: Deleted is told of each machine the provider deleted, and only of those; its error
// is the delete action's.
func TestDeletedHook(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hookErr   error
		keep      bool // KeepFailed: the failed machine is stopped, not deleted
		wantCalls []string
		wantErr   string
	}{
		{name: "a replaced machine", wantCalls: []string{"kt-workers-1"}},
		{name: "the hook fails", hookErr: errors.New("state store locked"), wantCalls: []string{"kt-workers-1"},
			wantErr: "converge: delete kt-workers-1: deleted, but: state store locked"},
		{name: "a machine kept for forensics is not deleted", keep: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness()
			d := desired(2)
			e := h.executor(d, reconcile.Policy{KeepFailed: tc.keep})
			var (
				mu    sync.Mutex
				calls []string
			)
			e.Deleted = func(_ context.Context, name string) error {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, name)
				return tc.hookErr
			}
			h.pass(t, e)
			h.mem.SetState("kt-workers-1", provisioner.StateError)
			h.clk.advance(time.Minute)
			h.pass(t, e) // the replacement
			r, err := e.Pass(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			gotErr := ""
			if err := r.Err(); err != nil {
				gotErr = err.Error()
			}
			if !strings.Contains(gotErr, tc.wantErr) || (tc.wantErr == "") != (gotErr == "") {
				t.Errorf("actions' error = %q, want %q", gotErr, tc.wantErr)
			}
			if !slices.Equal(calls, tc.wantCalls) {
				t.Errorf("Deleted called for %v, want %v", calls, tc.wantCalls)
			}
		})
	}
}
