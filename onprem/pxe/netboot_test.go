package pxe

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testtool"
)

// initScript is the /init of the test's initrd: busybox brings up the NIC, takes a DHCP lease (from
// kiln), and fetches the ignition.config.url that kiln put on the kernel command line, as Ignition in
// a real initramfs would.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo kiln-initrd: started
insmod /e1000.ko
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -s /dhcp.sh -q -n -t 20 -T 1
url=$(sed -n 's/.*ignition\.config\.url=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "kiln-initrd: fetching $url"
if wget -q -O /ignition.json "$url"; then
	echo "kiln-initrd: ignition fetched, $(wc -c < /ignition.json) bytes, $(grep -o '"version":"3.5.0"' /ignition.json)"
	echo "kiln-initrd: names $(grep -o 'demo-workers-[0-9]' /ignition.json | sort -u | tr '\n' ' ')"
else
	echo "kiln-initrd: fetch failed"
fi
if wget -q -O /again.json "$url"; then
	echo "kiln-initrd: replay served"
else
	echo "kiln-initrd: replay refused"
fi
poweroff -f
`

const dhcpScript = `#!/bin/sh
case "$1" in bound|renew) ip addr add "$ip/${mask:-24}" dev "$interface" ;; esac
`

// TestNetworkBoot boots a QEMU machine (TCG, the iPXE ROM of Debian's ipxe-qemu, -boot n) on a tap
// in a network namespace where the built kiln binary runs 'kiln pxe serve --dhcp full', arms it with
// 'kiln pxe arm', and checks from kiln's own records (kiln get machines) that the machine got its
// lease, its script, the kernel and initrd, and its own Ignition, which its initrd fetched from the
// one-time URL on its kernel command line; that a second fetch of that URL was refused; and that the
// ticket was bound to the leased address and is spent.
func TestNetworkBoot(t *testing.T) {
	testtool.RequireRoot(t)
	testtool.ExclusiveVMs(t)
	kernel := testtool.Tool(t, "pxe-kernel")
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("qemu-system-x86_64: %v (hack/tools.sh pxe-kernel installs it)", err)
	}
	const rom = "/usr/lib/ipxe/qemu/pxe-e1000.rom"
	for _, f := range []string{rom, "/bin/busybox", filepath.Join(filepath.Dir(kernel), "e1000.ko")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v (hack/tools.sh pxe-kernel installs ipxe-qemu and busybox-static)", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	kiln := filepath.Join(dir, "kiln")
	build := exec.CommandContext(ctx, "go", "build", "-o", kiln, "github.com/kiln-dev/kiln/cmd/kiln")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KILN_STATE_") {
			env = append(env, e)
		}
	}
	env = append(env, "KILN_STATE_DIR="+filepath.Join(dir, "state"))
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, kiln, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kiln %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("init", "demo", "--provider", "metal")

	assets := filepath.Join(dir, "assets")
	os.MkdirAll(assets, 0o755)
	copyFile(t, kernel, filepath.Join(assets, "vmlinuz"))
	e1000, _ := os.ReadFile(filepath.Join(filepath.Dir(kernel), "e1000.ko"))
	busybox, _ := os.ReadFile("/bin/busybox")
	initrd := newcArchive(t, []cpioFile{
		{name: "bin", mode: 0o40755}, {name: "proc", mode: 0o40755}, {name: "sys", mode: 0o40755}, {name: "dev", mode: 0o40755},
		{name: "bin/busybox", mode: 0o100755, data: busybox},
		{name: "init", mode: 0o100755, data: []byte(initScript)},
		{name: "dhcp.sh", mode: 0o100755, data: []byte(dhcpScript)},
		{name: "e1000.ko", mode: 0o100644, data: e1000},
	})
	os.WriteFile(filepath.Join(assets, "initrd.img"), initrd, 0o644)
	const mac, other = "52:54:00:aa:00:01", "52:54:00:aa:00:02"
	os.WriteFile(filepath.Join(dir, "machines.yaml"), []byte(`apiVersion: kiln.dev/v1alpha1
kind: MachineInventory
profiles:
  - name: debian
    kernel: vmlinuz
    initrd: [initrd.img]
    args: [console=ttyS0, quiet]
groups:
  - name: workers
    profile: debian
    selector: {role: worker}
machines:
  - {name: demo-workers-0, mac: "`+mac+`", role: worker, pool: workers}
  - {name: demo-workers-1, mac: "`+other+`", role: worker, pool: workers}
