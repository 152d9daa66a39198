package tokens

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/state/statetest"
)

// settle bounds how long the API server may take to act on an applied or deleted token.
const settle = 30 * time.Second

const realSpec = `apiVersion: kiln.dev/v1alpha1
kind: Cluster
metadata:
  name: tok
spec:
  provider:
    name: qemu
  controlPlane:
    image: kiln-debian-12.qcow2
  nodePools:
    - name: workers
      count: 1
      image: kiln-debian-12.qcow2
    - name: gpu
      count: 1
      image: kiln-debian-12.qcow2
  ssh:
    generate: true
`

// TestTokensOnARealAPI: against a real kube-apiserver and controller manager started from kiln's
// rendered control-plane files, a machine's token authenticates in system:bootstrappers only once it
// was applied (before the machine is created), each machine has its own, and a token that expired,
// whose Node joined or whose machine is gone gets 401.
//
//	CI=true go test -count=1 -run TestTokensOnARealAPI -v ./bootstrap/tokens
func TestTokensOnARealAPI(t *testing.T) {
	ctx := t.Context()
	c, err := v1alpha1.Decode([]byte(realSpec), "cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b, err := secrets.Generate(c, rand.Reader, start.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	s := statetest.NewFixed(t, statetest.Values{secrets.Bucket: {"tok": b}})

	// The first control-plane node is rendered before there is an API: its token is only stored, and
	// its first-boot manifests carry it.
	b, cp0, err := Ensure(ctx, StateStore{State: s}, nil, c, "tok-control-plane-0", "control-plane", start)
	if err != nil {
		t.Fatal(err)
	}
	cp := controlplanetest.Start(t, ignition.Input{Cluster: c, Secrets: b, Token: cp0})
	admin := controlplanetest.Config(cp, b.ClusterCA.CertPEM)
	admin.CertData, admin.KeyData = b.Admin.CertPEM, b.Admin.KeyPEM
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	k := &Cluster{Name: "tok", Client: client}

	// who authenticates as token tok: its user name and groups, or the API's error.
	who := func(t *testing.T, tok secrets.BootstrapToken) (string, []string, error) {
		t.Helper()
		cfg := controlplanetest.Config(cp, b.ClusterCA.CertPEM)
		cfg.BearerToken = tok.String()
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			return "", nil, err
		}
		return r.Status.UserInfo.Username, r.Status.UserInfo.Groups, nil
	}
	// The API server's token authenticator reads Secrets through an informer: what is applied or
	// deleted counts once its cache has it, a moment later.
	eventually := func(t *testing.T, tok secrets.BootstrapToken, done func(err error) bool) (string, []string, error) {
		t.Helper()
		var (
			user   string
			groups []string
			err    error
		)
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, settle, true, func(context.Context) (bool, error) {
			user, groups, err = who(t, tok)
			return done(err), nil
		})
		return user, groups, err
	}
	authenticates := func(t *testing.T, tok secrets.BootstrapToken, groups ...string) {
		t.Helper()
		user, got, err := eventually(t, tok, func(err error) bool { return err == nil })
		if err != nil {
			t.Fatalf("token %s of %s: %v", tok.ID, tok.Machine, err)
		}
		if user != "system:bootstrap:"+tok.ID {
			t.Errorf("token %s authenticates as %s", tok.ID, user)
		}
		for _, g := range append([]string{kubecfg.BootstrappersGroup}, groups...) {
			if !slices.Contains(got, g) {
				t.Errorf("token %s of %s is in %v, not in %s", tok.ID, tok.Machine, got, g)
			}
		}
	}
	unauthorized := func(t *testing.T, tok secrets.BootstrapToken, why string) {
		t.Helper()
		if user, _, err := eventually(t, tok, apierrors.IsUnauthorized); !apierrors.IsUnauthorized(err) {
			t.Errorf("token %s (%s): want 401, got %s, %v", tok.ID, why, user, err)
		}
	}

	t.Run("the first control plane's token, from its first-boot manifests", func(t *testing.T) {
		authenticates(t, cp0)
	})

	var w0, g0, late secrets.BootstrapToken
	t.Run("applied before the machine is created, one per machine", func(t *testing.T) {
		var err error
		if _, w0, err = Ensure(ctx, StateStore{State: s}, k, c, "tok-workers-0", "workers", time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, g0, err = Ensure(ctx, StateStore{State: s}, k, c, "tok-gpu-0", "gpu", time.Now()); err != nil {
			t.Fatal(err)
		}
		if w0.ID == g0.ID || w0.Secret == g0.Secret {
			t.Fatalf("two machines share a token part: %s and %s", w0.ID, g0.ID)
		}
		authenticates(t, w0, PoolGroup("workers"))
		authenticates(t, g0, PoolGroup("gpu"))
		if _, groups, _ := who(t, w0); slices.Contains(groups, PoolGroup("gpu")) {
			t.Errorf("the workers' token is in the gpu pool's group: %v", groups)
		}
		// kiln's TLS-bootstrap bindings hold for a machine's token: its kubelet's CSR is approved and
		// signed.
		csrApproved(t, cp, b.ClusterCA.CertPEM, w0, "tok-workers-0")
		// Ensure again (a create repeated after a crash): the same token, still good.
		if _, again, err := Ensure(ctx, StateStore{State: s}, k, c, "tok-workers-0", "workers", time.Now()); err != nil || again != w0 {
			t.Errorf("Ensure again = %s, %v; want %s", again.ID, err, w0.ID)
		}
	})

	t.Run("not applied, refused; applied by the next Sync", func(t *testing.T) {
		var err error
		if _, late, err = Ensure(ctx, StateStore{State: s}, nil, c, "tok-workers-1", "workers", time.Now()); err != nil {
			t.Fatal(err)
		}
		unauthorized(t, late, "stored, not applied")
		plan, err := Sync(ctx, StateStore{State: s}, k, c, []string{"tok-control-plane-0", "tok-workers-0", "tok-workers-1", "tok-gpu-0"}, time.Now(), Policy{})
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Apply) != 1 || plan.Apply[0].ID != late.ID {
			t.Errorf("Sync applied %+v, want only %s", plan.Apply, late.ID)
		}
		authenticates(t, late, PoolGroup("workers"))
	})

	t.Run("expired", func(t *testing.T) {
		// Minted two hours ago with the spec's one-hour TTL: the API takes the Secret and refuses the token.
		_, old, err := Ensure(ctx, StateStore{State: s}, k, c, "tok-workers-2", "workers", time.Now().Add(-2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		unauthorized(t, old, "expired")
	})

	t.Run("deleted once its Node joined, and once its machine is gone", func(t *testing.T) {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "tok-workers-0"}}
		node, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The controller manager writes the new Node too (taints, pod range): retry on its conflicts.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n, err := client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
			_, err = client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		// Requests left pending: two by tok-gpu-0 (with its token, and as its node), one by tok-workers-1
		// with its token.
		gpuBoot := pendingCSR(t, cp, b, g0.String(), "tok-gpu-0")
		gpuNode := pendingCSR(t, cp, b, "", "tok-gpu-0")
		lateBoot := pendingCSR(t, cp, b, late.String(), "tok-workers-1")

		// tok-gpu-0 is deleted: the provider lists it no more.
		plan, err := Sync(ctx, StateStore{State: s}, k, c, []string{"tok-control-plane-0", "tok-workers-0", "tok-workers-1"}, time.Now(), Policy{Grace: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		reasons := map[string]string{}
		for _, d := range plan.Forget {
			reasons[d.Machine] = d.Reason
		}
		if reasons["tok-workers-0"] != ReasonJoined || reasons["tok-gpu-0"] != ReasonGone || reasons["tok-workers-2"] != ReasonExpired {
			t.Errorf("Sync forgot %v; want tok-workers-0 joined, tok-gpu-0 gone, tok-workers-2 expired", reasons)
		}
		var csrs []string
		for _, d := range plan.DeleteCSRs {
			csrs = append(csrs, d.Name)
		}
		slices.Sort(csrs)
		if want := slices.Sorted(slices.Values([]string{gpuBoot, gpuNode})); !slices.Equal(csrs, want) {
			t.Errorf("Sync deleted the CSRs %v; want tok-gpu-0's %v", csrs, want)
		}
		for name, want := range map[string]bool{gpuBoot: false, gpuNode: false, lateBoot: true} {
			_, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
			if got := err == nil; got != want || (!got && !apierrors.IsNotFound(err)) {
				t.Errorf("CSR %s: %v; want it kept: %v", name, err, want)
			}
		}
		unauthorized(t, w0, "its Node joined")
		unauthorized(t, g0, "its machine is gone")
		for _, id := range []string{w0.ID, g0.ID} {
			if _, err := client.CoreV1().Secrets("kube-system").Get(ctx, kubecfg.BootstrapTokenSecretPrefix+id, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("the Secret of token %s: %v, want it deleted", id, err)
			}
		}
		st, err := secrets.Load(s, "tok")
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, tok := range st.BootstrapTokens {
			left = append(left, tok.Machine)
		}
		slices.Sort(left)
		if got := strings.Join(left, " "); got != "tok-control-plane-0 tok-workers-1" {
			t.Errorf("the store keeps the tokens of %s; want tok-control-plane-0 tok-workers-1", got)
		}
	})

	// When a machine's Node is deleted with it, the requests it made as its node go too.
	t.Run("a deleted Node's pending CSRs", func(t *testing.T) {
		w0Serving := pendingCSR(t, cp, b, "", "tok-workers-0")
		w1Serving := pendingCSR(t, cp, b, "", "tok-workers-1")
		deleted, err := k.DeleteNodeCSRs(ctx, "tok-workers-0")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(deleted, []string{w0Serving}) {
			t.Errorf("DeleteNodeCSRs(tok-workers-0) deleted %v, want [%s]", deleted, w0Serving)
		}
		if _, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, w1Serving, metav1.GetOptions{}); err != nil {
			t.Errorf("tok-workers-1's CSR: %v", err)
		}
	})
	t.Logf("%d objects applied by the cluster init; control plane ready in %v", len(cp.Applied), cp.APIReady)
}

