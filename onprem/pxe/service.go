package pxe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/state"
)

// Store is what the boot service needs of the state store: the inventory, boot records and arms it
// keeps, the enrollment tickets it issues and spends, and what its Renderer reads and writes (a
// cluster's secrets and bootstrap tokens).
type Store interface {
	state.Reader
	state.Putter
	state.Creator
	state.Modifier
	state.Deleter
	Close() error
}

// Clock is the time the boot service reads and waits on; tests pass one they move by hand.
type Clock interface {
	Now() time.Time
	// After is time.After.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Renderer makes the function that renders the machines' configs, with a bootstrap token that st
// holds or that it makes and stores at now, and says when that token expires.
type Renderer func(st Store, now time.Time) (render RenderFunc, expires time.Time, err error)

// ServiceConfig holds what a Service is made of.
type ServiceConfig struct {
	// Cluster is the cluster the Renderer renders for; an Arm that names no cluster is this one's.
	Cluster string
	// Inventory is the machines that boot; it replaces the inventory in the state store.
	Inventory *Inventory
	// Open opens the state store. The service holds it only while it reads or writes, so that
	// others ('kiln get machines', 'kiln pxe arm', the metal provider) can open it while the server
	// runs.
	Open func() (Store, error)
	// Renderer renders the inventory machines' configs: at Load, and again before their token runs
	// out. An armed machine whose Arm carries no config gets the one rendered for it.
	Renderer Renderer
	// TicketTTL is how long the Ignition URL of a script can be used. Defaults to
	// enroll.DefaultTTL.
	TicketTTL time.Duration
	// Leases, when set, get back the addresses the boot records hold.
	Leases *Leases
	// Workers is how many configs Load renders at once. Defaults to GOMAXPROCS.
	Workers int
	// Clock defaults to the system's.
	Clock  Clock
	Logger *slog.Logger
}

// Service is the boot server's state: the machines' configs, rendered ahead and rendered again with a
// fresh bootstrap token before the one in them runs out, the machines armed to install, the boot
// records, and the enrollment tickets, all kept in the state store, which it opens only briefly and
// one use at a time. It is the Enroller of the HTTP side. Safe for concurrent use.
type Service struct {
	cfg ServiceConfig
	rec *Recorder

	// storeMu makes this process open the state store once at a time.
	storeMu sync.Mutex

	mu      sync.RWMutex
	cache   *IgnitionCache
	expires time.Time
	// arms are the arms in the store as last read, without their configs: which machines to look
	// up in the store when they ask for a script.
	arms map[string]Arm
}

// NewService returns a service over cfg; Load it before serving.
func NewService(cfg ServiceConfig) *Service {
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Workers < 1 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, rec: NewRecorder(cfg.Clock.Now)}
}

// Recorder is the service's boot records.
func (s *Service) Recorder() *Recorder { return s.rec }

// Load reads everything from the state store at once, and lets it go: it stores the inventory, loads
// the boot records (and gives the leases back their addresses), and makes the renderer. Then it
// renders every machine's config, so that one that cannot be rendered is reported now, and reads the
// arms.
func (s *Service) Load() error {
	if s.cfg.Cluster == "" || s.cfg.Inventory == nil || s.cfg.Open == nil || s.cfg.Renderer == nil {
		return errors.New("pxe: service: cluster, inventory, state store and renderer are required")
	}
	var (
		render  RenderFunc
		expires time.Time
	)
	err := s.withStore(func(st Store) error {
		if err := SaveInventory(st, s.cfg.Inventory); err != nil {
			return err
		}
		if err := s.rec.Load(st); err != nil {
			return err
		}
		if s.cfg.Leases != nil {
			for _, r := range s.rec.Snapshot() {
				if r.IP != "" {
					s.cfg.Leases.Restore(r.MAC, net.ParseIP(r.IP))
				}
			}
		}
		var err error
		render, expires, err = s.cfg.Renderer(st, s.cfg.Clock.Now())
		return err
	})
	if err != nil {
		return err
	}
	cache := NewIgnitionCache(render)
	start := s.cfg.Clock.Now()
	if err := cache.Prerender(s.cfg.Inventory.Machines, s.cfg.Workers); err != nil {
		return err
	}
	s.cfg.Logger.Info("rendered ignition", "machines", len(s.cfg.Inventory.Machines),
		"took", s.cfg.Clock.Now().Sub(start).Round(time.Millisecond))
	s.mu.Lock()
	s.cache, s.expires = cache, expires
	s.mu.Unlock()
	return s.withStore(s.reloadArms)
}

