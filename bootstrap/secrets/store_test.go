package secrets

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/pki"
	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/statetest"
)

func stateKey() []byte {
	key := make([]byte, state.KeySize)
	for i := range key {
		key[i] = byte(i)
	}
	return key
}

func openStore(t *testing.T, path string) *state.Store {
	t.Helper()
	s, err := state.Open(path, stateKey())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestSaveLoadStateFile keeps a bundle in a real state file: it outlives the process, and none of its
// secrets is on disk in the clear.
func TestSaveLoadStateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), state.FileName)
	s := openStore(t, path)
	b := mustGenerate(t, cluster("prod"), seeded(1))
	if err := Save(s, "prod", b); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string][]byte{"encryption key": b.EncryptionKey, "cluster CA key": b.ClusterCA.KeyPEM} {
		if bytes.Contains(raw, secret) {
			t.Errorf("the state file holds the %s in the clear", name)
		}
	}
	got, err := Load(openStore(t, path), "prod")
	if err != nil {
		t.Fatalf("Load after reopening: %v", err)
	}
	if diff := cmp.Diff(*b, *got); diff != "" {
		t.Errorf("Load after reopening (-saved +loaded):\n%s", diff)
	}
}

func TestSaveLoad(t *testing.T) {
	s := statetest.NewEmpty()
	b := mustGenerate(t, cluster("prod"), seeded(1))
	if err := Save(s, "prod", b); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, err := Load(s, "prod")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if diff := cmp.Diff(*b, *got); diff != "" {
		t.Errorf("Load (-saved +loaded):\n%s", diff)
	}

	// Never silently regenerated.
	again := mustGenerate(t, cluster("prod"), seeded(2))
	if err := Save(s, "prod", again); !errors.Is(err, state.ErrExists) {
		t.Fatalf("second Save = %v, want state.ErrExists", err)
	}
	got, err = Load(s, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*b, *got); diff != "" {
		t.Errorf("second Save changed the stored bundle (-first +stored):\n%s", diff)
	}

	if _, err := Load(s, "nope"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Load(unknown) = %v, want state.ErrNotFound", err)
	}
	if err := Save(s, "empty", &Bundle{}); !errors.Is(err, ErrIncomplete) {
		t.Errorf("Save(empty bundle) = %v, want ErrIncomplete", err)
	}
	if err := Save(s, "nil", nil); !errors.Is(err, ErrIncomplete) {
		t.Errorf("Save(nil) = %v, want ErrIncomplete", err)
	}
}

func TestUpdate(t *testing.T) {
	s := statetest.NewFixed(t, statetest.Values{Bucket: {"prod": mustGenerate(t, cluster("prod"), seeded(1))}})
	now := t0.Add(time.Hour)

	b, err := Load(s, "prod")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := b.AddBootstrapToken(seeded(3), now, time.Hour, "join")
	if err != nil {
		t.Fatal(err)
	}
	if err := Update(s, "prod", b); err != nil {
		t.Fatalf("Update: %v", err)
	}
	got, err := Load(s, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := got.ValidBootstrapToken(now, 30*time.Minute); !ok || v != tok {
		t.Errorf("after Update, ValidBootstrapToken = %v, %v; want the new token", v.ID, ok)
	}

	tests := []struct {
		name   string
		change func(b *Bundle)
	}{
		{name: "regenerated bundle", change: func(b *Bundle) { *b = *mustGenerate(t, cluster("prod"), seeded(9)) }},
		{name: "new cluster CA", change: func(b *Bundle) { b.ClusterCA = mustGenerate(t, cluster("x"), seeded(8)).ClusterCA }},
		{name: "new encryption key", change: func(b *Bundle) { b.EncryptionKey = make([]byte, 32) }},
		{name: "other authorized keys", change: func(b *Bundle) { b.SSH.AuthorizedKeys = []string{userKey} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, err := Load(s, "prod")
			if err != nil {
				t.Fatal(err)
			}
			b := *before
			tc.change(&b)
			b.BootstrapTokens = nil
			if err := Update(s, "prod", &b); !errors.Is(err, ErrKeyMaterialChanged) {
				t.Fatalf("Update() = %v, want ErrKeyMaterialChanged", err)
			}
			after, err := Load(s, "prod")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(*before, *after); diff != "" {
				t.Errorf("a refused Update changed the store (-before +after):\n%s", diff)
			}
		})
	}

	if err := Update(s, "nope", b); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Update(unknown cluster) = %v, want state.ErrNotFound", err)
	}
}

