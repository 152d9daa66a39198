package metal

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/onprem/pxe"
)

// fakeIPMITool is a BMC behind an ipmitool command line, with state (power and boot device) in files,
// for there is no IPMI BMC here. It answers the ipmitool commands the driver uses as ipmitool prints
// them, checks the password it is given in IPMI_PASSWORD, and logs every command line it gets.
const fakeIPMITool = `#!/bin/sh
dir=$(dirname "$0")
echo "$@" >> "$dir/argv.log"
[ "$IPMI_PASSWORD" = "$(cat "$dir/password")" ] || { echo "Error: Unable to establish IPMI v2 / RMCP+ session" >&2; exit 1; }
while [ $# -gt 0 ] && [ "$1" != chassis ]; do shift; done
case "$2 $3" in
"power status") echo "Chassis Power is $(cat "$dir/power")" ;;
"power on") echo on > "$dir/power"; [ "$(cat "$dir/bootdev")" = pxe ] && echo x >> "$dir/pxeboots"; echo none > "$dir/bootdev"; echo "Chassis Power Control: Up/On" ;;
"power cycle") [ "$(cat "$dir/power")" = on ] || { echo "Set Chassis Power Control to Cycle failed: Command not supported in present state" >&2; exit 1; }
	[ "$(cat "$dir/bootdev")" = pxe ] && echo x >> "$dir/pxeboots"; echo none > "$dir/bootdev"; echo "Chassis Power Control: Cycle" ;;
"power off") echo off > "$dir/power"; echo "Chassis Power Control: Down/Off" ;;
"bootdev pxe") echo pxe > "$dir/bootdev"; echo "Set Boot Device to pxe" ;;
*) echo "unknown command $*" >&2; exit 1 ;;
esac
`

func TestIPMI(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "ipmitool")
	os.WriteFile(tool, []byte(fakeIPMITool), 0o755)
	os.WriteFile(filepath.Join(dir, "password"), []byte("ipmi-Pa55"), 0o600)
	os.WriteFile(filepath.Join(dir, "power"), []byte("off\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bootdev"), []byte("none\n"), 0o644)
	pwFile := filepath.Join(dir, "bmc-password")
	os.WriteFile(pwFile, []byte("ipmi-Pa55\n"), 0o600)
	m := &pxe.Machine{Name: "node0", MAC: "52:54:00:00:00:01", BMC: &pxe.BMC{Driver: "ipmi", Address: "bmc0.example:6230", Username: "admin", PasswordFile: pwFile}}
	power := BMCs{IPMI: &IPMI{Path: tool}}
	ctx := context.Background()
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	// Off: power on into PXE. On: power cycle into PXE.
	for i, want := range []string{"x", "x\nx"} {
		if err := power.BootPXE(ctx, m); err != nil {
			t.Fatalf("BootPXE #%d: %v", i+1, err)
		}
		if read("power") != "on" || read("pxeboots") != want {
			t.Fatalf("after BootPXE #%d: power %s, PXE boots %q", i+1, read("power"), read("pxeboots"))
		}
	}
	if err := power.Off(ctx, m); err != nil || read("power") != "off" {
		t.Fatalf("Off: %v, power %s", err, read("power"))
	}
	argv := read("argv.log")
	if strings.Contains(argv, "ipmi-Pa55") {
		t.Fatalf("the password is on ipmitool's command line:\n%s", argv)
	}
	if !strings.Contains(argv, "-I lanplus -H bmc0.example -p 6230 -U admin -E chassis bootdev pxe") {
		t.Fatalf("command lines:\n%s", argv)
	}
	// A wrong password: the error says what ipmitool said, never the password.
	os.WriteFile(pwFile, []byte("wrong-Pa55\n"), 0o600)
	err := power.BootPXE(ctx, m)
	if err == nil || !strings.Contains(err.Error(), "Unable to establish") || strings.Contains(err.Error(), "Pa55") {
		t.Fatalf("wrong password: %v", err)
	}
}
