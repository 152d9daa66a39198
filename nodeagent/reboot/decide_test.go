package reboot

import (
	"strings"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 12, 7, 2, 30, 0, 0, time.UTC)
	pol := Policy{OfflineAfter: time.Hour, RebootGrace: 10 * time.Minute}
	// up is a healthy, reachable node of a pool whose window is open.
	up := func(change func(o *Observation)) Observation {
		o := Observation{Now: now, BootID: "boot-2", RebootRequired: true, APIUp: true, NodeReady: true, WindowOpen: true,
			WindowOpens: now}
		if change != nil {
			change(&o)
		}
		return o
	}
	rebooting := func(boot string, ago time.Duration) Record {
		return Record{Version: 1, Phase: Rebooting, BootID: boot, Since: now.Add(-ago), Cordoned: true}
	}
	for _, tc := range []struct {
		name   string
		o      Observation
		want   Kind
		reason string
	}{
		{name: "nothing to do", o: up(func(o *Observation) { o.RebootRequired = false }), want: Idle},
		{name: "nothing to do, API away", o: up(func(o *Observation) { o.RebootRequired, o.APIUp = false, false }), want: Idle},
		{name: "a slot held without need is given back", o: up(func(o *Observation) { o.RebootRequired, o.Holding = false, true }), want: Release},
		{name: "required, all well: take the lock", o: up(nil), want: Acquire},
		{name: "window closed", o: up(func(o *Observation) { o.WindowOpen, o.WindowOpens = false, now.Add(23*time.Hour) }), want: Wait,
			reason: "window closed, opens 2026-12-08T01:30:00Z"},
		{name: "pool unhealthy", o: up(func(o *Observation) { o.Blockers = []string{"w-1: not Ready", "w-2: cordoned"} }), want: Wait,
			reason: "pool unhealthy: w-1: not Ready, w-2: cordoned"},
		{name: "this node not Ready", o: up(func(o *Observation) { o.NodeReady = false }), want: Wait, reason: "this Node is not Ready"},
		{name: "held already (a run stopped after acquiring)", o: up(func(o *Observation) { o.Holding = true; o.WindowOpen = false }), want: Drain},
		{name: "API away, not long", o: up(func(o *Observation) {
			o.APIUp = false
			o.Record.APIDownSince = now.Add(-10 * time.Minute)
		}), want: Wait, reason: "for 10m0s; the node reboots on its own after 1h0m0s"},
		{name: "API away long, not the node's minute", o: up(func(o *Observation) {
			o.APIUp = false
			o.Record.APIDownSince = now.Add(-2 * time.Hour)
		}), want: Wait, reason: "waiting for the node's own minute"},
		{name: "API away long, window closed", o: up(func(o *Observation) {
			o.APIUp, o.WindowOpen, o.StaggerDue = false, false, true
			o.Record.APIDownSince = now.Add(-2 * time.Hour)
		}), want: Wait, reason: "window closed"},
		{name: "API away long, the node's minute", o: up(func(o *Observation) {
			o.APIUp, o.StaggerDue = false, true
			o.Record.APIDownSince = now.Add(-2 * time.Hour)
		}), want: RebootOffline},
		{name: "API away since an unknown time", o: up(func(o *Observation) { o.APIUp, o.StaggerDue = false, true }), want: Wait,
			reason: "an unknown time"},
		{name: "reboot under way, same boot", o: up(func(o *Observation) { o.Record = rebooting("boot-2", time.Minute) }), want: Wait,
			reason: "reboot under way"},
		{name: "same boot long after the command: reboot again", o: up(func(o *Observation) { o.Record = rebooting("boot-2", 11*time.Minute) }),
			want: Reboot},
		{name: "rebooted, Ready: finish", o: up(func(o *Observation) { o.Record = rebooting("boot-1", 3*time.Minute) }), want: Finish},
		{name: "rebooted, still required (another update): finish first", o: up(func(o *Observation) {
			o.Record = rebooting("boot-1", 3*time.Minute)
		}), want: Finish},
		{name: "rebooted, not Ready", o: up(func(o *Observation) {
			o.Record, o.NodeReady = rebooting("boot-1", 3*time.Minute), false
		}), want: Wait, reason: "waiting for the Node to be Ready"},
		{name: "rebooted, API away", o: up(func(o *Observation) { o.Record, o.APIUp = rebooting("boot-1", 3*time.Minute), false }), want: Wait,
			reason: "the API does not answer yet"},
		{name: "drain interrupted, lock held: drain again", o: up(func(o *Observation) {
			o.Record, o.Holding = Record{Version: 1, Phase: Draining, Since: now}, true
		}), want: Drain},
		{name: "drain interrupted, lock lost", o: up(func(o *Observation) { o.Record = Record{Version: 1, Phase: Draining, Since: now} }),
			want: Abandon, reason: "no longer held"},
		{name: "drain interrupted, no longer required", o: up(func(o *Observation) {
			o.Record, o.Holding, o.RebootRequired = Record{Version: 1, Phase: Draining, Since: now}, true, false
		}), want: Abandon},
		{name: "drain interrupted, API away", o: up(func(o *Observation) {
			o.Record, o.APIUp = Record{Version: 1, Phase: Draining, Since: now}, false
		}), want: Wait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.o, pol)
			if d.Kind != tc.want || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("Decide = %s (%s), want %s with a reason containing %q", d.Kind, d.Reason, tc.want, tc.reason)
			}
			if d.Reason == "" {
				t.Errorf("Decide = %s with no reason", d.Kind)
			}
		})
	}
}
