package pxe

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestClientLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	l := newClientLimiter(time.Second, 3, 2)
	for i := range 3 {
		if !l.allow(a, t0) {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	if l.allow(a, t0) {
		t.Fatal("a request beyond the burst allowed")
	}
	if !l.allow(b, t0) || !l.allow(b, t0) {
		t.Fatal("another client refused")
	}
	if !l.allow(a, t0.Add(time.Second)) {
		t.Fatal("a request after the refill period refused")
	}
	// The table holds two clients, both active: a third is refused rather than let it grow.
	if l.allow(c, t0.Add(time.Second)) {
		t.Fatal("a third client allowed into a full table of active clients")
	}
	// Once they are idle (their burst whole again), they are forgotten to make room.
	if !l.allow(c, t0.Add(time.Minute)) {
		t.Fatal("a third client refused after the others went idle")
	}
	if len(l.m) > 2 {
		t.Fatalf("table holds %d clients, want at most 2", len(l.m))
	}
	// An IPv4-mapped IPv6 address is the same client.
	if !l.allow(netip.MustParseAddr("::ffff:10.0.0.3"), t0.Add(time.Minute)) || len(l.m) > 2 {
		t.Fatalf("mapped address: table %v", l.m)
	}
}

// TestTFTPRateLimit speaks TFTP by hand: once a client has spent its burst of requests, its next one
// gets an error packet saying why, and after TFTPRequestEvery it is served again.
func TestTFTPRateLimit(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileBIOS), []byte("tiny"), 0o644); err != nil {
		t.Fatal(err)
	}
	srvConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewTFTP(dir, nil, nil, nil, nil)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	done := make(chan error, 1)
	go func() { done <- s.Serve(srvConn) }()
	defer func() { s.Shutdown(); <-done }()

	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// rrq sends a read request and returns the first packet of the answer.
	rrq := func(name string) []byte {
		t.Helper()
		req := append(append(append([]byte{0, 1}, name...), 0), "octet\x00"...)
		if _, err := pc.WriteTo(req, srvConn.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		pc.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if buf[1] == 3 { // DATA: acknowledge the one block so that the transfer ends
			pc.WriteTo([]byte{0, 4, buf[2], buf[3]}, from)
		}
		return buf[:n]
	}
	for i := range TFTPRequestBurst {
		if p := rrq("no-such-file"); p[1] != 5 || !strings.Contains(string(p[4:]), "no such file") {
			t.Fatalf("request %d: %q, want a no such file error", i, p)
		}
	}
	p := rrq(FileBIOS)
	if p[1] != 5 || !strings.Contains(string(p[4:]), "too many requests from 127.0.0.1") {
		t.Fatalf("over the limit: %q, want an error packet saying too many requests", p)
	}
	mu.Lock()
	now = now.Add(TFTPRequestEvery)
	mu.Unlock()
	if p := rrq(FileBIOS); p[1] != 3 || string(p[4:]) != "tiny" {
		t.Fatalf("after the refill: %q, want the file", p)
	}
}
