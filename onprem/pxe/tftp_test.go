package pxe

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
)

func startTFTP(t *testing.T) (addr string, files map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	files = map[string][]byte{FileBIOS: make([]byte, 70_000), FileUEFI: make([]byte, 1_000_003)}
	for name, data := range files {
		rand.Read(data)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o600)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewTFTP(dir, nil, nil, nil, nil)
	// These tests ask far more often than a booting machine; TestTFTPRateLimit checks the limit.
	s.limiter = newClientLimiter(time.Millisecond, 1000, tftpMaxClients)
	done := make(chan error, 1)
	go func() { done <- s.Serve(pc) }()
	t.Cleanup(func() {
		s.Shutdown()
		<-done
	})
	// Wait for Serve to be reading with packet information on (a request that arrives before is
	// read without it, and the library then negotiates no block size above 512): one transfer.
	c, err := tftp.NewClient(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	wt, err := c.Receive(FileBIOS, "octet")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wt.WriteTo(io.Discard); err != nil {
		t.Fatal(err)
	}
	return pc.LocalAddr().String(), files
}

func TestTFTP(t *testing.T) {
	addr, files := startTFTP(t)
	for _, blk := range []int{512, 1468} {
		for name, want := range files {
			c, err := tftp.NewClient(addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetBlockSize(blk)
			c.SetTimeout(2 * time.Second)
			wt, err := c.Receive(name, "octet")
			if err != nil {
				t.Fatalf("%s (blksize %d): %v", name, blk, err)
			}
			var got bytes.Buffer
			if _, err := wt.WriteTo(&got); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("%s (blksize %d): got %d bytes, want %d", name, blk, got.Len(), len(want))
			}
		}
	}
	for _, name := range []string{"../secret", "/../secret", "secret", "..\\secret", "pxelinux.cfg/default", "ipxe.efi/../secret", "/etc/passwd"} {
		c, _ := tftp.NewClient(addr)
		c.SetTimeout(time.Second)
		c.SetRetries(1)
		wt, err := c.Receive(name, "octet")
		if err == nil {
			var got bytes.Buffer
			wt.WriteTo(&got)
			t.Fatalf("%q served: %q", name, got.String())
		}
	}
	// Writes are refused.
	c, _ := tftp.NewClient(addr)
	c.SetTimeout(time.Second)
	c.SetRetries(1)
	if rf, err := c.Send(FileBIOS, "octet"); err == nil {
		if _, err := rf.ReadFrom(strings.NewReader("overwrite")); err == nil {
			t.Fatal("write accepted")
		}
	}
}

// TestTFTPOptions speaks the protocol by hand to see the negotiation: blksize is acknowledged with the
// size asked for, tsize with the file's size, and windowsize (which pin/tftp does not implement) is
// left out of the OACK, so that an RFC 7440 client falls back to lock-step.
func TestTFTPOptions(t *testing.T) {
	addr, files := startTFTP(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	server, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	rrq := []byte{0, 1}
	for _, s := range []string{FileBIOS, "octet", "blksize", "1400", "tsize", "0", "windowsize", "4"} {
		rrq = append(append(rrq, s...), 0)
	}
	if _, err := pc.WriteTo(rrq, server); err != nil {
		t.Fatal(err)
	}
	// The server answers from a new port, one per transfer.
	buf := make([]byte, 2048)
	pc.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	// Abort the transfer (ERROR 0) so that the server does not wait for acknowledgements.
	pc.WriteTo([]byte("\x00\x05\x00\x00test done\x00"), from)
	if n < 2 || buf[1] != 6 {
		t.Fatalf("want OACK (6), got %x", buf[:n])
	}
	opts := map[string]string{}
	parts := strings.Split(string(buf[2:n]), "\x00")
	for i := 0; i+1 < len(parts); i += 2 {
		opts[parts[i]] = parts[i+1]
	}
	if opts["blksize"] != "1400" {
		t.Errorf("blksize %q, want 1400 (%v)", opts["blksize"], opts)
	}
	if want := len(files[FileBIOS]); opts["tsize"] != itoa(want) {
		t.Errorf("tsize %q, want %d", opts["tsize"], want)
	}
	if _, ok := opts["windowsize"]; ok {
		t.Errorf("windowsize acknowledged, but the transfer is lock-step: %v", opts)
	}
}

func itoa(n int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

func TestResolve(t *testing.T) {
	for name, want := range map[string]string{"undionly.kpxe": FileBIOS, "/ipxe.efi": FileUEFI, "undionly.kpxe.0": FileBIOS} {
		if got, err := Resolve(name); err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v", name, got, err)
		}
	}
	for _, name := range []string{"", "..", "../ipxe.efi", "x/ipxe.efi", "ipxe.efi\x00", "grub.efi"} {
		if _, err := Resolve(name); !errors.Is(err, ErrRefused) {
			t.Errorf("Resolve(%q): %v", name, err)
		}
	}
}
