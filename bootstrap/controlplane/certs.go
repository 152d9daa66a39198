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

// NodeCertFiles are the files of a control-plane node that hold certificates of the bundle's leaves
// (as the renderer writes them; the admin's is in no node's files).
var NodeCertFiles = []string{
	"/etc/kubernetes/pki/apiserver.crt",
	"/etc/kubernetes/pki/apiserver-kubelet-client.crt",
	"/etc/kubernetes/pki/apiserver-etcd-client.crt",
	"/etc/kubernetes/pki/front-proxy-client.crt",
	"/etc/kubernetes/pki/etcd/server.crt",
	"/etc/kubernetes/pki/etcd/peer.crt",
	"/etc/kubernetes/controller-manager.conf",
	"/etc/kubernetes/scheduler.conf",
}

// Renewal replaces certificates with the renewed ones for the same keys.
type Renewal struct {
	byKey map[string][]byte // public key DER -> renewed certificate PEM
	api   *x509.Certificate
}

// NewRenewal is the renewal of the certificates of b that renewed names.
func NewRenewal(b *secrets.Bundle, renewed []string) (*Renewal, error) {
	leaves, err := b.Leaves()
	if err != nil {
		return nil, err
	}
	r := &Renewal{byKey: map[string][]byte{}}
	for _, l := range leaves {
		if !slices.Contains(renewed, l.Name) {
			continue
		}
		der, err := x509.MarshalPKIXPublicKey(l.Cert.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("controlplane: %s: %w", l.Name, err)
		}
		r.byKey[string(der)] = l.PEM.CertPEM
		if l.Name == "apiServer" {
			r.api = l.Cert
		}
	}
	return r, nil
}

// APIServer is the renewed serving certificate of the API server; nil when it is not renewed.
func (r *Renewal) APIServer() *x509.Certificate { return r.api }

// File returns the content of a certificate file (PEM) or a kubeconfig with the renewed certificate
// for the key of the one it holds, and whether that changed it. A file that holds none of the
// renewed keys (another certificate, a CA, a member's own etcd certificate) is left as it is.
func (r *Renewal) File(data []byte) ([]byte, bool, error) {
	if cert, err := parseCert(data); err == nil {
		renewed, ok := r.renewedFor(cert)
		if !ok || cert.IsCA || bytes.Equal(data, renewed) {
			return data, false, nil
		}
		return renewed, true, nil
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return data, false, nil // neither: nothing kiln renews
	}
	changed := false
	for _, ai := range cfg.AuthInfos {
		cert, err := parseCert(ai.ClientCertificateData)
		if err != nil {
			continue
		}
		if renewed, ok := r.renewedFor(cert); ok && !bytes.Equal(ai.ClientCertificateData, renewed) {
			ai.ClientCertificateData = renewed
			changed = true
		}
	}
	if !changed {
		return data, false, nil
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, false, fmt.Errorf("controlplane: kubeconfig: %w", err)
	}
	return out, true, nil
}

func (r *Renewal) renewedFor(cert *x509.Certificate) ([]byte, bool) {
	der, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		return nil, false
	}
	renewed, ok := r.byKey[string(der)]
	return renewed, ok
}

func parseCert(data []byte) (*x509.Certificate, error) {
	return (&pki.KeyPair{CertPEM: data}).Certificate()
}

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
	r, err := NewRenewal(b, renewed)
	if err != nil {
		return err
	}
	var replaced int
	err = filepath.WalkDir(d.Dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || (filepath.Ext(p) != ".crt" && filepath.Ext(p) != ".conf") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out, changed, err := r.File(data)
		if err != nil || !changed {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		replaced++
		return atomicfile.Write(p, out, fi.Mode().Perm(), false)
	})
	if err != nil {
		return fmt.Errorf("controlplane: %s: %w", d.Dir, err)
	}
	if replaced == 0 {
		return fmt.Errorf("controlplane: %s holds none of the renewed certificates' keys (is it the directory of 'kiln controlplane run' of this cluster?): %w", d.Dir, ErrNotRendered)
	}
	if r.APIServer() == nil {
		return nil
	}
	cfg, err := clientcmd.LoadFromFile(filepath.Join(d.Dir, AdminKubeconfigFile))
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	for _, c := range cfg.Clusters {
		u, err := url.Parse(c.Server)
		if err != nil || u.Host == "" {
			return fmt.Errorf("controlplane: %s: no API server URL", filepath.Join(d.Dir, AdminKubeconfigFile))
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(c.CertificateAuthorityData)
		return WaitServing(ctx, u.Host, u.Hostname(), roots, r.APIServer())
	}
	return nil
}

// WaitServing waits, within ctx, until the TLS server at addr presents cert (by serial number),
// verified for serverName against roots.
func WaitServing(ctx context.Context, addr, serverName string, roots *x509.CertPool, cert *x509.Certificate) error {
	var served *x509.Certificate
	err := wait.PollUntilContextCancel(ctx, readyPoll, true, func(ctx context.Context) (bool, error) {
		dialer := &tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}}
		c, err := dialer.DialContext(ctx, "tcp", addr)
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
			addr, cert.SerialNumber.Text(16), got, errors.Join(err, ctx.Err()))
	}
	return nil
}
