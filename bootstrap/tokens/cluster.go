package tokens

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/clusterapply"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
)

// Labels of the Secrets that Cluster.Apply makes.
const (
	LabelCluster = "kiln.dev/cluster"
	LabelMachine = "kiln.dev/machine"
)

// PoolGroup is the extra group of the tokens of pool's machines ("control-plane" for the control
// plane), beside kubecfg.BootstrapTokenExtraGroup. kiln's RBAC binds system:bootstrappers, the group
// of every bootstrap token (kubecfg.BootstrapRBAC); this one says which pool a CSR came from.
func PoolGroup(pool string) string { return "system:bootstrappers:kiln:" + pool }

// Secret is the bootstrap-token-<id> Secret of cluster's token t: usable for authentication only (not
// for signing), expiring with t, in kubecfg.BootstrapTokenExtraGroup and t's PoolGroup, labelled with
// the cluster and the machine.
func Secret(cluster string, t secrets.BootstrapToken) (*corev1.Secret, error) {
	groups := []string{kubecfg.BootstrapTokenExtraGroup}
	if t.Pool != "" {
		groups = append(groups, PoolGroup(t.Pool))
	}
	labels := map[string]string{LabelCluster: cluster}
	if t.Machine != "" {
		labels[LabelMachine] = t.Machine
	}
	s, err := kubecfg.NewBootstrapTokenSecret(kubecfg.BootstrapToken{
		ID: t.ID, Secret: t.Secret, Expires: t.Expires, Description: t.Description, ExtraGroups: groups, Labels: labels,
	})
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return s, nil
}

// Cluster reads and changes one cluster's bootstrap token Secrets and pending CertificateSigningRequests,
// and reads its Nodes.
type Cluster struct {
	// Name is the cluster's name, which labels the Secrets.
	Name   string
	Client kubernetes.Interface
}

// Tokens lists the cluster's bootstrap token Secrets (kube-system, of type
// bootstrap.kubernetes.io/token).
func (c *Cluster) Tokens(ctx context.Context) ([]InCluster, error) {
	list, err := c.Client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("type", string(corev1.SecretTypeBootstrapToken)).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("tokens: list bootstrap tokens of %s: %w", c.Name, err)
	}
	out := make([]InCluster, 0, len(list.Items))
	for _, s := range list.Items {
		id := string(s.Data["token-id"])
		if id == "" || s.Name != kubecfg.BootstrapTokenSecretPrefix+id {
			continue // not a token the authenticator would take
		}
		out = append(out, InCluster{ID: id, Cluster: s.Labels[LabelCluster], Machine: s.Labels[LabelMachine]})
	}
	return out, nil
}

// Nodes lists the cluster's Nodes.
func (c *Cluster) Nodes(ctx context.Context) (map[string]Node, error) {
	list, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("tokens: list nodes of %s: %w", c.Name, err)
	}
	out := make(map[string]Node, len(list.Items))
	for _, n := range list.Items {
		node := Node{Created: n.CreationTimestamp.Time}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				node.Ready = cond.Status == corev1.ConditionTrue
			}
		}
		out[n.Name] = node
	}
	return out, nil
}

// PendingCSRs lists the cluster's pending CertificateSigningRequests.
func (c *Cluster) PendingCSRs(ctx context.Context) ([]CSR, error) {
	list, err := c.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("tokens: list certificate signing requests of %s: %w", c.Name, err)
	}
	var out []CSR
	for _, r := range list.Items {
		if pending(r.Status) {
			out = append(out, CSR{Name: r.Name, Username: r.Spec.Username})
		}
	}
	return out, nil
}

// pending reports whether a CSR with status st awaits a decision.
func pending(st certificatesv1.CertificateSigningRequestStatus) bool {
	if len(st.Certificate) > 0 {
		return false
	}
	for _, cond := range st.Conditions {
		switch cond.Type {
		case certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return false
		}
	}
	return true
}

// DeleteCSR deletes the CertificateSigningRequest name. One the cluster does not have is not an error.
func (c *Cluster) DeleteCSR(ctx context.Context, name string) error {
	err := c.Client.CertificatesV1().CertificateSigningRequests().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("tokens: delete certificate signing request %s of %s: %w", name, c.Name, err)
	}
	return nil
}

// DeleteNodeCSRs deletes the pending CertificateSigningRequests that node made as itself
// (NodeUser(node)), for when its Node is deleted with its machine, and returns their names.
func (c *Cluster) DeleteNodeCSRs(ctx context.Context, node string) ([]string, error) {
	csrs, err := c.PendingCSRs(ctx)
	if err != nil {
		return nil, err
	}
	var deleted []string
	var errs []error
	for _, r := range csrs {
		if r.Username != NodeUser(node) {
			continue
		}
		if err := c.DeleteCSR(ctx, r.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, r.Name)
	}
	return deleted, errors.Join(errs...)
}

