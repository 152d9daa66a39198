package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/access"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/bootstrap/tokens"
	"github.com/kiln-dev/kiln/nodeagent/drain"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/converge"
	"github.com/kiln-dev/kiln/provisioner/health"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
	"github.com/kiln-dev/kiln/state"
)

// applyUser is who `kiln apply` is on the cluster's API: in secrets.AdminGroup, which kiln's RBAC binds
// to cluster-admin, with a certificate issued for the run and never written down.
const applyUser = "kiln:apply"

// applyCertTTL is the lifetime of apply's certificate; a new one is issued when half of it is gone.
const applyCertTTL = time.Hour

// reachTimeout bounds how long apply waits for the API to answer before it counts it as not reachable;
// the verdict holds for reachRecheck, so that the creates of one pass ask once.
const (
	reachTimeout = 5 * time.Second
	reachRecheck = 10 * time.Second
)

// tokenKeeper gives each machine that apply creates its own bootstrap token, applied to the cluster
// before the machine is created when the API is reachable, and keeps the cluster's tokens in step with
// the machines once per pass (bootstrap/tokens); in the same step it approves the kubelet serving
// certificates of the machines (bootstrap/servingcsr). It opens the state store only for as long as it
// reads or changes it, never while the cluster answers.
type tokenKeeper struct {
	g   *globals
	c   *v1alpha1.Cluster
	p   provisioner.Provider
	log *slog.Logger
	// configs serves the machines' configs where they fetch them (nil: they carry them).
	configs *configServer

	mu      sync.Mutex
	ca      *pki.KeyPair
	cert    *pki.KeyPair
	renewAt time.Time
	// kc is the cluster's API as last found (nil: not reachable), at checked.
	kc      *tokens.Cluster
	checked time.Time
}

// ensureToken returns machine cr's own bootstrap token, and the bundle that holds it to render the
// machine's config from; when the cluster's API is reachable the token is applied to it first. The
// renderer calls it before each create: an error keeps the machine from being created.
func (k *tokenKeeper) ensureToken(ctx context.Context, cr reconcile.Create) (*secrets.Bundle, secrets.BootstrapToken, error) {
	kc, err := k.cluster(ctx)
	if err != nil {
		return nil, secrets.BootstrapToken{}, err
	}
	name := cr.Name
	b, tok, err := tokens.Ensure(ctx, openingStore{g: k.g, mu: &k.g.state}, kc, k.c, name, cr.Pool, k.g.clock())
	if err != nil {
		return nil, secrets.BootstrapToken{}, err
	}
	if kc != nil {
		k.log.Info("bootstrap token applied", "machine", name, "token", tok.ID, "expires", tok.Expires)
	} else {
		k.log.Info("bootstrap token stored; the cluster's API is not reachable yet, so a control-plane node's first boot or the next pass applies it",
			"machine", name, "token", tok.ID, "expires", tok.Expires)
	}
	return b, tok, nil
}

// afterPass is what apply does once per pass, after it, with one List of the cluster's machines: it
// keeps the bootstrap tokens in step with them (cleanupTokens) and, when the cluster's API answers
// kiln, approves their kubelets' serving certificates (approveServing). It returns the error of each
// (a failed List is the tokens'); the next pass tries again.
func (k *tokenKeeper) afterPass(ctx context.Context) (tokensErr, servingErr error) {
	kc, err := k.cluster(ctx)
	if err != nil {
		return err, nil
	}
	ms, err := k.p.List(ctx, k.c.Metadata.Name)
	if err != nil {
		return fmt.Errorf("list machines of %s: %w", k.c.Metadata.Name, err), nil
	}
	tokensErr = k.cleanupTokens(ctx, kc, ms)
	if kc != nil {
		_, servingErr = k.approveServing(ctx, kc.Client, ms)
	}
	return tokensErr, servingErr
}

