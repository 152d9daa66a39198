package pxe

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/internal/golden"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func testInventory(t testing.TB) *Inventory {
	t.Helper()
	data, err := os.ReadFile("testdata/machines.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := DecodeInventory(data, "machines.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestDecodeInventory(t *testing.T) {
	inv := testInventory(t)
	if len(inv.Machines) != 4 || len(inv.Groups) != 3 || len(inv.Profiles) != 2 {
		t.Fatalf("decoded %d machines %d groups %d profiles", len(inv.Machines), len(inv.Groups), len(inv.Profiles))
	}
	m, ok := inv.Lookup("52:54:00:00:00:02")
	if !ok || m.Name != "demo-workers-0" || m.MAC != "52:54:00:00:00:02" {
		t.Fatalf("dash MAC not normalised: %+v", m)
	}
	cp, _ := inv.Lookup("52-54-00-00-00-01")
	if cp.Pool != v1alpha1.RoleControlPlane || cp.UUID != "6a1e8e43-0000-4000-8000-000000000001" {
		t.Fatalf("control plane defaults: %+v", cp)
	}
	for _, q := range []string{"demo-workers-0", "52-54-00-00-00-02", "52:54:00:00:00:02"} {
		if m, ok := inv.Find(q); !ok || m.Name != "demo-workers-0" {
			t.Errorf("Find(%q) = %+v, %v", q, m, ok)
		}
	}
	if m, ok := inv.Find("demo-workers-9"); ok {
		t.Errorf("Find of a machine not in the inventory = %+v", m)
	}
}

func TestDecodeInventoryErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{file: "invalid.yaml", want: []string{
			`invalid.yaml:1:1: apiVersion: is "kiln.dev/v1alpha2", want "kiln.dev/v1alpha1"`,
			`invalid.yaml:5:5: profiles[0].kernel: "../etc/passwd" climbs out of the assets directory`,
			`invalid.yaml:6:27: profiles[0].args[1]: "a b": one argument`,
			`invalid.yaml:6:34: profiles[0].args[2]: ignition.config.url is set by kiln`,
			`invalid.yaml:9:5: groups[0].profile: no profile named "nope"`,
			`invalid.yaml:11:5: machines[0].name: "Bad_Name" is not a lower-case DNS label`,
			`invalid.yaml:12:5: machines[0].mac: "not-a-mac" is not an Ethernet MAC address`,
			`invalid.yaml:13:5: machines[0].role: "builder": want control-plane or worker`,
			`invalid.yaml:14:5: machines[1].pool: a worker needs its node pool`,
			`invalid.yaml:17:5: machines[2].name: duplicate machine name "w1"`,
			`invalid.yaml:18:5: machines[2].mac: duplicate MAC 52:54:00:00:00:03`,
			`invalid.yaml:19:5: machines[2].uuid: "1234" is not a UUID`,
			`invalid.yaml:24:7: machines[2].bmc.address: credentials do not belong in the URL`,
		}},
		{file: "unknown-field.yaml", want: []string{"unknown-field.yaml: yaml: unmarshal errors:;  line 8: field colour not found"}},
		{file: "duplicate-key.yaml", want: []string{`duplicate-key.yaml: yaml: unmarshal errors:;  line 6: mapping key "mac" already defined at line 5`}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile("testdata/inventory/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = DecodeInventory(data, tc.file)
			if err == nil {
				t.Fatal("decoded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
	if _, err := DecodeInventory(nil, "empty.yaml"); err == nil || !strings.Contains(err.Error(), "empty.yaml: empty inventory") {
		t.Errorf("empty: %v", err)
	}
}

func TestMatch(t *testing.T) {
	inv := testInventory(t)
	tests := []struct {
		mac         string
		wantGroup   string
		wantProfile string
	}{
		{mac: "52:54:00:00:00:01", wantGroup: "control-plane", wantProfile: "debian"},
		{mac: "52:54:00:00:00:02", wantGroup: "workers", wantProfile: "debian"},
		// Both worker groups match; the one with more terms wins.
		{mac: "52:54:00:00:00:03", wantGroup: "gpu-workers", wantProfile: "debian-gpu"},
		// A worker of the spare pool matches the workers group (role only).
		{mac: "52:54:00:00:00:04", wantGroup: "workers", wantProfile: "debian"},
	}
	for _, tc := range tests {
		t.Run(tc.mac, func(t *testing.T) {
			m, _ := inv.Lookup(tc.mac)
			g, p, ok := inv.Match(m, Identity{MAC: tc.mac})
			if !ok || g.Name != tc.wantGroup || p.Name != tc.wantProfile {
				t.Fatalf("matched %v %v %v", g, p, ok)
			}
		})
	}
	// No default: without groups nothing matches.
	empty := &Inventory{Machines: inv.Machines}
	if _, _, ok := empty.Match(&inv.Machines[0], Identity{}); ok {
		t.Fatal("matched without groups")
	}
	// Selector on UUID and hostname, as the machine reports them.
	byID := &Inventory{Profiles: inv.Profiles, Groups: []Group{{Name: "h", Profile: "debian", Selector: Selector{Hostname: "node7", UUID: "abc"}}}}
	if _, _, ok := byID.Match(&inv.Machines[1], Identity{Hostname: "node7", UUID: "abc"}); !ok {
		t.Fatal("hostname+uuid selector did not match")
	}
	if _, _, ok := byID.Match(&inv.Machines[1], Identity{Hostname: "node8", UUID: "abc"}); ok {
		t.Fatal("hostname selector matched another host")
	}
}

// FuzzMatch checks that decoding never panics and that whatever decodes gives each machine a profile
// that exists and a group whose every term matches it.
func FuzzMatch(f *testing.F) {
	data, err := os.ReadFile("testdata/machines.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data, "52:54:00:00:00:03", "node", "6a1e8e43-0000-4000-8000-000000000001")
	f.Add([]byte("apiVersion: kiln.dev/v1alpha1\nkind: MachineInventory\nmachines: []\n"), "", "", "")
	f.Fuzz(func(t *testing.T, data []byte, mac, host, uuid string) {
		inv, err := DecodeInventory(data, "fuzz.yaml")
		if err != nil {
			return
		}
		for i := range inv.Machines {
			m := &inv.Machines[i]
			g, p, ok := inv.Match(m, Identity{MAC: mac, Hostname: host, UUID: uuid})
			if !ok {
				continue
			}
			if p.Name != g.Profile {
				t.Fatalf("group %s points to %s, got profile %s", g.Name, g.Profile, p.Name)
			}
			if g.Selector.Role != "" && g.Selector.Role != m.Role {
				t.Fatalf("group %s for role %s matched a %s", g.Name, g.Selector.Role, m.Role)
			}
			for k, v := range g.Selector.Labels {
				if m.Labels[k] != v {
					t.Fatalf("group %s needs %s=%s, machine has %q", g.Name, k, v, m.Labels[k])
				}
			}
			script := Script("http://kiln", m, p, exampleToken)
			if !strings.HasPrefix(script, "#!ipxe\n") || strings.Count(script, "ignition.config.url=") != 1 {
				t.Fatalf("script:\n%s", script)
			}
		}
	})
}

// exampleToken has the form of an enrollment token (bootstrap/enroll).
const exampleToken = "kiln-enroll-v1.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

func TestScriptsGolden(t *testing.T) {
	inv := testInventory(t)
	for _, mac := range []string{"52:54:00:00:00:01", "52:54:00:00:00:03"} {
		m, _ := inv.Lookup(mac)
		_, p, _ := inv.Match(m, Identity{MAC: mac})
		golden.Check(t, *update, "scripts/"+m.Name+".ipxe", []byte(Script("http://10.77.0.1:8080", m, p, exampleToken)))
	}
	golden.Check(t, *update, "scripts/boot.ipxe", []byte(ChainScript("http://10.77.0.1:8080")))
	golden.Check(t, *update, "scripts/no-boot.ipxe", []byte(NoBootScript))
}
