package clustertest

import (
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
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/clusterapply"
	"github.com/kiln-dev/kiln/bootstrap/controlplane"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/internal/testtool"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

// readyTimeout bounds how long etcd, the API server and the controller manager may take to become
// ready or to act.
const readyTimeout = 2 * time.Minute

// cluster is a control plane started from a rendered config, on loopback.
type cluster struct {
	in     ignition.Input
	cp     *controlplane.ControlPlane
	apiURL string
	lbName string
}

func TestControlPlaneSecurity(t *testing.T) {
	testtool.RequireRoot(t)
	kubeDir := kubernetesDir(t)
	etcdctl := debianTool(t, "etcdctl", "etcd-client")
	bins, err := controlplane.FindBinaries(kubeDir)
	if err != nil {
		t.Fatal(err)
	}

	// Exactly the files and flags kiln renders for the control-plane node, run on loopback by the
	// same code as `kiln controlplane run` (package controlplane); it also applies the rendered
	// namespaces, RBAC and bootstrap tokens as the node's cluster init does, with its credentials.
	in, expired := input(t)
	ctx := t.Context()
	cp, err := controlplane.Start(ctx, in, controlplane.Options{
		Dir:          t.TempDir(),
		Binaries:     bins,
		Progress:     testWriter{t},
		ReadyTimeout: readyTimeout,
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
	t.Logf("etcd ready after %v, kube-apiserver ready %v after it was started", cp.EtcdReady.Round(time.Millisecond), cp.APIReady.Round(time.Millisecond))
	c := &cluster{
		in:     in,
		cp:     cp,
		apiURL: cp.APIURL,
		lbName: in.Cluster.Spec.Network.APIEndpoint.LoadBalancerName,
	}
	admin := c.client(t, in.Secrets.Admin)
	var applied []string
	for _, ch := range cp.Applied {
		applied = append(applied, ch.String())
	}
	t.Logf("cluster init applied:\n%s", strings.Join(applied, "\n"))
	for _, f := range []string{kubecfg.DefaultClusterInitKubeconfig, kubecfg.DefaultClusterInitGrantKubeconfig} {
		if _, err := os.Stat(filepath.Join(cp.Dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the cluster init's credential %s is still on the node after the cluster init: %v", f, err)
		}
	}

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

		if !slices.Contains(applied, "kube-system/secret/bootstrap-token-"+expired.ID+" created") {
			t.Errorf("the expired bootstrap token %s was not among the applied objects:\n%s", expired.ID, strings.Join(applied, "\n"))
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

	// The identity the node's first boot applies its manifests with: it may apply them, exactly, and
	// nothing else, and only until it expires. Each check issues its certificate afresh from the
	// cluster CA, as a render does (the node's own was removed).
	t.Run("cluster init identity", func(t *testing.T) {
		now := time.Now()
		initKP, _, err := in.Secrets.ClusterInit(rand.Reader, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		rc := controlplanetest.Config(cp, in.Secrets.ClusterCA.CertPEM)
		rc.CertData, rc.KeyData = initKP.CertPEM, initKP.KeyPEM
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}

		// Everything the cluster init applied, again: with kiln's code, and with kubectl as the node
		// runs it. (That it created them is the cluster init above.)
		dir := filepath.Join(cp.Dir, kubecfg.DefaultClusterInitManifestsDir)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var manifests [][]byte
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			manifests = append(manifests, data)
		}
		changes, err := clusterapply.Apply(ctx, rc, manifests...)
		if err != nil {
			t.Fatalf("applying the cluster init's manifests again as %s: %v", secrets.ClusterInitUser, err)
		}
		for _, ch := range changes {
			if ch.Action != clusterapply.Unchanged {
				t.Errorf("applying the manifests again: %s", ch)
			}
		}
		kc, err := kubecfg.Kubeconfig(kubecfg.KubeconfigInput{ClusterName: in.Cluster.Metadata.Name, Server: cp.APIURL,
			CAPEM: in.Secrets.ClusterCA.CertPEM, User: secrets.ClusterInitUser, ClientCertPEM: initKP.CertPEM, ClientKeyPEM: initKP.KeyPEM})
		if err != nil {
			t.Fatal(err)
		}
		kcPath := filepath.Join(t.TempDir(), "cluster-init.conf")
		if err := os.WriteFile(kcPath, kc, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, filepath.Join(kubeDir, "kubectl"), "--kubeconfig="+kcPath,
			"apply", "--server-side", "--validate=false", "-f", dir+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl apply as the node's kiln-cluster-init.service runs it: %v\n%s", err, out)
		}
		t.Logf("kubectl apply:\n%s", out)

		// Nothing outside its job: 403.
		bg := metav1.ListOptions{}
		tokenName := "bootstrap-token-" + in.Token.ID
		for _, tc := range []struct {
			name string
			do   func() error
			// why is in the refusal; by default, RBAC's "User ... cannot".
			why string
		}{
			{name: "list secrets in default", do: func() error { _, err := cs.CoreV1().Secrets("default").List(ctx, bg); return err }},
			{name: "list secrets in kube-system", do: func() error { _, err := cs.CoreV1().Secrets("kube-system").List(ctx, bg); return err }},
			{name: "watch its own token's secret", do: func() error {
				w, err := cs.CoreV1().Secrets("kube-system").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + tokenName})
				if err == nil {
					w.Stop()
				}
				return err
			}},
			{name: "get another secret in kube-system", do: func() error {
				_, err := cs.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-zzzzzz", metav1.GetOptions{})
				return err
			}},
			{name: "get its token's name in default", do: func() error {
				_, err := cs.CoreV1().Secrets("default").Get(ctx, tokenName, metav1.GetOptions{})
				return err
			}},
			{name: "list configmaps in kube-system", do: func() error { _, err := cs.CoreV1().ConfigMaps("kube-system").List(ctx, bg); return err }},
			{name: "create a pod", do: func() error {
				_, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "init-pod"},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/none"}}}}, metav1.CreateOptions{})
				return err
			}},
			{name: "create another namespace", do: func() error {
				_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "init-other"}}, metav1.CreateOptions{})
				return err
			}},
			{name: "bind itself to cluster-admin", do: func() error {
				_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "init-admin"},
					RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
					Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: secrets.ClusterInitGroup}}}, metav1.CreateOptions{})
				return err
			}},
			{name: "delete a binding it applied", do: func() error {
				return cs.RbacV1().ClusterRoleBindings().Delete(ctx, "kiln:podnet", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
			}},
			{name: "change its own role", do: func() error {
				_, err := cs.RbacV1().ClusterRoles().Patch(ctx, kubecfg.ClusterInitRole, types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`),
					metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}})
				return err
			}},
			// RBAC lets it patch kiln:cluster-admins, which it applies; the admission policy keeps the
			// binding's subjects to those kiln renders.
			{name: "add itself to kiln:cluster-admins", do: func() error {
				return applyDryRun(ctx, rc, `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"kiln:cluster-admins"},`+
					`"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},`+
					`"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"kiln:cluster-admins"},`+
					`{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"`+secrets.ClusterInitGroup+`"}]}`)
			}, why: "ValidatingAdmissionPolicy '" + kubecfg.ClusterInitPolicy + "'"},
			// It holds the right to patch kiln:cluster-admins, but may not hand it to the nodes through
			// kiln:podnet, which it writes: the policy keeps the role's rules to kiln's.
			{name: "hand the nodes a rule it holds through kiln:podnet", do: func() error {
				return applyDryRun(ctx, rc, `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"kiln:podnet"},`+
					`"rules":[{"apiGroups":[""],"resources":["nodes"],"verbs":["get","list","watch"]},`+
					`{"apiGroups":["rbac.authorization.k8s.io"],"resources":["clusterrolebindings"],"resourceNames":["kiln:cluster-admins"],"verbs":["get","patch"]}]}`)
			}, why: "ValidatingAdmissionPolicy '" + kubecfg.ClusterInitPolicy + "'"},
			// It labels restricted-ns, with kiln's labels only.
			{name: "relax restricted-ns to privileged", do: func() error {
				return applyDryRun(ctx, rc, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"restricted-ns",`+
					`"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`)
			}, why: "ValidatingAdmissionPolicy '" + kubecfg.ClusterInitPolicy + "'"},
			// It writes kiln:podnet and holds its rules, not more: RBAC refuses the escalation.
			{name: "widen kiln:podnet to secrets", do: func() error {
				return applyDryRun(ctx, rc, `{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"kiln:podnet"},`+
					`"rules":[{"apiGroups":[""],"resources":["nodes","secrets"],"verbs":["get","list","watch"]}]}`)
			}, why: "attempting to grant RBAC permissions not currently held"},
		} {
			why := tc.why
			if why == "" {
				why = "User \"" + secrets.ClusterInitUser + "\" cannot"
			}
			if err := tc.do(); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), why) {
				t.Errorf("%s as %s: want 403 Forbidden (%s), got %v", tc.name, secrets.ClusterInitUser, why, err)
			}
		}

		// Another manager's Pod Security label on one of kiln's namespaces does not keep it out (the
		// policy refuses only what it would add), and stays.
		adminRC, err := clientcmd.BuildConfigFromFlags("", cp.AdminKubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		adminCS, err := kubernetes.NewForConfig(adminRC)
		if err != nil {
			t.Fatal(err)
		}
		label := func(value string) {
			t.Helper()
			patch := `{"metadata":{"labels":{"pod-security.kubernetes.io/audit":` + value + `}}}`
			if _, err := adminCS.CoreV1().Namespaces().Patch(ctx, "restricted-ns", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		label(`"baseline"`)
		if _, err := clusterapply.Apply(ctx, rc, manifests...); err != nil {
			t.Errorf("applying the manifests over another manager's Pod Security label: %v", err)
		}
		if ns, err := adminCS.CoreV1().Namespaces().Get(ctx, "restricted-ns", metav1.GetOptions{}); err != nil || ns.Labels["pod-security.kubernetes.io/audit"] != "baseline" {
			t.Errorf("restricted-ns after the cluster init's apply: %v (%v), want the other manager's audit label kept", ns.GetLabels(), err)
		}
		label("null")

		// Past its end: 401. One issued when the cluster's secrets were made, valid for a second, has
		// expired by now.
		ca, err := in.Secrets.ClusterCA.Certificate()
		if err != nil {
			t.Fatal(err)
		}
		issued := ca.NotBefore.Add(pki.ClockSkew)
		expired, _, err := in.Secrets.ClusterInit(rand.Reader, issued, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code, body, _, err := do(c.client(t, expired), http.MethodGet, c.apiURL+"/api/v1/namespaces/kube-system/secrets/"+tokenName, nil); err != nil || code != http.StatusUnauthorized {
			t.Errorf("the cluster init's credential %v after it expired: want 401, got %d %s (%v)", time.Since(issued.Add(time.Second)).Round(time.Second), code, body, err)
		}
		if code, body, _, err := do(c.client(t, initKP), http.MethodGet, c.apiURL+"/api/v1/namespaces/kube-system/secrets/"+tokenName, nil); err != nil || code != http.StatusOK {
			t.Errorf("the same read with a valid credential: want 200, got %d %s (%v)", code, body, err)
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

	// What `kiln cluster secure` does, against the running cluster: the namespace labels and RBAC
	// bindings kiln renders, applied with the admin's credential. Last: it changes the cluster.
	t.Run("cluster secure", func(t *testing.T) {
		rc, err := clientcmd.BuildConfigFromFlags("", cp.AdminKubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		manifests, err := clusterapply.SecureManifests(in.Cluster)
		if err != nil {
			t.Fatal(err)
		}
		secure := func(t *testing.T) map[string]string {
			t.Helper()
			changes, err := clusterapply.Apply(ctx, rc, manifests...)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, ch := range changes {
				got[ch.Kind+" "+ch.Name] = ch.Action
			}
			return got
		}
		want := map[string]string{}
		for ns := range in.Cluster.Spec.Security.PodSecurity.Namespaces {
			want["Namespace "+ns] = clusterapply.Unchanged
		}
		for _, b := range []string{"kiln:kubelet-bootstrap", "kiln:node-autoapprove-bootstrap",
			"kiln:node-autoapprove-certificate-rotation", "kiln:apiserver-kubelet-client", "kiln:cluster-admins"} {
			want["ClusterRoleBinding "+b] = clusterapply.Unchanged
		}
		// The reboot locks: per pool its Leases, ClusterRole and binding, and their admission policy.
		for _, p := range kubecfg.RebootPools(in.Cluster) {
			for _, l := range rebootlock.LeaseNames(p.Name, p.Slots) {
				want["Lease "+l] = clusterapply.Unchanged
			}
			want["ClusterRole "+rebootlock.Group(p.Name)] = clusterapply.Unchanged
			want["ClusterRoleBinding "+rebootlock.Group(p.Name)] = clusterapply.Unchanged
		}
		want["ValidatingAdmissionPolicy "+kubecfg.RebootPolicy] = clusterapply.Unchanged
		want["ValidatingAdmissionPolicyBinding "+kubecfg.RebootPolicy] = clusterapply.Unchanged
		// Right after the node's cluster init there is nothing to change.
		if diff := cmp.Diff(want, secure(t)); diff != "" {
			t.Errorf("cluster secure after the cluster init (-want +got):\n%s", diff)
		}

		// Drift: someone drops restricted-ns's enforce label and deletes a TLS-bootstrap binding.
		patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":null}}}`)
		req, err := http.NewRequest(http.MethodPatch, c.apiURL+"/api/v1/namespaces/restricted-ns", bytes.NewReader(patch))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/merge-patch+json")
		resp, err := admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("removing restricted-ns's enforce label: %s", resp.Status)
		}
		privileged := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"privileged-drift","namespace":"restricted-ns"},` +
			`"spec":{"containers":[{"name":"c","image":"registry.invalid/none","securityContext":{"privileged":true}}]}}`)
		pods := c.apiURL + "/api/v1/namespaces/restricted-ns/pods"
		// Without its label the namespace falls back to the cluster default, baseline, which also
		// rejects a privileged pod: use a dry run of a host-path-free but root-running pod instead.
		runAsRoot := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"as-root","namespace":"restricted-ns"},` +
			`"spec":{"containers":[{"name":"c","image":"registry.invalid/none"}]}}`)
		if code, body, _, err := do(admin, http.MethodPost, pods+"?dryRun=All", runAsRoot); err != nil || code != http.StatusCreated {
			t.Fatalf("a pod that breaks only restricted, in restricted-ns without its label: want 201 (the baseline default), got %d %s (%v)", code, body, err)
		}
		bindings := c.apiURL + "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/"
		if code, body, _, err := do(admin, http.MethodDelete, bindings+"kiln:node-autoapprove-bootstrap", nil); err != nil || code != http.StatusOK {
			t.Fatalf("deleting kiln:node-autoapprove-bootstrap: %d %s (%v)", code, body, err)
		}

		want["Namespace restricted-ns"] = clusterapply.Configured
		want["ClusterRoleBinding kiln:node-autoapprove-bootstrap"] = clusterapply.Created
		if diff := cmp.Diff(want, secure(t)); diff != "" {
			t.Errorf("cluster secure after the drift (-want +got):\n%s", diff)
		}
		if code, body, _, err := do(admin, http.MethodPost, pods+"?dryRun=All", runAsRoot); err != nil || code != http.StatusForbidden || !bytes.Contains(body, []byte("violates PodSecurity")) {
			t.Errorf("the same pod after cluster secure: want 403 violating PodSecurity \"restricted\", got %d %s (%v)", code, body, err)
		}
		if code, body, _, err := do(admin, http.MethodPost, pods+"?dryRun=All", privileged); err != nil || code != http.StatusForbidden {
			t.Errorf("a privileged pod after cluster secure: want 403, got %d %s (%v)", code, body, err)
		}
		if code, body, _, err := do(admin, http.MethodGet, bindings+"kiln:node-autoapprove-bootstrap", nil); err != nil || code != http.StatusOK {
			t.Errorf("kiln:node-autoapprove-bootstrap after cluster secure: want 200, got %d %s (%v)", code, body, err)
		}

		// And once more: nothing left to change.
		for k := range want {
			want[k] = clusterapply.Unchanged
		}
		if diff := cmp.Diff(want, secure(t)); diff != "" {
			t.Errorf("cluster secure a second time (-want +got):\n%s", diff)
		}
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

// etcdctl runs etcdctl against the test's etcd with the API server's etcd client certificate.
func (c *cluster) etcdctl(bin string, args ...string) *exec.Cmd {
	dir := filepath.Join(c.cp.Dir, "etc/kubernetes/pki")
	cmd := exec.Command(bin, append([]string{
		"--endpoints=" + c.cp.EtcdURL,
		"--cacert=" + filepath.Join(dir, "etcd/ca.crt"),
		"--cert=" + filepath.Join(dir, "apiserver-etcd-client.crt"),
		"--key=" + filepath.Join(dir, "apiserver-etcd-client.key"),
		"--dial-timeout=5s",
	}, args...)...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	return cmd
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

// applyDryRun applies one object (JSON) with server-side apply as kiln does, as a dry run: authorized
// and admitted as the real request would be, stored nowhere.
func applyDryRun(ctx context.Context, rc *rest.Config, obj string) error {
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON([]byte(obj)); err != nil {
		return err
	}
	gvk := u.GroupVersionKind()
	resource := gvk.GroupVersion().WithResource(strings.ToLower(gvk.Kind) + "s")
	force := true
	_, err = dyn.Resource(resource).Patch(ctx, u.GetName(), types.ApplyPatchType, []byte(obj),
		metav1.PatchOptions{FieldManager: clusterapply.FieldManager, Force: &force, DryRun: []string{metav1.DryRunAll}})
	return err
}

// testWriter writes each line to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
