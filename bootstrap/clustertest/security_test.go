package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/lint"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/internal/testtool"
)

// readyTimeout bounds how long etcd and the API server may take to become ready.
const readyTimeout = 2 * time.Minute

// cluster is a control plane started from a rendered config, on loopback.
type cluster struct {
	in      ignition.Input
	root    string // the node's filesystem root: files under /etc/kubernetes land in root/etc/kubernetes
	kubeDir string // kube-apiserver, kubectl
	etcdURL string
	apiURL  string
	lbName  string
}

func TestControlPlaneSecurity(t *testing.T) {
	testtool.RequireRoot(t)
	kubeDir := kubernetesDir(t)
	etcdBin := debianTool(t, "etcd", "etcd-server")
	etcdctl := debianTool(t, "etcdctl", "etcd-client")

	in, expired := input(t)
	r, err := ignition.New(in)
	if err != nil {
		t.Fatal(err)
	}
	node := secrets.ControlPlaneNodeNames(in.Cluster)[0]
	raw, err := r.Render(ignition.Node{Name: node, Role: ignition.RoleControlPlane})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := v3_5.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}

	c := &cluster{
		in:      in,
		root:    t.TempDir(),
		kubeDir: kubeDir,
		lbName:  in.Cluster.Spec.Network.APIEndpoint.LoadBalancerName,
	}
	writeFiles(t, cfg, c.root)

	ports := freePorts(t, 4)
	clientURL := "https://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "https://127.0.0.1:" + strconv.Itoa(ports[1])
	c.etcdURL = clientURL
	c.apiURL = "https://127.0.0.1:" + strconv.Itoa(ports[2])

	etcdArgs := execStart(t, cfg, "etcd.service")
	etcdArgs = rewrite(t, etcdArgs[1:], c.root, map[string]string{
		"listen-client-urls":          clientURL,
		"advertise-client-urls":       clientURL,
		"listen-peer-urls":            peerURL,
		"initial-advertise-peer-urls": peerURL,
		"initial-cluster":             node + "=" + peerURL,
	}, nil)
	apiArgs := execStart(t, cfg, "kube-apiserver.service")
	apiArgs = rewrite(t, apiArgs[1:], c.root, map[string]string{
		"etcd-servers": clientURL,
		"secure-port":  strconv.Itoa(ports[2]),
	}, map[string]string{
		"bind-address": "127.0.0.1",
		// The API server refuses a loopback advertise address ("cannot use public IP 127.0.0.1 with
		// endpoint reconciler"). The advertise address is only written into the kubernetes Service's
		// endpoints, which nothing here dials: take one from TEST-NET-1 (RFC 5737), which routes nowhere.
		"advertise-address": "192.0.2.1",
	})
	t.Logf("etcd %s", strings.Join(etcdArgs, " "))
	t.Logf("kube-apiserver %s", strings.Join(apiArgs, " "))

	start := time.Now()
	etcd := startProcess(t, c.root, etcdBin, etcdArgs)
	waitFor(t, "etcd", etcd, func() error {
		return c.etcdctl(etcdctl, "endpoint", "health").Run()
	})
	t.Logf("etcd ready after %v", time.Since(start).Round(time.Millisecond))
	apiStart := time.Now()
	api := startProcess(t, c.root, filepath.Join(kubeDir, "kube-apiserver"), apiArgs)
	admin := c.client(t, in.Secrets.Admin)
	waitFor(t, "kube-apiserver", api, func() error {
		code, body, _, err := do(admin, http.MethodGet, c.apiURL+"/readyz", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		return nil
	})
	t.Logf("kube-apiserver ready after %v (%v after etcd was started)", time.Since(apiStart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	// What the node's kiln-cluster-init.service does: apply kiln's namespaces, RBAC and bootstrap
	// tokens with the one-time cluster-init credential.
	applied := c.clusterInit(t, api)

	// The controller manager makes each namespace's default service account, without which the
	// ServiceAccount admission plugin turns pods away, and signs kubelet client certificates.
	c.kubeconfig(t, "controller-manager.conf")
	cmArgs := execStart(t, cfg, "kube-controller-manager.service")
	cmArgs = rewrite(t, cmArgs[1:], c.root, nil, map[string]string{
		// Not rendered; its default, 10257, may be taken on the machine that runs the test.
		"secure-port": strconv.Itoa(ports[3]),
	})
	t.Logf("kube-controller-manager %s", strings.Join(cmArgs, " "))
	startProcess(t, c.root, filepath.Join(kubeDir, "kube-controller-manager"), cmArgs)

	t.Run("TLS", func(t *testing.T) {
		system := &http.Client{Timeout: 10 * time.Second}
		if _, err := system.Get(c.apiURL + "/readyz"); err == nil {
			t.Error("a client trusting only the system roots reached the API server")
		} else if !errors.As(err, new(*tls.CertificateVerificationError)) && !errors.As(err, new(x509.UnknownAuthorityError)) {
			t.Errorf("a client trusting only the system roots: want a certificate verification error, got %v", err)
		}

		conn, err := tls.Dial("tcp", strings.TrimPrefix(c.apiURL, "https://"), &tls.Config{RootCAs: c.caPool(t), ServerName: c.lbName})
		if err != nil {
			t.Fatalf("a client trusting the cluster CA, connecting as %s: %v", c.lbName, err)
		}
		defer conn.Close()
		leaf := conn.ConnectionState().PeerCertificates[0]
		if !slices.Contains(leaf.DNSNames, c.lbName) {
			t.Errorf("the serving certificate's DNS names %v lack the load balancer name %s", leaf.DNSNames, c.lbName)
		}
	})

	t.Run("authentication", func(t *testing.T) {
		anon := c.client(t, pki.KeyPair{})
		if code, body, _, err := do(anon, http.MethodGet, c.apiURL+"/api", nil); err != nil || code != http.StatusUnauthorized {
			t.Errorf("anonymous GET /api: want 401, got %d %s (%v)", code, body, err)
		}

		tok := c.in.Token
		wrong := c.bearer(t, tok.ID+"."+strings.Repeat("0", len(tok.Secret)))
		if code, body, _, err := do(wrong, http.MethodGet, c.apiURL+"/api", nil); err != nil || code != http.StatusUnauthorized {
			t.Errorf("bootstrap token with a wrong secret: want 401, got %d %s (%v)", code, body, err)
		}

		boot := c.bearer(t, tok.ID+"."+tok.Secret)
		code, body, _, err := do(boot, http.MethodPost, c.apiURL+"/apis/authentication.k8s.io/v1/selfsubjectreviews",
			[]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`))
		if err != nil || code != http.StatusCreated {
			t.Fatalf("SelfSubjectReview with the bootstrap token: want 201, got %d %s (%v)", code, body, err)
		}
		var review struct {
			Status struct {
				UserInfo struct {
					Username string   `json:"username"`
					Groups   []string `json:"groups"`
				} `json:"userInfo"`
			} `json:"status"`
		}
		if err := json.Unmarshal(body, &review); err != nil {
			t.Fatal(err)
		}
		u := review.Status.UserInfo
		if u.Username != "system:bootstrap:"+tok.ID || !slices.Contains(u.Groups, "system:bootstrappers") {
			t.Errorf("the bootstrap token authenticates as %s in %v; want system:bootstrap:%s in system:bootstrappers", u.Username, u.Groups, tok.ID)
		}

		code, body, _, err = do(boot, http.MethodGet, c.apiURL+"/apis/certificates.k8s.io/v1/certificatesigningrequests", nil)
		if err != nil || code == http.StatusUnauthorized {
			t.Errorf("bootstrap token listing CSRs: want it authenticated, got %d %s (%v)", code, body, err)
		}

		if !strings.Contains(applied, "secret/bootstrap-token-"+expired.ID+" ") {
			t.Errorf("the expired bootstrap token %s was not among the applied objects:\n%s", expired.ID, applied)
		}
		old := c.bearer(t, expired.ID+"."+expired.Secret)
		if code, body, _, err := do(old, http.MethodGet, c.apiURL+"/api", nil); err != nil || code != http.StatusUnauthorized {
			t.Errorf("expired bootstrap token: want 401, got %d %s (%v)", code, body, err)
		}
	})

	t.Run("authorization", func(t *testing.T) {
		kp, err := c.in.Secrets.ClusterCA.Issue(rand.Reader, pki.CertRequest{
			CommonName:   "nobody",
			Organization: []string{"kiln:nobody"},
			Usages:       []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			Validity:     time.Hour,
		}, time.Now().Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		secretsURL := c.apiURL + "/api/v1/namespaces/kube-system/secrets"
		if code, body, _, err := do(c.client(t, *kp), http.MethodGet, secretsURL, nil); err != nil || code != http.StatusForbidden {
			t.Errorf("a user with no binding listing secrets in kube-system: want 403, got %d %s (%v)", code, body, err)
		}
		if code, body, _, err := do(admin, http.MethodGet, secretsURL, nil); err != nil || code != http.StatusOK {
			t.Errorf("the admin (%s) listing secrets in kube-system: want 200, got %d %s (%v)", secrets.AdminGroup, code, body, err)
		}
	})

	t.Run("kubelet TLS bootstrap", func(t *testing.T) {
		boot := c.bearer(t, c.in.Token.ID+"."+c.in.Token.Secret)
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		const nodeName = "system:node:sec-general-0"
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: nodeName, Organization: []string{"system:nodes"}},
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := json.Marshal(map[string]any{
			"apiVersion": "certificates.k8s.io/v1",
			"kind":       "CertificateSigningRequest",
			"metadata":   map[string]any{"name": "node-csr-clustertest"},
			"spec": map[string]any{
				"request":    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
				"signerName": "kubernetes.io/kube-apiserver-client-kubelet",
				"usages":     []string{"digital signature", "client auth"},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		csrs := c.apiURL + "/apis/certificates.k8s.io/v1/certificatesigningrequests"
		if code, body, _, err := do(boot, http.MethodPost, csrs, csr); err != nil || code != http.StatusCreated {
			t.Fatalf("creating a kubelet client CSR with the bootstrap token: want 201, got %d %s (%v)", code, body, err)
		}
		var got struct {
			Status struct {
				Certificate []byte `json:"certificate"`
				Conditions  []struct {
					Type string `json:"type"`
				} `json:"conditions"`
			} `json:"status"`
		}
		deadline := time.Now().Add(readyTimeout)
		for len(got.Status.Certificate) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the CSR was not approved and signed within %v: %+v", readyTimeout, got.Status)
			}
			time.Sleep(250 * time.Millisecond)
			code, body, _, err := do(boot, http.MethodGet, csrs+"/node-csr-clustertest", nil)
			if err != nil || code != http.StatusOK {
				t.Fatalf("reading the CSR with the bootstrap token: want 200, got %d %s (%v)", code, body, err)
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.ContainsFunc(got.Status.Conditions, func(c struct {
			Type string `json:"type"`
		}) bool {
			return c.Type == "Approved"
		}) {
			t.Errorf("the signed CSR has no Approved condition: %+v", got.Status.Conditions)
		}
		block, _ := pem.Decode(got.Status.Certificate)
		if block == nil {
			t.Fatalf("the CSR's certificate is not PEM: %q", got.Status.Certificate)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != nodeName {
			t.Errorf("the signed certificate is for %q, want %q", cert.Subject.CommonName, nodeName)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: c.caPool(t), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("the signed certificate does not chain to the cluster CA: %v", err)
		}
	})

	t.Run("admission", func(t *testing.T) {
		privileged := func(ns string) []byte {
			return []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"privileged","namespace":"` + ns + `"},` +
				`"spec":{"containers":[{"name":"c","image":"registry.invalid/none","securityContext":{"privileged":true}}]}}`)
		}
		pods := func(ns string) string { return c.apiURL + "/api/v1/namespaces/" + ns + "/pods" }
		for _, ns := range []string{"restricted-ns", "priv-ns", "warn-ns"} {
			c.waitServiceAccount(t, admin, ns)
		}

		code, body, _, err := do(admin, http.MethodPost, pods("restricted-ns"), privileged("restricted-ns"))
		if err != nil || (code != http.StatusForbidden && code != http.StatusUnprocessableEntity) || !bytes.Contains(body, []byte("violates PodSecurity")) {
			t.Errorf("privileged pod in restricted-ns: want 403/422 violating PodSecurity, got %d %s (%v)", code, body, err)
		}
		code, body, _, err = do(admin, http.MethodPost, pods("priv-ns"), privileged("priv-ns"))
		if err != nil || code != http.StatusCreated {
			t.Errorf("privileged pod in priv-ns: want 201, got %d %s (%v)", code, body, err)
		}
		hostNet := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"host-network","namespace":"warn-ns"},` +
			`"spec":{"hostNetwork":true,"containers":[{"name":"c","image":"registry.invalid/none"}]}}`)
		code, body, hdr, err := do(admin, http.MethodPost, pods("warn-ns"), hostNet)
		if err != nil || code != http.StatusCreated {
			t.Fatalf("host-network pod in warn-ns: want 201, got %d %s (%v)", code, body, err)
		}
		warnings := strings.Join(hdr.Values("Warning"), "\n")
		if !strings.Contains(warnings, "would violate PodSecurity") || !strings.Contains(warnings, "hostNetwork") {
			t.Errorf("host-network pod in warn-ns: want a Warning header about PodSecurity and hostNetwork, got %q", warnings)
		}
		t.Logf("warn-ns: Warning: %s", warnings)
	})

	t.Run("encryption at rest", func(t *testing.T) {
		const value = "kiln-plaintext-canary-7f3a"
		secret := []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"canary","namespace":"default"},"stringData":{"v":"` + value + `"}}`)
		code, body, _, err := do(admin, http.MethodPost, c.apiURL+"/api/v1/namespaces/default/secrets", secret)
		if err != nil || code != http.StatusCreated {
			t.Fatalf("creating a Secret: want 201, got %d %s (%v)", code, body, err)
		}
		var out bytes.Buffer
		cmd := c.etcdctl(etcdctl, "get", "/registry/secrets/default/canary", "--print-value-only")
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("etcdctl get: %v", err)
		}
		stored := out.Bytes()
		prefix := "k8s:enc:" + c.in.Cluster.Spec.Security.Encryption.Provider + ":v1:"
		if !bytes.HasPrefix(stored, []byte(prefix)) {
			t.Errorf("the Secret is stored in etcd as %.40q; want the prefix %s", stored, prefix)
		}
		if bytes.Contains(stored, []byte(value)) {
			t.Error("the Secret's value is in etcd in plain text")
		}
		t.Logf("etcd holds %d bytes for the Secret, starting %.30q", len(stored), stored)
	})
}

