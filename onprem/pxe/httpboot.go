package pxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"strings"

	"github.com/kiln-dev/kiln/bootstrap/enroll"
)

// Enroller gives a machine that may install now a one-time enrollment ticket for its config
// (bootstrap/enroll), and spends it.
type Enroller interface {
	// Issue returns the token of a new ticket for m's config, which only from may spend, or false
	// when m may not install now.
	Issue(ctx context.Context, m *Machine, from netip.Addr) (token string, ok bool, err error)
	// Spend returns m's config for token, fetched from from, once. A refusal wraps one of
	// bootstrap/enroll's errors (enroll.ErrNoTicket, ErrBadToken, ErrSpent, ErrExpired,
	// ErrWrongAddress); any other error is the server's.
	Spend(ctx context.Context, m *Machine, token string, from netip.Addr) ([]byte, error)
}

// LeaseLookup tells the address leased to a MAC, when this server leases addresses.
type LeaseLookup interface {
	Leased(mac string) (net.IP, bool)
}

// HTTPConfig configures the HTTP side of the boot server.
type HTTPConfig struct {
	// BaseURL is how machines reach this server: scheme://host[:port], no trailing slash.
	BaseURL   string
	Inventory *Inventory
	// Enroll decides which machines may install now and keeps their one-time tickets.
	Enroll   Enroller
	Recorder *Recorder
	// AssetsDir holds kernels and initrds, served under /assets/.
	AssetsDir string
	// IPXEDir holds the iPXE binaries, served under /ipxe/ for UEFI HTTP boot clients.
	IPXEDir string
	// Leases, when set, ties each machine's script, and so its ticket, to the address it was leased.
	Leases LeaseLookup
	Logger *slog.Logger
}

// Boot is the boot server's HTTP handler:
//
//	/boot.ipxe              the chain script every iPXE client gets
//	/ipxe?mac=&uuid=&hostname=   an armed machine's own iPXE script, with a one-time Ignition URL;
//	                        NoBootScript for every other MAC, known or not
//	/ignition?mac=&token=   the machine's own Ignition config, once (403 otherwise)
//	/assets/PATH            kernels and initrds, with range requests
//	/ipxe/FILE              the iPXE binaries, for UEFI HTTP boot
//
// Only GET and HEAD are allowed, and only GET on /ipxe and /ignition (a HEAD would issue or spend a
// ticket without delivering it); a path with ".." in it, encoded or not, is refused.
type Boot struct {
	cfg    HTTPConfig
	byMAC  map[string]*Machine
	assets *os.Root
	ipxe   *os.Root
	log    *slog.Logger
}

