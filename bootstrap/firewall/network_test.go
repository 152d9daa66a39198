package firewall

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// A labHost is a network namespace with one interface, eth0, on the lab's bridge.
type labHost struct {
	name string // short name: the role it plays in the test
	ns   string // network namespace, under /run/netns
	v4   netip.Addr
	v6   netip.Addr
}

func (h labHost) addr(ipv6 bool) netip.Addr {
	if ipv6 {
		return h.v6
	}
	return h.v4
}

// The lab's networks: 10.123.0.0/16 and fd7b::/48 on one link, so that every host reaches every
// other one directly. Third octet (IPv4) or fourth group (IPv6): 0 is the node network, 1 the admin
// range, 2 holds the load balancer, 3 is outside of everything the spec names.
func labAddrs(subnet, host int) (netip.Addr, netip.Addr) {
	return netip.MustParseAddr(fmt.Sprintf("10.123.%d.%d", subnet, host)),
		netip.MustParseAddr(fmt.Sprintf("fd7b:0:0:%d::%d", subnet, host))
}

// labSpec is the cluster the lab's nodes are fenced for, in one address family.
func labSpec(ipv6 bool) *v1alpha1.Cluster {
	if ipv6 {
		return newCluster(v1alpha1.Network{
			NodeCIDR:    "fd7b::/64",
			PodCIDR:     "fd7c::/56",
			ServiceCIDR: "fd7d::/108",
			APIEndpoint: v1alpha1.APIEndpoint{Address: "fd7b:0:0:2::10"},
			AdminCIDRs:  []string{"fd7b:0:0:1::/64"},
		})
	}
	return newCluster(v1alpha1.Network{
		NodeCIDR:    "10.123.0.0/24",
		APIEndpoint: v1alpha1.APIEndpoint{Address: "10.123.2.10"},
		AdminCIDRs:  []string{"10.123.1.0/24"},
	})
}

// probePorts are the ports every node listens on in the lab, whatever its role: 6444 is
// kube-apiserver's behind haproxy where the endpoint is a virtual address.
var probePorts = []int{PortSSH, 6443, v1alpha1.APIServerPortBehindVIP, PortEtcdClient, PortKubelet}