// Issue implements Enroller: when the machine is armed, a new enrollment ticket for its config (the
// arm's, else the one rendered for it), bound to from, replacing any earlier one. The arm is read
// from the store, so a machine disarmed since the last Flush gets nothing.
func (s *Service) Issue(ctx context.Context, m *Machine, from netip.Addr) (string, bool, error) {
	now := s.cfg.Clock.Now()
	s.mu.RLock()
	a, armed := s.arms[m.MAC]
	cache := s.cache
	s.mu.RUnlock()
	if !armed || !a.Active(now) {
		return "", false, nil
	}
	var token string
	err := s.withStore(func(st Store) error {
		var err error
		if a, armed, err = GetArm(st, m.MAC); err != nil || !armed || !a.Active(now) {
			armed = false
			return err
		}
		ref, cfg := TicketRef{Cluster: cmp.Or(a.Cluster, s.cfg.Cluster), Machine: m.Name, Armed: a.At}, a.Config
		if len(cfg) > 0 {
			ref.Machine = cmp.Or(a.Machine, m.Name)
		} else if cfg, err = cache.Ignition(ctx, m); err != nil {
			return err
		}
		token, _, err = enroll.Issue(st, enroll.Issuing{Cluster: ref.Cluster, Machine: ref.Machine, Config: cfg,
			TTL: s.cfg.TicketTTL, Bind: from, Now: now})
		if err != nil {
			return err
		}
		s.rec.Issued(m, ref)
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("pxe: script of %s: %w", m.Name, err)
	}
	return token, armed, nil
}

// Spend implements Enroller: it spends the ticket of the machine's last script and, when that gives
// the config, disarms the machine (unless it was armed again since the ticket was issued). A machine
// that was never given a ticket is refused without opening the store.
func (s *Service) Spend(_ context.Context, m *Machine, token string, from netip.Addr) ([]byte, error) {
	ref, ok := s.rec.Ticket(m.MAC)
	if !ok {
		return nil, fmt.Errorf("pxe: ignition of %s: %w", m.Name, enroll.ErrNoTicket)
	}
	var cfg []byte
	err := s.withStore(func(st Store) error {
		var err error
		if cfg, err = enroll.Spend(st, ref.Cluster, ref.Machine, token, from, s.cfg.Clock.Now()); err != nil {
			return err
		}
		a, armed, err := GetArm(st, m.MAC)
		if err == nil && armed && a.At.Equal(ref.Armed) {
			err = Disarm(st, m.MAC)
		}
		if err != nil {
			// The config is spent: it goes to the machine all the same.
			s.cfg.Logger.Error("a config was served, but its machine is still armed: run 'kiln pxe disarm "+m.Name+"'",
				"machine", m.Name, "err", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pxe: ignition of %s: %w", m.Name, err)
	}
	s.mu.Lock()
	if a, ok := s.arms[m.MAC]; ok && a.At.Equal(ref.Armed) {
		delete(s.arms, m.MAC)
	}
	s.mu.Unlock()
	return cfg, nil
}

// Flush writes the boot records changed since the last flush and reads the arms again.
func (s *Service) Flush() error {
	return s.withStore(func(st Store) error {
		return errors.Join(s.rec.Flush(st), s.reloadArms(st))
	})
}

// Renew renders the configs again, with a fresh bootstrap token, before the one in them runs out
// (RenewAfter), until ctx is done. A renewal that fails is logged, the configs in use are kept, and
// it is tried again after the next wait.
func (s *Service) Renew(ctx context.Context) {
	for {
		s.mu.RLock()
		wait := RenewAfter(s.cfg.Clock.Now(), s.expires)
		s.mu.RUnlock()
		select {
		case <-ctx.Done():
			return
		case <-s.cfg.Clock.After(wait):
		}
		var (
			render  RenderFunc
			expires time.Time
		)
		err := s.withStore(func(st Store) error {
			var err error
			render, expires, err = s.cfg.Renderer(st, s.cfg.Clock.Now())
			return err
		})
		if err != nil {
			s.cfg.Logger.Error("renew bootstrap token", "err", err)
			continue
		}
		next := NewIgnitionCache(render)
		if err := next.Prerender(s.cfg.Inventory.Machines, 1); err != nil {
			s.cfg.Logger.Error("render ignition", "err", err)
			continue
		}
		s.mu.Lock()
		s.cache, s.expires = next, expires
		s.mu.Unlock()
	}
}

// RenewAfter is how long configs whose token expires at expires are served before they are
// rendered again: half the time the token has left, and a second, so that a renewal never hands out
// a token with less than half its lifetime left and a failed one is retried before the token is gone.
func RenewAfter(now, expires time.Time) time.Duration {
	return expires.Sub(now)/2 + time.Second
}

// Serve runs the boot server cfg describes (Run) with the service as its Enroller and its boot
// records, flushing through the service, and renews the configs, until ctx is done.
func (s *Service) Serve(ctx context.Context, cfg Config, ready func(Addrs)) error {
	cfg.HTTP.Enroll = s
	cfg.HTTP.Recorder = s.rec
	cfg.Flush = s.Flush
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { s.Renew(ctx) })
	return Run(ctx, cfg, ready)
}

func (s *Service) reloadArms(st Store) error {
	arms, err := LoadArms(st)
	if err != nil {
		return err
	}
	for mac, a := range arms {
		a.Config = nil
		arms[mac] = a
	}
	s.mu.Lock()
	s.arms = arms
	s.mu.Unlock()
	return nil
}

// withStore opens the state store, calls fn, and closes the store.
func (s *Service) withStore(fn func(st Store) error) error {
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	st, err := s.cfg.Open()
	if err != nil {
		return fmt.Errorf("pxe: state store: %w", err)
	}
	err = fn(st)
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("pxe: close state store: %w", cerr)
	}
	return err
}
