package qemu

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
)

func TestQEMUArgs(t *testing.T) {
	cfg := Config{MemoryMiB: 512, CPUs: 2, APIPort: 6443, Socat: "/usr/bin/socat"}
	md := meta{Name: "c-workers-0", SSHPort: 2300, MAC: "52:54:00:aa:bb:cc"}
	common := []string{
		"-name", "kiln-c-workers-0",
		"-machine", "q35", "-accel", "tcg,thread=multi",
		"-m", "512", "-smp", "2",
		"-nodefaults", "-display", "none",
		"-serial", "file:/s/c/c-workers-0/serial.log",
		"-pidfile", "/s/c/c-workers-0/qemu.pid", "-daemonize",
		"-drive", "file=/s/c/c-workers-0/disk.qcow2,if=virtio,format=qcow2",
		"-fw_cfg", "name=opt/com.coreos/config,file=/s/c/c-workers-0/config.ign",
		"-device", "virtio-rng-pci",
		"-netdev", "user,id=user0,restrict=on,hostfwd=tcp:127.0.0.1:2300-:22",
		"-device", "virtio-net-pci,netdev=user0",
		"-netdev", "vde,id=private0,sock=/s/c/.switch",
		"-device", "virtio-net-pci,netdev=private0,mac=52:54:00:aa:bb:cc",
	}
	controlPlane := append([]string{}, common...)
	for i, a := range controlPlane {
		controlPlane[i] = strings.ReplaceAll(a, "c-workers-0", "c-control-plane-0")
	}
	controlPlane[slices.Index(controlPlane, "-netdev")+1] = "user,id=user0,restrict=on,hostfwd=tcp:127.0.0.1:2300-:22,hostfwd=tcp:127.0.0.1:16443-:6443"
	served := append([]string{}, common...)
	served[slices.Index(served, "-netdev")+1] = "user,id=user0,restrict=on,hostfwd=tcp:127.0.0.1:2300-:22,guestfwd=tcp:10.0.2.100:8443-cmd:/usr/bin/socat - TCP:127.0.0.1:17450"
	for _, tc := range []struct {
		name string
		md   meta
		boot bootSpec
		want []string
	}{
		{name: "firmware", md: md, want: common},
		{
			name: "its cluster has a config server: 10.0.2.100:8443 reaches it",
			md:   meta{Name: "c-workers-0", SSHPort: 2300, MAC: "52:54:00:aa:bb:cc", ConfigPort: 17450},
			want: served,
		},
		{
			name: "kernel",
			md:   md,
			boot: bootSpec{Kernel: "/i/vmlinuz", Initrd: "/i/initrd.img", Args: DefaultKernelArgs},
			want: append(append([]string{}, common...), "-kernel", "/i/vmlinuz", "-initrd", "/i/initrd.img", "-append", DefaultKernelArgs),
		},
		{
			name: "control plane: the API endpoint's port forwarded too",
			md:   meta{Name: "c-control-plane-0", SSHPort: 2300, APIPort: 16443, MAC: "52:54:00:aa:bb:cc"},
			want: controlPlane,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := "/s/c/" + tc.md.Name
			got := qemuArgs(cfg, tc.md, dir, switchRef{Dir: "/s/c/.switch"}, tc.boot)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("qemuArgs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNextAddress(t *testing.T) {
	p := netip.MustParsePrefix("10.0.0.0/27")
	for _, tc := range []struct {
		name    string
		all     []meta
		exclude []netip.Addr
		want    string
		wantErr bool
	}{
		{name: "first", want: "10.0.0.10"},
		{name: "lowest free", all: []meta{{Cluster: "a", Address: "10.0.0.10"}, {Cluster: "a", Address: "10.0.0.12"}}, want: "10.0.0.11"},
		{name: "other clusters do not count", all: []meta{{Cluster: "b", Address: "10.0.0.10"}}, want: "10.0.0.10"},
		{name: "reserved addresses count", all: []meta{{Cluster: "a", Address: "10.0.0.10", Reserved: true}}, want: "10.0.0.11"},
		{name: "the endpoint's address is skipped", exclude: []netip.Addr{netip.MustParseAddr("10.0.0.10")}, want: "10.0.0.11"},
		{name: "full", all: func() []meta {
			var ms []meta
			for a := netip.MustParseAddr("10.0.0.10"); p.Contains(a); a = a.Next() {
				ms = append(ms, meta{Cluster: "a", Address: a.String()})
			}
			return ms
		}(), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := nextAddress(p, tc.all, "a", tc.exclude...)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("nextAddress = %s, want an error", got)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("nextAddress = %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := New(Config{MemoryMiB: 8, CPUs: -1, SSHPortBase: 80, APIPortBase: 70000, APIPort: -1, PrivateCIDR: "10.0.0.0/30", Initrd: "/i", QEMU: "/nonexistent/qemu"})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("New: err = %v, want ErrInvalid", err)
	}
	for _, field := range []string{"StateDir", "MemoryMiB", "CPUs", "SSHPortBase", "APIPortBase", "APIPort", "PrivateCIDR", "Initrd", "QEMU"} {
		if !strings.Contains(err.Error(), "config: "+field+":") {
			t.Errorf("New: error does not name %s:\n%v", field, err)
		}
	}
}

func TestFromSpec(t *testing.T) {
	c := v1alpha1.Starter("demo")
	c.Spec.Provider.QEMU.MemoryMiB = 1024
	c.Spec.Network.PrivateSubnets = []string{"10.1.2.0/24"}
	got := FromSpec(c, "/state", "/images")
	want := Config{StateDir: "/state", ImageDir: "/images", MemoryMiB: 1024, CPUs: v1alpha1.DefaultQEMUCPUs,
		SSHPortBase: v1alpha1.DefaultQEMUSSHPortBase, APIPortBase: v1alpha1.DefaultQEMUAPIPortBase, APIPort: 6443,
		PrivateCIDR: "10.1.2.0/24", EndpointAddress: netip.MustParseAddr("10.0.0.5")}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("FromSpec (-want +got):\n%s", diff)
	}
}

// newTestProvider is a Provider on a temporary state directory whose programs do nothing (true), or
// fail (false) where fail names them: enough for what runs no VM.
func newTestProvider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	cfg.StateDir = t.TempDir()
	for _, p := range []*string{&cfg.QEMU, &cfg.QEMUImg, &cfg.VDESwitch} {
		if *p == "" {
			*p = "true"
		}
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReserve: a name gets the lowest free address from .10 before its machine exists, the same one
// however often it asks, none that the endpoint or another name of its cluster has; Delete releases
// it. A reservation is no machine: List, SSHAddress and Stop do not see one.
func TestReserve(t *testing.T) {
	type step struct {
		op            string // reserve or delete
		cluster, name string
		want          string // the address, or a substring of the error
		wantErr       bool
	}
	for _, tc := range []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{
			name: "lowest free from .10, once per name",
			steps: []step{
				{op: "reserve", cluster: "a", name: "a-control-plane-0", want: "10.0.0.10"},
				{op: "reserve", cluster: "a", name: "a-control-plane-1", want: "10.0.0.11"},
				{op: "reserve", cluster: "a", name: "a-control-plane-0", want: "10.0.0.10"},
				{op: "reserve", cluster: "a", name: "a-workers-0", want: "10.0.0.12"},
			},
		},
		{
			name: "delete releases",
			steps: []step{
				{op: "reserve", cluster: "a", name: "a-workers-0", want: "10.0.0.10"},
				{op: "reserve", cluster: "a", name: "a-workers-1", want: "10.0.0.11"},
				{op: "delete", name: "a-workers-0"},
				{op: "reserve", cluster: "a", name: "a-workers-2", want: "10.0.0.10"},
				{op: "reserve", cluster: "a", name: "a-workers-1", want: "10.0.0.11"},
			},
		},
		{
			name: "the endpoint's address is never a machine's",
			cfg:  Config{PrivateCIDR: "10.1.0.0/24", EndpointAddress: netip.MustParseAddr("10.1.0.10")},
			steps: []step{
				{op: "reserve", cluster: "a", name: "a-control-plane-0", want: "10.1.0.11"},
			},
		},
		{
			name: "clusters have their own networks, not their own names",
			steps: []step{
				{op: "reserve", cluster: "a", name: "a-workers-0", want: "10.0.0.10"},
				{op: "reserve", cluster: "b", name: "b-workers-0", want: "10.0.0.10"},
				{op: "reserve", cluster: "b", name: "a-workers-0", wantErr: true, want: "the name is taken by a machine of cluster a"},
			},
		},
		{
			name: "a full network",
			cfg:  Config{PrivateCIDR: "10.0.0.0/27"},
			steps: func() []step {
				var s []step
				for i := range 21 { // .10 to .30; .31 is the broadcast address
					s = append(s, step{op: "reserve", cluster: "a", name: "a-workers-" + strconv.Itoa(i), want: "10.0.0." + strconv.Itoa(10+i)})
				}
				return append(s, step{op: "reserve", cluster: "a", name: "a-workers-99", wantErr: true, want: "no free address in 10.0.0.0/27"})
			}(),
		},
		{
			name:  "bad names",
			steps: []step{{op: "reserve", cluster: "a", name: "A_1", wantErr: true, want: `name "A_1" is not a DNS label`}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProvider(t, tc.cfg)
			ctx := t.Context()
			for i, s := range tc.steps {
				switch s.op {
				case "reserve":
					got, err := p.Reserve(ctx, s.cluster, s.name)
					switch {
					case s.wantErr && (err == nil || !strings.Contains(err.Error(), s.want)):
						t.Fatalf("step %d: Reserve(%s, %s) = %s, %v; want an error saying %q", i, s.cluster, s.name, got, err, s.want)
					case !s.wantErr && (err != nil || got.String() != s.want):
						t.Fatalf("step %d: Reserve(%s, %s) = %s, %v; want %s", i, s.cluster, s.name, got, err, s.want)
					}
				case "delete":
					if err := p.Delete(ctx, s.name); err != nil {
						t.Fatalf("step %d: Delete(%s): %v", i, s.name, err)
					}
				}
			}
			for _, cluster := range []string{"a", "b"} {
				if ms, err := p.List(ctx, cluster); err != nil || len(ms) != 0 {
					t.Errorf("List(%s) = %v, %v; reservations are no machines", cluster, ms, err)
				}
			}
			if len(tc.steps) > 0 && !tc.steps[0].wantErr {
				name := tc.steps[0].name
				if _, err := p.SSHAddress(name); !errors.Is(err, ErrNotFound) {
					t.Errorf("SSHAddress(%s) of a reservation: %v, want ErrNotFound", name, err)
				}
				if err := p.Stop(ctx, name); err != nil {
					t.Errorf("Stop(%s) of a reservation: %v", name, err)
				}
				if _, err := p.APIAddress(ctx, tc.steps[0].cluster); !errors.Is(err, provisioner.ErrNotReachable) {
					t.Errorf("APIAddress without machines: %v, want ErrNotReachable", err)
				}
			}
		})
	}
}

// A Create that fails keeps the name's reservation, so that the address rendered into its config, and
// into the other control-plane nodes' (etcd's members, haproxy's backends), stays its own.
func TestFailedCreateKeepsTheReservation(t *testing.T) {
	p := newTestProvider(t, Config{VDESwitch: "false"}) // the private network's switch does not start
	ctx := context.Background()
	addr, err := p.Reserve(ctx, "a", "a-control-plane-0")
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = p.Create(ctx, provisioner.MachineSpec{Cluster: "a", Name: "a-control-plane-0", Role: v1alpha1.RoleControlPlane,
		Image: img, Ignition: []byte(`{"ignition":{"version":"3.5.0"}}`)})
	if err == nil || !strings.Contains(err.Error(), "private network switch") {
		t.Fatalf("Create: %v, want the switch's failure", err)
	}
	if _, err := p.Reserve(ctx, "a", "a-workers-0"); err != nil {
		t.Fatal(err)
	}
	if again, err := p.Reserve(ctx, "a", "a-control-plane-0"); err != nil || again != addr {
		t.Errorf("after the failed Create, Reserve = %s, %v; want %s still", again, err, addr)
	}
	entries, _ := os.ReadDir(filepath.Join(p.cfg.StateDir, "a", "a-control-plane-0"))
	if len(entries) != 1 || entries[0].Name() != metaFile {
		t.Errorf("the failed Create left %v behind, want only the reservation's %s", entries, metaFile)
	}
}

// TestDeleteNetwork: what a kiln killed in the middle of a delete or a create leaves of a cluster
// without machines (reservations, a directory without a record, the switch's directory) goes; a
// machine that is still there keeps it all and is named; other clusters are untouched.
func TestDeleteNetwork(t *testing.T) {
	for _, tc := range []struct {
		name string
		// reserved and unrecorded are names of cluster a with a reservation, or a directory and no
		// record; machine names a machine of a (a record that is not a reservation).
		reserved, unrecorded []string
		machine              string
		wantErr              string
		wantLeft             []string // entries left in a's directory
	}{
		{name: "nothing there"},
		{name: "a switch directory only", wantLeft: nil},
		{name: "reservations", reserved: []string{"a-workers-0", "a-control-plane-0"}},
		{name: "a create interrupted before its record", unrecorded: []string{"a-workers-1"}},
		{
			name:     "a machine is still there",
			reserved: []string{"a-workers-0"}, machine: "a-workers-1",
			wantErr:  "machines a-workers-1 are still there",
			wantLeft: []string{".switch", "a-workers-1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProvider(t, Config{})
			ctx := context.Background()
			for _, n := range tc.reserved {
				if _, err := p.Reserve(ctx, "a", n); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := p.Reserve(ctx, "b", "b-workers-0"); err != nil {
				t.Fatal(err)
			}
			adir := p.clusterDir("a")
			if tc.name != "nothing there" {
				if err := os.MkdirAll(filepath.Join(adir, switchDir), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range tc.unrecorded {
				if err := os.MkdirAll(filepath.Join(adir, n), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(adir, n, diskFile), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.machine != "" {
				if err := os.MkdirAll(filepath.Join(adir, tc.machine), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := p.writeMeta(filepath.Join(adir, tc.machine), meta{Name: tc.machine, Cluster: "a", Address: "10.0.0.20"}); err != nil {
					t.Fatal(err)
				}
			}

			err := p.DeleteNetwork(ctx, "a")
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("DeleteNetwork: %v, want an error with %q", err, tc.wantErr)
			}
			var left []string
			entries, err := os.ReadDir(adir)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			for _, e := range entries {
				left = append(left, e.Name())
			}
			if diff := cmp.Diff(tc.wantLeft, left, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("left in a's directory (-want +got):\n%s", diff)
			}
			if tc.wantErr == "" {
				if _, err := os.Stat(adir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a's directory: %v, want it gone", err)
				}
			}
			if a, err := p.Reserve(ctx, "b", "b-workers-0"); err != nil || a.String() != "10.0.0.10" {
				t.Errorf("b's reservation: %v %v, want 10.0.0.10 kept", a, err)
			}
		})
	}
}

// A cluster's config server port is chosen once and kept; another cluster gets another, and a port
// something else listens on is skipped.
func TestConfigServer(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	base := busy.Addr().(*net.TCPAddr).Port
	p, err := New(Config{StateDir: t.TempDir(), ConfigPortBase: base, Socat: "sh"})
	if err != nil {
		t.Fatal(err) // also when the kernel gave a port above ConfigPortBase's range (ip_local_port_range ends at 60999)
	}
	ctx := context.Background()
	a, err := p.ConfigServer(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if a.Listen == busy.Addr().String() || a.URL != "https://10.0.2.100:8443" || !slices.Equal(a.Names, []string{"10.0.2.100"}) {
		t.Errorf("ConfigServer(a) = %+v", a)
	}
	b, err := p.ConfigServer(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.ConfigServer(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if b.Listen == a.Listen || again.Listen != a.Listen {
		t.Errorf("a: %s then %s, b: %s", a.Listen, again.Listen, b.Listen)
	}
	if err := os.WriteFile(filepath.Join(p.clusterDir("a"), configServerFile), []byte(`{"port":0}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ConfigServer(ctx, "a"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), configServerFile) {
		t.Errorf("a damaged %s: %v", configServerFile, err)
	}
	p.cfg.Socat = "no-such-socat"
	if _, err := p.ConfigServer(ctx, "c"); err == nil || !strings.Contains(err.Error(), "apt-get install socat") {
		t.Errorf("without socat: %v", err)
	}
}
