// Package servingcsr approves the kubelets' serving certificate requests, and only those for the
// names and addresses of machines kiln manages.
//
// kiln's kubelets ask the cluster for their serving certificates (serverTLSBootstrap: true) and
// kube-apiserver checks the kubelet's certificate against the cluster CA
// (--kubelet-certificate-authority), so that `kubectl logs`, `exec` and `port-forward` need each
// node's serving CSR (signer kubernetes.io/kubelet-serving) approved. kube-controller-manager signs
// them once approved but approves only client certificates: a serving certificate names addresses,
// and only who placed the machines knows which addresses are a node's. kiln does.
//
// Decide is the decision, pure: a CSR is approved when it comes from the node it names, that node is
// one of kiln's machines, and it asks for nothing but that machine's name and private addresses with
// the kubelet's usages and a strong key. Anything else is left pending, never denied, so that an
// operator may still approve it by hand (kubectl certificate approve). Approve is the thin effect:
// one List, Decide on each pending kubelet-serving CSR, and the approval subresource for those
// approved.
package servingcsr

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// Who a kubelet is on the cluster's API.
const (
	// NodeUserPrefix starts the user name of a node's kubelet: system:node:<node name>.
	NodeUserPrefix = "system:node:"
	// NodesGroup is the group of every kubelet, and the only organization of its certificates.
	NodesGroup = "system:nodes"
)

// Smallest keys approved.
const (
	minRSABits   = 2048
	minECDSABits = 256
)

// Verdict is Decide's answer for one CSR.
type Verdict struct {
	// Approve is true when the CSR is to be approved; false leaves it pending.
	Approve bool
	// Node is the node the CSR comes from (spec.username without system:node:), empty if it comes
	// from no node.
	Node string
	// Reason says why, in words for an operator: what the certificate is for when approved, the rules
	// it fails when left.
	Reason string
}

// Decide judges csr, a CertificateSigningRequest as the API returned it, against known: the machines
// kiln manages, by node name, each with its private addresses. It approves only when every one of
// these holds:
//
//   - the signer is kubernetes.io/kubelet-serving, and the CSR is neither approved, denied nor failed;
//   - it was made by a node: spec.username is system:node:NAME and spec.groups holds system:nodes;
//   - NAME is a key of known;
//   - spec.request is one PEM CERTIFICATE REQUEST that parses, and its signature checks;
//   - its subject is exactly CN=system:node:NAME, O=system:nodes;
//   - it names at least one DNS name or IP address, every DNS name is NAME (no other name, no
//     wildcard) and every IP address one of known[NAME]; it names no email address or URI;
//   - spec.usages are digital signature and server auth, and optionally key encipherment, and no
//     other;
//   - its key is ECDSA on a curve of 256 bits or more, or RSA of 2048 bits or more.
//
// Otherwise the verdict leaves the CSR pending with a reason that names each rule it fails (once
// the CSR is known to come from one of kiln's nodes; before, the first).
func Decide(csr *certificatesv1.CertificateSigningRequest, known map[string][]netip.Addr) Verdict {
	if csr == nil {
		return Verdict{Reason: "no certificate signing request"}
	}
	if s := csr.Spec.SignerName; s != certificatesv1.KubeletServingSignerName {
		return Verdict{Reason: fmt.Sprintf("signer %q, not %s", s, certificatesv1.KubeletServingSignerName)}
	}
	if c, ok := decided(csr); ok {
		return Verdict{Reason: "already " + strings.ToLower(string(c))}
	}
	node, ok := strings.CutPrefix(csr.Spec.Username, NodeUserPrefix)
	if !ok || node == "" {
		return Verdict{Reason: fmt.Sprintf("requested by %q, not by a node (%sNAME)", csr.Spec.Username, NodeUserPrefix)}
	}
	v := Verdict{Node: node}
	if !slices.Contains(csr.Spec.Groups, NodesGroup) {
		v.Reason = fmt.Sprintf("requested by %s outside group %s", csr.Spec.Username, NodesGroup)
		return v
	}
	addrs, ok := known[node]
	if !ok {
		v.Reason = fmt.Sprintf("node %s is not a machine kiln manages", node)
		return v
	}
	req, err := parseRequest(csr.Spec.Request)
	if err != nil {
		v.Reason = err.Error()
		return v
	}
	var fails []string
	fails = append(fails, checkSubject(req, node)...)
	fails = append(fails, checkNames(req, node, addrs)...)
	fails = append(fails, checkUsages(csr.Spec.Usages)...)
	fails = append(fails, checkKey(req)...)
	if len(fails) > 0 {
		v.Reason = strings.Join(fails, "; ")
		return v
	}
	v.Approve = true
	v.Reason = fmt.Sprintf("kubelet serving certificate of node %s for %s", node, names(req))
	return v
}

