package layering

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/kiln-dev/kiln/"

// layers, lowest first. A package may import kiln packages of its own layer or a lower one. The first
// matching prefix places a package; test tooling (see testTooling) sits outside the layers.
var layers = []struct {
	name     string
	prefixes []string
}{
	{"foundation: the spec, the state store, SSH execution", []string{"api/", "state", "sshexec"}},
	// Node agents run on the nodes; rendering (bootstrap) starts them with their units, so it may read
	// their units, paths and flags, and they need nothing of kiln's.
	{"node agents: the services kiln-node runs on a node (pod network, reboot coordinator) and the drain the provisioner shares", []string{"nodeagent/"}},
	// bootstrap/privatenet wraps a node's config with its static address for the providers that give
	// one (qemu, vsphere): rendering, shared, so that no provider imports another.
	{"bootstrap: PKI, secrets, Kubernetes configs, firewall, Butane, rendering", []string{"bootstrap/", "butane", "bootstrap/privatenet"}},
	// provisioner/addrpool (static addresses reserved in the state store) serves several providers:
	// core, so that no provider imports another to share it.
	{"images and the provisioner core", []string{"images/", "provisioner", "provisioner/addrpool"}},
	{"providers and boot services", []string{"provisioner/aws", "onprem/"}},
	{"the command line", []string{"internal/cli"}},
	{"binaries", []string{"cmd/"}},
}

// providers place machines; none imports another.
var providers = []string{"provisioner/aws", "onprem/vsphere", "onprem/qemu", "onprem/metal"}

// testTooling are packages that exist for tests: any test may use them, no binary contains them.
var testTooling = []string{"internal/testtool", "internal/golden", "internal/ignitiontest", "internal/layering",
	"provisioner/providertest", "provisioner/aws/awstest", "bootstrap/controlplane/controlplanetest", "images/packer/packertest", "state/statetest", "sshexec/sshexectest", "onprem/vsphere/vspheretest",
	"nodeagent/rebootlock/rebootlocktest"}

type pkg struct {
	ImportPath string
	Dir        string
	Imports    []string
	Deps       []string
	GoFiles    []string
}

func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "github.com/kiln-dev/kiln/...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		p.ImportPath = strings.TrimPrefix(p.ImportPath, module)
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages; expected the whole module", len(pkgs))
	}
	return pkgs
}

func under(path string, prefixes ...string) bool {
	for _, p := range prefixes {
		if path == strings.TrimSuffix(p, "/") || strings.HasPrefix(path, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
}

// layer returns the index of path's layer: the last layer with a matching prefix, so that
// provisioner/aws is a provider, not the provisioner core. -1: test tooling or unplaced.
func layer(path string) int {
	if under(path, testTooling...) {
		return -1
	}
	l := -1
	for i, ly := range layers {
		if under(path, ly.prefixes...) {
			l = i
		}
	}
	return l
}

func kilnImports(p pkg) []string {
	var out []string
	for _, imp := range p.Imports {
		if strings.HasPrefix(imp, module) {
			out = append(out, strings.TrimPrefix(imp, module))
		}
	}
	return out
}

func TestEveryPackageHasALayer(t *testing.T) {
	for _, p := range list(t) {
		if layer(p.ImportPath) < 0 && !under(p.ImportPath, testTooling...) && !under(p.ImportPath, "e2e") {
			t.Errorf("%s: in no layer; add its prefix to layers (or testTooling) in this test", p.ImportPath)
		}
	}
}

func TestLowerNeverImportsHigher(t *testing.T) {
	for _, p := range list(t) {
		from := layer(p.ImportPath)
		if from < 0 {
			continue
		}
		for _, imp := range kilnImports(p) {
			if to := layer(imp); to > from {
				t.Errorf("%s (%s) imports %s (%s): a lower layer never imports a higher one", p.ImportPath, layers[from].name, imp, layers[to].name)
			}
			if under(imp, testTooling...) {
				t.Errorf("%s imports the test tooling %s outside its tests", p.ImportPath, imp)
			}
		}
	}
}

func TestProvidersDoNotImportEachOther(t *testing.T) {
	for _, p := range list(t) {
		for _, self := range providers {
			if !under(p.ImportPath, self) {
				continue
			}
			for _, imp := range kilnImports(p) {
				for _, other := range providers {
					if other != self && under(imp, other) {
						t.Errorf("provider %s imports provider %s", p.ImportPath, imp)
					}
				}
			}
		}
	}
}

// Nothing under api/, bootstrap/, nodeagent/ or the provisioner core depends, even indirectly, on a
// provider or the CLI; nothing but cmd/kiln imports the CLI.
func TestCoreDependsOnNoProvider(t *testing.T) {
	for _, p := range list(t) {
		core := under(p.ImportPath, "api/", "bootstrap/", "butane", "state", "nodeagent/") ||
			(under(p.ImportPath, "provisioner") && !under(p.ImportPath, "provisioner/aws"))
		for _, dep := range p.Deps {
			if !strings.HasPrefix(dep, module) {
				continue
			}
			dep = strings.TrimPrefix(dep, module)
			if core && (under(dep, providers...) || under(dep, "onprem/", "internal/cli")) {
				t.Errorf("%s depends on %s", p.ImportPath, dep)
			}
			if under(dep, "internal/cli") && p.ImportPath != "cmd/kiln" {
				t.Errorf("%s depends on internal/cli: only cmd/kiln composes the CLI", p.ImportPath)
			}
		}
	}
}

// bootstrap/ asks what a provider does (ignition.Placement), never which one it is: no provider name
// and no spec.provider.name appears in its code.
func TestBootstrapNeverAsksWhichProvider(t *testing.T) {
	names := map[string]bool{"ProviderAWS": true, "ProviderVSphere": true, "ProviderMetal": true, "ProviderQEMU": true}
	fset := token.NewFileSet()
	checked := 0
	for _, p := range list(t) {
		if !under(p.ImportPath, "bootstrap/", "butane") {
			continue
		}
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			file, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			checked++
			ast.Inspect(file, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if names[sel.Sel.Name] {
					t.Errorf("%s: uses %s: ask the placement what the provider does instead", fset.Position(sel.Pos()), sel.Sel.Name)
				}
				if x, ok := sel.X.(*ast.SelectorExpr); ok && sel.Sel.Name == "Name" && x.Sel.Name == "Provider" {
					t.Errorf("%s: reads the provider's name: ask the placement what the provider does instead", fset.Position(sel.Pos()))
				}
				return true
			})
		}
	}
	if checked == 0 {
		t.Fatal("no bootstrap files checked")
	}
}
