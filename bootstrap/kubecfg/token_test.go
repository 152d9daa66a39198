package kubecfg

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestBootstrapTokenSecret(t *testing.T) {
	expires := time.Date(2026, 11, 26, 9, 30, 0, 0, time.FixedZone("CET", 3600))
	data, err := BootstrapTokenSecret("abcdef", "0123456789abcdef", expires, "kiln node join")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "bootstrap-token-secret.yaml", data)

	var s corev1.Secret
	strict(t, data, &s)
	if s.APIVersion != "v1" || s.Kind != "Secret" || s.Name != "bootstrap-token-abcdef" || s.Namespace != "kube-system" {
		t.Errorf("got %s %s %s/%s, want v1 Secret kube-system/bootstrap-token-abcdef", s.APIVersion, s.Kind, s.Namespace, s.Name)
	}
	if s.Type != "bootstrap.kubernetes.io/token" {
		t.Errorf("type = %q", s.Type)
	}
	got := map[string]string{}
	for k, v := range s.Data {
		got[k] = string(v)
	}
	want := map[string]string{
		"token-id":                       "abcdef",
		"token-secret":                   "0123456789abcdef",
		"expiration":                     "2026-11-26T08:30:00Z",
		"usage-bootstrap-authentication": "true",
		"usage-bootstrap-signing":        "true",
		"auth-extra-groups":              "system:bootstrappers:kiln:default-node-token",
		"description":                    "kiln node join",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("data (-want +got):\n%s", diff)
	}
	if _, err := time.Parse(time.RFC3339, got["expiration"]); err != nil {
		t.Errorf("expiration: %v", err)
	}
}

func TestBootstrapTokenSecretNoDescription(t *testing.T) {
	data, err := BootstrapTokenSecret("abcdef", "0123456789abcdef", time.Unix(1e9, 0), "")
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	strict(t, data, &s)
	if _, ok := s.Data["description"]; ok {
		t.Error("description is set")
	}
}

func TestBootstrapTokenSecretRejects(t *testing.T) {
	const secret = "0123456789abcdef"
	exp := time.Unix(1e9, 0)
	for _, tc := range []struct {
		name       string
		id, secret string
		expires    time.Time
		want       []string
	}{
		{name: "short id", id: "abc", secret: secret, expires: exp, want: []string{`token id "abc"`}},
		{name: "upper case id", id: "ABCDEF", secret: secret, expires: exp, want: []string{`token id "ABCDEF"`}},
		{name: "short secret", id: "abcdef", secret: "0123", expires: exp, want: []string{`token "abcdef" secret`}},
		{name: "secret with a dot", id: "abcdef", secret: "0123456789.bcdef", expires: exp, want: []string{`token "abcdef" secret`}},
		{name: "no expiration", id: "abcdef", secret: secret, want: []string{"expiration: invalid: not set"}},
		{name: "everything", id: "", secret: "Secret-Value-999", want: []string{"token id", "secret", "expiration"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := BootstrapTokenSecret(tc.id, tc.secret, tc.expires, "")
			if data != nil {
				t.Errorf("data = %q, want nil", data)
			}
			checkFindings(t, err, tc.want)
			if err != nil && len(tc.secret) > 4 && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("err shows the secret: %v", err)
			}
		})
	}
}

func TestNewBootstrapTokenSecret(t *testing.T) {
	expires := time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC)
	s, err := NewBootstrapTokenSecret(BootstrapToken{
		ID: "abcdef", Secret: "0123456789abcdef", Expires: expires, Description: "kiln: joins machine demo-workers-0",
		ExtraGroups: []string{BootstrapTokenExtraGroup, "system:bootstrappers:kiln:workers"},
		Labels:      map[string]string{"kiln.dev/cluster": "demo", "kiln.dev/machine": "demo-workers-0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, v := range s.Data {
		got[k] = string(v)
	}
	want := map[string]string{
		"token-id":                       "abcdef",
		"token-secret":                   "0123456789abcdef",
		"expiration":                     "2026-11-26T09:30:00Z",
		"usage-bootstrap-authentication": "true",
		"auth-extra-groups":              "system:bootstrappers:kiln:default-node-token,system:bootstrappers:kiln:workers",
		"description":                    "kiln: joins machine demo-workers-0",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("data (-want +got):\n%s", diff)
	}
	if s.Name != "bootstrap-token-abcdef" || s.Namespace != "kube-system" || s.Type != corev1.SecretTypeBootstrapToken || s.Labels["kiln.dev/machine"] != "demo-workers-0" {
		t.Errorf("got %s/%s of type %s with labels %v", s.Namespace, s.Name, s.Type, s.Labels)
	}

	_, err = NewBootstrapTokenSecret(BootstrapToken{
		ID: "abcdef", Secret: "0123456789abcdef", Expires: expires,
		ExtraGroups: []string{"kiln:workers", "system:bootstrappers:Workers"},
		Labels:      map[string]string{"kiln.dev/machine": "not a label value"},
	})
	checkFindings(t, err, []string{`extra group "kiln:workers"`, `extra group "system:bootstrappers:Workers"`, "label kiln.dev/machine=not a label value"})
}