// NewBoot checks cfg and returns the handler. Close it to release the directories.
func NewBoot(cfg HTTPConfig) (*Boot, error) {
	if cfg.Inventory == nil || cfg.Enroll == nil || cfg.Recorder == nil {
		return nil, errors.New("pxe: http: inventory, enroller and recorder are required")
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if !strings.HasPrefix(cfg.BaseURL, "http://") && !strings.HasPrefix(cfg.BaseURL, "https://") {
		return nil, fmt.Errorf("pxe: http: base URL %q: want http:// or https://", cfg.BaseURL)
	}
	b := &Boot{cfg: cfg, byMAC: map[string]*Machine{}, log: cfg.Logger}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	for i := range cfg.Inventory.Machines {
		m := &cfg.Inventory.Machines[i]
		b.byMAC[m.MAC] = m
	}
	var err error
	if cfg.AssetsDir != "" {
		if b.assets, err = os.OpenRoot(cfg.AssetsDir); err != nil {
			return nil, fmt.Errorf("pxe: assets: %w", err)
		}
	}
	if cfg.IPXEDir != "" {
		if b.ipxe, err = os.OpenRoot(cfg.IPXEDir); err != nil {
			b.Close()
			return nil, fmt.Errorf("pxe: ipxe binaries: %w", err)
		}
	}
	return b, nil
}

// Close releases the assets and iPXE directories.
func (b *Boot) Close() error {
	var errs []error
	if b.assets != nil {
		errs = append(errs, b.assets.Close())
	}
	if b.ipxe != nil {
		errs = append(errs, b.ipxe.Close())
	}
	return errors.Join(errs...)
}

func (b *Boot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Every route is GET or HEAD and none reads a body: a body is never read beyond MaxBodyBytes.
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if (p == "/ipxe" || p == "/ignition") && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if strings.Contains(p, "..") || strings.Contains(strings.ToLower(r.URL.RawPath), "%2e") ||
		strings.Contains(strings.ToLower(r.RequestURI), "%2e%2e") || strings.ContainsRune(p, 0) {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	switch {
	case p == "/boot.ipxe":
		b.text(w, ChainScript(b.cfg.BaseURL))
	case p == "/ipxe":
		b.serveScript(w, r)
	case p == "/ignition":
		b.serveIgnition(w, r)
	case strings.HasPrefix(p, "/assets/"):
		b.serveAsset(w, r, strings.TrimPrefix(p, "/assets/"))
	case strings.HasPrefix(p, "/ipxe/"):
		b.serveIPXE(w, r, strings.TrimPrefix(p, "/ipxe/"))
	default:
		http.NotFound(w, r)
	}
}

func (b *Boot) text(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(s))
}

// machine finds the machine a request names with ?mac=.
func (b *Boot) machine(r *http.Request) (*Machine, bool) {
	mac, err := NormalizeMAC(r.URL.Query().Get("mac"))
	if err != nil {
		return nil, false
	}
	m, ok := b.byMAC[mac]
	return m, ok
}

// serveScript answers every MAC the same way unless the machine is armed and, with leases, asks from
// the address it was leased: status, headers and body are NoBootScript's, and the work done is a
// lookup or two, so that /ipxe tells nobody which MACs the inventory holds.
func (b *Boot) serveScript(w http.ResponseWriter, r *http.Request) {
	s, err := b.script(r)
	if err != nil {
		// Only a request for an armed machine (from its lease, with leases) gets here.
		b.log.Error("issue an enrollment ticket", "mac", r.URL.Query().Get("mac"), "err", err)
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	b.text(w, s)
}

// script is the script the request gets.
func (b *Boot) script(r *http.Request) (string, error) {
	m, ok := b.machine(r)
	if !ok {
		return NoBootScript, nil
	}
	from := remoteAddr(r)
	if b.cfg.Leases != nil {
		ip, ok := b.cfg.Leases.Leased(m.MAC)
		leased, ok4 := netip.AddrFromSlice(ip.To4())
		if !ok || !ok4 || leased != from {
			return NoBootScript, nil
		}
	}
	q := r.URL.Query()
	_, prof, ok := b.cfg.Inventory.Match(m, Identity{MAC: m.MAC, UUID: strings.ToLower(q.Get("uuid")), Hostname: q.Get("hostname")})
	if !ok {
		return NoBootScript, nil
	}
	token, ok, err := b.cfg.Enroll.Issue(r.Context(), m, from)
	if err != nil || !ok {
		return NoBootScript, err
	}
	b.cfg.Recorder.Observe(m, StepScript, prof.Name)
	return Script(b.cfg.BaseURL, m, prof, token), nil
}

// serveIgnition spends the machine's ticket. Every refusal gets the same 403, whatever its reason
// (bootstrap/enroll records it in the ticket); Ignition does not retry a 4xx. A failure of the server
// itself gets a 503, which Ignition retries.
func (b *Boot) serveIgnition(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	m, ok := b.machine(r)
	if !ok {
		http.Error(w, "no config for this request", http.StatusForbidden)
		return
	}
	from := remoteAddr(r)
	cfg, err := b.cfg.Enroll.Spend(r.Context(), m, r.URL.Query().Get("token"), from)
	switch {
	case refused(err):
		b.log.Warn("refused a config", "machine", m.Name, "from", from.String(), "err", err)
		http.Error(w, "no config for this request", http.StatusForbidden)
		return
	case err != nil:
		b.log.Error("spend an enrollment ticket", "machine", m.Name, "err", err)
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	b.log.Info("served a config", "machine", m.Name, "from", from.String(), "bytes", len(cfg))
	b.cfg.Recorder.Observe(m, StepIgnition, fmt.Sprintf("%d bytes to %s", len(cfg), from))
	w.Header().Set("Content-Type", "application/vnd.coreos.ignition+json")
	_, _ = w.Write(cfg)
}

// refused reports whether err is a ticket's refusal.
func refused(err error) bool {
	for _, e := range []error{enroll.ErrNoTicket, enroll.ErrBadToken, enroll.ErrSpent, enroll.ErrExpired, enroll.ErrWrongAddress} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// remoteAddr is the request's client address; the zero Addr when it is not an address.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (b *Boot) serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	if b.assets == nil || name == "" {
		http.NotFound(w, r)
		return
	}
	if b.serveFile(w, r, b.assets, name) {
		if m, ok := b.machine(r); ok {
			if _, prof, ok := b.cfg.Inventory.Match(m, Identity{MAC: m.MAC}); ok {
				switch {
				case samePath(prof.Kernel, name):
					b.cfg.Recorder.Observe(m, StepKernel, name)
				case containsPath(prof.Initrd, name):
					b.cfg.Recorder.Observe(m, StepInitrd, name)
				}
			}
		}
	}
}

func (b *Boot) serveIPXE(w http.ResponseWriter, r *http.Request, name string) {
	if b.ipxe == nil || !ipxeBinaries[name] {
		http.NotFound(w, r)
		return
	}
	b.serveFile(w, r, b.ipxe, name)
}

// serveFile serves name from root with range requests; it reports whether the file was found.
func (b *Boot) serveFile(w http.ResponseWriter, r *http.Request, root *os.Root, name string) bool {
	f, err := root.Open(name)
	if err != nil {
		http.NotFound(w, r)
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return false
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, path.Base(name), fi.ModTime(), f)
	return true
}

func samePath(a, b string) bool {
	return path.Clean("/"+a) == path.Clean("/"+b)
}

func containsPath(list []string, p string) bool {
	for _, x := range list {
		if samePath(x, p) {
			return true
		}
	}
	return false
}
