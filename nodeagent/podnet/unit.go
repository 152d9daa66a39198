package podnet

import (
	"fmt"
	"net/netip"
)

// Where the pod network agent lives on a node.
const (
	// UnitName is the systemd unit that runs the agent.
	UnitName = "kiln-podnet.service"
	// BinaryPath is where the image carries kiln-node, next to the Kubernetes binaries.
	BinaryPath = "/usr/local/bin/kiln-node"
	// RouteProtocolsFile names RouteProtocol for iproute2, so that `ip route` shows "proto kiln".
	RouteProtocolsFile = "/etc/iproute2/rt_protos.d/kiln.conf"
)

// RouteProtocolsConf is the content of RouteProtocolsFile.
const RouteProtocolsConf = "107\tkiln\n"

// Unit returns the text of UnitName for Ignition to write and enable on every node: `kiln-node
// podnet --cluster-cidr=<clusterCIDR>` from the start of the network, restarted whenever it ends.
// It needs nothing but CAP_NET_ADMIN (routes, nftables) and write access to the CNI config
// directory, which its ExecStartPre makes (outside the sandbox: /etc is read-only inside); it reads
// the kubelet's kubeconfig and client certificate as root.
func Unit(clusterCIDR netip.Prefix) (string, error) {
	if !clusterCIDR.IsValid() || clusterCIDR != clusterCIDR.Masked() {
		return "", fmt.Errorf("podnet: unit: cluster cidr %q: %w: want the cluster's pod range without host bits", clusterCIDR, ErrInvalid)
	}
	return `[Unit]
Description=kiln pod network: CNI config and routes to the other nodes' pods (kiln-node podnet)
Documentation=man:ip-route(8)
Wants=network-online.target
After=network-online.target kiln-firewall.service

[Service]
Type=exec
ExecStartPre=+/usr/bin/mkdir -p ` + DefaultCNIDir + `
ExecStart=` + BinaryPath + ` podnet --cluster-cidr=` + clusterCIDR.String() + `
Restart=always
RestartSec=5
CapabilityBoundingSet=CAP_NET_ADMIN
AmbientCapabilities=
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=-/etc/cni
ProtectHome=yes
PrivateTmp=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
`, nil
}
