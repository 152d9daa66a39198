package kubecfg

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/apiserver/pkg/storage/value"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

var secretsGR = schema.GroupResource{Resource: "secrets"}

// loadUpstream loads data with kube-apiserver's own loader, as --encryption-provider-config does.
func loadUpstream(t *testing.T, data []byte) (*encryptionconfig.EncryptionConfiguration, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return encryptionconfig.LoadEncryptionConfig(ctx, writeTemp(t, "encryption-config.yaml", data), false, "kiln-test")
}

func TestEncryptionConfig(t *testing.T) {
	key := testKey(EncryptionKeySize)
	for _, provider := range []string{v1alpha1.EncryptionAESCBC, v1alpha1.EncryptionAESGCM, v1alpha1.EncryptionSecretbox} {
		t.Run(provider, func(t *testing.T) {
			data, err := EncryptionConfig(provider, key)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "encryption-config-"+provider+".yaml", data)

			if err := CheckEncryptionConfig(data); err != nil {
				t.Errorf("CheckEncryptionConfig: %v", err)
			}

			var cfg apiserverv1.EncryptionConfiguration
			strict(t, data, &cfg)
			if len(cfg.Resources) != 1 || strings.Join(cfg.Resources[0].Resources, ",") != "secrets" {
				t.Fatalf("resources = %+v, want one entry for secrets only", cfg.Resources)
			}
			providers := cfg.Resources[0].Providers
			if got := providerTypes(providers[0]); len(got) != 1 || got[0] != provider {
				t.Errorf("first provider = %v, want %s", got, provider)
			}
			if last := providers[len(providers)-1]; last.Identity == nil {
				t.Errorf("last provider = %v, want identity", providerTypes(last))
			}
			keys := keyedProviders(providers[0])[0].keys
			if len(keys) != 1 || keys[0].Name != EncryptionKeyName {
				t.Fatalf("keys = %d, want one named %s", len(keys), EncryptionKeyName)
			}
			if raw, err := base64.StdEncoding.DecodeString(keys[0].Secret); err != nil || !bytes.Equal(raw, key) {
				t.Errorf("key secret does not decode to the key (err %v)", err)
			}

			// kube-apiserver loads it, writes new secrets with the provider and key1, and still reads
			// secrets stored in plain text before encryption was turned on.
			loaded, err := loadUpstream(t, data)
			if err != nil {
				t.Fatalf("LoadEncryptionConfig: %v", err)
			}
			tr, ok := loaded.Transformers[secretsGR]
			if !ok {
				t.Fatalf("no transformer for secrets; have %v", loaded.Transformers)
			}
			ctx := context.Background()
			dataCtx := value.DefaultContext("/registry/secrets/default/s")
			stored, err := tr.TransformToStorage(ctx, []byte("hunter2"), dataCtx)
			if err != nil {
				t.Fatalf("TransformToStorage: %v", err)
			}
			if prefix := fmt.Sprintf("k8s:enc:%s:v1:%s:", provider, EncryptionKeyName); !bytes.HasPrefix(stored, []byte(prefix)) {
				t.Errorf("stored = %q..., want prefix %q", stored[:min(len(stored), 30)], prefix)
			}
			if bytes.Contains(stored, []byte("hunter2")) {
				t.Error("stored value contains the plain text")
			}
			for _, in := range [][]byte{stored, []byte("plain, from before encryption")} {
				out, _, err := tr.TransformFromStorage(ctx, in, dataCtx)
				if err != nil {
					t.Errorf("TransformFromStorage(%.20q): %v", in, err)
				}
				if len(out) == 0 {
					t.Errorf("TransformFromStorage(%.20q) is empty", in)
				}
			}
		})
	}
}

func TestEncryptionConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		name     string
		provider string
		key      []byte
		want     error
	}{
		{name: "16-byte key", provider: v1alpha1.EncryptionAESCBC, key: testKey(16), want: ErrKeySize},
		{name: "24-byte key", provider: v1alpha1.EncryptionAESGCM, key: testKey(24), want: ErrKeySize},
		{name: "no key", provider: v1alpha1.EncryptionSecretbox, key: nil, want: ErrKeySize},
		{name: "identity", provider: "identity", key: testKey(32), want: ErrUnknownProvider},
		{name: "kms", provider: "kms", key: testKey(32), want: ErrUnknownProvider},
		{name: "empty provider", provider: "", key: testKey(32), want: ErrUnknownProvider},
		{name: "upper case", provider: "AESCBC", key: testKey(32), want: ErrUnknownProvider},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := EncryptionConfig(tc.provider, tc.key)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if data != nil {
				t.Errorf("data = %q, want nil", data)
			}
		})
	}
}

// encryptionDoc builds an EncryptionConfiguration document around resource entries.
func encryptionDoc(entries string) []byte {
	return []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n" + entries)
}