// Apply applies token t's Secret (see Secret) with server-side apply as kiln, creating it or bringing
// it back to what kiln applies. The token's secret never appears in its errors.
func (c *Cluster) Apply(ctx context.Context, t secrets.BootstrapToken) error {
	s, err := Secret(c.Name, t)
	if err != nil {
		return err
	}
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("tokens: apply %s: %w", t.ID, err)
	}
	force := true
	_, err = c.Client.CoreV1().Secrets(metav1.NamespaceSystem).Patch(ctx, s.Name, types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: clusterapply.FieldManager, Force: &force})
	if err != nil {
		return fmt.Errorf("tokens: apply bootstrap token %s of %s: %w", t.ID, c.Name, err)
	}
	return nil
}

// Delete deletes the Secret of the token with that id. A token the cluster does not have is not an
// error.
func (c *Cluster) Delete(ctx context.Context, id string) error {
	err := c.Client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, kubecfg.BootstrapTokenSecretPrefix+id, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("tokens: delete bootstrap token %s of %s: %w", id, c.Name, err)
	}
	return nil
}

// Store keeps a cluster's tokens: StateStore over an open state store, or one that opens the state
// store for each call, so as not to hold it while Ensure and Sync wait for the cluster.
type Store interface {
	// MachineToken returns machine's own token and the bundle that holds it, minting one if need be
	// (secrets.MachineToken).
	MachineToken(c *v1alpha1.Cluster, machine, pool string, now time.Time) (*secrets.Bundle, secrets.BootstrapToken, error)
	// Tokens returns the cluster's stored tokens.
	Tokens(cluster string) ([]secrets.BootstrapToken, error)
	// Forget removes the tokens with the given ids (secrets.ForgetTokens).
	Forget(cluster string, ids ...string) error
}

// StateStore is a Store over the state store State, minting tokens from Rand (crypto/rand.Reader if
// nil).
type StateStore struct {
	State secrets.TokenStore
	Rand  io.Reader
}

// MachineToken implements Store.
func (s StateStore) MachineToken(c *v1alpha1.Cluster, machine, pool string, now time.Time) (*secrets.Bundle, secrets.BootstrapToken, error) {
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	return secrets.MachineToken(s.State, c, machine, pool, now, r)
}

// Tokens implements Store.
func (s StateStore) Tokens(cluster string) ([]secrets.BootstrapToken, error) {
	b, err := secrets.Load(s.State, cluster)
	if err != nil {
		return nil, err
	}
	return b.BootstrapTokens, nil
}

// Forget implements Store.
func (s StateStore) Forget(cluster string, ids ...string) error {
	return secrets.ForgetTokens(s.State, cluster, ids...)
}

// Ensure gives machine (of pool) its own bootstrap token, minted if it has none with half its
// lifetime left, and, when the cluster is reachable (k is not nil), applies it to the cluster: call
// it before the machine is created, and create the machine only if it succeeds. It returns the bundle
// that holds the token, to render the machine's config from. With k nil (the API is not up yet) the
// token is only stored: a control-plane node rendered from the bundle carries it in its first-boot
// manifests, and the first Sync that reaches the API applies it.
func Ensure(ctx context.Context, s Store, k *Cluster, c *v1alpha1.Cluster, machine, pool string, now time.Time) (*secrets.Bundle, secrets.BootstrapToken, error) {
	b, t, err := s.MachineToken(c, machine, pool, now)
	if err != nil {
		return nil, secrets.BootstrapToken{}, err
	}
	if k != nil {
		if err := k.Apply(ctx, t); err != nil {
			return nil, secrets.BootstrapToken{}, err
		}
	}
	return b, t, nil
}

// Sync runs one round of the token lifecycle of cluster c at now: it reads the cluster's tokens,
// Nodes and pending CSRs (when k is not nil), decides (Decide, with machines as the provider lists
// them), deletes tokens and CSRs, applies and then forgets, and returns the plan. A token is forgotten only once its Secret is gone
// from the cluster. It carries on past a failed action and returns every error joined.
func Sync(ctx context.Context, s Store, k *Cluster, c *v1alpha1.Cluster, machines []string, now time.Time, p Policy) (Plan, error) {
	name := c.Metadata.Name
	stored, err := s.Tokens(name)
	if err != nil {
		return Plan{}, fmt.Errorf("tokens: %w", err)
	}
	o := Observed{Cluster: name, Stored: stored, Machines: machines}
	if k != nil {
		if o.InCluster, err = k.Tokens(ctx); err != nil {
			return Plan{}, err
		}
		if o.Nodes, err = k.Nodes(ctx); err != nil {
			return Plan{}, err
		}
		if o.PendingCSRs, err = k.PendingCSRs(ctx); err != nil {
			return Plan{}, err
		}
		o.Reachable = true
	}
	plan := Decide(o, now, p)
	var errs []error
	failed := map[string]bool{}
	for _, d := range plan.Delete {
		if err := k.Delete(ctx, d.ID); err != nil {
			errs = append(errs, err)
			failed[d.ID] = true
		}
	}
	for _, d := range plan.DeleteCSRs {
		if err := k.DeleteCSR(ctx, d.Name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, t := range plan.Apply {
		if err := k.Apply(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	var forget []string
	for _, d := range plan.Forget {
		if !failed[d.ID] {
			forget = append(forget, d.ID)
		}
	}
	if err := s.Forget(name, forget...); err != nil {
		errs = append(errs, err)
	}
	return plan, errors.Join(errs...)
}
