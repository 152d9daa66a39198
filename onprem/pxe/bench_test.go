package pxe

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// BenchmarkHandler is the handler's own cost per request, without sockets: a machine's script and
// its Ignition from the cache, recorded.
//
//	go test -run '^$' -bench Handler ./onprem/pxe
func BenchmarkHandler(b *testing.B) {
	inv := testInventory(b)
	key := []byte("0123456789abcdef0123456789abcdef")
	boot, err := NewBoot(HTTPConfig{BaseURL: "http://kiln.test", Inventory: inv, Ignition: NewIgnitionCache(fakeRender(&atomic.Int64{})),
		Recorder: NewRecorder(nil), URLKey: key})
	if err != nil {
		b.Fatal(err)
	}
	defer boot.Close()
	mac := "52:54:00:00:00:03"
	script := httptest.NewRequest(http.MethodGet, "/ipxe?mac="+mac, nil)
	ign := httptest.NewRequest(http.MethodGet, "/ignition?mac="+mac+"&token="+Token(key, mac), nil)
	b.Run("script", func(b *testing.B) {
		for b.Loop() {
			w := httptest.NewRecorder()
			boot.ServeHTTP(w, script)
			if w.Code != 200 {
				b.Fatal(w.Code)
			}
		}
	})
	b.Run("ignition", func(b *testing.B) {
		for b.Loop() {
			w := httptest.NewRecorder()
			boot.ServeHTTP(w, ign)
			if w.Code != 200 {
				b.Fatal(w.Code)
			}
		}
	})
}
