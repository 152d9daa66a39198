package privatenet_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"

	"github.com/kiln-dev/kiln/bootstrap/privatenet"
)

const inner = `{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/kiln/x","contents":{"source":"data:,x"}}]}}`

// decode parses an outer config and returns the merged config and the files it writes.
func decode(t *testing.T, out []byte) (types.Resource, []byte, map[string]string) {
	t.Helper()
	cfg, rpt, err := v3_5.Parse(out)
	if err != nil || len(rpt.Entries) > 0 {
		t.Fatalf("outer config: %v %s", err, rpt)
	}
	if n := len(cfg.Ignition.Config.Merge); n != 1 {
		t.Fatalf("outer config merges %d configs, want 1", n)
	}
	merge := cfg.Ignition.Config.Merge[0]
	merged, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(*merge.Source, "data:;base64,"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, f := range cfg.Storage.Files {
		data, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(*f.Contents.Source, "data:;base64,"))
		if err != nil {
			t.Fatal(err)
		}
		files[f.Path] = string(data)
	}
	return merge, merged, files
}

func TestWrap(t *testing.T) {
	prefix := netip.MustParsePrefix("10.0.0.0/24")
	for _, tc := range []struct {
		name   string
		n      privatenet.Network
		wants  map[string][]string
		absent map[string][]string
	}{
		{
			name: "by MAC, no gateway (qemu)",
			n: privatenet.Network{Origin: "onprem/qemu",
				NIC: privatenet.NIC{MAC: "52:54:00:01:02:03", Address: netip.MustParseAddr("10.0.0.11"), Prefix: prefix},
				Hosts: []privatenet.Host{
					{Address: "10.0.0.11", Name: "c-workers-1"}, {Address: "10.0.0.10", Name: "c-control-plane-0"}, {Address: "10.0.0.11", Name: "c-workers-1"},
				}},
			wants: map[string][]string{
				privatenet.NetworkFile: {"# Written by kiln (onprem/qemu)", "[Match]\nMACAddress=52:54:00:01:02:03\n", "Address=10.0.0.11/24\n"},
				privatenet.HostsFile:   {"127.0.0.1\tlocalhost\n", "10.0.0.11\tc-workers-1\n10.0.0.10\tc-control-plane-0\n"},
			},
			absent: map[string][]string{privatenet.NetworkFile: {"Gateway="}},
		},
		{
			name: "by name, with a gateway, compressed (vsphere)",
			n: privatenet.Network{Origin: "onprem/vsphere", Gzip: true,
				NIC: privatenet.NIC{Name: "en*", Address: netip.MustParseAddr("10.0.0.2"), Prefix: prefix, Gateway: netip.MustParseAddr("10.0.0.1")}},
			wants: map[string][]string{
				privatenet.NetworkFile: {"[Match]\nName=en*\n", "Address=10.0.0.2/24\nGateway=10.0.0.1\n"},
			},
			absent: map[string][]string{privatenet.NetworkFile: {"MACAddress="}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := privatenet.Wrap([]byte(inner), tc.n)
			if err != nil {
				t.Fatal(err)
			}
			merge, merged, files := decode(t, out)
			if tc.n.Gzip {
				if merge.Compression == nil || *merge.Compression != "gzip" {
					t.Fatalf("merged config compression = %v, want gzip", merge.Compression)
				}
				zr, err := gzip.NewReader(bytes.NewReader(merged))
				if err != nil {
					t.Fatal(err)
				}
				if merged, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if string(merged) != inner {
				t.Errorf("merged config = %q, want the inner config whole", merged)
			}
			for path, wants := range tc.wants {
				for _, w := range wants {
					if !strings.Contains(files[path], w) {
						t.Errorf("%s lacks %q:\n%s", path, w, files[path])
					}
				}
			}
			for path, nots := range tc.absent {
				for _, w := range nots {
					if strings.Contains(files[path], w) {
						t.Errorf("%s has %q:\n%s", path, w, files[path])
					}
				}
			}
			if strings.Count(files[privatenet.HostsFile], "c-workers-1") > 1 {
				t.Errorf("%s names c-workers-1 more than once:\n%s", privatenet.HostsFile, files[privatenet.HostsFile])
			}
		})
	}
}

func TestWrapRefuses(t *testing.T) {
	good := privatenet.Network{NIC: privatenet.NIC{MAC: "52:54:00:01:02:03", Address: netip.MustParseAddr("10.0.0.11"), Prefix: netip.MustParsePrefix("10.0.0.0/24")}}
	for _, bad := range []string{`{"ignition":{"version":"9.0.0"}}`, `not json`, `{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"relative"}]}}`} {
		if _, err := privatenet.Wrap([]byte(bad), good); err == nil || !strings.Contains(err.Error(), "ignition config") {
			t.Errorf("Wrap(%s): err = %v, want an ignition config error", bad, err)
		}
	}
	noMatch := good
	noMatch.NIC.MAC = ""
	if _, err := privatenet.Wrap([]byte(inner), noMatch); err == nil {
		t.Error("Wrap of a NIC with neither MAC nor name: no error")
	}
	outside := good
	outside.NIC.Address = netip.MustParseAddr("10.0.1.1")
	if _, err := privatenet.Wrap([]byte(inner), outside); err == nil {
		t.Error("Wrap of an address outside its prefix: no error")
	}
}

// A node's config compresses: the wrapped, compressed config of a large inner one is smaller than
// the inner config itself.
func TestWrapGzipShrinks(t *testing.T) {
	big := `{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/kiln/x","contents":{"source":"data:;base64,` +
		base64.StdEncoding.EncodeToString([]byte(strings.Repeat("[Unit]\nDescription=kiln\n", 2000))) + `"}}]}}`
	out, err := privatenet.Wrap([]byte(big), privatenet.Network{Gzip: true,
		NIC: privatenet.NIC{Name: "en*", Address: netip.MustParseAddr("10.0.0.2"), Prefix: netip.MustParsePrefix("10.0.0.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) >= len(big) {
		t.Errorf("wrapped config %d bytes, inner %d: compression did not shrink it", len(out), len(big))
	}
}
