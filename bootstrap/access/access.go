// Package access issues the credentials with which people reach a cluster's API: a kubeconfig that
// holds a short-lived client certificate from the cluster CA, for a user in groups that RBAC binds,
// with a key made for it and kept nowhere else. system:masters, which RBAC cannot restrict, is given
// only to a request that says Admin.
//
// Everything here is pure given its random source and clock: `kiln kubeconfig` and `kiln apply`
// read the CA from the state store, pass crypto/rand and the time, and write or use the result.
package access

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/kubecfg"
	"github.com/kiln-dev/kiln/bootstrap/pki"
)

// Lifetimes of an issued certificate.
const (
	DefaultTTL = time.Hour
	// MaxTTL caps the lifetime: a kubeconfig that leaks is good for a day at most, and there is no
	// revoking a client certificate in Kubernetes but waiting for it to expire.
	MaxTTL = 24 * time.Hour
)

// MastersGroup is Kubernetes's superuser group: the API server lets it do anything, whatever RBAC says.
const MastersGroup = "system:masters"

// maxCommonName is the upper bound of an X.509 common name (RFC 5280, ub-common-name).
const maxCommonName = 64

// Request is who a credential is for and where it leads.
type Request struct {
	// Cluster names the kubeconfig's cluster entry: the cluster's name.
	Cluster string
	// Server is the API server's https URL.
	Server string
	// TLSServerName, when set, is the name the API server's certificate is checked against instead of
	// Server's host (see TLSServerName).
	TLSServerName string
	// User is the certificate's common name, which Kubernetes takes as the user name.
	User string
	// Groups are the certificate's organizations, which Kubernetes takes as the user's groups.
	Groups []string
	// TTL is how long the certificate is valid: DefaultTTL if zero, at most MaxTTL.
	TTL time.Duration
	// Admin adds MastersGroup; without it, MastersGroup in Groups is refused.
	Admin bool
}

// Credential is an issued kubeconfig and what it says.
type Credential struct {
	// Kubeconfig holds the client certificate and its private key: treat it as a secret.
	Kubeconfig []byte
	User       string
	Groups     []string
	// NotAfter is when the certificate expires.
	NotAfter time.Time
}

// Check reports every problem of r at once, each wrapping ErrInvalid or ErrReserved.
func (r Request) Check() error {
	var errs []error
	invalid := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...))
	}
	reserved := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrReserved}, a...)...))
	}
	if r.Cluster == "" {
		invalid("no cluster name")
	}
	if u, err := url.Parse(r.Server); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
		invalid("server %q: want https://host[:port]", r.Server)
	}
	switch {
	case r.User == "":
		invalid("no user")
	case len(r.User) > maxCommonName:
		invalid("user %q: longer than %d characters", r.User, maxCommonName)
	case !printable(r.User):
		invalid("user %q: contains white space or control characters", r.User)
	case strings.HasPrefix(r.User, "system:"):
		reserved("user %q: system: names are Kubernetes's own components'", r.User)
	}
	for _, g := range r.Groups {
		switch {
		case g == "":
			invalid("an empty group")
		case !printable(g):
			invalid("group %q: contains white space, commas or control characters", g)
		case g == MastersGroup && !r.Admin:
			reserved("group %s bypasses RBAC and is given only with Admin (kiln kubeconfig --admin)", MastersGroup)
		case g != MastersGroup && strings.HasPrefix(g, "system:"):
			reserved("group %q: system: groups are Kubernetes's own", g)
		}
	}
	switch {
	case r.TTL < 0:
		invalid("ttl %v: not positive", r.TTL)
	case r.TTL > MaxTTL:
		invalid("ttl %v: at most %v; issue a new credential when this one expires", r.TTL, MaxTTL)
	}
	return errors.Join(errs...)
}

func printable(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == ',' })
}

// groups are r's groups, MastersGroup added for Admin, without repeats, in the order given.
func (r Request) groups() []string {
	var out []string
	for _, g := range r.Groups {
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	if r.Admin && !slices.Contains(out, MastersGroup) {
		out = append(out, MastersGroup)
	}
	return out
}

// TTL is r.TTL, or DefaultTTL if it is zero.
func (r Request) ttl() time.Duration {
	if r.TTL == 0 {
		return DefaultTTL
	}
	return r.TTL
}

// Issue checks r and issues its credential: a client certificate from ca for r.User in r's groups,
// valid from now (less pki.ClockSkew) for r's TTL, with a new ECDSA P-256 key read from rand, put
// into a kubeconfig for r.Server that trusts ca's certificate alone.
func Issue(ca *pki.KeyPair, rand io.Reader, now time.Time, r Request) (*Credential, error) {
	if err := r.Check(); err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	groups := r.groups()
	kp, err := ClientCertificate(ca, rand, now, r.User, groups, r.ttl())
	if err != nil {
		return nil, err
	}
	cert, err := kp.Certificate()
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	kc, err := kubecfg.Kubeconfig(kubecfg.KubeconfigInput{
		ClusterName: r.Cluster, Server: r.Server, TLSServerName: r.TLSServerName, CAPEM: ca.CertPEM,
		User: r.User, ClientCertPEM: kp.CertPEM, ClientKeyPEM: kp.KeyPEM,
	})
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	return &Credential{Kubeconfig: kc, User: r.User, Groups: groups, NotAfter: cert.NotAfter}, nil
}

// ClientCertificate issues a client certificate (and its new key, read from rand) from ca for user in
// groups, valid from now for ttl. It checks nothing of user and groups but that there is a user: use
// Issue for what people ask for.
func ClientCertificate(ca *pki.KeyPair, rand io.Reader, now time.Time, user string, groups []string, ttl time.Duration) (*pki.KeyPair, error) {
	if ca == nil || len(ca.CertPEM) == 0 || len(ca.KeyPEM) == 0 {
		return nil, fmt.Errorf("access: issue %q: %w: no CA certificate and key", user, ErrInvalid)
	}
	kp, err := ca.Issue(rand, pki.CertRequest{
		CommonName:   user,
		Organization: groups,
		Usages:       []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		Validity:     ttl,
	}, now)
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	return kp, nil
}

// Endpoint is the https URL of cluster c's API endpoint as its spec names it
// (network.apiEndpoint: the load balancer's name and port), and that name.
func Endpoint(c *v1alpha1.Cluster) (server, name string) {
	ep := c.Spec.Network.APIEndpoint
	name = ep.LoadBalancerName
	if name == "" {
		name = v1alpha1.LoadBalancerName(c.Metadata.Name)
	}
	port := ep.Port
	if port == 0 {
		port = v1alpha1.DefaultAPIPort
	}
	return "https://" + net.JoinHostPort(name, strconv.Itoa(port)), name
}

// TLSServerName is the name to check the API server's certificate against when it is reached at
// server: name (the load balancer's, which the certificate holds) when server's host is an IP address
// or localhost (a forwarded port), "" when the host is a name of its own, which the certificate must
// hold.
func TLSServerName(server, name string) (string, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("access: server %q: %w: want https://host[:port]", server, ErrInvalid)
	}
	host := u.Hostname()
	if net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") {
		return name, nil
	}
	return "", nil
}
