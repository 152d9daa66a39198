package fleetlock_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-dev/kiln/nodeagent/fleetlock"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock/rebootlocktest"
)

// TestOnAPIServer serves FleetLock over HTTP on loopback on top of Leases in a real kube-apiserver:
// two Zincati clients of one group of one slot take turns, the second refused until the first is
// back in its steady state.
//
//	CI=true go test -count=1 -run TestOnAPIServer -v ./nodeagent/fleetlock
func TestOnAPIServer(t *testing.T) {
	c := rebootlocktest.Start(t)
	c.CreatePool(t, "workers", 1)
	h := fleetlock.New(map[string]*rebootlock.Semaphore{
		"workers": {Client: c.ClientAs(t, "kiln-test:fleetlock", rebootlock.Group("workers")), Pool: "workers", Slots: 1},
		// A group whose pool has no Leases (the admin sees that they are missing).
		"db": {Client: c.Admin, Pool: "db", Slots: 1},
	}, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	const a, b = "e0f3745b108f471cbd4883c6fbed8cdd", "0b9e4a1f3c5d47e8a6b2c1d0e9f8a7b6"
	holder := func(t *testing.T) string {
		t.Helper()
		l, err := c.Admin.CoordinationV1().Leases(rebootlock.Namespace).Get(t.Context(), rebootlock.LeaseName("workers", 0), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	for _, step := range []struct {
		name, path, id, group string
		status                int
		kind                  string
		holder                string // of the Lease after the step
	}{
		{name: "a takes the slot", path: fleetlock.PreRebootPath, id: a, group: "workers", status: http.StatusOK, holder: a},
		{name: "a asks again: it holds it", path: fleetlock.PreRebootPath, id: a, group: "workers", status: http.StatusOK, holder: a},
		{name: "b is refused", path: fleetlock.PreRebootPath, id: b, group: "workers", status: http.StatusConflict, kind: fleetlock.KindSemaphoreFull, holder: a},
		{name: "b's steady state: it holds nothing", path: fleetlock.SteadyStatePath, id: b, group: "workers", status: http.StatusOK, holder: a},
		{name: "b is refused still", path: fleetlock.PreRebootPath, id: b, group: "workers", status: http.StatusConflict, kind: fleetlock.KindSemaphoreFull, holder: a},
		{name: "a's steady state frees the slot", path: fleetlock.SteadyStatePath, id: a, group: "workers", status: http.StatusOK, holder: ""},
		{name: "a's steady state again", path: fleetlock.SteadyStatePath, id: a, group: "workers", status: http.StatusOK, holder: ""},
		{name: "b takes the slot", path: fleetlock.PreRebootPath, id: b, group: "workers", status: http.StatusOK, holder: b},
		{name: "a is refused", path: fleetlock.PreRebootPath, id: a, group: "workers", status: http.StatusConflict, kind: fleetlock.KindSemaphoreFull, holder: b},
		{name: "a pool without Leases", path: fleetlock.PreRebootPath, id: a, group: "db", status: http.StatusInternalServerError, kind: fleetlock.KindLockFailed, holder: b},
		{name: "b's steady state", path: fleetlock.SteadyStatePath, id: b, group: "workers", status: http.StatusOK, holder: ""},
	} {
		t.Run(step.name, func(t *testing.T) {
			resp, err := srv.Client().Do(zincati(t, srv.URL, step.path, step.id, step.group))
			if err != nil {
				t.Fatal(err)
			}
			got := check(t, resp, step.status, step.kind)
			resp.Body.Close()
			switch step.kind {
			case fleetlock.KindSemaphoreFull:
				if !strings.Contains(got.value, step.holder) {
					t.Errorf("%q does not name the holder %s", got.value, step.holder)
				}
			case fleetlock.KindLockFailed:
				if !strings.Contains(got.value, "kiln-reboot-db-0") || !strings.Contains(got.value, "cluster init") {
					t.Errorf("%q does not say which Lease is missing and who makes it", got.value)
				}
			}
			if h := holder(t); h != step.holder {
				t.Errorf("the Lease is held by %q, want %q", h, step.holder)
			}
		})
	}
}
