package bake

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/images/harden"
	"github.com/kiln-dev/kiln/images/packer/packertest"
	"github.com/kiln-dev/kiln/internal/cli"
	"github.com/kiln-dev/kiln/internal/testtool"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
)

// imageDir is a kiln image directory: disk.qcow2, vmlinuz, initrd.img and cmdline. The base image
// (hack/tools.sh base-image) and the baked one (hack/tools.sh baked-image) are laid out alike.
type imageDir struct{ dir string }

func (b imageDir) path(name string) string { return filepath.Join(b.dir, name) }

func (b imageDir) cmdline(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(b.path("cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func needBaseImage(t testing.TB) imageDir {
	t.Helper()
	testtool.ExclusiveVMs(t)
	testtool.Tool(t, "qemu")
	return imageDir{dir: filepath.Dir(testtool.Tool(t, "base-image"))}
}

// needBakedImage returns the hardened image that hack/tools.sh baked-image bakes once per base image,
// packer set and kiln source and shares among the tests that boot it. A bake that fails shows the
// build machine's console in the message. Call it after needBaseImage, which takes the VM lock: the
// bake boots a VM too.
func needBakedImage(t testing.TB) imageDir {
	t.Helper()
	img := testtool.File(t, "baked-image")
	if filepath.Base(img) != "disk.qcow2" {
		t.Fatalf("hack/tools.sh baked-image printed %s, want a disk.qcow2", img)
	}
	return imageDir{dir: filepath.Dir(img)}
}

// kiln runs the kiln command line in-process.
func kiln(t testing.TB, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := cli.Main(args, &out, &errOut); code != 0 {
		t.Fatalf("kiln %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	return out.String()
}

// bake runs `kiln image build --target qemu` on the base image, as hack/tools.sh baked-image does
// (kiln makes the build key and the build Ignition config itself; --base-image fills the base image's
// disk, kernel, initrd and command line), and returns the hardened qcow2 and the wall time of the
// build.
func bake(t testing.TB, base imageDir, work string) (string, time.Duration) {
	t.Helper()
	p := packertest.New(t, "packer-plugin-qemu")
	for _, kv := range p.Env {
		if strings.HasPrefix(kv, "PACKER_") || strings.HasPrefix(kv, "CHECKPOINT_") {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, v)
		}
	}
	start := time.Now()
	console := filepath.Join(work, "build-console.log")
	args := []string{"image", "build", "--target", "qemu", "--packer", p.Path, "--work-dir", work,
		"--base-image", base.dir,
		"--var", "accelerator=tcg",
		// RSA-4096 key generation at each first boot takes minutes under TCG on a busy machine; the
		// ssh-audit policy says 3072.
		"--var", "rsa_host_key_bits=3072",
		"--var", "serial_log=" + console,
	}
	// Packer's progress goes to the test log line by line as it comes.
	w := &logWriter{t: t}
	if code := cli.Main(args, w, w); code != 0 {
		data, _ := os.ReadFile(console)
		t.Fatalf("kiln image build: exit %d; the build machine's console:\n%s", code, tail(data, 3000))
	}
	elapsed := time.Since(start)
	img := filepath.Join(work, "output-kiln-qemu", "kiln.qcow2")
	if _, err := os.Stat(img); err != nil {
		t.Fatalf("packer build left no image: %v", err)
	}
	for _, f := range []string{"kiln-build-key", "kiln-build.ign"} {
		if _, err := os.Stat(filepath.Join(work, f)); !os.IsNotExist(err) {
			t.Errorf("the build access %s is still in the work directory: %v", f, err)
		}
	}
	return img, elapsed
}

// logWriter writes each line to the test log.
type logWriter struct {
	t   testing.TB
	buf []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.t.Log(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// vm is a QEMU VM (TCG) booted from a throwaway overlay of an image, with SSH forwarded to loopback.
type vm struct {
	port    int
	cmd     *exec.Cmd
	console string
	// hostKeys are the keys the node reported on its serial console, the only ones accepted (pin);
	// knownHosts is a known_hosts file of them.
	hostKeys   []ssh.PublicKey
	knownHosts string
}

// pin waits for the host key report that kiln's Ignition config makes the node write to its serial
// console, and keeps its keys as the only ones the test accepts.
func (v *vm) pin(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		console, err := os.ReadFile(v.console)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := hostkeys.Parse(console)
		if err == nil {
			v.hostKeys = keys
			break
		}
		if !errors.Is(err, provisioner.ErrNoHostKeys) || time.Now().After(deadline) {
			t.Fatalf("host key report on the serial console: %v; console:\n%s", err, tail(console, 4000))
		}
		time.Sleep(time.Second)
	}
	v.knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	lines := hostkeys.KnownHostsLines("127.0.0.1:"+strconv.Itoa(v.port), v.hostKeys)
	if err := os.WriteFile(v.knownHosts, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// boot starts the image directory's disk (through a new qcow2 overlay) with its kernel and the
// Ignition config ign, and waits for sshd's banner.
func boot(t testing.TB, image imageDir, ign string) *vm {
	t.Helper()
	dir := t.TempDir()
	overlay := filepath.Join(dir, "overlay.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image.path("disk.qcow2"), overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	v := &vm{port: testtool.FreePort(t), console: filepath.Join(dir, "console.log")}
	v.cmd = exec.Command("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg,thread=multi", "-m", "2048", "-smp", "2",
		"-display", "none", "-serial", "file:"+v.console, "-monitor", "none",
		"-kernel", image.path("vmlinuz"), "-initrd", image.path("initrd.img"), "-append", image.cmdline(t),
		"-drive", "file="+overlay+",if=virtio,format=qcow2",
		"-fw_cfg", "name=opt/com.coreos/config,file="+ign,
		"-netdev", fmt.Sprintf("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22", v.port),
		"-device", "virtio-net-pci,netdev=net0")
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	t.Cleanup(func() {
		v.cmd.Process.Kill()
		v.cmd.Wait()
	})
	deadline := time.Now().Add(12 * time.Minute)
	for {
		if banner, err := sshBanner(v.port); err == nil && strings.HasPrefix(banner, "SSH-2.0-") {
			return v
		}
		if time.Now().After(deadline) {
			console, _ := os.ReadFile(v.console)
			t.Fatalf("no SSH banner on 127.0.0.1:%d after 12 min; console:\n%s", v.port, tail(console, 4000))
		}
		time.Sleep(time.Second)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func sshBanner(port int) (string, error) {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return bufio.NewReader(c).ReadString('\n')
}

// dial logs in with signer, accepting only the host keys pin read, and returns the client and the host
// key the server showed.
func (v *vm) dial(user string, signer ssh.Signer) (*ssh.Client, ssh.PublicKey, error) {
	var hostKey ssh.PublicKey
	c, err := ssh.Dial("tcp", "127.0.0.1:"+strconv.Itoa(v.port), &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			for _, p := range v.hostKeys {
				if bytes.Equal(p.Marshal(), k.Marshal()) {
					hostKey = k
					return nil
				}
			}
			return fmt.Errorf("host key %s is not one the node reported on its console (%v)", ssh.FingerprintSHA256(k), hostkeys.Fingerprints(v.hostKeys))
		},
		HostKeyAlgorithms: keyAlgorithms(v.hostKeys),
		Timeout:           30 * time.Second,
	})
	return c, hostKey, err
}

func run(t testing.TB, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errOut bytes.Buffer
	s.Stdout, s.Stderr = &out, &errOut
	if err := s.Run(cmd); err != nil {
		t.Fatalf("%s: %v\n%s%s", cmd, err, out.String(), errOut.String())
	}
	return out.String()
}

// keyAlgorithms are the host key algorithms of keys, so that a host offering several is asked for one
// of them.
func keyAlgorithms(keys []ssh.PublicKey) []string {
	var out []string
	for _, k := range keys {
		if k.Type() == ssh.KeyAlgoRSA {
			out = append(out, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
			continue
		}
		out = append(out, k.Type())
	}
	return out
}

// opensshLogin tries the OpenSSH client with the given options and returns its stderr.
func opensshLogin(t testing.TB, v *vm, user string, opts ...string) string {
	t.Helper()
	args := append([]string{"-p", strconv.Itoa(v.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + v.knownHosts, "-o", "ConnectTimeout=30"}, opts...)
	args = append(args, user+"@127.0.0.1", "true")
	cmd := exec.Command("ssh", args...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Run(); err == nil {
		t.Fatalf("ssh %s succeeded, want it refused", strings.Join(args, " "))
	}
	return errOut.String()
}

// sshAudit runs ssh-audit with the repository's policy and returns its exit code and output.
func sshAudit(t testing.TB, port int) (int, string) {
	t.Helper()
	bin, err := exec.LookPath("ssh-audit")
	if err != nil {
		t.Fatalf("ssh-audit not found: apt-get install -y ssh-audit (hack/tools.sh deps installs it)")
	}
	policy, err := filepath.Abs(filepath.Join("testdata", "ssh-audit-policy.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// A generous timeout: under TCG on a busy machine sshd can take seconds to answer.
	out, err := exec.Command(bin, "-n", "-t", "60", "-P", policy, "-p", strconv.Itoa(port), "127.0.0.1").CombinedOutput()
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode(), string(out)
	} else if err != nil {
		t.Fatalf("ssh-audit: %v", err)
	}
	return 0, string(out)
}

// debugfs lists or reads paths inside an ext4 image file (the base image has no partition table).
func debugfs(t testing.TB, raw, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, raw).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", request, err, out)
	}
	return string(out)
}

// TestBake checks the hardened image that hack/tools.sh baked-image bakes from the base image with the
// real packer (kiln image build --target qemu): the one the other VM tests share.
func TestBake(t *testing.T) {
	base := needBaseImage(t)
	baked := needBakedImage(t)
	img := baked.path("disk.qcow2")
	t.Logf("the baked image: %s (the build machine's console: %s)", img, baked.path("build-console.log"))
	for _, f := range []string{"vmlinuz", "initrd.img", "cmdline"} {
		want, err := os.ReadFile(base.path(f))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(baked.path(f)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("the baked image's %s is not the base image's: %v", f, err)
		}
	}

	t.Run("image file system", func(t *testing.T) {
		raw := filepath.Join(t.TempDir(), "disk.raw")
		if out, err := exec.Command("qemu-img", "convert", "-O", "raw", img, raw).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert: %v\n%s", err, out)
		}
		etcSSH := debugfs(t, raw, "ls /etc/ssh")
		if strings.Contains(etcSSH, "ssh_host_") {
			t.Errorf("the image holds host keys:\n%s", etcSSH)
		}
		if !strings.Contains(etcSSH, "sshd_config.d") || !strings.Contains(etcSSH, "kiln-banner") {
			t.Errorf("/etc/ssh is not the hardened one:\n%s", etcSSH)
		}
		if got := debugfs(t, raw, "cat /etc/machine-id"); !strings.Contains(got, "uninitialized") {
			t.Errorf("/etc/machine-id = %q, want uninitialized", got)
		}
		if got := debugfs(t, raw, "ls /home"); strings.Contains(got, "packer") {
			t.Errorf("the build user's home is in the image:\n%s", got)
		}
		if got := debugfs(t, raw, "cat /etc/passwd"); strings.Contains(got, "packer:") {
			t.Errorf("the build user is in /etc/passwd:\n%s", got)
		}
		if got := debugfs(t, raw, "ls /etc/sudoers.d"); strings.Contains(got, "90-kiln-build") {
			t.Errorf("the build user's sudoers grant is in the image:\n%s", got)
		}
		if got := debugfs(t, raw, "stat /etc/kiln/ignition-firstboot"); !strings.Contains(got, "Inode:") {
			t.Errorf("Ignition's first-boot stamp is not re-armed:\n%s", got)
		}
	})

	// A QEMU cluster: its starter spec admits SSH from QEMU's user-network gateway, where forwarded
	// connections come from.
	cdir := t.TempDir()
	t.Setenv("KILN_STATE_DIR", filepath.Join(cdir, "state"))
	spec := filepath.Join(cdir, "cluster.yaml")
	kiln(t, "init", "bake", "-f", spec, "--provider", "qemu")
	if data, err := os.ReadFile(spec); err != nil || !bytes.Contains(data, []byte("- 10.0.2.2/32")) {
		t.Fatalf("the qemu starter spec does not admit SSH from 10.0.2.2 (QEMU's gateway): %v\n%s", err, data)
	}
	ign := filepath.Join(cdir, "worker.ign")
	kiln(t, "render", "ignition", "-f", spec, "--role", "worker", "--node", "bake-workers-0", "--output-file", ign)
	clusterKey := filepath.Join(cdir, "id_kiln")
	kiln(t, "ssh-key", "-f", spec, "--output-file", clusterKey)
	pemKey, err := os.ReadFile(clusterKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}

	first := boot(t, baked, ign)
	first.pin(t)
	c, hostKey1, err := first.dial("kiln", signer)
	if err != nil {
		t.Fatalf("key login as kiln: %v", err)
	}
	defer c.Close()

	t.Run("ignition applied at first boot", func(t *testing.T) {
		if got := strings.TrimSpace(run(t, c, "hostname")); got != "bake-workers-0" {
			t.Errorf("hostname = %q, want bake-workers-0", got)
		}
		if got := run(t, c, "test -e /etc/kiln/ignition-firstboot && echo armed || echo consumed"); strings.TrimSpace(got) != "consumed" {
			t.Errorf("first-boot stamp still there after Ignition ran")
		}
		if got := run(t, c, "id -nG"); !strings.Contains(got, "kiln") {
			t.Errorf("id -nG = %q", got)
		}
	})
	t.Run("host keys made at this boot", func(t *testing.T) {
		out := run(t, c, `boot=$(awk '/^btime/ {print $2}' /proc/stat); for f in /etc/ssh/ssh_host_*_key; do echo "$f $(stat -c %Y "$f") $boot"; done`)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Errorf("host keys = %q, want ed25519 and RSA only", lines)
		}
		for _, l := range lines {
			f := strings.Fields(l)
			mtime, _ := strconv.Atoi(f[1])
			btime, _ := strconv.Atoi(f[2])
			if len(f) != 3 || mtime < btime {
				t.Errorf("%s was made before this boot (mtime %d, boot %d)", f[0], mtime, btime)
			}
		}
	})
	t.Run("kiln image audit", func(t *testing.T) {
		out := kiln(t, "image", "audit", "127.0.0.1", "-p", strconv.Itoa(first.port), "-f", spec, "--known-hosts", first.knownHosts)
		if !strings.Contains(out, "no drift") {
			t.Errorf("kiln image audit: %s", out)
		}
		dump := run(t, c, "apt-config dump")
		for _, w := range []string{
			`Unattended-Upgrade::Origins-Pattern:: "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";`,
			`Unattended-Upgrade::Automatic-Reboot "false";`,
			`Unattended-Upgrade::Automatic-Reboot-Time "02:00";`,
		} {
			if !strings.Contains(dump, w) {
				t.Errorf("apt-config dump lacks %s", w)
			}
		}
		sshdT := run(t, c, "sudo -n sshd -T")
		for _, w := range []string{"passwordauthentication no", "permitrootlogin no", "authenticationmethods publickey"} {
			if !strings.Contains(sshdT, w+"\n") {
				t.Errorf("sshd -T lacks %q", w)
			}
		}
	})
	t.Run("password login refused", func(t *testing.T) {
		got := opensshLogin(t, first, "kiln", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive")
		if !strings.Contains(got, "Permission denied (publickey)") {
			t.Errorf("ssh with a password: %q, want Permission denied (publickey)", got)
		}
	})
	t.Run("root refused", func(t *testing.T) {
		if _, _, err := first.dial("root", signer); err == nil {
			t.Error("root logged in with the cluster key")
		}
		got := opensshLogin(t, first, "root", "-i", clusterKey, "-o", "IdentitiesOnly=yes")
		if !strings.Contains(got, "Permission denied (publickey)") {
			t.Errorf("ssh root: %q", got)
		}
	})
	t.Run("ssh-audit policy passes", func(t *testing.T) {
		if code, out := sshAudit(t, first.port); code != 0 {
			t.Errorf("ssh-audit -P against the baked image: exit %d, want 0\n%s", code, out)
		}
	})
	t.Run("second boot has other host keys", func(t *testing.T) {
		second := boot(t, baked, ign)
		second.pin(t)
		c2, hostKey2, err := second.dial("kiln", signer)
		if err != nil {
			t.Fatalf("key login on the second machine: %v", err)
		}
		c2.Close()
		if bytes.Equal(hostKey1.Marshal(), hostKey2.Marshal()) {
			t.Errorf("two machines of the image share the host key %s", ssh.FingerprintSHA256(hostKey1))
		}
	})
	// Every rule of level1, checked on the running node; the base image, booted with the same
	// config, is the negative control.
	rules := harden.DefaultProfile().Active(harden.FamilyDebian)
	probe := harden.ShellQuote([]string{"sudo", "-n", "sh", "-c", harden.ProbeScript(rules)})
	bakedOut := run(t, c, probe)
	capture(t, "probe-baked.txt", bakedOut)
	bakedPass := passing(harden.CheckRules(rules, []byte(bakedOut)))
	t.Run("every level1 rule passes on the baked image", func(t *testing.T) {
		if drifts := harden.VerifyRules(rules, []byte(bakedOut)); len(drifts) > 0 {
			t.Errorf("%d of %d rules pass; drifts:\n%s", bakedPass, len(rules), joinDrifts(drifts))
		}
		// containerd confines containers only when it finds apparmor_parser (cis-1.3.1.1).
		if got := run(t, c, "test -x /sbin/apparmor_parser && echo present"); strings.TrimSpace(got) != "present" {
			t.Errorf("/sbin/apparmor_parser: %q", got)
		}
	})
	t.Run("the unhardened base fails ssh-audit and the level1 rules", func(t *testing.T) {
		stock := boot(t, base, ign)
		stock.pin(t)
		sc, _, err := stock.dial("kiln", signer)
		if err != nil {
			t.Fatalf("key login on the base image: %v", err)
		}
		defer sc.Close()
		baseOut := run(t, sc, probe)
		capture(t, "probe-base.txt", baseOut)
		basePass := passing(harden.CheckRules(rules, []byte(baseOut)))
		t.Logf("level1 rules passing: %d of %d on the baked image, %d of %d on the base image", bakedPass, len(rules), basePass, len(rules))
		if basePass >= bakedPass || basePass > len(rules)/2 {
			t.Errorf("the base image passes %d of %d rules, want far fewer than the baked image's %d", basePass, len(rules), bakedPass)
		}
		if code, out := sshAudit(t, stock.port); code != 3 {
			t.Errorf("ssh-audit -P against the base image: exit %d, want 3 (policy failed)\n%s", code, out)
		}
	})
}

// passing counts the rules without drift.
func passing(results []harden.RuleResult) int {
	n := 0
	for _, r := range results {
		if len(r.Drifts) == 0 {
			n++
		}
	}
	return n
}

func joinDrifts(drifts []harden.Drift) string {
	var b strings.Builder
	for _, d := range drifts {
		b.WriteString("  " + d.String() + "\n")
	}
	return b.String()
}

// capture keeps a probe's output in $KILN_CAPTURE_DIR, when set: how images/harden's fixtures
// (testdata/probe-*.txt) are refreshed from real machines.
func capture(t *testing.T, name, out string) {
	if dir := os.Getenv("KILN_CAPTURE_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// BenchmarkBake measures the wall time of one fresh bake (kiln image build --target qemu with TCG, not
// the cached one of hack/tools.sh baked-image); the goal is under 120 s on 2 cores.
func BenchmarkBake(b *testing.B) {
	base := needBaseImage(b)
	for b.Loop() {
		_, elapsed := bake(b, base, b.TempDir())
		b.ReportMetric(elapsed.Seconds(), "s/bake")
	}
}