// cleanupTokens runs one round of the token lifecycle (tokens.Sync) for the machines ms: the tokens of
// machines whose Node joined, of machines gone, and expired ones are deleted from the cluster kc (nil:
// not reachable) and forgotten; tokens stored while the API was out of reach are applied.
func (k *tokenKeeper) cleanupTokens(ctx context.Context, kc *tokens.Cluster, ms []provisioner.Machine) error {
	names := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.State != provisioner.StateGone {
			names = append(names, m.Name)
		}
	}
	plan, err := tokens.Sync(ctx, openingStore{g: k.g, mu: &k.g.state}, kc, k.c, names, k.g.clock(), tokens.Policy{})
	for _, t := range plan.Apply {
		k.log.Info("bootstrap token applied", "machine", t.Machine, "token", t.ID)
	}
	for _, d := range plan.Delete {
		k.log.Info("bootstrap token deleted from the cluster", "machine", d.Machine, "token", d.ID, "reason", d.Reason)
	}
	for _, d := range plan.Forget {
		k.log.Debug("bootstrap token forgotten", "machine", d.Machine, "token", d.ID, "reason", d.Reason)
	}
	for _, d := range plan.DeleteCSRs {
		k.log.Info("pending certificate signing request deleted", "machine", d.Machine, "csr", d.Name, "user", d.Username, "reason", d.Reason)
	}
	return err
}

// errNotAnswering: the cluster's API does not answer kiln yet.
var errNotAnswering = errors.New("the cluster's API does not answer kiln yet")

var _ converge.Drainer = (*tokenKeeper)(nil)

// NodeReady implements converge.NodeLister with apply's own certificate: the Ready condition of the
// cluster's Nodes once the API answers kiln; before, errNotAnswering, so that the executor judges
// machines by their probes (SSH).
func (k *tokenKeeper) NodeReady(ctx context.Context) (map[string]health.Condition, error) {
	kc, err := k.answering(ctx)
	if err != nil {
		return nil, err
	}
	return converge.KubeNodes{Client: kc.Client}.NodeReady(ctx)
}

// Drain implements converge.Drainer with apply's own certificate (kiln:apply, a cluster admin), once
// the API answers kiln: the executor drains a machine's Node before the machine goes.
func (k *tokenKeeper) Drain(ctx context.Context, node string) (drain.Result, error) {
	kc, err := k.answering(ctx)
	if err != nil {
		return drain.Result{}, err
	}
	return converge.KubeNodes{Client: kc.Client}.Drain(ctx, node)
}

// DeleteNode implements converge.Drainer with apply's own certificate: a deleted machine's Node goes
// with it, and so do the Nodes of machines deleted while the API did not answer, and the
// CertificateSigningRequests the node left pending (no one is left to use what they would issue).
func (k *tokenKeeper) DeleteNode(ctx context.Context, node string) error {
	kc, err := k.answering(ctx)
	if err != nil {
		return err
	}
	if err := (converge.KubeNodes{Client: kc.Client}).DeleteNode(ctx, node); err != nil {
		return err
	}
	deleted, err := kc.DeleteNodeCSRs(ctx, node)
	for _, name := range deleted {
		k.log.Info("pending certificate signing request deleted with its Node", "machine", node, "csr", name)
	}
	return err
}

// answering is the cluster's API, or errNotAnswering while it does not answer kiln.
func (k *tokenKeeper) answering(ctx context.Context) (*tokens.Cluster, error) {
	kc, err := k.cluster(ctx)
	if err == nil && kc == nil {
		err = errNotAnswering
	}
	return kc, err
}

// cluster returns the cluster's API as package tokens uses it, or nil while it does not answer kiln:
// no control plane yet, one still starting, or one whose cluster init has not yet applied kiln's RBAC
// bindings. What kiln itself cannot do (the state store) is an error.
func (k *tokenKeeper) cluster(ctx context.Context) (*tokens.Cluster, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.checked.IsZero() && time.Since(k.checked) < reachRecheck {
		return k.kc, nil
	}
	kc, server, why, err := k.reach(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case kc != nil && (k.kc == nil || k.checked.IsZero()):
		k.log.Info("the cluster's API answers kiln: each machine's bootstrap token is applied before the machine is created",
			"cluster", k.c.Metadata.Name, "server", server)
	case kc == nil && (k.kc != nil || k.checked.IsZero()):
		k.log.Info("the cluster's API does not answer kiln yet: bootstrap tokens are stored, and applied by a control plane's first boot or once the API answers",
			"cluster", k.c.Metadata.Name, "reason", why)
	}
	k.kc, k.checked = kc, time.Now()
	return kc, nil
}

