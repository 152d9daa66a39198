package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5"
	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/sshexec/sshexectest"
)

// memoryProvider makes the command line's provider from the machines of mem. Where the spec's provider
// gives nodes their addresses before their configs are rendered (qemu), so does the fake.
func memoryProvider(mem *providertest.Memory) func(context.Context, *v1alpha1.Cluster) (provisioner.Provider, error) {
	return func(_ context.Context, c *v1alpha1.Cluster) (provisioner.Provider, error) {
		if pl, err := placement(c); err == nil && pl.NodeAddresses {
			return addressingMemory{Provider: mem.New(), book: addressBookOf(mem)}, nil
		}
		return mem.New(), nil
	}
}

// kilnOn runs the command line with the machines of mem as the provider. Where the spec's provider
// gives nodes their addresses before their configs are rendered (qemu), so does the fake.
func kilnOn(t *testing.T, mem *providertest.Memory, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return kilnAsked(t, mem, dir, nil, args...)
}

// kilnAsked is kilnOn with a terminal that answers from answers, or with no terminal when answers is
// nil. The machines of a qemu spec answer over SSH once created (addressBook.boot).
func kilnAsked(t *testing.T, mem *providertest.Memory, dir string, answers io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	addressBookOf(mem).boot(t)
	t.Chdir(dir)
	t.Setenv("KILN_STATE_DIR", filepath.Join(dir, "state"))
	os.Unsetenv("KILN_STATE_KEY")
	g := &globals{
		newProvider: memoryProvider(mem),
		in:          answers,
		terminal:    func() bool { return answers != nil },
	}
	var out, errOut bytes.Buffer
	code = run(newRoot(g), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestApplyGetDelete(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	mem := providertest.NewMemory(nil)
	must := func(args ...string) (string, string) {
		t.Helper()
		code, out, errOut := kilnOn(t, mem, dir, args...)
		if code != 0 {
			t.Fatalf("kiln %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out, errOut
	}

	_, progress := must("apply", "-f", "cluster.yaml", "--interval", "1ms", "--timeout", "5s")
	if !strings.Contains(progress, "demo has converged") || !strings.Contains(progress, "create demo-workers-0") {
		t.Fatalf("apply said:\n%s", progress)
	}
	out, _ := must("get", "nodes", "-o", "json")
	var nodes []nodeView
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatalf("get nodes -o json: %v\n%s", err, out)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name+"="+n.Health)
	}
	want := "demo-control-plane-0=ready demo-workers-0=ready demo-workers-1=ready"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("get nodes: %s, want %s", got, want)
	}

	// A failed worker is replaced: created first, then the old one deleted.
	mem.SetState("demo-workers-1", provisioner.StateError)
	out, _ = must("get", "nodes", "-o", "wide")
	if !strings.Contains(out, "demo-workers-1") || !strings.Contains(out, "unhealthy") {
		t.Fatalf("get nodes -o wide after a failure:\n%s", out)
	}
	_, progress = must("apply", "--interval", "1ms")
	if !strings.Contains(progress, "create demo-workers-2") || !strings.Contains(progress, "delete demo-workers-1") {
		t.Fatalf("apply after a failure said:\n%s", progress)
	}

	code, _, errOut := kilnOn(t, mem, dir, "delete")
	if code == 0 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("delete without --yes: exit %d, %s", code, errOut)
	}
	must("delete", "--yes")
	if ms := mem.Machines(); len(ms) != 0 {
		t.Fatalf("after delete: %v", ms)
	}
}

func TestApplyErrors(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown log format", []string{"apply", "--log-format", "xml"}, "--log-format xml"},
		{"missing spec", []string{"apply", "-f", "nope.yaml"}, "nope.yaml"},
		{"qemu image missing", []string{"apply", "--timeout", "1s"}, "spec.nodePools[0].image: qemu: image"},
		{"unknown output", []string{"get", "nodes", "-o", "xml"}, "-o xml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := kiln(t, dir, tc.args...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want failure naming %q", code, errOut, tc.want)
			}
		})
	}
}

// addressingMemory is a memory provider with the QEMU provider's capabilities: it reserves addresses
// as QEMU does (the lowest free one from 10.0.0.10, the same for a name until Delete releases it),
// stops machines, forwards the API endpoint to this host at the address api returns
// (provisioner.ErrNotReachable where api is nil), and, once its book has booted, forwards each running
// machine's SSH to a real SSH server whose host key the machine reports, as a QEMU node reports its
// own on its serial console.
type addressingMemory struct {
	provisioner.Provider
	book *addressBook
	api  func() (string, error)
}

var (
	_ provisioner.Addresser       = addressingMemory{}
	_ provisioner.APIReacher      = addressingMemory{}
	_ provisioner.Stopper         = addressingMemory{}
	_ provisioner.HostKeyReporter = addressingMemory{}
	_ endpointer                  = addressingMemory{}
)

func (a addressingMemory) APIAddress(context.Context, string) (string, error) {
	if a.api == nil {
		return "", provisioner.ErrNotReachable
	}
	return a.api()
}

type addressBook struct {
	mu    sync.Mutex
	addrs map[string]netip.Addr
	// configs are the Ignition configs the machines were created with.
	configs map[string][]byte
	// sshd is the SSH server of every machine once boot has run: nil, no machine answers.
	sshd *sshexectest.Server
}

