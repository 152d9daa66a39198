package vsphere

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkList1000 lists a cluster of 1,000 VMs (in a folder that holds them and nothing else of
// the cluster's) on the simulated vCenter, and reports the round trips of one List.
func BenchmarkList1000(b *testing.B) {
	h := newSim(b, "vpx")
	p := h.newProvider(b)
	h.populate(b, p, "bench", 1000)
	c := count(p)
	ctx := context.Background()
	var trips int64
	for b.Loop() {
		before := c.n.Load()
		ms, err := p.List(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		if len(ms) != 1000 {
			b.Fatalf("List = %d machines, want 1000", len(ms))
		}
		trips = c.n.Load() - before
	}
	b.ReportMetric(float64(trips), "roundtrips/op")
}

// BenchmarkClone100 creates 100 machines (clone, power on), 8 at a time, on the simulated vCenter.
func BenchmarkClone100(b *testing.B) {
	h := newSim(b, "vpx")
	p := h.newProvider(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		if err := createAll(ctx, p, h, "c"+strconv.Itoa(i), 0, 100, 8); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(i*100), "ms/machine")
}
