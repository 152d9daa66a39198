// Package ignition renders the Ignition config of every node of a cluster from the cluster spec and
// its secrets: kiln's Butane templates (package butane) are filled with the cluster's values,
// translated by the Butane library in strict mode once per role and pool, and then filled per node.
// Every config is validated with Ignition's own validator and linted (package lint) before it is
// returned.
package ignition

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"sync"
	"text/template"
	"time"

	butanecommon "github.com/coreos/butane/config/common"
	fcos "github.com/coreos/butane/config/fcos/v1_6"
	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
	"github.com/coreos/ignition/v2/config/validate"
	"github.com/vincent-petithory/dataurl"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/lint"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/butane"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

// DefaultBinDir is where the image keeps etcd, the Kubernetes binaries and kubectl.
const DefaultBinDir = "/usr/local/bin"

// Input is what a cluster's configs are rendered from.
type Input struct {
	// Cluster is a decoded, defaulted and validated spec.
	Cluster *v1alpha1.Cluster
	// Secrets of the cluster, from the state store.
	Secrets *secrets.Bundle
	// Token is the bootstrap token nodes join with; it must be in Secrets.BootstrapTokens so that the
	// control plane knows it.
	Token secrets.BootstrapToken
	// Placement is what the provider that places the nodes does for them, as the provider declares it
	// (each provider package's Placement). Rendering reads it and never asks which provider it is. The
	// zero value: every node loads its firewall, no channel limits a config's size, the API endpoint
	// is a load balancer outside the nodes, and nodes' addresses are not known before rendering.
	Placement Placement
	// ControlPlaneAddresses are the private addresses of the cluster's control-plane nodes
	// (secrets.ControlPlaneNodeNames) by name, reserved before rendering (provisioner.Addresser).
	// Required, for every one of them, where Placement.NodeAddresses. With them, etcd's members and
	// haproxy's backends are addresses; without them, node names, which the provider must make
	// resolve on every node.
	ControlPlaneAddresses map[string]netip.Addr
	// Rand is where the keys of certificates issued at render time come from (a control-plane node's
	// etcd certificates, which name its address). Defaults to crypto/rand.Reader.
	Rand io.Reader
	// Now is the time those certificates are valid from. Defaults to time.Now.
	Now func() time.Time
	// BinDir in the image. Defaults to DefaultBinDir.
	BinDir string
}

// Placement is what a provider does for the machines it places, as far as their configs are concerned.
// Each provider declares its own next to its Provider implementation; the composition root (the CLI)
// passes it in.
type Placement struct {
	// ExternalFirewall: the provider enforces the cluster's firewall intent outside the nodes (cloud
	// security groups), so the nodes do not load it themselves. False: each node loads its role's
	// nftables ruleset before its network comes up.
	ExternalFirewall bool
	// Channels: per role, the channel that carries a config to a machine, whose size limit every config
	// of that role must fit. A role without one has no limit kiln knows of (a stub fetches its config,
	// or the channel holds any size).
	Channels map[string]lint.Limit
	// Endpoint is how the provider makes the cluster's API endpoint.
	Endpoint Endpoint
	// NodeAddresses: the provider gives every machine its private address before its config is
	// rendered (it is a provisioner.Addresser). Render then requires every Node's Address and names it
	// in the config (the kubelet's node IP, etcd's URLs, the API server's advertise address), and New
	// requires Input.ControlPlaneAddresses.
	NodeAddresses bool
	// SlowMachines: the machines are emulated (QEMU's TCG) and their API server may take many seconds
	// to answer, so the control plane's leader elections use kubecfg.SlowMachineLeaderElection (such a
	// provider is also a provisioner.StagedBoot: kiln apply brings its control plane up first).
	SlowMachines bool
}

// Endpoint is how a provider makes the cluster's API endpoint (spec.network.apiEndpoint).
type Endpoint int

