package podnet

import (
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"testing"

	"github.com/kiln-dev/kiln/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestConflistGolden(t *testing.T) {
	for _, tc := range []struct {
		name, podCIDR string
	}{
		{name: "ipv4", podCIDR: "10.244.1.0/24"},
		{name: "ipv6", podCIDR: "fd00:10:244:1::/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Conflist(netip.MustParsePrefix(tc.podCIDR))
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got) {
				t.Fatalf("not JSON:\n%s", got)
			}
			golden.Check(t, *update, "conflist-"+tc.name+".golden", got)
		})
	}
}

func TestConflistErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    netip.Prefix
	}{
		{name: "empty", p: netip.Prefix{}},
		{name: "host bits", p: netip.MustParsePrefix("10.244.1.7/24")},
		{name: "ipv4 too small", p: netip.MustParsePrefix("10.244.1.0/31")},
		{name: "ipv6 too small", p: netip.MustParsePrefix("fd00::/127")},
		{name: "ipv4-mapped", p: netip.MustParsePrefix("::ffff:10.244.1.0/120")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Conflist(tc.p)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestMasqueradeGolden(t *testing.T) {
	for _, tc := range []struct {
		name, pod, cluster string
	}{
		{name: "ipv4", pod: "10.244.1.0/24", cluster: "10.244.0.0/16"},
		{name: "ipv6", pod: "fd00:10:244:1::/64", cluster: "fd00:10:244::/56"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Masquerade(netip.MustParsePrefix(tc.pod), netip.MustParsePrefix(tc.cluster))
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, *update, "masquerade-"+tc.name+".golden", got)
		})
	}
}

func TestMasqueradeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, pod, cluster string
	}{
		{name: "pod range outside the cluster range", pod: "10.245.1.0/24", cluster: "10.244.0.0/16"},
		{name: "pod range wider than the cluster range", pod: "10.0.0.0/8", cluster: "10.244.0.0/16"},
		{name: "families differ", pod: "10.244.1.0/24", cluster: "fd00::/56"},
		{name: "cluster range with host bits", pod: "10.244.1.0/24", cluster: "10.244.0.1/16"},
		{name: "no cluster range", pod: "10.244.1.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cluster netip.Prefix
			if tc.cluster != "" {
				cluster = netip.MustParsePrefix(tc.cluster)
			}
			_, err := Masquerade(netip.MustParsePrefix(tc.pod), cluster)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}
