package pxe

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestInventoryBMCTransport checks the transport rules of a Redfish BMC: http:// is an error unless
// insecure: true allows it, and insecure: true is a warning naming the field and its line.
func TestInventoryBMCTransport(t *testing.T) {
	base, err := os.ReadFile("testdata/machines.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The first machine's entry ends at its uuid line; a bmc block is added after it.
	const after = "    uuid: 6A1E8E43-0000-4000-8000-000000000001\n"
	if !strings.Contains(string(base), after) {
		t.Fatal("testdata/machines.yaml changed: update the test")
	}
	line := strings.Count(string(base[:strings.Index(string(base), after)+len(after)]), "\n") + 1
	with := func(bmc string) []byte {
		return []byte(strings.Replace(string(base), after, after+bmc, 1))
	}
	tests := []struct {
		name         string
		bmc          string
		wantErr      string
		wantWarnings []string
	}{
		{name: "https", bmc: "    bmc: {driver: redfish, address: https://bmc-0.example}\n"},
		{name: "http refused", bmc: "    bmc: {driver: redfish, address: http://bmc-0.example}\n",
			wantErr: `machines.yaml:%d: machines[0].bmc.address: "http://bmc-0.example": Redfish over http:// sends the BMC password in clear: use https://, or set insecure: true to allow it`},
		{name: "http with insecure", bmc: "    bmc: {driver: redfish, address: http://bmc-0.example, insecure: true}\n",
			wantWarnings: []string{"machines.yaml:%d: machines[0].bmc.insecure: Redfish over http:// (http://bmc-0.example) sends the BMC password in clear"}},
		{name: "https with insecure", bmc: "    bmc: {driver: redfish, address: https://bmc-0.example, insecure: true}\n",
			wantWarnings: []string{"machines.yaml:%d: machines[0].bmc.insecure: the BMC's TLS certificate is not verified"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, warnings, err := DecodeInventoryWarnings(with(tc.bmc), "machines.yaml")
			if tc.wantErr != "" {
				want := strings.ReplaceAll(tc.wantErr, "%d", strconv.Itoa(line))
				if err == nil || err.Error() != want {
					t.Fatalf("err = %v\nwant %s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, w := range tc.wantWarnings {
				want = append(want, strings.ReplaceAll(w, "%d", strconv.Itoa(line)))
			}
			if diff := cmp.Diff(want, warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}
