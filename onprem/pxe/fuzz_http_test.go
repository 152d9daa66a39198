package pxe

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
)

// FuzzBootQuery feeds arbitrary query strings to /ipxe and /ignition (seeds in
// testdata/fuzz/FuzzBootQuery): the handler must not panic, must answer with one of the statuses it
// documents, must serve a script only to a machine of the inventory and an Ignition config only with
// that machine's token.
func FuzzBootQuery(f *testing.F) {
	inv := testInventory(f)
	key := bytes.Repeat([]byte{7}, 32)
	boot, err := NewBoot(HTTPConfig{BaseURL: "http://kiln.test", Inventory: inv, Ignition: NewIgnitionCache(fakeRender(&atomic.Int64{})),
		Recorder: NewRecorder(nil), URLKey: key})
	if err != nil {
		f.Fatal(err)
	}
	defer boot.Close()
	mac := inv.Machines[0].MAC
	f.Add("/ipxe", "mac="+mac+"&uuid=00000000-0000-0000-0000-000000000001&hostname=x")
	f.Add("/ignition", "mac="+mac+"&token="+Token(key, mac))
	f.Add("/ignition", "mac="+mac+"&token=forged")
	f.Add("/ipxe", "mac=%zz&mac=52-54-00-00-00-01;uuid=\x00")
	f.Add("/ipxe", "mac=5254.0000.0001")
	f.Fuzz(func(t *testing.T, path, rawQuery string) {
		if path != "/ipxe" && path != "/ignition" {
			path = "/ipxe"
		}
		req := httptest.NewRequest(http.MethodGet, "http://kiln.test/", nil)
		req.URL.Path, req.URL.RawQuery = path, rawQuery
		req.RequestURI = req.URL.RequestURI()
		w := httptest.NewRecorder()
		boot.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound:
		default:
			t.Fatalf("%s?%q: status %d", path, rawQuery, w.Code)
		}
		if w.Code != http.StatusOK {
			return
		}
		q, _ := url.ParseQuery(rawQuery)
		m, err := NormalizeMAC(q.Get("mac"))
		if err != nil {
			t.Fatalf("%s?%q: served with an invalid MAC: %v", path, rawQuery, err)
		}
		if _, ok := inv.Lookup(m); !ok {
			t.Fatalf("%s?%q: served a machine outside the inventory", path, rawQuery)
		}
		if path == "/ignition" && q.Get("token") != Token(key, m) {
			t.Fatalf("%s?%q: served Ignition without the machine's token", path, rawQuery)
		}
	})
}
