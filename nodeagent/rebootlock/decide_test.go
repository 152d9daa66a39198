package rebootlock_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

var t0 = time.Date(2026, 3, 29, 2, 0, 0, 0, time.UTC)

func lease(holder string, renewed time.Time, seconds int32) *coordinationv1.Lease {
	l := &coordinationv1.Lease{}
	if holder != "" {
		l.Spec.HolderIdentity = &holder
	}
	if !renewed.IsZero() {
		l.Spec.AcquireTime = &metav1.MicroTime{Time: renewed.Add(-time.Minute)}
		l.Spec.RenewTime = &metav1.MicroTime{Time: renewed}
	}
	if seconds > 0 {
		l.Spec.LeaseDurationSeconds = &seconds
	}
	return l
}

func TestHolderOf(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lease *coordinationv1.Lease
		want  rebootlock.Holder
	}{
		{name: "free", lease: lease("", time.Time{}, 0), want: rebootlock.Holder{Slot: 1}},
		{name: "free, empty identity", lease: &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: new(string)}}, want: rebootlock.Holder{Slot: 1}},
		{
			name:  "held",
			lease: lease("n1", t0.Add(-time.Minute), 900),
			want:  rebootlock.Holder{Slot: 1, Identity: "n1", Acquired: t0.Add(-2 * time.Minute), Renewed: t0.Add(-time.Minute), Expires: t0.Add(14 * time.Minute)},
		},
		{
			name:  "held until this very instant",
			lease: lease("n1", t0.Add(-15*time.Minute), 900),
			want:  rebootlock.Holder{Slot: 1, Identity: "n1", Acquired: t0.Add(-16 * time.Minute), Renewed: t0.Add(-15 * time.Minute), Expires: t0},
		},
		{
			name:  "expired",
			lease: lease("n1", t0.Add(-15*time.Minute-time.Microsecond), 900),
			want:  rebootlock.Holder{Slot: 1, Identity: "n1", Acquired: t0.Add(-16*time.Minute - time.Microsecond), Renewed: t0.Add(-15*time.Minute - time.Microsecond), Expires: t0.Add(-time.Microsecond), Expired: true},
		},
		{
			name:  "no duration: the default (10m here)",
			lease: lease("n1", t0.Add(-11*time.Minute), 0),
			want:  rebootlock.Holder{Slot: 1, Identity: "n1", Acquired: t0.Add(-12 * time.Minute), Renewed: t0.Add(-11 * time.Minute), Expires: t0.Add(-time.Minute), Expired: true},
		},
		{
			name:  "a holder that never renewed: nothing says it lives",
			lease: lease("n1", time.Time{}, 900),
			want:  rebootlock.Holder{Slot: 1, Identity: "n1", Expired: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, rebootlock.HolderOf(1, tc.lease, t0, 10*time.Minute)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPick(t *testing.T) {
	free := func(slot int) rebootlock.Holder { return rebootlock.Holder{Slot: slot} }
	held := func(slot int, id string) rebootlock.Holder { return rebootlock.Holder{Slot: slot, Identity: id} }
	expired := func(slot int, id string) rebootlock.Holder {
		return rebootlock.Holder{Slot: slot, Identity: id, Expired: true}
	}
	for _, tc := range []struct {
		name    string
		holders []rebootlock.Holder
		want    int
	}{
		{name: "one free slot", holders: []rebootlock.Holder{free(0)}, want: 0},
		{name: "the first free slot", holders: []rebootlock.Holder{held(0, "a"), free(1), free(2)}, want: 1},
		{name: "an expired slot is free", holders: []rebootlock.Holder{held(0, "a"), expired(1, "b")}, want: 1},
		{name: "its own slot before a free one", holders: []rebootlock.Holder{free(0), held(1, "me")}, want: 1},
		{name: "its own slot, expired: nobody took it", holders: []rebootlock.Holder{free(0), expired(1, "me")}, want: 1},
		{name: "all held by others", holders: []rebootlock.Holder{held(0, "a"), held(1, "b")}, want: -1},
		{name: "no slots", want: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rebootlock.Pick(tc.holders, "me"); got != tc.want {
				t.Errorf("Pick = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestBusyError(t *testing.T) {
	err := error(&rebootlock.BusyError{Pool: "workers", Holders: []rebootlock.Holder{
		{Slot: 0, Identity: "w-1", Expires: t0},
		{Slot: 1, Identity: "w-2", Expires: t0.Add(time.Minute)},
	}})
	if !errors.Is(err, rebootlock.ErrBusy) {
		t.Error("not ErrBusy")
	}
	want := `rebootlock: pool "workers": every reboot slot is held: slot 0 by "w-1" until 2026-03-29T02:00:00Z, slot 1 by "w-2" until 2026-03-29T02:01:00Z`
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
}

func TestLeasesAndRule(t *testing.T) {
	leases := rebootlock.Leases("workers", 2)
	var names []string
	for _, l := range leases {
		names = append(names, l.Namespace+"/"+l.Name)
		if l.Kind != "Lease" || l.APIVersion != "coordination.k8s.io/v1" || l.Labels[rebootlock.PoolLabel] != "workers" || l.Spec.HolderIdentity != nil {
			t.Errorf("%s: %+v, want a free Lease of pool workers", l.Name, l)
		}
	}
	if diff := cmp.Diff([]string{"kube-node-lease/kiln-reboot-workers-0", "kube-node-lease/kiln-reboot-workers-1"}, names); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	rule := rebootlock.Rule("workers", 2)
	if got := fmt.Sprint(rule.APIGroups, rule.Resources, rule.ResourceNames, rule.Verbs); got != "[coordination.k8s.io] [leases] [kiln-reboot-workers-0 kiln-reboot-workers-1] [get update]" {
		t.Errorf("rule %s", got)
	}
	if got := rebootlock.Group("workers"); !strings.HasPrefix(got, "kiln:reboot:") {
		t.Errorf("group %q", got)
	}
}

func ExampleLeaseName() {
	fmt.Println(rebootlock.LeaseName("workers", 0))
	fmt.Println(rebootlock.LeaseName(rebootlock.ControlPlanePool, 0))
	// Output:
	// kiln-reboot-workers-0
	// kiln-reboot-control-plane-0
}
