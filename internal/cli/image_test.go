package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kiln-dev/kiln/images/harden"
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
	// The level1 checks in one script, run with sudo; the image's record, when it has one.
	probe := harden.ShellQuote([]string{"sudo", "-n", "sh", "-c", harden.ProbeScript(harden.DefaultProfile().Active(harden.FamilyDebian))})
	// Every read runs with sudo.
	record := "cat " + harden.Provenance + " 2>/dev/null; true"
	hardened := sshMachine(t, pub, map[string]string{
		"cat /etc/os-release":     osRelease,
		record:                    `{"version": 1, "level": "level1", "rules": []}`,
		"sudo -n sshd -T":         hardenFixture(t, "sshd-T-hardened.txt"),
		"sudo -n apt-config dump": hardenFixture(t, "apt-config-dump-hardened.txt"),
		probe:                     hardenFixture(t, "probe-hardened.txt"),
	})
	stock := sshMachine(t, pub, map[string]string{
		"cat /etc/os-release":     osRelease,
		record:                    "",
		"sudo -n sshd -T":         hardenFixture(t, "sshd-T-debian12-stock.txt"),
		"sudo -n apt-config dump": hardenFixture(t, "apt-config-dump-debian12-stock.txt"),
		probe:                     hardenFixture(t, "probe-debian12-base.txt"),
	})
	noSudo := sshMachine(t, pub, map[string]string{"cat /etc/os-release": osRelease, record: ""})
	knownHosts := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(hardened.Addr)}, hardened.HostKey) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize(stock.Addr)}, hardened.HostKey) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize(noSudo.Addr)}, noSudo.HostKey) + "\n"
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
		for _, w := range []string{"sshd passwordauthentication:", "sshd permitrootlogin:", "sshd kexalgorithms:", "apt Unattended-Upgrade::Automatic-Reboot-Time:",
			"cis-3.3.2 net.ipv4.conf.all.send_redirects: is 1, want 0", "cis-3.2.1 dccp:"} {
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
		code, _, errOut := kiln(t, dir, "image", "audit", host, "-p", port, "-i", otherKey, "--known-hosts", knownHosts)
		if code == 0 || !strings.Contains(errOut, "unable to authenticate") {
			t.Fatalf("exit %d, want an authentication failure: %s", code, errOut)
		}
	})
	t.Run("no sudo", func(t *testing.T) {
		code, _, errOut := audit(noSudo, "--known-hosts", knownHosts)
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
		{name: "base image for aws", args: []string{"image", "build", "--target", "aws", "--base-image", dir}, want: "--base-image: only the qemu target boots a kiln base image directory (--target aws)"},
		{name: "base image without disk", args: []string{"image", "build", "--base-image", dir}, want: "--base-image: " + filepath.Join(dir, "disk.qcow2") + " for base_image:"},
		{name: "build key without config", args: []string{"image", "build", "--var", "ssh_private_key_file=k"}, want: "--var: ssh_private_key_file is given without its pair build_ignition"},
		{name: "bad var file", args: []string{"image", "build", "--var-file", filepath.Join(dir, "none.pkrvars.hcl")}, want: "--var-file: "},
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

// baseImageDir writes a kiln base image directory's files (all but the ones named in skip) into a new
// directory and returns it.
func baseImageDir(t *testing.T, cmdline string, skip ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"disk.qcow2", "vmlinuz", "initrd.img", "cmdline"} {
		if slices.Contains(skip, f) {
			continue
		}
		data := "x"
		if f == "cmdline" {
			data = cmdline
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBaseImageVars(t *testing.T) {
	const cmdline = "root=LABEL=kiln-root rw console=ttyS0 ignition.firstboot ignition.platform.id=qemu"
	full := baseImageDir(t, cmdline+"\n")
	tests := []struct {
		name    string
		dir     string
		given   map[string]string
		want    []string
		wantErr []string
	}{
		{name: "all four", dir: full, want: []string{
			"base_image=" + filepath.Join(full, "disk.qcow2"), "kernel=" + filepath.Join(full, "vmlinuz"),
			"initrd=" + filepath.Join(full, "initrd.img"), "kernel_cmdline=" + cmdline,
		}},
		{name: "a given var wins", dir: full, given: map[string]string{"kernel_cmdline": "quiet", "base_image": "other.qcow2"}, want: []string{
			"kernel=" + filepath.Join(full, "vmlinuz"), "initrd=" + filepath.Join(full, "initrd.img"),
		}},
		{name: "every missing file at once", dir: baseImageDir(t, cmdline, "vmlinuz", "initrd.img"), wantErr: []string{
			"vmlinuz for kernel: stat", "initrd.img for initrd: stat",
		}},
		{name: "no directory", dir: filepath.Join(full, "none"), wantErr: []string{filepath.Join(full, "none", "disk.qcow2") + " for base_image"}},
		{name: "empty cmdline", dir: baseImageDir(t, "\n"), wantErr: []string{"cmdline for kernel_cmdline: want one line of kernel arguments"}},
		{name: "two-line cmdline", dir: baseImageDir(t, "a\nb\n"), wantErr: []string{"cmdline for kernel_cmdline: want one line"}},
		{name: "missing but given", dir: baseImageDir(t, cmdline, "disk.qcow2", "vmlinuz", "initrd.img"), given: map[string]string{"base_image": "", "kernel": "", "initrd": ""}, want: []string{
			"kernel_cmdline=" + cmdline,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := baseImageVars(tc.dir, tc.given)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("baseImageVars = %q, want an error", got)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sort := func(s []string) []string { return slices.Sorted(slices.Values(s)) }
			if diff := cmp.Diff(sort(tc.want), sort(got)); diff != "" {
				t.Errorf("baseImageVars (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGivenVars(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hclFile := write("vars.pkrvars.hcl", "ssh_username = \"builder\"\nmemory = 4096\n")
	jsonFile := write("vars.pkrvars.json", `{"build_ignition": "b.ign", "cpus": 4}`)
	badFile := write("bad.pkrvars.hcl", "ssh_username = \n")
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "x.auto.pkrvars.hcl"), []byte(`accelerator = "tcg"`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		vars     []string
		varFiles []string
		workDir  string
		environ  []string
		want     map[string]string
		wantErr  string
	}{
		{name: "nothing", workDir: dir, want: map[string]string{}},
		{name: "vars", workDir: dir, vars: []string{"a=1", "b=x=y"}, want: map[string]string{"a": "1", "b": "x=y"}},
		{name: "files and env", workDir: dir, varFiles: []string{hclFile, jsonFile}, environ: []string{"PKR_VAR_ssh_private_key_file=/k", "HOME=/root"},
			want: map[string]string{"ssh_username": "builder", "memory": "", "build_ignition": "b.ign", "cpus": "", "ssh_private_key_file": "/k"}},
		{name: "var over file over env", workDir: dir, vars: []string{"ssh_username=v"}, varFiles: []string{hclFile}, environ: []string{"PKR_VAR_ssh_username=e"},
			want: map[string]string{"ssh_username": "v", "memory": ""}},
		{name: "auto var files in the work directory", workDir: work, want: map[string]string{"accelerator": "tcg"}},
		{name: "bad file", workDir: dir, varFiles: []string{badFile}, wantErr: "--var-file: " + badFile},
		{name: "missing file", workDir: dir, varFiles: []string{filepath.Join(dir, "none.hcl")}, wantErr: "--var-file: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := givenVars(tc.vars, tc.varFiles, tc.workDir, tc.environ)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("givenVars = %v, %v; want an error saying %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("givenVars (-want +got):\n%s", diff)
			}
		})
	}
}

// fakePacker writes a packer that records its arguments, one a line, into DIR/args and, for each
// file -var names, the file's mode and first line into DIR/files; it exits with status code.
func fakePacker(t *testing.T, code int) (bin, dir string) {
	t.Helper()
	dir = t.TempDir()
	bin = filepath.Join(dir, "packer")
	script := `#!/bin/sh
for a in "$@"; do
	printf '%s\n' "$a" >>` + dir + `/args
	case $a in
	build_ignition=* | ssh_private_key_file=*)
		f=${a#*=}
		printf '%s %s %s\n' "$f" "$(stat -c %a "$f")" "$(head -c 40 "$f")" >>` + dir + `/files ;;
	esac
done
exit ` + strconv.Itoa(code) + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, dir
}

func TestImageBuildAccess(t *testing.T) {
	const cmdline = "root=LABEL=kiln-root rw console=ttyS0"
	base := baseImageDir(t, cmdline+"\n")
	tests := []struct {
		name       string
		args       []string
		packerExit int
		wantVars   []string
		wantMade   bool
		wantUser   string
		wantErr    string
	}{
		{name: "made when neither is given", args: []string{"--base-image", base}, wantMade: true, wantUser: "packer",
			wantVars: []string{"base_image=" + filepath.Join(base, "disk.qcow2"), "kernel_cmdline=" + cmdline}},
		{name: "for the given build user", args: []string{"--var", "ssh_username=builder"}, wantMade: true, wantUser: "builder"},
		{name: "removed after a failed build", args: nil, packerExit: 1, wantMade: true, wantUser: "packer", wantErr: "packer build qemu.pkr.hcl: exit status 1"},
		{name: "not made when both are given", args: []string{"--var", "build_ignition=/b.ign", "--var", "ssh_private_key_file=/k"},
			wantVars: []string{"build_ignition=/b.ign", "ssh_private_key_file=/k"}},
		{name: "not made for aws", args: []string{"--target", "aws"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bin, rec := fakePacker(t, tc.packerExit)
			work := t.TempDir()
			args := append([]string{"image", "build", "--packer", bin, "--work-dir", work}, tc.args...)
			code, _, errOut := kiln(t, t.TempDir(), args...)
			if tc.wantErr != "" {
				if code == 0 || !strings.Contains(errOut, tc.wantErr) {
					t.Fatalf("exit %d, stderr %q; want %q", code, errOut, tc.wantErr)
				}
			} else if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			data, err := os.ReadFile(filepath.Join(rec, "args"))
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Split(strings.TrimSpace(string(data)), "\n")
			for _, w := range tc.wantVars {
				if !slices.Contains(got, w) {
					t.Errorf("packer args %q lack %q", got, w)
				}
			}
			key, ign := filepath.Join(work, "kiln-build-key"), filepath.Join(work, "kiln-build.ign")
			made := slices.Contains(got, "ssh_private_key_file="+key) && slices.Contains(got, "build_ignition="+ign)
			if made != tc.wantMade {
				t.Fatalf("build access made = %v, want %v; packer args %q", made, tc.wantMade, got)
			}
			for _, p := range []string{key, ign} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s is still there after the build: %v", p, err)
				}
			}
			if !tc.wantMade {
				return
			}
			files, err := os.ReadFile(filepath.Join(rec, "files"))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []string{ign + " 600 {\"ignition\"", key + " 600 -----BEGIN OPENSSH PRIVATE KEY-----"} {
				if !strings.Contains(string(files), w) {
					t.Errorf("packer saw %q, want a line starting %q", files, w)
				}
			}
			if !strings.Contains(errOut, "one-time build access for "+tc.wantUser) {
				t.Errorf("stderr %q does not say it made the build access for %s", errOut, tc.wantUser)
			}
		})
	}
}
