package enroll_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/statetest"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T) *state.Store {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), bytes.Repeat([]byte{9}, state.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func issue(t *testing.T, st enroll.Store, machine string, bind netip.Addr) string {
	t.Helper()
	token, tk, err := enroll.Issue(st, enroll.Issuing{Cluster: "demo", Machine: machine, Config: []byte(`{"secret":"` + machine + `"}`), Bind: bind, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if !enroll.IsToken(token) {
		t.Fatalf("token %q does not look like an enrollment token", token)
	}
	if tk.Expires != t0.Add(enroll.DefaultTTL) || tk.ConfigHash != enroll.ConfigHash([]byte(`{"secret":"`+machine+`"}`)) {
		t.Fatalf("ticket %+v", tk)
	}
	return token
}

func TestSpend(t *testing.T) {
	node := netip.MustParseAddr("10.0.0.11")
	other := netip.MustParseAddr("10.0.0.66")
	for _, tc := range []struct {
		name    string
		bind    netip.Addr
		machine string
		token   func(good string) string
		from    netip.Addr
		at      time.Time
		want    error
		suspect bool
	}{
		{name: "the machine, in time", from: node, at: t0.Add(time.Minute)},
		{name: "bound, from its address", bind: node, from: node, at: t0.Add(time.Minute)},
		{name: "bound, from another address", bind: node, from: other, at: t0.Add(time.Minute), want: enroll.ErrWrongAddress, suspect: true},
		{name: "expired", from: node, at: t0.Add(enroll.DefaultTTL), want: enroll.ErrExpired},
		{name: "another token", token: func(string) string { return "kiln-enroll-v1." + strings.Repeat("A", 43) }, from: node, at: t0, want: enroll.ErrBadToken},
		{name: "empty token", token: func(string) string { return "" }, from: node, at: t0, want: enroll.ErrBadToken},
		{name: "another machine's token", machine: "demo-worker-1", from: node, at: t0, want: enroll.ErrBadToken},
		{name: "no ticket", machine: "demo-worker-9", from: node, at: t0, want: enroll.ErrNoTicket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := statetest.NewEmpty()
			token := issue(t, st, "demo-worker-0", tc.bind)
			issue(t, st, "demo-worker-1", netip.Addr{})
			if tc.token != nil {
				token = tc.token(token)
			}
			machine := "demo-worker-0"
			if tc.machine != "" {
				machine = tc.machine
			}
			got, err := enroll.Spend(st, "demo", machine, token, tc.from, tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Spend: %v, want %v", err, tc.want)
			}
			if err != nil {
				if got != nil || strings.Contains(err.Error(), "kiln-enroll-v1.") {
					t.Errorf("a refusal returned a config or quoted the token: %q, %v", got, err)
				}
				if !strings.Contains(err.Error(), machine) {
					t.Errorf("the error does not name the machine: %v", err)
				}
			} else if string(got) != `{"secret":"demo-worker-0"}` {
				t.Errorf("config %q", got)
			}
			if tc.want == enroll.ErrNoTicket {
				return
			}
			tk, err := enroll.Get(st, "demo", machine)
			if err != nil {
				t.Fatal(err)
			}
			if tk.Suspect() != tc.suspect {
				t.Errorf("Suspect() = %v, want %v: %+v", tk.Suspect(), tc.suspect, tk.Refused)
			}
			if tc.want != nil && (len(tk.Refused) != 1 || tk.Refused[0].From != tc.from.String() || tk.Refused[0].Reason != tc.want.Error()) {
				t.Errorf("the refusal is not recorded: %+v", tk.Refused)
			}
		})
	}
}