// decided returns the type of csr's Approved, Denied or Failed condition, if it has one.
func decided(csr *certificatesv1.CertificateSigningRequest) (certificatesv1.RequestConditionType, bool) {
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return c.Type, true
		}
	}
	return "", false
}

// parseRequest parses data, which must be one PEM CERTIFICATE REQUEST and nothing else, and checks
// its signature.
func parseRequest(data []byte) (*x509.CertificateRequest, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("the request is not PEM")
	}
	if block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("the request is a PEM %q, not a CERTIFICATE REQUEST", block.Type)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("the request has data after its PEM block")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the request does not parse: %v", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the request's signature does not check: %v", err)
	}
	return req, nil
}

var (
	oidCommonName   = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOrganization = asn1.ObjectIdentifier{2, 5, 4, 10}
)

// checkSubject: the subject is exactly CN=system:node:node, O=system:nodes.
func checkSubject(req *x509.CertificateRequest, node string) []string {
	var fails []string
	if cn := req.Subject.CommonName; cn != NodeUserPrefix+node {
		fails = append(fails, fmt.Sprintf("subject CN %q, not %s%s", cn, NodeUserPrefix, node))
	}
	if o := req.Subject.Organization; !slices.Equal(o, []string{NodesGroup}) {
		fails = append(fails, fmt.Sprintf("subject O %q, not [%s]", o, NodesGroup))
	}
	for _, a := range req.Subject.Names {
		if !a.Type.Equal(oidCommonName) && !a.Type.Equal(oidOrganization) {
			fails = append(fails, fmt.Sprintf("subject attribute %s: only CN and O are allowed", a.Type))
		}
	}
	return fails
}

// checkNames: at least one name; DNS names only node, IP addresses only addrs; no email or URI.
func checkNames(req *x509.CertificateRequest, node string, addrs []netip.Addr) []string {
	var fails []string
	if len(req.DNSNames)+len(req.IPAddresses) == 0 {
		fails = append(fails, "no DNS name or IP address to serve")
	}
	for _, n := range req.DNSNames {
		if n != node {
			fails = append(fails, fmt.Sprintf("DNS name %q is not the node's name %s", n, node))
		}
	}
	for _, ip := range req.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok || !slices.Contains(addrs, a.Unmap()) {
			fails = append(fails, fmt.Sprintf("IP address %s is not an address of machine %s (%s)", ip, node, addrList(addrs)))
		}
	}
	if len(req.EmailAddresses) > 0 {
		fails = append(fails, fmt.Sprintf("email addresses %q: none allowed", req.EmailAddresses))
	}
	if len(req.URIs) > 0 {
		uris := make([]string, len(req.URIs))
		for i, u := range req.URIs {
			uris[i] = u.String()
		}
		fails = append(fails, fmt.Sprintf("URIs %q: none allowed", uris))
	}
	return fails
}

func addrList(addrs []netip.Addr) string {
	if len(addrs) == 0 {
		return "it has none yet"
	}
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return "it has " + strings.Join(s, ", ")
}

// checkUsages: digital signature and server auth, optionally key encipherment, nothing else.
func checkUsages(usages []certificatesv1.KeyUsage) []string {
	var fails []string
	for _, u := range usages {
		switch u {
		case certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth, certificatesv1.UsageKeyEncipherment:
		default:
			fails = append(fails, fmt.Sprintf("usage %q: a kubelet serves with digital signature, server auth and optionally key encipherment only", u))
		}
	}
	for _, want := range []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth} {
		if !slices.Contains(usages, want) {
			fails = append(fails, fmt.Sprintf("usage %q is missing", want))
		}
	}
	return fails
}

// checkKey: ECDSA of 256 bits or more, or RSA of 2048 bits or more.
func checkKey(req *x509.CertificateRequest) []string {
	switch k := req.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if bits := k.Curve.Params().BitSize; bits < minECDSABits {
			return []string{fmt.Sprintf("ECDSA key of %d bits: at least %d", bits, minECDSABits)}
		}
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return []string{fmt.Sprintf("RSA key of %d bits: at least %d", bits, minRSABits)}
		}
	default:
		return []string{fmt.Sprintf("key type %s: only ECDSA and RSA", req.PublicKeyAlgorithm)}
	}
	return nil
}

// names are the DNS names and IP addresses req asks for.
func names(req *x509.CertificateRequest) string {
	var s []string
	s = append(s, req.DNSNames...)
	for _, ip := range req.IPAddresses {
		s = append(s, ip.String())
	}
	return strings.Join(s, ", ")
}
