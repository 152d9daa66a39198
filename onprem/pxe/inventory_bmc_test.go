package pxe

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/strictyaml"
)

// TestInventoryBMCTransport checks the transport rules of BMCs: Redfish over http:// is an error
// unless insecure: true allows it; insecure: true (over http:// or https://) and IPMI are warnings
// naming the machine, the field, its line and column.
func TestInventoryBMCTransport(t *testing.T) {
	const head = `apiVersion: kiln.dev/v1alpha1
kind: MachineInventory
machines:
  - name: cp-0
    mac: 52:54:00:00:00:01
    role: control-plane
`
	// The BMC line of cp-0 is line 7; a second machine w-0 follows on lines 8 to 12 with its BMC on 12.
	const second = `  - name: w-0
    mac: 52:54:00:00:00:02
    role: worker
    pool: workers
`
	warning := func(path string, line, col int, msg string) strictyaml.Finding {
		return strictyaml.Finding{Path: path, Line: line, Column: col, Severity: strictyaml.SeverityWarning, Message: msg}
	}
	const ipmiWhy = "IPMI (v2.0, lanplus) hands a hash of the BMC password to anyone who asks (RAKP, CVE-2013-4786) " +
		"and never authenticates the BMC: use redfish over https:// where the BMC has it"
	tests := []struct {
		name         string
		bmc, bmc2    string // cp-0's and w-0's bmc lines, if any
		wantErr      []strictyaml.Finding
		wantWarnings []strictyaml.Finding
	}{
		{name: "no bmc"},
		{name: "redfish over https", bmc: "    bmc: {driver: redfish, address: https://bmc-0.example}\n"},
		{
			name: "redfish over http refused",
			bmc:  "    bmc: {driver: redfish, address: http://bmc-0.example}\n",
			wantErr: []strictyaml.Finding{{Path: "machines[0].bmc.address", Line: 7, Column: 28, Message: `"http://bmc-0.example": ` +
				"Redfish over http:// sends the BMC password in clear: use https://, or set insecure: true to allow it"}},
		},
		{
			name:         "redfish over http with insecure",
			bmc:          "    bmc: {driver: redfish, address: http://bmc-0.example, insecure: true}\n",
			wantWarnings: []strictyaml.Finding{warning("machines[0].bmc.insecure", 7, 59, "machine cp-0: Redfish over http:// (http://bmc-0.example) sends the BMC password in clear")},
		},
		{
			name:         "redfish over https without verification",
			bmc:          "    bmc: {driver: redfish, address: https://bmc-0.example, insecure: true}\n",
			wantWarnings: []strictyaml.Finding{warning("machines[0].bmc.insecure", 7, 60, "machine cp-0: the TLS certificate of its Redfish BMC (https://bmc-0.example) is not verified")},
		},
		{
			name:         "ipmi",
			bmc:          "    bmc: {driver: ipmi, address: bmc-0.example:623}\n",
			wantWarnings: []strictyaml.Finding{warning("machines[0].bmc.driver", 7, 11, "machine cp-0: "+ipmiWhy)},
		},
		{
			name: "ipmi in block style, and each machine named",
			bmc:  "    bmc:\n      driver: ipmi\n      address: bmc-0.example\n",
			bmc2: "    bmc: {driver: redfish, address: https://bmc-1.example, insecure: true}\n",
			wantWarnings: []strictyaml.Finding{
				warning("machines[0].bmc.driver", 8, 7, "machine cp-0: "+ipmiWhy),
				warning("machines[1].bmc.insecure", 14, 60, "machine w-0: the TLS certificate of its Redfish BMC (https://bmc-1.example) is not verified"),
			},
		},
		{
			name:    "a bad ipmi address is an error, and still a warning",
			bmc:     "    bmc: {driver: ipmi, address: 'bmc 0'}\n",
			wantErr: []strictyaml.Finding{{Path: "machines[0].bmc.address", Line: 7, Column: 25, Message: `"bmc 0": want host or host:port`}},
			wantWarnings: []strictyaml.Finding{
				warning("machines[0].bmc.driver", 7, 11, "machine cp-0: "+ipmiWhy),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := head + tc.bmc + second + tc.bmc2
			inv, warnings, err := DecodeInventoryFindings([]byte(doc), "machines.yaml")
			var got []strictyaml.Finding
			var serr *strictyaml.Error
			switch {
			case errors.As(err, &serr):
				got = serr.Findings
				if serr.File != "machines.yaml" {
					t.Errorf("the error names %q", serr.File)
				}
			case err != nil:
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantErr, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s\n%s", diff, doc)
			}
			if (err == nil) != (inv != nil) {
				t.Errorf("inventory %v with error %v", inv, err)
			}
			if diff := cmp.Diff(tc.wantWarnings, warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s\n%s", diff, doc)
			}
			for _, w := range warnings {
				if s := w.Format("machines.yaml"); !strings.HasPrefix(s, "machines.yaml:") || !strings.Contains(s, ": warning: machine ") {
					t.Errorf("warning formatted as %q, want FILE:LINE:COL: PATH: warning: machine NAME: ...", s)
				}
			}
		})
	}
}
