package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kiln-dev/kiln/sshexec/sshexectest"
)

// sshMachine is an SSH server on loopback that lets in one client key and answers the audit's
// commands with the outputs of a real machine (images/harden's captured fixtures); any other command
// exits 127.
func sshMachine(t *testing.T, client ssh.PublicKey, outputs map[string]string) *sshexectest.Server {
	t.Helper()
	return sshexectest.Start(t, sshexectest.Config{ClientKeys: []ssh.PublicKey{client}, Handler: sshexectest.Commands(outputs)})
}

func hardenFixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "images", "harden", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// clientKey writes a new ed25519 key in OpenSSH format to dir/id and returns its public key.
func clientKey(t *testing.T, dir string) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "id")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return path, sp
}

func TestImageAudit(t *testing.T) {
	dir := t.TempDir()
	key, pub := clientKey(t, dir)
	osRelease := "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n"
	hardened := sshMachine(t, pub, map[string]string{
		"cat /etc/os-release": osRelease,
		"sudo -n sshd -T":     hardenFixture(t, "sshd-T-hardened.txt"),
		"apt-config dump":     hardenFixture(t, "apt-config-dump-hardened.txt"),
	})
	stock := sshMachine(t, pub, map[string]string{
		"cat /etc/os-release": osRelease,
		"sudo -n sshd -T":     hardenFixture(t, "sshd-T-debian12-stock.txt"),
		"apt-config dump":     hardenFixture(t, "apt-config-dump-debian12-stock.txt"),
	})
	noSudo := sshMachine(t, pub, map[string]string{"cat /etc/os-release": osRelease})
	knownHosts := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(hardened.Addr)}, hardened.HostKey) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize(stock.Addr)}, hardened.HostKey) + "\n"
	if err := os.WriteFile(knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	audit := func(m *sshexectest.Server, extra ...string) (int, string, string) {
		host, port, _ := net.SplitHostPort(m.Addr)
		args := append([]string{"image", "audit", host, "-p", port, "-i", key}, extra...)
		return kiln(t, dir, args...)
	}
	t.Run("hardened", func(t *testing.T) {
		code, out, errOut := audit(hardened, "--known-hosts", knownHosts, "--allow-groups", "kiln-ssh,wheel")
		if code != 0 || !strings.Contains(out, "no drift") {
			t.Fatalf("exit %d, want 0 and no drift:\n%s%s", code, out, errOut)
		}
	})
	t.Run("allow groups the profile does not name", func(t *testing.T) {
		code, out, _ := audit(hardened, "--known-hosts", knownHosts)
		if code == 0 || !strings.Contains(out, "sshd allowgroups: restricts logins to groups the profile does not name") {
			t.Fatalf("exit %d, want the allowgroups drift:\n%s", code, out)
		}
	})
	t.Run("stock Debian lists every drift", func(t *testing.T) {
		code, out, errOut := audit(stock, "--insecure-ignore-host-key")
		if code == 0 {
			t.Fatalf("exit 0 on a stock machine:\n%s", out)
		}
		for _, w := range []string{"sshd passwordauthentication:", "sshd permitrootlogin:", "sshd kexalgorithms:", "apt Unattended-Upgrade::Automatic-Reboot-Time:"} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		if n := strings.Count(out, "\n"); !strings.Contains(errOut, fmt.Sprintf("%d drifts", n)) {
			t.Errorf("stderr %q does not count the %d printed drifts", errOut, n)
		}
		if !strings.Contains(errOut, "host key SHA256:") {
			t.Errorf("stderr %q does not show the unchecked host key", errOut)
		}
	})
	t.Run("changed host key", func(t *testing.T) {
		code, _, errOut := audit(stock, "--known-hosts", knownHosts)
		if code == 0 || !strings.Contains(errOut, "key mismatch") {
			t.Fatalf("exit %d, want a host key mismatch: %s", code, errOut)
		}
	})
	t.Run("no known_hosts", func(t *testing.T) {
		code, _, errOut := audit(hardened, "--known-hosts", filepath.Join(dir, "none"))
		if code == 0 || !strings.Contains(errOut, "--known-hosts") || !strings.Contains(errOut, "--insecure-ignore-host-key") {
			t.Fatalf("exit %d, want an error naming --known-hosts and the way out: %s", code, errOut)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		other := t.TempDir()
		otherKey, _ := clientKey(t, other)
		host, port, _ := net.SplitHostPort(hardened.Addr)
		code, _, errOut := kiln(t, dir, "image", "audit", host, "-p", port, "-i", otherKey, "--insecure-ignore-host-key")
		if code == 0 || !strings.Contains(errOut, "unable to authenticate") {
			t.Fatalf("exit %d, want an authentication failure: %s", code, errOut)
		}
	})
	t.Run("no sudo", func(t *testing.T) {
		code, _, errOut := audit(noSudo, "--insecure-ignore-host-key")
		if code == 0 || !strings.Contains(errOut, "sudo -n sshd -T") || !strings.Contains(errOut, "exited with status 127") {
			t.Fatalf("exit %d, want the failed command named: %s", code, errOut)
		}
	})
}

func TestImageBuildErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown target", args: []string{"image", "build", "--target", "gce"}, want: `--target: templates: unknown target "gce"`},
		{name: "bad var", args: []string{"image", "build", "--var", "format"}, want: `--var "format": want NAME=VALUE`},
		{name: "no packer", args: []string{"image", "build", "--packer", filepath.Join(dir, "no-packer")}, want: "packer build qemu.pkr.hcl:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := kiln(t, dir, tc.args...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want it to contain %q", code, errOut, tc.want)
			}
		})
	}
}
