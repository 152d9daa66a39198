package enroll

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/bootstrap/pki"
)

// SpendFunc is Spend over a state store that the caller opens as it likes.
type SpendFunc func(cluster, machine, token string, from netip.Addr, now time.Time) ([]byte, error)

// SpendIn is the SpendFunc of a store that stays open while the server runs.
func SpendIn(st Store) SpendFunc {
	return func(cluster, machine, token string, from netip.Addr, now time.Time) ([]byte, error) {
		return Spend(st, cluster, machine, token, from, now)
	}
}

// maxHeaderBytes bounds what a config server reads of a request: a path and one header are all it
// needs.
const maxHeaderBytes = 8 << 10

// Handler serves each machine its config, once, at ConfigPath(cluster, machine), to a GET with
// "Authorization: Bearer TOKEN". Every refusal gets the same 403 and body, whatever the reason, so
// that a client learns nothing about which machines or tickets exist; the reason is logged with the
// machine and the client's address, never the token. now defaults to time.Now.
func Handler(spend SpendFunc, log *slog.Logger, now func() time.Time) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/config/{cluster}/{machine}", func(w http.ResponseWriter, r *http.Request) {
		cluster, machine := r.PathValue("cluster"), r.PathValue("machine")
		from := remoteAddr(r)
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		cfg, err := spend(cluster, machine, token, from, now())
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			log.Warn("refused a config", "cluster", cluster, "machine", machine, "from", from.String(), "why", reason(err))
			http.Error(w, "no config for this request", http.StatusForbidden)
			return
		}
		log.Info("served a config", "cluster", cluster, "machine", machine, "from", from.String(), "bytes", len(cfg))
		w.Header().Set("Content-Type", "application/vnd.coreos.ignition+json")
		w.Write(cfg)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "no config for this request", http.StatusForbidden)
	})
	return mux
}

// reason is err's cause as a log value: one of the refusals, or the error (which never holds the
// token).
func reason(err error) string {
	for _, e := range []error{ErrNoTicket, ErrBadToken, ErrSpent, ErrExpired, ErrWrongAddress} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return err.Error()
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Server is a config server: Handler over TLS with a certificate from the cluster CA.
type Server struct {
	http *http.Server
	ln   net.Listener
}

// ServerConfig is what a Server is made of.
type ServerConfig struct {
	// Listen is the TCP address to listen on.
	Listen string
	// CA issues the server's certificate, for Names (IP addresses or DNS names: what the stubs' URLs
	// name), valid from now for CertTTL (default 24 h).
	CA      *pki.KeyPair
	Names   []string
	CertTTL time.Duration
	Spend   SpendFunc
	Log     *slog.Logger
	Now     func() time.Time
}

// Listen issues the server's certificate and starts listening; Serve serves.
func Listen(cfg ServerConfig) (*Server, error) {
	if cfg.CA == nil || cfg.Spend == nil || len(cfg.Names) == 0 {
		return nil, errors.New("enroll: config server: a CA, names and a spend function are required")
	}
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	ttl := cfg.CertTTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	req := pki.CertRequest{CommonName: "kiln config server", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, Validity: ttl}
	for _, n := range cfg.Names {
		if ip := net.ParseIP(n); ip != nil {
			req.IPs = append(req.IPs, ip)
		} else {
			req.DNSNames = append(req.DNSNames, n)
		}
	}
	kp, err := cfg.CA.Issue(rand.Reader, req, now())
	if err != nil {
		return nil, fmt.Errorf("enroll: config server certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("enroll: config server certificate: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("enroll: config server: %w", err)
	}
	hs := &http.Server{
		Handler:           Handler(cfg.Spend, cfg.Log, cfg.Now),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	return &Server{http: hs, ln: ln}, nil
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Close; it returns nil after Close.
func (s *Server) Serve() error {
	if err := s.http.ServeTLS(s.ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops the server and its connections.
func (s *Server) Close() error { return s.http.Close() }
