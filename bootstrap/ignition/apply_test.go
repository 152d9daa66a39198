package ignition

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/internal/ignitiontest"
	"github.com/kiln-dev/kiln/nodeagent/reboot"
)

// TestApplyWorkerWithRealIgnition applies a rendered worker config with the real Ignition binary
// (v2.26.0, built by hack/tools.sh) to a temporary root: its fetch and files stages, as on first boot.
func TestApplyWorkerWithRealIgnition(t *testing.T) {
	in := fixture(t)
	raw, err := newRenderer(t, in).Render(Node{Name: "golden-general-0", Role: v1alpha1.RoleWorker, Pool: "general", Address: workerAddr(0)})
	if err != nil {
		t.Fatal(err)
	}
	root := ignitiontest.Apply(t, raw)

	uid, gid, home, err := ignitiontest.LookupUser(root, "kiln")
	if err != nil {
		t.Fatalf("admin user: %v", err)
	}
	if home != "/home/kiln" || uid == 0 {
		t.Fatalf("admin user: uid %d home %s", uid, home)
	}
	group, err := os.ReadFile(filepath.Join(root, "etc/group"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(group), "sudo:x:") || !strings.Contains(string(group), "kiln") {
		t.Errorf("kiln is not in the sudo group:\n%s", group)
	}

	for _, tc := range []struct {
		path     string
		mode     fs.FileMode
		owner    bool // owned by the admin user, else by root
		contains string
	}{
		{path: "/home/kiln/.ssh", mode: fs.ModeDir | 0o700, owner: true},
		{path: "/home/kiln/.ssh/authorized_keys", mode: 0o600, owner: true, contains: strings.TrimSpace(in.Secrets.SSH.AuthorizedKeys[0])},
		{path: "/etc/ssh/sshd_config.d/10-kiln.conf", mode: 0o600, contains: "AuthenticationMethods publickey"},
		{path: "/etc/sudoers.d/90-kiln-admin", mode: 0o440, contains: "kiln ALL=(ALL) NOPASSWD:ALL"},
		{path: "/etc/hostname", mode: 0o644, contains: "golden-general-0\n"},
		{path: "/etc/kubernetes/pki/ca.crt", mode: 0o644, contains: "BEGIN CERTIFICATE"},
		{path: "/etc/kubernetes/bootstrap-kubelet.conf", mode: 0o600, contains: "token: " + in.Token.String()},
		{path: "/var/lib/kubelet/config.yaml", mode: 0o644, contains: "kind: KubeletConfiguration"},
		{path: "/var/lib/kubelet", mode: fs.ModeDir | 0o700},
		{path: "/etc/containerd/config.toml", mode: 0o644, contains: "SystemdCgroup = true"},
		{path: "/etc/systemd/system/kubelet.service", mode: 0o644, contains: "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf"},
		{path: "/etc/systemd/system/kiln-reboot.service", mode: 0o644, contains: "ExecStart=/usr/local/bin/kiln-node reboot --kubeconfig=/etc/kubernetes/kubelet.conf --lock-cert=/etc/kiln/reboot/agent.crt"},
		{path: "/etc/kiln/reboot/agent.key", mode: 0o600, contains: "-----BEGIN PRIVATE KEY-----"},
		{path: "/etc/systemd/system-preset/20-ignition.preset", mode: 0o644, contains: "enable containerd.service\nenable kiln-firewall.service\nenable kiln-podnet.service\nenable kiln-reboot.timer\nenable kiln-ssh-hostkeys-report.service\nenable kube-proxy.service\nenable kubelet.service\n"},
		{path: "/etc/systemd/system/kiln-ssh-hostkeys-report.service", mode: 0o644, contains: "cat /etc/ssh/ssh_host_*_key.pub;"},
		{path: "/etc/systemd/system/kiln-podnet.service", mode: 0o644, contains: "ExecStart=/usr/local/bin/kiln-node podnet --cluster-cidr=10.244.0.0/16"},
		{path: "/etc/systemd/system/kube-proxy.service", mode: 0o644, contains: "ExecStart=/usr/local/bin/kube-proxy --config=/etc/kubernetes/kube-proxy.yaml"},
		{path: "/etc/kubernetes/kube-proxy.yaml", mode: 0o644, contains: "kubeconfig: /etc/kubernetes/kubelet.conf"},
		{path: "/etc/kiln/firewall.nft", mode: 0o600, contains: "table inet kiln_filter"},
		{path: "/etc/systemd/system/kiln-firewall.service", mode: 0o644, contains: "Before=network-pre.target"},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			mode, fuid, fgid, content := ignitiontest.FileInfo(t, root, tc.path)
			if mode != tc.mode {
				t.Errorf("mode %v, want %v", mode, tc.mode)
			}
			wantUID, wantGID := 0, 0
			if tc.owner {
				wantUID, wantGID = uid, gid
			}
			if fuid != wantUID || fgid != wantGID {
				t.Errorf("owner %d:%d, want %d:%d", fuid, fgid, wantUID, wantGID)
			}
			if !strings.Contains(string(content), tc.contains) {
				t.Errorf("does not contain %q:\n%s", tc.contains, content)
			}
		})
	}
	// Nothing a worker must not hold reached its disk: no private key but its reboot agent's.
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.TrimPrefix(p, root) == reboot.DefaultLockKey {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "PRIVATE KEY") {
			t.Errorf("%s holds a private key", strings.TrimPrefix(p, root))
		}
		return nil
	})
}

