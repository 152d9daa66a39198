package qemu

import (
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
	PrivateNetworkFile = "/etc/systemd/network/10-kiln-private.network"
	HostsFile          = "/etc/hosts"
)

// privateNetwork is a machine's NIC on the cluster's private network.
type privateNetwork struct {
	MAC     string
	Address netip.Addr
	Prefix  netip.Prefix
}

type hostEntry struct{ Address, Name string }

// wrapIgnition returns the outer config a machine boots with: it merges inner (the node's rendered
// config, carried whole as a data URL) and adds the private NIC's systemd-networkd file and /etc/hosts.
// Ignition applies the outer config's own files first, then the merged config's, so a file of the same
// path in inner wins.
func wrapIgnition(inner []byte, nw privateNetwork, hosts []hostEntry) ([]byte, error) {
	if _, rpt, err := ignconfig.Parse(inner); err != nil {
		return nil, fmt.Errorf("ignition config: %w%s", err, reportText(rpt))
	}
	network := fmt.Sprintf(`# Written by kiln (onprem/qemu): the cluster's private network.
[Match]
MACAddress=%s

[Network]
Address=%s/%d
LinkLocalAddressing=no
IPv6AcceptRA=no
`, nw.MAC, nw.Address, nw.Prefix.Bits())
	var h strings.Builder
	h.WriteString("# Written by kiln (onprem/qemu).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	seen := map[string]bool{}
	for _, e := range hosts {
		if !seen[e.Name] {
			seen[e.Name] = true
			fmt.Fprintf(&h, "%s\t%s\n", e.Address, e.Name)
		}
	}
	overwrite := true
	cfg := types.Config{
		Ignition: types.Ignition{
			Version: types.MaxVersion.String(),
			Config: types.IgnitionConfig{Merge: []types.Resource{{
				Source: ptr("data:;base64," + base64.StdEncoding.EncodeToString(inner)),
			}}},
		},
		Storage: types.Storage{Files: []types.File{
			dataFile(PrivateNetworkFile, 0o644, network, overwrite),
			dataFile(HostsFile, 0o644, h.String(), overwrite),
		}},
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	// Checked with Ignition's own parser and validator, as every config kiln emits.
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
