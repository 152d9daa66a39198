package pxe

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/state"
)

// Store is what the boot service needs of the state store: the inventory and boot records it keeps,
// the URL key it reads or makes once, and what its Renderer reads and writes (a cluster's secrets and
// bootstrap tokens).
type Store interface {
	state.Reader
	state.Putter
	state.Creator
	state.Modifier
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
	// Inventory is the machines that boot; it replaces the inventory in the state store.
	Inventory *Inventory
	// Open opens the state store. The service holds it only while it reads or writes, so that
	// others ('kiln get machines', the metal provider) can open it while the server runs.
	Open func() (Store, error)
	// Renderer renders the machines' configs: at Load, and again before their token runs out.
	Renderer Renderer
	// Allocated, when set, returns by MAC the configs to serve in place of the rendered ones (the
	// metal provider's allocations: metal.AllocatedIgnition). It is read at Load and on every Flush,
	// and its errors are returned as they are.
	Allocated func(st state.Reader) (map[string][]byte, error)
	// Leases, when set, get back the addresses the boot records hold.
	Leases *Leases
	// Random fills a new URL key. Defaults to crypto/rand.
	Random func([]byte) error
	// Workers is how many configs Load renders at once. Defaults to GOMAXPROCS.
	Workers int
	// Clock defaults to the system's.
	Clock  Clock
	Logger *slog.Logger
}

// Service is the boot server's state: the machines' configs, rendered ahead and rendered again with a
// fresh bootstrap token before the one in them runs out, the configs the metal provider allocated,
// the boot records, and the URL key, all kept in the state store, which it opens only briefly. It is
// the IgnitionSource of the HTTP side. Safe for concurrent use.
type Service struct {
	cfg ServiceConfig
	rec *Recorder
	key []byte

	mu        sync.RWMutex
	cache     *IgnitionCache
	allocated map[string][]byte
	expires   time.Time
}

// NewService returns a service over cfg; Load it before serving.
func NewService(cfg ServiceConfig) *Service {
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Random == nil {
		cfg.Random = func(b []byte) error { _, err := rand.Read(b); return err }
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

// URLKey is the secret that signs the machines' Ignition URLs; set by Load.
func (s *Service) URLKey() []byte { return s.key }

// Load reads everything from the state store at once, and lets it go: it stores the inventory,
// reads or makes the URL key, loads the boot records (and gives the leases back their addresses), and
// makes the renderer. Then it renders every machine's config, and reads the allocated configs.
func (s *Service) Load() error {
	if s.cfg.Inventory == nil || s.cfg.Open == nil || s.cfg.Renderer == nil {
		return errors.New("pxe: service: inventory, state store and renderer are required")
	}
	var (
		render  RenderFunc
		expires time.Time
	)
	err := s.withStore(func(st Store) error {
		if err := SaveInventory(st, s.cfg.Inventory); err != nil {
			return err
		}
		key, err := URLKey(st, s.cfg.Random)
		if err != nil {
			return err
		}
		if err := s.rec.Load(st); err != nil {
			return err
		}
		s.key = key
		if s.cfg.Leases != nil {
			for _, r := range s.rec.Snapshot() {
				if r.IP != "" {
					s.cfg.Leases.Restore(r.MAC, net.ParseIP(r.IP))
				}
			}
		}
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
	return s.withStore(s.reloadAllocated)
}

// Ignition implements IgnitionSource: a machine's allocated config if it has one, else the config
// rendered for it.
func (s *Service) Ignition(ctx context.Context, m *Machine) ([]byte, error) {
	s.mu.RLock()
	cfg, ok := s.allocated[m.MAC]
	cache := s.cache
	s.mu.RUnlock()
	if ok {
		return cfg, nil
	}
	if cache == nil {
		return nil, fmt.Errorf("pxe: ignition for %s: the service is not loaded", m.Name)
	}
	return cache.Ignition(ctx, m)
}

// Flush writes the boot records changed since the last flush and reads the allocated configs again
// (a machine's DHCP answer is flushed long before its kernel asks for Ignition).
func (s *Service) Flush() error {
	return s.withStore(func(st Store) error {
		return errors.Join(s.rec.Flush(st), s.reloadAllocated(st))
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

// Serve runs the boot server cfg describes (Run) with the service's configs, boot records and URL
// key, flushing through the service, and renews the configs, until ctx is done.
func (s *Service) Serve(ctx context.Context, cfg Config, ready func(Addrs)) error {
	cfg.HTTP.Ignition = s
	cfg.HTTP.Recorder = s.rec
	cfg.HTTP.URLKey = s.key
	cfg.Flush = s.Flush
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { s.Renew(ctx) })
	return Run(ctx, cfg, ready)
}

func (s *Service) reloadAllocated(st Store) error {
	if s.cfg.Allocated == nil {
		return nil
	}
	allocated, err := s.cfg.Allocated(st)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.allocated = allocated
	s.mu.Unlock()
	return nil
}

// withStore opens the state store, calls fn, and closes the store.
func (s *Service) withStore(fn func(st Store) error) error {
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
