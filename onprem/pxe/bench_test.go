package pxe

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kiln-dev/kiln/state/statetest"
)

// BenchmarkHandler is the handler's own cost per request, without sockets and over the in-memory
// state store: the script of a machine that is not armed, and a whole install (arm, the script with
// a new ticket, the config that spends it), recorded.
//
//	go test -run '^$' -bench Handler ./onprem/pxe
func BenchmarkHandler(b *testing.B) {
	inv := testInventory(b)
	st := statetest.NewEmpty()
	svc := newTestService(b, inv, st, nil)
	boot, err := NewBoot(HTTPConfig{BaseURL: "http://kiln.test", Inventory: inv, Enroll: svc, Recorder: svc.Recorder()})
	if err != nil {
		b.Fatal(err)
	}
	defer boot.Close()
	mac := "52:54:00:00:00:03"
	get := func(b *testing.B, target string) string {
		w := httptest.NewRecorder()
		boot.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
		if w.Code != 200 {
			b.Fatalf("%s: %d", target, w.Code)
		}
		return w.Body.String()
	}
	b.Run("script-not-armed", func(b *testing.B) {
		for b.Loop() {
			if get(b, "/ipxe?mac="+mac) != NoBootScript {
				b.Fatal("a script for a machine that is not armed")
			}
		}
	})
	b.Run("install", func(b *testing.B) {
		for b.Loop() {
			armForTest(b, svc, st, Arm{MAC: mac})
			get(b, ignitionURL(get(b, "/ipxe?mac="+mac)))
		}
	})
}