// Ways of making the API endpoint.
const (
	// EndpointExternal: a load balancer outside the nodes (AWS's NLB) forwards the endpoint's port to
	// kube-apiserver on the same port of every control-plane node.
	EndpointExternal Endpoint = iota
	// EndpointVIP: the control-plane nodes make it themselves. keepalived (VRRP) holds the endpoint's
	// address (spec.network.apiEndpoint.address) on one of them at a time, and haproxy on each listens
	// on the endpoint's port on every address of the node and balances to every control-plane node's
	// kube-apiserver, which listens on v1alpha1.APIServerPortBehindVIP. The base image carries both
	// packages; only control-plane configs enable them.
	EndpointVIP
)

// Node is one machine to render a config for.
type Node struct {
	Name string
	Role string
	// Pool is the node pool of a worker; empty for the control plane.
	Pool string
	// Address is the node's private address, known before rendering where the placement has
	// NodeAddresses (then required), and required of a control-plane node when
	// Input.ControlPlaneAddresses is given (where it must be the node's entry). It is filled in
	// per node, like the name, so Butane still runs once per role and pool.
	Address netip.Addr
}

// Renderer renders configs for the nodes of one cluster. It translates each role's (and pool's)
// Butane once and is safe for concurrent use.
type Renderer struct {
	in Input

	mu       sync.Mutex
	compiled map[string]*compiled

	// randMu guards in.Rand, which need not be safe for concurrent use (a seeded stream in tests).
	randMu sync.Mutex
}

// compiled is a translated config with the places that differ per node.
type compiled struct {
	cfg    types.Config
	files  []fileSlot
	units  []int
	linter *lint.Linter
	err    error
}

// fileSlot is a file whose contents hold a per-node placeholder.
type fileSlot struct {
	index    int
	template []byte
}

// Placeholders of the etcd member certificates of a control-plane node whose address is known: the
// whole contents of their files, filled after translation with what secrets.Bundle.EtcdMember issues.
const (
	etcdServerCertPlaceholder = "@@KILN_ETCD_SERVER_CERT@@"
	etcdServerKeyPlaceholder  = "@@KILN_ETCD_SERVER_KEY@@"
	etcdPeerCertPlaceholder   = "@@KILN_ETCD_PEER_CERT@@"
	etcdPeerKeyPlaceholder    = "@@KILN_ETCD_PEER_KEY@@"
)

// Placeholders of every node's reboot agent credential (secrets.Bundle.RebootAgent): the whole
// contents of its files.
const (
	rebootAgentCertPlaceholder = "@@KILN_REBOOT_AGENT_CERT@@"
	rebootAgentKeyPlaceholder  = "@@KILN_REBOOT_AGENT_KEY@@"
)

// placeholders are every per-node placeholder a translated config may hold.
var placeholders = []string{
	butane.NodeNamePlaceholder, butane.NodeAddressPlaceholder,
	etcdServerCertPlaceholder, etcdServerKeyPlaceholder, etcdPeerCertPlaceholder, etcdPeerKeyPlaceholder,
	rebootAgentCertPlaceholder, rebootAgentKeyPlaceholder,
}

