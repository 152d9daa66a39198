package echo_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/images/nodeimages/echo"
)

// syncBuffer is a bytes.Buffer that the server's handlers may write to concurrently.
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

func TestHandler(t *testing.T) {
	for _, tc := range []struct {
		name, method, path string
		wantStatus         int
		wantBody           string
		wantLog            string
	}{
		{name: "root", method: http.MethodGet, path: "/", wantStatus: 200, wantBody: "hostname=web-0 ip=10.244.1.7\n", wantLog: " GET / 200\n"},
		{name: "health", method: http.MethodGet, path: "/healthz", wantStatus: 200, wantBody: "ok\n", wantLog: " GET /healthz 200\n"},
		{name: "unknown path", method: http.MethodGet, path: "/nope", wantStatus: 404, wantBody: "not found\n", wantLog: " GET /nope 404\n"},
		{name: "post", method: http.MethodPost, path: "/", wantStatus: 405, wantBody: "method not allowed\n", wantLog: " POST / 405\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log syncBuffer
			h := echo.Handler("web-0", func() string { return "10.244.1.7" }, &log)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.wantStatus {
				t.Errorf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if got := rec.Body.String(); got != tc.wantBody {
				t.Errorf("body %q, want %q", got, tc.wantBody)
			}
			if got := log.String(); !strings.HasSuffix(got, tc.wantLog) || strings.Count(got, "\n") != 1 {
				t.Errorf("log %q, want one line ending in %q", got, tc.wantLog)
			}
		})
	}
}

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("hello\n"))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name, path, wantOut, wantErr string
	}{
		{name: "ok", path: "/", wantOut: "hello\n"},
		{name: "server error", path: "/fail", wantOut: "boom\n", wantErr: "500 Internal Server Error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := echo.Get(t.Context(), srv.URL+tc.path, echo.GetOptions{}, &out)
			if out.String() != tc.wantOut {
				t.Errorf("output %q, want %q", out.String(), tc.wantOut)
			}
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestServeAndClient runs the server as kiln-echo does and queries it with Main's client mode.
func TestServeAndClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- echo.Serve(ctx, ln, echo.Handler("echo-host", echo.PodIP, &log)) }()

	var out, errb bytes.Buffer
	if got := echo.Main([]string{"-get", "http://" + ln.Addr().String() + "/", "-timeout", "5s"}, &out, &errb); got != 0 {
		t.Fatalf("kiln-echo -get: status %d: %s", got, errb.String())
	}
	if !strings.HasPrefix(out.String(), "hostname=echo-host ip=") {
		t.Errorf("answer %q", out.String())
	}
	if got := echo.Main([]string{"-get", "http://" + ln.Addr().String() + "/missing"}, &out, &errb); got != 1 {
		t.Errorf("kiln-echo -get of a 404: status %d, want 1", got)
	}
	if !strings.Contains(log.String(), " GET / 200\n") || !strings.Contains(log.String(), " GET /missing 404\n") {
		t.Errorf("request log %q", log.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestPodIPFromEnv(t *testing.T) {
	t.Setenv(echo.PodIPEnv, "10.244.3.4")
	if got := echo.PodIP(); got != "10.244.3.4" {
		t.Errorf("PodIP() = %q", got)
	}
}

func TestMainArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "unknown flag", args: []string{"-nope"}, wantErr: "flag provided but not defined: -nope"},
		{name: "stray argument", args: []string{"serve"}, wantErr: `unexpected arguments ["serve"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if got := echo.Main(tc.args, &out, &errb); got != 2 {
				t.Errorf("status %d, want 2", got)
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q, want %q", errb.String(), tc.wantErr)
			}
		})
	}
}

// TestGetTLS: with -ca the client trusts only that CA, and with -token it sends the bearer token, as a
// pod does to reach the cluster's API through the kubernetes Service.
func TestGetTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("version\n"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// httptest's servers share one certificate: another CA is made here.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.crt")
	if err := os.WriteFile(other, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		o       echo.GetOptions
		wantErr string
	}{
		{name: "ca and token", o: echo.GetOptions{CAFile: ca, TokenFile: token}},
		{name: "no token", o: echo.GetOptions{CAFile: ca}, wantErr: "401 Unauthorized"},
		{name: "another CA", o: echo.GetOptions{CAFile: other, TokenFile: token}, wantErr: "certificate"},
		{name: "system roots only", o: echo.GetOptions{TokenFile: token}, wantErr: "certificate"},
		{name: "missing ca file", o: echo.GetOptions{CAFile: filepath.Join(dir, "nope")}, wantErr: "-ca"},
		{name: "ca file without PEM", o: echo.GetOptions{CAFile: token}, wantErr: "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := echo.Get(t.Context(), srv.URL+"/version", tc.o, &out)
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if err == nil && out.String() != "version\n" {
				t.Fatalf("output %q", out.String())
			}
		})
	}
}

// TestServeLimits: a client that sends headers past the limit is refused, and one that never
// finishes its request is cut off; the server goes on serving others.
func TestServeLimits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- echo.Serve(ctx, ln, echo.Handler("h", func() string { return "10.244.1.2" }, io.Discard))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	url := "http://" + ln.Addr().String() + "/"

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB of headers: %s, want 431", resp.Status)
	}

	slow, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	slow.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.ReadAll(slow); err != nil {
		t.Errorf("a request never finished: %v, want the server to close the connection", err)
	}

	var out bytes.Buffer
	if err := echo.Get(t.Context(), url, echo.GetOptions{}, &out); err != nil || !strings.Contains(out.String(), "hostname=h") {
		t.Errorf("a plain request after them: %q, %v", out.String(), err)
	}
}
