package harden

import (
	"errors"
	"flag"
	"fmt"
	goldenfile "github.com/kiln-dev/kiln/internal/golden"
	"github.com/kiln-dev/kiln/internal/testtool"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden and the fixture seeds in testdata/fuzz")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, *update, name, got)
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// buildProfile is the profile of the golden plans: a Packer build user that is removed at the end.
func buildProfile() Profile {
	p := DefaultProfile()
	p.SSHD.AllowGroups = []string{"kiln-ssh", "wheel"}
	p.Hygiene = Hygiene{BuildUser: "packer", RemoveBuildUser: true}
	return p
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(p *Profile)
		want   []string // substrings, one per expected error, in order
	}{
		{name: "default", modify: func(*Profile) {}},
		{name: "build profile", modify: func(p *Profile) { *p = buildProfile() }},
		{
			name:   "unknown cipher",
			modify: func(p *Profile) { p.SSHD.Ciphers = append(p.SSHD.Ciphers, "aes512-ctr") },
			want:   []string{`SSHD.Ciphers[6]: unknown cipher "aes512-ctr"`},
		},
		{
			name:   "reboot time not HH:MM",
			modify: func(p *Profile) { p.Upgrades.AutomaticRebootTime = "2am" },
			want:   []string{`Upgrades.AutomaticRebootTime: "2am" is not HH:MM`},
		},
		{
			name:   "reboot time out of range",
			modify: func(p *Profile) { p.Upgrades.AutomaticRebootTime = "24:00" },
			want:   []string{`Upgrades.AutomaticRebootTime: "24:00" is not HH:MM`},
		},
		{
			name: "moving origin",
			modify: func(p *Profile) {
				p.Upgrades.OriginsPatterns = []string{"origin=Debian,a=stable,label=Debian-Security", "origin=Debian,codename=${distro_codename}-updates"}
			},
			want: []string{
				`Upgrades.OriginsPatterns[0]: "origin=Debian,a=stable,label=Debian-Security" follows the moving suite "stable"`,
				`Upgrades.OriginsPatterns[1]: "origin=Debian,codename=${distro_codename}-updates" is not a security origin`,
			},
		},
		{
			name: "every problem at once",
			modify: func(p *Profile) {
				p.SSHD.AllowGroups = []string{"Bad Group"}
				p.SSHD.Banner = "etc/banner"
				p.SSHD.MaxAuthTries = 0
				p.SSHD.MaxStartups = "60:30:10"
				p.SSHD.LogLevel = "verbose"
				p.SSHD.KexAlgorithms = nil
				p.SSHD.MACs = []string{"hmac-sha2-256-etm@openssh.com", "hmac-sha2-256-etm@openssh.com"}
				p.SSHD.RSAHostKeyBits = 2048
				p.SSHD.ModuliMinBits = 1024
				p.Upgrades.AutomaticRebootTime = ""
				p.Upgrades.UnattendedUpgradeDays = 0
				p.Hygiene.RemoveBuildUser = true
			},
			want: []string{
				`SSHD.AllowGroups[0]: "Bad Group" is not a valid group name`,
				`SSHD.Banner: "etc/banner" is not a clean absolute path`,
				`SSHD.MaxAuthTries: 0 is not a positive number`,
				`SSHD.MaxStartups: "60:30:10" needs start <= full`,
				`SSHD.LogLevel: "verbose" is not one of`,
				`SSHD.KexAlgorithms: no key exchange algorithm`,
				`SSHD.MACs[1]: duplicate MAC "hmac-sha2-256-etm@openssh.com"`,
				`SSHD.RSAHostKeyBits: 2048 is not between RequiredRSASize (3072) and 16384`,
				`SSHD.ModuliMinBits: 1024 is not between 2048 and 8192`,
				`Upgrades.AutomaticRebootTime: "" is not HH:MM`,
				`Upgrades.UnattendedUpgradeDays: 0 is not a positive number of days`,
				`Hygiene.RemoveBuildUser: set but Hygiene.BuildUser is empty`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultProfile()
			tc.modify(&p)
			err := p.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidProfile) {
				t.Fatalf("Validate() = %v, want an error wrapping ErrInvalidProfile", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("Validate() reported %d problems, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestNewPlanGolden(t *testing.T) {
	for _, d := range []Distro{Debian, Ubuntu, RHEL, Flatcar} {
		t.Run(d.String(), func(t *testing.T) {
			pl, err := NewPlan(buildProfile(), d)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "plan-"+d.ID+".golden", []byte(pl.String()))
		})
	}
}

func TestNewPlanErrors(t *testing.T) {
	bad := DefaultProfile()
	bad.SSHD.Ciphers = []string{"rc4"}
	tests := []struct {
		name    string
		profile Profile
		distro  Distro
		want    error
	}{
		{name: "unknown family", profile: DefaultProfile(), distro: Distro{Family: "gentoo"}, want: ErrUnknownDistro},
		{name: "apt distro without origins", profile: DefaultProfile(), distro: Distro{Family: FamilyDebian, ID: "mint"}, want: ErrUnknownDistro},
		{name: "invalid profile", profile: bad, distro: Debian, want: ErrInvalidProfile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPlan(tc.profile, tc.distro)
			if !errors.Is(err, tc.want) {
				t.Fatalf("NewPlan() = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestPlanInvariants checks what must hold for every plan whatever the golden files say.
func TestPlanInvariants(t *testing.T) {
	for _, d := range []Distro{Debian, Ubuntu, RHEL} {
		t.Run(d.String(), func(t *testing.T) {
			pl, err := NewPlan(buildProfile(), d)
			if err != nil {
				t.Fatal(err)
			}
			cmds := pl.Commands()
			if last := cmds[len(cmds)-1].Argv; !slices.Equal(last, []string{"userdel", "--force", "--remove", "packer"}) {
				t.Errorf("last command = %q, want the build user removed last", last)
			}
			var sawChmod, sawHostKeyRemoval bool
			for _, c := range cmds {
				line := ShellQuote(c.Argv)
				if c.Argv[0] == "apt-get" || slices.Contains(c.Argv, "apt-get") || strings.Contains(line, "apt-get ") {
					if !strings.Contains(line, "DPkg::Lock::Timeout=") {
						t.Errorf("apt-get without a lock timeout: %s", line)
					}
				}
				if strings.Contains(line, "flock") {
					t.Errorf("flock does not wait for apt's fcntl locks: %s", line)
				}
				sawChmod = sawChmod || slices.Equal(c.Argv, []string{"chmod", "0600", SSHDConfig})
				sawHostKeyRemoval = sawHostKeyRemoval || strings.Contains(line, "ssh_host_*")
				if c.Purpose == "" {
					t.Errorf("command without a purpose: %s", line)
				}
			}
			if !sawChmod || !sawHostKeyRemoval {
				t.Errorf("chmod 0600 sshd_config: %t, host keys removed: %t; want both", sawChmod, sawHostKeyRemoval)
			}
			for _, f := range pl.Files() {
				if strings.Contains(string(f.Contents), "a=stable") || strings.Contains(string(f.Contents), "archive=stable") {
					t.Errorf("%s follows stable", f.Path)
				}
				if f.Path == SSHDDropIn && f.Mode != 0o600 {
					t.Errorf("%s mode %o, want 0600", f.Path, f.Mode)
				}
			}
		})
	}
}

func TestPlanFlatcarVerifyOnly(t *testing.T) {
	pl, err := NewPlan(DefaultProfile(), Flatcar)
	if err != nil {
		t.Fatal(err)
	}
	if !pl.VerifyOnly || len(pl.Steps) != 0 {
		t.Errorf("flatcar plan: VerifyOnly %t, %d steps; want verify only, no steps", pl.VerifyOnly, len(pl.Steps))
	}
}

func TestParseDistro(t *testing.T) {
	tests := []struct {
		id      string
		want    Distro
		wantErr error
	}{
		{id: "debian", want: Debian},
		{id: "Ubuntu", want: Ubuntu},
		{id: "rocky", want: Distro{Family: FamilyRHEL, ID: "rocky"}},
		{id: "flatcar", want: Flatcar},
		{id: "arch", wantErr: ErrUnknownDistro},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			got, err := ParseDistro(tc.id)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ParseDistro(%q) error = %v, want %v", tc.id, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseDistro(%q) (-want +got):\n%s", tc.id, diff)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	got := ShellQuote([]string{"sh", "-c", `awk '$5 >= 3071' x`, "", "a=b,c"})
	want := `sh -c 'awk '\''$5 >= 3071'\'' x' '' a=b,c`
	if got != want {
		t.Errorf("ShellQuote = %s, want %s", got, want)
	}
}

// renderDrifts is the golden form of a drift list.
func renderDrifts(drifts []Drift) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%d drifts\n", len(drifts))
	for _, d := range drifts {
		fmt.Fprintf(&b, "\n%s\n  want: %q\n  got:  %q\n", d, d.Want, d.Got)
	}
	return []byte(b.String())
}

func TestVerifySSHD(t *testing.T) {
	hardened := readFixture(t, "sshd-T-hardened.txt")
	tests := []struct {
		name    string
		profile Profile
		sshdT   []byte
		want    []Drift
	}{
		{name: "hardened is clean", profile: buildProfile(), sshdT: hardened},
		{
			name:    "groups the profile does not name",
			profile: DefaultProfile(),
			sshdT:   hardened,
			want:    []Drift{{Key: "allowgroups", Got: "kiln-ssh\nwheel", Message: "restricts logins to groups the profile does not name"}},
		},
		{
			name: "algorithm order does not matter",
			profile: func() Profile {
				p := buildProfile()
				slices.Reverse(p.SSHD.Ciphers)
				return p
			}(),
			sshdT: hardened,
		},
		{
			name:    "extra and missing algorithms",
			profile: buildProfile(),
			sshdT: []byte(strings.Replace(string(hardened),
				"macs hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,umac-128-etm@openssh.com",
				"macs hmac-sha2-256-etm@openssh.com,hmac-sha1,umac-64@openssh.com", 1)),
			want: []Drift{{
				Key:     "macs",
				Want:    "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,umac-128-etm@openssh.com",
				Got:     "hmac-sha2-256-etm@openssh.com,hmac-sha1,umac-64@openssh.com",
				Message: "extra algorithms hmac-sha1, umac-64@openssh.com; missing algorithms hmac-sha2-512-etm@openssh.com, umac-128-etm@openssh.com",
			}},
		},
		{
			name:    "extra host key and missing key",
			profile: buildProfile(),
			sshdT: []byte(strings.Replace(strings.Replace(string(hardened),
				"hostkey /etc/ssh/ssh_host_rsa_key\n", "hostkey /etc/ssh/ssh_host_ecdsa_key\n", 1),
				"requiredrsasize 3072\n", "", 1)),
			want: []Drift{
				{
					Key:     "hostkey",
					Want:    "/etc/ssh/ssh_host_ed25519_key\n/etc/ssh/ssh_host_rsa_key",
					Got:     "/etc/ssh/ssh_host_ed25519_key\n/etc/ssh/ssh_host_ecdsa_key",
					Message: "extra value /etc/ssh/ssh_host_ecdsa_key; missing value /etc/ssh/ssh_host_rsa_key",
				},
				{Key: "requiredrsasize", Want: "3072", Message: "missing from sshd -T output"},
			},
		},
		{
			name:    "empty output reports every setting",
			profile: DefaultProfile(),
			sshdT:   nil,
			want: func() []Drift {
				var out []Drift
				for _, st := range DefaultProfile().SSHD.sshdSettings() {
					d := Drift{Key: strings.ToLower(st.keyword), Want: strings.Join(st.values, ","), Message: "missing from sshd -T output"}
					if st.kind == repeated {
						d = Drift{Key: d.Key, Want: strings.Join(st.values, "\n"), Message: "missing values " + strings.Join(st.values, ", ")}
					}
					out = append(out, d)
				}
				return out
			}(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := VerifySSHD(tc.profile, tc.sshdT)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("VerifySSHD (-want +got):\n%s", diff)
			}
		})
	}
}

// TestVerifySSHDStock checks Debian 12's stock sshd -T output (captured from its sshd 9.2p1): every setting
// the profile changes is a drift. Not ciphers: Debian's default ciphers are the profile's, in another order.
func TestVerifySSHDStock(t *testing.T) {
	drifts := VerifySSHD(DefaultProfile(), readFixture(t, "sshd-T-debian12-stock.txt"))
	var keys []string
	for _, d := range drifts {
		keys = append(keys, d.Key)
	}
	want := []string{
		"passwordauthentication", "authenticationmethods", "permitrootlogin", "disableforwarding",
		"x11forwarding", "allowtcpforwarding", "allowagentforwarding", "allowstreamlocalforwarding", "compression",
		"maxauthtries", "maxsessions", "logingracetime", "clientaliveinterval", "maxstartups",
		"persourcemaxstartups", "loglevel", "banner", "hostkey", "requiredrsasize", "kexalgorithms", "macs",
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("drift keys (-want +got):\n%s", diff)
	}
	golden(t, "sshd-T-debian12-stock.drifts.golden", renderDrifts(drifts))
}

func TestVerifyAPT(t *testing.T) {
	tests := []struct {
		name    string
		fixture string
		modify  func(p *Profile)
		want    int // number of drifts; the drifts themselves are golden
	}{
		{name: "hardened", fixture: "apt-config-dump-hardened.txt", want: 0},
		{name: "debian12-stock", fixture: "apt-config-dump-debian12-stock.txt", want: 5},
		{name: "moving", fixture: "apt-config-dump-moving.txt", want: 8},
		{
			name:    "explicit-origins",
			fixture: "apt-config-dump-hardened.txt",
			modify: func(p *Profile) {
				p.Upgrades.OriginsPatterns = []string{"origin=Debian,codename=bookworm-security,label=Debian-Security"}
			},
			want: 1,
		},
		{name: "empty", fixture: "", want: 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultProfile()
			if tc.modify != nil {
				tc.modify(&p)
			}
			var dump []byte
			if tc.fixture != "" {
				dump = readFixture(t, tc.fixture)
			}
			drifts := VerifyAPT(p, dump)
			if len(drifts) != tc.want {
				t.Errorf("VerifyAPT returned %d drifts, want %d:\n%s", len(drifts), tc.want, renderDrifts(drifts))
			}
			if tc.want > 0 {
				golden(t, "apt-"+tc.name+".drifts.golden", renderDrifts(drifts))
			}
		})
	}
}

func TestParseAPTConfigDump(t *testing.T) {
	c := parseAPTConfigDump([]byte(`APT::Periodic "";
apt::periodic::Unattended-Upgrade "1";
APT::Periodic::Unattended-Upgrade "0";
Unattended-Upgrade::Origins-Pattern:: "origin=Debian,codename=${distro_codename}-security";
Unattended-Upgrade::Origins-Pattern:: "o=Debian;x";
not a setting
Key "unterminated;
`))
	if got, _ := c.last("APT::Periodic::Unattended-Upgrade"); got != "0" {
		t.Errorf("last value = %q, want the later %q (apt keeps the last, keys fold case)", got, "0")
	}
	want := []string{"origin=Debian,codename=${distro_codename}-security", "o=Debian;x"}
	if diff := cmp.Diff(want, c.list("unattended-upgrade::origins-pattern")); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if _, ok := c.last("Key"); ok {
		t.Errorf("an unterminated value was parsed")
	}
}

// TestAPTConfigReal writes the plan's apt files next to Debian 12's stock 50unattended-upgrades and reads
// them back with the real apt-config: the result must verify clean, and the stock files alone must not.
func TestAPTConfigReal(t *testing.T) {
	aptConfig, err := exec.LookPath("apt-config")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("apt-config is needed under CI")
		}
		t.Skip("apt-config not found; run on Debian or Ubuntu (apt-get install apt) to check the rendered apt files")
	}
	pl, err := NewPlan(DefaultProfile(), Debian)
	if err != nil {
		t.Fatal(err)
	}
	dump := func(t *testing.T, files map[string][]byte) []byte {
		dir := t.TempDir()
		parts := filepath.Join(dir, "apt.conf.d")
		if err := os.Mkdir(parts, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(parts, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		conf := filepath.Join(dir, "apt.conf")
		if err := os.WriteFile(conf, fmt.Appendf(nil, "Dir::Etc::parts %q;\nDir::Etc::main \"/dev/null\";\n", parts), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(aptConfig, "dump")
		cmd.Env = append(os.Environ(), "APT_CONFIG="+conf)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("apt-config dump: %v", err)
		}
		return out
	}
	stock := map[string][]byte{
		"50unattended-upgrades": readFixture(t, "50unattended-upgrades.debian12"),
		"20auto-upgrades":       []byte("APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\n"),
	}
	t.Run("stock", func(t *testing.T) {
		if drifts := VerifyAPT(DefaultProfile(), dump(t, stock)); len(drifts) == 0 {
			t.Error("stock Debian 12 configuration verified clean, want drifts")
		}
	})
	t.Run("hardened", func(t *testing.T) {
		files := map[string][]byte{"50unattended-upgrades": stock["50unattended-upgrades"]}
		for _, f := range pl.Files() {
			if strings.HasPrefix(f.Path, "/etc/apt/apt.conf.d/") {
				files[filepath.Base(f.Path)] = f.Contents
			}
		}
		if drifts := VerifyAPT(DefaultProfile(), dump(t, files)); len(drifts) != 0 {
			t.Errorf("hardened configuration has drifts:\n%s", renderDrifts(drifts))
		}
	})
}

// fuzzSeeds names the fixtures kept as seeds of each fuzz target.
var fuzzSeeds = map[string][]string{
	"FuzzVerifySSHD": {"sshd-T-hardened.txt", "sshd-T-debian12-stock.txt"},
	"FuzzVerifyAPT":  {"apt-config-dump-hardened.txt", "apt-config-dump-debian12-stock.txt", "apt-config-dump-moving.txt"},
}

// TestFuzzCorpus keeps a committed seed in testdata/fuzz for every fixture, rewritten under -update.
func TestFuzzCorpus(t *testing.T) {
	for target, fixtures := range fuzzSeeds {
		for _, name := range fixtures {
			data := readFixture(t, name)
			want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			seed := filepath.Join("testdata", "fuzz", target, "fixture-"+strings.TrimSuffix(name, ".txt"))
			if *update {
				if err := os.MkdirAll(filepath.Dir(seed), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(seed, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(seed)
			if err != nil || string(got) != want {
				t.Errorf("%s is missing or stale; run go test -update", seed)
			}
		}
	}
}

func FuzzVerifySSHD(f *testing.F) {
	f.Add([]byte("ciphers ,,aes128-ctr,\nhostkey\nallowgroups  a  b\n"))
	profiles := []Profile{DefaultProfile(), buildProfile()}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, p := range profiles {
			for _, d := range VerifySSHD(p, data) {
				if d.Key == "" || d.Message == "" {
					t.Fatalf("drift without key or message: %+v", d)
				}
			}
		}
	})
}

func FuzzVerifyAPT(f *testing.F) {
	f.Add([]byte("Unattended-Upgrade::Origins-Pattern:: \"a=,=,,codename\";\nX \"\";\n\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range VerifyAPT(DefaultProfile(), data) {
			if d.Key == "" || d.Message == "" {
				t.Fatalf("drift without key or message: %+v", d)
			}
		}
	})
}

func ExampleVerifyAPT() {
	dump := []byte(`APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
Unattended-Upgrade::Origins-Pattern:: "origin=Debian,a=stable,label=Debian-Security";
Unattended-Upgrade::Automatic-Reboot "false";
Unattended-Upgrade::Automatic-Reboot-WithUsers "true";
Unattended-Upgrade::Automatic-Reboot-Time "02:00";
`)
	for _, d := range VerifyAPT(DefaultProfile(), dump) {
		fmt.Println(d)
	}
	// Output:
	// Unattended-Upgrade::Origins-Pattern: "origin=Debian,a=stable,label=Debian-Security" follows the moving suite "stable" into the next release
	// Unattended-Upgrade::Origins-Pattern: no security origin matched by codename: security updates would not be installed
}

// TestSSHDReadsTheDropIn gives the rendered drop-in to the real sshd (Debian's sshd_config with its
// Include pointing at it) and checks that sshd -T, what sshd will do, has no drift from the profile.
func TestSSHDReadsTheDropIn(t *testing.T) {
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if testtool.CI() {
			t.Fatalf("sshd not found (hack/tools.sh deps installs openssh-server): %v", err)
		}
		t.Skipf("sshd not found: %v", err)
	}
	stock, err := os.ReadFile("/etc/ssh/sshd_config")
	if err != nil {
		if testtool.CI() {
			t.Fatalf("no Debian sshd_config to include the drop-in from (openssh-server): %v", err)
		}
		t.Skipf("no Debian sshd_config to include the drop-in from: %v", err)
	}
	dir := t.TempDir()
	for _, k := range [][]string{{"ed25519"}, {"rsa", "-b", "3072"}} {
		args := append([]string{"-q", "-N", "", "-f", filepath.Join(dir, "ssh_host_"+k[0]+"_key"), "-t"}, k...)
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	for _, p := range []Profile{buildProfile(), func() Profile { p, _ := ProfileAt(Baseline); return p }()} {
		dropIn := strings.ReplaceAll(string(sshdDropIn(p.SSHD)), "/etc/ssh/ssh_host_", dir+"/ssh_host_")
		if err := os.WriteFile(filepath.Join(dir, "00-kiln.conf"), []byte(dropIn), 0o600); err != nil {
			t.Fatal(err)
		}
		var conf []string
		for _, l := range strings.Split(string(stock), "\n") {
			if strings.HasPrefix(l, "Include ") {
				l = "Include " + dir + "/*.conf"
			}
			conf = append(conf, l)
		}
		if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(strings.Join(conf, "\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = os.MkdirAll("/run/sshd", 0o755) // sshd -T wants its privilege separation directory
		out, err := exec.Command(sshd, "-T", "-f", filepath.Join(dir, "sshd_config")).CombinedOutput()
		if err != nil {
			t.Fatalf("sshd -T: %v\n%s", err, out)
		}
		sshdT := strings.ReplaceAll(string(out), dir+"/ssh_host_", "/etc/ssh/ssh_host_")
		if d := VerifySSHD(p, []byte(sshdT)); len(d) > 0 {
			t.Errorf("level %s: sshd -T of the rendered drop-in drifts:\n%s", p.Level, renderDrifts(d))
		}
	}
}

// TestRulesDoc checks that docs/hardening.md carries the rule table as RulesMarkdown renders it,
// between its markers; -update rewrites it.
func TestRulesDoc(t *testing.T) {
	const path = "../../docs/hardening.md"
	const begin, end = "<!-- rules: generated by images/harden TestRulesDoc -update -->\n", "<!-- end of rules -->\n"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers %q and %q", path, begin, end)
	}
	want := doc[:i+len(begin)] + RulesMarkdown() + doc[j:]
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if diff := cmp.Diff(want, doc); diff != "" {
		t.Errorf("%s is not the rule table (-want +got); run go test -update:\n%s", path, diff)
	}
}

func TestValidateLevelAndSkip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(p *Profile)
		want   []string
	}{
		{name: "level1 skipping a rule", modify: func(p *Profile) { p.Skip = []string{"cis-3.3.7"} }},
		{name: "baseline", modify: func(p *Profile) { *p, _ = ProfileAt(Baseline) }},
		{name: "unknown level", modify: func(p *Profile) { p.Level = "level3" }, want: []string{`Level: "level3" is not one of level1, baseline`}},
		{name: "unknown, twice, and at baseline", modify: func(p *Profile) {
			p.Skip = []string{"cis-9.9", "cis-3.3.7", "cis-3.3.7"}
		}, want: []string{`Skip[0]: "cis-9.9" is not a rule of level1`, `Skip[2]: "cis-3.3.7" is listed twice`}},
		{name: "skip at baseline", modify: func(p *Profile) { *p, _ = ProfileAt(Baseline); p.Skip = []string{"cis-3.3.7"} },
			want: []string{`Skip[0]: "cis-3.3.7": the baseline level applies no rule to skip`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultProfile()
			tc.modify(&p)
			err := p.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors %q, want %d %q", len(got), got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("error %d = %q, want it to say %q", i, got[i], tc.want[i])
				}
			}
		})
	}
	if _, err := ProfileAt("level3"); !errors.Is(err, ErrInvalidProfile) {
		t.Errorf("ProfileAt(level3) = %v, want ErrInvalidProfile", err)
	}
}

func TestActive(t *testing.T) {
	all := DefaultProfile().Active(FamilyDebian)
	p := DefaultProfile()
	p.Skip = []string{"cis-3.3.7", "cis-6.2.1.1"}
	less := p.Active(FamilyDebian)
	if len(less) != len(all)-2 || slices.ContainsFunc(less, func(r Rule) bool { return slices.Contains(p.Skip, r.ID) }) {
		t.Errorf("skipping 2 of %d rules left %d", len(all), len(less))
	}
	b, _ := ProfileAt(Baseline)
	if got := b.Active(FamilyDebian); len(got) != 0 {
		t.Errorf("baseline applies %d rules, want none", len(got))
	}
	for _, r := range DefaultProfile().Active(FamilyRHEL) {
		if len(r.Packages[FamilyDebian]) > 0 && len(r.Packages[FamilyRHEL]) == 0 || slices.ContainsFunc(r.AuditRules, func(a string) bool { return strings.Contains(a, "apparmor") }) {
			t.Errorf("%s applies to rhel but names only Debian's packages or AppArmor", r.ID)
		}
	}
	ids := map[string]bool{}
	for _, r := range Rules() {
		if ids[r.ID] || !strings.HasPrefix(r.ID, "cis-") || r.Title == "" || r.Rationale == "" || len(r.Families) == 0 {
			t.Errorf("rule %q: duplicate id, or no title, rationale or family", r.ID)
		}
		ids[r.ID] = true
	}
}

func TestParseAuditRule(t *testing.T) {
	for _, tc := range []struct{ written, printed string }{
		// auditctl -l prints -k as -F key=, auid!=unset as auid!=-1, and may order syscalls its own way.
		{"-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -k time-change",
			"-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -F key=time-change"},
		{"-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -k time-change",
			"-a always,exit -F arch=b64 -S clock_settime -S adjtimex,settimeofday -F key=time-change"},
		{"-a always,exit -F arch=b64 -C euid!=uid -F auid!=unset -S execve -k user_emulation",
			"-a always,exit -F arch=b64 -S execve -C uid!=euid -F auid!=-1 -F key=user_emulation"},
		{"-w /etc/sudoers.d -p wa -k scope", "-w /etc/sudoers.d/ -p wa -k scope"},
		{"-w /etc/group -p wa -k identity", "-w /etc/group -p aw -k identity"},
	} {
		w, ok1 := parseAuditRule(tc.written)
		p, ok2 := parseAuditRule(tc.printed)
		if !ok1 || !ok2 || !w.equal(p) {
			t.Errorf("%q and %q: %+v, %+v; want equal", tc.written, tc.printed, w, p)
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"-w /etc/group -p wa -k identity", "-w /etc/group -p wa -k other"},
		{"-w /etc/group -p wa -k identity", "-w /etc/group -p w -k identity"},
		{"-a always,exit -F arch=b64 -S execve -k x", "-a always,exit -F arch=b32 -S execve -k x"},
		{"-a always,exit -F arch=b64 -S init_module,delete_module -k m", "-a always,exit -F arch=b64 -S init_module -k m"},
	} {
		a, _ := parseAuditRule(tc.a)
		b, _ := parseAuditRule(tc.b)
		if a.equal(b) {
			t.Errorf("%q and %q are equal, want different", tc.a, tc.b)
		}
	}
	if _, ok := parseAuditRule("No rules"); ok {
		t.Error(`"No rules" parsed as a rule`)
	}
}

// TestCheckRules judges the probe script's output as captured from real machines (the bake test
// with KILN_CAPTURE_DIR): the baked image passes every level1 rule, the base image fails most, and
// each kind of drift, made by changing one line of the baked image's output, is named.
func TestCheckRules(t *testing.T) {
	rules := DefaultProfile().Active(FamilyDebian)
	baked := string(readFixture(t, "probe-hardened.txt"))
	if d := VerifyRules(rules, []byte(baked)); len(d) > 0 {
		t.Errorf("the baked image's probe output drifts:\n%s", renderDrifts(d))
	}
	base := VerifyRules(rules, readFixture(t, "probe-debian12-base.txt"))
	golden(t, "probe-debian12-base.drifts.golden", renderDrifts(base))

	replace := func(old, new string) string {
		if !strings.Contains(baked, old) {
			t.Fatalf("probe-hardened.txt lacks %q", old)
		}
		return strings.Replace(baked, old, new, 1)
	}
	for _, tc := range []struct {
		name, out, want string
	}{
		{"a kernel parameter", replace("net.ipv4.conf.all.send_redirects = 0", "net.ipv4.conf.all.send_redirects = 1"),
			"cis-3.3.2 net.ipv4.conf.all.send_redirects: is 1, want 0"},
		{"a parameter the kernel lacks", replace("net.ipv4.tcp_syncookies = 1\n", ""),
			"cis-3.3.10 net.ipv4.tcp_syncookies: not in sysctl -a, want 1"},
		{"a module that would load", replace("dccp: install /bin/false", "dccp: insmod /lib/modules/6.1.0/kernel/net/dccp/dccp.ko"),
			`cis-3.2.1 dccp: modprobe -n -v dccp says "insmod /lib/modules/6.1.0/kernel/net/dccp/dccp.ko", want it to run /bin/false`},
		{"a module that is loaded", replace("### modules\n", "### modules\nsctp 434176 2 - Live 0x0000000000000000\n"),
			"cis-3.2.4 sctp: is loaded"},
		{"a unit that is not running", replace("auditd.service enabled active", "auditd.service enabled inactive"),
			`cis-6.2.1.1 auditd.service: is "enabled inactive", want enabled and active`},
		{"an audit rule not loaded", replace("-w /etc/shadow -p wa -k identity\n", ""),
			"cis-6.2.3.8 audit: auditctl -l lacks -w /etc/shadow -p wa -k identity"},
		{"a file mode", replace("/etc/shadow 640 root shadow", "/etc/shadow 644 root shadow"),
			`cis-7.1.x /etc/shadow: is "644 root shadow" (mode owner group), want "640 root shadow"`},
		{"a probe", replace("### probe cis-5.4.3.3/0\n0027", "### probe cis-5.4.3.3/0\n0022"),
			"cis-5.4.3.3 a login shell's umask: `bash -lc umask` printed \"0022\", want \"0027\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := VerifyRules(rules, []byte(tc.out))
			if len(d) != 1 || d[0].String() != tc.want {
				t.Errorf("drifts:\n%s\nwant exactly: %s", renderDrifts(d), tc.want)
			}
		})
	}
	// Nothing read: every rule with something to check drifts, none passes by silence.
	for _, r := range CheckRules(rules, nil) {
		checks := len(r.Rule.Sysctls) + len(r.Rule.Modules) + len(r.Rule.Services) + len(r.Rule.AuditRules) + len(r.Rule.Probes)
		for _, m := range r.Rule.Modes {
			if !m.Optional {
				checks++
			}
		}
		if checks > 0 && len(r.Drifts) == 0 {
			t.Errorf("%s passes on empty output", r.Rule.ID)
		}
	}
}
