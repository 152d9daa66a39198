package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRenew(t *testing.T) {
	ca := mustCA(t, seeded(1), "ca")
	req := CertRequest{CommonName: "kube-apiserver", Organization: []string{"kiln"}, DNSNames: []string{"api.demo.kiln.internal"},
		IPs: []net.IP{net.ParseIP("10.0.0.5")}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, Validity: 24 * time.Hour}
	leaf, err := ca.Issue(seeded(2), req, t0)
	if err != nil {
		t.Fatal(err)
	}
	later := t0.Add(20 * time.Hour)
	renewed, err := ca.Renew(seeded(3), *leaf, later, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := leaf.Certificate()
	got, err := renewed.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if err := renewed.VerifyAt(ca, later.Add(300*24*time.Hour)); err != nil {
		t.Errorf("the renewed certificate does not verify 300 days on: %v", err)
	}
	if !got.PublicKey.(*ecdsa.PublicKey).Equal(old.PublicKey) || string(renewed.KeyPEM) != string(leaf.KeyPEM) {
		t.Error("Renew changed the key")
	}
	if got.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Error("Renew kept the serial number")
	}
	if got.Subject.String() != old.Subject.String() || !slices.Equal(got.DNSNames, old.DNSNames) || len(got.IPAddresses) != 1 ||
		!got.IPAddresses[0].Equal(old.IPAddresses[0]) || !slices.Equal(got.ExtKeyUsage, old.ExtKeyUsage) || got.KeyUsage != old.KeyUsage {
		t.Errorf("Renew changed what the certificate says: %v %v %v %v, was %v %v %v %v", got.Subject, got.DNSNames, got.IPAddresses,
			got.ExtKeyUsage, old.Subject, old.DNSNames, old.IPAddresses, old.ExtKeyUsage)
	}
	if !got.NotAfter.Equal(later.Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)) {
		t.Errorf("NotAfter %s", got.NotAfter)
	}
	if again, err := ca.Renew(seeded(3), *leaf, later, 365*24*time.Hour); err != nil || string(again.CertPEM) != string(renewed.CertPEM) {
		t.Errorf("Renew is not deterministic given its random source and clock: %v", err)
	}

	other := mustCA(t, seeded(4), "ca")
	for _, tc := range []struct {
		name     string
		ca       *KeyPair
		leaf     KeyPair
		now      time.Time
		validity time.Duration
		is       error
		want     string
	}{
		{"another ca", other, *leaf, later, time.Hour, ErrNotIssuedBy, `renew "kube-apiserver"`},
		{"beyond the ca", ca, *leaf, later, 20 * 365 * 24 * time.Hour, nil, "does not cover"},
		{"no validity", ca, *leaf, later, 0, nil, "is not positive"},
		{"no certificate", ca, KeyPair{KeyPEM: leaf.KeyPEM}, later, time.Hour, nil, "pki: renew"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.ca.Renew(seeded(5), tc.leaf, tc.now, tc.validity)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q (%v)", err, tc.want, tc.is)
			}
		})
	}
}