func holdsPlaceholder(s string) bool {
	for _, p := range placeholders {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// New checks the input and returns a Renderer.
func New(in Input) (*Renderer, error) {
	if in.Cluster == nil {
		return nil, errors.New("ignition: no cluster spec")
	}
	if in.Secrets == nil {
		return nil, errors.New("ignition: no cluster secrets")
	}
	if in.BinDir == "" {
		in.BinDir = DefaultBinDir
	}
	if in.Token.ID == "" || in.Token.Secret == "" {
		return nil, errors.New("ignition: no bootstrap token for the nodes to join with")
	}
	known := false
	for _, t := range in.Secrets.BootstrapTokens {
		if t.ID == in.Token.ID && t.Secret == in.Token.Secret {
			known = true
		}
	}
	if !known {
		return nil, fmt.Errorf("ignition: bootstrap token %s is not among the cluster's tokens, so the control plane would not accept it", in.Token.ID)
	}
	if in.Rand == nil {
		in.Rand = rand.Reader
	}
	if in.Now == nil {
		in.Now = time.Now
	}
	if err := checkAddresses(in); err != nil {
		return nil, err
	}
	return &Renderer{in: in, compiled: map[string]*compiled{}}, nil
}

// checkAddresses checks the endpoint's address and the control-plane addresses against what the
// placement needs.
func checkAddresses(in Input) error {
	c := in.Cluster
	var errs []error
	ep := c.Spec.Network.APIEndpoint
	if in.Placement.Endpoint == EndpointVIP {
		if a, err := netip.ParseAddr(ep.Address); err != nil || a.Zone() != "" || a.IsUnspecified() {
			errs = append(errs, fmt.Errorf("ignition: spec.network.apiEndpoint.address %q: the endpoint is a virtual address on the control-plane nodes, and needs one", ep.Address))
		}
		if ep.Port == v1alpha1.APIServerPortBehindVIP {
			errs = append(errs, fmt.Errorf("ignition: spec.network.apiEndpoint.port %d: kube-apiserver listens there behind haproxy", ep.Port))
		}
	}
	names := secrets.ControlPlaneNodeNames(c)
	if in.Placement.NodeAddresses && len(in.ControlPlaneAddresses) == 0 {
		errs = append(errs, fmt.Errorf("ignition: no control-plane addresses: the placement gives nodes their addresses before rendering, and etcd and haproxy name every control-plane node's (%s)", strings.Join(names, ", ")))
	} else if len(in.ControlPlaneAddresses) > 0 {
		seen := map[netip.Addr]string{}
		for _, n := range names {
			a, ok := in.ControlPlaneAddresses[n]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("ignition: control-plane node %s has no address", n))
			case !a.IsValid() || a.Zone() != "" || a.IsUnspecified():
				errs = append(errs, fmt.Errorf("ignition: control-plane node %s: %q is not an address", n, a))
			case seen[a] != "":
				errs = append(errs, fmt.Errorf("ignition: control-plane nodes %s and %s have the same address %s", seen[a], n, a))
			default:
				seen[a] = n
			}
		}
	}
	return errors.Join(errs...)
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Render returns the Ignition config (JSON) for one node.
func (r *Renderer) Render(n Node) ([]byte, error) {
	if !dnsLabel.MatchString(n.Name) {
		return nil, fmt.Errorf("ignition: node name %q is not a DNS label (lowercase letters, digits and '-', at most 63)", n.Name)
	}
	switch n.Role {
	case v1alpha1.RoleControlPlane:
		if n.Pool != "" {
			return nil, fmt.Errorf("ignition: node %s: a control-plane node has no pool (got %q)", n.Name, n.Pool)
		}
	case v1alpha1.RoleWorker:
		if r.pool(n.Pool) == nil {
			return nil, fmt.Errorf("ignition: node %s: no node pool %q in cluster %s (have %s)", n.Name, n.Pool,
				r.in.Cluster.Metadata.Name, strings.Join(r.poolNames(), ", "))
		}
	default:
		return nil, fmt.Errorf("ignition: node %s: unknown role %q (want %s or %s)", n.Name, n.Role, v1alpha1.RoleControlPlane, v1alpha1.RoleWorker)
	}
	if err := r.checkAddress(n); err != nil {
		return nil, err
	}
	c := r.compile(n.Role, n.Pool)
	if c.err != nil {
		return nil, c.err
	}
	values, err := r.nodeValues(n)
	if err != nil {
		return nil, err
	}
	cfg := c.fill(values)
	// Ignition's own validator, on the very struct that is serialised below. (v3_5.Parse would also
	// re-read the JSON to look for unknown keys, which json.Marshal of this struct cannot produce.)
	if rpt := validate.ValidateWithContext(cfg, nil); rpt.IsFatal() {
		return nil, fmt.Errorf("ignition: node %s: Ignition's validator rejects the config: %s", n.Name, strings.TrimSpace(rpt.String()))
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("ignition: node %s: %w", n.Name, err)
	}
	if err := c.linter.Config(cfg, r.in.Placement.Channels[n.Role].Carried(raw)); err != nil {
		return nil, fmt.Errorf("ignition: node %s: %w", n.Name, err)
	}
	return raw, nil
}

// checkAddress checks n's address against what the placement and the control-plane addresses say.
func (r *Renderer) checkAddress(n Node) error {
	a := n.Address
	if a.IsValid() && (a.Zone() != "" || a.IsUnspecified()) {
		return fmt.Errorf("ignition: node %s: %q is not an address", n.Name, a)
	}
	if r.in.Placement.NodeAddresses && !a.IsValid() {
		return fmt.Errorf("ignition: node %s: no address: the provider gives every node its address before rendering", n.Name)
	}
	if n.Role != v1alpha1.RoleControlPlane || len(r.in.ControlPlaneAddresses) == 0 {
		return nil
	}
	if !a.IsValid() {
		return fmt.Errorf("ignition: node %s: a control-plane node needs its address where etcd's members are addresses", n.Name)
	}
	if want, ok := r.in.ControlPlaneAddresses[n.Name]; ok && want != a {
		return fmt.Errorf("ignition: node %s: address %s, but the control-plane addresses give it %s", n.Name, a, want)
	}
	return nil
}

// nodeValues are the values of the per-node placeholders of n's config.
func (r *Renderer) nodeValues(n Node) (*strings.Replacer, error) {
	addr := ""
	if n.Address.IsValid() {
		addr = n.Address.String()
	}
	pairs := []string{butane.NodeNamePlaceholder, n.Name, butane.NodeAddressPlaceholder, addr}
	pool := n.Pool
	if n.Role == v1alpha1.RoleControlPlane {
		pool = rebootlock.ControlPlanePool
	}
	r.randMu.Lock()
	agent, err := r.in.Secrets.RebootAgent(r.in.Rand, r.in.Now(), n.Name, rebootlock.Group(pool))
	r.randMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("ignition: node %s: %w", n.Name, err)
	}
	pairs = append(pairs, rebootAgentCertPlaceholder, string(agent.CertPEM), rebootAgentKeyPlaceholder, string(agent.KeyPEM))
	if n.Role == v1alpha1.RoleControlPlane && r.memberCerts() {
		r.randMu.Lock()
		server, peer, err := r.in.Secrets.EtcdMember(r.in.Rand, r.in.Now(), n.Name, n.Address)
		r.randMu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("ignition: node %s: %w", n.Name, err)
		}
		pairs = append(pairs,
			etcdServerCertPlaceholder, string(server.CertPEM), etcdServerKeyPlaceholder, string(server.KeyPEM),
			etcdPeerCertPlaceholder, string(peer.CertPEM), etcdPeerKeyPlaceholder, string(peer.KeyPEM))
	}
	return strings.NewReplacer(pairs...), nil
}

