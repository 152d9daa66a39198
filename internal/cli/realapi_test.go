package cli

import (
	"context"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/bootstrap/servingcsr"
	"github.com/kiln-dev/kiln/bootstrap/tokens"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/providertest"
)

// settle bounds how long the API server may take to act on a token applied or deleted: its
// authenticator reads Secrets through an informer and caches an answer for 10 s.
const settle = 30 * time.Second

// whoAmI asks the API who cfg is (a SelfSubjectReview).
func whoAmI(ctx context.Context, t *testing.T, cfg *rest.Config) (string, []string, error) {
	t.Helper()
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

// TestAccessAndTokensOnARealAPI runs `kiln kubeconfig` and `kiln apply` against a real kube-apiserver
// (and controller manager) started from what kiln renders for the cluster's first control-plane node,
// reached, as on QEMU, at an address the provider forwards (provisioner.APIReacher):
//
//   - the kubeconfigs kiln issues authenticate as their user in their groups; an unbound user gets 403
//     listing Secrets, --admin gets 200, and an expired certificate 401;
//
//   - a machine created two token lifetimes after the cluster's first tokens were minted (and had
//     expired) gets a fresh token of its own, applied to the cluster before the machine was created,
//     that authenticates; the expired ones are gone from the store and the cluster.
//
//     CI=true go test -count=1 -run TestAccessAndTokensOnARealAPI -v ./internal/cli
func TestAccessAndTokensOnARealAPI(t *testing.T) {
	controlplanetest.Binaries(t) // skip early when the programs are missing
	ctx := t.Context()
	dir := t.TempDir()
	mustKiln(t, dir, "init", "late")
	c, err := loadSpec(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ttl := c.Spec.Security.BootstrapTokenTTL.Duration
	mem := providertest.NewMemory(nil)
	made := recordConfigs(mem)
	addressBookOf(mem).boot(t) // the machines answer over SSH before there is an API
	var (
		mu      sync.Mutex
		apiAddr string // host:port of the API once it runs
		clock   = time.Now().Add(-2 * ttl)
	)
	g := &globals{
		newProvider: func(context.Context, *v1alpha1.Cluster) (provisioner.Provider, error) {
			// A qemu spec: the provider reserves addresses, as QEMU's does, and forwards the API.
			return addressingMemory{Provider: mem.New(), book: addressBookOf(mem), api: func() (string, error) {
				mu.Lock()
				defer mu.Unlock()
				if apiAddr == "" {
					return "", provisioner.ErrNotReachable
				}
				return apiAddr, nil
			}}, nil
		},
		now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return clock
		},
	}
	kilnG := func(t *testing.T, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := kilnWith(t, dir, g, args...)
		if code != 0 {
			t.Fatalf("kiln %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
		}
		return out, errOut
	}

	// Two token lifetimes ago, before there was an API: the machines' tokens are only stored, and the
	// first control plane carries its own in its first-boot manifests.
	kilnG(t, "apply", "--interval", "1ms", "--timeout", "30s")
	first := map[string]secrets.BootstrapToken{}
	for _, tok := range loadBundle(t, dir, "late").BootstrapTokens {
		first[tok.Machine] = tok
	}
	cp0, ok := first["late-control-plane-0"]
	if !ok || len(first) != 3 {
		t.Fatalf("after the first apply the store holds tokens for %v", first)
	}

	// The control plane of the first control-plane node, as it boots from its config.
	b := loadBundle(t, dir, "late")
	cp := controlplanetest.Start(t, ignition.Input{Cluster: c, Secrets: b, Token: cp0})
	u, err := url.Parse(cp.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	apiAddr = u.Host
	mu.Unlock()
	admin := controlplanetest.Config(cp, b.ClusterCA.CertPEM)
	admin.CertData, admin.KeyData = b.Admin.CertPEM, b.Admin.KeyPEM
	adminClient, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}

	// kubeconfig issues a kubeconfig and returns client-go's configuration of it.
	kubeconfig := func(t *testing.T, name string, args ...string) *rest.Config {
		t.Helper()
		_, errOut := kilnG(t, append([]string{"kubeconfig", "--output-file", name}, args...)...)
		t.Logf("kiln kubeconfig %s: %s", strings.Join(args, " "), strings.TrimSpace(errOut))
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := clientcmd.RESTConfigFromKubeConfig(data)
		if err != nil {
			t.Fatal(err)
		}
		if rc.Host != cp.APIURL || rc.TLSClientConfig.ServerName != "api.late.kiln.internal" || rc.TLSClientConfig.Insecure {
			t.Errorf("the kubeconfig names %s as %q (insecure %v); want %s checked as api.late.kiln.internal", rc.Host, rc.TLSClientConfig.ServerName, rc.TLSClientConfig.Insecure, cp.APIURL)
		}
		return rc
	}
	listSecrets := func(rc *rest.Config) error {
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return err
		}
		_, err = cs.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
		return err
	}

	t.Run("kubeconfig: the user and groups it says", func(t *testing.T) {
		rc := kubeconfig(t, "alice.conf", "--user", "kiln:alice", "--groups", "kiln:developers,kiln:qa")
		user, groups, err := whoAmI(ctx, t, rc)
		if err != nil {
			t.Fatal(err)
		}
		if user != "kiln:alice" {
			t.Errorf("authenticated as %s, want kiln:alice", user)
		}
		for _, g := range []string{"kiln:developers", "kiln:qa", "system:authenticated"} {
			if !slices.Contains(groups, g) {
				t.Errorf("groups %v lack %s", groups, g)
			}
		}
		if slices.Contains(groups, "system:masters") {
			t.Errorf("groups %v hold system:masters", groups)
		}
		if err := listSecrets(rc); !apierrors.IsForbidden(err) {
			t.Errorf("an unbound user listing Secrets in kube-system: %v, want 403", err)
		}
	})

	t.Run("kubeconfig: cluster-admin through RBAC, and --admin", func(t *testing.T) {
		if err := listSecrets(kubeconfig(t, "ops.conf", "--user", "kiln:ops", "--groups", secrets.AdminGroup, "--ttl", "10m")); err != nil {
			t.Errorf("kiln:cluster-admins listing Secrets: %v, want 200", err)
		}
		rc := kubeconfig(t, "masters.conf", "--admin", "--ttl", "10m")
		if _, groups, err := whoAmI(ctx, t, rc); err != nil || !slices.Contains(groups, "system:masters") {
			t.Errorf("--admin authenticates in %v (%v), want system:masters", groups, err)
		}
		if err := listSecrets(rc); err != nil {
			t.Errorf("--admin listing Secrets: %v, want 200", err)
		}
	})

	t.Run("kubeconfig: an expired certificate", func(t *testing.T) {
		rc := kubeconfig(t, "brief.conf", "--user", "kiln:brief", "--ttl", "1s")
		time.Sleep(2 * time.Second)
		if _, _, err := whoAmI(ctx, t, rc); !apierrors.IsUnauthorized(err) {
			t.Errorf("a certificate past its TTL: %v, want 401", err)
		}
	})

	bearer := func(tok string) *rest.Config {
		cfg := controlplanetest.Config(cp, b.ClusterCA.CertPEM)
		cfg.BearerToken = tok
		return cfg
	}

	var replacement secrets.BootstrapToken
	t.Run("a machine created after the first tokens expired gets a fresh one, in the cluster, that authenticates", func(t *testing.T) {
		// The first control plane's token, minted two lifetimes ago, is in the cluster from its
		// first-boot manifests, and expired.
		if _, _, err := whoAmI(ctx, t, bearer(cp0.String())); !apierrors.IsUnauthorized(err) {
			t.Errorf("the first control plane's token, expired: %v, want 401", err)
		}
		// Now (T + 2 TTL) a worker fails and is replaced.
		mu.Lock()
		clock = time.Now()
		now := clock
		mu.Unlock()
		mem.SetState("late-workers-1", provisioner.StateError)
		// The replacement's SSH answers, but so does the API: it is ready only once its Node is Ready
		// (the last subtest), and apply does not converge before. (Its last pass, at --timeout, may
		// find the Nodes unread: client-go's rate limiter refuses a wait past the deadline.)
		_, _, errOut := kilnWith(t, dir, g, "apply", "--interval", "1ms", "--timeout", "10s")
		if !strings.Contains(errOut, "create late-workers-2") || !strings.Contains(errOut, "the cluster's API answers kiln") ||
			!strings.Contains(errOut, "pass 2: 2 of 3 machines ready\n") {
			t.Fatalf("apply after the failure:\n%s", errOut)
		}
		cfg := made.get("late-workers-2")
		if cfg == nil {
			t.Fatal("the replacement late-workers-2 was not created")
		}
		tok := bootstrapToken(t, cfg)
		var own secrets.BootstrapToken
		for _, s := range loadBundle(t, dir, "late").BootstrapTokens {
			if s.Machine == "late-workers-2" {
				own = s
			}
		}
		if own.String() != tok {
			t.Fatalf("late-workers-2 joins with a token that is not the one stored for it (%s)", own.ID)
		}
		if own.Issued.Before(now) || own.Expires.Sub(now) != ttl {
			t.Errorf("the replacement's token was issued %v and expires %v; want a fresh one, valid for %v from %v", own.Issued, own.Expires, ttl, now)
		}
		sec, err := adminClient.CoreV1().Secrets("kube-system").Get(ctx, kubecfg.BootstrapTokenSecretPrefix+own.ID, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the replacement's token is not in the cluster: %v", err)
		}
		if sec.Labels[tokens.LabelMachine] != "late-workers-2" || string(sec.Data["expiration"]) != own.Expires.UTC().Format(time.RFC3339) {
			t.Errorf("its Secret: labels %v, expiration %s", sec.Labels, sec.Data["expiration"])
		}
		var (
			user    string
			groups  []string
			authErr error
		)
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, settle, true, func(context.Context) (bool, error) {
			user, groups, authErr = whoAmI(ctx, t, bearer(tok))
			return authErr == nil, nil
		})
		if authErr != nil {
			t.Fatalf("the replacement's token does not authenticate: %v", authErr)
		}
		if user != "system:bootstrap:"+own.ID || !slices.Contains(groups, kubecfg.BootstrappersGroup) || !slices.Contains(groups, tokens.PoolGroup("workers")) {
			t.Errorf("the replacement's token authenticates as %s in %v", user, groups)
		}
		// The first tokens expired: apply forgot them, and deleted them from the cluster.
		left := loadBundle(t, dir, "late").BootstrapTokens
		if len(left) != 1 || left[0].ID != own.ID {
			t.Errorf("the store keeps %v; want only the replacement's token", left)
		}
		for m, old := range first {
			if _, err := adminClient.CoreV1().Secrets("kube-system").Get(ctx, kubecfg.BootstrapTokenSecretPrefix+old.ID, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("the expired token of %s is still in the cluster: %v", m, err)
			}
		}
		replacement = own
	})

	t.Run("apply approves a machine's kubelet serving certificate for its name and address, and no other", func(t *testing.T) {
		if replacement.ID == "" {
			t.Skip("no replacement was made")
		}
		book := addressBookOf(mem)
		book.mu.Lock()
		addr := book.addrs["late-workers-2"]
		book.mu.Unlock()
		if !addr.IsValid() {
			t.Fatal("late-workers-2 has no reserved address")
		}
		good := servingCSRAs(t, cp, b, "late-workers-2", addr.String())
		wrongIP := servingCSRAs(t, cp, b, "late-workers-2", addr.String(), "10.9.9.9")
		stranger := servingCSRAs(t, cp, b, "late-stranger", "10.0.0.99")
		// late-workers-2 has no Node yet: apply does not converge, and approves what it should meanwhile.
		_, _, errOut := kilnWith(t, dir, g, "apply", "--interval", "1ms", "--timeout", "10s")
		for _, want := range []string{
			`msg="kubelet serving certificate approved" csr=` + good + ` node=late-workers-2 reason="kubelet serving certificate of node late-workers-2 for late-workers-2, ` + addr.String() + `"`,
			`msg="kubelet serving certificate request left pending" csr=` + wrongIP + ` node=late-workers-2 reason="IP address 10.9.9.9 is not an address of machine late-workers-2`,
			`msg="kubelet serving certificate request left pending" csr=` + stranger + ` node=late-stranger reason="node late-stranger is not a machine kiln manages"`,
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("apply did not log %s:\n%s", want, errOut)
			}
		}
		var csr *certificatesv1.CertificateSigningRequest
		_ = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			csr, err = adminClient.CertificatesV1().CertificateSigningRequests().Get(ctx, good, metav1.GetOptions{})
			return err == nil && len(csr.Status.Certificate) > 0, nil
		})
		if err != nil || len(csr.Status.Certificate) == 0 {
			t.Fatalf("the approved CSR %s was not signed: %v (%+v)", good, err, csr.Status.Conditions)
		}
		if c := csr.Status.Conditions; len(c) == 0 || c[0].Type != certificatesv1.CertificateApproved || c[0].Reason != servingcsr.ApprovalReason {
			t.Errorf("CSR %s: conditions %+v, want approved by kiln", good, c)
		}
		for _, name := range []string{wrongIP, stranger} {
			csr, err := adminClient.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
			if err != nil || len(csr.Status.Conditions) != 0 {
				t.Errorf("CSR %s: %v, conditions %+v; want it left pending", name, err, csr.Status.Conditions)
			}
		}
	})

	t.Run("once the machine's Node is Ready, apply sees it and deletes the token", func(t *testing.T) {
		if replacement.ID == "" {
			t.Skip("no replacement was made")
		}
		readyNode(t, adminClient, "late-workers-2")
		// apply's own view of the Nodes, with its own certificate.
		p, err := g.newProvider(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		_, keeper := g.executor(c, p, slog.New(slog.DiscardHandler), applyOptions{})
		nodes, err := keeper.NodeReady(ctx)
		if err != nil || !nodes["late-workers-2"].Known || !nodes["late-workers-2"].Ready {
			t.Errorf("apply's view of the Nodes: %v, %v; want late-workers-2 Ready", nodes, err)
		}
		kilnG(t, "apply", "--interval", "1ms", "--timeout", "60s")
		if left := loadBundle(t, dir, "late").BootstrapTokens; len(left) != 0 {
			t.Errorf("the store keeps %v after the Node joined", left)
		}
		var authErr error
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, settle, true, func(context.Context) (bool, error) {
			_, _, authErr = whoAmI(ctx, t, bearer(replacement.String()))
			return apierrors.IsUnauthorized(authErr), nil
		})
		if !apierrors.IsUnauthorized(authErr) {
			t.Errorf("the token of a machine whose Node joined: %v, want 401", authErr)
		}
	})
}
