package hostkeys_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/hostkeys"
	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/statetest"
)

// newKey returns a fresh ed25519 public key, its authorized_keys line (with a comment, as a .pub file
// has one), and the private key's PEM.
func newKey(t *testing.T) (ssh.PublicKey, string, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " root@node"
	return k, line, string(pem.EncodeToMemory(block))
}

func fps(keys []ssh.PublicKey) []string { return hostkeys.Fingerprints(keys) }

func TestUnitParse(t *testing.T) {
	k1, l1, priv := newKey(t)
	k2, l2, _ := newKey(t)
	k3, l3, _ := newKey(t)
	const begin, end = hostkeys.BeginMarker, hostkeys.EndMarker
	privFirst := strings.SplitN(priv, "\n", 3)
	for _, tc := range []struct {
		name    string
		console string
		want    []ssh.PublicKey
		wantErr error
		// wantMsg is in the error's message; secret must not be.
		wantMsg string
	}{
		{name: "empty console", console: "", wantErr: provisioner.ErrNoHostKeys},
		{name: "no report yet", console: "[    0.000000] Linux version 6.1\r\nkiln login: \r\n", wantErr: provisioner.ErrNoHostKeys},
		{name: "one report, console line endings", console: "boot\r\n" + begin + "\r\n" + l1 + "\r\n" + l2 + "\r\n" + end + "\r\nlogin: ",
			want: []ssh.PublicKey{k1, k2}},
		{name: "the marker after a login prompt", console: "node login: " + begin + "\r\n" + l1 + "\r\n" + end + "\r\n",
			want: []ssh.PublicKey{k1}},
		{name: "two reports: the last wins", console: begin + "\n" + l1 + "\n" + end + "\nreboot\n" + begin + "\n" + l3 + "\n" + end + "\n",
			want: []ssh.PublicKey{k3}},
		{name: "a truncated report after a complete one: the complete one", console: begin + "\n" + l1 + "\n" + end + "\n" + begin + "\n" + l3[:20],
			want: []ssh.PublicKey{k1}},
		{name: "a report cut by a reboot, then a whole one", console: begin + "\n" + l1 + "\n[ 0.0] Linux\n" + begin + "\n" + l2 + "\n" + end + "\n",
			want: []ssh.PublicKey{k2}},
		{name: "only a truncated report", console: "x\n" + begin + "\n" + l1 + "\n", wantErr: provisioner.ErrNoHostKeys},
		{name: "garbage line in the report", console: "a\n" + begin + "\n" + l1 + "\nsystemd[1]: Started foo.\n" + end + "\n",
			wantMsg: "line 4: malformed host key report: not an SSH public key"},
		{name: "an earlier bad report does not matter", console: begin + "\ngarbage\n" + end + "\n" + begin + "\n" + l1 + "\n" + end + "\n",
			want: []ssh.PublicKey{k1}},
		{name: "a good report does not excuse a later bad one", console: begin + "\n" + l1 + "\n" + end + "\n" + begin + "\ngarbage\n" + end + "\n",
			wantMsg: "line 5: malformed host key report: not an SSH public key"},
		{name: "private key marker", console: begin + "\n" + privFirst[0] + "\n" + privFirst[1] + "\n" + end + "\n",
			wantMsg: "line 2: malformed host key report: a private key; refused"},
		{name: "private key body alone", console: begin + "\n" + privFirst[1] + "\n" + end + "\n",
			wantMsg: "line 2: malformed host key report: not an SSH public key"},
		{name: "key with options", console: begin + "\ncommand=\"x\" " + l1 + "\n" + end + "\n",
			wantMsg: "line 2: malformed host key report: a public key with options"},
		{name: "empty report", console: "x\n" + begin + "\n" + end + "\n",
			wantMsg: "line 2: malformed host key report: the report holds no key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hostkeys.Parse([]byte(tc.console))
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			case tc.wantMsg != "":
				var fe *hostkeys.FormatError
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("err = %v, want a FormatError with %q", err, tc.wantMsg)
				}
				for _, secret := range privFirst[1:2] {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error quotes the private key: %v", err)
					}
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if diff := cmp.Diff(fps(tc.want), fps(got)); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnitDecide(t *testing.T) {
	k1, _, _ := newKey(t)
	k2, _, _ := newKey(t)
	pin := func(keys ...ssh.PublicKey) *hostkeys.Pin {
		p := &hostkeys.Pin{Machine: "m"}
		for _, k := range keys {
			p.Keys = append(p.Keys, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))))
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		pin      *hostkeys.Pin
		reported []ssh.PublicKey
		want     hostkeys.Verdict
		wantErr  error
	}{
		{name: "no pin: pin it", reported: []ssh.PublicKey{k1}, want: hostkeys.PinNew},
		{name: "no pin, no keys: refused", reported: nil, want: hostkeys.Refuse},
		{name: "same keys", pin: pin(k1, k2), reported: []ssh.PublicKey{k1, k2}, want: hostkeys.Matches},
		{name: "same keys, other order, repeated", pin: pin(k1, k2), reported: []ssh.PublicKey{k2, k1, k2}, want: hostkeys.Matches},
		{name: "other key", pin: pin(k1), reported: []ssh.PublicKey{k2}, want: hostkeys.Refuse, wantErr: hostkeys.ErrChanged},
		{name: "a key added", pin: pin(k1), reported: []ssh.PublicKey{k1, k2}, want: hostkeys.Refuse, wantErr: hostkeys.ErrChanged},
		{name: "a key dropped", pin: pin(k1, k2), reported: []ssh.PublicKey{k1}, want: hostkeys.Refuse, wantErr: hostkeys.ErrChanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hostkeys.Decide("m", tc.pin, tc.reported)
			if got != tc.want {
				t.Errorf("verdict = %v, want %v (err %v)", got, tc.want, err)
			}
			if (got == hostkeys.Refuse) != (err != nil) {
				t.Errorf("verdict %v with err %v", got, err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestUnitCheckPinsOnceAndRefusesAChange(t *testing.T) {
	k1, _, _ := newKey(t)
	k2, _, _ := newKey(t)
	now := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	s := statetest.NewEmpty()

	got, pinned, err := hostkeys.Check(s, "demo", "demo-workers-0", []ssh.PublicKey{k1}, now)
	if err != nil || !pinned || len(got) != 1 {
		t.Fatalf("first report: %v, pinned %v, err %v; want pinned", fps(got), pinned, err)
	}
	if _, pinned, err := hostkeys.Check(s, "demo", "demo-workers-0", []ssh.PublicKey{k1}, now.Add(time.Hour)); err != nil || pinned {
		t.Fatalf("same report again: pinned %v, err %v; want matched", pinned, err)
	}
	_, _, err = hostkeys.Check(s, "demo", "demo-workers-0", []ssh.PublicKey{k2}, now)
	var me *hostkeys.MismatchError
	if !errors.As(err, &me) || !errors.Is(err, hostkeys.ErrChanged) {
		t.Fatalf("changed report: err = %v, want a MismatchError", err)
	}
	for _, want := range []string{"demo-workers-0", ssh.FingerprintSHA256(k1), ssh.FingerprintSHA256(k2)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("mismatch error %q does not name %s", err, want)
		}
	}
	// Never re-pinned: the first keys stay.
	p, err := hostkeys.Load(s, "demo-workers-0")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := p.PublicKeys()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fps([]ssh.PublicKey{k1}), fps(keys)); diff != "" {
		t.Errorf("pin after a refused report (-want +got):\n%s", diff)
	}
	if !p.Pinned.Equal(now) || p.Cluster != "demo" {
		t.Errorf("pin = %+v, want cluster demo pinned at %v", p, now)
	}
	// Another cluster's pin of the name is not this cluster's.
	if _, _, err := hostkeys.Check(s, "other", "demo-workers-0", []ssh.PublicKey{k1}, now); err == nil || !strings.Contains(err.Error(), "belongs to cluster demo") {
		t.Errorf("other cluster: err = %v", err)
	}

	// Deleted, the machine loses its pin; a new one of the name pins its own keys.
	if err := hostkeys.Forget(s, "demo-workers-0"); err != nil {
		t.Fatal(err)
	}
	if err := hostkeys.Forget(s, "demo-workers-0"); err != nil {
		t.Fatalf("forget twice: %v", err)
	}
	if _, err := hostkeys.Load(s, "demo-workers-0"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("after Forget: Load err = %v, want not found", err)
	}
	if _, pinned, err := hostkeys.Check(s, "demo", "demo-workers-0", []ssh.PublicKey{k2}, now); err != nil || !pinned {
		t.Fatalf("new machine: pinned %v, err %v", pinned, err)
	}
}

func TestUnitCheckBrokenStore(t *testing.T) {
	k1, _, _ := newKey(t)
	boom := errors.New("boom")
	_, _, err := hostkeys.Check(statetest.Broken{Err: boom}, "demo", "m", []ssh.PublicKey{k1}, time.Now())
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want the store's", err)
	}
	if err := hostkeys.Forget(statetest.Broken{Err: boom}, "m"); !errors.Is(err, boom) {
		t.Errorf("Forget err = %v, want the store's", err)
	}
}

func TestUnitKnownHostsLines(t *testing.T) {
	k1, _, _ := newKey(t)
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k1)))
	for _, tc := range []struct{ addr, want string }{
		{addr: "127.0.0.1:2222", want: "[127.0.0.1]:2222 " + authorized},
		{addr: "10.0.0.5:22", want: "10.0.0.5 " + authorized},
	} {
		if got := hostkeys.KnownHostsLines(tc.addr, []ssh.PublicKey{k1}); len(got) != 1 || got[0] != tc.want {
			t.Errorf("KnownHostsLines(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
