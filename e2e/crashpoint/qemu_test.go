package crashpoint

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
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
)

// standinPrograms are the programs the QEMU provider runs, all played by testdata/qemustandin.
var standinPrograms = []string{"qemu-system-x86_64", "qemu-img", "vde_switch"}

// qemuMeta is what the QEMU provider records of a machine in its meta.json.
type qemuMeta struct {
	Name     string `json:"name"`
	Cluster  string `json:"cluster"`
	Pool     string `json:"pool"`
	SSHPort  int    `json:"sshPort"`
	APIPort  int    `json:"apiPort"`
	Address  string `json:"address"`
	Stopped  bool   `json:"stopped"`
	Reserved bool   `json:"reserved"`
}

// standin is a running daemon of the stand-ins: a VM or a switch.
type standin struct {
	pid  int
	prog string
	args []string
}

// arg returns the value after flag in the process's arguments.
func (s standin) arg(flag string) string {
	for i, a := range s.args {
		if a == flag && i+1 < len(s.args) {
			return s.args[i+1]
		}
	}
	return ""
}

// standins lists the live stand-in daemons started from bin whose arguments name under.
func standins(t *testing.T, bin, under string) []standin {
	t.Helper()
	procs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []standin
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err != nil || len(raw) == 0 { // gone, or a zombie
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		if filepath.Dir(args[0]) != bin || !strings.Contains(string(raw), under) {
			continue
		}
		env, err := os.ReadFile("/proc/" + p.Name() + "/environ")
		if err != nil || !bytes.Contains(env, []byte("\x00KILN_STANDIN_DAEMON=1\x00")) && !bytes.HasPrefix(env, []byte("KILN_STANDIN_DAEMON=1\x00")) {
			continue // the first half of a daemonizing call, about to exit
		}
		out = append(out, standin{pid: pid, prog: filepath.Base(args[0]), args: args[1:]})
	}
	return out
}