func TestJoinToken(t *testing.T) {
	c := cluster("prod", func(c *v1alpha1.Cluster) { c.Spec.Security.BootstrapTokenTTL = v1alpha1.Duration{Duration: time.Hour} })
	s := statetest.NewFixed(t, statetest.Values{Bucket: {"prod": mustGenerate(t, c, seeded(1))}})

	// The first render mints a token and stores it.
	_, first, err := JoinToken(s, c, t0, "kiln node join")
	if err != nil {
		t.Fatalf("JoinToken: %v", err)
	}
	if !first.Expires.Equal(t0.Add(time.Hour)) || first.Description != "kiln node join" {
		t.Errorf("new token expires %v (%q), want %v", first.Expires, first.Description, t0.Add(time.Hour))
	}
	stored, err := Load(s, "prod")
	if err != nil || len(stored.BootstrapTokens) != 1 || stored.BootstrapTokens[0] != first {
		t.Fatalf("stored tokens %+v, %v; want the new one", stored.BootstrapTokens, err)
	}
	// While it has half its lifetime left it is the one handed out.
	if _, tok, err := JoinToken(s, c, t0.Add(30*time.Minute), "kiln node join"); err != nil || tok != first {
		t.Errorf("JoinToken at +30m = %v, %v; want the first token", tok.ID, err)
	}
	// Then a new one is minted, and the first, not expired yet, kept.
	_, second, err := JoinToken(s, c, t0.Add(31*time.Minute), "kiln node join")
	if err != nil || second == first {
		t.Fatalf("JoinToken at +31m = %v, %v; want a new token", second.ID, err)
	}
	if stored, err := Load(s, "prod"); err != nil || len(stored.BootstrapTokens) != 2 {
		t.Errorf("stored tokens at +31m: %+v, %v; want the first and the second", stored.BootstrapTokens, err)
	}
	// Once expired, it is dropped with the next mint.
	if _, _, err := JoinToken(s, c, t0.Add(2*time.Hour), "kiln node join"); err != nil {
		t.Fatal(err)
	}
	stored, err = Load(s, "prod")
	if err != nil || len(stored.BootstrapTokens) != 1 || stored.BootstrapTokens[0] == first || stored.BootstrapTokens[0] == second {
		t.Errorf("stored tokens after both expired: %+v, %v; want only a third", stored.BootstrapTokens, err)
	}

	if _, _, err := JoinToken(statetest.NewEmpty(), c, t0, "kiln node join"); !errors.Is(err, state.ErrNotFound) ||
		!strings.Contains(err.Error(), "kiln init prod") {
		t.Errorf("JoinToken without secrets = %v, want state.ErrNotFound and a hint to run kiln init", err)
	}
}

// TestStoreErrors: a state store that fails is reported with what was being done to which cluster,
// never swallowed.
func TestStoreErrors(t *testing.T) {
	errDisk := errors.New("input/output error")
	broken := statetest.Broken{Err: errDisk}
	c := cluster("prod", func(c *v1alpha1.Cluster) { c.Spec.Security.BootstrapTokenTTL = v1alpha1.Duration{Duration: time.Hour} })
	b := mustGenerate(t, c, seeded(1))
	tests := []struct {
		name    string
		call    func() error
		subject string
	}{
		{name: "save", call: func() error { return Save(broken, "prod", b) }, subject: "secrets: save prod: "},
		{name: "load", call: func() error { _, err := Load(broken, "prod"); return err }, subject: "secrets: load prod: "},
		{name: "update", call: func() error { return Update(broken, "prod", b) }, subject: "secrets: update prod: "},
		{name: "join token", call: func() error { _, _, err := JoinToken(broken, c, t0, "join"); return err },
			subject: "cluster prod: secrets: load prod: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, errDisk) || !strings.Contains(err.Error(), tc.subject+errDisk.Error()) {
				t.Errorf("error = %v, want %q wrapping the store's error", err, tc.subject+errDisk.Error())
			}
		})
	}
}