`), 0o644)

	ns := fmt.Sprintf("kiln-pxe-%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	for _, a := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "br0", "type", "bridge"},
		{"tuntap", "add", "tap0", "mode", "tap"},
		{"link", "set", "tap0", "master", "br0"},
		{"addr", "add", "10.213.0.1/24", "dev", "br0"},
		{"link", "set", "br0", "up"},
		{"link", "set", "tap0", "up"},
	} {
		ip(append([]string{"-n", ns}, a...)...)
	}

	serve := exec.Command("ip", "netns", "exec", ns, kiln, "pxe", "serve", "-f", "cluster.yaml", "-i", "machines.yaml",
		"--assets", assets, "--listen", "10.213.0.1:8080", "--base-url", "http://10.213.0.1:8080",
		"--dhcp", "full", "--interface", "br0", "--range", "10.213.0.100-10.213.0.150", "--flush-every", "200ms")
	serve.Dir, serve.Env = dir, env
	var serveLog bytes.Buffer
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			serve.Process.Signal(syscall.SIGTERM)
			serve.Wait()
		}
	}
	t.Cleanup(stop)
	for !strings.Contains(serveLog.String(), "msg=serving") {
		if ctx.Err() != nil || serve.ProcessState != nil {
			t.Fatalf("kiln pxe serve did not start:\n%s", serveLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	if out := run("pxe", "arm", "demo-workers-0"); !strings.Contains(out, "armed demo-workers-0") {
		t.Fatalf("kiln pxe arm: %s", out)
	}

	serial := filepath.Join(dir, "serial.log")
	vm := exec.CommandContext(ctx, "ip", "netns", "exec", ns, qemu, "-accel", "tcg", "-m", "512", "-nographic",
		"-display", "none", "-monitor", "none", "-no-reboot", "-boot", "n",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "e1000,netdev=n0,mac="+mac+",romfile="+rom,
		"-serial", "file:"+serial)
	start := time.Now()
	if out, err := vm.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(serial)
		t.Fatalf("qemu: %v\n%s\nserial:\n%s\nkiln:\n%s", err, out, log, serveLog.String())
	}
	t.Logf("network boot to Ignition fetched and power-off: %s", time.Since(start).Round(time.Second))
	stop()
	console, _ := os.ReadFile(serial)
	if !bytes.Contains(console, []byte(`kiln-initrd: ignition fetched`)) || !bytes.Contains(console, []byte(`"version":"3.5.0"`)) ||
		!bytes.Contains(console, []byte("kiln-initrd: names demo-workers-0 ")) || bytes.Contains(console, []byte("demo-workers-1")) {
		t.Fatalf("the machine did not fetch its own Ignition; console:\n%s\nkiln:\n%s", console, serveLog.String())
	}
	if !bytes.Contains(console, []byte("kiln-initrd: replay refused")) {
		t.Fatalf("the one-time URL was served twice; console:\n%s\nkiln:\n%s", console, serveLog.String())
	}

	var machines []struct {
		Name   string              `json:"name"`
		MAC    string              `json:"mac"`
		IP     string              `json:"ip"`
		Phase  string              `json:"phase"`
		Enroll string              `json:"enroll"`
		Steps  map[Step]StepRecord `json:"steps"`
		Ticket *struct {
			Bind  string `json:"bind"`
			Spent *struct {
				From string `json:"from"`
			} `json:"spent"`
			Refused []struct {
				From   string `json:"from"`
				Reason string `json:"reason"`
			} `json:"refused"`
		} `json:"ticket"`
	}
	if err := json.Unmarshal([]byte(run("get", "machines", "-o", "json")), &machines); err != nil {
		t.Fatal(err)
	}
	if len(machines) != 2 {
		t.Fatalf("get machines: %+v", machines)
	}
	booted, idle := machines[0], machines[1]
	if booted.MAC != mac || idle.MAC != other {
		t.Fatalf("get machines order: %+v", machines)
	}
	if got := net.ParseIP(booted.IP); got == nil || !(&net.IPNet{IP: net.IPv4(10, 213, 0, 0), Mask: net.CIDRMask(24, 32)}).Contains(got) {
		t.Errorf("lease %q not from the range", booted.IP)
	}
	for _, s := range []Step{StepDHCP, StepScript, StepKernel, StepInitrd, StepIgnition} {
		if booted.Steps[s].Count == 0 {
			t.Errorf("step %s not recorded: %+v", s, booted.Steps)
		}
	}
	if booted.Phase != string(StepIgnition) {
		t.Errorf("phase %q, want ignition", booted.Phase)
	}
	// Spent by the machine at its lease, to which it was bound; the replay refused and recorded (the
	// machine's own replay reads as a possible theft, as anyone's would).
	if tk := booted.Ticket; tk == nil || tk.Bind != booted.IP || tk.Spent == nil || tk.Spent.From != booted.IP ||
		len(tk.Refused) != 1 || tk.Refused[0].From != booted.IP || booted.Enroll != "spent (possible theft)" {
		t.Errorf("enrollment %q, ticket %+v; want bound to and spent from %s, the replay refused", booted.Enroll, tk, booted.IP)
	}
	if len(idle.Steps) != 0 || idle.Phase != "waiting" || idle.Enroll != "-" {
		t.Errorf("the machine that never booted has records: %+v", idle)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

type cpioFile struct {
	name string
	mode uint32
	data []byte
}

// newcArchive writes files as a gzipped cpio "newc" archive, the initramfs format.
func newcArchive(t *testing.T, files []cpioFile) []byte {
	t.Helper()
	var raw bytes.Buffer
	pad := func() {
		for raw.Len()%4 != 0 {
			raw.WriteByte(0)
		}
	}
	write := func(ino int, f cpioFile) {
		fmt.Fprintf(&raw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, f.mode, 0, 0, 1, 0, len(f.data), 0, 0, 0, 0, len(f.name)+1, 0)
		raw.WriteString(f.name)
		raw.WriteByte(0)
		pad()
		raw.Write(f.data)
		pad()
	}
	for i, f := range files {
		write(i+1, f)
	}
	write(0, cpioFile{name: "TRAILER!!!"})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return gz.Bytes()
}
