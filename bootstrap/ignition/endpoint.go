package ignition

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/firewall"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
)

// Files and units of an endpoint made on the control-plane nodes (EndpointVIP).
const (
	HAProxyConfigFile    = "/etc/haproxy/haproxy.cfg"
	KeepalivedConfigFile = "/etc/keepalived/keepalived.conf"
	// KeepalivedInterfaceScript runs before keepalived starts (ExecStartPre of a drop-in for the
	// package's keepalived.service): it writes KeepalivedInterfaceFile, which the configuration
	// includes, naming the interface that holds the node's own address.
	KeepalivedInterfaceScript = "/etc/kiln/keepalived-interface"
	KeepalivedInterfaceFile   = "/run/kiln/keepalived-interface.conf"
	// KeepalivedInterfaceParam is the keepalived parameter the interface's name is given in.
	KeepalivedInterfaceParam = "KILN_INTERFACE"
)

// Intent returns the firewall intent of cluster c's nodes, for the way the placement makes the API
// endpoint. Everything that loads or compares a node's ruleset uses it, so that they agree with what
// the rendered configs install.
func (p Placement) Intent(c *v1alpha1.Cluster) (firewall.Intent, error) {
	if p.Endpoint == EndpointVIP {
		return firewall.NewIntentFor(c, firewall.EndpointVIP)
	}
	return firewall.NewIntentFor(c, firewall.EndpointLoadBalancer)
}

// apiServerPort is the port kube-apiserver listens on: the endpoint's, where a load balancer outside
// the nodes forwards to it; v1alpha1.APIServerPortBehindVIP, where haproxy holds the endpoint's port.
func (r *Renderer) apiServerPort() int {
	if r.in.Placement.Endpoint == EndpointVIP {
		return v1alpha1.APIServerPortBehindVIP
	}
	return r.in.Cluster.Spec.Network.APIEndpoint.Port
}

// VirtualRouterID is the VRRP virtual router ID of the cluster called name, from 1 to 255: derived
// from the name, so that clusters that share a link most likely differ. Two that collide on one link
// disturb each other's endpoint; give such clusters their own link.
func VirtualRouterID(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32()%255) + 1
}

// backend is one kube-apiserver behind haproxy.
type backend struct {
	name, host string
}

// backends are the control-plane nodes' kube-apiservers: by address where the addresses are known
// before rendering, else by name.
func (r *Renderer) backends() []backend {
	var out []backend
	for _, n := range secrets.ControlPlaneNodeNames(r.in.Cluster) {
		b := backend{name: n, host: n}
		if a, ok := r.in.ControlPlaneAddresses[n]; ok {
			b.host = a.String()
		}
		out = append(out, b)
	}
	return out
}

// haproxyConfig renders haproxy.cfg for the control-plane nodes of an EndpointVIP placement: a TCP
// frontend on the endpoint's port on every address of the node (the virtual address while keepalived
// holds it here, the node's own, and whatever a provider forwards to the node), balancing to every
// control-plane node's kube-apiserver on apiServerPort. TLS passes through untouched, end to end
// between the client and the API server: haproxy checks the backends with a plain TCP connect.
func haproxyConfig(endpointPort, apiServerPort int, ipv6 bool, servers []backend) string {
	var b strings.Builder
	bind := fmt.Sprintf("*:%d", endpointPort)
	if ipv6 {
		bind = fmt.Sprintf(":::%d v4v6", endpointPort)
	}
	fmt.Fprintf(&b, `# kiln: the cluster's API endpoint on this control-plane node. haproxy listens on the endpoint's
# port on every address of the node and passes TCP connections to the kube-apiservers, whose TLS it
# does not touch. keepalived moves the endpoint's address to a node where haproxy runs.
global
	log /dev/log local0 warning
	chroot /var/lib/haproxy
	user haproxy
	group haproxy
	maxconn 4096

defaults
	mode tcp
	log global
	option tcplog
	option dontlognull
	timeout connect 5s
	# Watches and exec sessions stay open for long; the clients' own keepalives keep them busy.
	timeout client 1h
	timeout server 1h
	timeout check 5s

frontend kube-apiserver
	bind %s
	default_backend kube-apiserver

backend kube-apiserver
	balance roundrobin
	# A plain TCP connect: a node whose kube-apiserver does not accept leaves the rotation.
	default-server check inter 2s fall 3 rise 2%s
`, bind, initAddr(servers))
	for _, s := range servers {
		fmt.Fprintf(&b, "\tserver %s %s\n", s.name, net.JoinHostPort(s.host, strconv.Itoa(apiServerPort)))
	}
	return b.String()
}

