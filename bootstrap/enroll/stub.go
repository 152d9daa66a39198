package enroll

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/coreos/ignition/v2/config/v3_5/types"
)

// Stub is what travels to a machine before it is trusted: enough to fetch its real config once, and
// nothing that is worth anything after that.
type Stub struct {
	// CA is the PEM of the CA that signs the config server's certificate (the cluster CA): the only
	// one Ignition trusts for the fetch.
	CA []byte
	// Machine is the machine's name, written to /etc/hostname (its real config may write it again).
	Machine string
	// URL is the https URL of the real config (ConfigPath under the config server).
	URL string
	// Token is the ticket's one-time token, sent as "Authorization: Bearer TOKEN".
	Token string
	// ConfigHash is the ticket's ConfigHash: Ignition refuses a config with another hash.
	ConfigHash string
}

// ConfigPath is the path under which a config server serves a machine's config.
func ConfigPath(cluster, machine string) string {
	return "/v1/config/" + url.PathEscape(cluster) + "/" + url.PathEscape(machine)
}

// Render returns the stub as an Ignition config (the newest spec version Ignition accepts), checked
// with Ignition's own parser: it merges the real config from URL, over TLS trusting CA alone, with
// the token, and verifies its hash.
func (s Stub) Render() ([]byte, error) {
	var errs []error
	u, err := url.Parse(s.URL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("url: %w", err))
	case u.Scheme != "https" || u.Host == "":
		errs = append(errs, fmt.Errorf("url %q: not an https URL with a host", s.URL))
	}
	if !strings.Contains(string(s.CA), "-----BEGIN CERTIFICATE-----") {
		errs = append(errs, errors.New("ca: no PEM certificate"))
	}
	if s.Machine == "" || strings.ContainsAny(s.Machine, "\n\x00") {
		errs = append(errs, fmt.Errorf("machine: %q is not a name", s.Machine))
	}
	if !IsToken(s.Token) {
		errs = append(errs, errors.New("token: not an enrollment token"))
	}
	if !strings.HasPrefix(s.ConfigHash, "sha512-") {
		errs = append(errs, fmt.Errorf("configHash %q: not sha512-<hex>", s.ConfigHash))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("enroll: stub for %s: %w", s.Machine, errors.Join(errs...))
	}
	mode, overwrite := 0o644, true
	cfg := types.Config{
		Ignition: types.Ignition{
			Version: types.MaxVersion.String(),
			Config: types.IgnitionConfig{Merge: []types.Resource{{
				Source:       &s.URL,
				HTTPHeaders:  types.HTTPHeaders{{Name: "Authorization", Value: ptr("Bearer " + s.Token)}},
				Verification: types.Verification{Hash: &s.ConfigHash},
			}}},
			Security: types.Security{TLS: types.TLS{CertificateAuthorities: []types.Resource{{
				Source: ptr(dataURL(s.CA)),
			}}}},
		},
		Storage: types.Storage{Files: []types.File{{
			Node: types.Node{Path: "/etc/hostname", Overwrite: &overwrite},
			FileEmbedded1: types.FileEmbedded1{
				Mode:     &mode,
				Contents: types.Resource{Source: ptr(dataURL([]byte(s.Machine + "\n")))},
			},
		}}},
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if _, rpt, err := v3_5.Parse(out); err != nil {
		return nil, fmt.Errorf("enroll: stub for %s: %w: %s", s.Machine, err, rpt.String())
	}
	return out, nil
}

func dataURL(b []byte) string { return "data:;base64," + base64.StdEncoding.EncodeToString(b) }

func ptr[T any](v T) *T { return &v }
