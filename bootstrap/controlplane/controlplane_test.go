package controlplane

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/ignition"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/internal/testtool"
)

const spec = `apiVersion: kiln.dev/v1alpha1
kind: Cluster
metadata:
  name: cpt
spec:
  provider:
    name: qemu
  controlPlane:
    image: kiln-debian-12.qcow2
  nodePools:
    - name: general
      count: 1
      image: kiln-debian-12.qcow2
  ssh:
    generate: true
  security:
    podSecurity:
      namespaces:
        apps: {enforce: restricted}
`

// input is spec with fresh secrets and a bootstrap token.
func input(tb testing.TB) ignition.Input {
	tb.Helper()
	c, err := v1alpha1.Decode([]byte(spec), "cluster.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().Add(-time.Minute)
	b, err := secrets.Generate(c, rand.Reader, now)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := secrets.NewBootstrapToken(rand.Reader, now, time.Hour, "controlplane test")
	if err != nil {
		tb.Fatal(err)
	}
	b.BootstrapTokens = append(b.BootstrapTokens, tok)
	return ignition.Input{Cluster: c, Secrets: b, Token: tok}
}

// renderedNode renders the control-plane node of input and extracts it.
func renderedNode(t *testing.T) *Node {
	t.Helper()
	in := input(t)
	r, err := ignition.New(in)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := r.Render(ignition.Node{Name: "cpt-control-plane-0", Role: v1alpha1.RoleControlPlane})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := v3_5.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Extract(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCommands(t *testing.T) {
	n := renderedNode(t)
	cmds, err := n.Commands("/r", Ports{EtcdClient: 1001, EtcdPeer: 1002, APIServer: 1003, ControllerManager: 1004, Scheduler: 1005})
	if err != nil {
		t.Fatal(err)
	}
	var units []string
	for _, c := range cmds {
		units = append(units, c.Unit)
	}
	if diff := cmp.Diff([]string{UnitEtcd, UnitAPIServer, UnitControllerManager, UnitScheduler}, units); diff != "" {
		t.Fatalf("start order (-want +got):\n%s", diff)
	}
	flag := func(unit, name string) string {
		t.Helper()
		for _, c := range cmds {
			if c.Unit != unit {
				continue
			}
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
					return v
				}
			}
		}
		return "<unset>"
	}
	for _, tc := range []struct {
		unit, flag, want string
	}{
		{UnitEtcd, "listen-client-urls", "https://127.0.0.1:1001"},
		{UnitEtcd, "initial-cluster", "cpt-control-plane-0=https://127.0.0.1:1002"},
		{UnitEtcd, "data-dir", "/r/var/lib/etcd"},
		{UnitEtcd, "client-cert-auth", "true"},
		{UnitAPIServer, "etcd-servers", "https://127.0.0.1:1001"},
		{UnitAPIServer, "secure-port", "1003"},
		{UnitAPIServer, "bind-address", "127.0.0.1"},
		{UnitAPIServer, "advertise-address", "192.0.2.1"},
		{UnitAPIServer, "anonymous-auth", "false"},
		{UnitAPIServer, "authorization-mode", "Node,RBAC"},
		{UnitAPIServer, "encryption-provider-config", "/r/etc/kubernetes/encryption-config.yaml"},
		{UnitAPIServer, "tls-cert-file", "/r/etc/kubernetes/pki/apiserver.crt"},
		{UnitAPIServer, "service-account-issuer", "https://api.cpt.kiln.internal:6443"},
		{UnitControllerManager, "secure-port", "1004"},
		{UnitControllerManager, "kubeconfig", "/r/etc/kubernetes/controller-manager.conf"},
		{UnitScheduler, "secure-port", "1005"},
		{UnitScheduler, "profiling", "false"},
	} {
		if got := flag(tc.unit, tc.flag); got != tc.want {
			t.Errorf("%s --%s=%s, want %s", tc.unit, tc.flag, got, tc.want)
		}
	}
}

func TestCommandsErrors(t *testing.T) {
	n := renderedNode(t)
	delete(n.Units, UnitScheduler)
	if _, err := n.Commands("/r", Ports{}); !errors.Is(err, ErrNotRendered) || !strings.Contains(err.Error(), UnitScheduler) {
		t.Errorf("without %s: got %v, want ErrNotRendered naming it", UnitScheduler, err)
	}
	n = renderedNode(t)
	n.Units[UnitAPIServer] = "[Service]\nExecStart=/usr/local/bin/kube-apiserver --secure-port=6443 --bind-address=0.0.0.0\n"
	_, err := n.Commands("/r", Ports{})
	if err == nil || !strings.Contains(err.Error(), "already set --bind-address") {
		t.Errorf("a rendered --bind-address: got %v, want an error naming it", err)
	}
	n.Units[UnitAPIServer] = "[Service]\nExecStart=/usr/local/bin/kube-apiserver --secure-port=6443\n"
	if _, err := n.Commands("/r", Ports{}); !errors.Is(err, ErrNotRendered) || !strings.Contains(err.Error(), "--etcd-servers") {
		t.Errorf("no --etcd-servers: got %v, want ErrNotRendered naming it", err)
	}
}

func TestWrite(t *testing.T) {
	n := renderedNode(t)
	root := t.TempDir()
	if err := n.Write(root); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{
		{"etc/kubernetes/pki/ca.key", 0o600},
		{"etc/kubernetes/pki/apiserver.crt", 0o644},
		{"etc/kubernetes/encryption-config.yaml", 0o600},
		{"etc/kubernetes/kiln/00-namespaces.yaml", 0o600},
		{"etc/kiln/firewall.nft", 0o600},
		{"etc/systemd/system/kube-apiserver.service", 0o644},
		{"etc/kubernetes/pki/etcd", 0o700 | os.ModeDir},
	} {
		fi, err := os.Stat(filepath.Join(root, tc.path))
		if err != nil {
			t.Error(err)
			continue
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeDir); got != tc.mode {
			t.Errorf("%s: mode %v, want %v", tc.path, got, tc.mode)
		}
	}
	// Written again (a second run in the same directory), modes stay right.
	if err := n.Write(root); err != nil {
		t.Fatal(err)
	}
}

func TestPointKubeconfig(t *testing.T) {
	in := "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: AAAA\n    server: https://127.0.0.1:6443\n  name: x\n"
	got, err := PointKubeconfig([]byte(in), "https://127.0.0.1:40000")
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(in, ":6443", ":40000", 1); string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := PointKubeconfig([]byte("apiVersion: v1\n"), "https://x"); err == nil {
		t.Error("a kubeconfig without a server line was accepted")
	}
}

func TestFindBinaries(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvBinDir, "")
	t.Setenv("PATH", filepath.Join(dir, "none"))
	for _, name := range []string{"kube-apiserver", "kube-scheduler"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kube-controller-manager"), []byte("not executable"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := FindBinaries(dir)
	if !errors.Is(err, ErrMissingBinary) {
		t.Fatalf("got %v, want ErrMissingBinary", err)
	}
	for _, want := range []string{"etcd, kube-controller-manager (looked in " + dir, "hack/tools.sh kubernetes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
	for _, name := range []string{"etcd", "kube-controller-manager"} {
		os.Remove(filepath.Join(dir, name))
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(EnvBinDir, dir)
	b, err := FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Binaries{Etcd: filepath.Join(dir, "etcd"), APIServer: filepath.Join(dir, "kube-apiserver"),
		ControllerManager: filepath.Join(dir, "kube-controller-manager"), Scheduler: filepath.Join(dir, "kube-scheduler")}); b != want {
		t.Errorf("got %+v, want %+v", b, want)
	}
}

// binaries returns the real programs: Kubernetes and etcd from hack/tools.sh kubernetes.
func binaries(tb testing.TB) Binaries {
	tb.Helper()
	kube := filepath.Dir(testtool.Tool(tb, "kubernetes"))
	b, err := FindBinaries(kube)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestStartFailure: a component that cannot start makes Start fail with its log, and stops what
// was started.
func TestStartFailure(t *testing.T) {
	b := binaries(t)
	b.APIServer = "/bin/false"
	dir := t.TempDir()
	cp, err := Start(t.Context(), input(t), Options{Dir: dir, Binaries: b})
	if err == nil {
		cp.Stop()
		t.Fatal("Start succeeded with /bin/false as kube-apiserver")
	}
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Errorf("got %v, want ErrExited naming kube-apiserver", err)
	}
	// etcd was stopped: nothing holds its data directory's lock any more.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmdline, _ := os.ReadFile(p)
		if strings.Contains(string(cmdline), filepath.Join(dir, "var/lib/etcd")) {
			t.Errorf("etcd still runs after the failed start: %s", p)
		}
	}
}

// BenchmarkStart measures the time from Start to a ready API server: files written, etcd healthy,
// kube-apiserver's /readyz 200, the cluster init applied, the controller manager and scheduler
// started; then the control plane is stopped (not timed).
//
//	go test -run '^$' -bench Start -benchtime 3x ./bootstrap/controlplane
func BenchmarkStart(b *testing.B) {
	bins := binaries(b)
	in := input(b)
	var etcd, api time.Duration
	for b.Loop() {
		cp, err := Start(b.Context(), in, Options{Dir: b.TempDir(), Binaries: bins})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		etcd += cp.EtcdReady
		api += cp.APIReady
		if err := cp.Stop(); err != nil {
			b.Fatal(err)
		}
		if slices.Contains(cp.Pids(), 0) {
			b.Fatal("a component without a pid")
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(etcd.Milliseconds())/float64(b.N), "etcd-ready-ms/op")
	b.ReportMetric(float64(api.Milliseconds())/float64(b.N), "apiserver-ready-ms/op")
}