// A second fetch, with the token the first used, finds nothing and marks the ticket: the token left
// the stub.
func TestSpendTwice(t *testing.T) {
	st := statetest.NewEmpty()
	token := issue(t, st, "demo-control-plane-0", netip.Addr{})
	node, thief := netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.99")
	if _, err := enroll.Spend(st, "demo", "demo-control-plane-0", token, thief, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := enroll.Spend(st, "demo", "demo-control-plane-0", token, node, t0.Add(2*time.Second))
	if !errors.Is(err, enroll.ErrSpent) {
		t.Fatalf("second Spend: %v, want ErrSpent", err)
	}
	tk, err := enroll.Get(st, "demo", "demo-control-plane-0")
	if err != nil {
		t.Fatal(err)
	}
	if tk.Spent == nil || tk.Spent.From != thief.String() || !tk.Suspect() {
		t.Errorf("ticket %+v", tk)
	}
	if got := tk.State(t0.Add(time.Hour)); got != "spent (possible theft)" {
		t.Errorf("State = %q", got)
	}
}

// Against the real state store, many fetches at once: exactly one gets the config, and the config is
// no longer stored.
func TestSpendRace(t *testing.T) {
	st := openStore(t)
	token := issue(t, st, "demo-worker-0", netip.Addr{})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  int
		errs = map[error]int{}
	)
	for i := range 16 {
		wg.Go(func() {
			cfg, err := enroll.Spend(st, "demo", "demo-worker-0", token, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t0.Add(time.Second))
			mu.Lock()
			defer mu.Unlock()
			if err == nil && len(cfg) > 0 {
				won++
			} else if errors.Is(err, enroll.ErrSpent) {
				errs[enroll.ErrSpent]++
			} else {
				t.Errorf("Spend: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 || errs[enroll.ErrSpent] != 15 {
		t.Fatalf("%d fetches got the config, %d were refused as spent", won, errs[enroll.ErrSpent])
	}
	raw := rawTicket(t, st, "demo.demo-worker-0")
	if strings.Contains(raw, "secret") || strings.Contains(raw, token) {
		t.Errorf("the spent ticket still holds the config or the token: %s", raw)
	}
}

// rawTicket is the ticket as stored, every field.
func rawTicket(t *testing.T, st state.Getter, key string) string {
	t.Helper()
	var raw json.RawMessage
	if err := st.Get(enroll.Bucket, key, &raw); err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// Issuing again revokes the earlier token; Revoke removes the ticket; List shows a cluster's own.
func TestReissueRevokeList(t *testing.T) {
	st := statetest.NewEmpty()
	old := issue(t, st, "demo-worker-0", netip.Addr{})
	fresh := issue(t, st, "demo-worker-0", netip.Addr{})
	if _, err := enroll.Spend(st, "demo", "demo-worker-0", old, netip.Addr{}, t0); !errors.Is(err, enroll.ErrBadToken) {
		t.Errorf("the earlier token: %v, want ErrBadToken", err)
	}
	if _, _, err := enroll.Issue(st, enroll.Issuing{Cluster: "demox", Machine: "worker-0", Config: []byte("x"), Now: t0}); err != nil {
		t.Fatal(err)
	}
	issue(t, st, "demo-worker-1", netip.Addr{})
	list, err := enroll.List(st, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Machine != "demo-worker-0" || list[1].Machine != "demo-worker-1" {
		t.Fatalf("List: %+v", list)
	}
	if err := enroll.Revoke(st, "demo", "demo-worker-0"); err != nil {
		t.Fatal(err)
	}
	if err := enroll.Revoke(st, "demo", "demo-worker-0"); err != nil {
		t.Errorf("a second Revoke: %v", err)
	}
	if _, err := enroll.Spend(st, "demo", "demo-worker-0", fresh, netip.Addr{}, t0); !errors.Is(err, enroll.ErrNoTicket) {
		t.Errorf("a revoked ticket: %v, want ErrNoTicket", err)
	}
}

func TestIssueRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   enroll.Issuing
		want string
	}{
		{"no machine", enroll.Issuing{Cluster: "demo", Config: []byte("x")}, "needs a cluster and a machine"},
		{"no config", enroll.Issuing{Cluster: "demo", Machine: "m"}, "machine m of cluster demo: no config"},
		{"ttl too long", enroll.Issuing{Cluster: "demo", Machine: "m", Config: []byte("x"), TTL: 25 * time.Hour}, "ttl 25h0m0s"},
		{"negative ttl", enroll.Issuing{Cluster: "demo", Machine: "m", Config: []byte("x"), TTL: -time.Second}, "ttl -1s"},
		{"broken random", enroll.Issuing{Cluster: "demo", Machine: "m", Config: []byte("x"), Rand: strings.NewReader("short")}, "read random token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := statetest.NewEmpty()
			if _, _, err := enroll.Issue(st, tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Issue: %v, want %q", err, tc.want)
			}
			if keys, _ := st.List(enroll.Bucket); len(keys) != 0 {
				t.Errorf("a refused Issue stored %v", keys)
			}
		})
	}
}

func TestIsToken(t *testing.T) {
	for s, want := range map[string]bool{
		"kiln-enroll-v1." + strings.Repeat("A", 43): true,
		"kiln-enroll-v1." + strings.Repeat("A", 42): false,
		"kiln-enroll-v1." + strings.Repeat("!", 43): false,
		"abcdef.0123456789abcdef":                   false,
		"":                                          false,
	} {
		if got := enroll.IsToken(s); got != want {
			t.Errorf("IsToken(%q) = %v", s, got)
		}
	}
}