// memberCerts says whether each control-plane node gets etcd certificates of its own, naming its
// address: where etcd's members are addresses.
func (r *Renderer) memberCerts() bool { return len(r.in.ControlPlaneAddresses) > 0 }

func (r *Renderer) pool(name string) *v1alpha1.NodePool {
	for i := range r.in.Cluster.Spec.NodePools {
		if r.in.Cluster.Spec.NodePools[i].Name == name {
			return &r.in.Cluster.Spec.NodePools[i]
		}
	}
	return nil
}

func (r *Renderer) poolNames() []string {
	var names []string
	for _, p := range r.in.Cluster.Spec.NodePools {
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		return []string{"none"}
	}
	return names
}

// compile translates a role's Butane for a pool, once.
func (r *Renderer) compile(role, pool string) *compiled {
	key := role + "/" + pool
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.compiled[key]; ok {
		return c
	}
	c := &compiled{}
	c.err = r.translate(c, role, pool)
	r.compiled[key] = c
	return c
}

func (r *Renderer) translate(c *compiled, role, pool string) error {
	data, err := r.templateData(role, pool)
	if err != nil {
		return err
	}
	bu, err := Butane(role, data)
	if err != nil {
		return err
	}
	raw, rpt, err := fcos.ToIgn3_5Bytes(bu, butanecommon.TranslateBytesOptions{})
	if err != nil {
		return fmt.Errorf("ignition: butane template %s: %w: %s", role, err, strings.TrimSpace(rpt.String()))
	}
	if len(rpt.Entries) > 0 { // strict: a warning is an error
		return fmt.Errorf("ignition: butane template %s (strict): %s", role, strings.TrimSpace(rpt.String()))
	}
	cfg, prpt, err := v3_5.Parse(raw)
	if err != nil {
		return fmt.Errorf("ignition: butane template %s: translated config is invalid: %w: %s", role, err, strings.TrimSpace(prpt.String()))
	}
	c.cfg = cfg
	c.linter = lint.NewLinter(lint.Policy{Role: role, Channel: r.in.Placement.Channels[role], Forbidden: ForbiddenSecrets(role, r.in.Secrets)}, cfg)
	for i, f := range cfg.Storage.Files {
		src := f.Contents.Source
		if src == nil || !strings.HasPrefix(*src, "data:") {
			continue
		}
		b, err := lint.DecodeSource(*src, f.Contents.Compression)
		if err != nil {
			return fmt.Errorf("ignition: butane template %s: %s: %w", role, f.Path, err)
		}
		if holdsPlaceholder(string(b)) {
			c.files = append(c.files, fileSlot{index: i, template: b})
		}
	}
	for i, u := range cfg.Systemd.Units {
		if u.Contents != nil && holdsPlaceholder(*u.Contents) {
			c.units = append(c.units, i)
		}
		for _, d := range u.Dropins {
			if d.Contents != nil && holdsPlaceholder(*d.Contents) {
				return fmt.Errorf("ignition: butane template %s: drop-in %s of %s holds a per-node placeholder, which only files and units may", role, d.Name, u.Name)
			}
		}
	}
	return nil
}

