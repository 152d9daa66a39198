// Package pki is the small X.509 certificate authority behind a kiln cluster: self-signed CAs, the leaf
// certificates they issue, and bare key pairs (the service-account signing key), all ECDSA P-256 and
// PEM-encoded.
//
// Every function is pure given its random source and clock: keys and serial numbers are read from the
// io.Reader passed in (crypto/rand.Reader in production, a seeded stream in tests), validity is counted
// from the time passed in, and signatures are deterministic (RFC 6979). The same reader and time give
// the same bytes.
package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"
)

// ClockSkew is how far NotBefore is set before the issuing time, so that a certificate issued on one
// machine is already valid on another whose clock is a little behind.
const ClockSkew = 5 * time.Minute

// PEM block types.
const (
	BlockCertificate = "CERTIFICATE"
	BlockPrivateKey  = "PRIVATE KEY" // PKCS#8
	BlockPublicKey   = "PUBLIC KEY"  // PKIX
)

// KeyPair is a PEM-encoded private key with its certificate (CAs and leaves) or its public key (bare
// key pairs such as the service-account signing key).
//
// Its String, Format, GoString and LogValue methods never print the private key, so a stray %v or a
// log line does not leak it.
type KeyPair struct {
	// CertPEM is one "CERTIFICATE" block; empty for a bare key pair.
	CertPEM []byte `json:"certPEM,omitempty"`
	// KeyPEM is one PKCS#8 "PRIVATE KEY" block.
	KeyPEM []byte `json:"keyPEM"`
	// PublicPEM is one PKIX "PUBLIC KEY" block; set for bare key pairs only.
	PublicPEM []byte `json:"publicPEM,omitempty"`
}

// CertRequest describes a leaf certificate to issue.
type CertRequest struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	// Usages are the extended key usages; at least one is required, so that no certificate is good for
	// every purpose.
	Usages []x509.ExtKeyUsage
	// Validity is how long the certificate is valid from the time of issue.
	Validity time.Duration
}

// NewCA makes a self-signed certificate authority valid from now for validity. It may sign leaf
// certificates only (path length 0).
func NewCA(rand io.Reader, commonName string, now time.Time, validity time.Duration) (*KeyPair, error) {
	if commonName == "" {
		return nil, errors.New("pki: new ca: empty common name")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("pki: new ca %q: validity %v is not positive", commonName, validity)
	}
	if rand == nil {
		return nil, fmt.Errorf("pki: new ca %q: nil random source", commonName)
	}
	key, err := newKey(rand)
	if err != nil {
		return nil, fmt.Errorf("pki: new ca %q: %w", commonName, err)
	}
	serial, err := newSerial(rand)
	if err != nil {
		return nil, fmt.Errorf("pki: new ca %q: %w", commonName, err)
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("pki: new ca %q: %w", commonName, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-ClockSkew).UTC(),
		NotAfter:              now.Add(validity).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
	}
	kp, err := sign(tmpl, tmpl, key, key)
	if err != nil {
		return nil, fmt.Errorf("pki: new ca %q: %w", commonName, err)
	}
	return kp, nil
}

