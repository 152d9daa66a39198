package command

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/internal/testtool"
	"github.com/kiln-dev/kiln/nodeagent/fleetlock"
)

// unreachableKubeconfig writes a kubeconfig of an API server on a loopback port where nothing
// listens.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "reboot.kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:%d
contexts:
- name: c
  context:
    cluster: c
    user: u
users:
- name: u
  user: {}
current-context: c
`, testtool.FreePort(t))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServeFleetlockErrors(t *testing.T) {
	kc := unreachableKubeconfig(t)
	serve := func(args ...string) []string { return append([]string{"serve-fleetlock", "--kubeconfig", kc}, args...) }
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "no kubeconfig", args: []string{"serve-fleetlock", "--group", "workers"}, want: `required flag(s) "kubeconfig" not set`},
		{name: "no group", args: serve(), want: `required flag(s) "group" not set`},
		{name: "a missing kubeconfig", args: []string{"serve-fleetlock", "--kubeconfig", "/nonexistent/kc", "--group", "workers"}, want: "--kubeconfig: stat /nonexistent/kc"},
		{name: "slots not a number", args: serve("--group", "workers=two"), want: `--group "workers=two": SLOTS "two"`},
		{name: "no slots", args: serve("--group", "workers=0"), want: `--group "workers=0": SLOTS "0"`},
		{name: "empty slots", args: serve("--group", "workers="), want: `--group "workers=": SLOTS ""`},
		{name: "not a pool's name", args: serve("--group", "Workers=1"), want: `"Workers" is not a pool's name`},
		{name: "no name", args: serve("--group", "=1"), want: `"" is not a pool's name`},
		{name: "two slots for the control plane", args: serve("--group", "control-plane=2"), want: `--group "control-plane=2": the control plane reboots one node at a time`},
		{name: "a group twice", args: serve("--group", "workers=2", "--group", "workers"), want: `group "workers" given twice`},
		{name: "every bad group at once", args: serve("--group", "a=0", "--group", "B"), want: `"B" is not a pool's name`},
		{name: "a certificate without its key", args: serve("--group", "workers", "--tls-cert", "c.pem"), want: "--tls-cert and --tls-key: give both or neither"},
		{name: "a key without its certificate", args: serve("--group", "workers", "--tls-key", "k.pem"), want: "--tls-cert and --tls-key: give both or neither"},
		{name: "a short lease", args: serve("--group", "workers", "--lease-duration", "30s"), want: "--lease-duration 30s: want at least 1m"},
		{name: "a bad address", args: serve("--group", "workers", "--listen", "3333"), want: `--listen "3333": want HOST:PORT`},
		{name: "missing TLS files", args: serve("--group", "workers", "--tls-cert", "/nonexistent/c", "--tls-key", "/nonexistent/k"), want: "--tls-cert /nonexistent/c, --tls-key /nonexistent/k"},
		{name: "an argument", args: serve("--group", "workers", "extra"), want: `unknown command "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, t.Context(), tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want non-zero and %q", code, stderr, tc.want)
			}
		})
	}
}

// TestServeFleetlock runs the command, over HTTP and over TLS, and asks it as Zincati does: requests
// that the protocol refuses are refused without the API, a good one reaches the lock (whose API
// server is away here: the protocol's failed_lock), and a stop ends it cleanly.
func TestServeFleetlock(t *testing.T) {
	ca, err := pki.NewCA(rand.Reader, "fleetlock test CA", time.Now(), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(rand.Reader, pki.CertRequest{CommonName: "fleetlock", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, Validity: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, leaf.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, leaf.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	kc := unreachableKubeconfig(t)

	for _, tc := range []struct {
		name, scheme string
		flags        []string
		client       *http.Client
	}{
		{name: "http", scheme: "http", client: &http.Client{}},
		{name: "https", scheme: "https", flags: []string{"--tls-cert", certFile, "--tls-key", keyFile},
			client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listen := fmt.Sprintf("127.0.0.1:%d", testtool.FreePort(t))
			ctx, stop := context.WithCancel(t.Context())
			var (
				wg             sync.WaitGroup
				code           int
				stdout, stderr string
			)
			wg.Go(func() {
				code, stdout, stderr = run(t, ctx, append([]string{"--log-format", "json", "serve-fleetlock", "--kubeconfig", kc,
					"--group", "workers=2", "--group", "control-plane", "--listen", listen}, tc.flags...)...)
			})
			base := tc.scheme + "://" + listen
			post := func(path, header string) (int, string) {
				body := "{\n  \"client_params\": {\n    \"id\": \"e0f3745b108f471cbd4883c6fbed8cdd\",\n    \"group\": \"workers\"\n  }\n}"
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+path, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if header != "" {
					req.Header.Set(fleetlock.ProtocolHeader, header)
				}
				resp, err := tc.client.Do(req)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				var e struct{ Kind string }
				data, _ := io.ReadAll(resp.Body)
				_ = json.Unmarshal(data, &e)
				return resp.StatusCode, e.Kind
			}
			// Wait until it serves.
			err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
				status, _ := post(fleetlock.PreRebootPath, "")
				return status != 0, nil
			})
			if err != nil {
				stop()
				wg.Wait()
				t.Fatalf("it never served on %s: %v\n%s", base, err, stderr)
			}
			for _, want := range []struct {
				path, header string
				status       int
				kind         string
			}{
				{path: fleetlock.PreRebootPath, status: http.StatusBadRequest, kind: fleetlock.KindMissingHeader},
				{path: "/", header: "true", status: http.StatusNotFound, kind: fleetlock.KindNotFound},
				{path: fleetlock.PreRebootPath, header: "true", status: http.StatusInternalServerError, kind: fleetlock.KindLockFailed},
				{path: fleetlock.SteadyStatePath, header: "true", status: http.StatusInternalServerError, kind: fleetlock.KindUnlockFailed},
			} {
				if status, kind := post(want.path, want.header); status != want.status || kind != want.kind {
					t.Errorf("POST %s (header %q): %d %q, want %d %q", want.path, want.header, status, kind, want.status, want.kind)
				}
			}
			stop()
			wg.Wait()
			if code != 0 || stdout != "" {
				t.Errorf("exit %d after the stop, stdout %q; want 0 and nothing\n%s", code, stdout, stderr)
			}
			for _, want := range []string{`"msg":"serving FleetLock","url":"` + base + `/"`, `"groups":{"control-plane":1,"workers":2}`, `"leaseDuration":"15m0s"`,
				`"kind":"failed_lock"`, `"msg":"stopped serving FleetLock"`} {
				if !strings.Contains(stderr, want) {
					t.Errorf("log does not say %s:\n%s", want, stderr)
				}
			}
		})
	}
}
