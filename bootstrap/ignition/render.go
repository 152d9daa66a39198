// Package ignition renders the Ignition config of every node of a cluster from the cluster spec and
// its secrets: kiln's Butane templates (package butane) are filled with the cluster's values,
// translated by the Butane library in strict mode once per role and pool, and then filled per node.
// Every config is validated with Ignition's own validator and linted (package lint) before it is
// returned.
package ignition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"text/template"

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
	// zero value: every node loads its firewall, and no channel limits a config's size.
	Placement Placement
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
}

// Node is one machine to render a config for.
type Node struct {
	Name string
	Role string
	// Pool is the node pool of a worker; empty for the control plane.
	Pool string
}

// Renderer renders configs for the nodes of one cluster. It translates each role's (and pool's)
// Butane once and is safe for concurrent use.
type Renderer struct {
	in Input

	mu       sync.Mutex
	compiled map[string]*compiled
}

// compiled is a translated config with the places that differ per node.
type compiled struct {
	cfg    types.Config
	files  []fileSlot
	units  []int
	linter *lint.Linter
	err    error
}

// fileSlot is a file whose contents hold the node-name placeholder.
type fileSlot struct {
	index    int
	template []byte
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
	return &Renderer{in: in, compiled: map[string]*compiled{}}, nil
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
	c := r.compile(n.Role, n.Pool)
	if c.err != nil {
		return nil, c.err
	}
	cfg := c.fill(n.Name)
	// Ignition's own validator, on the very struct that is serialised below. (v3_5.Parse would also
	// re-read the JSON to look for unknown keys, which json.Marshal of this struct cannot produce.)
	if rpt := validate.ValidateWithContext(cfg, nil); rpt.IsFatal() {
		return nil, fmt.Errorf("ignition: node %s: Ignition's validator rejects the config: %s", n.Name, strings.TrimSpace(rpt.String()))
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("ignition: node %s: %w", n.Name, err)
	}
	if err := c.linter.Config(cfg, len(raw)); err != nil {
		return nil, fmt.Errorf("ignition: node %s: %w", n.Name, err)
	}
	return raw, nil
}

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
	ph := []byte(butane.NodeNamePlaceholder)
	for i, f := range cfg.Storage.Files {
		src := f.Contents.Source
		if src == nil || !strings.HasPrefix(*src, "data:") {
			continue
		}
		b, err := lint.DecodeSource(*src, f.Contents.Compression)
		if err != nil {
			return fmt.Errorf("ignition: butane template %s: %s: %w", role, f.Path, err)
		}
		if bytes.Contains(b, ph) {
			c.files = append(c.files, fileSlot{index: i, template: b})
		}
	}
	for i, u := range cfg.Systemd.Units {
		if u.Contents != nil && strings.Contains(*u.Contents, butane.NodeNamePlaceholder) {
			c.units = append(c.units, i)
		}
	}
	return nil
}

// fill returns a copy of the compiled config with the node's name in place of the placeholder. It
// copies only what differs per node.
func (c *compiled) fill(node string) types.Config {
	cfg := c.cfg
	if len(c.files) > 0 {
		cfg.Storage.Files = append([]types.File(nil), c.cfg.Storage.Files...)
		for _, s := range c.files {
			f := cfg.Storage.Files[s.index]
			src := "data:," + dataurl.Escape(bytes.ReplaceAll(s.template, []byte(butane.NodeNamePlaceholder), []byte(node)))
			f.Contents.Source = &src
			f.Contents.Compression = nil
			cfg.Storage.Files[s.index] = f
		}
	}
	if len(c.units) > 0 {
		cfg.Systemd.Units = append([]types.Unit(nil), c.cfg.Systemd.Units...)
		for _, i := range c.units {
			u := cfg.Systemd.Units[i]
			s := strings.ReplaceAll(*u.Contents, butane.NodeNamePlaceholder, node)
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
