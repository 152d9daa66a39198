// Package packertest gives tests a real packer with real plugins: packer and the builders from
// hack/tools.sh (through internal/testtool), kiln's own plugin built from this module's source, all
// installed with `packer plugins install --path` into a plugin directory of the test's own.
package packertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/testtool"
)

// Builders maps a builder plugin's tool name in hack/tools.sh to its source address.
var Builders = map[string]string{
	"packer-plugin-qemu":    "github.com/hashicorp/qemu",
	"packer-plugin-amazon":  "github.com/hashicorp/amazon",
	"packer-plugin-vsphere": "github.com/hashicorp/vsphere",
}

// KilnSource is the source address of kiln's plugin in required_plugins.
const KilnSource = "github.com/kiln-dev/kiln"

// Packer is a packer binary with a plugin directory.
type Packer struct {
	Path      string
	PluginDir string
	// Env is the environment packer runs with: PACKER_PLUGIN_PATH, and a cache and config directory
	// inside the test's temporary directory.
	Env []string
}

// New returns packer with kiln's plugin and the named builder plugins (hack/tools.sh tool names, keys
// of Builders) installed.
func New(t testing.TB, builders ...string) *Packer {
	t.Helper()
	bin := testtool.Tool(t, "packer")
	dir := t.TempDir()
	p := &Packer{Path: bin, PluginDir: filepath.Join(dir, "plugins")}
	p.Env = append(os.Environ(),
		"PACKER_PLUGIN_PATH="+p.PluginDir,
		"PACKER_CACHE_DIR="+filepath.Join(dir, "cache"),
		"PACKER_CONFIG_DIR="+filepath.Join(dir, "config"),
		"CHECKPOINT_DISABLE=1",
	)
	kiln := filepath.Join(dir, "packer-plugin-kiln")
	build := exec.Command("go", "build", "-o", kiln, "github.com/kiln-dev/kiln/cmd/packer-plugin-kiln")
	build.Dir = moduleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build packer-plugin-kiln: %v\n%s", err, out)
	}
	p.Install(t, kiln, KilnSource)
	for _, b := range builders {
		src, ok := Builders[b]
		if !ok {
			t.Fatalf("packertest: unknown builder plugin %q", b)
		}
		p.Install(t, testtool.Tool(t, b), src)
	}
	return p
}

// Install installs a plugin binary under its source address, without the network. hack/tools.sh
// does the same for the baked image (install_packer_plugin): `packer plugins install --path BINARY
// SOURCE` with PACKER_PLUGIN_PATH naming the plugin directory.
func (p *Packer) Install(t testing.TB, binary, source string) {
	t.Helper()
	// packer plugins install --path wants the binary named packer-plugin-NAME.
	name := "packer-plugin-" + source[strings.LastIndex(source, "/")+1:]
	if filepath.Base(binary) != name {
		link := filepath.Join(t.TempDir(), name)
		if err := os.Symlink(binary, link); err != nil {
			t.Fatal(err)
		}
		binary = link
	}
	if out, err := p.Command("plugins", "install", "--path", binary, source).CombinedOutput(); err != nil {
		t.Fatalf("packer plugins install --path %s %s: %v\n%s", binary, source, err, out)
	}
}

// Command returns a packer command with the plugin directory's environment.
func (p *Packer) Command(args ...string) *exec.Cmd {
	cmd := exec.Command(p.Path, args...)
	cmd.Env = p.Env
	return cmd
}

// moduleRoot is the directory of this module's go.mod.
func moduleRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("packertest: no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}
