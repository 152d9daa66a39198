package rotate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/state/statetest"
)

const realSpec = `apiVersion: kiln.dev/v1alpha1
kind: Cluster
metadata:
  name: rot
spec:
  provider:
    name: qemu
  controlPlane:
    image: kiln-debian-12.qcow2
  nodePools:
    - name: workers
      count: 1
      image: kiln-debian-12.qcow2
  ssh:
    generate: true
`

var errCrash = errors.New("injected crash")

// crashingStore is a state store in which the transaction that would move the rotation on from phase
// failAt fails, as if kiln died after the step took effect and before it was recorded.
type crashingStore struct {
	Store
	failAt secrets.RotationPhase
}

func (s crashingStore) Modify(bucket, key string, v any, fn func() error) error {
	return s.Store.Modify(bucket, key, v, func() error {
		b, _ := v.(*secrets.Bundle)
		before := phaseOf(b)
		if err := fn(); err != nil {
			return err
		}
		if before == s.failAt && phaseOf(b) != before {
			return errCrash
		}
		return nil
	})
}

func phaseOf(b *secrets.Bundle) secrets.RotationPhase {
	if b == nil || b.EncryptionRotation == nil {
		return ""
	}
	return b.EncryptionRotation.Phase
}

// TestRotateOnARealAPI: against a real kube-apiserver and etcd started from kiln's rendered
// control-plane files, a rotation that crashes after each of its steps, once each, and is run again
// until it finishes leaves every Secret readable through the API and stored in etcd under the new
// key's name, the old key gone from the API server's configuration and from the bundle, and a newly
// rendered control-plane node with the new key alone.
//
//	CI=true go test -count=1 -run TestRotateOnARealAPI -v ./bootstrap/rotate
func TestRotateOnARealAPI(t *testing.T) {
	ctx := t.Context()
	in := controlplanetest.Input(t, realSpec)
	c, b, tok := in.Cluster, in.Secrets, in.Token
	oldKey := b.EncryptionKey
	s := statetest.NewFixed(t, statetest.Values{secrets.Bucket: {"rot": b}})
	cp := controlplanetest.Start(t, in)
	admin := controlplanetest.Config(cp, b.ClusterCA.CertPEM)
	admin.CertData, admin.KeyData = b.Admin.CertPEM, b.Admin.KeyPEM
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	provider := c.Spec.Security.Encryption.Provider

	want := map[string]string{} // namespace/name -> value
	create := func(ns, name string) {
		t.Helper()
		v := "canary-" + ns + "-" + name
		_, err := client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			StringData: map[string]string{"v": v},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want[ns+"/"+name] = v
	}
	for i := range 3 {
		create("default", fmt.Sprintf("before-%d", i))
		create("kube-system", fmt.Sprintf("before-%d", i))
	}
	for k := range want {
		if got := storedKeyName(t, cp, k, provider); got != "key1" {
			t.Fatalf("before the rotation, %s is stored under %q, want key1", k, got)
		}
	}

	opts := Options{Cluster: "rot", Provider: provider, Servers: cp, Client: client, Rand: rand.Reader, Progress: testWriter{t}}
	// From the last step on, the rotation reaches the API server as `kiln rotate encryption-key` does
	// that of a `kiln controlplane run` in another process: through its directory, which Wait follows.
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	waited := make(chan error, 1)
	for _, failAt := range []secrets.RotationPhase{secrets.RotationStarted, secrets.RotationNewKeyAdded,
		secrets.RotationNewKeyPrimary, secrets.RotationSecretsRewritten} {
		if failAt == secrets.RotationSecretsRewritten {
			go func() { waited <- cp.Wait(waitCtx) }()
			opts.Servers = controlplane.DirAPIServers{Dir: cp.Dir}
		}
		opts.Store = crashingStore{Store: s, failAt: failAt}
		if _, err := EncryptionKey(ctx, opts); !errors.Is(err, errCrash) {
			t.Fatalf("crash after the step from %s: got %v, want the injected crash", failAt, err)
		}
		got, err := secrets.Load(s, "rot")
		if err != nil {
			t.Fatal(err)
		}
		if phaseOf(got) != failAt {
			t.Fatalf("after a crash after the step from %s, the recorded phase is %q", failAt, phaseOf(got))
		}
		checkReadable(t, client, want)
		// Secrets written while the API server writes with the new key (from NewKeyPrimary on).
		if failAt == secrets.RotationNewKeyAdded {
			create("default", "during")
			if got := storedKeyName(t, cp, "default/during", provider); got != "key2" {
				t.Errorf("a Secret written with the new key first is stored under %q, want key2", got)
			}
		}
	}
	opts.Store = s
	res, err := EncryptionKey(ctx, opts)
	cancel()
	if werr := <-waited; werr != nil {
		t.Errorf("the control plane's Wait: %v", werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed != secrets.RotationSecretsRewritten || res.OldKeyName != "key1" || res.NewKeyName != "key2" {
		t.Errorf("the last run: %+v, want it resumed at SecretsRewritten, key1 -> key2", res)
	}

	checkReadable(t, client, want)
	for k := range want {
		if got := storedKeyName(t, cp, k, provider); got != "key2" {
			t.Errorf("after the rotation, %s is stored under %q, want key2", k, got)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(cp.Dir, kubecfg.DefaultEncryptionConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	final, err := secrets.Load(s, "rot")
	if err != nil {
		t.Fatal(err)
	}
	if final.EncryptionRotation != nil || final.CurrentEncryptionKeyName() != "key2" || bytes.Equal(final.EncryptionKey, oldKey) {
		t.Errorf("the bundle after the rotation: %v; want key2 alone, no rotation record", final)
	}
	if bytes.Contains(cfg, []byte(base64.StdEncoding.EncodeToString(oldKey))) || bytes.Contains(cfg, []byte("key1")) {
		t.Errorf("the API server's encryption config still holds the old key:\n%s", redactKeys(cfg))
	}
	if !bytes.Contains(cfg, []byte(base64.StdEncoding.EncodeToString(final.EncryptionKey))) {
		t.Errorf("the API server's encryption config does not hold the new key:\n%s", redactKeys(cfg))
	}

	// A control-plane node rendered now gets the new key alone: the same configuration.
	rendered := renderedEncryptionConfig(t, ignition.Input{Cluster: c, Secrets: final, Token: tok})
	if !bytes.Equal(rendered, cfg) {
		t.Errorf("a new control-plane node's encryption config differs from the running one's:\n%s\nwant\n%s", redactKeys(rendered), redactKeys(cfg))
	}
}

// renderedEncryptionConfig renders the first control-plane node of in and returns its encryption config.
func renderedEncryptionConfig(t *testing.T, in ignition.Input) []byte {
	t.Helper()
	r, err := ignition.New(in)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := r.Render(ignition.Node{Name: secrets.ControlPlaneNodeNames(in.Cluster)[0], Role: v1alpha1.RoleControlPlane})
	if err != nil {
		t.Fatal(err)
	}
	ign, _, err := v3_5.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	node, err := controlplane.Extract(ign)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := node.Write(dir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, kubecfg.DefaultEncryptionConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkReadable reads every Secret of want through the API.
func checkReadable(t *testing.T, client kubernetes.Interface, want map[string]string) {
	t.Helper()
	for k, v := range want {
		ns, name, _ := strings.Cut(k, "/")
		s, err := client.CoreV1().Secrets(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("reading %s: %v", k, err)
			continue
		}
		if got := string(s.Data["v"]); got != v {
			t.Errorf("%s holds %q, want %q", k, got, v)
		}
	}
}

// storedKeyName reads the Secret ns/name straight from etcd and returns the name of the key it is
// encrypted with, from the k8s:enc:<provider>:v1:<key name>: prefix; it fails the test if the value
// is not so encrypted.
func storedKeyName(t *testing.T, cp *controlplane.ControlPlane, nsName, provider string) string {
	t.Helper()
	out := controlplanetest.EtcdGet(t, cp, "/registry/secrets/"+nsName)
	prefix := "k8s:enc:" + provider + ":v1:"
	rest, ok := bytes.CutPrefix(out, []byte(prefix))
	if !ok {
		t.Fatalf("%s is stored in etcd as %.30q, not with the prefix %s", nsName, out, prefix)
	}
	name, _, ok := bytes.Cut(rest, []byte(":"))
	if !ok {
		t.Fatalf("%s: no key name after %s", nsName, prefix)
	}
	return string(name)
}

// redactKeys shows an encryption config without its key material.
func redactKeys(cfg []byte) string {
	var out []string
	for _, l := range strings.Split(string(cfg), "\n") {
		if strings.Contains(l, "secret:") {
			l = l[:strings.Index(l, "secret:")] + "secret: [redacted]"
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
