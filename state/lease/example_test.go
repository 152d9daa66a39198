package lease_test

import (
	"context"
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/state/lease"
	"github.com/kiln-dev/kiln/state/statetest"
)

// A second kiln apply on the same state is refused while the first holds the cluster's lease, and
// takes it over once the lease has expired (the first crashed and never renewed it).
func ExampleAcquire() {
	ctx, st := context.Background(), statetest.NewEmpty()
	first := lease.Holder{Name: "kiln apply", PID: 4242, Host: "ops-1"}
	second := lease.Holder{Name: "kiln apply", PID: 5151, Host: "ops-2"}
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

	if _, err := lease.Acquire(ctx, st, "prod", first, time.Minute, now); err != nil {
		fmt.Println(err)
	}
	if _, err := lease.Acquire(ctx, st, "prod", second, time.Minute, now.Add(30*time.Second)); err != nil {
		fmt.Println(err)
	}
	l, err := lease.Acquire(ctx, st, "prod", second, time.Minute, now.Add(time.Minute))
	fmt.Println(l.Holder.PID, err)
	// Output:
	// lease prod: held by another process: kiln apply (pid 4242 on ops-1) since 2026-03-04T05:06:07Z, until 2026-03-04T05:07:07Z unless renewed
	// 5151 <nil>
}
