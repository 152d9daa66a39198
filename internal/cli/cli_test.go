package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5"
)

// kiln runs the command line in dir with its own state directory and returns the exit code and output.
func kiln(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Chdir(dir)
	t.Setenv("KILN_STATE_DIR", filepath.Join(dir, "state"))
	t.Setenv("KILN_STATE_KEY", "")
	os.Unsetenv("KILN_STATE_KEY")
	var out, errOut bytes.Buffer
	code = Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustKiln(t *testing.T, dir string, args ...string) string {
	t.Helper()
	code, out, errOut := kiln(t, dir, args...)
	if code != 0 {
		t.Fatalf("kiln %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func TestInitRenderLint(t *testing.T) {
	dir := t.TempDir()
	out := mustKiln(t, dir, "init", "demo")
	if !strings.Contains(out, "cluster demo initialised") {
		t.Fatalf("init said:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "state", "state.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
	mustKiln(t, dir, "validate")
	mustKiln(t, dir, "render", "ignition", "--role", "worker", "--node", "demo-workers-0", "--output-file", "w0.ign")
	mustKiln(t, dir, "render", "ignition", "--role", "control-plane", "--node", "demo-control-plane-0", "--output-file", "cp0.ign")
	for _, f := range []string{"w0.ign", "cp0.ign"} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := v3_5.Parse(bytes.TrimSpace(raw)); err != nil {
			t.Errorf("%s does not parse: %v", f, err)
		}
		if fi, _ := os.Stat(filepath.Join(dir, f)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v: it holds a bootstrap token", f, fi.Mode().Perm())
		}
	}
	mustKiln(t, dir, "lint", "ignition", "w0.ign", "--role", "worker", "-f", "cluster.yaml")
	mustKiln(t, dir, "lint", "ignition", "cp0.ign", "--role", "control-plane", "-f", "cluster.yaml")

	// The control-plane config, linted as a worker's, fails: it holds keys a worker must not hold.
	code, out, _ := kiln(t, dir, "lint", "ignition", "cp0.ign", "--role", "worker", "-f", "cluster.yaml", "-o", "json")
	if code == 0 {
		t.Fatal("a control-plane config passed lint as a worker's")
	}
	var res lintResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.OK || len(res.Findings) == 0 {
		t.Fatalf("lint -o json: %v %+v\n%s", err, res, out)
	}
	if !strings.Contains(out, "cluster CA key") {
		t.Errorf("lint did not name the cluster CA key:\n%s", out)
	}

	mustKiln(t, dir, "ssh-key", "--output-file", "id_demo")
	if key, err := os.ReadFile(filepath.Join(dir, "id_demo")); err != nil || !bytes.Contains(key, []byte("OPENSSH PRIVATE KEY")) {
		t.Fatalf("ssh-key: %v", err)
	}
}

func TestInitNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	spec, _ := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	code, _, errOut := kiln(t, dir, "init", "demo")
	if code == 0 || !strings.Contains(errOut, "cluster.yaml already exists") {
		t.Fatalf("second init: exit %d: %s", code, errOut)
	}
	code, _, errOut = kiln(t, dir, "init", "demo", "-f", "other.yaml")
	if code == 0 || !strings.Contains(errOut, `cluster "demo" already has secrets`) {
		t.Fatalf("init of an existing cluster: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.yaml")); !os.IsNotExist(err) {
		t.Errorf("a failed init left other.yaml behind")
	}
	if now, _ := os.ReadFile(filepath.Join(dir, "cluster.yaml")); !bytes.Equal(now, spec) {
		t.Errorf("cluster.yaml changed")
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		args  []string
		want  string
	}{
		{
			name: "spec with a typo and a bad CIDR",
			setup: func(t *testing.T, dir string) {
				write(t, dir, "bad.yaml", "apiVersion: kiln.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: x\nspec:\n  provider:\n    name: qemu\n  network:\n    nodeCIDR: 10.0.0.0/33\n  contrlPlane:\n    count: 1\n  ssh:\n    generate: true\n")
			},
			args: []string{"validate", "-f", "bad.yaml"},
			want: "bad.yaml:9:15: spec.network.nodeCIDR",
		},
		{
			name: "render before init",
			setup: func(t *testing.T, dir string) {
				mustKiln(t, dir, "init", "demo")
				os.RemoveAll(filepath.Join(dir, "state"))
			},
			args: []string{"render", "ignition", "--role", "worker", "--node", "demo-workers-0"},
			want: "run 'kiln init demo' first",
		},
		{
			name: "unknown role",
			setup: func(t *testing.T, dir string) {
				mustKiln(t, dir, "init", "demo")
			},
			args: []string{"render", "ignition", "--role", "master", "--node", "demo-0"},
			want: `unknown role "master"`,
		},
		{
			name: "tampered state file",
			setup: func(t *testing.T, dir string) {
				mustKiln(t, dir, "init", "demo")
				tamper(t, filepath.Join(dir, "state", "state.db"))
			},
			args: []string{"render", "ignition", "--role", "worker", "--node", "demo-workers-0"},
			want: "authentication failed",
		},
		{
			name: "lint of a file that is not Ignition",
			setup: func(t *testing.T, dir string) {
				write(t, dir, "x.ign", "variant: fcos\n")
			},
			args: []string{"lint", "ignition", "x.ign"},
			want: "x.ign: ignition:",
		},
		{
			name: "unknown output format",
			args: []string{"version", "-o", "xml"},
			want: "unknown output format",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			code, out, errOut := kiln(t, dir, tc.args...)
			if code == 0 {
				t.Fatalf("exit 0, want a failure\n%s", out)
			}
			if all := out + errOut; !strings.Contains(all, tc.want) {
				t.Fatalf("output lacks %q:\n%s", tc.want, all)
			}
			if strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, "panic") {
				t.Fatalf("a stack trace:\n%s", errOut)
			}
		})
	}
}

func TestVersionJSON(t *testing.T) {
	out := mustKiln(t, t.TempDir(), "version", "-o", "json")
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version == "" || v.GoVersion == "" {
		t.Fatalf("version -o json: %v\n%s", err, out)
	}
}

func write(t *testing.T, dir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tamper flips one byte inside the stored secrets bundle (the longest run of high-entropy bytes is
// the sealed value; flipping its middle changes ciphertext, not bbolt's structure).
func tamper(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The bundle's key, "demo", is followed by its sealed value (several KiB) in the leaf page.
	i := bytes.Index(b, []byte("demo"))
	if i < 0 || i+2000 >= len(b) {
		t.Fatalf("no stored bundle in %s", path)
	}
	b[i+1000] ^= 0x55
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAuditNetwork(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	out := mustKiln(t, dir, "audit", "network", "-o", "json")
	var rules []ruleView
	if err := json.Unmarshal([]byte(out), &rules); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var ssh, api int
	for _, r := range rules {
		if r.Proto == "tcp" && r.Ports == "22" {
			ssh++
			if strings.Join(r.From, ",") != qemuHostCIDR {
				t.Errorf("ssh open to %v, want only the starter's admin range", r.From)
			}
		}
		if r.Ports == "6443" {
			api++
			if r.Role != "control-plane" {
				t.Errorf("the API is open on a %s", r.Role)
			}
		}
	}
	if ssh != 2 || api != 1 {
		t.Errorf("ssh rules %d (want one per role), api rules %d (want 1):\n%s", ssh, api, out)
	}
	if text := mustKiln(t, dir, "audit", "network"); !strings.Contains(text, "everything else inbound is dropped") {
		t.Errorf("table:\n%s", text)
	}
}
