package ignitiondata

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"

	"github.com/kiln-dev/kiln/images/packer/packertest"
	"github.com/kiln-dev/kiln/internal/cli"
)

// cluster runs `kiln init` in a temporary directory and returns the spec path and the state directory.
func cluster(t *testing.T) (spec, stateDir string) {
	t.Helper()
	dir := t.TempDir()
	spec, stateDir = filepath.Join(dir, "cluster.yaml"), filepath.Join(dir, "state")
	var out, errOut bytes.Buffer
	if code := cli.Main([]string{"init", "demo", "-f", spec, "--state-dir", stateDir}, &out, &errOut); code != 0 {
		t.Fatalf("kiln init: %s%s", out.String(), errOut.String())
	}
	return spec, stateDir
}

func TestConfigureReportsEveryErrorAtOnce(t *testing.T) {
	var d Datasource
	err := d.Configure(map[string]interface{}{
		"cluster_spec": "/nonexistent/cluster.yaml",
		"role":         "etcd",
		"pool":         "workers",
		"target":       "gce",
	})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Configure() = %v, want ErrConfig", err)
	}
	want := []string{
		"cluster_spec: stat /nonexistent/cluster.yaml: no such file or directory",
		`role: "etcd" is not control-plane or worker`,
		"node: required",
		`target: "gce" is not aws, vsphere, metal or qemu`,
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("Configure() reported %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("problem %d = %q, want it to end in %q", i, lines[i], w)
		}
	}
	var empty Datasource
	if err := empty.Configure(map[string]interface{}{}); err == nil || !strings.Contains(err.Error(), "cluster_spec: required") || !strings.Contains(err.Error(), "role: required") {
		t.Errorf("Configure({}) = %v, want cluster_spec and role required", err)
	}
}

// ignitionOf checks a rendered config with Ignition's own parser and returns the contents of a file.
func ignitionOf(t *testing.T, cfg []byte, path string) string {
	t.Helper()
	parsed, rpt, err := v3_5.Parse(cfg)
	if err != nil || rpt.IsFatal() {
		t.Fatalf("Ignition rejects the config: %v %s", err, rpt)
	}
	for _, f := range parsed.Storage.Files {
		if f.Path == path && f.Contents.Source != nil {
			return *f.Contents.Source
		}
	}
	t.Fatalf("no %s in the config", path)
	return ""
}

func TestExecute(t *testing.T) {
	spec, stateDir := cluster(t)
	var d Datasource
	if err := d.Configure(map[string]interface{}{"cluster_spec": spec, "state_dir": stateDir, "role": "worker", "node": "demo-workers-7"}); err != nil {
		t.Fatal(err)
	}
	v, err := d.Execute()
	if err != nil {
		t.Fatal(err)
	}
	cfg := v.GetAttr("config").AsString()
	b64, err := base64.StdEncoding.DecodeString(v.GetAttr("config_base64").AsString())
	if err != nil || string(b64) != cfg {
		t.Fatalf("config_base64 is not the config: %v", err)
	}
	if got := ignitionOf(t, []byte(cfg), "/etc/hostname"); !strings.Contains(got, "demo-workers-7") {
		t.Errorf("/etc/hostname source = %q, want the node name", got)
	}

	// A second render within the token's half-life reuses the token; a later one mints and records one.
	again, err := Render(d.config, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	token := func(cfg []byte) string {
		return ignitionOf(t, cfg, "/etc/kubernetes/bootstrap-kubelet.conf")
	}
	if token(again) != token([]byte(cfg)) {
		t.Error("a render within the token's half-life minted a new token")
	}
	later, err := Render(d.config, time.Now().Add(45*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if token(later) == token([]byte(cfg)) {
		t.Error("a render past the token's half-life reused the old token")
	}
}

func TestRenderErrors(t *testing.T) {
	spec, stateDir := cluster(t)
	tests := []struct {
		name string
		c    Config
		want string
	}{
		{name: "no state", c: Config{ClusterSpec: spec, StateDir: t.TempDir(), Role: "worker", Node: "demo-workers-0"}, want: "kiln-ignition: state_dir:"},
		{name: "bad node name", c: Config{ClusterSpec: spec, StateDir: stateDir, Role: "worker", Node: "Not_A_Label"}, want: "Not_A_Label"},
		{name: "unknown pool", c: Config{ClusterSpec: spec, StateDir: stateDir, Role: "worker", Pool: "gpu", Node: "demo-gpu-0"}, want: "gpu"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(tc.c, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestDataSourceInPacker runs the data source inside a real `packer build` (the null builder and a
// shell-local provisioner that writes the data source's output to a file).
func TestDataSourceInPacker(t *testing.T) {
	spec, stateDir := cluster(t)
	p := packertest.New(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "node.ign.b64")
	tpl := `packer {
  required_plugins {
    kiln = {
      source  = "github.com/kiln-dev/kiln"
      version = ">= 0.1.0"
    }
  }
}

data "kiln-ignition" "node" {
  cluster_spec = "` + spec + `"
  state_dir    = "` + stateDir + `"
  role         = "control-plane"
  node         = "demo-control-plane-0"
}

source "null" "render" {
  communicator = "none"
}

build {
  sources = ["source.null.render"]
  provisioner "shell-local" {
    environment_vars = ["IGNITION_B64=${data.kiln-ignition.node.config_base64}"]
    inline           = ["printf %s \"$IGNITION_B64\" > ` + out + `"]
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "render.pkr.hcl"), []byte(tpl), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := p.Command("build", "-color=false", "render.pkr.hcl")
	cmd.Dir = dir
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packer build: %v\n%s", err, o)
	}
	b64, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil {
		t.Fatal(err)
	}
	if got := ignitionOf(t, cfg, "/etc/hostname"); !strings.Contains(got, "demo-control-plane-0") {
		t.Errorf("/etc/hostname source = %q, want the node name", got)
	}
}