// TestNetwork loads the rendered rulesets into real network namespaces and probes them with real
// TCP connections: a "control-plane node" and a "worker node" are fenced, and listen on SSH, the API,
// etcd and the kubelet; an admin host, the load balancer, a peer control-plane node and a host
// outside every range try to connect. It needs root (namespaces, nftables) and the ip and nft
// programs; it only addresses the namespaces it creates.
func TestNetwork(t *testing.T) {
	requireRoot(t, "it creates network namespaces, veths and a bridge, and loads nftables rulesets into them")
	ip := command(t, "ip", "iproute2")
	nft := command(t, "nft", "nftables")

	id := make([]byte, 3)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	prefix := "kfwtest-" + hex.EncodeToString(id)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	addNetns := func(name string) string {
		t.Helper()
		ns := prefix + "-" + name
		run("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command(ip, "netns", "delete", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns delete %s: %v\n%s", ns, err, out)
			}
		})
		return ns
	}

	sw := addNetns("switch")
	run("-n", sw, "link", "add", "br0", "type", "bridge")
	run("-n", sw, "link", "set", "br0", "up")

	host := func(name string, subnet, n int) labHost {
		t.Helper()
		v4, v6 := labAddrs(subnet, n)
		h := labHost{name: name, ns: addNetns(name), v4: v4, v6: v6}
		port := "v-" + name
		run("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		run("-n", sw, "link", "set", port, "master", "br0")
		run("-n", sw, "link", "set", port, "up")
		run("-n", h.ns, "link", "set", "lo", "up")
		run("-n", h.ns, "addr", "add", v4.String()+"/16", "dev", "eth0")
		run("-n", h.ns, "addr", "add", v6.String()+"/48", "dev", "eth0", "nodad")
		run("-n", h.ns, "link", "set", "eth0", "up")
		return h
	}
	cpNode := host("cpnode", 0, 10)
	workerNode := host("wnode", 0, 20)
	peer := host("peer", 0, 11) // another control-plane node
	admin := host("admin", 1, 10)
	lb := host("lb", 2, 10)
	outside := host("outside", 3, 10)
	clients := []labHost{admin, lb, peer, outside}
	nodes := map[string]labHost{v1alpha1.RoleControlPlane: cpNode, v1alpha1.RoleWorker: workerNode}

	for _, n := range []labHost{cpNode, workerNode} {
		for _, p := range probePorts {
			listen(t, n.ns, p)
		}
	}

	// allowed says which ports each client reaches on each role's node, in the family of the spec.
	allowed := map[string]map[string][]int{
		v1alpha1.RoleControlPlane: {
			admin.name:   {PortSSH},
			lb.name:      {6443},
			peer.name:    {6443, PortEtcdClient, PortKubelet},
			outside.name: nil,
		},
		v1alpha1.RoleWorker: {
			admin.name:   {PortSSH},
			lb.name:      nil,
			peer.name:    {PortKubelet},
			outside.name: nil,
		},
	}

	// Without a firewall every client reaches every port: what the rulesets later drop, they drop.
	t.Run("no firewall", func(t *testing.T) {
		want := map[string]bool{}
		for role := range nodes {
			for _, c := range clients {
				for _, v6 := range []bool{false, true} {
					for _, p := range probePorts {
						want[probeKey(c, role, v6, p)] = true
					}
				}
			}
		}
		if diff := cmp.Diff(want, probeAll(t, clients, nodes)); diff != "" {
			t.Fatalf("connections without a firewall (-want +got):\n%s", diff)
		}
	})

	// Each family's rulesets replace the previous ones (the file deletes and redefines its table),
	// so the other family is dropped entirely: its spec names no network of it.
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			intent, err := NewIntent(labSpec(v6))
			if err != nil {
				t.Fatal(err)
			}
			for role, n := range nodes {
				ruleset, err := Nftables(intent.Roles[role], role)
				if err != nil {
					t.Fatal(err)
				}
				file := filepath.Join(t.TempDir(), role+".nft")
				if err := os.WriteFile(file, ruleset, 0o600); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(ip, "netns", "exec", n.ns, nft, "-f", file).CombinedOutput(); err != nil {
					t.Fatalf("nft -f %s in %s: %v\n%s", file, n.ns, err, out)
				}
			}
			want := map[string]bool{}
			for role := range nodes {
				for _, c := range clients {
					for _, fam := range []bool{false, true} {
						for _, p := range probePorts {
							want[probeKey(c, role, fam, p)] = fam == v6 && contains(allowed[role][c.name], p)
						}
					}
				}
			}
			if diff := cmp.Diff(want, probeAll(t, clients, nodes)); diff != "" {
				t.Errorf("connections through the firewall (-want +got; true: connected):\n%s", diff)
			}
		})
	}

	// The endpoint made on the control-plane nodes: haproxy's port admits the admin range too, and
	// kube-apiserver's behind it and keepalived's VRRP only the node network (here, the peer).
	// Workers are fenced as before.
	for _, v6 := range []bool{false, true} {
		name := "vip/ipv4"
		if v6 {
			name = "vip/ipv6"
		}
		t.Run(name, func(t *testing.T) {
			intent, err := NewIntentFor(labSpec(v6), EndpointVIP)
			if err != nil {
				t.Fatal(err)
			}
			for role, n := range nodes {
				ruleset, err := Nftables(intent.Roles[role], role)
				if err != nil {
					t.Fatal(err)
				}
				file := filepath.Join(t.TempDir(), role+".nft")
				if err := os.WriteFile(file, ruleset, 0o600); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(ip, "netns", "exec", n.ns, nft, "-f", file).CombinedOutput(); err != nil {
					t.Fatalf("nft -f %s in %s: %v\n%s", file, n.ns, err, out)
				}
			}
			vip := map[string]map[string][]int{
				v1alpha1.RoleControlPlane: {
					admin.name:   {PortSSH, 6443},
					lb.name:      {6443},
					peer.name:    {6443, v1alpha1.APIServerPortBehindVIP, PortEtcdClient, PortKubelet},
					outside.name: nil,
				},
				v1alpha1.RoleWorker: allowed[v1alpha1.RoleWorker],
			}
			want := map[string]bool{}
			for role := range nodes {
				for _, c := range clients {
					for _, fam := range []bool{false, true} {
						for _, p := range probePorts {
							want[probeKey(c, role, fam, p)] = fam == v6 && contains(vip[role][c.name], p)
						}
					}
				}
			}
			if diff := cmp.Diff(want, probeAll(t, clients, nodes)); diff != "" {
				t.Errorf("connections through the firewall (-want +got; true: connected):\n%s", diff)
			}
			wantVRRP := map[string]bool{
				"admin -> control-plane": false, "lb -> control-plane": false, "peer -> control-plane": true, "outside -> control-plane": false,
				"admin -> worker": false, "lb -> worker": false, "peer -> worker": false, "outside -> worker": false,
			}
			gotVRRP := map[string]bool{}
			for role, n := range nodes {
				for from, ok := range vrrpProbe(t, n, clients, v6) {
					gotVRRP[from+" -> "+role] = ok
				}
			}
			if diff := cmp.Diff(wantVRRP, gotVRRP); diff != "" {
				t.Errorf("VRRP packets through the firewall (-want +got; true: received):\n%s", diff)
			}
		})
	}

	// Restricted egress: a fenced node opens connections only to the cluster's networks and the
	// allowed ones. The admin host stands for an allowed NAT gateway or proxy; the outside host is
	// not allowed. Both listen on a port the inbound rules never concern (replies are established).
	t.Run("egress", func(t *testing.T) {
		const port = 8080
		for _, h := range []labHost{admin, outside} {
			listen(t, h.ns, port)
		}
		load := func(c *v1alpha1.Cluster) {
			t.Helper()
			intent, err := NewIntent(c)
			if err != nil {
				t.Fatal(err)
			}
			for role, n := range nodes {
				ruleset, err := Nftables(intent.Node(role, "workers"), role)
				if err != nil {
					t.Fatal(err)
				}
				file := filepath.Join(t.TempDir(), role+".nft")
				if err := os.WriteFile(file, ruleset, 0o600); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(ip, "netns", "exec", n.ns, nft, "-f", file).CombinedOutput(); err != nil {
					t.Fatalf("nft -f %s in %s: %v\n%s", file, n.ns, err, out)
				}
			}
		}
		type probe struct {
			from, to labHost
			ipv6     bool
			port     int
		}
		probes := []probe{
			{workerNode, cpNode, false, PortKubelet},
			{workerNode, admin, false, port},
			{workerNode, outside, false, port},
			{cpNode, outside, false, port},
			{cpNode, admin, false, port},
			{workerNode, cpNode, true, PortKubelet},
		}
		run := func() map[string]bool {
			got := map[string]bool{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, p := range probes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := fmt.Sprintf("%s -> %s ipv6=%v port %d", p.from.name, p.to.name, p.ipv6, p.port)
					ok := dial(t, p.from.ns, netip.AddrPortFrom(p.to.addr(p.ipv6), uint16(p.port)).String())
					mu.Lock()
					got[key] = ok
					mu.Unlock()
				}()
			}
			wg.Wait()
			return got
		}
		open := labSpec(false)
		load(open)
		want := map[string]bool{}
		for _, p := range probes {
			// Open egress: only the inbound rules of the control-plane node (IPv4 kubelet from the node network) matter.
			want[fmt.Sprintf("%s -> %s ipv6=%v port %d", p.from.name, p.to.name, p.ipv6, p.port)] = !(p.to.name == cpNode.name && p.ipv6)
		}
		if diff := cmp.Diff(want, run()); diff != "" {
			t.Errorf("open egress (-want +got; true: connected):\n%s", diff)
		}

		restricted := labSpec(false)
		restricted.Spec.Network.Egress = v1alpha1.Egress{Policy: v1alpha1.EgressRestricted, AllowedCIDRs: []string{admin.v4.String() + "/32"}}
		load(restricted)
		want = map[string]bool{
			"wnode -> cpnode ipv6=false port 10250":  true,
			"wnode -> admin ipv6=false port 8080":    true,
			"wnode -> outside ipv6=false port 8080":  false,
			"cpnode -> outside ipv6=false port 8080": false,
			"cpnode -> admin ipv6=false port 8080":   true,
			"wnode -> cpnode ipv6=true port 10250":   false,
		}
		if diff := cmp.Diff(want, run()); diff != "" {
			t.Errorf("restricted egress (-want +got; true: connected):\n%s", diff)
		}
	})
}

