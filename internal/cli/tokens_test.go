package cli

import (
	"encoding/base64"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kiln-dev/kiln/bootstrap/lint"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/providertest"
)

// ignitionFile returns the contents of the file at path in an Ignition config; nil if it has none.
func ignitionFile(t *testing.T, config []byte, path string) []byte {
	t.Helper()
	cfg, _, err := v3_5.Parse(config)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range cfg.Storage.Files {
		if f.Path == path && f.Contents.Source != nil {
			data, err := lint.DecodeSource(*f.Contents.Source, f.Contents.Compression)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
	}
	return nil
}

// bootstrapToken is the token of a config's kubelet bootstrap kubeconfig.
func bootstrapToken(t *testing.T, config []byte) string {
	t.Helper()
	kc := ignitionFile(t, config, "/etc/kubernetes/bootstrap-kubelet.conf")
	cfg, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatalf("bootstrap kubeconfig: %v", err)
	}
	for _, a := range cfg.AuthInfos {
		return a.Token
	}
	t.Fatal("the bootstrap kubeconfig has no user")
	return ""
}

// configs records the Ignition config of each machine a Memory creates.
type configs struct {
	mu sync.Mutex
	m  map[string][]byte
}

func recordConfigs(mem *providertest.Memory) *configs {
	c := &configs{m: map[string][]byte{}}
	mem.FailCreate = func(spec provisioner.MachineSpec) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.m[spec.Name] = spec.Ignition
		return nil
	}
	return c
}

func (c *configs) get(name string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[name]
}

// TestApplyGivesEachMachineItsOwnToken: with no API to reach, apply gives every machine a token of
// its own and stores it against the machine; the first control plane carries its token in its
// first-boot manifests; delete forgets them.
func TestApplyGivesEachMachineItsOwnToken(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "own")
	mem := providertest.NewMemory(nil)
	made := recordConfigs(mem)
	addressBookOf(mem).boot(t)
	g := onProvider(addressingMemory{Provider: mem.New(), book: addressBookOf(mem)}) // a qemu spec
	if code, _, errOut := kilnWith(t, dir, g, "apply", "--interval", "1ms", "--timeout", "30s"); code != 0 {
		t.Fatalf("apply: exit %d\n%s", code, errOut)
	} else if !strings.Contains(errOut, "bootstrap token stored; the cluster's API is not reachable yet") {
		t.Errorf("apply does not say where the tokens went:\n%s", errOut)
	}
	stored := map[string]string{} // machine -> token
	for _, tok := range loadBundle(t, dir, "own").BootstrapTokens {
		if tok.Machine == "" {
			t.Errorf("a shared token %s is stored", tok.ID)
			continue
		}
		stored[tok.Machine] = tok.String()
	}
	machines := []string{"own-control-plane-0", "own-workers-0", "own-workers-1"}
	seen := map[string]bool{}
	for _, m := range machines {
		cfg := made.get(m)
		if cfg == nil {
			t.Fatalf("%s was not created", m)
		}
		tok := bootstrapToken(t, cfg)
		if tok != stored[m] {
			t.Errorf("%s joins with a token that is not the one stored for it", m)
		}
		if seen[tok] {
			t.Errorf("%s shares a token", m)
		}
		seen[tok] = true
	}
	if len(stored) != len(machines) {
		t.Errorf("%d tokens stored for %d machines", len(stored), len(machines))
	}
	manifests := string(ignitionFile(t, made.get("own-control-plane-0"), "/etc/kubernetes/kiln/20-bootstrap-tokens.yaml"))
	cp0 := stored["own-control-plane-0"]
	if !strings.Contains(manifests, "token-id: "+b64(cp0[:6])) {
		t.Errorf("the first control plane's first-boot manifests lack its token:\n%s", manifests)
	}

	if code, _, errOut := kilnWith(t, dir, g, "delete", "--yes"); code != 0 {
		t.Fatalf("delete: exit %d\n%s", code, errOut)
	}
	if left := loadBundle(t, dir, "own").BootstrapTokens; len(left) != 0 {
		t.Errorf("after delete the store keeps tokens %v", left)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
