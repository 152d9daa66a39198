package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/internal/testtool"
)

// TestRotateEncryptionKeyCommand: `kiln rotate encryption-key` against the control plane of a running
// `kiln controlplane run` (its directory, followed by the control plane's Wait) leaves the bundle with
// the new key alone and a Secret made before readable.
//
//	CI=true go test -count=1 -run TestRotateEncryptionKeyCommand -v ./internal/cli
func TestRotateEncryptionKeyCommand(t *testing.T) {
	// Found before the kiln calls change the working directory away from the repository.
	t.Setenv("KILN_KUBERNETES", testtool.Tool(t, "kubernetes"))
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	data, err := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := v1alpha1.Decode(data, "cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := loadBundle(t, dir, "demo")
	tok, err := secrets.NewBootstrapToken(rand.Reader, time.Now(), time.Hour, "rotate command test")
	if err != nil {
		t.Fatal(err)
	}
	b.BootstrapTokens = append(b.BootstrapTokens, tok)
	cp := controlplanetest.Start(t, ignition.Input{Cluster: c, Secrets: b, Token: tok})
	ctx, cancel := context.WithCancel(t.Context())
	waited := make(chan error, 1)
	go func() { waited <- cp.Wait(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-waited; err != nil {
			t.Errorf("the control plane's Wait: %v", err)
		}
	})
	admin := controlplanetest.Config(cp, b.ClusterCA.CertPEM)
	admin.CertData, admin.KeyData = b.Admin.CertPEM, b.Admin.KeyPEM
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "canary"}, StringData: map[string]string{"v": "before"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	code, out, errOut := kiln(t, dir, "rotate", "encryption-key", "--controlplane-dir", cp.Dir)
	t.Logf("kiln rotate encryption-key:\n%s%s", out, errOut)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out, "encrypted with key2 only (was key1)") {
		t.Errorf("output %q does not say key2 replaced key1", out)
	}
	got := loadBundle(t, dir, "demo")
	if got.EncryptionRotation != nil || got.CurrentEncryptionKeyName() != "key2" || bytes.Equal(got.EncryptionKey, b.EncryptionKey) {
		t.Errorf("the bundle after the rotation: %v", got)
	}
	s, err := client.CoreV1().Secrets("default").Get(ctx, "canary", metav1.GetOptions{})
	if err != nil || string(s.Data["v"]) != "before" {
		t.Errorf("the Secret after the rotation: %v, %v", s, err)
	}
	if strings.Contains(out+errOut, string(got.EncryptionKey)) {
		t.Error("the output shows the key")
	}
}

func TestRotateEncryptionKeyRefusals(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	code, _, errOut := kiln(t, dir, "rotate", "encryption-key", "--controlplane-dir", filepath.Join(dir, "nowhere"))
	if code == 0 || !strings.Contains(errOut, "no running 'kiln controlplane run' there") {
		t.Errorf("a directory without a control plane: exit %d, %s", code, errOut)
	}
	help := mustKiln(t, dir, "rotate", "encryption-key", "--help")
	for _, want := range []string{"new key second", "rewrite", "run it again", "--controlplane-dir", "docs/security.md"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not say %q", want)
		}
	}
}
