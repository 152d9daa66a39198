package kubecfg

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// EncryptionKeySize is the size in bytes of every key kiln uses or accepts for encryption at rest.
const EncryptionKeySize = 32

// EncryptionKeyName is the name of the one key in a configuration rendered by EncryptionConfig.
const EncryptionKeyName = "key1"

const (
	encryptionAPIVersion = "apiserver.config.k8s.io/v1"
	encryptionKind       = "EncryptionConfiguration"
)

// EncryptionKey is one named key of an EncryptionConfiguration. Secret is EncryptionKeySize bytes.
type EncryptionKey struct {
	Name   string
	Secret []byte
}

// EncryptionConfig renders the EncryptionConfiguration for kube-apiserver's --encryption-provider-config:
// secrets are written with provider (aescbc, aesgcm or secretbox) under one key named EncryptionKeyName,
// and identity comes last so that secrets written before encryption was turned on can still be read.
// key must be EncryptionKeySize bytes. The result holds the key: treat it as a secret.
func EncryptionConfig(provider string, key []byte) ([]byte, error) {
	return EncryptionConfigKeys(provider, []EncryptionKey{{Name: EncryptionKeyName, Secret: key}})
}

// EncryptionConfigKeys is EncryptionConfig with several keys, as during a key rotation: the first
// encrypts what is written, every key decrypts what was stored under its name. Each key must be
// EncryptionKeySize bytes and have a name of its own. The result holds the keys: treat it as a secret.
func EncryptionConfigKeys(provider string, named []EncryptionKey) ([]byte, error) {
	if len(named) == 0 {
		return nil, fmt.Errorf("kubecfg: encryption keys: %w: none", ErrInvalid)
	}
	keys := make([]apiserverv1.Key, 0, len(named))
	seen := map[string]bool{}
	for i, k := range named {
		if len(k.Secret) != EncryptionKeySize {
			return nil, fmt.Errorf("kubecfg: encryption key %d (%q): %w: got %d bytes", i, k.Name, ErrKeySize, len(k.Secret))
		}
		if k.Name == "" {
			return nil, fmt.Errorf("kubecfg: encryption key %d: name: %w: empty", i, ErrInvalid)
		}
		if seen[k.Name] {
			return nil, fmt.Errorf("kubecfg: encryption key %d: %w: %q", i, ErrDuplicateKeyName, k.Name)
		}
		seen[k.Name] = true
		keys = append(keys, apiserverv1.Key{Name: k.Name, Secret: base64.StdEncoding.EncodeToString(k.Secret)})
	}
	var first apiserverv1.ProviderConfiguration
	switch provider {
	case v1alpha1.EncryptionAESCBC:
		first.AESCBC = &apiserverv1.AESConfiguration{Keys: keys}
	case v1alpha1.EncryptionAESGCM:
		first.AESGCM = &apiserverv1.AESConfiguration{Keys: keys}
	case v1alpha1.EncryptionSecretbox:
		first.Secretbox = &apiserverv1.SecretboxConfiguration{Keys: keys}
	default:
		return nil, fmt.Errorf("kubecfg: encryption provider %q: %w (want %s, %s or %s)", provider,
			ErrUnknownProvider, v1alpha1.EncryptionAESCBC, v1alpha1.EncryptionAESGCM, v1alpha1.EncryptionSecretbox)
	}
	cfg := apiserverv1.EncryptionConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: encryptionAPIVersion, Kind: encryptionKind},
		Resources: []apiserverv1.ResourceConfiguration{{
			Resources: []string{"secrets"},
			Providers: []apiserverv1.ProviderConfiguration{
				first,
				{Identity: &apiserverv1.IdentityConfiguration{}},
			},
		}},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubecfg: encryption config: %w", err)
	}
	return b, nil
}

