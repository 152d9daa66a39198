package podnet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cniBin is where Debian's containernetworking-plugins puts the plugins.
const cniBin = "/usr/lib/cni"

// TestDataPathWithDebianPlugins is the pod network on a real kernel with the CNI plugins nodes run
// (Debian 12's containernetworking-plugins): two nodes, network namespaces on a bridge that stands
// for their private network, each synced by Agent.Sync from the same Nodes; a pod on each, attached
// by the bridge, host-local and portmap plugins from the CNI config the agent wrote. A pod reaches
// the other node's pod with its own address (no masquerading between pods), and a host of the
// private network outside the cluster's pod range with its node's address.
func TestDataPathWithDebianPlugins(t *testing.T) {
	requireNetAdmin(t)
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniBin, p)); err != nil {
			unavailable(t, "CNI plugin %s: %v; install Debian's containernetworking-plugins (hack/tools.sh deps)", p, err)
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		unavailable(t, "busybox (its ping): %v; install Debian's busybox-static (hack/tools.sh deps)", err)
	}

	// The private network: a bridge in lan, which also holds 192.0.2.1, a host outside the cluster.
	lan, _ := newNetns(t, "lan")
	run(t, "ip", "-n", lan, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", lan, "addr", "add", "192.0.2.1/24", "dev", "br0")
	run(t, "ip", "-n", lan, "link", "set", "br0", "up")
	nodes := []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.2.0/24"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.11"}}}},
	}
	type node struct{ ns, pod, podIP string }
	made := map[string]*node{}
	for i, n := range nodes {
		ns, h := newNetns(t, "node-"+n.Name)
		run(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "to-"+n.Name, "netns", lan)
		run(t, "ip", "-n", lan, "link", "set", "to-"+n.Name, "master", "br0", "up")
		run(t, "ip", "-n", ns, "addr", "add", n.Status.Addresses[0].Address+"/24", "dev", "eth0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")

		cniDir := t.TempDir()
		agent := &Agent{
			NodeName:    n.Name,
			ClusterCIDR: pfx("10.244.0.0/16"),
			CNIDir:      cniDir,
			Routes:      NewRouteTable(h),
			Nft:         Nft{Command: []string{"ip", "netns", "exec", ns, "nft"}},
			Log:         slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		}
		st, err := agent.Sync(t.Context(), nodes)
		if err != nil {
			t.Fatal(err)
		}
		if st.Waiting != "" || !st.WroteConflist || len(st.Added) != 1 {
			t.Fatalf("node %s: sync %+v, want the CNI config written and one route", n.Name, st)
		}

		// The pod: a sandbox namespace attached by the plugins, in the node's namespace, from the
		// CNI config the agent wrote.
		pod, _ := newNetns(t, "pod-"+n.Name)
		conf, err := os.ReadFile(filepath.Join(cniDir, ConflistFile))
		if err != nil {
			t.Fatal(err)
		}
		ip := cniAdd(t, ns, pod, fmt.Sprintf("pod-%d", i), conf)
		if !pfx(n.Spec.PodCIDR).Contains(addr(ip)) {
			t.Fatalf("pod on %s got %s, outside its node's podCIDR %s", n.Name, ip, n.Spec.PodCIDR)
		}
		made[n.Name] = &node{ns: ns, pod: pod, podIP: ip}
	}
	a, b := made["a"], made["b"]
	t.Logf("pod on a: %s, pod on b: %s", a.podIP, b.podIP)

	// Who sends what is counted where it arrives: on node b (forwarded to its pod) and on the
	// outside host.
	probe := func(ns, hook, match string) {
		t.Helper()
		rules := fmt.Sprintf("table inet kiln_probe {\n\tchain c {\n\t\ttype filter hook %s priority -300; policy accept;\n\t\t%s icmp type echo-request counter\n\t}\n}\n", hook, match)
		if err := (Nft{Command: []string{"ip", "netns", "exec", ns, "nft"}}).Load(t.Context(), []byte(rules)); err != nil {
			t.Fatal(err)
		}
	}
	count := func(ns string) int {
		t.Helper()
		out := run(t, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", "kiln_probe")
		m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no counter in:\n%s", out)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	probe(b.ns, "prerouting", "ip saddr "+a.podIP)
	probe(lan, "input", "ip saddr 192.0.2.10")

	ping := func(from, to string) {
		t.Helper()
		if out, err := exec.Command("ip", "netns", "exec", from, busybox, "ping", "-c", "1", "-W", "3", to).CombinedOutput(); err != nil {
			t.Fatalf("ping %s from %s: %v\n%s", to, from, err, out)
		}
	}
	ping(a.pod, b.podIP)
	if n := count(b.ns); n != 1 {
		t.Errorf("node b saw %d echo requests from pod %s, want 1: pod-to-pod traffic was masqueraded", n, a.podIP)
	}
	ping(b.pod, a.podIP)
	ping(a.pod, "192.0.2.1")
	if n := count(lan); n != 1 {
		t.Errorf("the outside host saw %d echo requests from node a's address, want 1: traffic leaving the pod network was not masqueraded", n)
	}
}

// cniAdd runs the plugins of a CNI config list (CNI_COMMAND=ADD) in the node's namespace for the
// sandbox namespace pod, as containerd does, and returns the pod's address. host-local keeps its
// leases in a temporary directory instead of /var/lib/cni.
func cniAdd(t *testing.T, nodeNS, pod, id string, conflist []byte) string {
	t.Helper()
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(conflist, &list); err != nil {
		t.Fatal(err)
	}
	var prev json.RawMessage
	for _, p := range list.Plugins {
		p["cniVersion"], p["name"] = list.CNIVersion, list.Name
		if ipam, ok := p["ipam"].(map[string]any); ok {
			ipam["dataDir"] = t.TempDir()
		}
		if prev != nil {
			p["prevResult"] = prev
		}
		conf, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		typ := p["type"].(string)
		cmd := exec.Command("ip", "netns", "exec", nodeNS, filepath.Join(cniBin, typ))
		cmd.Env = append(os.Environ(), "CNI_COMMAND=ADD", "CNI_CONTAINERID="+id, "CNI_NETNS=/var/run/netns/"+pod,
			"CNI_IFNAME=eth0", "CNI_PATH="+cniBin)
		cmd.Stdin = bytes.NewReader(conf)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("CNI plugin %s: %v\n%s%s", typ, err, out, stderr.String())
		}
		prev = out
	}
	var result struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(prev, &result); err != nil || len(result.IPs) == 0 {
		t.Fatalf("CNI result %s: %v", prev, err)
	}
	ip, _, _ := strings.Cut(result.IPs[0].Address, "/")
	return ip
}
