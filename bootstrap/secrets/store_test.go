package secrets

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/state"
)

func openStore(t *testing.T) *state.Store {
	t.Helper()
	key := make([]byte, state.KeySize)
	for i := range key {
		key[i] = byte(i)
	}
	s, err := state.Open(filepath.Join(t.TempDir(), "state.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSaveLoad(t *testing.T) {
	s := openStore(t)
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
	s := openStore(t)
	if err := Save(s, "prod", mustGenerate(t, cluster("prod"), seeded(1))); err != nil {
		t.Fatal(err)
	}
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
