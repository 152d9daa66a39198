// Package echo is kiln's test workload (cmd/kiln-echo, the image kubecfg.EchoImage): an HTTP server
// that answers GET / with its hostname and its pod IP and logs every request to stdout, so that
// `kubectl logs` shows the traffic a test sent. With -get URL the same binary is the client, for a
// test pod that checks another pod or a Service.
package echo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/netutil"
)

// DefaultListen is where the server listens unless -listen says otherwise.
const DefaultListen = ":8080"

// PodIPEnv names the environment variable that carries the pod IP (the downward API's status.podIP);
// without it the server reports the first global unicast address of its interfaces.
const PodIPEnv = "POD_IP"

// Main runs kiln-echo with the command-line arguments args (without the program name) and returns its
// exit status. The server stops gracefully on SIGINT or SIGTERM (as PID 1 of a container, a signal it
// does not handle would be ignored).
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kiln-echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", DefaultListen, "address to serve on")
	get := fs.String("get", "", "act as the client: GET this URL, print the body, exit 1 unless the answer is 200 OK")
	timeout := fs.Duration("timeout", 5*time.Second, "with -get: how long to wait for the answer")
	var o GetOptions
	fs.StringVar(&o.CAFile, "ca", "", "with -get: trust only the CA certificates in this PEM file for https (a pod's service-account ca.crt)")
	fs.StringVar(&o.TokenFile, "token", "", "with -get: send the bearer token in this file (a pod's service-account token)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kiln-echo: unexpected arguments %q\n", fs.Args())
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *get != "" {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		if err := Get(ctx, *get, o, stdout); err != nil {
			fmt.Fprintf(stderr, "kiln-echo: %v\n", err)
			return 1
		}
		return 0
	}
	hostname, err := os.Hostname()
	if err != nil {
		fmt.Fprintf(stderr, "kiln-echo: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "kiln-echo: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "kiln-echo: serving on %s as %s (%s)\n", ln.Addr(), hostname, PodIP())
	if err := Serve(ctx, ln, Handler(hostname, PodIP, stdout)); err != nil {
		fmt.Fprintf(stderr, "kiln-echo: %v\n", err)
		return 1
	}
	return 0
}

// Handler answers GET (and HEAD) / with "hostname=NAME ip=ADDR\n", where ADDR is podIP's answer, and
// /healthz with "ok\n"; other paths are 404 and other methods 405. Each request is logged to log as
// one line: time, client, method, path, status.
func Handler(hostname string, podIP func() string, log io.Writer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := http.StatusOK
		defer func() {
			fmt.Fprintf(log, "%s %s %s %s %d\n", time.Now().UTC().Format(time.RFC3339), r.RemoteAddr, r.Method, r.URL.Path, status)
		}()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			status = http.StatusMethodNotAllowed
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", status)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch r.URL.Path {
		case "/":
			fmt.Fprintf(w, "hostname=%s ip=%s\n", hostname, podIP())
		case "/healthz":
			fmt.Fprintln(w, "ok")
		default:
			status = http.StatusNotFound
			http.Error(w, "not found", status)
		}
	})
}

// The server's limits: a slow or hostile client holds neither a connection nor memory for long. Every
// route is GET or HEAD and reads no body.
const (
	readTimeout    = 10 * time.Second
	writeTimeout   = 10 * time.Second
	idleTimeout    = time.Minute
	maxHeaderBytes = 16 << 10
	maxConns       = 256
)

// Serve serves h on ln until ctx ends, then shuts down, letting requests in flight finish for up to
// five seconds. At most maxConns connections are open at once; further clients wait in the backlog.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	ln = netutil.LimitListener(ln, maxConns)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// GetOptions are Get's credentials for an https server such as the cluster's API.
type GetOptions struct {
	// CAFile, when set, is a PEM file with the only CA certificates trusted for https.
	CAFile string
	// TokenFile, when set, holds a bearer token sent in the Authorization header.
	TokenFile string
}

// Get fetches url and copies the body to w; an answer other than 200 OK is an error.
func Get(ctx context.Context, url string, o GetOptions, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	client := http.DefaultClient
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return fmt.Errorf("get %s: -ca: %w", url, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("get %s: -ca %s: no PEM certificate in it", url, o.CAFile)
		}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	}
	if o.TokenFile != "" {
		tok, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return fmt.Errorf("get %s: -token: %w", url, err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", url, resp.Status)
	}
	return nil
}

// PodIP returns $POD_IP if set, else the first global unicast address of this host's interfaces
// (IPv4 first), else "unknown".
func PodIP() string {
	if ip := os.Getenv(PodIPEnv); ip != "" {
		return ip
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "unknown"
	}
	var v6 string
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || !n.IP.IsGlobalUnicast() {
			continue
		}
		if n.IP.To4() != nil {
			return n.IP.String()
		}
		if v6 == "" {
			v6 = n.IP.String()
		}
	}
	if v6 != "" {
		return v6
	}
	return "unknown"
}