// input renders testdata/cluster.yaml with fresh secrets and a bootstrap token valid for an hour; the
// bundle also holds a second token, returned, that expired an hour ago.
func input(t *testing.T) (ignition.Input, secrets.BootstrapToken) {
	t.Helper()
	data, err := os.ReadFile("testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := v1alpha1.Decode(data, "testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Certificates are valid from a minute ago, so that a clock tick does not make them not yet valid.
	now := time.Now().Add(-time.Minute)
	b, err := secrets.Generate(c, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := secrets.NewBootstrapToken(rand.Reader, now, time.Hour, "kiln clustertest")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := secrets.NewBootstrapToken(rand.Reader, now.Add(-2*time.Hour), time.Hour, "kiln clustertest, expired")
	if err != nil {
		t.Fatal(err)
	}
	b.BootstrapTokens = append(b.BootstrapTokens, tok, expired)
	return ignition.Input{Cluster: c, Secrets: b, Token: tok}, expired
}

// kubernetesDir returns the directory holding kube-apiserver, kube-controller-manager and kubectl,
// built by `hack/tools.sh kubernetes` (or $KILN_KUBERNETES naming kube-apiserver).
func kubernetesDir(t *testing.T) string {
	t.Helper()
	return filepath.Dir(testtool.Tool(t, "kubernetes"))
}

// debianTool returns the path of a program from a Debian package, failing under CI and skipping
// elsewhere when it is missing.
func debianTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s: %v; install the Debian package %s (hack/tools.sh deps)", name, err, pkg)
		if testtool.CI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// writeFiles writes the config's files under /etc/kubernetes to the same paths under root.
func writeFiles(t *testing.T, cfg types.Config, root string) {
	t.Helper()
	n := 0
	for _, f := range cfg.Storage.Files {
		if !strings.HasPrefix(f.Path, "/etc/kubernetes/") || f.Contents.Source == nil {
			continue
		}
		data, err := lint.DecodeSource(*f.Contents.Source, f.Contents.Compression)
		if err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		mode := os.FileMode(0o644)
		if f.Mode != nil {
			mode = os.FileMode(*f.Mode)
		}
		p := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("the rendered config has no files under /etc/kubernetes")
	}
}

// execStart returns the words of the ExecStart line of the named unit, continuations joined.
func execStart(t *testing.T, cfg types.Config, unit string) []string {
	t.Helper()
	for _, u := range cfg.Systemd.Units {
		if u.Name != unit || u.Contents == nil {
			continue
		}
		var line strings.Builder
		in := false
		sc := bufio.NewScanner(strings.NewReader(*u.Contents))
		for sc.Scan() {
			l := sc.Text()
			if !in {
				if !strings.HasPrefix(l, "ExecStart=") {
					continue
				}
				in = true
				l = strings.TrimPrefix(l, "ExecStart=")
			}
			cont := strings.HasSuffix(l, `\`)
			line.WriteString(strings.TrimSuffix(l, `\`))
			line.WriteByte(' ')
			if !cont {
				break
			}
		}
		if words := strings.Fields(line.String()); len(words) > 0 {
			return words
		}
		t.Fatalf("%s has no ExecStart", unit)
	}
	t.Fatalf("the rendered config has no unit %s", unit)
	return nil
}

// rewrite returns args (--name=value flags) with absolute paths moved under root, the values of the
// flags in set replaced (each must be among args) and the flags in add appended.
func rewrite(t *testing.T, args []string, root string, set, add map[string]string) []string {
	t.Helper()
	out := make([]string, 0, len(args)+len(add))
	seen := map[string]bool{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			t.Fatalf("argument %q is not --name=value", a)
		}
		if _, dup := add[name]; dup {
			t.Fatalf("the rendered flags already set --%s=%s", name, value)
		}
		switch v, ok := set[name]; {
		case ok:
			value = v
			seen[name] = true
		case strings.HasPrefix(value, "/"):
			value = filepath.Join(root, value)
			if err := os.MkdirAll(filepath.Dir(value), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, "--"+name+"="+value)
	}
	for name := range set {
		if !seen[name] {
			t.Fatalf("the rendered flags lack --%s", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(add)) {
		out = append(out, "--"+name+"="+add[name])
	}
	return out
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// process is a started program whose exit is reported on done.
type process struct {
	name string
	log  string
	done chan error
}

// startProcess starts bin with args in dir, logging to a file; the process is killed at cleanup and
// the last lines of its log are printed if the test failed.
func startProcess(t *testing.T, dir, bin string, args []string) *process {
	t.Helper()
	p := &process{name: filepath.Base(bin), log: filepath.Join(dir, filepath.Base(bin)+".log"), done: make(chan error, 1)}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("last lines of the %s log:\n%s", p.name, tail(p.log, 40))
		}
	})
	return p
}

// waitFor polls ready until it succeeds, the process exits or readyTimeout passes.
func waitFor(t *testing.T, what string, p *process, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if last = ready(); last == nil {
			return
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited before it was ready: %v", what, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Fatalf("%s not ready after %v: %v", what, readyTimeout, last)
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// etcdctl runs etcdctl against the test's etcd with the API server's etcd client certificate.
func (c *cluster) etcdctl(bin string, args ...string) *exec.Cmd {
	dir := filepath.Join(c.root, "etc/kubernetes/pki")
	cmd := exec.Command(bin, append([]string{
		"--endpoints=" + c.etcdURL,
		"--cacert=" + filepath.Join(dir, "etcd/ca.crt"),
		"--cert=" + filepath.Join(dir, "apiserver-etcd-client.crt"),
		"--key=" + filepath.Join(dir, "apiserver-etcd-client.key"),
		"--dial-timeout=5s",
	}, args...)...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	return cmd
}

// clusterInit applies the rendered /etc/kubernetes/kiln manifests with the rendered cluster-init
// kubeconfig, pointed at the test's API server, as kiln-cluster-init.service does.
// It returns kubectl's output.
func (c *cluster) clusterInit(t *testing.T, api *process) string {
	t.Helper()
	conf := c.kubeconfig(t, "cluster-init.conf")
	var out []byte
	waitFor(t, "kubectl apply", api, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		cmd := exec.CommandContext(ctx, filepath.Join(c.kubeDir, "kubectl"), "--kubeconfig="+conf,
			"apply", "--server-side", "-f", filepath.Join(c.root, "etc/kubernetes/kiln")+"/")
		out, err = cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
	t.Logf("kubectl apply --server-side:\n%s", out)
	return string(out)
}

// kubeconfig points the rendered kubeconfig /etc/kubernetes/NAME at the test's API server, in place,
// and returns its path.
func (c *cluster) kubeconfig(t *testing.T, name string) string {
	t.Helper()
	conf := filepath.Join(c.root, "etc/kubernetes", name)
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	server := regexp.MustCompile(`(?m)^(\s*server:\s*)\S+$`)
	if !server.Match(data) {
		t.Fatalf("%s has no server", conf)
	}
	if err := os.WriteFile(conf, server.ReplaceAll(data, []byte("${1}"+c.apiURL)), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf
}

// waitServiceAccount waits until the controller manager has made the namespace's default service
// account.
func (c *cluster) waitServiceAccount(t *testing.T, admin *http.Client, ns string) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		code, body, _, err := do(admin, http.MethodGet, c.apiURL+"/api/v1/namespaces/"+ns+"/serviceaccounts/default", nil)
		if err == nil && code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no default service account in %s after %v (is kube-controller-manager running?): %d %s (%v)", ns, readyTimeout, code, body, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (c *cluster) caPool(t *testing.T) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.in.Secrets.ClusterCA.CertPEM) {
		t.Fatal("the cluster CA certificate does not parse")
	}
	return pool
}

// client is an HTTPS client trusting the cluster CA, presenting kp if it has a certificate.
func (c *cluster) client(t *testing.T, kp pki.KeyPair) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: c.caPool(t)}
	if len(kp.CertPEM) > 0 {
		cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// bearer is an HTTPS client trusting the cluster CA that sends token as a bearer token.
func (c *cluster) bearer(t *testing.T, token string) *http.Client {
	t.Helper()
	hc := c.client(t, pki.KeyPair{})
	hc.Transport = bearerTransport{token: token, next: hc.Transport}
	return hc
}

type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// do sends one request and returns the status, body and headers of the response.
func do(hc *http.Client, method, url string, body []byte) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}
