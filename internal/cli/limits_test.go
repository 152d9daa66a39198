package cli

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestInputLimits gives the commands that read user files an endless one, and a spec with an absurd
// count: each ends with an error naming the file or field and the limit, within bounded memory.
func TestInputLimits(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(256 << 20))
	const absurd = "apiVersion: kiln.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: x\nspec:\n  provider:\n    name: qemu\n  controlPlane:\n    count: 1\n    image: kiln.qcow2\n  nodePools:\n    - name: workers\n      count: 9223372036854775807\n      image: kiln.qcow2\n  ssh:\n    generate: true\n"
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		args  []string
		want  string
	}{
		{
			name: "validate /dev/zero",
			args: []string{"validate", "-f", "/dev/zero"},
			want: "read cluster spec: /dev/zero: larger than the limit of 1 MiB",
		},
		{
			name: "apply /dev/zero",
			args: []string{"apply", "-f", "/dev/zero"},
			want: "read cluster spec: /dev/zero: larger than the limit of 1 MiB",
		},
		{
			name: "pxe load /dev/zero",
			args: []string{"pxe", "load", "-i", "/dev/zero"},
			want: "read inventory: /dev/zero: larger than the limit of 2 MiB",
		},
		{
			name: "init with authorized keys from /dev/zero",
			args: []string{"init", "demo", "--ssh-authorized-keys", "/dev/zero"},
			want: "--ssh-authorized-keys: /dev/zero: larger than the limit of 1 MiB",
		},
		{
			name: "validate an absurd count",
			setup: func(t *testing.T, dir string) {
				write(t, dir, "huge.yaml", absurd)
			},
			args: []string{"validate", "-f", "huge.yaml"},
			want: "huge.yaml:13:14: spec.nodePools[0].count: must be at most 1000, got 9223372036854775807",
		},
		{
			name: "apply an absurd count",
			setup: func(t *testing.T, dir string) {
				write(t, dir, "huge.yaml", absurd)
			},
			args: []string{"apply", "-f", "huge.yaml"},
			want: "spec.nodePools[0].count: must be at most 1000",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			code, out, errOut := kiln(t, dir, tc.args...)
			runtime.ReadMemStats(&after)
			if code == 0 {
				t.Fatalf("exit 0, want a failure\n%s", out)
			}
			if all := out + errOut; !strings.Contains(all, tc.want) {
				t.Fatalf("output lacks %q:\n%s", tc.want, all)
			}
			if strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, "panic") {
				t.Fatalf("a stack trace:\n%s", errOut)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 128<<20 {
				t.Errorf("allocated %d MiB", grew>>20)
			}
		})
	}
}

// TestPXELoadInsecureBMC loads an inventory whose Redfish BMC is reached over http:// with
// insecure: true: a warning naming the field and line, an error with --strict, and without insecure
// an error that says how to allow it.
func TestPXELoadInsecureBMC(t *testing.T) {
	dir := t.TempDir()
	bmc := "\n    bmc: {driver: redfish, address: http://10.0.0.9, insecure: true}\n"
	write(t, dir, "machines.yaml", strings.TrimSuffix(testInventory, "\n")+bmc)
	code, _, errOut := kiln(t, dir, "pxe", "load", "-i", "machines.yaml")
	want := "machines.yaml:20:54: machines[1].bmc.insecure: warning: machine demo-workers-0: Redfish over http:// (http://10.0.0.9) sends the BMC password in clear"
	if code != 0 || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d, want 0 and %q:\n%s", code, want, errOut)
	}
	if code, _, errOut := kiln(t, dir, "pxe", "load", "-i", "machines.yaml", "--strict"); code == 0 || !strings.Contains(errOut, "1 warnings with --strict") {
		t.Fatalf("--strict: exit %d:\n%s", code, errOut)
	}
	write(t, dir, "plain.yaml", strings.TrimSuffix(testInventory, "\n")+strings.Replace(bmc, ", insecure: true", "", 1))
	if code, _, errOut := kiln(t, dir, "pxe", "load", "-i", "plain.yaml"); code == 0 || !strings.Contains(errOut, "set insecure: true to allow it") {
		t.Fatalf("http:// without insecure: exit %d:\n%s", code, errOut)
	}
}
