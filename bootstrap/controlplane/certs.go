package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/state/atomicfile"
)

// ApplyCertificates puts the renewed leaf certificates of b in the control plane's directory
// (rotate.CertServers): every certificate file (*.crt) and every kubeconfig (*.conf, the admin's
// included) there whose certificate is for the key of a renewed one gets the renewed certificate,
// replaced atomically with its mode kept; the keys stay as they are. kube-apiserver reloads its
// serving certificate when the file changes, without a restart, and etcd its serving and peer
// certificates at each new connection; ApplyCertificates returns once the API server serves the
// renewed certificate (when apiServer is among them). The client certificates of kube-apiserver,
// kube-controller-manager and kube-scheduler, read when they start, are used from their next
// restart: the old ones stay valid until they expire.
func (d DirAPIServers) ApplyCertificates(ctx context.Context, b *secrets.Bundle, renewed []string) error {
	leaves, err := b.Leaves()
	if err != nil {
		return err
	}
	byKey := map[string][]byte{} // public key DER -> renewed certificate PEM
	var api *x509.Certificate
	for _, l := range leaves {
		if !slices.Contains(renewed, l.Name) {
			continue
		}
		der, err := x509.MarshalPKIXPublicKey(l.Cert.PublicKey)
		if err != nil {
			return fmt.Errorf("controlplane: %s: %w", l.Name, err)
		}
		byKey[string(der)] = l.PEM.CertPEM
		if l.Name == "apiServer" {
			api = l.Cert
		}
	}
	var replaced int
	err = filepath.WalkDir(d.Dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		var n int
		switch filepath.Ext(p) {
		case ".crt":
			n, err = replaceCertFile(p, byKey)
		case ".conf":
			n, err = replaceKubeconfigCerts(p, byKey)
		}
		replaced += n
		return err
	})
	if err != nil {
		return fmt.Errorf("controlplane: %s: %w", d.Dir, err)
	}
	if replaced == 0 {
		return fmt.Errorf("controlplane: %s holds none of the renewed certificates' keys (is it the directory of 'kiln controlplane run' of this cluster?): %w", d.Dir, ErrNotRendered)
	}
	if api == nil {
		return nil
	}
	return d.waitServing(ctx, api)
}

// replaceCertFile replaces the certificate file p with the renewed certificate for its key, if any.
func replaceCertFile(p string, byKey map[string][]byte) (int, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	cert, err := parseCert(data)
	if err != nil || cert.IsCA {
		return 0, nil // not a leaf certificate of kiln's: left alone
	}
	renewed, ok := renewedFor(cert, byKey)
	if !ok || bytes.Equal(data, renewed) {
		return 0, nil
	}
	return 1, writeKeepingMode(p, renewed)
}

// replaceKubeconfigCerts replaces the client certificates of kubeconfig p that are for the key of a
// renewed one.
func replaceKubeconfigCerts(p string, byKey map[string][]byte) (int, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return 0, nil // not a kubeconfig
	}
	n := 0
	for _, ai := range cfg.AuthInfos {
		cert, err := parseCert(ai.ClientCertificateData)
		if err != nil {
			continue
		}
		if renewed, ok := renewedFor(cert, byKey); ok && !bytes.Equal(ai.ClientCertificateData, renewed) {
			ai.ClientCertificateData = renewed
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	return n, writeKeepingMode(p, out)
}

func parseCert(data []byte) (*x509.Certificate, error) {
	return (&pki.KeyPair{CertPEM: data}).Certificate()
}

func renewedFor(cert *x509.Certificate, byKey map[string][]byte) ([]byte, bool) {
	der, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		return nil, false
	}
	renewed, ok := byKey[string(der)]
	return renewed, ok
}

func writeKeepingMode(p string, data []byte) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	return atomicfile.Write(p, data, fi.Mode().Perm(), false)
}

// waitServing waits until the API server of the directory's admin kubeconfig presents cert.
func (d DirAPIServers) waitServing(ctx context.Context, cert *x509.Certificate) error {
	cfg, err := clientcmd.LoadFromFile(filepath.Join(d.Dir, AdminKubeconfigFile))
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	var server string
	var roots *x509.CertPool
	for _, c := range cfg.Clusters {
		server, roots = c.Server, x509.NewCertPool()
		roots.AppendCertsFromPEM(c.CertificateAuthorityData)
	}
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return fmt.Errorf("controlplane: %s: no API server URL", filepath.Join(d.Dir, AdminKubeconfigFile))
	}
	var served *x509.Certificate
	err = wait.PollUntilContextCancel(ctx, readyPoll, true, func(ctx context.Context) (bool, error) {
		dialer := &tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}}
		c, err := dialer.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return false, nil
		}
		defer c.Close()
		served = c.(*tls.Conn).ConnectionState().PeerCertificates[0]
		return served.SerialNumber.Cmp(cert.SerialNumber) == 0, nil
	})
	if err != nil {
		got := "nothing"
		if served != nil {
			got = "serial " + served.SerialNumber.Text(16)
		}
		return fmt.Errorf("controlplane: waiting for the API server at %s to serve its renewed certificate (serial %s; it serves %s): %w",
			u.Host, cert.SerialNumber.Text(16), got, errors.Join(err, ctx.Err()))
	}
	return nil
}
