package secrets

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/state/statetest"
)

func TestNextEncryptionKeyName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{in: "key1", want: "key2"},
		{in: "key9", want: "key10"},
		{in: "key", want: "key-1"},
		{in: "k-41", want: "k-42"},
		{in: "", want: "-1"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := NextEncryptionKeyName(tc.in); got != tc.want || got == tc.in {
				t.Errorf("NextEncryptionKeyName(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestEncryptionRotation walks a rotation through its phases: the keys an API server gets at each,
// refusals to skip or repeat a phase, Update's refusal to change the key behind the rotation's back,
// and the bundle with the new key alone at the end.
func TestEncryptionRotation(t *testing.T) {
	b := mustGenerate(t, cluster("rot"), seeded(1))
	old := bytes.Clone(b.EncryptionKey)
	s := statetest.NewFixed(t, statetest.Values{Bucket: {"rot": b}})
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

	if err := AdvanceEncryptionRotation(s, "rot", RotationStarted); !errors.Is(err, ErrRotationPhase) {
		t.Fatalf("advance without a rotation: %v, want ErrRotationPhase", err)
	}
	r, err := BeginEncryptionRotation(s, "rot", seeded(2), now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != RotationStarted || r.OldKeyName != "key1" || r.NewKeyName != "key2" || len(r.NewKey) != EncryptionKeySize || bytes.Equal(r.NewKey, old) {
		t.Fatalf("begin: %+v", r)
	}
	again, err := BeginEncryptionRotation(s, "rot", seeded(3), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.NewKey, r.NewKey) || !again.Started.Equal(r.Started) {
		t.Fatal("a second begin started another rotation instead of returning the one under way")
	}

	names := func(ks []NamedKey) string {
		var n []string
		for _, k := range ks {
			n = append(n, k.Name)
		}
		return strings.Join(n, ",")
	}
	for _, tc := range []struct {
		from RotationPhase
		keys string // what an API server has at the recorded phase, after the step from `from`
	}{
		{from: RotationStarted, keys: "key1,key2"},
		{from: RotationNewKeyAdded, keys: "key2,key1"},
		{from: RotationNewKeyPrimary, keys: "key2,key1"},
		{from: RotationSecretsRewritten, keys: "key2"},
	} {
		t.Run(string(tc.from), func(t *testing.T) {
			if err := AdvanceEncryptionRotation(s, "rot", tc.from.Next()); !errors.Is(err, ErrRotationPhase) {
				t.Errorf("skipping a phase: %v, want ErrRotationPhase", err)
			}
			loaded, err := Load(s, "rot")
			if err != nil {
				t.Fatal(err)
			}
			loaded.EncryptionKey = r.NewKey
			if err := Update(s, "rot", loaded); !errors.Is(err, ErrKeyMaterialChanged) {
				t.Errorf("Update with another encryption key: %v, want ErrKeyMaterialChanged", err)
			}
			if err := AdvanceEncryptionRotation(s, "rot", tc.from); err != nil {
				t.Fatal(err)
			}
			got, err := Load(s, "rot")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.keys, names(got.EncryptionKeys())); diff != "" {
				t.Errorf("keys at the phase after %s (-want +got):\n%s", tc.from, diff)
			}
			if err := got.Verify(now); err != nil {
				t.Error(err)
			}
		})
	}
	final, err := Load(s, "rot")
	if err != nil {
		t.Fatal(err)
	}
	if final.EncryptionRotation != nil || final.EncryptionKeyName != "key2" || !bytes.Equal(final.EncryptionKey, r.NewKey) {
		t.Errorf("after the rotation: %v, want key2 alone", final)
	}
	if str := fmt.Sprintf("%v %+v %#v", final, final, final); strings.Contains(str, string(r.NewKey)) || strings.Contains(str, base64.StdEncoding.EncodeToString(r.NewKey)) {
		t.Error("String shows the key")
	}
	next, err := BeginEncryptionRotation(s, "rot", seeded(4), now)
	if err != nil {
		t.Fatal(err)
	}
	if next.OldKeyName != "key2" || next.NewKeyName != "key3" {
		t.Errorf("the next rotation goes from %s to %s, want key2 to key3", next.OldKeyName, next.NewKeyName)
	}
}

func TestEncryptionRotationRecordChecked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(r *EncryptionRotation)
	}{
		{name: "version", mutate: func(r *EncryptionRotation) { r.Version = 2 }},
		{name: "phase", mutate: func(r *EncryptionRotation) { r.Phase = "Sideways" }},
		{name: "done is never stored", mutate: func(r *EncryptionRotation) { r.Phase = RotationDone }},
		{name: "key size", mutate: func(r *EncryptionRotation) { r.NewKey = r.NewKey[:16] }},
		{name: "same name", mutate: func(r *EncryptionRotation) { r.NewKeyName = r.OldKeyName }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mustGenerate(t, cluster("rot"), seeded(1))
			s := statetest.NewFixed(t, statetest.Values{Bucket: {"rot": b}})
			if _, err := BeginEncryptionRotation(s, "rot", seeded(2), time.Now()); err != nil {
				t.Fatal(err)
			}
			loaded, err := Load(s, "rot")
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(loaded.EncryptionRotation)
			bad := statetest.NewFixed(t, statetest.Values{Bucket: {"rot": loaded}})
			if err := AdvanceEncryptionRotation(bad, "rot", loaded.EncryptionRotation.Phase); !errors.Is(err, ErrRotationRecord) {
				t.Errorf("advance: %v, want ErrRotationRecord", err)
			}
			if err := loaded.Verify(time.Now()); !errors.Is(err, ErrRotationRecord) {
				t.Errorf("verify: %v, want ErrRotationRecord", err)
			}
		})
	}
}
