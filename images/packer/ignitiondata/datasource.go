//go:generate go tool packer-sdc mapstructure-to-hcl2 -type Config,DatasourceOutput
//go:generate go tool packer-sdc struct-markdown

package ignitiondata

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/packer-plugin-sdk/common"
	"github.com/hashicorp/packer-plugin-sdk/hcl2helper"
	"github.com/hashicorp/packer-plugin-sdk/template/config"
	"github.com/zclconf/go-cty/cty"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/lint"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/state"
)

// ErrConfig is a data source configuration that Configure rejects.
var ErrConfig = errors.New("invalid kiln-ignition configuration")

// Config is the kiln-ignition data source's configuration.
type Config struct {
	common.PackerConfig `mapstructure:",squash"`

	// Path of the cluster spec (kiln.dev/v1alpha1 YAML), as written by `kiln init`.
	ClusterSpec string `mapstructure:"cluster_spec" required:"true"`
	// kiln's state directory, which holds the cluster's secrets. Defaults to `$KILN_STATE_DIR`, else
	// `$XDG_STATE_HOME/kiln`, else `~/.local/state/kiln`.
	StateDir string `mapstructure:"state_dir"`
	// The node's role: `control-plane` or `worker`.
	Role string `mapstructure:"role" required:"true"`
	// The node's name, a DNS label such as `demo-workers-0`.
	Node string `mapstructure:"node" required:"true"`
	// The node pool of a worker. Defaults to the spec's only pool.
	Pool string `mapstructure:"pool"`
	// The delivery channel whose size limit the config must fit: `aws` (user-data, 16 KiB), `vsphere`
	// (guestinfo, 64 KiB), `metal` or `qemu` (no limit). Defaults to the spec's provider.
	Target string `mapstructure:"target"`
	// Leave the node's own firewall out, because something outside the node (cloud security groups)
	// enforces the cluster's firewall intent. Defaults to `false`: the node loads its role's nftables
	// ruleset.
	ExternalFirewall bool `mapstructure:"external_firewall"`
}

// DatasourceOutput is what the data source returns.
type DatasourceOutput struct {
	// The Ignition config (JSON, spec 3.5.0). It holds a bootstrap token: keep it out of logs. The
	// token is one shared by the configs rendered outside `kiln apply`, and the data source does not
	// apply it to the cluster: it reaches the cluster only in a control-plane node's first-boot
	// manifests. Machines that `kiln apply` creates get tokens of their own, applied before they are
	// created.
	Config string `mapstructure:"config"`
	// The same config in standard base64, for vSphere's guestinfo.ignition.config.data with
	// guestinfo.ignition.config.data.encoding = "base64".
	ConfigBase64 string `mapstructure:"config_base64"`
}

// Datasource is the kiln-ignition data source.
type Datasource struct {
	config Config
	// now is the clock; time.Now when nil.
	now func() time.Time
}

// ConfigSpec returns the HCL2 layout of the configuration.
func (d *Datasource) ConfigSpec() hcldec.ObjectSpec { return d.config.FlatMapstructure().HCL2Spec() }

// OutputSpec returns the HCL2 layout of the output.
func (d *Datasource) OutputSpec() hcldec.ObjectSpec {
	return (&DatasourceOutput{}).FlatMapstructure().HCL2Spec()
}

// Configure decodes and checks the configuration, returning every problem at once.
func (d *Datasource) Configure(raws ...interface{}) error {
	if err := config.Decode(&d.config, nil, raws...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c := &d.config
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...)))
	}
	if c.ClusterSpec == "" {
		add("cluster_spec: required")
	} else if _, err := os.Stat(c.ClusterSpec); err != nil {
		add("cluster_spec: %v", err)
	}
	if c.StateDir == "" {
		c.StateDir = state.DefaultDir()
	}
	if c.StateDir == "" {
		add("state_dir: not set and no default (set KILN_STATE_DIR or HOME)")
	}
	switch c.Role {
	case "":
		add("role: required (%s or %s)", v1alpha1.RoleControlPlane, v1alpha1.RoleWorker)
	case v1alpha1.RoleControlPlane, v1alpha1.RoleWorker:
	default:
		add("role: %q is not %s or %s", c.Role, v1alpha1.RoleControlPlane, v1alpha1.RoleWorker)
	}
	if c.Node == "" {
		add("node: required")
	}
	if c.Pool != "" && c.Role == v1alpha1.RoleControlPlane {
		add("pool: %q set for a control-plane node; pools are for workers", c.Pool)
	}
	if c.Target != "" && !slices.Contains([]string{"aws", "vsphere", "metal", "qemu"}, c.Target) {
		add("target: %q is not aws, vsphere, metal or qemu", c.Target)
	}
	return errors.Join(errs...)
}

// Execute renders the node's config.
func (d *Datasource) Execute() (cty.Value, error) {
	cfg, err := Render(d.config, d.clock())
	if err != nil {
		return cty.NullVal(cty.EmptyObject), err
	}
	out := DatasourceOutput{Config: string(cfg), ConfigBase64: base64.StdEncoding.EncodeToString(cfg)}
	return hcl2helper.HCL2ValueFromConfig(out, d.OutputSpec()), nil
}

func (d *Datasource) clock() time.Time {
	if d.now != nil {
		return d.now()
	}
	return time.Now()
}

// Render renders the config c names: the spec, the cluster's secrets from the state store, and a
// bootstrap token with at least half its lifetime left (minted and recorded when there is none).
func Render(c Config, now time.Time) ([]byte, error) {
	data, err := readlimit.ReadFile(c.ClusterSpec, readlimit.Spec)
	if err != nil {
		return nil, fmt.Errorf("kiln-ignition: cluster_spec: %w", err)
	}
	cluster, err := v1alpha1.Decode(data, c.ClusterSpec)
	if err != nil {
		return nil, fmt.Errorf("kiln-ignition: %w", err)
	}
	pool := c.Pool
	if c.Role == v1alpha1.RoleWorker && pool == "" {
		if len(cluster.Spec.NodePools) != 1 {
			return nil, fmt.Errorf("kiln-ignition: pool: required: cluster %s has %d node pools", cluster.Metadata.Name, len(cluster.Spec.NodePools))
		}
		pool = cluster.Spec.NodePools[0].Name
	}
	key, err := state.LoadKey(c.StateDir)
	if err != nil {
		return nil, fmt.Errorf("kiln-ignition: state_dir: %w", err)
	}
	st, err := state.Open(c.StateDir+"/"+state.FileName, key)
	if err != nil {
		return nil, fmt.Errorf("kiln-ignition: state_dir: %w", err)
	}
	defer st.Close()
	b, tok, err := secrets.JoinToken(st, cluster, now, "kiln node join (packer)")
	if err != nil {
		return nil, fmt.Errorf("kiln-ignition: %w", err)
	}
	target := c.Target
	if target == "" {
		target = cluster.Spec.Provider.Name
	}
	pl := ignition.Placement{ExternalFirewall: c.ExternalFirewall}
	if lim, ok := lint.Limits[target]; ok {
		pl.Channels = map[string]lint.Limit{c.Role: lim}
	}
	r, err := ignition.New(ignition.Input{Cluster: cluster, Secrets: b, Token: tok, Placement: pl})
	if err != nil {
		return nil, fmt.Errorf("kiln-ignition: %w", err)
	}
	cfg, err := r.Render(ignition.Node{Name: c.Node, Role: c.Role, Pool: pool})
	if err != nil {
		return nil, fmt.Errorf("kiln-ignition: %w", err)
	}
	return cfg, nil
}
