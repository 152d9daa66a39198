package controlplane

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestWaitReady covers waitReady's ways out without running a component: ready, the component
// exiting, the timeout and the caller's context.
func TestWaitReady(t *testing.T) {
	notYet := errors.New("connection refused")
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		// readyAfter is the call of ready that first succeeds; 0: never.
		readyAfter int32
		exited     bool
		cancelled  bool
		wantIs     error
		wantText   []string
	}{
		{name: "ready at once", timeout: time.Minute, readyAfter: 1},
		{name: "ready on the third poll", timeout: time.Minute, readyAfter: 3},
		{name: "component exits", timeout: time.Minute, exited: true, wantIs: ErrExited,
			wantText: []string{"etcd", "component exited", "last line of the log"}},
		{name: "timeout", timeout: 250 * time.Millisecond, wantIs: notYet,
			wantText: []string{"etcd not ready after 250ms: connection refused", "last line of the log"}},
		{name: "caller gives up", timeout: time.Minute, cancelled: true, wantIs: context.Canceled,
			wantText: []string{"waiting for etcd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "etcd.log")
			if err := os.WriteFile(log, []byte("first line\nlast line of the log\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			p := &process{name: "etcd", log: log, done: make(chan struct{})}
			if tc.exited {
				p.err = errors.New("exit status 1")
				close(p.done)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.cancelled {
				cancel()
			}
			var calls atomic.Int32
			ready := func(context.Context) error {
				if n := calls.Add(1); tc.readyAfter > 0 && n >= tc.readyAfter {
					return nil
				}
				return notYet
			}
			err := waitReady(ctx, p, tc.timeout, func(string, ...any) {}, ready)
			if tc.wantIs == nil {
				if err != nil {
					t.Fatalf("got %v, want ready", err)
				}
				if got := calls.Load(); got != tc.readyAfter {
					t.Errorf("ready called %d times, want %d", got, tc.readyAfter)
				}
				return
			}
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("got %v, want an error wrapping %v", err, tc.wantIs)
			}
			for _, w := range tc.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error lacks %q: %v", w, err)
				}
			}
		})
	}
}