// dial says whether a TCP connection from network namespace ns to addr is made within probeTimeout;
// it fails the test if the attempt fails other than by timing out (a drop).
func dial(t *testing.T, ns, addr string) bool {
	err := inNetns(ns, func() error {
		d := net.Dialer{Timeout: probeTimeout}
		conn, err := d.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err
	})
	switch {
	case err == nil:
		return true
	case isTimeout(err) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, unix.EPERM):
		// An output chain's drop makes connect fail with EPERM at once, or time out.
		return false
	default:
		t.Errorf("dial %s from %s: %v", addr, ns, err)
		return false
	}
}

// vrrpProbe sends a packet of IP protocol 112 (VRRP; its content does not matter to the firewall)
// from each of clients to node's address, and says by client name which arrived: node reads them
// from a raw socket, which sees only what the input chain accepted.
func vrrpProbe(t *testing.T, node labHost, clients []labHost, ipv6 bool) map[string]bool {
	t.Helper()
	network := "ip4:" + strconv.Itoa(ProtoNumberVRRP)
	if ipv6 {
		network = "ip6:" + strconv.Itoa(ProtoNumberVRRP)
	}
	var conn net.PacketConn
	if err := inNetns(node.ns, func() error {
		var err error
		conn, err = net.ListenPacket(network, node.addr(ipv6).String())
		return err
	}); err != nil {
		t.Fatalf("raw socket in %s: %v", node.ns, err)
	}
	defer conn.Close()
	got := map[string]bool{}
	byAddr := map[netip.Addr]string{}
	for _, c := range clients {
		got[c.name] = false
		byAddr[c.addr(ipv6)] = c.name
	}
	for _, c := range clients {
		if err := inNetns(c.ns, func() error {
			out, err := net.Dial(network, node.addr(ipv6).String())
			if err != nil {
				return err
			}
			defer out.Close()
			_, err = out.Write([]byte("kiln vrrp probe"))
			return err
		}); err != nil {
			t.Fatalf("send VRRP from %s: %v", c.ns, err)
		}
	}
	conn.SetReadDeadline(time.Now().Add(probeTimeout))
	buf := make([]byte, 1500)
	for {
		_, from, err := conn.ReadFrom(buf)
		if err != nil {
			if !isTimeout(err) {
				t.Errorf("read VRRP in %s: %v", node.ns, err)
			}
			return got
		}
		if a, ok := netip.AddrFromSlice(from.(*net.IPAddr).IP); ok {
			if name, ok := byAddr[a.Unmap()]; ok {
				got[name] = true
			}
		}
	}
}

