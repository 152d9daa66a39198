package converge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/health"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
	"github.com/kiln-dev/kiln/sshexec/sshexectest"
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

// sshd stands for the machines' SSH servers as a prober hears them: every running machine answers
// (its server proves its pinned host key; TestSSHProbe checks that part with a real server), except
// those in silent, whose first boot has not got that far.
type sshd struct {
	mu     sync.Mutex
	silent map[string]bool
}

func (s *sshd) Probe(_ context.Context, m provisioner.Machine) converge.Seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := !s.silent[m.Name]
	return converge.Seen{SSH: &ok}
}

func (s *sshd) silence(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent = map[string]bool{}
	for _, n := range names {
		s.silent[n] = true
	}
}

type harness struct {
	mem   *providertest.Memory
	store *memStore
	clk   *clock
	sshd  *sshd
}

func newHarness() *harness {
	clk := newClock()
	return &harness{mem: providertest.NewMemory(clk.now), store: &memStore{}, clk: clk, sshd: &sshd{}}
}

// executor is an executor whose machines answer over SSH (h.sshd) once they run.
func (h *harness) executor(d reconcile.Desired, p reconcile.Policy) *converge.Executor {
	return &converge.Executor{
		Provider: h.mem.New(), Desired: d, Policy: p, Ignition: ignition, Store: h.store, Now: h.clk.now, Prober: h.sshd,
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

// TestProbes judges machines by real probes: an SSH server on loopback (sshexectest) stands for a
// node's sshd, and proves the host key pinned for the machine.
func TestProbes(t *testing.T) {
	hostKey := sshexectest.NewKey(t)
	srv := sshexectest.Start(t, sshexectest.Config{HostKeys: []ssh.Signer{hostKey}})
	var addr atomic.Value
	addr.Store(srv.Addr)
	h := newHarness()
	d := reconcile.Desired{Cluster: "kt", Groups: []reconcile.Group{
		{Pool: "workers", Role: v1alpha1.RoleWorker, Count: 1, Image: "img-1", MaxUnavailable: 1},
	}}
	e := h.executor(d, reconcile.Policy{})
	e.Health = health.Policy{UnhealthyTimeout: time.Minute}
	e.Prober = converge.TCPProber{
		Endpoint: func(provisioner.Machine, int) string { return addr.Load().(string) },
		HostKeys: func(context.Context, provisioner.Machine) ([]ssh.PublicKey, error) {
			return []ssh.PublicKey{hostKey.PublicKey()}, nil
		},
	}
	h.pass(t, e)
	if r := h.pass(t, e); !r.Converged(d) {
		t.Fatalf("with SSH answering: %+v", r.Verdicts)
	}
	addr.Store(closedPort(t))
	h.clk.advance(30 * time.Second)
	r := h.pass(t, e)
	if v := r.Verdicts["kt-workers-0"]; !v.Healthy || v.Ready {
		t.Fatalf("SSH down for less than the timeout: %+v, want healthy and not ready", v)
	}
	h.clk.advance(61 * time.Second) // the failure counts from the pass that first saw it
	r = h.pass(t, e)
	if v := r.Verdicts["kt-workers-0"]; v.Healthy || !strings.Contains(v.Reason, "ssh unanswered") {
		t.Fatalf("SSH down for longer than the timeout: %+v, want unhealthy", v)
	}
	if len(r.Actions) != 1 || r.Actions[0].Machine != "kt-workers-1" {
		t.Fatalf("actions %+v, want the create of kt-workers-1", r.Actions)
	}
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
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

// TestJoinedOnlyOnceAnswered: a machine is ready, counted and told Joined only once it answered: its
// Node is Ready, or (only while the cluster's Nodes cannot be read) its SSH server proved its pinned
// host key. Powered on, it is neither, however long it runs; nothing that cannot be heard is failed.
func TestJoinedOnlyOnceAnswered(t *testing.T) {
	all := []string{"kt-control-plane-0", "kt-workers-0"}
	for _, tc := range []struct {
		name string
		// setup wires the executor and keeps the machines from answering; answer makes them answer,
		// nil when nothing can.
		setup       func(h *harness, e *converge.Executor, k *kube) (answer func())
		wantReason  string
		wantJoinBy  string
		wantUnheard bool
	}{
		{
			name: "no prober, no API: powered on is not up",
			setup: func(h *harness, e *converge.Executor, _ *kube) func() {
				e.Prober = nil
				return nil
			},
			wantReason:  "unheard: no Node of its name can be read and no SSH probe runs, so nothing has answered for it",
			wantUnheard: true,
		},
		{
			name: "no prober, the API does not answer: powered on is not up",
			setup: func(h *harness, e *converge.Executor, k *kube) func() {
				e.Prober, e.Nodes, k.down = nil, k, errors.New("dial tcp: lookup api.kt.kiln.internal: no such host")
				return func() { k.down = nil }
			},
			wantReason:  "unheard: no Node of its name can be read and no SSH probe runs, so nothing has answered for it",
			wantJoinBy:  "its Node is Ready",
			wantUnheard: true,
		},
		{
			name: "no prober, the API answers: joined once the Node is Ready",
			setup: func(h *harness, e *converge.Executor, k *kube) func() {
				e.Prober, e.Nodes, k.noNode = nil, k, all
				return func() { k.noNode = nil }
			},
			wantReason: "starting: no Ready Node yet (no Node of this name, or the cluster's API does not answer)",
			wantJoinBy: "its Node is Ready",
		},
		{
			name: "SSH probe, no API: joined once SSH answers with the pinned host key",
			setup: func(h *harness, _ *converge.Executor, _ *kube) func() {
				h.sshd.silence(all...)
				return func() { h.sshd.silence() }
			},
			wantReason: "starting: ssh unanswered (no SSH server proved its pinned host key)",
			wantJoinBy: "it answered over SSH with its pinned host key",
		},
		{
			name: "SSH answers, the API answers: SSH is not enough, the Node is",
			setup: func(h *harness, e *converge.Executor, k *kube) func() {
				e.Nodes, k.noNode = k, all
				return func() { k.noNode = nil }
			},
			wantReason: "starting: no Ready Node yet (no Node of this name, or the cluster's API does not answer)",
			wantJoinBy: "its Node is Ready",
		},
		{
			name: "SSH answers, the API does not and a Node is required (--kubeconfig): the Node",
			setup: func(h *harness, e *converge.Executor, k *kube) func() {
				e.Nodes, e.RequireNodes, k.down = k, true, errors.New("connection refused")
				return func() { k.down = nil }
			},
			wantReason: "starting: no Ready Node yet (no Node of this name, or the cluster's API does not answer)",
			wantJoinBy: "its Node is Ready",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness()
			j := &joiner{Provider: h.mem.New(), calls: map[string]int{}}
			d := desired(1)
			e := h.executor(d, reconcile.Policy{})
			e.Provider = j
			k := &kube{mem: h.mem}
			answer := tc.setup(h, e, k)
			h.pass(t, e) // creates: the machines run from now on
			// A slow first boot: passes within the startup timeout; then, where nothing can answer,
			// an hour later too.
			for i := range 4 {
				h.clk.advance(3 * time.Minute)
				if i == 3 {
					if !tc.wantUnheard {
						break
					}
					h.clk.advance(time.Hour)
				}
				r, err := e.Pass(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if len(j.calls) != 0 {
					t.Fatalf("Joined called for %v before the machines answered", j.calls)
				}
				if r.Unheard != tc.wantUnheard {
					t.Errorf("report: unheard %v, want %v", r.Unheard, tc.wantUnheard)
				}
				for _, name := range all {
					if v := r.Verdicts[name]; v.Ready || !v.Healthy || v.Reason != tc.wantReason {
						t.Fatalf("%s: %+v, want not ready: %s", name, v, tc.wantReason)
					}
				}
				if tc.wantUnheard && len(r.Actions) != 0 {
					t.Fatalf("actions %s on machines nothing can be heard of, want none", ops(r))
				}
				if r.Converged(d) {
					t.Fatal("converged before any machine answered")
				}
			}
			if answer == nil {
				return
			}
			answer()
			r, err := e.Pass(t.Context()) // the first Joined of each machine fails (joiner), the next pass retries
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range r.Actions {
				if a.Op == "joined" && a.Reason != tc.wantJoinBy {
					t.Errorf("joined %s because %q, want %q", a.Machine, a.Reason, tc.wantJoinBy)
				}
			}
			if r := h.pass(t, e); !r.Converged(d) {
				t.Fatalf("not converged once the machines answered: %s", ops(r))
			}
			slices.Sort(j.joined)
			if !slices.Equal(j.joined, all) {
				t.Fatalf("joined %v, want %v", j.joined, all)
			}
		})
	}
}

// TestUnheardSaidOnce: a pass that can hear nothing of the machines says so once, with the hint of
// what to configure, and once again when they can be heard.
func TestUnheardSaidOnce(t *testing.T) {
	var log bytes.Buffer
	h := newHarness()
	k := &kube{mem: h.mem, down: errors.New("dial tcp: lookup api.kt.kiln.internal: no such host")}
	e := h.executor(desired(1), reconcile.Policy{})
	e.Prober, e.Nodes = nil, k
	e.Log = slog.New(slog.NewTextHandler(&log, nil))
	e.UnheardHint = "give --kubeconfig"
	for range 3 {
		h.pass(t, e)
	}
	const unheard = "no machine can be judged ready: no SSH probe runs and the cluster's Nodes cannot be read"
	if n := strings.Count(log.String(), unheard); n != 1 || !strings.Contains(log.String(), "give --kubeconfig") || !strings.Contains(log.String(), "no such host") {
		t.Fatalf("said %d times, want once with the hint and the API's error:\n%s", n, log.String())
	}
	k.down = nil
	h.pass(t, e)
	h.pass(t, e)
	if n := strings.Count(log.String(), "machines can be heard again"); n != 1 {
		t.Fatalf("said %d times that the machines can be heard again, want once:\n%s", n, log.String())
	}
}

// TestSSHProbe: only a server that proves the machine's pinned host key answers for it; nothing
// listening, another key, or a machine with no keys to check against, does not (and nor does a port
// that sends a banner alone: sshexec's TestProveHostKey). A refused key is said.
func TestSSHProbe(t *testing.T) {
	pinned, other := sshexectest.NewKey(t), sshexectest.NewKey(t)
	sshdAddr := sshexectest.Start(t, sshexectest.Config{HostKeys: []ssh.Signer{pinned}}).Addr
	impostor := sshexectest.Start(t, sshexectest.Config{HostKeys: []ssh.Signer{other}}).Addr
	keys := func(context.Context, provisioner.Machine) ([]ssh.PublicKey, error) {
		return []ssh.PublicKey{pinned.PublicKey()}, nil
	}
	for _, tc := range []struct {
		name     string
		addr     string
		hostKeys func(context.Context, provisioner.Machine) ([]ssh.PublicKey, error)
		want     bool
		warned   bool
	}{
		{name: "nothing listens", addr: closedPort(t), hostKeys: keys},
		{name: "sshd with the pinned key", addr: sshdAddr, hostKeys: keys, want: true},
		{name: "sshd with another key", addr: impostor, hostKeys: keys, warned: true},
		{name: "no report yet", addr: sshdAddr, hostKeys: func(context.Context, provisioner.Machine) ([]ssh.PublicKey, error) {
			return nil, fmt.Errorf("kt-workers-0: %w", provisioner.ErrNoHostKeys)
		}},
		{name: "a report that differs from the pin", addr: sshdAddr, warned: true, hostKeys: func(context.Context, provisioner.Machine) ([]ssh.PublicKey, error) {
			return nil, &hostkeys.MismatchError{Machine: "kt-workers-0"}
		}},
		{name: "no host keys to check against", addr: sshdAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			p := converge.TCPProber{Timeout: time.Second, Endpoint: func(provisioner.Machine, int) string { return tc.addr },
				HostKeys: tc.hostKeys, Log: slog.New(slog.NewTextHandler(&log, nil))}
			if got := *p.Probe(t.Context(), provisioner.Machine{Name: "kt-workers-0"}).SSH; got != tc.want {
				t.Fatalf("SSH probe = %v, want %v", got, tc.want)
			}
			if warned := strings.Contains(log.String(), "SSH probe refused: not the machine's pinned host keys"); warned != tc.warned {
				t.Errorf("warned %v, want %v:\n%s", warned, tc.warned, log.String())
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
