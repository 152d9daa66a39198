// Package privatenet puts a node on its cluster's private network with a static address that kiln
// chose before the node existed: it wraps the node's rendered Ignition config in an outer config that
// merges it and writes the private NIC's systemd-networkd file and /etc/hosts. Providers that give
// their machines addresses (the local QEMU provider, vSphere) wrap each machine's config with it just
// before they hand it over.
package privatenet

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	ignconfig "github.com/coreos/ignition/v2/config"
	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
)

// Files the outer config writes.
const (
	NetworkFile = "/etc/systemd/network/10-kiln-private.network"
	HostsFile   = "/etc/hosts"
)

// NIC is a machine's NIC on the cluster's private network.
type NIC struct {
	// MAC matches the NIC by its hardware address. When empty, Name does.
	MAC string
	// Name matches the NIC by its interface name, a systemd-networkd glob ("en*").
	Name string
	// Address is the machine's address in Prefix.
	Address netip.Addr
	Prefix  netip.Prefix
	// Gateway, when set, is the default route's next hop.
	Gateway netip.Addr
}

// Host is a line of /etc/hosts.
type Host struct{ Address, Name string }

// Network is what the outer config writes.
type Network struct {
	// Origin names who wrote the files, in their first comment line ("onprem/qemu").
	Origin string
	NIC    NIC
	// Hosts are the cluster's machines, the node itself first; a name given twice is written once.
	Hosts []Host
	// Gzip carries the inner config gzip-compressed, for a delivery channel with a size limit: a
	// node's config, JSON with base64 payloads, shrinks to about a third.
	Gzip bool
}

// Wrap returns the outer config a machine boots with: it merges inner (the node's rendered config,
// carried whole as a data URL) and adds the private NIC's systemd-networkd file and /etc/hosts.
// Ignition applies the outer config's own files first, then the merged config's, so a file of the
// same path in inner wins. Both configs are checked with Ignition's own parser and validator.
func Wrap(inner []byte, n Network) ([]byte, error) {
	if _, rpt, err := ignconfig.Parse(inner); err != nil {
		return nil, fmt.Errorf("ignition config: %w%s", err, reportText(rpt))
	}
	if n.NIC.MAC == "" && n.NIC.Name == "" {
		return nil, fmt.Errorf("private network: the NIC has neither a MAC nor a name to match it by")
	}
	if !n.NIC.Prefix.Contains(n.NIC.Address) {
		return nil, fmt.Errorf("private network: address %s is not in %s", n.NIC.Address, n.NIC.Prefix)
	}
	origin := ""
	if n.Origin != "" {
		origin = " (" + n.Origin + ")"
	}
	match := "MACAddress=" + n.NIC.MAC
	if n.NIC.MAC == "" {
		match = "Name=" + n.NIC.Name
	}
	var network strings.Builder
	fmt.Fprintf(&network, `# Written by kiln%s: the cluster's private network.
[Match]
%s

[Network]
Address=%s/%d
`, origin, match, n.NIC.Address, n.NIC.Prefix.Bits())
	if n.NIC.Gateway.IsValid() {
		fmt.Fprintf(&network, "Gateway=%s\n", n.NIC.Gateway)
	}
	network.WriteString("LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
	var h strings.Builder
	fmt.Fprintf(&h, "# Written by kiln%s.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n", origin)
	seen := map[string]bool{}
	for _, e := range n.Hosts {
		if !seen[e.Name] {
			seen[e.Name] = true
			fmt.Fprintf(&h, "%s\t%s\n", e.Address, e.Name)
		}
	}
	merge := types.Resource{Source: ptr("data:;base64," + base64.StdEncoding.EncodeToString(inner))}
	if n.Gzip {
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression) // a valid level: no error
		if _, err := zw.Write(inner); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		merge = types.Resource{Source: ptr("data:;base64," + base64.StdEncoding.EncodeToString(z.Bytes())), Compression: ptr("gzip")}
	}
	overwrite := true
	cfg := types.Config{
		Ignition: types.Ignition{
			Version: types.MaxVersion.String(),
			Config:  types.IgnitionConfig{Merge: []types.Resource{merge}},
		},
		Storage: types.Storage{Files: []types.File{
			dataFile(NetworkFile, 0o644, network.String(), overwrite),
			dataFile(HostsFile, 0o644, h.String(), overwrite),
		}},
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if _, rpt, err := v3_5.Parse(out); err != nil {
		return nil, fmt.Errorf("outer ignition config: %w%s", err, reportText(rpt))
	}
	return out, nil
}

func dataFile(path string, mode int, contents string, overwrite bool) types.File {
	return types.File{
		Node: types.Node{Path: path, Overwrite: &overwrite},
		FileEmbedded1: types.FileEmbedded1{
			Mode: &mode,
			Contents: types.Resource{
				Source: ptr("data:;base64," + base64.StdEncoding.EncodeToString([]byte(contents))),
			},
		},
	}
}

func reportText(r fmt.Stringer) string {
	if s := strings.TrimSpace(r.String()); s != "" {
		return ": " + s
	}
	return ""
}

func ptr[T any](v T) *T { return &v }
