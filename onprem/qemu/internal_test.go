package qemu

import (
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

func TestQEMUArgs(t *testing.T) {
	cfg := Config{MemoryMiB: 512, CPUs: 2}
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
	for _, tc := range []struct {
		name string
		boot bootSpec
		want []string
	}{
		{name: "firmware", want: common},
		{
			name: "kernel",
			boot: bootSpec{Kernel: "/i/vmlinuz", Initrd: "/i/initrd.img", Args: DefaultKernelArgs},
			want: append(append([]string{}, common...), "-kernel", "/i/vmlinuz", "-initrd", "/i/initrd.img", "-append", DefaultKernelArgs),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := qemuArgs(cfg, md, "/s/c/c-workers-0", switchRef{Dir: "/s/c/.switch"}, tc.boot)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("qemuArgs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWrapIgnition(t *testing.T) {
	inner := []byte(`{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/kiln/x","contents":{"source":"data:,x"}}]}}`)
	nw := privateNetwork{MAC: "52:54:00:01:02:03", Address: netip.MustParseAddr("10.0.0.11"), Prefix: netip.MustParsePrefix("10.0.0.0/24")}
	out, err := wrapIgnition(inner, nw, []hostEntry{{"10.0.0.11", "c-workers-1"}, {"10.0.0.10", "c-control-plane-0"}, {"10.0.0.11", "c-workers-1"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, rpt, err := v3_5.Parse(out)
	if err != nil || len(rpt.Entries) > 0 {
		t.Fatalf("outer config: %v %s", err, rpt)
	}
	if n := len(cfg.Ignition.Config.Merge); n != 1 {
		t.Fatalf("outer config merges %d configs, want 1", n)
	}
	src := *cfg.Ignition.Config.Merge[0].Source
	got, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(src, "data:;base64,"))
	if err != nil || string(got) != string(inner) {
		t.Errorf("merged config = %q (%v), want the inner config whole", got, err)
	}
	files := map[string]string{}
	for _, f := range cfg.Storage.Files {
		data, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(*f.Contents.Source, "data:;base64,"))
		if err != nil {
			t.Fatal(err)
		}
		files[f.Path] = string(data)
	}
	for path, wants := range map[string][]string{
		PrivateNetworkFile: {"MACAddress=52:54:00:01:02:03\n", "Address=10.0.0.11/24\n"},
		HostsFile:          {"127.0.0.1\tlocalhost\n", "10.0.0.11\tc-workers-1\n10.0.0.10\tc-control-plane-0\n"},
	} {
		for _, w := range wants {
			if !strings.Contains(files[path], w) {
				t.Errorf("%s lacks %q:\n%s", path, w, files[path])
			}
		}
	}
	if strings.Count(files[HostsFile], "c-workers-1") != 1 {
		t.Errorf("%s names c-workers-1 more than once:\n%s", HostsFile, files[HostsFile])
	}

	for _, bad := range []string{`{"ignition":{"version":"9.0.0"}}`, `not json`, `{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"relative"}]}}`} {
		if _, err := wrapIgnition([]byte(bad), nw, nil); err == nil || !strings.Contains(err.Error(), "ignition config") {
			t.Errorf("wrapIgnition(%s): err = %v, want an ignition config error", bad, err)
		}
	}
}

func TestNextAddress(t *testing.T) {
	p := netip.MustParsePrefix("10.0.0.0/27")
	for _, tc := range []struct {
		name    string
		all     []meta
		want    string
		wantErr bool
	}{
		{name: "first", want: "10.0.0.10"},
		{name: "lowest free", all: []meta{{Cluster: "a", Address: "10.0.0.10"}, {Cluster: "a", Address: "10.0.0.12"}}, want: "10.0.0.11"},
		{name: "other clusters do not count", all: []meta{{Cluster: "b", Address: "10.0.0.10"}}, want: "10.0.0.10"},
		{name: "full", all: func() []meta {
			var ms []meta
			for a := netip.MustParseAddr("10.0.0.10"); p.Contains(a); a = a.Next() {
				ms = append(ms, meta{Cluster: "a", Address: a.String()})
			}
			return ms
		}(), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := nextAddress(p, tc.all, "a")
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
	_, err := New(Config{MemoryMiB: 8, CPUs: -1, SSHPortBase: 80, PrivateCIDR: "10.0.0.0/30", Initrd: "/i", QEMU: "/nonexistent/qemu"})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("New: err = %v, want ErrInvalid", err)
	}
	for _, field := range []string{"StateDir", "MemoryMiB", "CPUs", "SSHPortBase", "PrivateCIDR", "Initrd", "QEMU"} {
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
		SSHPortBase: v1alpha1.DefaultQEMUSSHPortBase, PrivateCIDR: "10.1.2.0/24"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FromSpec (-want +got):\n%s", diff)
	}
}