// Issue signs a new leaf certificate for req with a new key, valid from now for req.Validity. The CA
// must be valid at now and must outlive the certificate.
func (ca *KeyPair) Issue(rand io.Reader, req CertRequest, now time.Time) (*KeyPair, error) {
	if req.CommonName == "" {
		return nil, errors.New("pki: issue: empty common name")
	}
	if req.Validity <= 0 {
		return nil, fmt.Errorf("pki: issue %q: validity %v is not positive", req.CommonName, req.Validity)
	}
	if len(req.Usages) == 0 {
		return nil, fmt.Errorf("pki: issue %q: no extended key usage", req.CommonName)
	}
	if rand == nil {
		return nil, fmt.Errorf("pki: issue %q: nil random source", req.CommonName)
	}
	caCert, caKey, err := ca.Parse()
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: ca: %w", req.CommonName, err)
	}
	if !caCert.IsCA || caCert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("pki: issue %q: %q: %w", req.CommonName, caCert.Subject.CommonName, ErrNotCA)
	}
	notAfter := now.Add(req.Validity).UTC()
	if now.Before(caCert.NotBefore) || now.After(caCert.NotAfter) {
		return nil, fmt.Errorf("pki: issue %q: ca %q is not valid at %s (valid %s to %s)", req.CommonName,
			caCert.Subject.CommonName, now.UTC().Format(time.RFC3339),
			caCert.NotBefore.Format(time.RFC3339), caCert.NotAfter.Format(time.RFC3339))
	}
	if notAfter.After(caCert.NotAfter) {
		return nil, fmt.Errorf("pki: issue %q: certificate would expire at %s, after its ca %q (%s)",
			req.CommonName, notAfter.Format(time.RFC3339), caCert.Subject.CommonName,
			caCert.NotAfter.Format(time.RFC3339))
	}

	key, err := newKey(rand)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", req.CommonName, err)
	}
	serial, err := newSerial(rand)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", req.CommonName, err)
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", req.CommonName, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   req.CommonName,
			Organization: append([]string(nil), req.Organization...),
		},
		DNSNames:              append([]string(nil), req.DNSNames...),
		IPAddresses:           append([]net.IP(nil), req.IPs...),
		NotBefore:             now.Add(-ClockSkew).UTC(),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           append([]x509.ExtKeyUsage(nil), req.Usages...),
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          skid,
		AuthorityKeyId:        caCert.SubjectKeyId,
	}
	kp, err := sign(tmpl, caCert, key, caKey)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", req.CommonName, err)
	}
	return kp, nil
}

// NewKeyPair makes a bare ECDSA P-256 key pair with no certificate, such as the service-account
// signing key: KeyPEM and PublicPEM are set.
func NewKeyPair(rand io.Reader) (*KeyPair, error) {
	if rand == nil {
		return nil, errors.New("pki: new key pair: nil random source")
	}
	key, err := newKey(rand)
	if err != nil {
		return nil, fmt.Errorf("pki: new key pair: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: new key pair: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("pki: new key pair: %w", err)
	}
	return &KeyPair{
		KeyPEM:    keyPEM,
		PublicPEM: pem.EncodeToMemory(&pem.Block{Type: BlockPublicKey, Bytes: pubDER}),
	}, nil
}

// Certificate parses CertPEM.
func (kp *KeyPair) Certificate() (*x509.Certificate, error) {
	if len(kp.CertPEM) == 0 {
		return nil, fmt.Errorf("pki: %w", ErrNoCertificate)
	}
	der, err := decodePEM(kp.CertPEM, BlockCertificate)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate: %w", err)
	}
	return cert, nil
}

// PrivateKey parses KeyPEM, which must hold an ECDSA key.
func (kp *KeyPair) PrivateKey() (*ecdsa.PrivateKey, error) {
	der, err := decodePEM(kp.KeyPEM, BlockPrivateKey)
	if err != nil {
		return nil, fmt.Errorf("pki: private key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("pki: private key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("pki: private key: %T is not an ECDSA key", k)
	}
	return ek, nil
}

// PublicKey returns the public key from the certificate, or from PublicPEM for a bare key pair.
func (kp *KeyPair) PublicKey() (*ecdsa.PublicKey, error) {
	if len(kp.CertPEM) > 0 {
		cert, err := kp.Certificate()
		if err != nil {
			return nil, err
		}
		pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("pki: public key: certificate key %T is not an ECDSA key", cert.PublicKey)
		}
		return pub, nil
	}
	der, err := decodePEM(kp.PublicPEM, BlockPublicKey)
	if err != nil {
		return nil, fmt.Errorf("pki: public key: %w", err)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("pki: public key: %w", err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("pki: public key: %T is not an ECDSA key", k)
	}
	return pub, nil
}

// Parse returns the certificate and the private key and checks that they belong together.
func (kp *KeyPair) Parse() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, err := kp.Certificate()
	if err != nil {
		return nil, nil, err
	}
	key, err := kp.PrivateKey()
	if err != nil {
		return nil, nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("pki: %q: %w", cert.Subject.CommonName, ErrKeyMismatch)
	}
	return cert, key, nil
}