// buildStandins builds testdata/qemustandin once under each of the provider's program names into a
// new directory, which it returns.
func buildStandins(t *testing.T) string {
	t.Helper()
	root, err := testtool.RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	first := filepath.Join(bin, standinPrograms[0])
	build := exec.Command("go", "build", "-o", first, "./e2e/crashpoint/testdata/qemustandin")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build qemustandin: %v\n%s", err, out)
	}
	for _, name := range standinPrograms[1:] {
		if err := os.Link(first, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// TestCrashPointsQEMU crashes kiln after every change the QEMU provider makes through its programs:
// an overlay made, the cluster's switch or a VM started, a VM or the switch sent SIGTERM. The
// programs are stand-ins (testdata/qemustandin) that do what the provider relies on in a millisecond
// instead of booting a VM, so the provider's own logic (directories, overlays, pidfiles, address
// reservations, port allocation, its locks) is what crashes. After each restart, besides the
// harness's checks, the provider's state directory must agree with the processes: one VM process per
// machine, the one its pidfile names, bound to the ports its record names; no directory, pidfile,
// reservation or process without its machine; addresses and ports unique; one switch while machines
// exist, none and no cluster directory after delete.
func TestCrashPointsQEMU(t *testing.T) {
	bin := buildStandins(t)
	sock := filepath.Join(t.TempDir(), "crash.sock")
	var h *harness
	cdir := func() string { return filepath.Join(h.state, "qemu", "demo") }
	metas := func(t *testing.T) map[string]qemuMeta {
		t.Helper()
		files, err := filepath.Glob(filepath.Join(cdir(), "*", "meta.json"))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]qemuMeta{}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var md qemuMeta
			if err := json.Unmarshal(raw, &md); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out[filepath.Base(filepath.Dir(f))] = md
		}
		return out
	}
	// vms maps a machine name to its live VM processes.
	vms := func(t *testing.T) (map[string][]standin, []standin) {
		byName := map[string][]standin{}
		var switches []standin
		for _, s := range standins(t, bin, h.dir) {
			switch s.prog {
			case "qemu-system-x86_64":
				name := strings.TrimPrefix(s.arg("-name"), "kiln-")
				byName[name] = append(byName[name], s)
			case "vde_switch":
				switches = append(switches, s)
			default:
				t.Errorf("a %s daemon: %v", s.prog, s.args)
			}
		}
		return byName, switches
	}
	pidOf := func(path string) int {
		raw, err := os.ReadFile(path)
		if err != nil {
			return 0
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
		return pid
	}
	b := backend{
		name:     v1alpha1.ProviderQEMU,
		upstream: nil, // no HTTP: the stand-ins report to the harness's socket
		env: func(_, _ string) []string {
			return []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "KILN_CRASHPOINT_SOCKET=" + sock}
		},
		spec: func(c *v1alpha1.Cluster, _ string) {
			c.Spec.Provider.QEMU = &v1alpha1.QEMUProvider{
				MemoryMiB: 64, CPUs: 1,
				SSHPortBase: 20000 + rand.IntN(20000), APIPortBase: 41000 + rand.IntN(20000),
				// The stand-ins run no control plane whose Node could go Ready for the workers to wait for.
				WorkersWithControlPlane: true,
			}
		},
		mutating: func(*http.Request, []byte) (string, bool) { return "", false },
		machines: func(t *testing.T) []machine {
			vm, _ := vms(t)
			var ms []machine
			for name, md := range metas(t) {
				if md.Reserved {
					continue
				}
				pid := pidOf(filepath.Join(cdir(), name, "qemu.pid"))
				running := false
				for _, s := range vm[name] {
					running = running || s.pid == pid
				}
				ms = append(ms, machine{Name: name, Pool: md.Pool, Running: running && !md.Stopped})
			}
			return ms
		},
		fail: func(t *testing.T, name string) {
			pid := pidOf(filepath.Join(cdir(), name, "qemu.pid"))
			if pid <= 0 {
				t.Fatalf("no pid of %s", name)
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatalf("kill the VM of %s: %v", name, err)
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if vm, _ := vms(t); len(vm[name]) == 0 {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("the VM of %s survived SIGKILL", name)
				}
			}
		},
		resources: func(t *testing.T) map[string]int {
			rs := map[string]int{}
			if _, sw := vms(t); len(sw) > 0 {
				rs["vde_switch"] = len(sw)
			}
			if _, err := os.Stat(cdir()); err == nil {
				rs["cluster directory"] = 1
			}
			return rs
		},
		consistent: func(t *testing.T) {
			vm, sw := vms(t)
			ms := metas(t)
			entries, err := os.ReadDir(cdir())
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			for _, e := range entries {
				if _, ok := ms[e.Name()]; !ok && !strings.HasPrefix(e.Name(), ".") {
					t.Errorf("stray entry %s in the cluster's directory (no meta.json)", e.Name())
				}
			}
			addrs, ports := map[string]string{}, map[int]string{}
			prefix := netip.MustParsePrefix("10.0.0.0/24")
			endpoint := netip.MustParseAddr(h.spec(t).Spec.Network.APIEndpoint.Address)
			for name, md := range ms {
				if md.Reserved {
					t.Errorf("%s: an address (%s) reserved for a name with no machine", name, md.Address)
				}
				if md.Name != name || md.Cluster != "demo" {
					t.Errorf("%s: record of %s in cluster %s", name, md.Name, md.Cluster)
				}
				a, err := netip.ParseAddr(md.Address)
				if err != nil || !prefix.Contains(a) || a == endpoint {
					t.Errorf("%s: address %q is not one of %s other than the endpoint's %s", name, md.Address, prefix, endpoint)
				}
				if other, ok := addrs[md.Address]; ok {
					t.Errorf("%s and %s share the address %s", name, other, md.Address)
				}
				addrs[md.Address] = name
				if md.Reserved {
					continue
				}
				for _, f := range []string{"disk.qcow2", "config.ign"} {
					if _, err := os.Stat(filepath.Join(cdir(), name, f)); err != nil {
						t.Errorf("%s: %v", name, err)
					}
				}
				for _, p := range []int{md.SSHPort, md.APIPort} {
					if p == 0 {
						continue
					}
					if other, ok := ports[p]; ok {
						t.Errorf("%s and %s share the port %d", name, other, p)
					}
					ports[p] = name
				}
				procs := vm[name]
				if len(procs) != 1 {
					t.Errorf("%s: %d VM processes, want 1: %v", name, len(procs), procs)
					continue
				}
				if pid := pidOf(filepath.Join(cdir(), name, "qemu.pid")); pid != procs[0].pid {
					t.Errorf("%s: its pidfile names %d, its VM is %d", name, pid, procs[0].pid)
				}
				netdev := procs[0].args
				if want := "hostfwd=tcp:127.0.0.1:" + strconv.Itoa(md.SSHPort) + "-:22"; !strings.Contains(strings.Join(netdev, " "), want) {
					t.Errorf("%s: its VM does not forward the recorded SSH port (%s): %v", name, want, netdev)
				}
				if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(md.SSHPort)), time.Second); err != nil {
					t.Errorf("%s: SSH port %d: %v", name, md.SSHPort, err)
				} else if line, _ := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(line, "SSH-2.0-") {
					c.Close()
					t.Errorf("%s: SSH port %d answers %q, not its VM's banner", name, md.SSHPort, line)
				} else {
					c.Close()
				}
			}
			for name, procs := range vm {
				if _, ok := ms[name]; !ok {
					t.Errorf("VM process of %s without a machine: %v", name, procs)
				}
			}
			// Stray pidfiles: none outside a machine's directory or the switch's.
			pidfiles, _ := filepath.Glob(filepath.Join(cdir(), "*", "*.pid"))
			for _, f := range pidfiles {
				if _, ok := ms[filepath.Base(filepath.Dir(f))]; !ok {
					t.Errorf("stray pidfile %s", f)
				}
			}
			live := 0
			for _, md := range ms {
				if !md.Reserved {
					live++
				}
			}
			switch {
			case live > 0 && len(sw) != 1:
				t.Errorf("%d machines and %d switches, want 1: %v", live, len(sw), sw)
			case live > 0 && pidOf(filepath.Join(cdir(), ".switch.pid")) != sw[0].pid:
				t.Errorf("the switch's pidfile does not name its process %d", sw[0].pid)
			case live == 0 && len(sw) > 0:
				t.Errorf("no machine and %d switches: %v", len(sw), sw)
			}
		},
	}
	h = newHarness(t, b)
	t.Cleanup(func() { // anything a failed test left running
		for _, s := range standins(t, bin, h.dir) {
			t.Logf("killing %s %d left by the test", s.prog, s.pid)
			syscall.Kill(s.pid, syscall.SIGKILL)
		}
	})
	// Images are qcow2 files beside the spec; the stand-in's qemu-img only needs the backing file.
	c := h.spec(t)
	for _, img := range []string{c.Spec.ControlPlane.Image, c.Spec.NodePools[0].Image} {
		if err := os.WriteFile(filepath.Join(h.dir, img), []byte("QFI\xfb"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				call, err := bufio.NewReader(conn).ReadString('\n')
				if err != nil {
					return
				}
				h.hit(strings.TrimSpace(call)) // kills kiln at the armed call, then answers
				conn.Write([]byte("ok\n"))
			}()
		}
	}()
	runScenarios(t, h)
}
