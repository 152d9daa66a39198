package pki

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrNotIssuedBy is wrapped when a certificate to renew was not signed by the CA asked to renew it.
var ErrNotIssuedBy = errors.New("not issued by this ca")

// Renew signs a new certificate for leaf's key: the same subject, names, addresses and usages as
// leaf's certificate, a new serial, valid from now for validity. The key is kept, so that whatever
// holds it (a kube-apiserver that reloads its serving certificate, a kubeconfig) needs only the new
// certificate. leaf must have been issued by ca, and ca must be valid at now and outlive the result.
func (ca *KeyPair) Renew(rand io.Reader, leaf KeyPair, now time.Time, validity time.Duration) (*KeyPair, error) {
	old, key, err := leaf.Parse()
	if err != nil {
		return nil, fmt.Errorf("pki: renew: %w", err)
	}
	name := old.Subject.CommonName
	if validity <= 0 {
		return nil, fmt.Errorf("pki: renew %q: validity %v is not positive", name, validity)
	}
	if rand == nil {
		return nil, fmt.Errorf("pki: renew %q: nil random source", name)
	}
	caCert, caKey, err := ca.Parse()
	if err != nil {
		return nil, fmt.Errorf("pki: renew %q: ca: %w", name, err)
	}
	if err := old.CheckSignatureFrom(caCert); err != nil {
		return nil, fmt.Errorf("pki: renew %q: %q: %w", name, caCert.Subject.CommonName, ErrNotIssuedBy)
	}
	notAfter := now.Add(validity).UTC()
	if now.Before(caCert.NotBefore) || now.After(caCert.NotAfter) || notAfter.After(caCert.NotAfter) {
		return nil, fmt.Errorf("pki: renew %q: ca %q (valid %s to %s) does not cover %s to %s", name, caCert.Subject.CommonName,
			caCert.NotBefore.Format(time.RFC3339), caCert.NotAfter.Format(time.RFC3339),
			now.UTC().Format(time.RFC3339), notAfter.Format(time.RFC3339))
	}
	serial, err := newSerial(rand)
	if err != nil {
		return nil, fmt.Errorf("pki: renew %q: %w", name, err)
	}
	tmpl := *old
	tmpl.Raw, tmpl.RawTBSCertificate, tmpl.RawSubjectPublicKeyInfo, tmpl.RawSubject, tmpl.RawIssuer = nil, nil, nil, nil, nil
	tmpl.Signature, tmpl.Extensions, tmpl.ExtraExtensions = nil, nil, nil
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-ClockSkew).UTC()
	tmpl.NotAfter = notAfter
	tmpl.AuthorityKeyId = caCert.SubjectKeyId
	kp, err := sign(&tmpl, caCert, key, caKey)
	if err != nil {
		return nil, fmt.Errorf("pki: renew %q: %w", name, err)
	}
	return kp, nil
}
