package qemu

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
)

func testHostKey(t *testing.T) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " root@node"
}

// TestHostKeysFromSerialLog: HostKeys reads the last complete report of the machine's serial.log,
// from its last MiB only, and says which file and line a bad report is at.
func TestHostKeysFromSerialLog(t *testing.T) {
	k1, l1 := testHostKey(t)
	k2, l2 := testHostKey(t)
	report := func(lines ...string) string {
		return hostkeys.BeginMarker + "\r\n" + strings.Join(lines, "\r\n") + "\r\n" + hostkeys.EndMarker + "\r\n"
	}
	noise := strings.Repeat("[   12.345678] systemd[1]: Started something.\r\n", hostkeys.MaxReportRead/40)
	for _, tc := range []struct {
		name    string
		serial  *string // nil: no serial.log
		want    ssh.PublicKey
		wantErr error
		wantMsg string
	}{
		{name: "no serial console yet", wantErr: provisioner.ErrNoHostKeys},
		{name: "booting", serial: ptr("SeaBIOS\r\nLinux version\r\n"), wantErr: provisioner.ErrNoHostKeys},
		{name: "one report", serial: ptr("boot\r\n" + report(l1) + "login: "), want: k1},
		{name: "a report after a login prompt", serial: ptr("boot\r\nnode login: " + report(l1)), want: k1},
		{name: "two reports: the last wins", serial: ptr(report(l1) + "reboot\r\n" + report(l2)), want: k2},
		{name: "a report before the last MiB is not read", serial: ptr(report(l1) + noise), wantErr: provisioner.ErrNoHostKeys},
		{name: "a report after a MiB of console", serial: ptr(report(l1) + noise + report(l2)), want: k2},
		{name: "a bad report names the file and line", serial: ptr("a\r\nb\r\n" + report(l1, "garbage")),
			wantMsg: "serial.log: line 5: malformed host key report: not an SSH public key"},
		{name: "in a long log, with where the read began", serial: ptr(noise + report("garbage")),
			wantMsg: "serial.log (its last "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProvider(t, Config{})
			ctx := t.Context()
			if _, err := p.Reserve(ctx, "a", "a-workers-0"); err != nil {
				t.Fatal(err)
			}
			dir, err := p.machineDir("a-workers-0")
			if err != nil || dir == "" {
				t.Fatalf("machineDir: %q, %v", dir, err)
			}
			if tc.serial != nil {
				if err := os.WriteFile(filepath.Join(dir, serialFile), []byte(*tc.serial), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := p.HostKeys(ctx, "a-workers-0")
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			case tc.wantMsg != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), dir) {
					t.Fatalf("err = %v, want one naming %s and saying %q", err, dir, tc.wantMsg)
				}
				if strings.Contains(err.Error(), "garbage") {
					t.Errorf("the error quotes the report: %v", err)
				}
			case err != nil:
				t.Fatal(err)
			case len(got) != 1 || string(got[0].Marshal()) != string(tc.want.Marshal()):
				t.Errorf("HostKeys = %v, want %v", hostkeys.Fingerprints(got), hostkeys.Fingerprints([]ssh.PublicKey{tc.want}))
			}
		})
	}
	t.Run("no such machine", func(t *testing.T) {
		p := newTestProvider(t, Config{})
		if _, err := p.HostKeys(t.Context(), "a-workers-9"); !errors.Is(err, ErrNotFound) {
			t.Errorf("err = %v, want ErrNotFound", err)
		}
	})
}

func ptr[T any](v T) *T { return &v }
