package pxe

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path"
	"strings"
	"time"

	"github.com/pin/tftp/v3"
)

// ipxeBinaries are the only files the TFTP server (and /ipxe/ over HTTP) serves.
var ipxeBinaries = map[string]bool{
	FileBIOS:          true,
	FileUEFI:          true,
	"undionly.kpxe.0": true,
	"snponly.efi":     true,
	"ipxe.pxe":        true,
}

// IPXEDirs are where Debian's ipxe package puts the iPXE binaries (bookworm and later, older).
var IPXEDirs = []string{"/usr/lib/ipxe", "/boot"}

// FindIPXEDir returns the first of dirs that holds both undionly.kpxe and ipxe.efi.
func FindIPXEDir(dirs []string) (string, error) {
	for _, d := range dirs {
		_, e1 := os.Stat(path.Join(d, FileBIOS))
		_, e2 := os.Stat(path.Join(d, FileUEFI))
		if e1 == nil && e2 == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("pxe: no iPXE binaries (%s, %s) in %s: install Debian's ipxe package or pass --ipxe-dir",
		FileBIOS, FileUEFI, strings.Join(dirs, ", "))
}

// TFTP serves the iPXE binaries, read-only. Block size (RFC 2348, up to what fits the interface's MTU)
// and transfer size (RFC 2349) are negotiated. github.com/pin/tftp/v3 does not implement RFC 7440
// windowsize: it leaves the option out of its OACK, so a client asking for it falls back to
// lock-step, as the RFC says. (Its "sender anticipation" would send ahead, but it breaks blksize
// negotiation, so it is off.) The binaries are small (undionly.kpxe ~70 KB, ipxe.efi ~1 MB): TFTP
// only carries iPXE, which then loads everything else over HTTP.
type TFTP struct {
	dir      string
	machines map[string]*Machine
	leases   *Leases
	recorder *Recorder
	log      *slog.Logger
	srv      *tftp.Server
	limiter  *clientLimiter
	now      func() time.Time
}

// maxBlockSize is the largest block negotiated: what fits an Ethernet frame of 1500 bytes after the
// IP, UDP and TFTP headers.
const maxBlockSize = 1468

// ErrRefused is the error a TFTP client gets for a name it may not read.
var ErrRefused = errors.New("pxe: tftp: no such file")

// ErrRateLimited is the error a TFTP client gets when it asks more often than TFTPRequestBurst
// requests at once and one every TFTPRequestEvery.
var ErrRateLimited = errors.New("pxe: tftp: too many requests")

// NewTFTP returns a server for the binaries in dir. leases and rec, when set, attribute a transfer to
// the machine leased the client's address.
func NewTFTP(dir string, inv *Inventory, leases *Leases, rec *Recorder, log *slog.Logger) *TFTP {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &TFTP{dir: dir, machines: map[string]*Machine{}, leases: leases, recorder: rec, log: log,
		limiter: newClientLimiter(TFTPRequestEvery, TFTPRequestBurst, tftpMaxClients), now: time.Now}
	if inv != nil {
		for i := range inv.Machines {
			t.machines[inv.Machines[i].MAC] = &inv.Machines[i]
		}
	}
	t.srv = tftp.NewServer(t.read, nil)
	t.srv.SetTimeout(5 * time.Second)
	t.srv.SetBlockSize(maxBlockSize)
	return t
}

// Resolve maps a requested name to a served file name, refusing anything else: only the iPXE binaries,
// by base name, with no directory part that climbs.
func Resolve(name string) (string, error) {
	name = strings.TrimPrefix(strings.ReplaceAll(name, "\\", "/"), "/")
	if strings.Contains(name, "..") || strings.ContainsRune(name, 0) || strings.Contains(name, "/") {
		return "", fmt.Errorf("%w: %q", ErrRefused, name)
	}
	if !ipxeBinaries[name] {
		return "", fmt.Errorf("%w: %q", ErrRefused, name)
	}
	if name == "undionly.kpxe.0" {
		name = FileBIOS
	}
	return name, nil
}

func (t *TFTP) read(name string, rf io.ReaderFrom) error {
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		addr := ot.RemoteAddr()
		if ip, ok := netip.AddrFromSlice(addr.IP); ok && !t.limiter.allow(ip, t.now()) {
			t.log.Warn("tftp rate limited", "client", addr.IP.String(), "file", name)
			return fmt.Errorf("%w from %s: at most %d at once and one every %s", ErrRateLimited, ip.Unmap(), TFTPRequestBurst, TFTPRequestEvery)
		}
	}
	file, err := Resolve(name)
	if err != nil {
		t.log.Info("tftp refused", "file", name)
		return err
	}
	f, err := os.Open(path.Join(t.dir, file))
	if err != nil {
		return fmt.Errorf("%w: %q", ErrRefused, name)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			ot.SetSize(fi.Size())
		}
	}
	if _, err := rf.ReadFrom(f); err != nil {
		return err
	}
	if t.recorder != nil && t.leases != nil {
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			addr := ot.RemoteAddr()
			for mac, m := range t.machines {
				if ip, ok := t.leases.Leased(mac); ok && ip.Equal(addr.IP) {
					t.recorder.Observe(m, StepTFTP, file)
					break
				}
			}
		}
	}
	return nil
}

// Serve serves on conn until Shutdown.
func (t *TFTP) Serve(conn net.PacketConn) error { return t.srv.Serve(conn) }

// Shutdown stops Serve.
func (t *TFTP) Shutdown() { t.srv.Shutdown() }
