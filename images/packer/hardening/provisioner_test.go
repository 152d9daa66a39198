package hardening

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/kiln-dev/kiln/images/harden"
	"github.com/kiln-dev/kiln/internal/golden"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestPrepareReportsEveryErrorAtOnce(t *testing.T) {
	tests := []struct {
		name string
		raw  map[string]interface{}
		want []string // substrings, one per expected error, in order
	}{
		{name: "defaults", raw: map[string]interface{}{}},
		{
			name: "every setting",
			raw: map[string]interface{}{
				"allow_groups": []string{"kiln-ssh"}, "banner": "/etc/issue.net", "banner_text": "hi\n",
				"max_auth_tries": 3, "login_grace_time": 30, "client_alive_interval": 120, "log_level": "INFO",
				"ciphers": []string{"aes256-gcm@openssh.com"}, "macs": []string{"hmac-sha2-512-etm@openssh.com"},
				"kex_algorithms": []string{"curve25519-sha256"}, "rsa_host_key_bits": 3072, "required_rsa_size": 3072,
				"moduli_min_bits": 4096, "origins_patterns": []string{"origin=Debian,codename=${distro_codename}-security,label=Debian-Security"},
				"automatic_reboot": false, "automatic_reboot_with_users": false, "automatic_reboot_time": "03:30",
				"build_user": "packer", "remove_build_user": true, "distro": "ubuntu",
			},
		},
		{
			name: "every problem",
			raw: map[string]interface{}{
				"allow_groups":          []string{"ok", "Not OK"},
				"banner":                "relative/banner",
				"log_level":             "LOUD",
				"ciphers":               []string{"aes256-ctr", "rc4"},
				"moduli_min_bits":       1024,
				"origins_patterns":      []string{"origin=Debian,a=stable"},
				"automatic_reboot_time": "2am",
				"build_user":            "root",
				"remove_build_user":     true,
				"distro":                "gentoo",
			},
			want: []string{
				`allow_groups[1]: "Not OK" is not a valid group name`,
				`banner: "relative/banner" is not a clean absolute path`,
				`log_level: "LOUD" is not one of`,
				`ciphers[1]: unknown cipher "rc4"`,
				`moduli_min_bits: 1024 is not between 2048 and 8192`,
				`origins_patterns[0]: "origin=Debian,a=stable" follows the moving suite "stable"`,
				`automatic_reboot_time: "2am" is not HH:MM`,
				`remove_build_user: the build user is root, which cannot be removed`,
				`distro: "gentoo" is not a distro kiln knows`,
			},
		},
		{
			name: "unattended-upgrades and the agent both rebooting",
			raw:  map[string]interface{}{"automatic_reboot": true},
			want: []string{`automatic_reboot: is true while the reboot agent is on`},
		},
		{
			name: "unattended-upgrades rebooting without the agent",
			raw:  map[string]interface{}{"automatic_reboot": true, "reboot_agent": false},
		},
		{
			name: "wrong type",
			raw:  map[string]interface{}{"max_auth_tries": "many"},
			want: []string{`1 error(s) decoding`, ``, `cannot parse 'max_auth_tries' as int`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Provisioner
			err := p.Prepare(tc.raw)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Prepare() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("Prepare() = %v, want an error wrapping ErrConfig", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("Prepare() reported %d problems, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestConfigProfile(t *testing.T) {
	no := false
	c := Config{AllowGroups: []string{"ops"}, AutomaticReboot: &no, AutomaticRebootTime: "04:15", MaxAuthTries: 2}
	p := c.Profile("packer")
	want := harden.DefaultProfile()
	want.SSHD.AllowGroups = []string{"ops"}
	want.SSHD.MaxAuthTries = 2
	want.Upgrades.AutomaticReboot = false
	want.Upgrades.AutomaticRebootTime = "04:15"
	want.Hygiene.BuildUser = "packer"
	if got, w := fmt.Sprintf("%+v", p), fmt.Sprintf("%+v", want); got != w {
		t.Errorf("Profile() = %s\nwant %s", got, w)
	}
}

func TestParseOSRelease(t *testing.T) {
	tests := []struct {
		name, data string
		want       harden.Distro
		wantErr    bool
	}{
		{name: "debian", data: "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n", want: harden.Debian},
		{name: "ubuntu", data: "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n", want: harden.Ubuntu},
		{name: "derivative", data: "ID=raspbian\nID_LIKE=debian\n", want: harden.Debian},
		{name: "rocky", data: "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", want: harden.Distro{Family: harden.FamilyRHEL, ID: "rocky"}},
		{name: "unknown", data: "ID=arch\n", wantErr: true},
		{name: "empty", data: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOSRelease([]byte(tc.data))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseOSRelease() = %v, %v; want %v, error %t", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// machine is a scripted communicator: it answers the commands the provisioner runs from fixtures and
// records every command and upload in order.
type machine struct {
	mu         sync.Mutex
	transcript []string
	uploads    map[string][]byte
	// answer returns stdout, stderr and the exit status of a command line.
	answer func(line string) (string, string, int)
}

func (m *machine) Start(_ context.Context, rc *packersdk.RemoteCmd) error {
	m.mu.Lock()
	m.transcript = append(m.transcript, "$ "+rc.Command)
	m.mu.Unlock()
	stdout, stderr, status := m.answer(rc.Command)
	go func() {
		if rc.Stdout != nil {
			io.WriteString(rc.Stdout, stdout)
		}
		if rc.Stderr != nil {
			io.WriteString(rc.Stderr, stderr)
		}
		rc.SetExited(status)
	}()
	return nil
}

func (m *machine) Upload(path string, r io.Reader, _ *os.FileInfo) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.transcript = append(m.transcript, fmt.Sprintf("upload %s (%d bytes)", path, len(data)))
	if m.uploads == nil {
		m.uploads = map[string][]byte{}
	}
	m.uploads[path] = data
	return nil
}

func (m *machine) UploadDir(string, string, []string) error   { return errors.New("not used") }
func (m *machine) Download(string, io.Writer) error           { return errors.New("not used") }
func (m *machine) DownloadDir(string, string, []string) error { return errors.New("not used") }

func fixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "harden", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// stagePath is the staging directory the scripted machine's mktemp makes.
const stagePath = "/tmp/kiln-harden.q7Rx2LmZ0a"

const debianOSRelease = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"

// debianMachine answers like a Debian 12 machine logged in as packer (uid 1000) whose sshd -T and
// apt-config dump print the given outputs; fail names a command substring that exits 1.
func debianMachine(sshdT, aptDump, fail string) *machine {
	return debianMachineProbed(sshdT, aptDump, "", fail)
}

// debianMachineProbed answers the level1 rules' probe script with probe.
func debianMachineProbed(sshdT, aptDump, probe, fail string) *machine {
	return &machine{answer: func(line string) (string, string, int) {
		switch {
		case strings.HasPrefix(line, "sudo -n sh -c ") && strings.Contains(line, "### sysctl"):
			return probe, "", 0
		case fail != "" && strings.Contains(line, fail):
			return "", "E: something broke\n", 1
		case line == "id -u":
			return "1000\n", "", 0
		case line == "mktemp -d /tmp/kiln-harden.XXXXXXXXXX":
			return stagePath + "\n", "", 0
		case line == "cat /etc/os-release":
			return debianOSRelease, "", 0
		case line == "sudo -n sshd -T":
			return sshdT, "", 0
		case line == "sudo -n apt-config dump":
			return aptDump, "", 0
		}
		return "", "", 0
	}}
}

func provision(t *testing.T, raw map[string]interface{}, m *machine) (*packersdk.MockUi, error) {
	t.Helper()
	var p Provisioner
	if err := p.Prepare(raw); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	ui := &packersdk.MockUi{}
	return ui, p.Provision(context.Background(), ui, m, map[string]interface{}{"User": "packer", "SSHPrivateKey": "-----BEGIN SECRET-----"})
}

// TestProvisionTranscript checks what the provisioner does on a Debian machine that verifies clean:
// every plan step (files uploaded and installed with their mode, commands with sudo), the verification
// between the configuration and the hygiene steps, and the sync at the end.
func TestProvisionTranscript(t *testing.T) {
	m := debianMachineProbed(fixture(t, "sshd-T-hardened.txt"), fixture(t, "apt-config-dump-hardened.txt"), fixture(t, "probe-hardened.txt"), "")
	ui, err := provision(t, map[string]interface{}{"allow_groups": []string{"kiln-ssh", "wheel"}}, m)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	golden.Check(t, *update, "transcript-debian.golden", []byte(strings.Join(m.transcript, "\n")+"\n"))
	pl, err := harden.NewPlan(func() harden.Profile {
		p := harden.DefaultProfile()
		p.SSHD.AllowGroups = []string{"kiln-ssh", "wheel"}
		p.Hygiene.BuildUser = "packer"
		return p
	}(), harden.Debian)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range pl.Steps {
		if s.File != nil && !bytes.Equal(m.uploads[fmt.Sprintf("%s/step-%d", stagePath, i+1)], s.File.Contents) {
			t.Errorf("step %d: upload of %s differs from the plan's contents", i+1, s.File.Path)
		}
	}
	if strings.Contains(ui.SayMessages[0].Message+fmt.Sprint(ui.SayMessages), "BEGIN SECRET") {
		t.Error("the UI printed build data")
	}
}

func TestProvisionFailsListingEveryDrift(t *testing.T) {
	m := debianMachineProbed(fixture(t, "sshd-T-debian12-stock.txt"), fixture(t, "apt-config-dump-debian12-stock.txt"), fixture(t, "probe-debian12-base.txt"), "")
	_, err := provision(t, map[string]interface{}{}, m)
	if !errors.Is(err, ErrDrift) {
		t.Fatalf("Provision() = %v, want ErrDrift", err)
	}
	wantSSHD := len(harden.VerifySSHD(harden.DefaultProfile(), []byte(fixture(t, "sshd-T-debian12-stock.txt"))))
	wantAPT := len(harden.VerifyAPT(harden.DefaultProfile(), []byte(fixture(t, "apt-config-dump-debian12-stock.txt"))))
	msg := err.Error()
	if got := strings.Count(msg, "\n  sshd "); got != wantSSHD || wantSSHD == 0 {
		t.Errorf("error lists %d sshd drifts, want %d:\n%s", got, wantSSHD, msg)
	}
	if got := strings.Count(msg, "\n  apt "); got != wantAPT || wantAPT == 0 {
		t.Errorf("error lists %d apt drifts, want %d:\n%s", got, wantAPT, msg)
	}
	for _, key := range []string{"passwordauthentication", "permitrootlogin", "kexalgorithms", "Unattended-Upgrade::Origins-Pattern"} {
		if !strings.Contains(msg, key) {
			t.Errorf("error does not name %s:\n%s", key, msg)
		}
	}
	golden.Check(t, *update, "drift-debian12-stock.golden", []byte(msg+"\n"))
	for _, line := range m.transcript {
		if strings.Contains(line, "ssh_host_") || strings.Contains(line, "machine-id") {
			t.Errorf("hygiene ran after a failed verification: %s", line)
		}
	}
}

func TestProvisionStopsAtFailedStep(t *testing.T) {
	m := debianMachine("", "", "apt-get -o DPkg::Lock::Timeout=600 -y --no-install-recommends install")
	_, err := provision(t, map[string]interface{}{}, m)
	if !errors.Is(err, ErrCommand) {
		t.Fatalf("Provision() = %v, want ErrCommand", err)
	}
	for _, w := range []string{"step 2 (install unattended-upgrades", "exit status 1", "E: something broke"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if last := m.transcript[len(m.transcript)-1]; !strings.Contains(last, "install unattended-upgrades") {
		t.Errorf("ran on after the failed step: last command %q", last)
	}
}

func TestProvisionRemovesBuildUserLast(t *testing.T) {
	m := debianMachineProbed(fixture(t, "sshd-T-hardened.txt"), fixture(t, "apt-config-dump-hardened.txt"), fixture(t, "probe-hardened.txt"), "")
	_, err := provision(t, map[string]interface{}{"allow_groups": []string{"kiln-ssh", "wheel"}, "remove_build_user": true}, m)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	n := len(m.transcript)
	if !strings.Contains(m.transcript[n-2], "systemd-run --quiet --on-active=15") || m.transcript[n-1] != "$ sudo -n userdel --force --remove packer" {
		t.Errorf("last commands = %q, want the poweroff scheduled, then the build user removed", m.transcript[n-2:])
	}
}

// local is a communicator that runs commands for real on this machine with sh and writes uploads to
// real files: the executor's uploads, installs, exit statuses and stderr, without a VM.
type local struct{}

func (local) Start(ctx context.Context, rc *packersdk.RemoteCmd) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", rc.Command)
	cmd.Stdout, cmd.Stderr = rc.Stdout, rc.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		err := cmd.Wait()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			rc.SetExited(exit.ExitCode())
		case err != nil:
			rc.SetExited(packersdk.CmdDisconnect)
		default:
			rc.SetExited(0)
		}
	}()
	return nil
}

func (local) Upload(path string, r io.Reader, _ *os.FileInfo) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func (local) UploadDir(string, string, []string) error   { return errors.New("not used") }
func (local) Download(string, io.Writer) error           { return errors.New("not used") }
func (local) DownloadDir(string, string, []string) error { return errors.New("not used") }

// TestApplyStepsForReal runs file and command steps with real processes: files land with their mode
// and owner in directories install creates, a failing command stops the steps with its stderr.
func TestApplyStepsForReal(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	conf := filepath.Join(root, "etc", "ssh", "sshd_config.d", "00-kiln.conf")
	marker := filepath.Join(root, "ran")
	steps := []harden.Step{
		{File: &harden.File{Path: conf, Mode: 0o600, Owner: u.Username + ":" + g.Name, Contents: []byte("PasswordAuthentication no\n"), Purpose: "drop-in"}},
		{Command: &harden.Command{Argv: []string{"sh", "-c", `test "$(cat "$1")" = "PasswordAuthentication no" && touch "$2"`, "sh", conf, marker}, Purpose: "read it back"}},
		{Command: &harden.Command{Argv: []string{"sh", "-c", "echo 'no such thing' >&2; exit 3"}, Purpose: "fail"}},
		{Command: &harden.Command{Argv: []string{"touch", filepath.Join(root, "never")}, Purpose: "after the failure"}},
	}
	before, _ := filepath.Glob("/tmp/kiln-harden.*")
	r := &remote{comm: local{}, ui: &packersdk.MockUi{}}
	err = r.applySteps(context.Background(), steps, 0, len(steps))
	if !errors.Is(err, ErrCommand) || !strings.Contains(err.Error(), "step 3 (fail)") || !strings.Contains(err.Error(), "exit status 3: no such thing") {
		t.Fatalf("applySteps() = %v, want step 3 failing with its exit status and stderr", err)
	}
	fi, err := os.Stat(conf)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %o, want 0600", conf, fi.Mode().Perm())
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("step 2 did not read the file back: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "never")); err == nil {
		t.Error("a step after the failure ran")
	}
	if left, _ := filepath.Glob("/tmp/kiln-harden.*"); len(left) > len(before) {
		t.Errorf("the staging directory was left behind: %v (before: %v)", left, before)
	}
}
