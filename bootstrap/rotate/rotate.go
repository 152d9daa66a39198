// Package rotate rotates the key that encrypts a cluster's Secrets at rest, by Kubernetes' documented
// procedure, resumably: the new key is added second on every API server, then made first, every
// Secret is rewritten so that it is stored under the new key, and the old key is dropped. Each step
// is recorded in the cluster's secrets bundle (secrets.EncryptionRotation) once it took effect, so that
// a rotation stopped at any point, by an error or a crash, continues where it stopped when it is run
// again; each step is safe to repeat.
//
// What the package needs of the cluster is two small interfaces: APIServers, which writes an
// EncryptionConfiguration to every API server and restarts them (controlplane.ControlPlane on one
// machine), and a Kubernetes client to rewrite the Secrets.
package rotate

import (
	"context"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/state"
)

// APIServers are the cluster's API servers.
type APIServers interface {
	// ApplyEncryptionConfig writes config as the EncryptionConfiguration of every API server and
	// restarts each, returning once all of them serve with it. It may be called again with the same
	// config after a crash.
	ApplyEncryptionConfig(ctx context.Context, config []byte) error
}

// Store is what a rotation needs of the state store: the bundle to read and to advance.
type Store interface {
	state.Getter
	state.Modifier
}

// Options say which cluster's key to rotate and how to reach it.
type Options struct {
	// Cluster is the cluster's name (its bundle's key in the state store).
	Cluster string
	// Provider is spec.security.encryption.provider: aescbc, aesgcm or secretbox.
	Provider string
	Store    Store
	Servers  APIServers
	// Client rewrites the Secrets; it must be allowed to list and update Secrets in every namespace.
	Client kubernetes.Interface
	// Rand is the source of the new key (crypto/rand.Reader).
	Rand io.Reader
	// Now is the clock; defaults to time.Now.
	Now func() time.Time
	// Progress, if set, receives one line per step.
	Progress io.Writer
}

// Result says what a run did.
type Result struct {
	// Resumed is the phase a rotation under way had reached when the run began; empty for a new one.
	Resumed secrets.RotationPhase
	// OldKeyName and NewKeyName name the keys.
	OldKeyName, NewKeyName string
	// Rewritten is how many Secrets this run rewrote.
	Rewritten int
}

// Step is what a rotation at a phase does next to reach the following one.
type Step struct {
	// Keys, if set, is the key list to write to every API server (first the one that encrypts).
	Keys []secrets.NamedKey
	// RewriteSecrets says to rewrite every Secret instead.
	RewriteSecrets bool
}

// NextStep is the step that takes a rotation in bundle b from its recorded phase to the next, and
// whether there is one (false: no rotation under way).
func NextStep(b *secrets.Bundle) (Step, bool) {
	r := b.EncryptionRotation
	if r == nil {
		return Step{}, false
	}
	next := r.Phase.Next()
	if next == secrets.RotationSecretsRewritten {
		return Step{RewriteSecrets: true}, true
	}
	return Step{Keys: b.EncryptionKeysAt(next)}, true
}