// boot makes the machines answer over SSH, for the rest of the test: each running machine reports
// the host key of one SSH server on loopback, and forwards its SSH there.
func (b *addressBook) boot(t *testing.T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sshd == nil {
		b.sshd = sshexectest.Start(t, sshexectest.Config{})
	}
}

func (a addressingMemory) Endpoint(m provisioner.Machine, port int) string {
	a.book.mu.Lock()
	defer a.book.mu.Unlock()
	if a.book.sshd != nil && port == 22 && m.State == provisioner.StateRunning {
		return a.book.sshd.Addr
	}
	return ""
}

func (a addressingMemory) HostKeys(_ context.Context, name string) ([]ssh.PublicKey, error) {
	a.book.mu.Lock()
	defer a.book.mu.Unlock()
	if a.book.sshd != nil {
		return []ssh.PublicKey{a.book.sshd.HostKey}, nil
	}
	return nil, fmt.Errorf("machine %s: %w", name, provisioner.ErrNoHostKeys)
}

var (
	booksMu sync.Mutex
	books   = map[*providertest.Memory]*addressBook{}
)

// addressBookOf is the reservations on mem's machines, kept across the command lines of a test.
func addressBookOf(mem *providertest.Memory) *addressBook {
	booksMu.Lock()
	defer booksMu.Unlock()
	if books[mem] == nil {
		books[mem] = &addressBook{addrs: map[string]netip.Addr{}, configs: map[string][]byte{}}
	}
	return books[mem]
}

func (a addressingMemory) Reserve(_ context.Context, _, name string) (netip.Addr, error) {
	a.book.mu.Lock()
	defer a.book.mu.Unlock()
	if addr, ok := a.book.addrs[name]; ok {
		return addr, nil
	}
	taken := map[netip.Addr]bool{}
	for _, addr := range a.book.addrs {
		taken[addr] = true
	}
	addr := netip.MustParseAddr("10.0.0.10")
	for taken[addr] {
		addr = addr.Next()
	}
	a.book.addrs[name] = addr
	return addr, nil
}

func (a addressingMemory) Create(ctx context.Context, spec provisioner.MachineSpec) (provisioner.Machine, error) {
	a.book.mu.Lock()
	a.book.configs[spec.Name] = spec.Ignition
	a.book.mu.Unlock()
	return a.Provider.Create(ctx, spec)
}

// List lists the machines, each with its reserved address as its private address, as QEMU's does.
func (a addressingMemory) List(ctx context.Context, cluster string) ([]provisioner.Machine, error) {
	ms, err := a.Provider.List(ctx, cluster)
	a.book.mu.Lock()
	defer a.book.mu.Unlock()
	for i := range ms {
		if addr, ok := a.book.addrs[ms[i].Name]; ok {
			ms[i].Address = addr.String()
		}
	}
	return ms, err
}

func (a addressingMemory) Delete(ctx context.Context, name string) error {
	if err := a.Provider.Delete(ctx, name); err != nil {
		return err
	}
	a.book.mu.Lock()
	delete(a.book.addrs, name)
	a.book.mu.Unlock()
	return nil
}

func (a addressingMemory) Stop(ctx context.Context, name string) error {
	return a.Provider.(provisioner.Stopper).Stop(ctx, name)
}

// A provider whose placement needs its nodes' addresses but that cannot reserve them is refused
// before anything is made.
func TestApplyNeedsAddresses(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	mem := providertest.NewMemory(nil)
	t.Chdir(dir)
	t.Setenv("KILN_STATE_DIR", filepath.Join(dir, "state"))
	g := &globals{newProvider: func(context.Context, *v1alpha1.Cluster) (provisioner.Provider, error) { return mem.New(), nil }}
	var out, errOut bytes.Buffer
	code := run(newRoot(g), []string{"apply", "--timeout", "5s"}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "provider qemu: its nodes' configs need their addresses, but it cannot reserve them") {
		t.Fatalf("apply: exit %d\n%s", code, errOut.String())
	}
	if ms := mem.Machines(); len(ms) != 0 {
		t.Errorf("apply made %v", ms)
	}
}

// Each machine's config names the address reserved for it, and the control plane's names every
// control-plane node's.
func TestApplyRendersReservedAddresses(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	mem := providertest.NewMemory(nil)
	if code, _, errOut := kilnOn(t, mem, dir, "apply", "--interval", "1ms", "--timeout", "5s"); code != 0 {
		t.Fatalf("apply: exit %d\n%s", code, errOut)
	}
	book := addressBookOf(mem)
	configs := book.configs
	for name, want := range map[string]string{
		"demo-control-plane-0": "--advertise-address=" + book.addrs["demo-control-plane-0"].String(),
		"demo-workers-1":       "--node-ip=" + book.addrs["demo-workers-1"].String(),
	} {
		cfg, _, err := v3_5.Parse(configs[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		found := false
		for _, u := range cfg.Systemd.Units {
			found = found || (u.Contents != nil && (strings.Contains(*u.Contents, want+" ") || strings.Contains(*u.Contents, want+"\n")))
		}
		if !found {
			t.Errorf("%s's config lacks %s", name, want)
		}
	}
	if len(book.addrs) != 3 {
		t.Errorf("reserved %v, want the 3 machines'", book.addrs)
	}
}
