package qemu_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/internal/testtool"
	"github.com/kiln-dev/kiln/onprem/qemu"
	"github.com/kiln-dev/kiln/provisioner"
)

// TestMachineLifecycle runs real QEMU processes (on a blank disk: what the guest does does not matter
// here) through what the contract suite does not look at: ports, addresses, the machine's files, the
// private network's switch, a killed VM listed as failed, and clean removal.
func TestMachineLifecycle(t *testing.T) {
	cfg := testConfig(t)
	p, err := qemu.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	img := blankImage(t)
	ign := []byte(`{"ignition":{"version":"3.5.0"}}`)

	var ms []provisioner.Machine
	for i := range 2 {
		m, err := p.Create(ctx, provisioner.MachineSpec{
			Cluster: "lc", Name: provisioner.MachineName("lc", "workers", i), Role: v1alpha1.RoleWorker,
			Pool: "workers", Image: img, Ignition: ign,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Delete(context.Background(), m.Name) })
		ms = append(ms, m)
	}
	ports := map[string]bool{}
	for i, m := range ms {
		if want := "10.0.0." + strconv.Itoa(10+i); m.Address != want {
			t.Errorf("%s: Address = %s, want %s", m.Name, m.Address, want)
		}
		addr, err := p.SSHAddress(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(addr)
		if n, _ := strconv.Atoi(port); host != "127.0.0.1" || n < cfg.SSHPortBase || ports[port] {
			t.Errorf("%s: SSH address %s, want 127.0.0.1 and a port of its own from %d", m.Name, addr, cfg.SSHPortBase)
		}
		ports[port] = true
		if got := p.Endpoint(m, 22); got != addr {
			t.Errorf("Endpoint(%s, 22) = %q, want %q", m.Name, got, addr)
		}
		if got := p.Endpoint(m, 10250); got != "" {
			t.Errorf("Endpoint(%s, 10250) = %q, want none: only SSH is forwarded", m.Name, got)
		}
		// QEMU listens on the forwarded port, on loopback only.
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Errorf("%s: dial the forwarded port: %v", m.Name, err)
		} else {
			c.Close()
		}
		dir := filepath.Join(cfg.StateDir, "lc", m.Name)
		for f, mode := range map[string]os.FileMode{"meta.json": 0o600, "config.ign": 0o600, "disk.qcow2": 0, "qemu.pid": 0} {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Errorf("%s: %v", m.Name, err)
			} else if mode != 0 && fi.Mode().Perm() != mode {
				t.Errorf("%s: %s has mode %v, want %v (it holds the bootstrap token)", m.Name, f, fi.Mode().Perm(), mode)
			}
		}
	}
	if _, err := p.SSHAddress("lc-workers-9"); !errors.Is(err, qemu.ErrNotFound) {
		t.Errorf("SSHAddress of a missing machine: err = %v, want ErrNotFound", err)
	}
	switchPID := readPID(t, filepath.Join(cfg.StateDir, "lc", ".switch.pid"))
	if !alive(switchPID) {
		t.Fatalf("the private network switch (pid %d) is not running", switchPID)
	}

	// A VM killed behind the provider's back is a failed machine; the other one is untouched.
	qemuPID := readPID(t, filepath.Join(cfg.StateDir, "lc", ms[0].Name, "qemu.pid"))
	if err := syscall.Kill(qemuPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !alive(qemuPID) })
	got, err := p.List(ctx, "lc")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].State != provisioner.StateError || got[1].State != provisioner.StateRunning {
		t.Fatalf("after killing %s: List = %+v, want it in state error and %s running", ms[0].Name, got, ms[1].Name)
	}

	// Deleting the last machine takes the switch and the cluster's directory with it.
	for _, m := range ms {
		if err := p.Delete(ctx, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	if alive(switchPID) {
		t.Errorf("the switch (pid %d) still runs after the cluster's last machine was deleted", switchPID)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, "lc")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cluster's directory is still there: %v", err)
	}
}

