// Package sshexectest is an SSH server on loopback (golang.org/x/crypto/ssh) for tests of code that
// runs commands over SSH: it lets in the client keys it is given and answers each command with a
// Handler. It is the one such harness of the repository: use it rather than writing another.
package sshexectest

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Handler answers one command and returns its exit status.
type Handler func(command string, stdout, stderr io.Writer) (status uint32)

// Commands answers each command of outputs with its standard output and status 0, and any other
// with "not found" and status 127, as a shell would.
func Commands(outputs map[string]string) Handler {
	return func(command string, stdout, stderr io.Writer) uint32 {
		out, ok := outputs[command]
		if !ok {
			fmt.Fprintf(stderr, "sh: %s: not found\n", command)
			return 127
		}
		io.WriteString(stdout, out)
		return 0
	}
}

// Config says what the server accepts and how it answers.
type Config struct {
	// ClientKeys may log in, as any user.
	ClientKeys []ssh.PublicKey
	// HostKeys the server offers. Default: one new ed25519 key.
	HostKeys []ssh.Signer
	// Handler answers commands. Default: Commands(nil).
	Handler Handler
}

// Server is a running server; it stops when the test ends.
type Server struct {
	// Addr is its address, 127.0.0.1:PORT.
	Addr string
	// HostKey is the first of its host keys.
	HostKey ssh.PublicKey

	mu    sync.Mutex
	conns []net.Conn
}

// Start starts a server on 127.0.0.1 for the rest of the test.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if len(cfg.HostKeys) == 0 {
		cfg.HostKeys = []ssh.Signer{NewKey(tb)}
	}
	if cfg.Handler == nil {
		cfg.Handler = Commands(nil)
	}
	sc := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		for _, c := range cfg.ClientKeys {
			if string(k.Marshal()) == string(c.Marshal()) {
				return nil, nil
			}
		}
		return nil, fmt.Errorf("sshexectest: unknown client key %s", ssh.FingerprintSHA256(k))
	}}
	for _, k := range cfg.HostKeys {
		sc.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), HostKey: cfg.HostKeys[0].PublicKey()}
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			wg.Go(func() { serve(c, sc, cfg.Handler) })
		}
	})
	return s
}

// KnownHostsLine is the known_hosts line of the server's first host key.
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
}

// NewKey returns a new ed25519 key.
func NewKey(tb testing.TB) ssh.Signer {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func serve(c net.Conn, cfg *ssh.ServerConfig, h Handler) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			return
		}
		go session(ch, reqs, h)
	}
}

func session(ch ssh.Channel, reqs <-chan *ssh.Request, h Handler) {
	defer ch.Close()
	for r := range reqs {
		if r.Type != "exec" {
			r.Reply(false, nil)
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(r.Payload, &p); err != nil {
			r.Reply(false, nil)
			return
		}
		r.Reply(true, nil)
		status := h(p.Command, ch, ch.Stderr())
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}
