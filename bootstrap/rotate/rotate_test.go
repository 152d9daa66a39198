package rotate

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/bootstrap/secrets"
)

func TestNextStep(t *testing.T) {
	old, next := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	k1, k2 := secrets.NamedKey{Name: "key1", Key: old}, secrets.NamedKey{Name: "key2", Key: next}
	for _, tc := range []struct {
		name  string
		phase secrets.RotationPhase // "" is no rotation
		want  Step
		ok    bool
	}{
		{name: "no rotation", phase: ""},
		{name: "started: add the new key second", phase: secrets.RotationStarted, want: Step{Keys: []secrets.NamedKey{k1, k2}}, ok: true},
		{name: "added: make it first", phase: secrets.RotationNewKeyAdded, want: Step{Keys: []secrets.NamedKey{k2, k1}}, ok: true},
		{name: "primary: rewrite the Secrets", phase: secrets.RotationNewKeyPrimary, want: Step{RewriteSecrets: true}, ok: true},
		{name: "rewritten: drop the old key", phase: secrets.RotationSecretsRewritten, want: Step{Keys: []secrets.NamedKey{k2}}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &secrets.Bundle{EncryptionKey: old}
			if tc.phase != "" {
				b.EncryptionRotation = &secrets.EncryptionRotation{Version: secrets.EncryptionRotationVersion, Phase: tc.phase,
					OldKeyName: "key1", NewKeyName: "key2", NewKey: next}
			}
			got, ok := NextStep(b)
			if ok != tc.ok {
				t.Fatalf("NextStep ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("NextStep (-want +got):\n%s", diff)
			}
		})
	}
}