func b64(n int) string { return base64.StdEncoding.EncodeToString(testKey(n)) }

func TestCheckEncryptionConfig(t *testing.T) {
	key32, key16, key24 := b64(32), b64(16), b64(24)
	for _, tc := range []struct {
		name string
		data []byte
		// upstreamAccepts is what kube-apiserver's loader does with data.
		upstreamAccepts bool
		// want lists the findings, one sentinel each, in order; empty means data passes.
		want []error
		// wantText appears in the error.
		wantText string
	}{
		{
			name: "generated",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - secretbox: {keys: [{name: key1, secret: ` + key32 + `}]}
  - identity: {}
`),
			upstreamAccepts: true,
		},
		{
			name: "16-byte aescbc key",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - aescbc: {keys: [{name: key1, secret: ` + key16 + `}]}
  - identity: {}
`),
			upstreamAccepts: true,
			want:            []error{ErrKeySize},
			wantText:        "resources[0].providers[0].aescbc.keys[0].secret: encryption key is not 32 bytes: decodes to 16 bytes",
		},
		{
			name: "24-byte aesgcm key",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - aesgcm: {keys: [{name: key1, secret: ` + key24 + `}]}
`),
			upstreamAccepts: true,
			want:            []error{ErrKeySize},
		},
		{
			name: "identity first",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - identity: {}
  - aescbc: {keys: [{name: key1, secret: ` + key32 + `}]}
`),
			upstreamAccepts: true,
			want:            []error{ErrIdentityFirst},
			wantText:        "resources[0].providers[0]: identity is the first provider",
		},
		{
			name: "identity first for all core resources",
			data: encryptionDoc(`- resources: ["*."]
  providers:
  - identity: {}
  - secretbox: {keys: [{name: key1, secret: ` + key32 + `}]}
`),
			upstreamAccepts: true,
			want:            []error{ErrIdentityFirst},
		},
		{
			name: "secrets named before a wildcard that puts identity first",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - secretbox: {keys: [{name: key1, secret: ` + key32 + `}]}
- resources: ["*.*"]
  providers:
  - identity: {}
`),
			upstreamAccepts: true,
		},
		{
			name: "secrets covered by *.*",
			data: encryptionDoc(`- resources: ["*.*"]
  providers:
  - aesgcm: {keys: [{name: key1, secret: ` + key32 + `}]}
  - identity: {}
`),
			upstreamAccepts: true,
		},
		{
			name: "missing secrets resource",
			data: encryptionDoc(`- resources: [configmaps]
  providers:
  - secretbox: {keys: [{name: key1, secret: ` + key32 + `}]}
`),
			upstreamAccepts: true,
			want:            []error{ErrSecretsNotCovered},
		},
		{
			name: "unknown field",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - secretbox: {keys: [{name: key1, secret: ` + key32 + `}], rotate: true}
`),
			upstreamAccepts: false, // kube-apiserver decodes strictly too
			want:            []error{ErrStrict},
			wantText:        `unknown field "resources[0].providers[0].secretbox.rotate"`,
		},
		{
			name: "duplicate field",
			data: encryptionDoc(`- resources: [secrets]
  resources: [configmaps]
  providers:
  - secretbox: {keys: [{name: key1, secret: ` + key32 + `}]}
`),
			upstreamAccepts: false,
			// The later value wins, as in a lenient decoder, and leaves secrets uncovered.
			want: []error{ErrStrict, ErrSecretsNotCovered},
		},
		{
			name: "duplicate key name",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - aescbc: {keys: [{name: key1, secret: ` + key32 + `}, {name: key1, secret: ` + key32 + `}]}
`),
			upstreamAccepts: true,
			want:            []error{ErrDuplicateKeyName},
		},
		{
			name: "duplicate key name across two providers of one type",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - aescbc: {keys: [{name: key1, secret: ` + key32 + `}]}
  - aescbc: {keys: [{name: key1, secret: ` + key32 + `}]}
`),
			upstreamAccepts: true,
			want:            []error{ErrDuplicateKeyName},
			wantText:        "resources[0].providers[1].aescbc.keys[0].name",
		},
		{
			name: "same key name in providers of two types",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - aescbc: {keys: [{name: key1, secret: ` + key32 + `}]}
  - secretbox: {keys: [{name: key1, secret: ` + key32 + `}]}
`),
			upstreamAccepts: true,
		},
		{
			name: "secret not base64",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - secretbox: {keys: [{name: key1, secret: "not base64!"}]}
`),
			upstreamAccepts: false,
			want:            []error{ErrInvalid},
		},
		{
			name: "two providers in one element",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - secretbox: {keys: [{name: key1, secret: ` + key32 + `}]}
    identity: {}
`),
			upstreamAccepts: false,
			want:            []error{ErrInvalid, ErrIdentityFirst},
		},
		{
			name: "no keys",
			data: encryptionDoc(`- resources: [secrets]
  providers:
  - aescbc: {keys: []}
`),
			upstreamAccepts: false,
			want:            []error{ErrInvalid},
		},
		{
			name:            "wrong apiVersion and kind",
			data:            []byte("apiVersion: v1\nkind: ConfigMap\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox: {keys: [{name: key1, secret: " + key32 + "}]}\n"),
			upstreamAccepts: false,
			want:            []error{ErrInvalid, ErrInvalid},
		},
		{
			name: "every finding at once",
			data: encryptionDoc(`- resources: [configmaps]
  extra: 1
  providers:
  - identity: {}
  - aescbc: {keys: [{name: a, secret: ` + key16 + `}, {name: a, secret: ` + key24 + `}]}
`),
			upstreamAccepts: false,
			want:            []error{ErrStrict, ErrKeySize, ErrDuplicateKeyName, ErrKeySize, ErrSecretsNotCovered},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, upstreamErr := loadUpstream(t, tc.data)
			if got := upstreamErr == nil; got != tc.upstreamAccepts {
				t.Errorf("LoadEncryptionConfig accepts = %v, want %v (err %v)", got, tc.upstreamAccepts, upstreamErr)
			}

			err := CheckEncryptionConfig(tc.data)
			var got []error
			if err != nil {
				got = err.(interface{ Unwrap() []error }).Unwrap()
			}
			if len(got) != len(tc.want) {
				t.Fatalf("CheckEncryptionConfig found %d problems, want %d:\n%v", len(got), len(tc.want), err)
			}
			for i := range got {
				if !errors.Is(got[i], tc.want[i]) {
					t.Errorf("finding %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
			if tc.wantText != "" && (err == nil || !strings.Contains(err.Error(), tc.wantText)) {
				t.Errorf("err = %v, want it to contain %q", err, tc.wantText)
			}
			if err != nil && (strings.Contains(err.Error(), key32) || strings.Contains(err.Error(), key16)) {
				t.Errorf("err shows key material: %v", err)
			}
		})
	}
}

func TestCheckEncryptionConfigNotYAML(t *testing.T) {
	for _, data := range []string{"", "- a\n- b\n", "resources: [", "\t{"} {
		if err := CheckEncryptionConfig([]byte(data)); err == nil {
			t.Errorf("CheckEncryptionConfig(%q) = nil, want an error", data)
		}
	}
}

func FuzzCheckEncryptionConfig(f *testing.F) {
	for _, p := range []string{v1alpha1.EncryptionAESCBC, v1alpha1.EncryptionAESGCM, v1alpha1.EncryptionSecretbox} {
		data, err := EncryptionConfig(p, testKey(EncryptionKeySize))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckEncryptionConfig(data)
		if err != nil && !strings.HasPrefix(err.Error(), "kubecfg: encryption config: ") {
			t.Errorf("err = %q, want the kubecfg: encryption config: prefix", err)
		}
	})
}

// TestEncryptionConfigKeys: during a rotation the keys come in the given order, the first encrypts,
// kube-apiserver's own loader accepts the result, and bad key lists are refused.
func TestEncryptionConfigKeys(t *testing.T) {
	k1, k2 := testKey(EncryptionKeySize), bytes.Repeat([]byte{7}, EncryptionKeySize)
	data, err := EncryptionConfigKeys(v1alpha1.EncryptionAESCBC, []EncryptionKey{{Name: "key2", Secret: k2}, {Name: "key1", Secret: k1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckEncryptionConfig(data); err != nil {
		t.Errorf("CheckEncryptionConfig: %v", err)
	}
	if _, err := loadUpstream(t, data); err != nil {
		t.Errorf("kube-apiserver's loader: %v", err)
	}
	var cfg apiserverv1.EncryptionConfiguration
	strict(t, data, &cfg)
	keys := cfg.Resources[0].Providers[0].AESCBC.Keys
	if len(keys) != 2 || keys[0].Name != "key2" || keys[1].Name != "key1" {
		t.Errorf("keys = %v, want key2 then key1", keys)
	}

	for _, tc := range []struct {
		name string
		keys []EncryptionKey
		want error
	}{
		{name: "none", want: ErrInvalid},
		{name: "short", keys: []EncryptionKey{{Name: "key1", Secret: k1[:16]}}, want: ErrKeySize},
		{name: "no name", keys: []EncryptionKey{{Secret: k1}}, want: ErrInvalid},
		{name: "same name", keys: []EncryptionKey{{Name: "key1", Secret: k1}, {Name: "key1", Secret: k2}}, want: ErrDuplicateKeyName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := EncryptionConfigKeys(v1alpha1.EncryptionAESCBC, tc.keys)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(k1)) {
				t.Error("the error shows the key")
			}
		})
	}
}