func TestMachineToken(t *testing.T) {
	c := cluster("prod", func(c *v1alpha1.Cluster) { c.Spec.Security.BootstrapTokenTTL = v1alpha1.Duration{Duration: time.Hour} })
	s := statetest.NewFixed(t, statetest.Values{Bucket: {"prod": mustGenerate(t, c, seeded(1))}})
	rnd := seeded(9)
	mint := func(t *testing.T, machine, pool string, at time.Time) BootstrapToken {
		t.Helper()
		b, tok, err := MachineToken(s, c, machine, pool, at, rnd)
		if err != nil {
			t.Fatalf("MachineToken(%s): %v", machine, err)
		}
		if !slices.Contains(b.BootstrapTokens, tok) {
			t.Errorf("the bundle returned with %s's token does not hold it", machine)
		}
		return tok
	}
	ids := func(t *testing.T) []string {
		t.Helper()
		b, err := Load(s, "prod")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tok := range b.BootstrapTokens {
			out = append(out, tok.Machine+"="+tok.ID)
		}
		return out
	}

	w0 := mint(t, "prod-workers-0", "workers", t0)
	if w0.Machine != "prod-workers-0" || w0.Pool != "workers" || !w0.Issued.Equal(t0) || !w0.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("new token: %#v issued %v; want prod-workers-0's, issued %v, expiring an hour later", w0, w0.Issued, t0)
	}
	// Two machines, two tokens.
	w1 := mint(t, "prod-workers-1", "workers", t0)
	if w1.ID == w0.ID || w1.Secret == w0.Secret {
		t.Errorf("two machines share a token part: %s and %s", w0.ID, w1.ID)
	}
	// A repeated create within half the TTL gets the same token.
	if again := mint(t, "prod-workers-0", "workers", t0.Add(30*time.Minute)); again != w0 {
		t.Errorf("the same machine 30m later got %s, want its token %s", again.ID, w0.ID)
	}
	// Later, a new one; the old one is kept until it is deleted from the cluster and forgotten.
	renewed := mint(t, "prod-workers-0", "workers", t0.Add(31*time.Minute))
	if renewed.ID == w0.ID {
		t.Errorf("the same machine 31m later got its old token %s", w0.ID)
	}
	if again := mint(t, "prod-workers-0", "workers", t0.Add(32*time.Minute)); again != renewed {
		t.Errorf("the same machine 32m later got %s, want its latest token %s", again.ID, renewed.ID)
	}
	if diff := cmp.Diff([]string{"prod-workers-0=" + w0.ID, "prod-workers-1=" + w1.ID, "prod-workers-0=" + renewed.ID}, ids(t)); diff != "" {
		t.Errorf("stored tokens (-want +got):\n%s", diff)
	}
	// A machine's token is never handed out as the shared one, and the shared one is no machine's.
	_, shared, err := JoinToken(s, c, t0.Add(31*time.Minute), "kiln node join")
	if err != nil {
		t.Fatal(err)
	}
	if shared.Machine != "" || shared.ID == w1.ID || shared.ID == renewed.ID {
		t.Errorf("JoinToken handed out %#v, a machine's token", shared)
	}
	// A node made after the first tokens expired gets a fresh one. The expired machines' tokens stay
	// until they are forgotten; an expired shared one goes with the next mint.
	late := mint(t, "prod-workers-2", "workers", t0.Add(3*time.Hour))
	if late.Expired(t0.Add(3*time.Hour)) || late.Expires.Sub(t0.Add(3*time.Hour)) != time.Hour {
		t.Errorf("a token made at +3h expires at %v", late.Expires)
	}
	if diff := cmp.Diff([]string{"prod-workers-0=" + w0.ID, "prod-workers-1=" + w1.ID, "prod-workers-0=" + renewed.ID, "prod-workers-2=" + late.ID}, ids(t)); diff != "" {
		t.Errorf("stored tokens at +3h (-want +got):\n%s", diff)
	}

	if err := ForgetTokens(s, "prod", w0.ID, w1.ID, renewed.ID, late.ID, "absent"); err != nil {
		t.Fatal(err)
	}
	if got := ids(t); len(got) != 0 {
		t.Errorf("after ForgetTokens: %v", got)
	}
	if err := ForgetTokens(statetest.NewEmpty(), "prod"); err != nil {
		t.Errorf("ForgetTokens of nothing: %v", err)
	}

	if _, _, err := MachineToken(s, c, "", "workers", t0, rnd); err == nil {
		t.Error("MachineToken without a machine name succeeded")
	}
	if _, _, err := MachineToken(statetest.NewEmpty(), c, "prod-workers-0", "workers", t0, rnd); !errors.Is(err, state.ErrNotFound) ||
		!strings.Contains(err.Error(), "kiln init prod") {
		t.Errorf("MachineToken without secrets = %v, want state.ErrNotFound and a hint to run kiln init", err)
	}
	if err := ForgetTokens(statetest.Broken{Err: errors.New("disk")}, "prod", "abcdef"); err == nil || !strings.Contains(err.Error(), "secrets: forget tokens of prod: disk") {
		t.Errorf("ForgetTokens on a broken store = %v", err)
	}
}

