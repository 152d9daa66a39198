package kubecfg

import (
	"strings"
	"testing"
)

// The config is checked by the real containerd 2.4 in images/nodeimages (TestRuntime), which reads
// it back with `containerd config dump`; here it is pinned by a golden file.
func TestContainerdConfig(t *testing.T) {
	got := ContainerdConfig()
	golden(t, "containerd-config.toml", got)
	for _, want := range []string{
		"version = 4\n",
		`sandbox = "registry.kiln.internal/pause:` + NodeImageTag + `"`,
		"SystemdCgroup = true\n",
		`bin_dirs = ["/usr/lib/cni"]`,
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
}