// Verify is VerifyAt(ca, time.Now()).
func (kp *KeyPair) Verify(ca *KeyPair) error {
	return kp.VerifyAt(ca, time.Now())
}

// VerifyAt checks that kp's private key belongs to its certificate and that the certificate chains to
// ca's certificate and is valid at now. Any extended key usage is accepted. A bare key pair only has
// its keys checked, against each other.
func (kp *KeyPair) VerifyAt(ca *KeyPair, now time.Time) error {
	if len(kp.CertPEM) == 0 {
		key, err := kp.PrivateKey()
		if err != nil {
			return err
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return err
		}
		if !key.PublicKey.Equal(pub) {
			return fmt.Errorf("pki: verify key pair: %w", ErrKeyMismatch)
		}
		return nil
	}
	cert, _, err := kp.Parse()
	if err != nil {
		return err
	}
	caCert, err := ca.Certificate()
	if err != nil {
		return fmt.Errorf("pki: verify %q: ca: %w", cert.Subject.CommonName, err)
	}
	if !caCert.IsCA {
		return fmt.Errorf("pki: verify %q: %q: %w", cert.Subject.CommonName, caCert.Subject.CommonName, ErrNotCA)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	_, err = cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("pki: verify %q against ca %q: %w", cert.Subject.CommonName, caCert.Subject.CommonName, err)
	}
	return nil
}

// newKey reads a P-256 private scalar from rand by rejection sampling (FIPS 186-5 A.2.2): 32 bytes are
// drawn until they form an integer in [1, n-1]. ecdsa.GenerateKey is not used because since Go 1.26 it
// ignores its reader, which would make the reader passed to this package a lie.
func newKey(rand io.Reader) (*ecdsa.PrivateKey, error) {
	var b [32]byte
	// A draw is rejected with probability about 2^-32; 64 rejections in a row mean a broken reader.
	for range 64 {
		if _, err := io.ReadFull(rand, b[:]); err != nil {
			return nil, fmt.Errorf("read random key: %w", err)
		}
		if key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b[:]); err == nil {
			return key, nil
		}
	}
	return nil, errors.New("read random key: random source gives no valid P-256 scalar")
}

// newSerial reads a random, non-zero 128-bit serial number.
func newSerial(rand io.Reader) (*big.Int, error) {
	var b [16]byte
	for range 64 {
		if _, err := io.ReadFull(rand, b[:]); err != nil {
			return nil, fmt.Errorf("read random serial: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
	return nil, errors.New("read random serial: random source gives only zeros")
}

// subjectKeyID is method 1 of RFC 7093 section 2: the leftmost 160 bits of the SHA-256 hash of the
// subjectPublicKey bit string (for ECDSA, the uncompressed point).
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	b, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("subject key id: %w", err)
	}
	h := sha256.Sum256(b)
	return h[:20], nil
}

// sign creates the certificate with a deterministic RFC 6979 signature (a nil reader) and encodes it.
func sign(tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) (*KeyPair, error) {
	der, err := x509.CreateCertificate(nil, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: BlockCertificate, Bytes: der}),
		KeyPEM:  keyPEM,
	}, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: BlockPrivateKey, Bytes: der}), nil
}

// decodePEM returns the DER of the one PEM block of type typ in data; anything else in data is an error.
func decodePEM(data []byte, typ string) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("no %s PEM block", typ)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, typ)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("data after the %s PEM block", typ)
	}
	return block.Bytes, nil
}
