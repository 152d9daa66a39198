package secrets

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

var tokenRE = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

func TestNewBootstrapToken(t *testing.T) {
	tok, err := NewBootstrapToken(seeded(1), t0, 30*time.Minute, "join workers")
	if err != nil {
		t.Fatal(err)
	}
	if !tokenRE.MatchString(tok.String()) {
		t.Errorf("token %q does not match %s", tok, tokenRE)
	}
	if tok.String() != tok.ID+"."+tok.Secret {
		t.Errorf("String() = %q, want ID.Secret", tok.String())
	}
	if want := t0.Add(30 * time.Minute); !tok.Expires.Equal(want) {
		t.Errorf("Expires = %v, want %v", tok.Expires, want)
	}
	if tok.Description != "join workers" {
		t.Errorf("Description = %q", tok.Description)
	}
	// Tokens from one stream differ.
	r := seeded(2)
	seen := map[string]bool{}
	for range 1000 {
		tok, err := NewBootstrapToken(r, t0, time.Hour, "")
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok.ID] || seen[tok.Secret] {
			t.Fatalf("token part repeated after %d tokens", len(seen)/2)
		}
		seen[tok.ID], seen[tok.Secret] = true, true
	}
}

func TestNewBootstrapTokenErrors(t *testing.T) {
	tests := []struct {
		name string
		rand io.Reader
		ttl  time.Duration
	}{
		{name: "zero ttl", rand: seeded(1), ttl: 0},
		{name: "negative ttl", rand: seeded(1), ttl: -time.Hour},
		{name: "nil reader", rand: nil, ttl: time.Hour},
		{name: "reader runs dry", rand: bytes.NewReader([]byte{1, 2, 3}), ttl: time.Hour},
		{name: "reader gives only rejected bytes", rand: bytes.NewReader(bytes.Repeat([]byte{252, 253, 254, 255}, 1000)), ttl: time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tok, err := NewBootstrapToken(tc.rand, t0, tc.ttl, ""); err == nil {
				t.Errorf("NewBootstrapToken() = %q, want an error", tok)
			}
		})
	}
}

// cycle repeats 0..255.
type cycle struct{ n int }

func (c *cycle) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c.n)
		c.n++
	}
	return len(p), nil
}

func TestRandomStringRejects(t *testing.T) {
	// Bytes 252..255 are rejected; the rest map to tokenChars[b%36]: 0→a, 35→9, 36→a, 251→9.
	got, err := randomString(bytes.NewReader([]byte{252, 253, 254, 255, 0, 35, 36, 251}), 4)
	if err != nil {
		t.Fatal(err)
	}
	if got != "a9a9" {
		t.Errorf("randomString = %q, want %q", got, "a9a9")
	}
}

func TestRandomStringExactlyUniform(t *testing.T) {
	// Every byte value once per 256: the kept 252 map to each of the 36 characters exactly 7 times, so
	// any bias (such as b%36 over all 256 values) shows as unequal counts.
	r := &cycle{}
	counts := map[rune]int{}
	const rounds = 50
	var all strings.Builder
	for all.Len() < rounds*252 {
		s, err := randomString(r, 252)
		if err != nil {
			t.Fatal(err)
		}
		all.WriteString(s)
	}
	for _, ch := range all.String()[:rounds*252] {
		counts[ch]++
	}
	if len(counts) != 36 {
		t.Fatalf("%d distinct characters, want 36", len(counts))
	}
	for ch, n := range counts {
		if n != rounds*7 {
			t.Errorf("character %q drawn %d times, want %d", ch, n, rounds*7)
		}
	}
}

