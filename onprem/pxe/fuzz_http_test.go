package pxe

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/state/statetest"
)

// FuzzBootQuery feeds arbitrary query strings to /ipxe and /ignition (seeds in
// testdata/fuzz/FuzzBootQuery), with one machine of the inventory armed again whenever its config was
// served: the handler must not panic, must answer with one of the statuses it documents, must give a
// script with an Ignition URL only to the armed machine and NoBootScript to every other query, and
// must serve a config only for a token it put in a script for that machine, once.
func FuzzBootQuery(f *testing.F) {
	inv := testInventory(f)
	st := statetest.NewEmpty()
	svc := newTestService(f, inv, st, nil)
	boot, err := NewBoot(HTTPConfig{BaseURL: "http://kiln.test", Inventory: inv, Enroll: svc, Recorder: svc.Recorder()})
	if err != nil {
		f.Fatal(err)
	}
	defer boot.Close()
	armed := inv.Machines[0].MAC
	issued := map[string]bool{} // tokens put in a script, not yet served
	get := func(path, rawQuery string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "http://kiln.test/", nil)
		req.URL.Path, req.URL.RawQuery = path, rawQuery
		req.RequestURI = req.URL.RequestURI()
		w := httptest.NewRecorder()
		boot.ServeHTTP(w, req)
		return w
	}
	// A live token for the seeds.
	armForTest(f, svc, st, Arm{MAC: armed})
	u, _ := url.Parse(ignitionURL(get("/ipxe", "mac="+armed).Body.String()))
	issued[u.Query().Get("token")] = true
	f.Add("/ignition", u.RawQuery)
	f.Add("/ipxe", "mac="+armed+"&uuid=00000000-0000-0000-0000-000000000001&hostname=x")
	f.Add("/ignition", "mac="+armed+"&token=forged")
	f.Add("/ipxe", "mac=%zz&mac=52-54-00-00-00-01;uuid=\x00")
	f.Add("/ipxe", "mac=5254.0000.0001")
	f.Add("/ipxe", "mac="+inv.Machines[1].MAC)
	f.Fuzz(func(t *testing.T, path, rawQuery string) {
		if path != "/ipxe" && path != "/ignition" {
			path = "/ipxe"
		}
		if _, ok, _ := GetArm(st, armed); !ok {
			armForTest(t, svc, st, Arm{MAC: armed})
		}
		w := get(path, rawQuery)
		q, _ := url.ParseQuery(rawQuery)
		mac, macErr := NormalizeMAC(q.Get("mac"))
		body := w.Body.String()
		switch {
		case path == "/ipxe" && w.Code != http.StatusOK:
			t.Fatalf("%s?%q: status %d", path, rawQuery, w.Code)
		case path == "/ipxe" && body == NoBootScript:
		case path == "/ipxe":
			if macErr != nil || mac != armed {
				t.Fatalf("%s?%q: a script for a machine that is not armed:\n%s", path, rawQuery, body)
			}
			u, err := url.Parse(ignitionURL(body))
			if err != nil || !strings.HasPrefix(u.Query().Get("token"), "kiln-enroll-v1.") {
				t.Fatalf("%s?%q: script without a one-time URL:\n%s", path, rawQuery, body)
			}
			clear(issued) // a new ticket revokes the earlier one
			issued[u.Query().Get("token")] = true
		case w.Code == http.StatusForbidden:
		case w.Code != http.StatusOK:
			t.Fatalf("%s?%q: status %d", path, rawQuery, w.Code)
		case macErr != nil || mac != armed || !issued[q.Get("token")]:
			t.Fatalf("%s?%q: served a config without the armed machine's live token", path, rawQuery)
		default:
			delete(issued, q.Get("token"))
		}
	})
}
