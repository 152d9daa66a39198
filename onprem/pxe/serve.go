package pxe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// Config is a whole boot server: HTTP always, DHCP and TFTP when asked for.
type Config struct {
	HTTP HTTPConfig
	// HTTPAddr is the HTTP listen address: the boot network's address, such as "10.0.0.1:8080".
	HTTPAddr string
	// TLSCert and TLSKey, when set, serve HTTPS.
	TLSCert, TLSKey string
	// MaxHTTPConns caps the HTTP connections open at once; further clients wait to be accepted.
	// Defaults to MaxHTTPConns.
	MaxHTTPConns int

	// DHCP is off when Mode is empty.
	DHCP Policy
	// DHCPInterface is the interface DHCP listens on (required with DHCP).
	DHCPInterface string
	// DHCPAddr overrides the DHCP listen address (default 0.0.0.0:67).
	DHCPAddr *net.UDPAddr
	// Leases of full mode.
	Leases *Leases

	// TFTPAddr is the TFTP listen address (":69"); empty turns TFTP off.
	TFTPAddr string

	// Flush writes the recorder's changed records (Service.Flush also reads the arms again); Run
	// calls it every FlushEvery and on the way out.
	Flush      func() error
	FlushEvery time.Duration

	Logger *slog.Logger
}

// Addrs are the addresses a running server listens on.
type Addrs struct {
	HTTP net.Addr
	TFTP net.Addr
}

// Run serves until ctx is done, then shuts down and flushes the records. ready, when set, is called
// once every listener is open.
func Run(ctx context.Context, cfg Config, ready func(Addrs)) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.HTTP.Logger = log
	if cfg.Leases != nil && cfg.HTTP.Leases == nil {
		cfg.HTTP.Leases = cfg.Leases
	}
	boot, err := NewBoot(cfg.HTTP)
	if err != nil {
		return err
	}
	defer boot.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			cancel()
		}
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("pxe: http: %w", err)
	}
	ln = netutil.LimitListener(ln, cmp.Or(cfg.MaxHTTPConns, MaxHTTPConns))
	hs := NewHTTPServer(cfg.HTTPAddr, boot)
	hs.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	wg.Go(func() {
		var err error
		if cfg.TLSCert != "" {
			err = hs.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			err = hs.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			fail(fmt.Errorf("pxe: http: %w", err))
		}
	})
	addrs := Addrs{HTTP: ln.Addr()}

	var ts *TFTP
	if cfg.TFTPAddr != "" {
		pc, err := net.ListenPacket("udp4", cfg.TFTPAddr)
		if err != nil {
			cancel()
			_ = hs.Close()
			wg.Wait()
			return fmt.Errorf("pxe: tftp: %w", err)
		}
		ts = NewTFTP(cfg.HTTP.IPXEDir, cfg.HTTP.Inventory, cfg.Leases, cfg.HTTP.Recorder, log)
		addrs.TFTP = pc.LocalAddr()
		wg.Go(func() { fail(ts.Serve(pc)) })
	}

	var ds *DHCPServer
	if cfg.DHCP.Mode != "" {
		ds, err = NewDHCPServer(cfg.DHCPInterface, cfg.DHCPAddr, cfg.DHCP, cfg.HTTP.Inventory, cfg.Leases, cfg.HTTP.Recorder, log)
		if err != nil {
			fail(err)
		} else {
			wg.Go(func() {
				err := ds.Serve()
				if ctx.Err() == nil {
					fail(fmt.Errorf("pxe: dhcp: %w", err))
				}
			})
		}
	}
	if ctx.Err() == nil && ready != nil {
		ready(addrs)
	}

	every := cfg.FlushEvery
	if every <= 0 {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			if cfg.Flush != nil {
				if err := cfg.Flush(); err != nil {
					log.Warn("flush boot records (will retry)", "err", err)
				}
			}
		}
	}
	shut, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = hs.Shutdown(shut)
	if ts != nil {
		ts.Shutdown()
	}
	if ds != nil {
		_ = ds.Close()
	}
	wg.Wait()
	if cfg.Flush != nil {
		if err := cfg.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("pxe: flush boot records: %w", err))
		}
	}
	return errors.Join(errs...)
}