// EncryptionKey rotates the encryption key of opts.Cluster, or finishes the rotation under way: it
// returns once every API server has the new key alone, every Secret is stored under it and the bundle
// holds it in place of the old one. On error, run it again: it continues at the step that failed.
func EncryptionKey(ctx context.Context, opts Options) (Result, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	progress := func(format string, args ...any) {
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, format+"\n", args...)
		}
	}
	var res Result
	b, err := secrets.Load(opts.Store, opts.Cluster)
	if err != nil {
		return res, fmt.Errorf("rotate encryption key: %w", err)
	}
	if r := b.EncryptionRotation; r != nil {
		res.Resumed = r.Phase
	}
	r, err := secrets.BeginEncryptionRotation(opts.Store, opts.Cluster, opts.Rand, now())
	if err != nil {
		return res, fmt.Errorf("rotate encryption key: %w", err)
	}
	res.OldKeyName, res.NewKeyName = r.OldKeyName, r.NewKeyName
	if res.Resumed != "" {
		progress("continuing the rotation of %s's encryption key from %s to %s at phase %s", opts.Cluster, r.OldKeyName, r.NewKeyName, r.Phase)
	} else {
		progress("rotating %s's encryption key from %s to %s", opts.Cluster, r.OldKeyName, r.NewKeyName)
	}
	for {
		b, err := secrets.Load(opts.Store, opts.Cluster)
		if err != nil {
			return res, fmt.Errorf("rotate encryption key: %w", err)
		}
		step, ok := NextStep(b)
		if !ok {
			progress("done: the API servers and the state store hold only %s", res.NewKeyName)
			return res, nil
		}
		phase := b.EncryptionRotation.Phase
		start := time.Now()
		if step.RewriteSecrets {
			n, err := RewriteSecrets(ctx, opts.Client)
			res.Rewritten += n
			if err != nil {
				return res, fmt.Errorf("rotate encryption key: %w", err)
			}
			progress("rewrote %d Secrets under %s (%v)", n, res.NewKeyName, time.Since(start).Round(time.Millisecond))
		} else {
			if err := applyKeys(ctx, opts, step.Keys); err != nil {
				return res, fmt.Errorf("rotate encryption key: %s -> %s: %w", phase, phase.Next(), err)
			}
			progress("API servers restarted with keys %s (%v)", keyNames(step.Keys), time.Since(start).Round(time.Millisecond))
		}
		if err := secrets.AdvanceEncryptionRotation(opts.Store, opts.Cluster, phase); err != nil {
			return res, fmt.Errorf("rotate encryption key: %w", err)
		}
		progress("recorded phase %s", phase.Next())
	}
}

func applyKeys(ctx context.Context, opts Options, keys []secrets.NamedKey) error {
	ks := make([]kubecfg.EncryptionKey, 0, len(keys))
	for _, k := range keys {
		ks = append(ks, kubecfg.EncryptionKey{Name: k.Name, Secret: k.Key})
	}
	cfg, err := kubecfg.EncryptionConfigKeys(opts.Provider, ks)
	if err != nil {
		return err
	}
	if err := kubecfg.CheckEncryptionConfig(cfg); err != nil {
		return err
	}
	return opts.Servers.ApplyEncryptionConfig(ctx, cfg)
}

func keyNames(keys []secrets.NamedKey) []string {
	names := make([]string, 0, len(keys))
	for _, k := range keys {
		names = append(names, k.Name)
	}
	return names
}

// listPage is how many Secrets RewriteSecrets lists at a time.
const listPage = 250

// RewriteSecrets writes every Secret in every namespace back unchanged, so that the API server stores
// it again with the first key of its EncryptionConfiguration (an update that changes nothing is still
// written when the stored value was encrypted with another key). A Secret changed meanwhile is read
// again and rewritten; one deleted meanwhile is skipped. It returns how many it rewrote.
func RewriteSecrets(ctx context.Context, c kubernetes.Interface) (int, error) {
	n := 0
	opts := metav1.ListOptions{Limit: listPage}
	for {
		list, err := c.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return n, fmt.Errorf("list secrets: %w", err)
		}
		for i := range list.Items {
			s := &list.Items[i]
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				_, err := c.CoreV1().Secrets(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
				if apierrors.IsConflict(err) {
					fresh, gerr := c.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
					if gerr != nil {
						return gerr
					}
					s = fresh
				}
				return err
			})
			switch {
			case apierrors.IsNotFound(err):
				continue
			case err != nil:
				return n, fmt.Errorf("rewrite secret %s/%s: %w", s.Namespace, s.Name, err)
			}
			n++
		}
		if list.Continue == "" {
			return n, nil
		}
		opts.Continue = list.Continue
	}
}
