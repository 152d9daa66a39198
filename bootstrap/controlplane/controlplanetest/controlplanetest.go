// Package controlplanetest gives tests a real control plane: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler started on loopback by package controlplane (the code
// behind `kiln controlplane run`) from exactly what kiln renders for the first control-plane node.
// It is the one harness for tests that need a real Kubernetes API; it only finds the programs and
// ties the control plane's life to the test's.
//
// etcd and the Kubernetes binaries come from `hack/tools.sh kubernetes` (internal/testtool). A test whose programs are missing is skipped, saying how to get them, or fails under
// CI=true.
package controlplanetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/internal/testtool"
)

// ReadyTimeout bounds how long etcd and kube-apiserver may each take to become ready: generous, as
// tests share a small machine.
const ReadyTimeout = 3 * time.Minute

// Binaries finds etcd and the Kubernetes control-plane programs (hack/tools.sh kubernetes builds both),
// or skips t (fails it under CI).
func Binaries(t testing.TB) controlplane.Binaries {
	t.Helper()
	dir := filepath.Dir(testtool.Tool(t, "kubernetes"))
	bins, err := controlplane.FindBinaries(dir)
	if err != nil {
		t.Fatal(err)
	}
	return bins
}

// Start starts the control plane of in's first control-plane node (controlplane.Start) in a
// directory of t's, logging its progress to t, and stops it when t ends, showing the last lines of
// each component's log if t failed.
func Start(t testing.TB, in ignition.Input) *controlplane.ControlPlane {
	t.Helper()
	bins := Binaries(t)
	cp, err := controlplane.Start(t.Context(), in, controlplane.Options{
		Dir:          t.TempDir(),
		Binaries:     bins,
		Progress:     logWriter{t},
		ReadyTimeout: ReadyTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
				data, _ := os.ReadFile(filepath.Join(cp.Dir, "log", name+".log"))
				lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
				t.Logf("last lines of the %s log:\n%s", name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	})
	return cp
}

// Config is a client-go configuration for cp's API server that trusts caPEM (the cluster CA) and
// presents no credential: set one (CertData and KeyData, or BearerToken).
func Config(cp *controlplane.ControlPlane, caPEM []byte) *rest.Config {
	return &rest.Config{Host: cp.APIURL, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}, Timeout: 30 * time.Second}
}

// KubeletCSR makes a CertificateSigningRequest as a kubelet does, with cfg's credential (a bootstrap
// token, or the node's client certificate): for node's user (system:node:NODE in system:nodes), with a
// new key, naming sans (IP addresses, or else DNS names), for signer with usages. It returns the
// request's name.
func KubeletCSR(t testing.TB, cfg *rest.Config, node, signer string, usages []certificatesv1.KeyUsage, sans ...string) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}}
	for _, san := range sans {
		if ip := net.ParseIP(san); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, san)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := cs.CertificatesV1().CertificateSigningRequests().Create(t.Context(), &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "csr-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: signer,
			Usages:     usages,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a %s CSR for %s: %v", signer, node, err)
	}
	return csr.Name
}

// Admin is a client of cp's API as the cluster's admin (b.Admin, whose certificate is in
// system:masters).
func Admin(t testing.TB, cp *controlplane.ControlPlane, b *secrets.Bundle) kubernetes.Interface {
	t.Helper()
	cfg := Config(cp, b.ClusterCA.CertPEM)
	cfg.CertData, cfg.KeyData = b.Admin.CertPEM, b.Admin.KeyPEM
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ReadyNode registers the Node name, if it is not there, with its Ready condition True, as its
// kubelet does once its machine has booted: for tests of machines that boot nothing.
func ReadyNode(ctx context.Context, admin kubernetes.Interface, name string) error {
	_, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// The controller manager writes the new Node too (taints, pod range): retry on its conflicts.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := admin.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: now, LastTransitionTime: now}}
		_, err = admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// logWriter writes each line to the test's log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Input decodes the cluster spec specYAML and returns it with fresh secrets, valid from a minute ago
// (so that a clock tick does not make them not yet valid), and a bootstrap token valid for an hour,
// held in the bundle: what Start needs for a cluster of the test's own.
func Input(t testing.TB, specYAML string) ignition.Input {
	t.Helper()
	c, err := v1alpha1.Decode([]byte(specYAML), "cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute)
	b, err := secrets.Generate(c, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := secrets.NewBootstrapToken(rand.Reader, now, time.Hour, "kiln test "+t.Name())
	if err != nil {
		t.Fatal(err)
	}
	b.BootstrapTokens = append(b.BootstrapTokens, tok)
	return ignition.Input{Cluster: c, Secrets: b, Token: tok}
}

// EtcdGet reads key straight from the control plane's etcd with etcdctl (Debian's etcd-client;
// missing, it skips t, or fails it under CI), as the API server's etcd client, and returns the
// stored value: for a Secret, what encryption at rest made of it.
func EtcdGet(t testing.TB, cp *controlplane.ControlPlane, key string) []byte {
	t.Helper()
	bin, err := exec.LookPath("etcdctl")
	if err != nil {
		msg := fmt.Sprintf("etcdctl: %v; install the Debian package etcd-client (hack/tools.sh deps)", err)
		if testtool.CI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := filepath.Join(cp.Dir, "etc/kubernetes/pki")
	cmd := exec.CommandContext(t.Context(), bin,
		"--endpoints="+cp.EtcdURL,
		"--cacert="+filepath.Join(dir, "etcd/ca.crt"),
		"--cert="+filepath.Join(dir, "apiserver-etcd-client.crt"),
		"--key="+filepath.Join(dir, "apiserver-etcd-client.key"),
		"--dial-timeout=5s",
		"get", key, "--print-value-only")
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("etcdctl get %s: %v", key, err)
	}
	return out
}
