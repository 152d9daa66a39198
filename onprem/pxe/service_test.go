package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/state/statetest"
)

// fakeClock is a Clock that the test moves: every After is handed to the test on waits, which fires
// it when it likes.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits chan fakeWait
}

type fakeWait struct {
	d    time.Duration
	fire chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, waits: make(chan fakeWait, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	w := fakeWait{d: d, fire: make(chan time.Time, 1)}
	c.waits <- w
	return w.fire
}

// next waits for the service to wait, and returns how long it waits for.
func (c *fakeClock) next(t *testing.T) fakeWait {
	t.Helper()
	select {
	case w := <-c.waits:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("the service never waited")
		return fakeWait{}
	}
}

// pass moves the clock past w and fires it.
func (c *fakeClock) pass(w fakeWait) {
	c.mu.Lock()
	c.now = c.now.Add(w.d)
	now := c.now
	c.mu.Unlock()
	w.fire <- now
}

// tokenRenderer renders configs that name their machine and the token they were rendered with: the
// nth call to the renderer makes token n, which expires ttl after the time it was made. It fails
// while fail is set.
type tokenRenderer struct {
	ttl   time.Duration
	calls atomic.Int64
	fail  atomic.Bool
	// renders counts the configs rendered.
	renders atomic.Int64
	// nows are the times it was called at.
	mu   sync.Mutex
	nows []time.Time
}

var errNoSecrets = errors.New("cluster demo: no secrets")

func (r *tokenRenderer) render(st Store, now time.Time) (RenderFunc, time.Time, error) {
	r.mu.Lock()
	r.nows = append(r.nows, now)
	r.mu.Unlock()
	if r.fail.Load() {
		return nil, time.Time{}, errNoSecrets
	}
	n := r.calls.Add(1)
	return func(m *Machine) ([]byte, error) {
		r.renders.Add(1)
		return fmt.Appendf(nil, `{"node":%q,"token":%d}`, m.Name, n), nil
	}, now.Add(r.ttl), nil
}

// countingOpen opens st, counting how often.
func countingOpen(st Store, opens *atomic.Int64) func() (Store, error) {
	return func() (Store, error) {
		opens.Add(1)
		return st, nil
	}
}

// ignitionOf arms the machine if it is not, and returns the config its ticket gives.
func ignitionOf(t *testing.T, s *Service, st Store, m *Machine) string {
	t.Helper()
	if _, ok, _ := GetArm(st, m.MAC); !ok {
		armForTest(t, s, st, Arm{MAC: m.MAC})
	}
	from := netip.MustParseAddr("10.0.0.7")
	token, ok, err := s.Issue(context.Background(), m, from)
	if err != nil || !ok {
		t.Fatalf("Issue(%s) = %v, %v", m.Name, ok, err)
	}
	cfg, err := s.Spend(context.Background(), m, token, from)
	if err != nil {
		t.Fatalf("Spend(%s): %v", m.Name, err)
	}
	return string(cfg)
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestServiceLoad(t *testing.T) {
	inv := testInventory(t)
	m0, m1 := &inv.Machines[0], &inv.Machines[1]
	seen := t0.Add(-time.Hour)
	st := statetest.NewFixed(t, statetest.Values{
		// A record from an earlier run, with the address the machine was leased.
		BucketRecords: {m0.MAC: Record{MAC: m0.MAC, Name: m0.Name, IP: "10.0.0.150",
			Steps: map[Step]StepRecord{StepDHCP: {First: seen, Last: seen, Count: 1, Detail: "10.0.0.150 ipxe"}}}},
		// m1 was armed by the metal provider, with its own config.
		BucketArms: {m1.MAC: Arm{MAC: m1.MAC, Cluster: "demo", Machine: "demo-workers-abc", By: ArmedByMetal, At: seen,
			Config: []byte(`{"allocated":true}`)}},
	})
	leases, err := NewLeases(net.ParseIP("10.0.0.100"), net.ParseIP("10.0.0.200"))
	if err != nil {
		t.Fatal(err)
	}
	var opens atomic.Int64
	r := &tokenRenderer{ttl: time.Hour}
	s := NewService(ServiceConfig{Cluster: "demo", Inventory: inv, Open: countingOpen(st, &opens), Renderer: r.render,
		Leases: leases, Clock: newFakeClock(t0)})
	if err := s.Load(); err != nil {
		t.Fatalf("Load: %v", err)
	}
	// Every config was rendered at Load, not on a machine's first request.
	if n := r.renders.Load(); n != int64(len(inv.Machines)) {
		t.Errorf("Load rendered %d configs for %d machines", n, len(inv.Machines))
	}

	if got, err := LoadInventory(st); err != nil || len(got.Machines) != len(inv.Machines) {
		t.Errorf("inventory in the store: %v, %v", got, err)
	}
	if rec, ok := s.Recorder().Get(m0.MAC); !ok || rec.Steps[StepDHCP].Count != 1 {
		t.Errorf("record of %s after Load: %+v, %v; want the stored one", m0.Name, rec, ok)
	}
	if ip, ok := leases.Leased(m0.MAC); !ok || !ip.Equal(net.ParseIP("10.0.0.150")) {
		t.Errorf("lease of %s after Load: %v, %v; want the recorded address back", m0.Name, ip, ok)
	}
	// Only the armed machine may install; m0 is not armed.
	if _, ok, err := s.Issue(context.Background(), m0, netip.MustParseAddr("10.0.0.7")); ok || err != nil {
		t.Errorf("Issue for %s, not armed = %v, %v; want nothing", m0.Name, ok, err)
	}
	if got := ignitionOf(t, s, st, m1); got != `{"allocated":true}` {
		t.Errorf("config of the allocated %s = %s, want its allocated one", m1.Name, got)
	}
	if got, want := ignitionOf(t, s, st, m0), `{"node":"demo-control-plane-0","token":1}`; got != want {
		t.Errorf("config of %s once armed = %s, want %s", m0.Name, got, want)
	}
	if n := r.calls.Load(); n != 1 {
		t.Errorf("renderer made %d times, want once", n)
	}
	if r.nows[0] != t0 {
		t.Errorf("renderer called at %v, want the clock's %v", r.nows[0], t0)
	}
	if opens.Load() == 0 || int64(st.Closes()) != opens.Load() {
		t.Errorf("store opened %d times, closed %d: the service must let it go", opens.Load(), st.Closes())
	}
	if arms, err := LoadArms(st); err != nil || len(arms) != 0 {
		t.Errorf("arms after both configs were served: %v, %v; want none", arms, err)
	}
}

func TestServiceFlush(t *testing.T) {
	inv := testInventory(t)
	m0, m1 := &inv.Machines[0], &inv.Machines[1]
	st := statetest.NewEmpty()
	var opens atomic.Int64
	r := &tokenRenderer{ttl: time.Hour}
	clock := newFakeClock(t0)
	s := NewService(ServiceConfig{Cluster: "demo", Inventory: inv, Open: countingOpen(st, &opens), Renderer: r.render, Clock: clock})
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	s.Recorder().Observe(m0, StepScript, "debian")
	// The metal provider arms m1 while the server runs: the service knows of it once it flushed.
	if err := ArmMachine(st, Arm{MAC: m1.MAC, Machine: "demo-workers-abc", By: ArmedByMetal, At: t0, Config: []byte(`{"allocated":true}`)}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Issue(context.Background(), m1, netip.MustParseAddr("10.0.0.7")); ok || err != nil {
		t.Errorf("Issue before the service read the arm = %v, %v", ok, err)
	}
	if err := s.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	recs, err := LoadRecords(st)
	if err != nil || len(recs) != 1 || recs[0].MAC != m0.MAC || !recs[0].Steps[StepScript].Last.Equal(t0) {
		t.Errorf("records in the store after Flush: %+v, %v", recs, err)
	}
	if got := ignitionOf(t, s, st, m1); got != `{"allocated":true}` {
		t.Errorf("config of %s after it was armed = %s", m1.Name, got)
	}
	// Disarmed by hand ('kiln pxe disarm') after the last Flush: the store is the truth.
	if err := ArmMachine(st, Arm{MAC: m1.MAC, By: ArmedByCLI, At: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := Disarm(st, m1.MAC); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Issue(context.Background(), m1, netip.MustParseAddr("10.0.0.7")); ok || err != nil {
		t.Errorf("Issue after a disarm the service has not read yet = %v, %v", ok, err)
	}
	if int64(st.Closes()) != opens.Load() {
		t.Errorf("store opened %d times, closed %d", opens.Load(), st.Closes())
	}
}

// TestServiceRenew moves the clock by hand: the configs are rendered again when half their token's
// lifetime has passed, and a renewal that fails keeps the configs in use and is tried again.
func TestServiceRenew(t *testing.T) {
	inv := testInventory(t)
	m0 := &inv.Machines[0]
	st := statetest.NewEmpty()
	var opens atomic.Int64
	r := &tokenRenderer{ttl: time.Hour}
	clock := newFakeClock(t0)
	var logs syncBuffer
	s := NewService(ServiceConfig{Cluster: "demo", Inventory: inv, Open: countingOpen(st, &opens), Renderer: r.render, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Renew(ctx); close(done) }()

	// Token 1 expires at t0+1h: renewed at half of it, and a second.
	w := clock.next(t)
	if want := 30*time.Minute + time.Second; w.d != want {
		t.Fatalf("first wait %v, want %v", w.d, want)
	}
	if got := ignitionOf(t, s, st, m0); !strings.Contains(got, `"token":1`) {
		t.Fatalf("config before renewal: %s", got)
	}
	r.fail.Store(true)
	clock.pass(w)

	// The renewal fails: logged, token 1 kept, tried again at half of what is left of it.
	w = clock.next(t)
	if want := (30*time.Minute-time.Second)/2 + time.Second; w.d != want {
		t.Errorf("wait after a failed renewal %v, want %v", w.d, want)
	}
	if got := ignitionOf(t, s, st, m0); !strings.Contains(got, `"token":1`) {
		t.Errorf("config after a failed renewal: %s, want token 1 kept", got)
	}
	if !strings.Contains(logs.String(), "renew bootstrap token") || !strings.Contains(logs.String(), errNoSecrets.Error()) {
		t.Errorf("a failed renewal was not logged with its error:\n%s", logs.String())
	}
	r.fail.Store(false)
	clock.pass(w)

	// Renewed: token 2, made at the clock's time, and the next wait is from its expiry.
	w = clock.next(t)
	if want := 30*time.Minute + time.Second; w.d != want {
		t.Errorf("wait after a renewal %v, want %v", w.d, want)
	}
	if got := ignitionOf(t, s, st, m0); !strings.Contains(got, `"token":2`) {
		t.Errorf("config after renewal: %s, want token 2", got)
	}
	r.mu.Lock()
	last := r.nows[len(r.nows)-1]
	r.mu.Unlock()
	if want := t0.Add(30*time.Minute + time.Second + (30*time.Minute-time.Second)/2 + time.Second); !last.Equal(want) {
		t.Errorf("renewal rendered at %v, want the clock's %v", last, want)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Renew did not return when its context was done")
	}
	if int64(st.Closes()) != opens.Load() {
		t.Errorf("store opened %d times, closed %d", opens.Load(), st.Closes())
	}
}

func TestRenewAfter(t *testing.T) {
	tests := []struct {
		name    string
		left    time.Duration
		wantGap time.Duration
	}{
		{name: "fresh token", left: time.Hour, wantGap: 30*time.Minute + time.Second},
		{name: "a day", left: 24 * time.Hour, wantGap: 12*time.Hour + time.Second},
		{name: "about to expire", left: 2 * time.Second, wantGap: 2 * time.Second},
		{name: "expired", left: -time.Minute, wantGap: -29 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := RenewAfter(t0, t0.Add(tc.left)); got != tc.wantGap {
				t.Errorf("RenewAfter(%v left) = %v, want %v", tc.left, got, tc.wantGap)
			}
		})
	}
}

// TestServiceStoreErrors: a state store that cannot be opened or fails is reported with what the
// service was doing, never swallowed.
func TestServiceStoreErrors(t *testing.T) {
	inv := testInventory(t)
	errDisk := errors.New("input/output error")
	r := &tokenRenderer{ttl: time.Hour}
	tests := []struct {
		name string
		open func() (Store, error)
		call func(s *Service) error
		want string
	}{
		{name: "load, store locked", open: func() (Store, error) { return nil, errDisk },
			call: (*Service).Load, want: "pxe: state store: input/output error"},
		{name: "load, store broken", open: func() (Store, error) { return statetest.Broken{Err: errDisk}, nil },
			call: (*Service).Load, want: "pxe: save inventory: input/output error"},
		{name: "flush, store broken", open: func() (Store, error) { return statetest.Broken{Err: errDisk}, nil },
			call: func(s *Service) error {
				s.Recorder().Observe(&inv.Machines[0], StepScript, "debian")
				return s.Flush()
			}, want: "pxe: boot record " + inv.Machines[0].MAC + ": input/output error\npxe: arms: input/output error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewService(ServiceConfig{Cluster: "demo", Inventory: inv, Open: tc.open, Renderer: r.render, Clock: newFakeClock(t0)})
			err := tc.call(s)
			if !errors.Is(err, errDisk) || err.Error() != tc.want {
				t.Errorf("error = %q, want %q", err, tc.want)
			}
		})
	}

	// The renderer's own error is returned as it is: it names its subject.
	r.fail.Store(true)
	s := NewService(ServiceConfig{Cluster: "demo", Inventory: inv, Open: countingOpen(statetest.NewEmpty(), &atomic.Int64{}), Renderer: r.render,
		Clock: newFakeClock(t0)})
	if err := s.Load(); !errors.Is(err, errNoSecrets) {
		t.Errorf("Load with a failing renderer = %v, want its error", err)
	}
	if err := NewService(ServiceConfig{Cluster: "demo", Inventory: inv}).Load(); err == nil {
		t.Error("Load without a store or renderer succeeded")
	}
}

// TestServiceServe runs the service on loopback: a machine gets its script and its config, its boot
// steps reach the store, and the store is let go between uses.
func TestServiceServe(t *testing.T) {
	inv := testInventory(t)
	st := statetest.NewEmpty()
	var opens atomic.Int64
	r := &tokenRenderer{ttl: time.Hour}
	clock := newFakeClock(time.Now())
	s := NewService(ServiceConfig{Cluster: "demo", Inventory: inv, Open: countingOpen(st, &opens), Renderer: r.render, Clock: clock})
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	armForTest(t, s, st, Arm{MAC: inv.Machines[0].MAC})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- s.Serve(ctx, Config{HTTP: HTTPConfig{BaseURL: "http://kiln.test", Inventory: inv},
			HTTPAddr: "127.0.0.1:0", FlushEvery: 10 * time.Millisecond}, func(a Addrs) { ready <- a })
	}()
	var a Addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + a.HTTP.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		return string(body)
	}
	script := get("/ipxe?mac=" + inv.Machines[0].MAC)
	u := regexp.MustCompile(`ignition\.config\.url=http://kiln\.test(\S+)`).FindStringSubmatch(script)
	if u == nil {
		t.Fatalf("no ignition URL in the script:\n%s", script)
	}
	if cfg := get(u[1]); cfg != `{"node":"demo-control-plane-0","token":1}` {
		t.Errorf("config served: %s", cfg)
	}
	// The renewal waits on the clock meanwhile.
	if w := clock.next(t); w.d != 30*time.Minute+time.Second {
		t.Errorf("renewal waits %v", w.d)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	recs, err := LoadRecords(st)
	if err != nil || len(recs) != 1 || recs[0].Steps[StepIgnition].Count != 1 {
		t.Errorf("records in the store after serving: %+v, %v", recs, err)
	}
	if int64(st.Closes()) != opens.Load() {
		t.Errorf("store opened %d times, closed %d", opens.Load(), st.Closes())
	}
}

// syncBuffer is a bytes.Buffer that the service's logger and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