// reach makes a client of the cluster's API at server and asks it for the bootstrap tokens; nil, and
// why, if it does not answer.
func (k *tokenKeeper) reach(ctx context.Context) (kc *tokens.Cluster, server, why string, err error) {
	server, tlsName, err := apiEndpoint(ctx, k.c, k.p, "")
	if err != nil {
		if !errors.Is(err, provisioner.ErrNotReachable) {
			k.log.Warn("cannot tell where the cluster's API is", "err", err)
		}
		return nil, "", err.Error(), nil
	}
	kp, err := k.certificate()
	if err != nil {
		return nil, server, "", err
	}
	cfg := &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			ServerName: tlsName, CAData: k.ca.CertPEM, CertData: kp.CertPEM, KeyData: kp.KeyPEM,
		},
		Timeout: 30 * time.Second,
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, server, "", fmt.Errorf("the API of cluster %s: %w", k.c.Metadata.Name, err)
	}
	kc = &tokens.Cluster{Name: k.c.Metadata.Name, Client: client}
	pctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	if _, err := kc.Tokens(pctx); err != nil {
		return nil, server, err.Error(), nil
	}
	return kc, server, "", nil
}

// certificate returns apply's client certificate, issuing a new one when half of its life is gone. It
// is issued by the wall clock, which the API server judges it by. k.mu is held.
func (k *tokenKeeper) certificate() (*pki.KeyPair, error) {
	now := time.Now()
	if k.cert != nil && now.Before(k.renewAt) {
		return k.cert, nil
	}
	if k.ca == nil {
		var b *secrets.Bundle
		err := openingStore{g: k.g, mu: &k.g.state}.do(func(st *state.Store) (err error) {
			b, err = secrets.Load(st, k.c.Metadata.Name)
			return err
		})
		if err != nil {
			return nil, err
		}
		k.ca = &b.ClusterCA
	}
	kp, err := access.ClientCertificate(k.ca, rand.Reader, now, applyUser, []string{secrets.AdminGroup}, applyCertTTL)
	if err != nil {
		return nil, err
	}
	k.cert, k.renewAt = kp, now.Add(applyCertTTL/2)
	return kp, nil
}

// openingStore is a tokens.Store and an addrpool.Store (vSphere's address reservations) that opens the
// state store for each call, one call at a time.
type openingStore struct {
	g  *globals
	mu *sync.Mutex
}

func (s openingStore) do(fn func(st *state.Store) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.g.openState()
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

func (s openingStore) MachineToken(c *v1alpha1.Cluster, machine, pool string, now time.Time) (b *secrets.Bundle, t secrets.BootstrapToken, err error) {
	err = s.do(func(st *state.Store) error {
		b, t, err = tokens.StateStore{State: st}.MachineToken(c, machine, pool, now)
		return err
	})
	return b, t, err
}

func (s openingStore) Tokens(cluster string) (ts []secrets.BootstrapToken, err error) {
	err = s.do(func(st *state.Store) error {
		ts, err = tokens.StateStore{State: st}.Tokens(cluster)
		return err
	})
	return ts, err
}

func (s openingStore) Forget(cluster string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.do(func(st *state.Store) error { return tokens.StateStore{State: st}.Forget(cluster, ids...) })
}

func (s openingStore) Get(bucket, key string, v any) error {
	return s.do(func(st *state.Store) error { return st.Get(bucket, key, v) })
}

func (s openingStore) Create(bucket, key string, v any) error {
	return s.do(func(st *state.Store) error { return st.Create(bucket, key, v) })
}

func (s openingStore) Modify(bucket, key string, v any, fn func() error) error {
	return s.do(func(st *state.Store) error { return st.Modify(bucket, key, v, fn) })
}