// fill returns a copy of the compiled config with the node's values in place of the placeholders.
// It copies only what differs per node.
func (c *compiled) fill(values *strings.Replacer) types.Config {
	cfg := c.cfg
	if len(c.files) > 0 {
		cfg.Storage.Files = append([]types.File(nil), c.cfg.Storage.Files...)
		for _, s := range c.files {
			f := cfg.Storage.Files[s.index]
			src := "data:," + dataurl.Escape([]byte(values.Replace(string(s.template))))
			f.Contents.Source = &src
			f.Contents.Compression = nil
			cfg.Storage.Files[s.index] = f
		}
	}
	if len(c.units) > 0 {
		cfg.Systemd.Units = append([]types.Unit(nil), c.cfg.Systemd.Units...)
		for _, i := range c.units {
			u := cfg.Systemd.Units[i]
			s := values.Replace(*u.Contents)
			u.Contents = &s
			cfg.Systemd.Units[i] = u
		}
	}
	return cfg
}

// Butane fills a role's template with data and returns the Butane YAML.
func Butane(role string, data any) ([]byte, error) {
	src, err := butane.Source(role)
	if err != nil {
		return nil, fmt.Errorf("ignition: %w", err)
	}
	shared, err := butane.Shared()
	if err != nil {
		return nil, fmt.Errorf("ignition: %w", err)
	}
	t := template.New(role).Option("missingkey=error").Funcs(template.FuncMap{"quote": quote})
	names := make([]string, 0, len(shared))
	for n := range shared {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := t.New(n).Parse(string(shared[n])); err != nil {
			return nil, fmt.Errorf("ignition: butane template %s: %w", n, err)
		}
	}
	if _, err := t.Parse(string(src)); err != nil {
		return nil, fmt.Errorf("ignition: butane template %s: %w", role, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("ignition: butane template %s: %w", role, err)
	}
	return b.Bytes(), nil
}

// quote writes a string as a JSON string, which YAML reads as a double-quoted scalar.
func quote(v any) (string, error) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case []byte:
		s = string(x)
	default:
		return "", fmt.Errorf("quote: want a string, got %T", v)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