// TestMachineTokenConcurrent: renders that run at once each get their machine's own token, and none
// is lost.
func TestMachineTokenConcurrent(t *testing.T) {
	c := cluster("prod")
	s := statetest.NewFixed(t, statetest.Values{Bucket: {"prod": mustGenerate(t, c, seeded(1))}})
	const n = 8
	got := make([]BootstrapToken, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, tok, err := MachineToken(s, c, fmt.Sprintf("prod-workers-%d", i), "workers", t0, rand.Reader)
			if err != nil {
				t.Error(err)
			}
			got[i] = tok
		})
	}
	wg.Wait()
	b, err := Load(s, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(b.BootstrapTokens) != n {
		t.Fatalf("%d tokens stored, want %d", len(b.BootstrapTokens), n)
	}
	for i, tok := range got {
		if !slices.Contains(b.BootstrapTokens, tok) || tok.Machine != fmt.Sprintf("prod-workers-%d", i) {
			t.Errorf("machine %d's token %#v is not stored as its own", i, tok)
		}
	}
}

// A bundle stored by an earlier kiln holds the year-long system:masters "clusterInit" certificate: it
// still loads and verifies, and the next Update stores the bundle without it.
func TestLoadEarlierBundle(t *testing.T) {
	b := mustGenerate(t, cluster("prod"), seeded(1))
	old, err := b.ClusterCA.Issue(seeded(2), pki.CertRequest{CommonName: "kiln:cluster-init", Organization: []string{"system:masters"},
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: LeafValidity}, t0)
	if err != nil {
		t.Fatal(err)
	}
	earlier := struct {
		Bundle
		ClusterInit pki.KeyPair `json:"clusterInit"`
	}{Bundle: *b, ClusterInit: *old}
	s := statetest.NewFixed(t, statetest.Values{Bucket: {"prod": earlier}})

	got, err := Load(s, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*b, *got); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	if err := got.Verify(t0); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if _, err := got.AddBootstrapToken(seeded(3), t0, time.Hour, "join"); err != nil {
		t.Fatal(err)
	}
	if err := Update(s, "prod", got); err != nil {
		t.Fatalf("Update: %v", err)
	}
	var raw map[string]json.RawMessage
	if err := s.Get(Bucket, "prod", &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["clusterInit"]; ok {
		t.Error("the stored bundle still holds the earlier clusterInit certificate after Update")
	}
	if len(raw["bootstrapTokens"]) < 10 {
		t.Errorf("the update lost the token: %s", raw["bootstrapTokens"])
	}
}
