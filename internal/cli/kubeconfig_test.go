package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/state"
)

// reacher is a provider that forwards the cluster's API endpoint to this host at addr's answer
// (provisioner.APIReacher), as the local QEMU provider does.
type reacher struct {
	provisioner.Provider
	addr func() (string, error)
}

func (r reacher) APIAddress(context.Context, string) (string, error) { return r.addr() }

// kilnWith runs the command line in dir with g's test hooks.
func kilnWith(t *testing.T, dir string, g *globals, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Chdir(dir)
	t.Setenv("KILN_STATE_DIR", filepath.Join(dir, "state"))
	os.Unsetenv("KILN_STATE_KEY")
	var out, errOut bytes.Buffer
	code = run(newRoot(g), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// onProvider is globals whose provider is p.
func onProvider(p provisioner.Provider) *globals {
	return &globals{newProvider: func(context.Context, *v1alpha1.Cluster) (provisioner.Provider, error) { return p, nil }}
}

// loadBundle reads cluster's secrets from dir's state store.
func loadBundle(t *testing.T, dir, cluster string) *secrets.Bundle {
	t.Helper()
	key, err := state.LoadKey(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, "state", state.FileName), key)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, err := secrets.Load(st, cluster)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clientCert is the client certificate of a kubeconfig, and the kubeconfig as client-go reads it.
func clientCert(t *testing.T, kubeconfig []byte) (*x509.Certificate, *rest.Config) {
	t.Helper()
	rc, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatalf("the kubeconfig does not load: %v\n%s", err, kubeconfig)
	}
	kp := pki.KeyPair{CertPEM: rc.CertData, KeyPEM: rc.KeyData}
	cert, err := kp.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	return cert, rc
}

func TestKubeconfig(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	b := loadBundle(t, dir, "demo")
	plain := onProvider(providertest.NewMemory(nil).New())
	must := func(t *testing.T, g *globals, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := kilnWith(t, dir, g, append([]string{"kubeconfig"}, args...)...)
		if code != 0 {
			t.Fatalf("kiln kubeconfig %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
		}
		return out, errOut
	}
	read := func(t *testing.T, name string) []byte {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(filepath.Join(dir, name)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600: it holds a private key", name, fi.Mode().Perm())
		}
		return data
	}

	t.Run("the spec's endpoint, to a file", func(t *testing.T) {
		// A file that is there is replaced, and its mode with it.
		write(t, dir, "alice.conf", "old")
		if err := os.Chmod(filepath.Join(dir, "alice.conf"), 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, errOut := must(t, plain, "--user", "kiln:alice", "--groups", "kiln:developers,kiln:qa", "--output-file", "alice.conf")
		if !strings.Contains(errOut, "wrote alice.conf: kiln:alice in [kiln:developers, kiln:qa]") || !strings.Contains(errOut, "valid for 1h") {
			t.Errorf("stderr: %s", errOut)
		}
		data := read(t, "alice.conf")
		cert, rc := clientCert(t, data)
		if rc.Host != "https://api.demo.kiln.internal:6443" || rc.TLSClientConfig.ServerName != "" || rc.TLSClientConfig.Insecure {
			t.Errorf("server %s, TLS server name %q, insecure %v", rc.Host, rc.TLSClientConfig.ServerName, rc.TLSClientConfig.Insecure)
		}
		if !bytes.Equal(rc.TLSClientConfig.CAData, b.ClusterCA.CertPEM) {
			t.Error("the kubeconfig does not trust exactly the cluster CA")
		}
		if bytes.Contains(data, []byte("insecure-skip-tls-verify")) {
			t.Error("the kubeconfig skips TLS verification")
		}
		groups := slices.Clone(cert.Subject.Organization)
		slices.Sort(groups)
		if cert.Subject.CommonName != "kiln:alice" || !slices.Equal(groups, []string{"kiln:developers", "kiln:qa"}) {
			t.Errorf("certificate for %s in %v", cert.Subject.CommonName, cert.Subject.Organization)
		}
		if ttl := cert.NotAfter.Sub(start); ttl < 59*time.Minute || ttl > time.Hour+time.Minute {
			t.Errorf("valid until %v, %v from now; want an hour", cert.NotAfter, ttl)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(b.ClusterCA.CertPEM)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("the certificate is not the cluster CA's: %v", err)
		}
		// The key is the kubeconfig's alone: not in the state store.
		stored, err := json.Marshal(loadBundle(t, dir, "demo"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(stored, []byte(base64.StdEncoding.EncodeToString(rc.KeyData))) {
			t.Error("the kubeconfig's key is in the state store")
		}
	})

	t.Run("standard output, default user", func(t *testing.T) {
		t.Setenv("USER", "bob")
		out, errOut := must(t, plain)
		cert, _ := clientCert(t, []byte(out))
		if !strings.HasPrefix(cert.Subject.CommonName, "kiln:") || len(cert.Subject.Organization) != 0 {
			t.Errorf("default certificate for %s in %v", cert.Subject.CommonName, cert.Subject.Organization)
		}
		if !strings.Contains(errOut, "kubeconfig of "+cert.Subject.CommonName) {
			t.Errorf("stderr: %s", errOut)
		}
	})

	t.Run("a server of the user's, checked as the endpoint", func(t *testing.T) {
		out, _ := must(t, plain, "--server", "https://127.0.0.1:16443")
		_, rc := clientCert(t, []byte(out))
		if rc.Host != "https://127.0.0.1:16443" || rc.TLSClientConfig.ServerName != "api.demo.kiln.internal" {
			t.Errorf("server %s, TLS server name %q", rc.Host, rc.TLSClientConfig.ServerName)
		}
	})

	t.Run("the provider's forwarded port", func(t *testing.T) {
		fwd := onProvider(reacher{Provider: providertest.NewMemory(nil).New(), addr: func() (string, error) { return "127.0.0.1:40123", nil }})
		out, _ := must(t, fwd)
		_, rc := clientCert(t, []byte(out))
		if rc.Host != "https://127.0.0.1:40123" || rc.TLSClientConfig.ServerName != "api.demo.kiln.internal" {
			t.Errorf("server %s, TLS server name %q", rc.Host, rc.TLSClientConfig.ServerName)
		}
		// --server wins.
		out, _ = must(t, fwd, "--server", "https://api.demo.kiln.internal:6443")
		if _, rc := clientCert(t, []byte(out)); rc.Host != "https://api.demo.kiln.internal:6443" || rc.TLSClientConfig.ServerName != "" {
			t.Errorf("with --server: server %s, TLS server name %q", rc.Host, rc.TLSClientConfig.ServerName)
		}
	})

	t.Run("admin, with a warning that names the TTL", func(t *testing.T) {
		out, errOut := must(t, plain, "--admin", "--ttl", "15m")
		cert, _ := clientCert(t, []byte(out))
		if !slices.Contains(cert.Subject.Organization, "system:masters") {
			t.Errorf("--admin: groups %v", cert.Subject.Organization)
		}
		if !strings.Contains(errOut, "warning: --admin") || !strings.Contains(errOut, "system:masters") || !strings.Contains(errOut, "valid for 15m") {
			t.Errorf("--admin warns: %q", errOut)
		}
	})

	t.Run("the provider cannot be had: the spec's endpoint, with a warning", func(t *testing.T) {
		broken := &globals{newProvider: func(context.Context, *v1alpha1.Cluster) (provisioner.Provider, error) {
			return nil, errors.New("provider aws: set KILN_AWS_BUCKET")
		}}
		out, errOut := must(t, broken)
		if _, rc := clientCert(t, []byte(out)); rc.Host != "https://api.demo.kiln.internal:6443" {
			t.Errorf("server %s", rc.Host)
		}
		if !strings.Contains(errOut, "warning: provider qemu: provider aws: set KILN_AWS_BUCKET; the kubeconfig names the spec's endpoint") {
			t.Errorf("stderr: %s", errOut)
		}
	})

	for _, tc := range []struct {
		name string
		g    *globals
		args []string
		want string
	}{
		{name: "system:masters without --admin", g: plain, args: []string{"--groups", "kiln:ops,system:masters"}, want: "system:masters bypasses RBAC and is given only with Admin (kiln kubeconfig --admin)"},
		{name: "a node's identity", g: plain, args: []string{"--user", "system:node:demo-workers-0", "--admin"}, want: `user "system:node:demo-workers-0": system: names are Kubernetes's own`},
		{name: "a node's group", g: plain, args: []string{"--groups", "system:nodes"}, want: `group "system:nodes"`},
		{name: "more than a day", g: plain, args: []string{"--ttl", "25h"}, want: "--ttl 25h: at most 24h"},
		{name: "no time at all", g: plain, args: []string{"--ttl", "0s"}, want: "--ttl 0s: not positive"},
		{name: "a plain-text server", g: plain, args: []string{"--server", "http://127.0.0.1:6443"}, want: `server "http://127.0.0.1:6443"`},
		{name: "no control plane forwards the API yet",
			g:    onProvider(reacher{Provider: providertest.NewMemory(nil).New(), addr: func() (string, error) { return "", fmt.Errorf("qemu: %w", provisioner.ErrNotReachable) }}),
			want: "not reachable from this host yet; create its control plane with 'kiln apply -f cluster.yaml', or name a server with --server"},
		{name: "an unknown flag", g: plain, args: []string{"-o", "yaml"}, want: "unknown shorthand flag: 'o'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"kubeconfig", "--output-file", "refused.conf"}, tc.args...)
			code, out, errOut := kilnWith(t, dir, tc.g, args...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want a failure saying %q", code, errOut, tc.want)
			}
			if out != "" {
				t.Errorf("stdout %q", out)
			}
			if _, err := os.Stat(filepath.Join(dir, "refused.conf")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused kubeconfig was written: %v", err)
			}
		})
	}

	t.Run("help teaches", func(t *testing.T) {
		out := mustKiln(t, dir, "kubeconfig", "--help")
		for _, want := range []string{"--groups kiln:cluster-admins", "--admin --ttl 15m", "--server https://127.0.0.1:16443", "tls-server-name", "at most 24h", "403"} {
			if !strings.Contains(out, want) {
				t.Errorf("--help lacks %q", want)
			}
		}
	})
}
