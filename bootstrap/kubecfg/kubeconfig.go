package kubecfg

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
)

// KubeconfigInput is what a kubeconfig holds: one cluster, one user, one context joining them.
// Exactly one of (ClientCertPEM with ClientKeyPEM) and Token is set.
type KubeconfigInput struct {
	// ClusterName names the cluster entry.
	ClusterName string
	// Server is the API server's https URL, e.g. "https://api.demo.kiln.internal:6443".
	Server string
	// CAPEM holds the PEM certificates that the API server's serving certificate chains to.
	CAPEM []byte
	// TLSServerName, when set, is the name the serving certificate is checked against instead of
	// Server's host: the load balancer's name when Server is an address or a forwarded port, so that
	// TLS verification stays on.
	TLSServerName string
	// User names the user entry.
	User string
	// ClientCertPEM and ClientKeyPEM are the user's client certificate and its private key.
	ClientCertPEM, ClientKeyPEM []byte
	// Token is a bearer token, such as a bootstrap token "<id>.<secret>".
	Token string
}

// Kubeconfig renders a kubeconfig with every credential embedded (certificate-authority-data,
// client-certificate-data, client-key-data or token), never a file path, so that it is one
// self-contained file. Its one context, "<user>@<cluster>", is the current context. The server must be
// https, CAPEM must hold at least one certificate, and a client certificate must match its key. The
// result holds the credential: treat it as a secret.
//
// It is client-go's clientcmd v1 Config, written without the fields kiln leaves unset (not even
// clientcmd's empty "preferences: {}").
func Kubeconfig(k KubeconfigInput) ([]byte, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	contextName := k.User + "@" + k.ClusterName
	b, err := marshalSet(clientcmdv1.Config{
		APIVersion: "v1",
		Kind:       "Config",
		Clusters: []clientcmdv1.NamedCluster{{
			Name: k.ClusterName,
			Cluster: clientcmdv1.Cluster{
				Server:                   k.Server,
				TLSServerName:            k.TLSServerName,
				CertificateAuthorityData: k.CAPEM,
			},
		}},
		AuthInfos: []clientcmdv1.NamedAuthInfo{{
			Name: k.User,
			AuthInfo: clientcmdv1.AuthInfo{
				ClientCertificateData: k.ClientCertPEM,
				ClientKeyData:         k.ClientKeyPEM,
				Token:                 k.Token,
			},
		}},
		Contexts: []clientcmdv1.NamedContext{{
			Name:    contextName,
			Context: clientcmdv1.Context{Cluster: k.ClusterName, AuthInfo: k.User},
		}},
		CurrentContext: contextName,
	}, clientcmdv1.Config{})
	if err != nil {
		return nil, fmt.Errorf("kubecfg: kubeconfig %q: %w", contextName, err)
	}
	return b, nil
}

// check reports every problem of k at once.
func (k KubeconfigInput) check() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("kubecfg: kubeconfig: %w: "+format, append([]any{ErrInvalid}, a...)...))
	}
	if k.ClusterName == "" {
		bad("cluster name is empty")
	}
	if k.User == "" {
		bad("user is empty")
	}
	if u, err := url.Parse(k.Server); err != nil {
		bad("server %q: %v", k.Server, err)
	} else if u.Scheme != "https" || u.Host == "" || u.User != nil {
		bad("server %q: want https://host[:port]", k.Server)
	}
	if k.TLSServerName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(k.TLSServerName) {
			bad("tls server name %q: %s", k.TLSServerName, msg)
		}
	}
	if err := checkCertificatesPEM(k.CAPEM); err != nil {
		bad("certificate authority: %v", err)
	}
	hasCert, hasKey, hasToken := len(k.ClientCertPEM) > 0, len(k.ClientKeyPEM) > 0, k.Token != ""
	switch {
	case hasCert != hasKey:
		bad("user %q: client certificate and key go together", k.User)
	case hasCert && hasToken:
		bad("user %q: both a client certificate and a token, want exactly one", k.User)
	case !hasCert && !hasToken:
		bad("user %q: no client certificate and no token, want exactly one", k.User)
	}
	if hasCert && hasKey {
		if _, err := tls.X509KeyPair(k.ClientCertPEM, k.ClientKeyPEM); err != nil {
			bad("user %q: client certificate and key: %v", k.User, err)
		}
	}
	if hasToken && strings.ContainsFunc(k.Token, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		bad("user %q: token contains white space or control characters", k.User)
	}
	return errors.Join(errs...)
}

// checkCertificatesPEM checks that data is one or more PEM certificates and nothing else.
func checkCertificatesPEM(data []byte) error {
	n := 0
	for rest := data; len(strings.TrimSpace(string(rest))) > 0; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return errors.New("not PEM")
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("PEM block %d: %w", n, err)
		}
	}
	if n == 0 {
		return errors.New("no certificate")
	}
	return nil
}
