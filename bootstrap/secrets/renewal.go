package secrets

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/state"
)

// CertRenewalVersion is the version of the CertRenewal record written by this kiln.
const CertRenewalVersion = 1

// CertRenewal records leaf certificates renewed in the bundle that have not yet reached every place
// that holds them (the control plane's files): a renewal stopped before that is finished by the next
// run, with the same certificates.
type CertRenewal struct {
	// Version is CertRenewalVersion.
	Version int `json:"version"`
	// Leaves are the renewed certificates, by their names in the bundle (apiServer, admin, ...).
	Leaves []string `json:"leaves"`
	// Started is when they were renewed.
	Started time.Time `json:"started"`
}

// Leaf is one of the bundle's leaf certificates, with the CA that issued it.
type Leaf struct {
	// Name is its key in the stored bundle: apiServer, apiServerKubeletClient, ..., admin.
	Name string
	Cert *x509.Certificate
	// PEM is the certificate and key as stored.
	PEM pki.KeyPair
}

// Leaves returns the bundle's leaf certificates, parsed, in a fixed order.
func (b *Bundle) Leaves() ([]Leaf, error) {
	var out []Leaf
	for _, l := range b.leaves() {
		cert, err := l.kp.Certificate()
		if err != nil {
			return nil, fmt.Errorf("secrets: %s: %w", l.name, err)
		}
		out = append(out, Leaf{Name: l.name, Cert: cert, PEM: *l.kp})
	}
	return out, nil
}

// RenewCertificates renews, in one transaction, every leaf certificate of cluster's bundle that due
// selects: a new certificate for the same key, names and usages, valid from now for validity (see
// pki.KeyPair.Renew). It records them as a CertRenewal, to be finished by FinishCertRenewal once the
// certificates reached the control plane, and returns their names; none due changes nothing. A
// renewal under way is returned as it is, renewing nothing more.
func RenewCertificates(s state.Modifier, cluster string, due func(Leaf) bool, rand io.Reader, now time.Time, validity time.Duration) (*CertRenewal, error) {
	var b Bundle
	var renewal *CertRenewal
	err := s.Modify(Bucket, cluster, &b, func() error {
		if b.CertRenewal != nil {
			renewal = b.CertRenewal
			return checkRenewal(renewal)
		}
		var names []string
		for _, l := range b.leaves() {
			cert, err := l.kp.Certificate()
			if err != nil {
				return fmt.Errorf("%s: %w", l.name, err)
			}
			if !due(Leaf{Name: l.name, Cert: cert, PEM: *l.kp}) {
				continue
			}
			renewed, err := l.ca.Renew(rand, *l.kp, now, validity)
			if err != nil {
				return fmt.Errorf("%s: %w", l.name, err)
			}
			*l.kp = *renewed
			names = append(names, l.name)
		}
		if len(names) == 0 {
			return errNothingDue
		}
		b.CertRenewal = &CertRenewal{Version: CertRenewalVersion, Leaves: names, Started: now.UTC()}
		renewal = b.CertRenewal
		return nil
	})
	if errors.Is(err, errNothingDue) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: renew certificates of %s: %w", cluster, err)
	}
	return renewal, nil
}

// errNothingDue ends RenewCertificates' transaction without a change.
var errNothingDue = errors.New("no certificate due")

// FinishCertRenewal removes cluster's CertRenewal record: its certificates reached the control plane.
// No record is not an error.
func FinishCertRenewal(s state.Modifier, cluster string) error {
	var b Bundle
	err := s.Modify(Bucket, cluster, &b, func() error {
		b.CertRenewal = nil
		return nil
	})
	if err != nil {
		return fmt.Errorf("secrets: finish the certificate renewal of %s: %w", cluster, err)
	}
	return nil
}

func checkRenewal(r *CertRenewal) error {
	if r.Version != CertRenewalVersion {
		return fmt.Errorf("%w: certRenewal version %d, this kiln knows %d", ErrRotationRecord, r.Version, CertRenewalVersion)
	}
	for _, n := range r.Leaves {
		if !slices.ContainsFunc(leafNames, func(l string) bool { return l == n }) {
			return fmt.Errorf("%w: certRenewal names an unknown certificate %q", ErrRotationRecord, n)
		}
	}
	return nil
}

// leafNames are the names of the bundle's leaf certificates.
var leafNames = func() []string {
	var out []string
	for _, l := range (&Bundle{}).leaves() {
		out = append(out, l.name)
	}
	return out
}()
