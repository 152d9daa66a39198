package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/sshexec/sshexectest"
	"github.com/kiln-dev/kiln/state"
)

// reports are the host key reports and SSH endpoints of a reportingProvider's machines.
type reports struct {
	mu        sync.Mutex
	keys      map[string][]ssh.PublicKey
	endpoints map[string]string
}

func (r *reports) set(name, addr string, keys ...ssh.PublicKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[name], r.endpoints[name] = keys, addr
}

// reportingProvider is a memory provider that carries host key reports, as the QEMU provider does.
type reportingProvider struct {
	provisioner.Provider
	r *reports
}

var _ provisioner.HostKeyReporter = reportingProvider{}

func (p reportingProvider) HostKeys(_ context.Context, name string) ([]ssh.PublicKey, error) {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if k := p.r.keys[name]; len(k) > 0 {
		return k, nil
	}
	return nil, provisioner.ErrNoHostKeys
}

func (p reportingProvider) Endpoint(m provisioner.Machine, port int) string {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if port != 22 {
		return ""
	}
	return p.r.endpoints[m.Name]
}

// kilnReporting runs the command line with the machines of mem and the reports of r.
func kilnReporting(t *testing.T, mem *providertest.Memory, r *reports, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Chdir(dir)
	t.Setenv("KILN_STATE_DIR", filepath.Join(dir, "state"))
	os.Unsetenv("KILN_STATE_KEY")
	g := &globals{
		newProvider: func(context.Context, *v1alpha1.Cluster) (provisioner.Provider, error) {
			return reportingProvider{Provider: mem.New(), r: r}, nil
		},
		in:       strings.NewReader(""),
		terminal: func() bool { return false },
	}
	var out, errOut bytes.Buffer
	code = run(newRoot(g), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestKnownHostsAndSSH: the first report of a machine is pinned and written as known_hosts lines at
// its SSH endpoint; kiln ssh logs in accepting only the pinned key; a changed report, or a server with
// another key, is refused and never re-pinned; a deleted machine loses its pin.
func TestKnownHostsAndSSH(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	mem := providertest.NewMemory(nil)
	// The cluster's machines, made as apply makes them; their host keys are pinned by the commands
	// below, from the reports of r (apply, whose probe would pin the keys it reads first, is not run).
	for _, m := range []provisioner.MachineSpec{
		{Cluster: "demo", Name: "demo-control-plane-0", Role: v1alpha1.RoleControlPlane, Pool: provisioner.ControlPlanePool},
		{Cluster: "demo", Name: "demo-workers-0", Role: v1alpha1.RoleWorker, Pool: "workers"},
		{Cluster: "demo", Name: "demo-workers-1", Role: v1alpha1.RoleWorker, Pool: "workers"},
	} {
		if _, err := mem.New().Create(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	mustKiln(t, dir, "ssh-key", "--output-file", "id_demo")
	pem, err := os.ReadFile(filepath.Join(dir, "id_demo"))
	if err != nil {
		t.Fatal(err)
	}
	clusterKey, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, otherKey := sshexectest.NewKey(t), sshexectest.NewKey(t)
	srv := sshexectest.Start(t, sshexectest.Config{
		ClientKeys: []ssh.PublicKey{clusterKey.PublicKey()},
		HostKeys:   []ssh.Signer{hostKey},
		Handler:    sshexectest.Commands(map[string]string{"hostname": "demo-control-plane-0\n"}),
	})
	impostor := sshexectest.Start(t, sshexectest.Config{ClientKeys: []ssh.PublicKey{clusterKey.PublicKey()}, HostKeys: []ssh.Signer{otherKey}})
	r := &reports{keys: map[string][]ssh.PublicKey{}, endpoints: map[string]string{}}
	cp, worker := "demo-control-plane-0", "demo-workers-0"
	r.set(cp, srv.Addr, hostKey.PublicKey())
	r.set(worker, "127.0.0.1:1", nil...) // booting: no report yet

	// The worker has not reported: no line for it, and a non-zero exit; the control plane is pinned.
	code, out, errOut := kilnReporting(t, mem, r, dir, "known-hosts", "--output-file", "known_hosts")
	if code == 0 || !strings.Contains(errOut, "machine "+worker+" (running): the machine has not reported its SSH host keys yet") {
		t.Fatalf("known-hosts with a machine not reported: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "pinned the host keys of "+cp+": "+ssh.FingerprintSHA256(hostKey.PublicKey())) {
		t.Errorf("known-hosts did not say it pinned %s:\n%s", cp, errOut)
	}
	data, err := os.ReadFile(filepath.Join(dir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "known_hosts")); fi.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts has mode %v, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(string(data), srv.KnownHostsLine()+"\n") || strings.Contains(string(data), worker) {
		t.Errorf("known_hosts:\n%s\nwant the line %q and nothing of %s", data, srv.KnownHostsLine(), worker)
	}

	// kiln ssh logs in, accepting the pinned key; a command's status is kiln's.
	code, out, errOut = kilnReporting(t, mem, r, dir, "ssh", cp, "--", "hostname")
	if code != 0 || out != "demo-control-plane-0\n" {
		t.Fatalf("kiln ssh %s -- hostname: exit %d, stdout %q\n%s", cp, code, out, errOut)
	}
	if code, _, _ := kilnReporting(t, mem, r, dir, "ssh", cp, "--", "missing"); code != 127 {
		t.Errorf("kiln ssh of a command that is not found: exit %d, want 127", code)
	}

	// A server with another key at the machine's endpoint is refused.
	r.set(cp, impostor.Addr, hostKey.PublicKey())
	code, _, errOut = kilnReporting(t, mem, r, dir, "ssh", cp, "--", "hostname")
	if code == 0 || !strings.Contains(errOut, "refused") || !strings.Contains(errOut, ssh.FingerprintSHA256(otherKey.PublicKey())) {
		t.Errorf("kiln ssh to a server with another host key: exit %d\n%s", code, errOut)
	}

	// A report that differs from the pin is refused, naming both fingerprints, and not pinned.
	r.set(cp, srv.Addr, otherKey.PublicKey())
	for _, args := range [][]string{{"known-hosts"}, {"ssh", cp, "--", "hostname"}} {
		code, out, errOut = kilnReporting(t, mem, r, dir, args...)
		for _, want := range []string{"machine " + cp + " reported SSH host keys", ssh.FingerprintSHA256(otherKey.PublicKey()), ssh.FingerprintSHA256(hostKey.PublicKey()) + " (ssh-ed25519) is pinned"} {
			if code == 0 || !strings.Contains(errOut, want) {
				t.Errorf("kiln %s with a changed report: exit %d, want an error with %q:\n%s", strings.Join(args, " "), code, want, errOut)
			}
		}
		if strings.Contains(out, cp) {
			t.Errorf("kiln %s printed a line for %s after its report changed:\n%s", strings.Join(args, " "), cp, out)
		}
	}
	r.set(cp, srv.Addr, hostKey.PublicKey())
	if code, out, errOut := kilnReporting(t, mem, r, dir, "ssh", cp, "--", "hostname"); code != 0 {
		t.Fatalf("the pin changed after a refused report: exit %d\n%s%s", code, out, errOut)
	}

	// Deleted machines lose their pins.
	if code, out, errOut := kilnReporting(t, mem, r, dir, "delete", "--yes"); code != 0 {
		t.Fatalf("delete: exit %d\n%s%s", code, out, errOut)
	}
	st, err := (&globals{stateDir: filepath.Join(dir, "state")}).openState()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := hostkeys.Load(st, cp); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("pin of %s after delete: %v, want none", cp, err)
	}
}

func TestSSHArguments(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	mem := providertest.NewMemory(nil)
	r := &reports{keys: map[string][]ssh.PublicKey{}, endpoints: map[string]string{}}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "no node", args: []string{"ssh"}, want: "requires at least 1 arg"},
		{name: "a command without --", args: []string{"ssh", "demo-workers-0", "hostname"}, want: "one NODE, then -- and the command"},
		{name: "no such machine", args: []string{"ssh", "demo-workers-9", "--", "hostname"}, want: "cluster demo has no machine demo-workers-9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := kilnReporting(t, mem, r, dir, tc.args...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, want an error with %q:\n%s", code, tc.want, errOut)
			}
		})
	}
}
