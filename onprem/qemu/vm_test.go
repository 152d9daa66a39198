package qemu_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/internal/ignitiontest"
	"github.com/kiln-dev/kiln/internal/testtool"
	"github.com/kiln-dev/kiln/onprem/qemu"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
	"github.com/kiln-dev/kiln/state"
)

// TestBaseImageNode boots a worker from the base image (hack/tools.sh base-image) with its real
// kiln-rendered Ignition config, and a second one beside it, and checks what a node promises: key login
// as the admin user over the forwarded port, no password login, its hostname and private address, no way
// out of the user network, the peer reachable over the private network, Ignition not run again on a
// reboot, and a killed VM listed as failed. SSH accepts only the host keys the node reported on its
// serial console (provisioner.HostKeyReporter), which it reports again at every boot.
func TestBaseImageNodes(t *testing.T) {
	testtool.RequireRoot(t)
	testtool.ExclusiveVMs(t)
	image := filepath.Join(filepath.Dir(testtool.Tool(t, "base-image")), "disk.qcow2")
	cfg := testConfig(t)
	cfg.MemoryMiB, cfg.CPUs = 1024, 1

	cluster := v1alpha1.Starter("vm")
	// QEMU's user network: the guest sees SSH connections come from 10.0.2.2.
	cluster.Spec.Network.AdminCIDRs = append(cluster.Spec.Network.AdminCIDRs, "10.0.2.2/32")
	if fs := v1alpha1.Validate(cluster); len(fs) > 0 {
		t.Fatalf("spec: %v", fs)
	}
	now := time.Now()
	bundle, err := secrets.Generate(cluster, rand.Reader, now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := secrets.NewBootstrapToken(rand.Reader, now, time.Hour, "kiln node join")
	if err != nil {
		t.Fatal(err)
	}
	bundle.BootstrapTokens = append(bundle.BootstrapTokens, tok)
	r, err := ignition.New(ignition.Input{Cluster: cluster, Secrets: bundle, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	name := provisioner.MachineName("vm", "workers", 0)
	peer := provisioner.MachineName("vm", "workers", 1)
	configs := map[string][]byte{}
	for _, n := range []string{name, peer} {
		configs[n], err = r.Render(ignition.Node{Name: n, Role: v1alpha1.RoleWorker, Pool: "workers"})
		if err != nil {
			t.Fatal(err)
		}
	}
	signer, err := ssh.ParsePrivateKey(bundle.SSH.PrivateKeyPEM)
	if err != nil {
		t.Fatal(err)
	}

	p, err := qemu.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	// The peer boots from a stub and fetches its config once from kiln's config server, which the
	// test runs as kiln apply does.
	st, cs := serveConfigs(ctx, t, p, "vm", &bundle.ClusterCA)
	token, ticket, err := enroll.Issue(st, enroll.Issuing{Cluster: "vm", Machine: peer, Config: configs[peer], Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if configs[peer], err = (enroll.Stub{CA: bundle.ClusterCA.CertPEM, Machine: peer, URL: cs.URL + enroll.ConfigPath("vm", peer),
		Token: token, ConfigHash: ticket.ConfigHash}).Render(); err != nil {
		t.Fatal(err)
	}
	machines := map[string]provisioner.Machine{}
	for _, n := range []string{name, peer} { // in this order: the peer's /etc/hosts names the first
		m, err := p.Create(ctx, provisioner.MachineSpec{
			Cluster: "vm", Name: n, Role: v1alpha1.RoleWorker, Pool: "workers", Image: image, Ignition: configs[n],
		})
		if err != nil {
			t.Fatal(err)
		}
		machines[n] = m
		t.Cleanup(func() {
			if err := p.Delete(context.Background(), n); err != nil {
				t.Errorf("Delete: %v", err)
			}
		})
	}
	m := machines[name]
	serial := filepath.Join(cfg.StateDir, "vm", name, "serial.log")
	defer func() {
		if t.Failed() {
			data, _ := os.ReadFile(serial)
			t.Logf("serial console of %s (last 6000 bytes):\n%s", name, tail(data, 6000))
		}
	}()
	addr, err := p.SSHAddress(name)
	if err != nil {
		t.Fatal(err)
	}
	user := cluster.Spec.SSH.User

	// A fresh VM's host key is made at its first boot; the node reports it on its serial console, and
	// only the reported keys are accepted.
	start := time.Now()
	pinned := waitHostKeys(ctx, t, p, name)
	t.Logf("%s reported its host keys %v after %s", name, hostkeys.Fingerprints(pinned), time.Since(start).Round(time.Second))
	peerAddr, err := p.SSHAddress(peer)
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(t.TempDir(), "known_hosts")
	lines := append(hostkeys.KnownHostsLines(addr, pinned), hostkeys.KnownHostsLines(peerAddr, waitHostKeys(ctx, t, p, peer))...)
	if err := os.WriteFile(known, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hostKeys, err := knownhosts.New(known)
	if err != nil {
		t.Fatal(err)
	}
	keyLogin := &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   hostKeys,
		HostKeyAlgorithms: algorithms(pinned),
		Timeout:           15 * time.Second,
	}

	client := dialSSH(ctx, t, addr, keyLogin)
	t.Logf("SSH as %s with the cluster key and the pinned host key after %s", user, time.Since(start).Round(time.Second))

	// Another key in the host's place is refused.
	wrong, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, err := ssh.NewPublicKey(wrong)
	if err != nil {
		t.Fatal(err)
	}
	wrongLogin := *keyLogin
	wrongLogin.HostKeyCallback = ssh.FixedHostKey(wrongKey)
	wrongLogin.HostKeyAlgorithms = algorithms([]ssh.PublicKey{wrongKey})
	if c, err := ssh.Dial("tcp", addr, &wrongLogin); err == nil {
		c.Close()
		t.Errorf("SSH with a wrong pinned host key: connected, want refused")
	} else if !strings.Contains(err.Error(), "host key mismatch") {
		t.Errorf("SSH with a wrong pinned host key: %v, want a host key mismatch", err)
	}
	out := run(t, client, "id -un; hostname; ip -4 -o addr show; systemctl is-active kiln-firewall.service; sudo -n true && echo sudo-ok; test -e /etc/kiln/ignition-firstboot && echo stamp-present || echo stamp-gone")
	for _, want := range []string{user + "\n", name + "\n", " " + m.Address + "/24 ", "\nactive\n", "sudo-ok\n", "stamp-gone\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("on the node, missing %q in:\n%s", want, out)
		}
	}

	// Passwords are refused: the server offers publickey only.
	_, err = ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.Password("kiln")},
		HostKeyCallback: hostKeys, HostKeyAlgorithms: algorithms(pinned), Timeout: 15 * time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("password login: err = %v, want unable to authenticate", err)
	}

	// The guest reaches nothing outside its user network (restrict=on): not even a port the host
	// listens on, which QEMU's gateway 10.0.2.2 would otherwise forward to.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	hostPort := l.Addr().(*net.TCPAddr).Port
	out = run(t, client, fmt.Sprintf("timeout 5 bash -c '</dev/tcp/10.0.2.2/%d' && echo reached-host || echo isolated", hostPort))
	if !strings.Contains(out, "isolated") {
		t.Errorf("the guest reached the host's 127.0.0.1:%d through 10.0.2.2: %s", hostPort, out)
	}

	// The peer reaches the first node over the private network, by the name its /etc/hosts gives.
	peerClient := dialSSH(ctx, t, peerAddr, keyLogin)
	out = run(t, peerClient, "ping -c 2 -W 5 "+name+" && echo ping-ok")
	peerClient.Close()
	if !strings.Contains(out, "ping-ok") || !strings.Contains(out, m.Address) {
		t.Errorf("%s could not ping %s (%s) on the private network:\n%s", peer, name, m.Address, out)
	}

	// The peer got its config (its key let us in) from the config server: the ticket is spent, what
	// QEMU hands the guest through fw_cfg is the stub alone, and the token read from it is worth
	// nothing now.
	checkSpent(t, st, cs, filepath.Join(cfg.StateDir, "vm", peer, "config.ign"), peer, token, &bundle.ClusterCA, tok.Secret)

	// A reboot (unattended-upgrades reboots nodes) must not run Ignition again: it would rewrite
	// node.env, which has overwrite: true, and drop this line.
	run(t, client, "echo '# kept across reboots' | sudo tee -a /etc/kiln/node.env >/dev/null")
	if s, err := client.NewSession(); err == nil {
		s.Run("sudo systemctl reboot") // the connection may drop before an exit status comes back
		s.Close()
	}
	client.Close()
	time.Sleep(5 * time.Second)
	client = dialSSH(ctx, t, addr, keyLogin)
	out = run(t, client, "cat /etc/kiln/node.env; sudo journalctl -b -o cat -u kiln-firstboot-check.service")
	if !strings.Contains(out, "# kept across reboots") || !strings.Contains(out, "not the first boot") {
		t.Errorf("after a reboot Ignition ran again, or the first-boot check did not say it skipped it:\n%s", out)
	}
	// Every boot reports the keys again, the same ones.
	if data, err := os.ReadFile(serial); err != nil || strings.Count(string(data), hostkeys.BeginMarker) < 2 {
		t.Errorf("serial console after a reboot: %d reports (err %v), want one per boot", strings.Count(string(data), hostkeys.BeginMarker), err)
	}
	if again, err := p.HostKeys(ctx, name); err != nil {
		t.Errorf("HostKeys after a reboot: %v", err)
	} else if _, err := hostkeys.Decide(name, pinOf(pinned), again); err != nil {
		t.Errorf("after a reboot: %v", err)
	}
	client.Close()

	if ms, err := p.List(ctx, "vm"); err != nil || len(ms) != 2 || ms[0].State != provisioner.StateRunning || ms[1].State != provisioner.StateRunning {
		t.Fatalf("List = %v, %v; want two running machines", ms, err)
	}
	// A killed VM is a failed machine.
	data, err := os.ReadFile(filepath.Join(cfg.StateDir, "vm", name, "qemu.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill QEMU %d: %v", pid, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ms, err := p.List(ctx, "vm")
		if err != nil {
			t.Fatal(err)
		}
		states := map[string]provisioner.State{}
		for _, m := range ms {
			states[m.Name] = m.State
		}
		if states[name] == provisioner.StateError && states[peer] == provisioner.StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after killing %s's QEMU, List = %+v, want it in state error and %s running", name, ms, peer)
		}
	}
}

// waitHostKeys waits until the machine has reported its host keys, or ctx ends.
func waitHostKeys(ctx context.Context, t *testing.T, p *qemu.Provider, name string) []ssh.PublicKey {
	t.Helper()
	for {
		keys, err := p.HostKeys(ctx, name)
		if err == nil {
			return keys
		}
		if !errors.Is(err, provisioner.ErrNoHostKeys) {
			t.Fatalf("HostKeys(%s): %v", name, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("HostKeys(%s): %v (last: %v)", name, ctx.Err(), err)
		case <-time.After(2 * time.Second):
		}
	}
}

// algorithms are the host key algorithms of keys, so that a host offering several is asked for one
// that is pinned.
func algorithms(keys []ssh.PublicKey) []string {
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

// pinOf is the pin of keys.
func pinOf(keys []ssh.PublicKey) *hostkeys.Pin {
	p := &hostkeys.Pin{}
	for _, k := range keys {
		p.Keys = append(p.Keys, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))))
	}
	return p
}

// dialSSH connects until it works or ctx ends.
func dialSSH(ctx context.Context, t *testing.T, addr string, cfg *ssh.ClientConfig) *ssh.Client {
	t.Helper()
	var last error
	for {
		c, err := ssh.Dial("tcp", addr, cfg)
		if err == nil {
			return c
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("SSH to %s: %v (last error: %v)", addr, ctx.Err(), last)
		case <-time.After(2 * time.Second):
		}
	}
}

func run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		var exit *ssh.ExitMissingError
		if !errors.As(err, &exit) {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
	}
	return string(out)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// serveConfigs runs the cluster's config server (provisioner.ConfigServing) over a state store of its
// own, as kiln apply does, until the test ends.
func serveConfigs(ctx context.Context, t *testing.T, p *qemu.Provider, cluster string, ca *pki.KeyPair) (*state.Store, provisioner.ConfigServer) {
	t.Helper()
	cs, err := p.ConfigServer(ctx, cluster)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.ConfigServer(ctx, cluster)
	if err != nil || again.Listen != cs.Listen {
		t.Fatalf("ConfigServer again: %+v, %v; want %+v", again, err, cs)
	}
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), bytes.Repeat([]byte{3}, state.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := enroll.Listen(enroll.ServerConfig{Listen: cs.Listen, CA: ca, Names: cs.Names, Spend: enroll.SpendIn(st)})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		srv.Close()
		st.Close()
	})
	return st, cs
}