// initAddr is the default-server option that lets haproxy start while a server given by name does not
// resolve yet (it resolves names with libc, /etc/hosts included, when it starts); "" when every
// server is given by address.
func initAddr(servers []backend) string {
	for _, s := range servers {
		if _, err := netip.ParseAddr(s.host); err != nil {
			return " init-addr libc,none"
		}
	}
	return ""
}

// keepalivedConfig renders keepalived.conf for the control-plane nodes of an EndpointVIP placement:
// one VRRP instance that holds the endpoint's address vip on one node at a time, on the interface
// that holds the node's address in subnet (vip's), and only while haproxy runs there.
//
// The interface's name is not known when the config is rendered (it depends on the machine's
// hardware), so the config includes KeepalivedInterfaceFile, which KeepalivedInterfaceScript writes
// when keepalived starts, and names the interface with keepalived's own parameter substitution. That
// keeps the rendered file the whole configuration apart from one line, checkable by
// keepalived --config-test, and keeps keepalived's own unit: no copy of its config is templated.
func keepalivedConfig(cluster string, vip netip.Addr, subnet netip.Prefix) string {
	prefix := 32
	version := ""
	if vip.Is6() {
		prefix = 128
		version = "\n\t# VRRP version 3: the version that carries IPv6 addresses.\n\tversion 3"
	}
	return fmt.Sprintf(`! kiln: the API endpoint's virtual address %[1]s of cluster %[2]s
! (spec.network.apiEndpoint.address), held by one control-plane node at a time.
! The name of the interface that holds this node's address in %[9]s, found when keepalived
! starts (%[3]s):
include %[4]s

global_defs {
	! keepalived runs no scripts for kiln (haproxy is tracked by its process); should one be
	! added, only root may own it.
	enable_script_security
}

vrrp_track_process haproxy {
	process haproxy
	! weight 0: without haproxy running here, the instance goes to FAULT and gives the address up.
	weight 0
	! Ride out a restart of haproxy.
	delay 2
}

vrrp_instance kiln_api {
	state BACKUP
	interface ${%[5]s}
	virtual_router_id %[6]d
	priority 100
	advert_int 1%[7]s
	virtual_ipaddress {
		%[1]s/%[8]d
	}
	track_process {
		haproxy
	}
}
`, vip, cluster, KeepalivedInterfaceScript, KeepalivedInterfaceFile, KeepalivedInterfaceParam, VirtualRouterID(cluster), version, prefix, subnet)
}

// keepalivedInterfaceScript is KeepalivedInterfaceScript: it finds the interface that holds the node's
// address in subnet, the private subnet of the endpoint's address, and writes its name for
// keepalived's configuration. The subnet, not the node's own address, so that it works where the
// address is not known before rendering too (a DHCP lease).
func keepalivedInterfaceScript(subnet netip.Prefix) string {
	return fmt.Sprintf(`#!/bin/sh
# kiln: writes the name of the interface that holds this node's address in %[1]s, the private
# subnet of the API endpoint's address, for keepalived's configuration, which includes
# %[2]s. Run before keepalived starts.
set -eu
iface=$(ip -o addr show to %[1]s | awk '{ print $2; exit }')
if [ -z "$iface" ]; then
	echo "no interface has an address in %[1]s" >&2
	exit 1
fi
mkdir -p "$(dirname %[2]s)"
printf '$%[3]s=%%s\n' "$iface" > %[2]s.tmp
mv %[2]s.tmp %[2]s
`, subnet, KeepalivedInterfaceFile, KeepalivedInterfaceParam)
}

// endpointSubnet is the private subnet that holds the endpoint's address vip.
func endpointSubnet(c *v1alpha1.Cluster, vip netip.Addr) (netip.Prefix, error) {
	for _, s := range c.Spec.Network.PrivateSubnets {
		if p, err := netip.ParsePrefix(s); err == nil && p.Masked().Contains(vip) {
			return p.Masked(), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("ignition: spec.network.apiEndpoint.address %s is in none of spec.network.privateSubnets (%s): keepalived holds it on the control-plane nodes' link in that subnet",
		vip, strings.Join(c.Spec.Network.PrivateSubnets, ", "))
}
