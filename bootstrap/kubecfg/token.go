package kubecfg

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// BootstrapTokenExtraGroup is the extra group of kiln's node-join tokens (auth-extra-groups); bootstrap
// tokens are always in BootstrappersGroup as well.
const BootstrapTokenExtraGroup = "system:bootstrappers:kiln:default-node-token"

var (
	tokenIDRe     = regexp.MustCompile(`^[a-z0-9]{6}$`)
	tokenSecretRe = regexp.MustCompile(`^[a-z0-9]{16}$`)
)

// BootstrapTokenSecret renders the kube-system Secret bootstrap-token-<id> of type
// bootstrap.kubernetes.io/token that kube-apiserver's bootstrap token authenticator reads: usable for
// authentication (TLS bootstrap) and for signing the cluster-info ConfigMap, in the extra group
// BootstrapTokenExtraGroup, expiring at expires (RFC 3339, UTC), after which the token cleaner deletes it.
// id is 6 and secret 16 characters of [a-z0-9]; expires must be set. The result holds the token: treat it
// as a secret.
func BootstrapTokenSecret(id, secret string, expires time.Time, description string) ([]byte, error) {
	var errs []error
	if !tokenIDRe.MatchString(id) {
		errs = append(errs, fmt.Errorf("kubecfg: bootstrap token id %q: %w: want 6 characters of [a-z0-9]", id, ErrInvalid))
	}
	if !tokenSecretRe.MatchString(secret) {
		// The secret itself stays out of the message.
		errs = append(errs, fmt.Errorf("kubecfg: bootstrap token %q secret: %w: want 16 characters of [a-z0-9]", id, ErrInvalid))
	}
	if expires.IsZero() {
		errs = append(errs, fmt.Errorf("kubecfg: bootstrap token %q expiration: %w: not set", id, ErrInvalid))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	data := map[string][]byte{
		"token-id":                       []byte(id),
		"token-secret":                   []byte(secret),
		"expiration":                     []byte(expires.UTC().Format(time.RFC3339)),
		"usage-bootstrap-authentication": []byte("true"),
		"usage-bootstrap-signing":        []byte("true"),
		"auth-extra-groups":              []byte(BootstrapTokenExtraGroup),
	}
	if description != "" {
		data["description"] = []byte(description)
	}
	s := corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id, Namespace: metav1.NamespaceSystem},
		Type:       corev1.SecretTypeBootstrapToken,
		Data:       data,
	}
	b, err := yaml.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("kubecfg: bootstrap token %q: %w", id, err)
	}
	return b, nil
}
