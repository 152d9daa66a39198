// Package e2e runs kiln as a user does: the built binary, through the README's quickstart script
// (a Kubernetes cluster on local QEMU VMs that heals a killed node), then checks through the
// Kubernetes API and over SSH what the cluster promises, and runs the real Ignition binary on what
// kiln rendered.
package e2e

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/ignitiontest"
	"github.com/kiln-dev/kiln/internal/testtool"
	"golang.org/x/crypto/ssh"
)

func TestQuickstart(t *testing.T) {
	root, err := testtool.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "kiln")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kiln")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	testtool.RequireRoot(t) // the base image is built with debootstrap and mounts
	testtool.ExclusiveVMs(t)
	testtool.Tool(t, "qemu")
	testtool.File(t, "baked-image") // the hardened image the quickstart boots
	testtool.Tool(t, "kubernetes")  // kubectl, which the quickstart uses
	demo := filepath.Join(t.TempDir(), "demo")
	kiln := func(args ...string) ([]byte, error) {
		c := exec.Command(bin, args...)
		c.Env = append(env(), "KILN_STATE_DIR="+filepath.Join(demo, "state"))
		return c.CombinedOutput()
	}
	t.Cleanup(func() {
		// --wait-lease: an apply --watch that the script interrupted on its way out may still hold the lease.
		if out, err := kiln("delete", "-f", filepath.Join(demo, "cluster.yaml"), "--yes", "--wait-lease", "1m"); err != nil {
			t.Errorf("kiln delete: %v\n%s", err, out)
		}
	})
	qs := exec.Command(filepath.Join(root, "hack", "quickstart.sh"))
	qs.Env = append(env(), "KILN="+bin, "KILN_DEMO_DIR="+demo)
	out, err := qs.CombinedOutput()
	if err != nil {
		t.Fatalf("quickstart: %v\n%s", err, out)
	}
	for _, want := range []string{"cluster demo initialised", "cluster.yaml: valid", "demo-workers-0.ign: ok",
		"demo has converged: 3 machines", "all 3 Nodes Ready", "pod/echo-demo-workers-0 condition met",
		"pod/echo-demo-workers-1 condition met", "killed demo-workers-0", `"msg":"create","machine":"demo-workers-2"`,
		`"msg":"delete","machine":"demo-workers-0"`, "the replacement's Node is Ready", "logged in to demo-workers-2 as kiln"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("quickstart output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("quickstart:\n%s", out)

	// What the cluster promises, through the Kubernetes API and SSH.
	checkCluster(t, newDemoCluster(t, kiln, demo))

	// The worker's config boots: the real Ignition applies it, and the admin user may log in with
	// the cluster's key only.
	cfg, err := os.ReadFile(filepath.Join(demo, "ignition", "demo-workers-0.ign"))
	if err != nil {
		t.Fatal(err)
	}
	node := ignitiontest.Apply(t, cfg)
	key := filepath.Join(t.TempDir(), "id")
	export := exec.Command(bin, "ssh-key", "-f", filepath.Join(demo, "cluster.yaml"), "--output-file", key)
	export.Env = append(env(), "KILN_STATE_DIR="+filepath.Join(demo, "state"))
	if out, err := export.CombinedOutput(); err != nil {
		t.Fatalf("ssh-key: %v\n%s", err, out)
	}
	pub, err := exec.Command("ssh-keygen", "-y", "-f", key).Output()
	if err != nil {
		t.Fatalf("ssh-keygen: %v (hack/tools.sh deps installs openssh-client)", err)
	}
	_, _, _, authorized := ignitiontest.FileInfo(t, node, "/home/kiln/.ssh/authorized_keys")
	fields := strings.Fields(string(pub))
	if len(fields) < 2 || !strings.Contains(string(authorized), fields[1]) {
		t.Fatalf("the node does not authorize the cluster's key:\n%s\nwant %s", authorized, pub)
	}
	_, _, _, sshd := ignitiontest.FileInfo(t, node, "/etc/ssh/sshd_config.d/10-kiln.conf")
	if !strings.Contains(string(sshd), "PasswordAuthentication no") {
		t.Fatalf("sshd drop-in:\n%s", sshd)
	}
}

// env is the test's environment without kiln's own settings, so the quickstart uses only its own.
func env() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KILN_STATE_") {
			out = append(out, kv)
		}
	}
	return out
}

// keyAlgorithms are the host key algorithms of the keys of the known_hosts file, so that a host that
// offers several is asked for one the file holds.
func keyAlgorithms(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for len(data) > 0 {
		_, _, key, _, rest, err := ssh.ParseKnownHosts(data)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		data = rest
		if key.Type() == ssh.KeyAlgoRSA {
			out = append(out, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
			continue
		}
		out = append(out, key.Type())
	}
	return out
}
