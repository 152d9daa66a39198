package cli

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/cis"
	"github.com/kiln-dev/kiln/bootstrap/firewall"
	"github.com/kiln-dev/kiln/internal/testtool"
)

func TestAuditControlPlane(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	code, out, errOut := kiln(t, dir, "audit", "controlplane")
	if code != 0 || !strings.Contains(errOut, "all 40 checks passed") {
		t.Fatalf("audit controlplane of the starter spec: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"1.2.1   kube-apiserver           PASS    --anonymous-auth is false", "2.7     etcd"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}

	// A spec that turns the audit log off fails the audit-log items, and the command fails.
	data, err := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "cluster.yaml", strings.Replace(string(data), "audit:\n      enabled: true", "audit:\n      enabled: false", 1))
	code, out, errOut = kiln(t, dir, "audit", "controlplane", "-o", "json")
	if code == 0 {
		t.Fatalf("audit controlplane passed without an audit log:\n%s", out)
	}
	var fs []cis.Finding
	if err := json.Unmarshal([]byte(out), &fs); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var failed []string
	for _, f := range fs {
		if f.Result == cis.Fail {
			failed = append(failed, f.ID)
		}
	}
	if strings.Join(failed, " ") != "1.2.16 1.2.17 1.2.18 1.2.19" {
		t.Errorf("failed %v, want the audit log items 1.2.16 to 1.2.19", failed)
	}
	if !strings.Contains(errOut, "4 of 40 checks failed") {
		t.Errorf("stderr: %s", errOut)
	}
}

func TestAuditNetworkEgressAndPools(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	data, err := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.Replace(string(data), "    adminCIDRs:\n", "    egress:\n      policy: restricted\n      allowedCIDRs: [192.0.2.53/32]\n    adminCIDRs:\n", 1)
	spec = strings.Replace(spec, "      maxUnavailable: 1\n", "      maxUnavailable: 1\n      ingress:\n        - {protocol: tcp, port: 30000, endPort: 32767, fromCIDRs: [0.0.0.0/0], reason: public NodePorts}\n", 1)
	write(t, dir, "cluster.yaml", spec)

	// The pool's rule is a warning: validate passes, --strict fails.
	out := mustKiln(t, dir, "validate")
	if !strings.Contains(out, "warning: opens tcp 30000-32767 on the pool's nodes from anywhere, beyond kiln's firewall intent") {
		t.Errorf("validate:\n%s", out)
	}
	if code, out, _ := kiln(t, dir, "validate", "--strict"); code == 0 {
		t.Errorf("validate --strict passed a pool that opens NodePorts to anywhere:\n%s", out)
	}

	out = mustKiln(t, dir, "audit", "network")
	for _, want := range []string{"worker (pool workers)  in   tcp    30000-32767  0.0.0.0/0", "192.0.2.53/32", "everything else outbound is dropped"} {
		if !strings.Contains(out, want) {
			t.Errorf("audit network lacks %q:\n%s", want, out)
		}
	}
}

// TestAuditNetworkSSH compares a real node's ruleset over SSH: the "node" is a network namespace
// made by the test, reached through a veth pair, with the worker ruleset loaded and a real sshd
// (Debian's openssh-server) listening behind it; the test's address is the cluster's admin range.
func TestAuditNetworkSSH(t *testing.T) {
	testtool.RequireRoot(t)
	sshd := debianProgram(t, "/usr/sbin/sshd", "openssh-server")
	nft := debianProgram(t, "/usr/sbin/nft", "nftables")
	debianProgram(t, "/usr/bin/sudo", "sudo")
	ipCmd := debianProgram(t, "/usr/sbin/ip", "iproute2")

	rnd := make([]byte, 3)
	if _, err := rand.Read(rnd); err != nil {
		t.Fatal(err)
	}
	// A /30 of 198.18.0.0/15 (RFC 2544, for tests), unlikely to be a real network here.
	hostIP := fmt.Sprintf("198.18.%d.%d", rnd[0], 4*(int(rnd[1])%63)+1)
	nodeIP := fmt.Sprintf("198.18.%d.%d", rnd[0], 4*(int(rnd[1])%63)+2)
	ns := fmt.Sprintf("kaudit-%x", rnd)
	veth := fmt.Sprintf("kau%x", rnd)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipCmd, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command(ipCmd, "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", ns, err, out)
		}
	})
	run("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	run("addr", "add", hostIP+"/30", "dev", veth)
	run("link", "set", veth, "up")
	run("-n", ns, "link", "set", "lo", "up")
	run("-n", ns, "addr", "add", nodeIP+"/30", "dev", "eth0")
	run("-n", ns, "link", "set", "eth0", "up")

	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	data, err := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "cluster.yaml", strings.Replace(string(data), qemuHostCIDR, hostIP+"/32", 1))

	// The node's firewall: the worker ruleset of the spec, as Ignition would install it.
	c, err := loadSpec(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	intent, err := firewall.NewIntent(c)
	if err != nil {
		t.Fatal(err)
	}
	ruleset, err := firewall.Nftables(intent.Node(v1alpha1.RoleWorker, c.Spec.NodePools[0].Name), v1alpha1.RoleWorker)
	if err != nil {
		t.Fatal(err)
	}
	rulesetFile := filepath.Join(dir, "firewall.nft")
	if err := os.WriteFile(rulesetFile, ruleset, 0o600); err != nil {
		t.Fatal(err)
	}
	inNode := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipCmd, append([]string{"netns", "exec", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), ns, err, out)
		}
	}
	inNode(nft, "-f", rulesetFile)

	// sshd: its own host key and config, the cluster's public key for root, in the foreground.
	mustKiln(t, dir, "ssh-key", "--output-file", "id_cluster")
	keyPEM, err := os.ReadFile(filepath.Join(dir, "id_cluster"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "authorized_keys", string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host_key")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	hostPub, err := os.ReadFile(filepath.Join(dir, "host_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "known_hosts", nodeIP+" "+string(hostPub))
	write(t, dir, "sshd_config", strings.Join([]string{
		"ListenAddress " + nodeIP + ":22",
		"HostKey " + filepath.Join(dir, "host_key"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PidFile none",
		"UsePAM no",
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"StrictModes no",
		"LogLevel VERBOSE",
		"UseDNS no",
		"PrintLastLog no",
		"PrintMotd no",
		"",
	}, "\n"))
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(ipCmd, "netns", "exec", ns, sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Logf("sshd log:\n%s", log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(nodeIP, "22"), time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd on %s:22 (through the node's firewall) not reachable: %v", nodeIP, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	audit := func(extra ...string) (int, string, string) {
		t.Helper()
		args := append([]string{"audit", "network", "--ssh", nodeIP, "--user", "root", "--role", "worker",
			"--known-hosts", filepath.Join(dir, "known_hosts")}, extra...)
		return kiln(t, dir, args...)
	}
	// As loaded: no differences (with the cluster's key from the state store).
	if code, out, errOut := audit(); code != 0 || !strings.Contains(errOut, "matches the worker (pool workers) intent (9 rules)") {
		t.Fatalf("audit of the node as loaded: exit %d\n%s%s", code, out, errOut)
	}

	// Drift on the node: someone opens a debug port and drops the kubelet rule.
	inNode(nft, "add", "rule", "inet", firewall.Table, "input", "tcp", "dport", "8080", "accept", "comment", `"debug"`)
	code, out, errOut := audit("-o", "json", "-i", filepath.Join(dir, "id_cluster"))
	if code == 0 {
		t.Fatalf("audit passed a node with an extra open port:\n%s", out)
	}
	var res firewall.Comparison
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := firewall.Difference{Kind: firewall.Extra, Chain: "input", Rule: "tcp dport 8080 accept", Why: "debug"}
	if len(res.Differences) != 1 || res.Differences[0] != want {
		t.Errorf("differences %+v, want only %+v", res.Differences, want)
	}
	if !strings.Contains(errOut, "differs from the worker (pool workers) intent in 1 places") {
		t.Errorf("stderr: %s", errOut)
	}

	// A host key that is not the node's is refused.
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "other_key")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	otherPub, err := os.ReadFile(filepath.Join(dir, "other_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "known_hosts", nodeIP+" "+string(otherPub))
	if code, _, errOut := audit(); code == 0 || !strings.Contains(errOut, "key mismatch") {
		t.Errorf("a wrong host key: exit %d, %s", code, errOut)
	}
}

// debianProgram returns path if it is an executable, failing under CI and skipping elsewhere if not.
func debianProgram(t *testing.T, path, pkg string) string {
	t.Helper()
	if _, err := exec.LookPath(path); err != nil {
		msg := fmt.Sprintf("%s: %v; install the Debian package %s (hack/tools.sh deps)", path, err, pkg)
		if testtool.CI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}
