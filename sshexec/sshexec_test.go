package sshexec_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kiln-dev/kiln/sshexec"
	"github.com/kiln-dev/kiln/sshexec/sshexectest"
)

// knownHosts writes lines into a known_hosts file and returns its path.
func knownHosts(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func ecdsaKey(t *testing.T) ssh.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var commands = sshexectest.Commands(map[string]string{"hostname": "node-0\n"})

func TestHostKeys(t *testing.T) {
	client := sshexectest.NewKey(t)
	ed := sshexectest.NewKey(t)
	srv := sshexectest.Start(t, sshexectest.Config{ClientKeys: []ssh.PublicKey{client.PublicKey()}, HostKeys: []ssh.Signer{ed}, Handler: commands})
	// A host with an ECDSA and an ed25519 key: ssh prefers ECDSA, the file knows the ed25519 one.
	twoEd := sshexectest.NewKey(t)
	two := sshexectest.Start(t, sshexectest.Config{ClientKeys: []ssh.PublicKey{client.PublicKey()},
		HostKeys: []ssh.Signer{ecdsaKey(t), twoEd}, Handler: commands})

	other := sshexectest.NewKey(t).PublicKey()
	line := func(addr string, k ssh.PublicKey) string {
		return knownhosts.Line([]string{knownhosts.Normalize(addr)}, k)
	}
	for _, tc := range []struct {
		name       string
		addr       string
		knownHosts []string
		wantIs     error
		wantText   []string
	}{
		{name: "known key", addr: srv.Addr, knownHosts: []string{line(srv.Addr, ed.PublicKey())}},
		{name: "known key among other hosts", addr: srv.Addr,
			knownHosts: []string{line("192.0.2.1:22", other), line(srv.Addr, ed.PublicKey())}},
		{name: "unknown host", addr: srv.Addr, knownHosts: []string{line("192.0.2.1:22", ed.PublicKey())},
			wantIs: sshexec.ErrUnknownHostKey, wantText: []string{"unknown host key", srv.Addr, ssh.FingerprintSHA256(ed.PublicKey()), "known_hosts"}},
		{name: "mismatched key", addr: srv.Addr, knownHosts: []string{line(srv.Addr, other)},
			wantIs: sshexec.ErrHostKeyMismatch, wantText: []string{"host key mismatch", srv.Addr, ssh.FingerprintSHA256(ed.PublicKey()), "known_hosts:1 holds " + ssh.FingerprintSHA256(other)}},
		{name: "revoked key", addr: srv.Addr, knownHosts: []string{"@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ed.PublicKey()))), line(srv.Addr, ed.PublicKey())},
			wantIs: sshexec.ErrHostKeyMismatch, wantText: []string{"known_hosts:1 revokes"}},
		{name: "known key of another type than ssh prefers", addr: two.Addr, knownHosts: []string{line(two.Addr, twoEd.PublicKey())}},
		{name: "the host offers no key of the known type", addr: srv.Addr, knownHosts: []string{line(srv.Addr, ecdsaKey(t).PublicKey())},
			wantIs: sshexec.ErrHostKeyMismatch, wantText: []string{"none of the key types", "ecdsa-sha2-nistp256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := knownHosts(t, tc.knownHosts...)
			c, err := sshexec.Dial(t.Context(), tc.addr, sshexec.Config{User: "kiln", Signer: client, KnownHosts: file, Timeout: 10 * time.Second})
			if tc.wantIs == nil {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				res, err := c.Run(t.Context(), "hostname")
				if err != nil || string(res.Stdout) != "node-0\n" {
					t.Fatalf("hostname: %q, %v", res.Stdout, err)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatalf("logged in, want %v", tc.wantIs)
			}
			var hke *sshexec.HostKeyError
			if !errors.Is(err, tc.wantIs) || !errors.As(err, &hke) {
				t.Fatalf("got %v, want a HostKeyError wrapping %v", err, tc.wantIs)
			}
			for _, w := range append(tc.wantText, file) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error lacks %q: %v", w, err)
				}
			}
		})
	}
}

func TestRun(t *testing.T) {
	client := sshexectest.NewKey(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := sshexectest.Start(t, sshexectest.Config{ClientKeys: []ssh.PublicKey{client.PublicKey()},
		Handler: func(command string, stdout, stderr io.Writer) uint32 {
			switch command {
			case "false":
				io.WriteString(stdout, "partial\n")
				io.WriteString(stderr, "it failed\n")
				return 1
			case "sleep":
				<-release
				return 0
			}
			return commands(command, stdout, stderr)
		}})
	file := knownHosts(t, srv.KnownHostsLine())
	c, err := sshexec.Dial(t.Context(), srv.Addr, sshexec.Config{User: "kiln", Signer: client, KnownHosts: file, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for _, tc := range []struct {
		command    string
		wantStatus int
		wantStdout string
		wantErr    string
	}{
		{command: "hostname", wantStdout: "node-0\n"},
		{command: "false", wantStatus: 1, wantStdout: "partial\n", wantErr: "ssh kiln@" + srv.Addr + ": false: exited with status 1: it failed"},
		{command: "sudo -n nft", wantStatus: 127, wantErr: "sudo -n nft: exited with status 127: sh: sudo -n nft: not found"},
	} {
		t.Run(tc.command, func(t *testing.T) {
			res, err := c.Run(t.Context(), tc.command)
			if res.ExitStatus != tc.wantStatus || string(res.Stdout) != tc.wantStdout {
				t.Errorf("status %d, stdout %q; want %d, %q", res.ExitStatus, res.Stdout, tc.wantStatus, tc.wantStdout)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var xe *sshexec.ExitError
			if !errors.As(err, &xe) || xe.Status != tc.wantStatus || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an ExitError %q", err, tc.wantErr)
			}
		})
	}

	// The caller's context ends a command early, and the connection with it.
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := c.Run(ctx, "sleep")
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "sleep") {
			t.Fatalf("got %v, want the context's error naming the command", err)
		}
	})
}

func TestTimeout(t *testing.T) {
	client := sshexectest.NewKey(t)
	// A host that accepts the connection and never says a word.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	// A host that answers until a command, which never ends.
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stalls := sshexectest.Start(t, sshexectest.Config{ClientKeys: []ssh.PublicKey{client.PublicKey()},
		Handler: func(string, io.Writer, io.Writer) uint32 { <-release; return 0 }})

	file := knownHosts(t, stalls.KnownHostsLine(), knownhosts.Line([]string{knownhosts.Normalize(ln.Addr().String())}, stalls.HostKey))
	cfg := sshexec.Config{User: "kiln", Signer: client, KnownHosts: file, Timeout: 300 * time.Millisecond}

	t.Run("silent host", func(t *testing.T) {
		start := time.Now()
		_, err := sshexec.Dial(t.Context(), ln.Addr().String(), cfg)
		if !errors.Is(err, sshexec.ErrTimeout) || !strings.Contains(err.Error(), ln.Addr().String()) {
			t.Fatalf("got %v, want ErrTimeout naming the host", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("gave up after %v, want about %v", d, cfg.Timeout)
		}
	})
	t.Run("stalled command", func(t *testing.T) {
		start := time.Now()
		c, err := sshexec.Dial(t.Context(), stalls.Addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Run(t.Context(), "apt-config dump")
		if !errors.Is(err, sshexec.ErrTimeout) || !strings.Contains(err.Error(), "apt-config dump") {
			t.Fatalf("got %v, want ErrTimeout naming the command", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("gave up after %v, want about %v", d, cfg.Timeout)
		}
	})
}

func TestDialErrors(t *testing.T) {
	client := sshexectest.NewKey(t)
	srv := sshexectest.Start(t, sshexectest.Config{ClientKeys: []ssh.PublicKey{client.PublicKey()}})
	file := knownHosts(t, srv.KnownHostsLine())
	for _, tc := range []struct {
		name   string
		cfg    sshexec.Config
		wantIs error
		want   string
	}{
		{name: "no known_hosts file", cfg: sshexec.Config{User: "kiln", Signer: client, KnownHosts: filepath.Join(t.TempDir(), "none")},
			wantIs: os.ErrNotExist, want: "known_hosts file"},
		{name: "no known_hosts given", cfg: sshexec.Config{User: "kiln", Signer: client}, wantIs: sshexec.ErrKnownHostsFile},
		{name: "a key the host does not let in", cfg: sshexec.Config{User: "kiln", Signer: sshexectest.NewKey(t), KnownHosts: file},
			want: "unable to authenticate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := sshexec.Dial(t.Context(), srv.Addr, tc.cfg)
			if err == nil {
				c.Close()
				t.Fatal("logged in")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "kiln@"+srv.Addr) {
				t.Fatalf("got %v, want an error naming kiln@%s, wrapping %v, containing %q", err, srv.Addr, tc.wantIs, tc.want)
			}
		})
	}
	t.Run("insecure host key is reported", func(t *testing.T) {
		var seen []string
		c, err := sshexec.Dial(t.Context(), srv.Addr, sshexec.Config{User: "kiln", Signer: client,
			InsecureHostKey: func(addr string, k ssh.PublicKey) { seen = append(seen, addr+" "+ssh.FingerprintSHA256(k)) }})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if want := srv.Addr + " " + ssh.FingerprintSHA256(srv.HostKey); len(seen) != 1 || seen[0] != want {
			t.Errorf("reported %v, want [%s]", seen, want)
		}
	})
}

// TestMaxOutput has a host print more than MaxOutput: the command fails with ErrOutputTooLarge
// instead of filling memory.
func TestMaxOutput(t *testing.T) {
	client := sshexectest.NewKey(t)
	chatty := sshexectest.Start(t, sshexectest.Config{ClientKeys: []ssh.PublicKey{client.PublicKey()},
		Handler: func(_ string, stdout, _ io.Writer) uint32 {
			chunk := make([]byte, 4096)
			for range 64 {
				if _, err := stdout.Write(chunk); err != nil {
					return 1
				}
			}
			return 0
		}})
	file := knownHosts(t, chatty.KnownHostsLine())
	cfg := sshexec.Config{User: "kiln", Signer: client, KnownHosts: file, Timeout: 10 * time.Second, MaxOutput: 64 << 10}
	c, err := sshexec.Dial(t.Context(), chatty.Addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Run(t.Context(), "nft list ruleset")
	if !errors.Is(err, sshexec.ErrOutputTooLarge) || !strings.Contains(err.Error(), "nft list ruleset") {
		t.Fatalf("got %v, want ErrOutputTooLarge naming the command", err)
	}
	if len(res.Stdout) > 64<<10 {
		t.Fatalf("kept %d bytes of output, want at most %d", len(res.Stdout), 64<<10)
	}
}

// TestAttach: a command attached to the caller's streams prints as it goes, outlives Config.Timeout,
// and reports a failure as an ExitError.
func TestAttach(t *testing.T) {
	client := sshexectest.NewKey(t)
	srv := sshexectest.Start(t, sshexectest.Config{ClientKeys: []ssh.PublicKey{client.PublicKey()},
		Handler: func(command string, stdout, stderr io.Writer) uint32 {
			switch command {
			case "slow":
				time.Sleep(600 * time.Millisecond) // longer than the timeout
				io.WriteString(stdout, "done\n")
				return 0
			case "false":
				io.WriteString(stderr, "it failed\n")
				return 3
			}
			return commands(command, stdout, stderr)
		}})
	file := knownHosts(t, srv.KnownHostsLine())
	for _, tc := range []struct {
		command, wantOut, wantErrOut string
		wantStatus                   int
	}{
		{command: "hostname", wantOut: "node-0\n"},
		{command: "slow", wantOut: "done\n"},
		{command: "false", wantErrOut: "it failed\n", wantStatus: 3},
	} {
		t.Run(tc.command, func(t *testing.T) {
			c, err := sshexec.Dial(t.Context(), srv.Addr, sshexec.Config{User: "kiln", Signer: client, KnownHosts: file, Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var out, errOut strings.Builder
			err = c.Attach(t.Context(), tc.command, sshexec.Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
			var xe *sshexec.ExitError
			switch {
			case tc.wantStatus == 0 && err != nil:
				t.Fatal(err)
			case tc.wantStatus != 0 && (!errors.As(err, &xe) || xe.Status != tc.wantStatus):
				t.Fatalf("err = %v, want an ExitError with status %d", err, tc.wantStatus)
			}
			if out.String() != tc.wantOut || errOut.String() != tc.wantErrOut {
				t.Errorf("stdout %q, stderr %q; want %q, %q", out.String(), errOut.String(), tc.wantOut, tc.wantErrOut)
			}
		})
	}
}