func TestExpired(t *testing.T) {
	tok := BootstrapToken{ID: "abcdef", Secret: "0123456789abcdef", Expires: t0}
	tests := []struct {
		name string
		now  time.Time
		want bool
	}{
		{name: "before", now: t0.Add(-time.Second), want: false},
		{name: "at expiry", now: t0, want: true},
		{name: "after", now: t0.Add(time.Second), want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tok.Expired(tc.now); got != tc.want {
				t.Errorf("Expired(%v) = %v, want %v", tc.now, got, tc.want)
			}
		})
	}
}

func TestValidBootstrapToken(t *testing.T) {
	short := BootstrapToken{ID: "short1", Secret: "aaaaaaaaaaaaaaaa", Expires: t0.Add(10 * time.Minute)}
	long := BootstrapToken{ID: "long01", Secret: "bbbbbbbbbbbbbbbb", Expires: t0.Add(50 * time.Minute)}
	old := BootstrapToken{ID: "old001", Secret: "cccccccccccccccc", Expires: t0.Add(-time.Minute)}
	tests := []struct {
		name         string
		tokens       []BootstrapToken
		minRemaining time.Duration
		wantID       string
		wantOK       bool
	}{
		{name: "none", tokens: nil, wantOK: false},
		{name: "only expired", tokens: []BootstrapToken{old}, wantOK: false},
		{name: "latest wins", tokens: []BootstrapToken{short, long, old}, wantID: "long01", wantOK: true},
		{name: "latest wins in any order", tokens: []BootstrapToken{long, short}, wantID: "long01", wantOK: true},
		{name: "short one is enough", tokens: []BootstrapToken{short}, minRemaining: 5 * time.Minute, wantID: "short1", wantOK: true},
		{name: "exactly enough", tokens: []BootstrapToken{short}, minRemaining: 10 * time.Minute, wantID: "short1", wantOK: true},
		{name: "not enough left", tokens: []BootstrapToken{short}, minRemaining: 30 * time.Minute, wantOK: false},
		{name: "only the long one has enough", tokens: []BootstrapToken{short, long}, minRemaining: 30 * time.Minute, wantID: "long01", wantOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &Bundle{BootstrapTokens: tc.tokens}
			got, ok := b.ValidBootstrapToken(t0, tc.minRemaining)
			if ok != tc.wantOK || got.ID != tc.wantID {
				t.Errorf("ValidBootstrapToken() = %q, %v; want id %q, %v", got.ID, ok, tc.wantID, tc.wantOK)
			}
		})
	}
}

func TestAddBootstrapToken(t *testing.T) {
	old := BootstrapToken{ID: "old001", Secret: "cccccccccccccccc", Expires: t0.Add(-time.Minute)}
	live := BootstrapToken{ID: "live01", Secret: "dddddddddddddddd", Expires: t0.Add(time.Minute)}
	machines := BootstrapToken{ID: "mach01", Secret: "eeeeeeeeeeeeeeee", Expires: t0.Add(-time.Minute), Machine: "prod-workers-0"}
	b := &Bundle{BootstrapTokens: []BootstrapToken{old, live, machines}}
	tok, err := b.AddBootstrapToken(seeded(1), t0, time.Hour, "join")
	if err != nil {
		t.Fatal(err)
	}
	if len(b.BootstrapTokens) != 3 || b.BootstrapTokens[0].ID != "live01" || b.BootstrapTokens[1].ID != "mach01" || b.BootstrapTokens[2] != tok {
		t.Errorf("tokens = %#v, want the live one, the expired machine's (forgotten only once it is gone from the cluster) and the new one", b.BootstrapTokens)
	}

	// An id already in use is drawn again.
	first, err := NewBootstrapToken(seeded(7), t0, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	b = &Bundle{BootstrapTokens: []BootstrapToken{first}}
	tok, err = b.AddBootstrapToken(seeded(7), t0, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID == first.ID {
		t.Errorf("AddBootstrapToken reused id %q", tok.ID)
	}
	if _, err := b.AddBootstrapToken(nil, t0, time.Hour, ""); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("AddBootstrapToken(nil reader) = %v, want an error", err)
	}
}