// TestReservedControlPlane: a control-plane machine created after its address was reserved boots
// with that address, and its API endpoint's port is forwarded from 127.0.0.1, where APIAddress
// points; a worker's is not.
func TestReservedControlPlane(t *testing.T) {
	cfg := testConfig(t)
	p, err := qemu.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	img := blankImage(t)
	ign := []byte(`{"ignition":{"version":"3.5.0"}}`)
	if _, err := p.APIAddress(ctx, "rc"); !errors.Is(err, provisioner.ErrNotReachable) {
		t.Fatalf("APIAddress before any machine: %v, want ErrNotReachable", err)
	}
	cp := provisioner.MachineName("rc", provisioner.ControlPlanePool, 0)
	worker := provisioner.MachineName("rc", "workers", 0)
	wantAddr := map[string]string{}
	for _, name := range []string{worker, cp} { // the worker first: the control plane's is not simply the lowest
		a, err := p.Reserve(ctx, "rc", name)
		if err != nil {
			t.Fatal(err)
		}
		wantAddr[name] = a.String()
	}
	for _, spec := range []provisioner.MachineSpec{
		{Cluster: "rc", Name: cp, Role: v1alpha1.RoleControlPlane, Pool: provisioner.ControlPlanePool, Image: img, Ignition: ign},
		{Cluster: "rc", Name: worker, Role: v1alpha1.RoleWorker, Pool: "workers", Image: img, Ignition: ign},
	} {
		m, err := p.Create(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Delete(context.Background(), m.Name) })
		if m.Address != wantAddr[m.Name] {
			t.Errorf("%s: Address = %s, want the reserved %s", m.Name, m.Address, wantAddr[m.Name])
		}
	}
	api, err := p.APIAddress(ctx, "rc")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(api)
	if n, _ := strconv.Atoi(port); host != "127.0.0.1" || n < cfg.APIPortBase {
		t.Errorf("APIAddress = %s, want 127.0.0.1 and a port from %d", api, cfg.APIPortBase)
	}
	ssh, _ := p.SSHAddress(cp)
	if ssh == api {
		t.Errorf("SSH and the API share %s", api)
	}
	// QEMU listens on the forwarded port.
	if c, err := net.DialTimeout("tcp", api, 5*time.Second); err != nil {
		t.Errorf("dial the forwarded API port: %v", err)
	} else {
		c.Close()
	}
	// Only the control-plane machine forwards the API: the QEMU command lines say so.
	for name, want := range map[string]bool{cp: true, worker: false} {
		pid := readPID(t, filepath.Join(cfg.StateDir, "rc", name, "qemu.pid"))
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if got := strings.Contains(string(cmdline), "-:6443"); got != want {
			t.Errorf("%s forwards the API port: %v, want %v", name, got, want)
		}
	}

	// Stopped, it forwards nothing: no control-plane machine runs.
	if err := p.Stop(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if _, err := p.APIAddress(ctx, "rc"); !errors.Is(err, provisioner.ErrNotReachable) {
		t.Errorf("APIAddress with the control plane stopped: %v, want ErrNotReachable", err)
	}
	// Deleted, its address is free again.
	if err := p.Delete(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if a, err := p.Reserve(ctx, "rc", provisioner.MachineName("rc", provisioner.ControlPlanePool, 1)); err != nil || a.String() != wantAddr[cp] {
		t.Errorf("Reserve after Delete = %s, %v; want the released %s", a, err, wantAddr[cp])
	}
}

func TestCreateRejectsBadSpec(t *testing.T) {
	p, err := qemu.New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Create(t.Context(), provisioner.MachineSpec{Cluster: "lc", Name: "Bad_Name", Role: "boss", Image: "/nonexistent.qcow2"})
	if !errors.Is(err, qemu.ErrInvalid) {
		t.Fatalf("Create: err = %v, want ErrInvalid", err)
	}
	for _, want := range []string{`name "Bad_Name"`, `role "boss"`, "image: stat /nonexistent.qcow2", "ignition: required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Create: error lacks %q:\n%v", want, err)
		}
	}
	if _, err := p.Create(t.Context(), provisioner.MachineSpec{Cluster: "lc", Name: "lc-workers-0", Role: v1alpha1.RoleWorker,
		Image: blankImage(t), Ignition: []byte(`{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"etc/x"}]}}`)}); err == nil ||
		!strings.Contains(err.Error(), "ignition config") {
		t.Errorf("Create with an invalid Ignition config: err = %v, want an ignition config error", err)
	}
	if ms, err := p.List(t.Context(), "lc"); err != nil || len(ms) != 0 {
		t.Errorf("after failed creates, List = %v, %v; want nothing", ms, err)
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && len(data) > 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// BenchmarkCreateDelete measures one machine's Create and Delete with real QEMU processes (on a blank
// disk): overlay, outer Ignition config, the daemonized QEMU, then SIGTERM and removal. The cluster's
// switch starts and stops with each machine, as it does for a cluster's only machine.
func BenchmarkCreateDelete(b *testing.B) {
	bin := testtool.Tool(b, "qemu")
	dir, err := os.MkdirTemp("", "kq-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	p, err := qemu.New(qemu.Config{StateDir: dir, QEMU: bin, MemoryMiB: 64, CPUs: 1, SSHPortBase: 40000})
	if err != nil {
		b.Fatal(err)
	}
	img := filepath.Join(dir, "blank.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", img, "16M").CombinedOutput(); err != nil {
		b.Fatalf("qemu-img: %v: %s", err, out)
	}
	spec := provisioner.MachineSpec{Cluster: "bench", Name: "bench-workers-0", Role: v1alpha1.RoleWorker,
		Pool: "workers", Image: img, Ignition: []byte(`{"ignition":{"version":"3.5.0"}}`)}
	ctx := context.Background()
	for b.Loop() {
		if _, err := p.Create(ctx, spec); err != nil {
			b.Fatal(err)
		}
		if err := p.Delete(ctx, spec.Name); err != nil {
			b.Fatal(err)
		}
	}
}
