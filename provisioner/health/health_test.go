package health

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
)

var t0 = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestJudge(t *testing.T) {
	running := provisioner.Machine{Name: "prod-workers-0", State: provisioner.StateRunning, Created: t0}
	ok := Probe{OK: true, Since: at(2 * time.Minute)}
	upObs := Observation{SSH: ok, Kubelet: ok, Up: at(2 * time.Minute)}
	withState := func(s provisioner.State) provisioner.Machine { m := running; m.State = s; return m }
	off := Probe{Off: true}
	const unheard = "unheard: no Node of its name can be read and no SSH probe runs, so nothing has answered for it"
	tests := []struct {
		name string
		m    provisioner.Machine
		obs  Observation
		now  time.Time
		p    Policy
		want Verdict
	}{
		{
			name: "up",
			m:    running, obs: upObs, now: at(time.Hour),
			want: Verdict{Healthy: true, Ready: true, Reason: "up"},
		},
		{
			name: "up without kubeconfig on first sight",
			m:    running, obs: Observation{SSH: ok, Kubelet: ok}, now: at(time.Minute),
			want: Verdict{Healthy: true, Ready: true, Reason: "up"},
		},
		{
			name: "probes pass but the required Node is not known yet: starting, not ready",
			m:    running, obs: Observation{SSH: ok, Kubelet: ok, NodeRequired: true}, now: at(time.Minute),
			want: Verdict{Healthy: true, Reason: "starting: no Ready Node yet (no Node of this name, or the cluster's API does not answer)"},
		},
		{
			name: "the required Node never became Ready within the startup timeout",
			m:    running, obs: Observation{SSH: ok, Kubelet: ok, NodeRequired: true}, now: at(11 * time.Minute),
			want: Verdict{Reason: "not up within 10m0s of creation (11m0s ago): no Ready Node yet (no Node of this name, or the cluster's API does not answer)"},
		},
		{
			name: "the required Node is Ready",
			m:    running, obs: Observation{SSH: ok, Kubelet: ok, NodeRequired: true, NodeReady: Condition{Known: true, Ready: true}}, now: at(time.Minute),
			want: Verdict{Healthy: true, Ready: true, Reason: "up"},
		},
		{
			name: "once up, an API that does not answer leaves the machine to its probes",
			m:    running, obs: Observation{SSH: ok, Kubelet: ok, NodeRequired: true, Up: at(2 * time.Minute)}, now: at(time.Hour),
			want: Verdict{Healthy: true, Ready: true, Reason: "up"},
		},
		{
			name: "no SSH probe and no Node: powered on is not up, and not failed",
			m:    running, obs: Observation{SSH: off, Kubelet: off}, now: at(time.Minute),
			want: Verdict{Healthy: true, Reason: unheard},
		},
		{
			name: "no SSH probe and no Node, long past the startup timeout: still unheard, not failed",
			m:    running, obs: Observation{SSH: off, Kubelet: off}, now: at(time.Hour),
			want: Verdict{Healthy: true, Reason: unheard},
		},
		{
			name: "no SSH probe, the kubelet port accepts: a port is no answer",
			m:    running, obs: Observation{SSH: off, Kubelet: ok}, now: at(time.Minute),
			want: Verdict{Healthy: true, Reason: unheard},
		},
		{
			name: "no SSH probe, the Node is Ready: up",
			m:    running, obs: Observation{SSH: off, Kubelet: off, NodeRequired: true, NodeReady: Condition{Known: true, Ready: true}}, now: at(time.Minute),
			want: Verdict{Healthy: true, Ready: true, Reason: "up"},
		},
		{
			name: "no SSH probe, the Node is not Ready: starting",
			m:    running, obs: Observation{SSH: off, Kubelet: off, NodeRequired: true, NodeReady: Condition{Known: true, Since: at(time.Minute)}}, now: at(2 * time.Minute),
			want: Verdict{Healthy: true, Reason: "starting: node not ready"},
		},
		{
			name: "no SSH probe, the API answers without a Node of its name past the startup timeout: failed",
			m:    running, obs: Observation{SSH: off, Kubelet: off, NodeRequired: true}, now: at(11 * time.Minute),
			want: Verdict{Reason: "not up within 10m0s of creation (11m0s ago): no Ready Node yet (no Node of this name, or the cluster's API does not answer)"},
		},
		{
			name: "no SSH probe, up before, the API no longer answers: unheard, not ready",
			m:    running, obs: Observation{SSH: off, Kubelet: off, Up: at(2 * time.Minute)}, now: at(time.Hour),
			want: Verdict{Healthy: true, Reason: unheard},
		},
		{
			name: "no SSH probe, pending past the startup timeout: failed by its provider state",
			m:    withState(provisioner.StatePending), obs: Observation{SSH: off, Kubelet: off}, now: at(11 * time.Minute),
			want: Verdict{Reason: "not up within 10m0s of creation (11m0s ago): machine is pending"},
		},
		{
			name: "gone",
			m:    withState(provisioner.StateGone), obs: upObs, now: at(time.Hour),
			want: Verdict{Reason: "machine is gone"},
		},
		{
			name: "stopped",
			m:    withState(provisioner.StateStopped), obs: upObs, now: at(time.Hour),
			want: Verdict{Reason: "machine is stopped"},
		},
		{
			name: "error",
			m:    withState(provisioner.StateError), now: at(time.Minute),
			want: Verdict{Reason: "provider reports the machine in error"},
		},
		{
			name: "pending within startup timeout",
			m:    withState(provisioner.StatePending), now: at(9 * time.Minute),
			want: Verdict{Healthy: true, Reason: "starting: machine is pending"},
		},
		{
			name: "pending at exactly the startup timeout",
			m:    withState(provisioner.StatePending), now: at(10 * time.Minute),
			want: Verdict{Healthy: true, Reason: "starting: machine is pending"},
		},
		{
			name: "pending past startup timeout",
			m:    withState(provisioner.StatePending), now: at(10*time.Minute + time.Second),
			want: Verdict{Reason: "not up within 10m0s of creation (10m1s ago): machine is pending"},
		},
		{
			name: "running, probes failing for longer than unhealthy timeout but still starting",
			m:    running, obs: Observation{SSH: Probe{Since: at(time.Second)}, Kubelet: Probe{Since: at(time.Second)}}, now: at(8 * time.Minute),
			want: Verdict{Healthy: true, Reason: "starting: ssh unanswered (no SSH server proved its pinned host key)"},
		},
		{
			name: "never up past custom startup timeout",
			m:    running, obs: Observation{SSH: ok, Kubelet: Probe{Since: at(time.Second)}}, now: at(3 * time.Minute),
			p:    Policy{NodeStartupTimeout: 2 * time.Minute},
			want: Verdict{Reason: "not up within 2m0s of creation (3m0s ago): kubelet port unreachable"},
		},
		{
			name: "node not ready while starting",
			m:    running, obs: Observation{SSH: ok, Kubelet: ok, NodeReady: Condition{Known: true, Since: at(time.Minute)}}, now: at(5 * time.Minute),
			want: Verdict{Healthy: true, Reason: "starting: node not ready"},
		},
		{
			name: "no creation time: no startup deadline",
			m:    provisioner.Machine{State: provisioner.StatePending}, now: at(time.Hour),
			want: Verdict{Healthy: true, Reason: "starting (creation time unknown)"},
		},
		{
			name: "ssh failing shorter than unhealthy timeout",
			m:    running, obs: Observation{SSH: Probe{Since: at(time.Hour)}, Kubelet: ok, Up: at(2 * time.Minute)}, now: at(time.Hour + 5*time.Minute),
			want: Verdict{Healthy: true, Reason: "failing for less than 5m0s: ssh unanswered (no SSH server proved its pinned host key)"},
		},
		{
			name: "ssh failing longer than unhealthy timeout",
			m:    running, obs: Observation{SSH: Probe{Since: at(time.Hour)}, Kubelet: ok, Up: at(2 * time.Minute)}, now: at(time.Hour + 5*time.Minute + time.Second),
			want: Verdict{Reason: "ssh unanswered for 5m1s, longer than 5m0s"},
		},
		{
			name: "kubelet failing longer than custom unhealthy timeout",
			m:    running, obs: Observation{SSH: ok, Kubelet: Probe{Since: at(time.Hour)}, Up: at(2 * time.Minute)}, now: at(time.Hour + 2*time.Minute),
			p:    Policy{UnhealthyTimeout: time.Minute},
			want: Verdict{Reason: "kubelet port unreachable for 2m0s, longer than 1m0s"},
		},
		{
			name: "node not ready longer than unhealthy timeout",
			m:    running, obs: Observation{SSH: ok, Kubelet: ok, NodeReady: Condition{Known: true, Since: at(time.Hour)}, Up: at(2 * time.Minute)}, now: at(2 * time.Hour),
			want: Verdict{Reason: "node not ready for 1h0m0s, longer than 5m0s"},
		},
		{
			name: "down while it holds its pool's reboot lock: rebooting, not failed",
			m:    running, obs: Observation{SSH: Probe{Since: at(time.Hour)}, Kubelet: ok, NodeReady: Condition{Known: true, Since: at(time.Hour), RebootUntil: at(2*time.Hour + time.Minute)}, Up: at(2 * time.Minute)},
			now:  at(2 * time.Hour),
			want: Verdict{Healthy: true, Reason: "rebooting: holds its pool's reboot lock until 2026-01-02T05:01:00Z (1m0s): ssh unanswered (no SSH server proved its pinned host key)"},
		},
		{
			name: "down after its reboot lock ran out: failed",
			m:    running, obs: Observation{SSH: ok, Kubelet: ok, NodeReady: Condition{Known: true, Since: at(time.Hour), RebootUntil: at(2 * time.Hour)}, Up: at(2 * time.Minute)},
			now:  at(2 * time.Hour),
			want: Verdict{Reason: "node not ready for 1h0m0s, longer than 5m0s"},
		},
		{
			name: "node ready unknown: probes alone",
			m:    running, obs: Observation{SSH: ok, Kubelet: ok, NodeReady: Condition{Known: false, Ready: false, Since: at(time.Minute)}, Up: at(2 * time.Minute)}, now: at(2 * time.Hour),
			want: Verdict{Healthy: true, Ready: true, Reason: "up"},
		},
		{
			name: "failure from before first up counts from first up",
			m:    running, obs: Observation{SSH: ok, Kubelet: ok, NodeReady: Condition{Known: true, Since: at(time.Second)}, Up: at(10 * time.Minute)}, now: at(14 * time.Minute),
			want: Verdict{Healthy: true, Reason: "failing for less than 5m0s: node not ready"},
		},
		{
			name: "failing probe without a since counts from first up",
			m:    running, obs: Observation{SSH: Probe{}, Kubelet: ok, Up: at(2 * time.Minute)}, now: at(8 * time.Minute),
			want: Verdict{Reason: "ssh unanswered for 6m0s, longer than 5m0s"},
		},
		{
			name: "kubelet probe off: ssh alone makes the machine up",
			m:    running, obs: Observation{SSH: ok, Kubelet: Probe{Off: true}}, now: at(3 * time.Minute),
			want: Verdict{Healthy: true, Ready: true, Reason: "up"},
		},
		{
			name: "kubelet probe off: a failing ssh still fails the machine",
			m:    running, obs: Observation{SSH: Probe{Since: at(time.Hour)}, Kubelet: Probe{Off: true}, Up: at(2 * time.Minute)}, now: at(2 * time.Hour),
			want: Verdict{Reason: "ssh unanswered for 1h0m0s, longer than 5m0s"},
		},
		{
			name: "pending after having been up",
			m:    withState(provisioner.StatePending), obs: Observation{SSH: ok, Kubelet: ok, Up: at(2 * time.Minute)}, now: at(time.Hour),
			want: Verdict{Healthy: true, Reason: "failing for less than 5m0s: machine is pending"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Judge(tc.m, tc.obs, tc.now, tc.p)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Judge (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPolicyFromSpec(t *testing.T) {
	got := PolicyFromSpec(v1alpha1.Health{NodeStartupTimeout: v1alpha1.Duration{Duration: time.Minute}}).withDefaults()
	want := Policy{NodeStartupTimeout: time.Minute, UnhealthyTimeout: 5 * time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PolicyFromSpec (-want +got):\n%s", diff)
	}
}