// checkSpent checks, once machine is up, that its ticket is spent, that its fw_cfg file holds no key
// or token that can be used again, and that the token, replayed as an attacker who read the file
// would, gets a 403 and marks the ticket.
func checkSpent(t *testing.T, st *state.Store, cs provisioner.ConfigServer, fwcfg, machine, token string, ca *pki.KeyPair, secrets ...string) {
	t.Helper()
	tk, err := enroll.Get(st, "vm", machine)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Spent == nil {
		t.Fatalf("%s is up but its ticket is not spent: %+v", machine, tk)
	}
	raw, err := os.ReadFile(fwcfg)
	if err != nil {
		t.Fatal(err)
	}
	data := ignitiontest.Decoded(t, raw)
	if !strings.Contains(data, cs.URL+enroll.ConfigPath("vm", machine)) {
		t.Errorf("%s's fw_cfg config does not merge its config from the config server:\n%s", machine, data)
	}
	for i, secret := range append([]string{"PRIVATE KEY"}, secrets...) {
		if strings.Contains(data, secret) {
			t.Errorf("%s's fw_cfg config holds a secret (#%d)", machine, i)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	// The guests reach the server at 10.0.2.100, which is what its certificate names.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: cs.Names[0]}}}
	req, err := http.NewRequest(http.MethodGet, "https://"+cs.Listen+enroll.ConfigPath("vm", machine), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("the token replayed: %s, want 403", resp.Status)
	}
	if tk, err = enroll.Get(st, "vm", machine); err != nil || !tk.Suspect() {
		t.Errorf("after the replay the ticket reads %q (%v), want a possible theft", tk.State(time.Now()), err)
	}
}
