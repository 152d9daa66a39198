package rotate

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/bootstrap/secrets"
)

// DefaultRenewBefore is how long before they expire leaf certificates are renewed.
const DefaultRenewBefore = 30 * 24 * time.Hour

// CertServers are the places that hold the cluster's leaf certificates: its control plane.
type CertServers interface {
	// ApplyCertificates puts the certificates of b that renewed names where the control plane reads
	// them, returning once the API server serves its new certificate (when apiServer is among them).
	// It may be called again with the same certificates after a crash.
	ApplyCertificates(ctx context.Context, b *secrets.Bundle, renewed []string) error
}

// CertOptions say which cluster's certificates to renew and where they go.
type CertOptions struct {
	Cluster string
	Store   Store
	Servers CertServers
	// RenewBefore renews the leaf certificates that expire within it; DefaultRenewBefore when zero.
	RenewBefore time.Duration
	// All renews every leaf certificate, whenever it expires.
	All bool
	// Validity of a renewed certificate; secrets.LeafValidity when zero.
	Validity time.Duration
	// Rand is the source of the new serial numbers (crypto/rand.Reader).
	Rand io.Reader
	// Now is the clock; defaults to time.Now.
	Now func() time.Time
	// Progress, if set, receives one line per step.
	Progress io.Writer
}

// CertResult says what a run of Certs did.
type CertResult struct {
	// Renewed names the certificates renewed (or, when Resumed, those a stopped run had renewed).
	Renewed []string
	Resumed bool
	// Expires is when the renewed certificates expire.
	Expires time.Time
}

// Certs renews the cluster's leaf certificates that expire within RenewBefore, keeping their keys,
// and applies them to the control plane: first the bundle gets the new certificates and a record of
// the renewal, in one transaction; then the control plane gets them; then the record goes. A run
// stopped in between is finished by the next, with the same certificates. Nothing due does nothing.
func Certs(ctx context.Context, opts CertOptions) (CertResult, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	before, validity := opts.RenewBefore, opts.Validity
	if before <= 0 {
		before = DefaultRenewBefore
	}
	if validity <= 0 {
		validity = secrets.LeafValidity
	}
	if before >= validity {
		return CertResult{}, fmt.Errorf("rotate: renew before %v: a renewed certificate (valid %v) would be due again at once", before, validity)
	}
	progress := func(format string, args ...any) {
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, format+"\n", args...)
		}
	}
	b, err := secrets.Load(opts.Store, opts.Cluster)
	if err != nil {
		return CertResult{}, err
	}
	res := CertResult{Resumed: b.CertRenewal != nil}
	t := now()
	r, err := secrets.RenewCertificates(opts.Store, opts.Cluster, func(l secrets.Leaf) bool {
		return opts.All || l.Cert.NotAfter.Before(t.Add(before))
	}, opts.Rand, t, validity)
	if err != nil {
		return res, err
	}
	if r == nil {
		progress("no certificate of %s expires within %v", opts.Cluster, before)
		return res, nil
	}
	res.Renewed = r.Leaves
	if res.Resumed {
		progress("continuing the renewal of %s's certificates begun %s: %s", opts.Cluster, r.Started.Format(time.RFC3339), strings.Join(r.Leaves, ", "))
	} else {
		progress("renewed %s's certificates in the state store: %s", opts.Cluster, strings.Join(r.Leaves, ", "))
	}
	if b, err = secrets.Load(opts.Store, opts.Cluster); err != nil {
		return res, err
	}
	leaves, err := b.Leaves()
	if err != nil {
		return res, err
	}
	for _, l := range leaves {
		if l.Name == r.Leaves[0] {
			res.Expires = l.Cert.NotAfter
		}
	}
	start := time.Now()
	if err := opts.Servers.ApplyCertificates(ctx, b, r.Leaves); err != nil {
		return res, fmt.Errorf("rotate: apply the renewed certificates of %s: %w", opts.Cluster, err)
	}
	progress("the control plane holds them (%v)", time.Since(start).Round(time.Millisecond))
	if err := secrets.FinishCertRenewal(opts.Store, opts.Cluster); err != nil {
		return res, err
	}
	return res, nil
}
