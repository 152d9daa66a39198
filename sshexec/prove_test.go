package sshexec_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/sshexec"
	"github.com/kiln-dev/kiln/sshexec/sshexectest"
)

// listen answers each connection on loopback with reply, then hangs up ("" says nothing and holds
// the connection until the test ends).
func listen(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if reply == "" {
				t.Cleanup(func() { c.Close() })
				continue
			}
			c.Write([]byte(reply))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestProveHostKey(t *testing.T) {
	ed, twoEd, ec := sshexectest.NewKey(t), sshexectest.NewKey(t), ecdsaKey(t)
	srv := sshexectest.Start(t, sshexectest.Config{HostKeys: []ssh.Signer{ed}})
	// A host with an ECDSA and an ed25519 key: ssh prefers ECDSA.
	two := sshexectest.Start(t, sshexectest.Config{HostKeys: []ssh.Signer{ec, twoEd}})
	other := sshexectest.NewKey(t).PublicKey()
	for _, tc := range []struct {
		name     string
		addr     string
		keys     []ssh.PublicKey
		wantIs   error
		wantText []string
	}{
		{name: "the pinned key", addr: srv.Addr, keys: []ssh.PublicKey{ed.PublicKey()}},
		{name: "one of the pinned keys", addr: srv.Addr, keys: []ssh.PublicKey{other, ed.PublicKey()}},
		{name: "a pinned key of another type than ssh prefers", addr: two.Addr, keys: []ssh.PublicKey{twoEd.PublicKey()}},
		{name: "another key", addr: srv.Addr, keys: []ssh.PublicKey{other},
			wantIs: sshexec.ErrHostKeyMismatch, wantText: []string{srv.Addr, ssh.FingerprintSHA256(ed.PublicKey()), "not one of its pinned keys", ssh.FingerprintSHA256(other)}},
		{name: "no key of the pinned type", addr: srv.Addr, keys: []ssh.PublicKey{ec.PublicKey()},
			wantIs: sshexec.ErrHostKeyMismatch, wantText: []string{"offers no key of the types pinned", ssh.FingerprintSHA256(ec.PublicKey())}},
		{name: "nothing pinned", addr: srv.Addr, wantText: []string{"no host key to check"}},
		{name: "a banner alone is no proof", addr: listen(t, "SSH-2.0-OpenSSH_9.2p1\r\n"), keys: []ssh.PublicKey{ed.PublicKey()}, wantText: []string{"ssh 127.0.0.1:"}},
		{name: "not SSH", addr: listen(t, "HTTP/1.1 400 Bad Request\r\n\r\n"), keys: []ssh.PublicKey{ed.PublicKey()}, wantText: []string{"ssh 127.0.0.1:"}},
		{name: "a port that says nothing", addr: listen(t, ""), keys: []ssh.PublicKey{ed.PublicKey()}, wantText: []string{"ssh 127.0.0.1:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sshexec.ProveHostKey(t.Context(), tc.addr, tc.keys, time.Second)
			if len(tc.wantText) == 0 {
				if err != nil {
					t.Fatalf("ProveHostKey: %v, want proven", err)
				}
				return
			}
			if err == nil {
				t.Fatal("ProveHostKey: proven, want an error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) || tc.wantIs == nil && errors.Is(err, sshexec.ErrHostKeyMismatch) {
				t.Errorf("err = %v, want one that is %v", err, tc.wantIs)
			}
			for _, w := range tc.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to say %q", err, w)
				}
			}
		})
	}
}
