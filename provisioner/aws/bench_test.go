package aws

import (
	"net/netip"
	"testing"

	"github.com/kiln-dev/kiln/bootstrap/firewall"
)

func BenchmarkSecurityGroups(b *testing.B) {
	intent, err := firewall.NewIntent(testCluster("demo"))
	if err != nil {
		b.Fatal(err)
	}
	api := APIAccess{Port: 6443, From: []netip.Prefix{pfx("10.0.0.0/16"), pfx("203.0.113.0/24")}}
	for b.Loop() {
		if _, err := SecurityGroups(intent, api); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkList lists a cluster of 100 machines through the SDK and the fake (one page).
func BenchmarkList(b *testing.B) {
	f := startFake(b)
	p := newProvider(b, f, func(o *Options) { o.PageSize = 1000 })
	ensureNetwork(b, p, "demo")
	ign := []byte(`{"ignition":{"version":"3.5.0"}}`)
	for i := range 100 {
		if _, err := p.Create(b.Context(), workerSpec("demo", i, ign)); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		ms, err := p.List(b.Context(), "demo")
		if err != nil || len(ms) != 100 {
			b.Fatalf("List = %d machines, %v", len(ms), err)
		}
	}
}

// BenchmarkCreate creates one worker per iteration through the SDK and the fake.
func BenchmarkCreate(b *testing.B) {
	f := startFake(b)
	p := newProvider(b, f)
	spec := netSpec(b, testCluster("demo"))
	spec.Subnets = []string{"10.0.0.0/18", "10.0.64.0/18"} // room for every instance the benchmark makes
	if _, err := p.EnsureNetwork(b.Context(), spec); err != nil {
		b.Fatal(err)
	}
	ign := []byte(`{"ignition":{"version":"3.5.0"}}`)
	i := 0
	for b.Loop() {
		if _, err := p.Create(b.Context(), workerSpec("demo", i, ign)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
