package enroll_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/internal/ignitiontest"
	"github.com/kiln-dev/kiln/state"
)

// realConfig is a machine's real config: what must reach the machine and no one else.
const realConfig = `{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/kiln/node.key","mode":384,` +
	`"contents":{"source":"data:,-----BEGIN%20EC%20PRIVATE%20KEY-----%20node%20key"}}]}}`

// The whole path with the real Ignition binary: the stub fetches the real config over TLS from the
// config server, trusting the cluster CA alone, with the one-time token, and checks its hash; a replay
// of the stub is refused and the ticket shows it; and what an attacker on the network can ask for
// gets the same 403 as everything else.
func TestStubWithRealIgnition(t *testing.T) {
	st, ca, base := serve(t)

	token, tk, err := enroll.Issue(st, enroll.Issuing{Cluster: "demo", Machine: "demo-worker-0", Config: []byte(realConfig), Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	stub, err := enroll.Stub{
		CA: ca.CertPEM, Machine: "demo-worker-0", URL: base + enroll.ConfigPath("demo", "demo-worker-0"),
		Token: token, ConfigHash: tk.ConfigHash,
	}.Render()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stub, []byte("PRIVATE KEY")) || bytes.Contains(stub, []byte("node key")) {
		t.Fatalf("the stub holds the real config: %s", stub)
	}

	// The attacker: no token, a made-up token, a machine that does not exist, another path; and a
	// client that does not trust the cluster CA cannot even talk to the server.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	fake := "kiln-enroll-v1." + strings.Repeat("x", 43)
	var bodies []string
	for _, req := range []struct{ path, token string }{
		{enroll.ConfigPath("demo", "demo-worker-0"), ""},
		{enroll.ConfigPath("demo", "demo-worker-0"), fake},
		{enroll.ConfigPath("demo", "demo-worker-9"), fake},
		{enroll.ConfigPath("other", "demo-worker-0"), token},
		{"/v1/config", ""},
	} {
		status, body := get(t, client, base+req.path, req.token)
		if status != http.StatusForbidden {
			t.Errorf("GET %s: %d %q, want 403", req.path, status, body)
		}
		bodies = append(bodies, body)
	}
	for _, b := range bodies[1:] {
		if b != bodies[0] {
			t.Errorf("refusals differ: %q and %q", bodies[0], b)
		}
	}
	if _, err := http.Get(base + enroll.ConfigPath("demo", "demo-worker-0")); err == nil {
		t.Error("a client without the cluster CA got through TLS")
	}

	// The machine: the real Ignition applies the stub, which fetches and merges the real config.
	root := ignitiontest.Apply(t, stub)
	if _, _, _, got := ignitiontest.FileInfo(t, root, "/etc/kiln/node.key"); !strings.Contains(string(got), "node key") {
		t.Errorf("the real config's file: %q", got)
	}
	if _, _, _, got := ignitiontest.FileInfo(t, root, "/etc/hostname"); string(got) != "demo-worker-0\n" {
		t.Errorf("/etc/hostname: %q", got)
	}

	// The stub again (someone who read it from the machine's metadata): refused, and recorded.
	if _, err := ignitiontest.Try(t, stub); err == nil || !strings.Contains(err.Error(), "GET result: Forbidden") {
		t.Fatalf("a replayed stub: %v, want a 403", err)
	}
	got, err := enroll.Get(st, "demo", "demo-worker-0")
	if err != nil {
		t.Fatal(err)
	}
	if got.Spent == nil || got.Spent.From != "127.0.0.1" || got.State(time.Now()) != "spent (possible theft)" {
		t.Errorf("ticket after the replay: %+v", got)
	}
	var raw json.RawMessage
	if err := st.Get(enroll.Bucket, enroll.Key("demo", "demo-worker-0"), &raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("node key")) || bytes.Contains(raw, []byte(token)) {
		t.Errorf("the state store still holds the config or the token: %s", raw)
	}
}

// A config whose hash is not the one in the stub is refused by Ignition itself.
func TestStubHashChecked(t *testing.T) {
	st, ca, base := serve(t)
	token, _, err := enroll.Issue(st, enroll.Issuing{Cluster: "demo", Machine: "m", Config: []byte(realConfig), Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	stub, err := enroll.Stub{CA: ca.CertPEM, Machine: "m", URL: base + enroll.ConfigPath("demo", "m"),
		Token: token, ConfigHash: enroll.ConfigHash([]byte("another config"))}.Render()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ignitiontest.Try(t, stub); err == nil || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("a config with another hash: %v", err)
	}
}

func TestStubRefuses(t *testing.T) {
	good := enroll.Stub{CA: []byte("-----BEGIN CERTIFICATE-----\n"), Machine: "m", URL: "https://10.0.2.100/v1/config/demo/m",
		Token: "kiln-enroll-v1." + strings.Repeat("A", 43), ConfigHash: enroll.ConfigHash([]byte("x"))}
	if _, err := good.Render(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*enroll.Stub)
		want   string
	}{
		{"http", func(s *enroll.Stub) { s.URL = "http://10.0.2.100/v1/config/demo/m" }, "not an https URL"},
		{"no CA", func(s *enroll.Stub) { s.CA = nil }, "ca: no PEM certificate"},
		{"a reusable token", func(s *enroll.Stub) { s.Token = "abcdef.0123456789abcdef" }, "token: not an enrollment token"},
		{"no hash", func(s *enroll.Stub) { s.ConfigHash = "" }, "configHash"},
		{"no machine", func(s *enroll.Stub) { s.Machine = "" }, "machine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.change(&s)
			if _, err := s.Render(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render: %v, want %q", err, tc.want)
			}
		})
	}
}

func get(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// serve runs a config server on loopback over a real state store, with a CA of its own, until the
// test ends, and returns the store, the CA and the server's base URL.
func serve(t *testing.T) (*state.Store, *pki.KeyPair, string) {
	t.Helper()
	st := openStore(t)
	ca, err := pki.NewCA(rand.Reader, "kiln demo cluster CA", time.Now(), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := enroll.Listen(enroll.ServerConfig{Listen: "127.0.0.1:0", CA: ca, Names: []string{"127.0.0.1"}, Spend: enroll.SpendIn(st)})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	return st, ca, "https://" + srv.Addr().String()
}
