package pxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
)

// IgnitionSource gives a machine its Ignition config.
type IgnitionSource interface {
	Ignition(ctx context.Context, m *Machine) ([]byte, error)
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
	Ignition  IgnitionSource
	Recorder  *Recorder
	// URLKey signs the Ignition URLs (see Token).
	URLKey []byte
	// AssetsDir holds kernels and initrds, served under /assets/.
	AssetsDir string
	// IPXEDir holds the iPXE binaries, served under /ipxe/ for UEFI HTTP boot clients.
	IPXEDir string
	// Leases, when set, ties each machine's Ignition to the address it was leased.
	Leases LeaseLookup
	Logger *slog.Logger
}

// Boot is the boot server's HTTP handler:
//
//	/boot.ipxe              the chain script every iPXE client gets
//	/ipxe?mac=&uuid=&hostname=   the machine's own iPXE script (404 for an unknown machine)
//	/ignition?mac=&token=   the machine's own Ignition config
//	/assets/PATH            kernels and initrds, with range requests
//	/ipxe/FILE              the iPXE binaries, for UEFI HTTP boot
//
// Only GET and HEAD are allowed; a path with ".." in it, encoded or not, is refused.
type Boot struct {
	cfg    HTTPConfig
	byMAC  map[string]*Machine
	assets *os.Root
	ipxe   *os.Root
	log    *slog.Logger

	// scripts caches each machine's script per profile: it only changes with them.
	scripts sync.Map // mac + "\x00" + profile name -> string
}

// NewBoot checks cfg and returns the handler. Close it to release the directories.
func NewBoot(cfg HTTPConfig) (*Boot, error) {
	if cfg.Inventory == nil || cfg.Ignition == nil || cfg.Recorder == nil {
		return nil, errors.New("pxe: http: inventory, ignition source and recorder are required")
	}
	if len(cfg.URLKey) < 16 {
		return nil, errors.New("pxe: http: URL key shorter than 16 bytes")
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

func (b *Boot) serveScript(w http.ResponseWriter, r *http.Request) {
	m, ok := b.machine(r)
	if !ok {
		http.Error(w, "unknown machine", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	id := Identity{MAC: m.MAC, UUID: strings.ToLower(q.Get("uuid")), Hostname: q.Get("hostname")}
	_, prof, ok := b.cfg.Inventory.Match(m, id)
	if !ok {
		http.Error(w, "no profile for this machine", http.StatusNotFound)
		return
	}
	b.cfg.Recorder.Observe(m, StepScript, prof.Name)
	k := m.MAC + "\x00" + prof.Name
	s, ok := b.scripts.Load(k)
	if !ok {
		s, _ = b.scripts.LoadOrStore(k, Script(b.cfg.BaseURL, m, prof, Token(b.cfg.URLKey, m.MAC)))
	}
	b.text(w, s.(string))
}

func (b *Boot) serveIgnition(w http.ResponseWriter, r *http.Request) {
	m, ok := b.machine(r)
	if !ok {
		http.Error(w, "unknown machine", http.StatusNotFound)
		return
	}
	if !validToken(b.cfg.URLKey, m.MAC, r.URL.Query().Get("token")) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if b.cfg.Leases != nil {
		if ip, ok := b.cfg.Leases.Leased(m.MAC); ok {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if !ip.Equal(net.ParseIP(host)) {
				http.Error(w, "forbidden", http.StatusForbidden)
				return
			}
		}
	}
	cfg, err := b.cfg.Ignition.Ignition(r.Context(), m)
	if err != nil {
		b.log.Error("render ignition", "machine", m.Name, "err", err)
		http.Error(w, "cannot render this machine's config", http.StatusInternalServerError)
		return
	}
	b.cfg.Recorder.Observe(m, StepIgnition, fmt.Sprintf("%d bytes", len(cfg)))
	w.Header().Set("Content-Type", "application/vnd.coreos.ignition+json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(cfg)
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
