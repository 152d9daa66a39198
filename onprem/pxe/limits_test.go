package pxe

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kiln-dev/kiln/state/statetest"
)

func TestNewHTTPServerLimits(t *testing.T) {
	got := NewHTTPServer(":8080", http.NotFoundHandler())
	want := &http.Server{Addr: ":8080", ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(http.Server{}), cmpopts.IgnoreFields(http.Server{}, "Handler")); diff != "" {
		t.Errorf("server (-want +got):\n%s", diff)
	}
}

// serveLimited serves h with NewHTTPServer's limits and a short ReadHeaderTimeout.
func serveLimited(t *testing.T, h http.Handler, readHeader time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer("", h)
	hs.ReadHeaderTimeout = readHeader
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// TestSlowlorisCutOff trickles a request's headers a byte at a time: the server closes the connection
// once ReadHeaderTimeout has passed, long before the headers would be complete.
func TestSlowlorisCutOff(t *testing.T) {
	addr := serveLimited(t, http.NotFoundHandler(), 300*time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	req := "GET /boot.ipxe HTTP/1.1\r\nHost: kiln.test\r\n" + strings.Repeat("X-Slow: a\r\n", 100)
	closed := make(chan time.Duration, 1)
	go func() {
		io.Copy(io.Discard, c) // returns once the server closes the connection
		closed <- time.Since(start)
	}()
	for i := 0; i < len(req); i++ {
		if _, err := c.Write([]byte{req[i]}); err != nil {
			break
		}
		select {
		case d := <-closed:
			if d > 2*time.Second {
				t.Fatalf("cut off after %v, want about the 300ms ReadHeaderTimeout", d)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case d := <-closed:
		if d > 2*time.Second {
			t.Fatalf("cut off after %v, want about the 300ms ReadHeaderTimeout", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server still holds a connection that trickles its headers")
	}
}

func TestOversizedHeaders(t *testing.T) {
	addr := serveLimited(t, http.NotFoundHandler(), time.Second)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/boot.ipxe", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 2*MaxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}

// TestBodyRefused sends a body with a request: the handler never reads beyond MaxBodyBytes, so the
// server answers and closes the connection rather than reading what a client streams.
func TestBodyRefused(t *testing.T) {
	f := newBootFixture(t, nil)
	resp, err := http.Post(f.srv.URL+"/ignition", "application/octet-stream", bytes.NewReader(make([]byte, 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("status %d, want 405", resp.StatusCode)
	}
}

// TestRunCapsConnections holds MaxHTTPConns connections open: a further client is not served until
// one of them closes.
func TestRunCapsConnections(t *testing.T) {
	inv := testInventory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	cfg := Config{
		HTTP: HTTPConfig{BaseURL: "http://kiln.test", Inventory: inv, Enroll: newTestService(t, inv, statetest.NewEmpty(), nil),
			Recorder: NewRecorder(nil)},
		HTTPAddr: "127.0.0.1:0", MaxHTTPConns: 2, Flush: func() error { return nil },
	}
	go func() { done <- Run(ctx, cfg, func(a Addrs) { ready <- a }) }()
	var a Addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	get := func(c net.Conn) (int, error) {
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := io.WriteString(c, "GET /boot.ipxe HTTP/1.1\r\nHost: kiln.test\r\n\r\n"); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", a.HTTP.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if code, err := get(c); err != nil || code != 200 {
			t.Fatalf("within the cap: %d %v", code, err)
		}
		held = append(held, c)
	}
	extra, err := net.Dial("tcp", a.HTTP.String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if _, err := io.WriteString(extra, "GET /boot.ipxe HTTP/1.1\r\nHost: kiln.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(extra)
	extra.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if resp, err := http.ReadResponse(br, nil); err == nil {
		t.Fatalf("a third connection was served (%d) with a cap of 2", resp.StatusCode)
	}
	// Once a held connection closes, the waiting one is accepted and served.
	held[0].Close()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after a slot was freed: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