// TestApplyControlPlaneWithRealIgnition applies a control-plane config: keys and the encryption
// configuration land readable by root only, and every control-plane unit is enabled.
func TestApplyControlPlaneWithRealIgnition(t *testing.T) {
	raw, err := newRenderer(t, fixture(t)).Render(Node{Name: "golden-control-plane-2", Role: v1alpha1.RoleControlPlane, Address: cpAddr(2)})
	if err != nil {
		t.Fatal(err)
	}
	root := ignitiontest.Apply(t, raw)
	for _, p := range []string{"/etc/kubernetes/pki/ca.key", "/etc/kubernetes/pki/sa.key", "/etc/kubernetes/pki/etcd/peer.key",
		"/etc/kubernetes/encryption-config.yaml", "/etc/kubernetes/cluster-init.conf", "/etc/kubernetes/cluster-init-grant.conf",
		"/etc/kubernetes/cluster-init-rbac.yaml", "/etc/kubernetes/kiln/20-bootstrap-tokens.yaml"} {
		if mode, uid, _, _ := ignitiontest.FileInfo(t, root, p); mode != 0o600 || uid != 0 {
			t.Errorf("%s: mode %v uid %d, want 0600 root", p, mode, uid)
		}
	}
	_, _, _, preset := ignitiontest.FileInfo(t, root, "/etc/systemd/system-preset/20-ignition.preset")
	for _, u := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kiln-cluster-init", "haproxy", "keepalived"} {
		if !strings.Contains(string(preset), "enable "+u+".service\n") {
			t.Errorf("%s.service is not enabled:\n%s", u, preset)
		}
	}
	// The endpoint: haproxy's and keepalived's configs, and the drop-in that names keepalived's
	// interface before it starts.
	for _, f := range []struct {
		path     string
		mode     os.FileMode
		contains string
	}{
		{HAProxyConfigFile, 0o644, "server golden-control-plane-2 10.0.0.12:6444"},
		{KeepalivedConfigFile, 0o644, "10.0.0.5/32"},
		{KeepalivedInterfaceScript, 0o755, "ip -o addr show to 10.0.0.0/24"},
		{"/etc/systemd/system/keepalived.service.d/10-kiln.conf", 0o644, "ExecStartPre=" + KeepalivedInterfaceScript},
	} {
		mode, _, _, data := ignitiontest.FileInfo(t, root, f.path)
		if mode != f.mode || !strings.Contains(string(data), f.contains) {
			t.Errorf("%s: mode %v, want %v; want it to contain %q:\n%s", f.path, mode, f.mode, f.contains, data)
		}
	}
	_, _, _, etcd := ignitiontest.FileInfo(t, root, "/etc/systemd/system/etcd.service")
	if !strings.Contains(string(etcd), "--name=golden-control-plane-2") {
		t.Errorf("etcd.service does not name its member:\n%s", etcd)
	}
}