// pendingCSR makes a kubelet serving CSR for node, which nothing approves by itself, as a kubelet
// does: with bootstrap token tok, or, without one, with a client certificate of the node from the
// cluster CA. It returns the CSR's name.
func pendingCSR(t *testing.T, cp *controlplane.ControlPlane, b *secrets.Bundle, tok, node string) string {
	t.Helper()
	cfg := controlplanetest.Config(cp, b.ClusterCA.CertPEM)
	if tok != "" {
		cfg.BearerToken = tok
	} else {
		kp, err := b.ClusterCA.Issue(rand.Reader, pki.CertRequest{CommonName: NodeUser(node), Organization: []string{kubecfg.NodesGroup},
			Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cfg.CertData, cfg.KeyData = kp.CertPEM, kp.KeyPEM
	}
	return controlplanetest.KubeletCSR(t, cfg, node, certificatesv1.KubeletServingSignerName,
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}, node)
}

// csrApproved creates a kubelet client CSR for node with token tok, as a kubelet's TLS bootstrap does,
// and waits until the controller manager has approved and signed it.
func csrApproved(t *testing.T, cp *controlplane.ControlPlane, caPEM []byte, tok secrets.BootstrapToken, node string) {
	t.Helper()
	ctx := t.Context()
	cfg := controlplanetest.Config(cp, caPEM)
	cfg.BearerToken = tok.String()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	name := controlplanetest.KubeletCSR(t, cfg, node, certificatesv1.KubeAPIServerClientKubeletSignerName,
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth})
	var (
		status certificatesv1.CertificateSigningRequestStatus
		getErr error
	)
	_ = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var got *certificatesv1.CertificateSigningRequest
		if got, getErr = cs.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{}); getErr == nil {
			status = got.Status
		}
		return getErr == nil && len(status.Certificate) > 0, nil
	})
	if getErr != nil || len(status.Certificate) == 0 {
		t.Fatalf("the CSR of token %s was not approved and signed: %v (%+v)", tok.ID, getErr, status.Conditions)
	}
}
