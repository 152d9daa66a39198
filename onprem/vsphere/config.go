package vsphere

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/vmware/govmomi/vim25/soap"
	utilwait "k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-dev/kiln/api/v1alpha1"
)

// Config is where and as whom the provider works: the cluster spec's vsphere section plus the
// credentials, which never come from the spec.
type Config struct {
	// VSphereProvider is the spec's provider.vsphere: server, datacenter, cluster, resource pool,
	// folder, datastore, port group, linked clones. Folder is the VM folder every machine lives in
	// (an inventory path such as "/DC0/vm/kiln", or one relative to the datacenter's VM folder);
	// empty means the datacenter's VM folder.
	v1alpha1.VSphereProvider
	// Username and Password log in to vCenter. The password never appears in errors, logs or in
	// the Config's own formatting.
	Username string
	Password string
	// Insecure skips verifying vCenter's TLS certificate. Prefer Thumbprint or CAFile.
	Insecure bool
	// Thumbprint is the SHA-256 (or SHA-1) thumbprint ("AB:CD:...", colons and case optional) of
	// vCenter's certificate to trust; see NormalizeThumbprint.
	Thumbprint string
	// CAFile is a PEM file of CA certificates to trust besides the system's.
	CAFile string
	// Retry bounds the retries of clone and power-on tasks that fail with a transient fault.
	Retry Retry
}

// Retry is an exponential backoff with jitter: attempt n (from 1) waits a random duration in
// [d/2, d) with d = min(Initial * 2^(n-1), Max) before attempt n+1.
type Retry struct {
	// Attempts in all, the first included. Defaults to 5.
	Attempts int
	// Initial delay. Defaults to 1s.
	Initial time.Duration
	// Max delay between two attempts. Defaults to 30s.
	Max time.Duration
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 5
	}
	if r.Initial <= 0 {
		r.Initial = time.Second
	}
	if r.Max <= 0 {
		r.Max = 30 * time.Second
	}
	r.Max = max(r.Max, r.Initial)
	return r
}

// backoff is r as a wait.Backoff: the base duration d/2 jittered by a factor of 1 is a random
// duration in [d/2, d), and the cap stops the doubling at Max. retryDo counts the Attempts; Steps
// only keeps the doubling going until the cap.
func (r Retry) backoff() utilwait.Backoff {
	return utilwait.Backoff{Duration: r.Initial / 2, Factor: 2, Jitter: 1, Steps: math.MaxInt32, Cap: r.Max / 2}
}

// delay is the wait after failed attempt n (from 1), as retryDo's backoff steps it.
func (r Retry) delay(n int) time.Duration {
	next := r.backoff().DelayFunc()
	var d time.Duration
	for range n {
		d = next()
	}
	return d
}

// String describes c without its password.
func (c Config) String() string {
	pw := ""
	if c.Password != "" {
		pw = "[redacted]"
	}
	return fmt.Sprintf("vsphere.Config{Server:%q Datacenter:%q Cluster:%q ResourcePool:%q Folder:%q Datastore:%q Network:%q LinkedClone:%t Username:%q Password:%q Insecure:%t Thumbprint:%q CAFile:%q}",
		c.Server, c.Datacenter, c.Cluster, c.ResourcePool, c.Folder, c.Datastore, c.Network, c.LinkedClone,
		c.Username, pw, c.Insecure, c.Thumbprint, c.CAFile)
}

// Format prints String for every verb, %#v included, so that no formatting prints the password.
func (c Config) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue logs c without its password.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// serverURL checks the config and returns vCenter's SDK URL, without credentials.
func (c Config) serverURL() (*url.URL, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("vsphere: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalidConfig))
	}
	for _, f := range []struct{ field, value string }{
		{"server", c.Server},
		{"datacenter", c.Datacenter},
		{"datastore", c.Datastore},
		{"network", c.Network},
		{"username", c.Username},
	} {
		if strings.TrimSpace(f.value) == "" {
			bad(f.field, "is required")
		}
	}
	if c.Cluster != "" && c.ResourcePool != "" {
		bad("resourcePool", "set either cluster or resourcePool, not both")
	}
	var u *url.URL
	if c.Server != "" {
		// url errors quote the input, which may hold a password: never wrap them.
		raw, err := url.Parse(withScheme(c.Server))
		switch {
		case err != nil || raw.Host == "":
			bad("server", "not a URL or host name")
		case raw.User != nil:
			bad("server", "holds credentials: give them as username and password instead")
		case raw.Scheme != "https" && raw.Scheme != "http":
			bad("server", "scheme %q is not https", raw.Scheme)
		default:
			u, err = soap.ParseURL(raw.String())
			if err != nil {
				bad("server", "not a URL or host name")
			} else {
				u.User = nil
			}
		}
	}
	if c.Thumbprint != "" {
		if _, err := NormalizeThumbprint(c.Thumbprint); err != nil {
			bad("thumbprint", "%s", err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return u, nil
}

func withScheme(s string) string {
	if strings.Contains(s, "://") {
		return s
	}
	return "https://" + s
}