// CheckEncryptionConfig is kiln's check of an EncryptionConfiguration, stricter than kube-apiserver's
// loader, which accepts 16- and 24-byte AES keys, identity as the first provider and a configuration that
// does not mention secrets at all. It runs in addition to the upstream validation, not instead of it.
//
// It rejects unknown and duplicate fields, a missing or wrong apiVersion or kind, a configuration in
// which no entry covers secrets (by name, "*." or "*.*"), identity as the first provider of the entry
// that governs secrets, a provider element that sets other than exactly one provider, and, for aescbc,
// aesgcm and secretbox, an empty key list, a key without a name, a name used twice by providers of one
// type in one entry, a secret that is not base64 or does not decode to exactly EncryptionKeySize bytes.
// It reports every finding, each with its path in the document, joined with errors.Join; each wraps one
// of the package's sentinel errors. Key material never appears in an error.
func CheckEncryptionConfig(data []byte) error {
	var cfg apiserverv1.EncryptionConfiguration
	decodeFindings, err := decodeStrict(data, &cfg)
	if err != nil {
		return fmt.Errorf("kubecfg: encryption config: %w: %w", ErrInvalid, err)
	}
	var findings []error
	add := func(err error) { findings = append(findings, fmt.Errorf("kubecfg: encryption config: %w", err)) }
	for _, f := range decodeFindings {
		add(f)
	}
	if cfg.APIVersion != encryptionAPIVersion {
		add(fmt.Errorf("apiVersion: %w: %q, want %q", ErrInvalid, cfg.APIVersion, encryptionAPIVersion))
	}
	if cfg.Kind != encryptionKind {
		add(fmt.Errorf("kind: %w: %q, want %q", ErrInvalid, cfg.Kind, encryptionKind))
	}
	if len(cfg.Resources) == 0 {
		add(fmt.Errorf("resources: %w: empty", ErrInvalid))
	}

	// kube-apiserver looks up the transformer for secrets by exact name first, then "*." (every core
	// resource), then "*.*" (every resource); the first entry to name each wins.
	exact, core, all := -1, -1, -1
	for i, rc := range cfg.Resources {
		path := fmt.Sprintf("resources[%d]", i)
		if len(rc.Resources) == 0 {
			add(fmt.Errorf("%s.resources: %w: empty", path, ErrInvalid))
		}
		for _, r := range rc.Resources {
			switch r {
			case "secrets", "secrets.":
				exact = firstIndex(exact, i)
			case "*.":
				core = firstIndex(core, i)
			case "*.*":
				all = firstIndex(all, i)
			}
		}
		if len(rc.Providers) == 0 {
			add(fmt.Errorf("%s.providers: %w: empty", path, ErrInvalid))
		}
		names := map[string]map[string]bool{} // provider type -> key names seen in this entry
		for j, p := range rc.Providers {
			ppath := fmt.Sprintf("%s.providers[%d]", path, j)
			set := providerTypes(p)
			if len(set) != 1 {
				add(fmt.Errorf("%s: %w: sets %d providers (%s), want exactly one", ppath, ErrInvalid, len(set), strings.Join(set, ", ")))
			}
			for _, kp := range keyedProviders(p) {
				if names[kp.typ] == nil {
					names[kp.typ] = map[string]bool{}
				}
				for _, err := range checkKeys(ppath+"."+kp.typ, kp.keys, names[kp.typ]) {
					add(err)
				}
			}
		}
	}

	governing := exact
	if governing < 0 {
		governing = core
	}
	if governing < 0 {
		governing = all
	}
	switch {
	case governing < 0:
		add(fmt.Errorf("resources: %w: no entry names secrets, \"*.\" or \"*.*\"", ErrSecretsNotCovered))
	case len(cfg.Resources[governing].Providers) > 0 && cfg.Resources[governing].Providers[0].Identity != nil:
		add(fmt.Errorf("resources[%d].providers[0]: %w: new secrets would be stored in plain text", governing, ErrIdentityFirst))
	}
	return errors.Join(findings...)
}

func firstIndex(cur, i int) int {
	if cur < 0 {
		return i
	}
	return cur
}

// providerTypes lists the providers that one element of a provider list sets.
func providerTypes(p apiserverv1.ProviderConfiguration) []string {
	var set []string
	if p.AESCBC != nil {
		set = append(set, v1alpha1.EncryptionAESCBC)
	}
	if p.AESGCM != nil {
		set = append(set, v1alpha1.EncryptionAESGCM)
	}
	if p.Secretbox != nil {
		set = append(set, v1alpha1.EncryptionSecretbox)
	}
	if p.Identity != nil {
		set = append(set, "identity")
	}
	if p.KMS != nil {
		set = append(set, "kms")
	}
	return set
}

// keyedProvider is the key list of one local-key provider.
type keyedProvider struct {
	typ  string
	keys []apiserverv1.Key
}

// keyedProviders returns the key lists of the local-key providers that p sets, in a fixed order.
func keyedProviders(p apiserverv1.ProviderConfiguration) []keyedProvider {
	var kps []keyedProvider
	if p.AESCBC != nil {
		kps = append(kps, keyedProvider{v1alpha1.EncryptionAESCBC, p.AESCBC.Keys})
	}
	if p.AESGCM != nil {
		kps = append(kps, keyedProvider{v1alpha1.EncryptionAESGCM, p.AESGCM.Keys})
	}
	if p.Secretbox != nil {
		kps = append(kps, keyedProvider{v1alpha1.EncryptionSecretbox, p.Secretbox.Keys})
	}
	return kps
}

// checkKeys checks one provider's keys; seen holds the key names already used by providers of the same
// type in the same resource entry, whose ciphertexts would carry the same prefix.
func checkKeys(path string, keys []apiserverv1.Key, seen map[string]bool) []error {
	var errs []error
	if len(keys) == 0 {
		errs = append(errs, fmt.Errorf("%s.keys: %w: empty", path, ErrInvalid))
	}
	for k, key := range keys {
		kpath := fmt.Sprintf("%s.keys[%d]", path, k)
		switch {
		case key.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: %w: empty", kpath, ErrInvalid))
		case seen[key.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %w: %q", kpath, ErrDuplicateKeyName, key.Name))
		}
		seen[key.Name] = true
		raw, err := base64.StdEncoding.DecodeString(key.Secret)
		switch {
		case key.Secret == "":
			errs = append(errs, fmt.Errorf("%s.secret: %w: empty", kpath, ErrKeySize))
		case err != nil:
			errs = append(errs, fmt.Errorf("%s.secret: %w: not standard base64", kpath, ErrInvalid))
		case len(raw) != EncryptionKeySize:
			errs = append(errs, fmt.Errorf("%s.secret: %w: decodes to %d bytes", kpath, ErrKeySize, len(raw)))
		}
	}
	return errs
}
