package kubecfg

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// BootstrapTokenExtraGroup is the extra group of kiln's node-join tokens (auth-extra-groups); bootstrap
// tokens are always in BootstrappersGroup as well.
const BootstrapTokenExtraGroup = "system:bootstrappers:kiln:default-node-token"

// BootstrapTokenSecretPrefix starts the name of every bootstrap token Secret: bootstrap-token-<id>.
const BootstrapTokenSecretPrefix = "bootstrap-token-"

var (
	tokenIDRe     = regexp.MustCompile(`^[a-z0-9]{6}$`)
	tokenSecretRe = regexp.MustCompile(`^[a-z0-9]{16}$`)
	// extraGroupRe is what kube-apiserver's bootstrap token authenticator accepts as an extra group
	// (k8s.io/cluster-bootstrap's BootstrapGroupPattern).
	extraGroupRe = regexp.MustCompile(`^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$`)
)

// BootstrapToken is a bootstrap token as its Secret holds it.
type BootstrapToken struct {
	// ID is 6 and Secret 16 characters of [a-z0-9].
	ID, Secret string
	// Expires must be set: the token is refused after it, and the token cleaner deletes its Secret.
	Expires     time.Time
	Description string
	// ExtraGroups are the groups besides BootstrappersGroup that the token authenticates in, each
	// system:bootstrappers:...; none for BootstrapTokenExtraGroup alone.
	ExtraGroups []string
	// Signing also lets the token sign the cluster-info ConfigMap (kubeadm's discovery), which kiln's
	// nodes do not use: they carry the CA.
	Signing bool
	// Labels of the Secret, such as the machine the token belongs to.
	Labels map[string]string
}

// BootstrapTokenSecret renders the kube-system Secret bootstrap-token-<id> of type
// bootstrap.kubernetes.io/token that kube-apiserver's bootstrap token authenticator reads: usable for
// authentication (TLS bootstrap) and for signing the cluster-info ConfigMap, in the extra group
// BootstrapTokenExtraGroup, expiring at expires (RFC 3339, UTC), after which the token cleaner deletes it.
// id is 6 and secret 16 characters of [a-z0-9]; expires must be set. The result holds the token: treat it
// as a secret.
func BootstrapTokenSecret(id, secret string, expires time.Time, description string) ([]byte, error) {
	s, err := NewBootstrapTokenSecret(BootstrapToken{ID: id, Secret: secret, Expires: expires, Description: description, Signing: true})
	if err != nil {
		return nil, err
	}
	b, err := yaml.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("kubecfg: bootstrap token %q: %w", id, err)
	}
	return b, nil
}

// NewBootstrapTokenSecret is t's kube-system Secret bootstrap-token-<id>, of type
// bootstrap.kubernetes.io/token, usable for authentication (and for signing if t.Signing), in
// t.ExtraGroups (BootstrapTokenExtraGroup if none), expiring at t.Expires (RFC 3339, UTC). It
// reports every problem of t at once; the token's secret never appears in an error. The result holds
// the token: treat it as a secret.
func NewBootstrapTokenSecret(t BootstrapToken) (*corev1.Secret, error) {
	var errs []error
	if !tokenIDRe.MatchString(t.ID) {
		errs = append(errs, fmt.Errorf("kubecfg: bootstrap token id %q: %w: want 6 characters of [a-z0-9]", t.ID, ErrInvalid))
	}
	if !tokenSecretRe.MatchString(t.Secret) {
		// The secret itself stays out of the message.
		errs = append(errs, fmt.Errorf("kubecfg: bootstrap token %q secret: %w: want 16 characters of [a-z0-9]", t.ID, ErrInvalid))
	}
	if t.Expires.IsZero() {
		errs = append(errs, fmt.Errorf("kubecfg: bootstrap token %q expiration: %w: not set", t.ID, ErrInvalid))
	}
	groups := t.ExtraGroups
	if len(groups) == 0 {
		groups = []string{BootstrapTokenExtraGroup}
	}
	for _, g := range groups {
		if !extraGroupRe.MatchString(g) {
			errs = append(errs, fmt.Errorf("kubecfg: bootstrap token %q extra group %q: %w: want %s", t.ID, g, ErrInvalid, extraGroupRe))
		}
	}
	for k, v := range t.Labels {
		for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			errs = append(errs, fmt.Errorf("kubecfg: bootstrap token %q label %s=%s: %w: %s", t.ID, k, v, ErrInvalid, msg))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	data := map[string][]byte{
		"token-id":                       []byte(t.ID),
		"token-secret":                   []byte(t.Secret),
		"expiration":                     []byte(t.Expires.UTC().Format(time.RFC3339)),
		"usage-bootstrap-authentication": []byte("true"),
		"auth-extra-groups":              []byte(strings.Join(groups, ",")),
	}
	if t.Signing {
		data["usage-bootstrap-signing"] = []byte("true")
	}
	if t.Description != "" {
		data["description"] = []byte(t.Description)
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: BootstrapTokenSecretPrefix + t.ID, Namespace: metav1.NamespaceSystem, Labels: t.Labels},
		Type:       corev1.SecretTypeBootstrapToken,
		Data:       data,
	}, nil
}
