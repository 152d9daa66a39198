package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/strictyaml"
)

// TestValidateMetalInventory: kiln validate of a metal cluster checks its machine inventory too, and
// reports each machine whose BMC is reached insecurely as a warning naming the machine, the field,
// the line and column; --strict makes them errors.
func TestValidateMetalInventory(t *testing.T) {
	const cpBMC = "    role: control-plane\n"           // line 14: cp-0's bmc goes after it, on line 15
	const wBMC = "    labels: {rack: r1}\n"             // the worker's, after its last line
	const ipmiWhy = "IPMI (v2.0, lanplus) hands a hash" // the start of the IPMI warning
	inventory := func(cp, w string) string {
		inv := strings.Replace(testInventory, cpBMC, cpBMC+cp, 1)
		return strings.Replace(inv, wBMC, wBMC+w, 1)
	}
	for _, tc := range []struct {
		name      string
		spec      func(string) string // edits cluster.yaml
		file      string              // where the inventory is written; "" for none
		inventory string
		strict    bool
		wantCode  int
		want      []string // lines of the output, in order
	}{
		{
			name: "no BMC", file: "machines.yaml", inventory: testInventory,
			want: []string{"cluster.yaml: valid", "machines.yaml: valid"},
		},
		{
			name: "redfish over https", file: "machines.yaml",
			inventory: inventory("    bmc: {driver: redfish, address: https://bmc-0.example}\n", ""),
			want:      []string{"cluster.yaml: valid", "machines.yaml: valid"},
		},
		{
			name: "redfish over http with insecure: a warning", file: "machines.yaml",
			inventory: inventory("    bmc: {driver: redfish, address: http://bmc-0.example, insecure: true}\n", ""),
			want: []string{"cluster.yaml: valid",
				"machines.yaml:15:59: machines[0].bmc.insecure: warning: machine demo-control-plane-0: Redfish over http:// (http://bmc-0.example) sends the BMC password in clear",
				"machines.yaml: valid"},
		},
		{
			name: "redfish over http with insecure, strict: an error", file: "machines.yaml", strict: true, wantCode: 1,
			inventory: inventory("    bmc: {driver: redfish, address: http://bmc-0.example, insecure: true}\n", ""),
			want: []string{"cluster.yaml: valid",
				"machines.yaml:15:59: machines[0].bmc.insecure: warning: machine demo-control-plane-0: Redfish over http:// (http://bmc-0.example) sends the BMC password in clear"},
		},
		{
			name: "unverified TLS and IPMI: one warning each, by machine", file: "machines.yaml",
			inventory: inventory("    bmc: {driver: redfish, address: https://bmc-0.example, insecure: true}\n",
				"    bmc: {driver: ipmi, address: bmc-1.example}\n"),
			want: []string{"cluster.yaml: valid",
				"machines.yaml:15:60: machines[0].bmc.insecure: warning: machine demo-control-plane-0: the TLS certificate of its Redfish BMC (https://bmc-0.example) is not verified",
				"machines.yaml:21:11: machines[1].bmc.driver: warning: machine demo-workers-0: " + ipmiWhy,
				"machines.yaml: valid"},
		},
		{
			name: "IPMI, strict", file: "machines.yaml", strict: true, wantCode: 1,
			inventory: inventory("", "    bmc: {driver: ipmi, address: bmc-1.example}\n"),
			want: []string{"cluster.yaml: valid",
				"machines.yaml:20:11: machines[1].bmc.driver: warning: machine demo-workers-0: " + ipmiWhy},
		},
		{
			name: "redfish over http without insecure: an error", file: "machines.yaml", wantCode: 1,
			inventory: inventory("    bmc: {driver: redfish, address: http://bmc-0.example}\n", ""),
			want: []string{"cluster.yaml: valid",
				`machines.yaml:15:28: machines[0].bmc.address: "http://bmc-0.example": Redfish over http:// sends the BMC password in clear: use https://, or set insecure: true to allow it`},
		},
		{
			name: "the spec's inventory path, relative to the spec",
			spec: func(s string) string {
				return strings.Replace(s, "inventory: machines.yaml", "inventory: inv/racks.yaml", 1)
			},
			file:      "inv/racks.yaml",
			inventory: inventory("", "    bmc: {driver: ipmi, address: bmc-1.example}\n"),
			want: []string{"cluster.yaml: valid",
				"inv/racks.yaml:20:11: machines[1].bmc.driver: warning: machine demo-workers-0: " + ipmiWhy,
				"inv/racks.yaml: valid"},
		},
		{
			name: "no inventory yet: a warning",
			want: []string{"cluster.yaml: valid", "machines.yaml: warning: no such file: the inventory of spec.provider.metal.inventory, and its machines' BMCs, are not checked"},
		},
		{
			name: "no inventory yet, strict", strict: true, wantCode: 1,
			want: []string{"cluster.yaml: valid", "machines.yaml: warning: no such file: the inventory of spec.provider.metal.inventory, and its machines' BMCs, are not checked"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mustKiln(t, dir, "init", "demo", "--provider", "metal")
			if tc.spec != nil {
				raw, err := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				write(t, dir, "cluster.yaml", tc.spec(string(raw)))
			}
			if tc.file != "" {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, tc.file)), 0o755); err != nil {
					t.Fatal(err)
				}
				write(t, dir, tc.file, tc.inventory)
			}
			args := []string{"validate", "-f", "cluster.yaml"}
			if tc.strict {
				args = append(args, "--strict")
			}
			code, out, errOut := kiln(t, dir, args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.wantCode, out, errOut)
			}
			got := strings.Split(strings.TrimSpace(out), "\n")
			for i := range got {
				if i < len(tc.want) && strings.HasSuffix(tc.want[i], ipmiWhy) && strings.HasPrefix(got[i], tc.want[i]) {
					got[i] = tc.want[i] // the rest of the IPMI warning is onprem/pxe's to test
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
			if tc.wantCode != 0 && !strings.Contains(errOut, "invalid") {
				t.Errorf("stderr says %q, want the file invalid", errOut)
			}
		})
	}

	// -o json: the inventory's findings with their positions, under inventory.
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo", "--provider", "metal")
	write(t, dir, "machines.yaml", inventory("", "    bmc: {driver: ipmi, address: bmc-1.example}\n"))
	type finding struct {
		Path         string
		Line, Column int
		Severity     string
		Message      string
	}
	var res struct {
		Valid     bool
		Inventory *struct {
			File     string
			Valid    bool
			Findings []finding
		}
	}
	if err := json.Unmarshal([]byte(mustKiln(t, dir, "validate", "-o", "json")), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Valid || res.Inventory == nil || !res.Inventory.Valid || len(res.Inventory.Findings) != 1 {
		t.Fatalf("json: %+v", res)
	}
	f := res.Inventory.Findings[0]
	if !strings.HasPrefix(f.Message, "machine demo-workers-0: "+ipmiWhy) {
		t.Errorf("json message %q", f.Message)
	}
	f.Message = ""
	want := finding{Path: "machines[1].bmc.driver", Line: 20, Column: 11, Severity: strictyaml.SeverityWarning.String()}
	if diff := cmp.Diff(want, f); diff != "" || res.Inventory.File != "machines.yaml" {
		t.Errorf("json finding of %s (-want +got):\n%s", res.Inventory.File, diff)
	}
}
