package templates_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/images/packer/packertest"
	"github.com/kiln-dev/kiln/images/templates"
)

// files makes empty files for the templates' path variables.
func files(t *testing.T, names ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	m := map[string]string{}
	for _, n := range names {
		p := filepath.Join(dir, n)
		data := []byte("{}\n")
		if strings.HasSuffix(n, "_key") {
			data = privateKey(t)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		m[n] = p
	}
	return m
}

// privateKey returns a new ed25519 private key in OpenSSH format.
func privateKey(t *testing.T) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

// validate runs the real `packer validate` on a target's template with vars and returns its exit
// error and output.
func validate(t *testing.T, p *packertest.Packer, target string, vars []string, extra ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	tpl, err := templates.Write(dir, target)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"validate"}, extra...)
	for _, v := range vars {
		args = append(args, "-var", v)
	}
	cmd := p.Command(append(args, tpl)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestTemplatesValidate runs packer validate with the real builder plugins and kiln's plugin: each
// template's syntax, its required_plugins, every builder and provisioner setting against the plugins'
// own schemas and Prepare.
func TestTemplatesValidate(t *testing.T) {
	p := packertest.New(t, "packer-plugin-qemu", "packer-plugin-amazon", "packer-plugin-vsphere")
	f := files(t, "disk.qcow2", "vmlinuz", "initrd.img", "build.ign", "build_key")
	tests := []struct {
		target string
		vars   []string
	}{
		{target: "qemu", vars: []string{"base_image=" + f["disk.qcow2"], "ssh_private_key_file=" + f["build_key"]}},
		{target: "qemu", vars: []string{"base_image=" + f["disk.qcow2"], "ssh_private_key_file=" + f["build_key"],
			"kernel=" + f["vmlinuz"], "initrd=" + f["initrd.img"], "build_ignition=" + f["build.ign"],
			"format=raw", "accelerator=tcg", `allow_groups=["kiln-ssh"]`, "remove_build_user=false"}},
		{target: "aws", vars: []string{"source_ami=ami-0123456789abcdef0", "subnet_id=subnet-0123456789abcdef0",
			"build_ignition=" + f["build.ign"], "ssh_private_key_file=" + f["build_key"]}},
		{target: "vsphere", vars: []string{"vcenter_server=vcenter.example.internal", "username=packer", "password=secret", "cluster=kiln",
			"template=kiln-base", "network=kiln-private", "build_ignition=" + f["build.ign"], "ssh_private_key_file=" + f["build_key"]}},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			out, err := validate(t, p, tc.target, tc.vars)
			if err != nil {
				t.Fatalf("packer validate %s: %v\n%s", tc.target, err, out)
			}
			if !strings.Contains(out, "The configuration is valid.") {
				t.Errorf("packer validate %s printed %q", tc.target, out)
			}
		})
	}
}

// TestTemplatesValidateErrors proves that validate really runs the plugins: a wrong format is caught
// by the template's own validation, bad kiln-harden settings by the provisioner's Prepare (every
// problem at once), and a missing required variable by packer.
func TestTemplatesValidateErrors(t *testing.T) {
	p := packertest.New(t, "packer-plugin-qemu")
	f := files(t, "disk.qcow2", "build_key")
	base := []string{"base_image=" + f["disk.qcow2"], "ssh_private_key_file=" + f["build_key"]}
	tests := []struct {
		name string
		vars []string
		want []string
	}{
		{name: "format", vars: append(base, "format=vmdk"), want: []string{"The format must be qcow2 or raw."}},
		{
			name: "kiln-harden settings",
			vars: append(base, `allow_groups=["Bad Group"]`, "automatic_reboot_time=2am"),
			want: []string{`allow_groups[0]: "Bad Group" is not a valid group name`, `automatic_reboot_time: "2am" is not HH:MM`},
		},
		{name: "missing variable", vars: []string{"base_image=" + f["disk.qcow2"]}, want: []string{`ssh_private_key_file`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := validate(t, p, "qemu", tc.vars)
			if err == nil {
				t.Fatalf("packer validate passed, want it to fail:\n%s", out)
			}
			flat := strings.Join(strings.Fields(out), " ") // packer wraps long lines
			for _, w := range tc.want {
				if !strings.Contains(flat, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestSourceUnknownTarget(t *testing.T) {
	if _, err := templates.Source("gce"); err == nil || !strings.Contains(err.Error(), `unknown target "gce"`) {
		t.Errorf("Source(gce) = %v, want an unknown target error", err)
	}
}