func contains(ports []int, p int) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

func probeKey(c labHost, role string, ipv6 bool, port int) string {
	fam := "ipv4"
	if ipv6 {
		fam = "ipv6"
	}
	return fmt.Sprintf("%s -> %s %s port %d", c.name, role, fam, port)
}

// probeTimeout is how long a probe waits for a connection; the lab's link is a local bridge, so a
// connection the firewall lets through is made in well under a millisecond.
const probeTimeout = time.Second

// probeAll tries every client to every node, port and family at once and says which connected.
func probeAll(t *testing.T, clients []labHost, nodes map[string]labHost) map[string]bool {
	t.Helper()
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		got = map[string]bool{}
		bad []string
	)
	for role, n := range nodes {
		for _, c := range clients {
			for _, v6 := range []bool{false, true} {
				for _, p := range probePorts {
					key := probeKey(c, role, v6, p)
					to := netip.AddrPortFrom(n.addr(v6), uint16(p)).String()
					wg.Add(1)
					go func() {
						defer wg.Done()
						var conn net.Conn
						err := inNetns(c.ns, func() error {
							var err error
							d := net.Dialer{Timeout: probeTimeout}
							conn, err = d.Dial("tcp", to)
							return err
						})
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil:
							conn.Close()
							got[key] = true
						case errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
							got[key] = false // dropped, as the chain's policy does
						default:
							bad = append(bad, fmt.Sprintf("%s (%s): %v", key, to, err))
							got[key] = false
						}
					}()
				}
			}
		}
	}
	wg.Wait()
	sort.Strings(bad)
	for _, b := range bad {
		// Refused or unreachable means a listener is missing or the lab is broken, not a drop.
		t.Errorf("probe failed other than by timing out: %s", b)
	}
	return got
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// listen listens on TCP port in network namespace ns (both families) and accepts and closes every
// connection until the test ends.
func listen(t *testing.T, ns string, port int) {
	t.Helper()
	var l net.Listener
	err := inNetns(ns, func() error {
		var err error
		l, err = net.Listen("tcp", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		t.Fatalf("listen on port %d in %s: %v", port, ns, err)
	}
	// Cleanups run last first: the listener closes before its namespace is deleted.
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// inNetns runs fn on an OS thread that has joined the network namespace /run/netns/NAME, and
// returns its error. Sockets fn makes belong to that namespace for their whole life, whichever
// thread uses them later. The thread is never given back to the Go runtime: the goroutine exits
// locked, so the runtime ends the thread instead of reusing it in the wrong namespace.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread, on purpose (see above).
		f, err := os.Open(filepath.Join("/run/netns", name))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
