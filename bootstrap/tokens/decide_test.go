package tokens

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kiln-dev/kiln/bootstrap/secrets"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// token is machine's token with id, issued at issued for an hour.
func token(id, machine string, issued time.Time) secrets.BootstrapToken {
	return secrets.BootstrapToken{ID: id, Secret: "0123456789abcdef", Issued: issued, Expires: issued.Add(time.Hour), Machine: machine, Pool: "workers"}
}

func TestDecide(t *testing.T) {
	now := t0.Add(30 * time.Minute)
	w0 := token("aaaaaa", "demo-workers-0", t0)
	w1 := token("bbbbbb", "demo-workers-1", t0)
	shared := token("ssssss", "", t0)
	expired := token("eeeeee", "demo-workers-2", t0.Add(-2*time.Hour))
	fresh := token("ffffff", "demo-workers-3", now.Add(-time.Minute)) // issued within the grace period
	old := token("oooooo", "demo-workers-4", secrets.BootstrapToken{}.Issued)
	old.Expires = t0.Add(time.Hour)
	in := func(ids ...string) []InCluster {
		var out []InCluster
		for _, id := range ids {
			out = append(out, InCluster{ID: id})
		}
		return out
	}
	ready := func(created time.Time) Node { return Node{Ready: true, Created: created} }
	machines := []string{"demo-control-plane-0", "demo-workers-0", "demo-workers-1"}

	for _, tc := range []struct {
		name string
		o    Observed
		want Plan
	}{
		{
			name: "a new machine's token is applied, one already there is not",
			o:    Observed{Stored: []secrets.BootstrapToken{w0, w1}, Machines: machines, Reachable: true, InCluster: in("bbbbbb")},
			want: Plan{Apply: []secrets.BootstrapToken{w0}},
		},
		{
			name: "a joined machine's token is deleted and forgotten",
			o: Observed{Stored: []secrets.BootstrapToken{w0, w1}, Machines: machines, Reachable: true, InCluster: in("aaaaaa", "bbbbbb"),
				Nodes: map[string]Node{"demo-workers-0": ready(t0.Add(5 * time.Minute)), "demo-workers-1": {Ready: false, Created: t0.Add(5 * time.Minute)}}},
			want: Plan{
				Delete: []Deletion{{ID: "aaaaaa", Machine: "demo-workers-0", Reason: ReasonJoined}},
				Forget: []Deletion{{ID: "aaaaaa", Machine: "demo-workers-0", Reason: ReasonJoined}},
			},
		},
		{
			name: "a Node of the same name older than the token is another machine's",
			o: Observed{Stored: []secrets.BootstrapToken{w0}, Machines: machines, Reachable: true, InCluster: in("aaaaaa"),
				Nodes: map[string]Node{"demo-workers-0": ready(t0.Add(-time.Hour))}},
			want: Plan{},
		},
		{
			name: "a Node registered in the second the token was issued joined with it",
			o: Observed{Stored: []secrets.BootstrapToken{token("aaaaaa", "demo-workers-0", t0.Add(300*time.Millisecond))}, Machines: machines, Reachable: true,
				Nodes: map[string]Node{"demo-workers-0": ready(t0)}},
			want: Plan{Forget: []Deletion{{ID: "aaaaaa", Machine: "demo-workers-0", Reason: ReasonJoined}}},
		},
		{
			name: "expired tokens go, from the cluster if it has them",
			o:    Observed{Stored: []secrets.BootstrapToken{expired, token("eeeee2", "demo-workers-0", t0.Add(-2*time.Hour))}, Machines: machines, Reachable: true, InCluster: in("eeeeee")},
			want: Plan{
				Delete: []Deletion{{ID: "eeeeee", Machine: "demo-workers-2", Reason: ReasonExpired}},
				Forget: []Deletion{{ID: "eeeeee", Machine: "demo-workers-2", Reason: ReasonExpired}, {ID: "eeeee2", Machine: "demo-workers-0", Reason: ReasonExpired}},
			},
		},
		{
			name: "a deleted machine's token goes; one being created is kept within the grace period",
			o:    Observed{Stored: []secrets.BootstrapToken{w1, fresh, old}, Machines: []string{"demo-workers-0"}, Reachable: true, InCluster: in("bbbbbb", "ffffff", "oooooo")},
			want: Plan{
				Delete: []Deletion{{ID: "bbbbbb", Machine: "demo-workers-1", Reason: ReasonGone}, {ID: "oooooo", Machine: "demo-workers-4", Reason: ReasonGone}},
				Forget: []Deletion{{ID: "bbbbbb", Machine: "demo-workers-1", Reason: ReasonGone}, {ID: "oooooo", Machine: "demo-workers-4", Reason: ReasonGone}},
			},
		},
		{
			name: "a deleted machine's pending CSRs go with its token; others' stay",
			o: Observed{Stored: []secrets.BootstrapToken{w0, w1}, Machines: []string{"demo-workers-0"}, Reachable: true, InCluster: in("aaaaaa", "bbbbbb"),
				PendingCSRs: []CSR{
					{Name: "node-csr-w1", Username: "system:bootstrap:bbbbbb"},
					{Name: "csr-w1-serving", Username: "system:node:demo-workers-1"},
					{Name: "node-csr-w0", Username: "system:bootstrap:aaaaaa"},
					{Name: "csr-w0-serving", Username: "system:node:demo-workers-0"},
					{Name: "csr-admin", Username: "kiln-admin"},
				}},
			want: Plan{
				Delete: []Deletion{{ID: "bbbbbb", Machine: "demo-workers-1", Reason: ReasonGone}},
				Forget: []Deletion{{ID: "bbbbbb", Machine: "demo-workers-1", Reason: ReasonGone}},
				DeleteCSRs: []CSRDeletion{
					{Name: "node-csr-w1", Username: "system:bootstrap:bbbbbb", Machine: "demo-workers-1", Reason: ReasonGone},
					{Name: "csr-w1-serving", Username: "system:node:demo-workers-1", Machine: "demo-workers-1", Reason: ReasonGone},
				},
			},
		},
		{
			name: "out of reach, pending CSRs are not judged",
			o: Observed{Stored: []secrets.BootstrapToken{w1}, Machines: []string{"demo-workers-0"},
				PendingCSRs: []CSR{{Name: "node-csr-w1", Username: "system:bootstrap:bbbbbb"}}},
			want: Plan{},
		},
		{
			name: "a machine's older token goes once it has a newer one",
			o: Observed{Stored: []secrets.BootstrapToken{w0, token("aaaaa2", "demo-workers-0", t0.Add(20*time.Minute))}, Machines: machines, Reachable: true,
				InCluster: in("aaaaaa", "aaaaa2")},
			want: Plan{
				Delete: []Deletion{{ID: "aaaaaa", Machine: "demo-workers-0", Reason: ReasonReplaced}},
				Forget: []Deletion{{ID: "aaaaaa", Machine: "demo-workers-0", Reason: ReasonReplaced}},
			},
		},
		{
			name: "a shared token is left alone until it expires",
			o:    Observed{Stored: []secrets.BootstrapToken{shared}, Reachable: true, Nodes: map[string]Node{"": ready(now)}},
			want: Plan{},
		},
		{
			name: "kiln's Secrets that the store no longer holds are deleted; others' are not",
			o: Observed{Cluster: "demo", Stored: []secrets.BootstrapToken{w0}, Machines: machines, Reachable: true, InCluster: []InCluster{
				{ID: "aaaaaa", Cluster: "demo", Machine: "demo-workers-0"},
				{ID: "gggggg", Cluster: "demo", Machine: "demo-workers-9"},
				{ID: "hhhhhh", Cluster: "other", Machine: "other-workers-0"},
				{ID: "kkkkkk"}, // kubeadm's, or a first-boot manifest's
			}},
			want: Plan{Delete: []Deletion{{ID: "gggggg", Machine: "demo-workers-9", Reason: ReasonOrphan}}},
		},
		{
			name: "out of reach, only expired tokens are forgotten",
			o:    Observed{Stored: []secrets.BootstrapToken{w0, w1, expired}, Machines: []string{"demo-workers-0"}},
			want: Plan{Forget: []Deletion{{ID: "eeeeee", Machine: "demo-workers-2", Reason: ReasonExpired}}},
		},
		{
			name: "nothing stored, nothing in the cluster",
			o:    Observed{Reachable: true},
			want: Plan{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.o, now, Policy{})
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if got.Empty() != (len(tc.want.Apply)+len(tc.want.Delete)+len(tc.want.Forget)+len(tc.want.DeleteCSRs) == 0) {
				t.Errorf("Empty() = %v", got.Empty())
			}
		})
	}
}

func TestDecideGrace(t *testing.T) {
	tok := token("aaaaaa", "demo-workers-0", t0)
	o := Observed{Stored: []secrets.BootstrapToken{tok}, Reachable: true, InCluster: []InCluster{{ID: "aaaaaa"}}}
	for _, tc := range []struct {
		at     time.Duration
		policy Policy
		gone   bool
	}{
		{at: DefaultGrace - time.Second},
		{at: DefaultGrace, gone: true},
		{at: 10 * time.Second, policy: Policy{Grace: 10 * time.Second}, gone: true},
		{at: 9 * time.Second, policy: Policy{Grace: 10 * time.Second}},
	} {
		p := Decide(o, t0.Add(tc.at), tc.policy)
		if gone := len(p.Forget) == 1 && p.Forget[0].Reason == ReasonGone; gone != tc.gone {
			t.Errorf("at +%v with %+v: plan %+v, want gone %v", tc.at, tc.policy, p, tc.gone)
		}
	}
}
