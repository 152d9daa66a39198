// Package inputlimits runs the built kiln binary on endless and oversized input under a hard memory
// limit (RLIMIT_DATA, set by the shell's ulimit -d before kiln starts): each command must end with a
// clear error naming the input and the limit, never be killed, run out of memory or print a stack.
package inputlimits

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api/readlimit"
	"github.com/kiln-dev/kiln/internal/testtool"
)

// memoryLimit is the data segment kiln runs in. kiln itself, before it reads anything, takes about
// 80 MiB; decoding the largest inventory allowed with every entry wrong takes it to about 170 MiB.
const memoryLimit = 256 << 20

var kilnBin string

func TestMain(m *testing.M) { os.Exit(testtool.MainWithKiln(m, &kilnBin)) }

// limited runs kiln with args in dir with its data segment limited to limit bytes, stdin from in.
func limited(t *testing.T, dir string, limit int64, in io.Reader, args ...string) (exit *os.ProcessState, out string) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("sh: %v", err) // every system kiln runs on has one
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	script := `ulimit -d "$1" && shift && exec "$@"`
	cmd := exec.CommandContext(ctx, sh, append([]string{"-c", script, "sh", strconv.FormatInt(limit>>10, 10), kilnBin}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KILN_STATE_DIR="+filepath.Join(dir, "state"), "HOME="+dir)
	cmd.Stdin = in
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("kiln %s: %v\n%s", strings.Join(args, " "), err, buf.String())
	}
	return cmd.ProcessState, buf.String()
}

// endless is an endless YAML list of machines.
type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	var b bytes.Buffer
	for b.Len() < len(p) {
		fmt.Fprintf(&b, "  - name: m%d\n    mac: 52:54:00:00:00:01\n    role: worker\n", e.n)
		e.n++
	}
	return copy(p, b.Bytes()), nil
}

// wrongInventory is an inventory of size bytes at most (and close to it) in which every machine is
// wrong (a worker without its pool): the most findings, and the largest node tree, an inventory
// within the size limit can make.
func wrongInventory(size int) string {
	var b strings.Builder
	b.WriteString("apiVersion: kiln.dev/v1alpha1\nkind: MachineInventory\nmachines:\n")
	for i := 0; ; i++ {
		m := fmt.Sprintf("  - name: m%d\n    mac: 52:54:%02x:%02x:%02x:%02x\n    role: worker\n", i, byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
		if b.Len()+len(m) > size {
			return b.String()
		}
		b.WriteString(m)
	}
}

func TestBoundedMemory(t *testing.T) {
	// The limits come from readlimit: a larger one must keep within the memory limit too.
	const inventoryLimit = readlimit.Inventory
	invLimit, specLimit := readlimit.Size(readlimit.Inventory), readlimit.Size(readlimit.Spec)
	const head = "apiVersion: kiln.dev/v1alpha1\nkind: MachineInventory\n"
	const absurd = "apiVersion: kiln.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: x\nspec:\n  provider:\n    name: qemu\n  controlPlane:\n    count: 1\n    image: kiln.qcow2\n  nodePools:\n    - name: workers\n      count: 9223372036854775807\n      image: kiln.qcow2\n  ssh:\n    generate: true\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		stdin io.Reader
		args  []string
		want  []string // in the output
	}{
		{
			name: "pxe load /dev/zero",
			args: []string{"pxe", "load", "-i", "/dev/zero"},
			want: []string{"kiln: read inventory: /dev/zero: larger than the limit of " + invLimit},
		},
		{
			name:  "pxe load an endless YAML stream",
			stdin: &endless{},
			args:  []string{"pxe", "load", "-i", "/dev/stdin"},
			want:  []string{"kiln: read inventory: /dev/stdin: larger than the limit of " + invLimit},
		},
		{
			name:  "pxe load the largest inventory allowed, every machine wrong",
			files: map[string]string{"machines.yaml": wrongInventory(inventoryLimit)},
			args:  []string{"pxe", "load", "-i", "machines.yaml"},
			want:  []string{"kiln: machines.yaml:4:5: machines[0].pool: a worker needs its node pool", "machines[25000].pool: a worker needs its node pool"},
		},
		{
			name:  "pxe load an inventory one byte too large",
			files: map[string]string{"machines.yaml": strings.Repeat("#", inventoryLimit+1)},
			args:  []string{"pxe", "load", "-i", "machines.yaml"},
			want:  []string{"kiln: read inventory: machines.yaml: larger than the limit of " + invLimit},
		},
		{
			name:  "pxe load nested flow sequences",
			files: map[string]string{"machines.yaml": head + "machines: " + strings.Repeat("[", inventoryLimit-100)},
			args:  []string{"pxe", "load", "-i", "machines.yaml"},
			want:  []string{"kiln: machines.yaml: yaml: ", "max depth"},
		},
		{
			name: "pxe load an alias bomb",
			files: map[string]string{"machines.yaml": head + func() string {
				var b strings.Builder
				b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
				for i := 1; i < 12; i++ {
					fmt.Fprintf(&b, "a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
				}
				return b.String() + "machines: *a11\n"
			}()},
			args: []string{"pxe", "load", "-i", "machines.yaml"},
			want: []string{"kiln: machines.yaml: yaml: "},
		},
		{
			name: "validate /dev/zero",
			args: []string{"validate", "-f", "/dev/zero"},
			want: []string{"kiln: read cluster spec: /dev/zero: larger than the limit of " + specLimit},
		},
		{
			name: "apply /dev/zero",
			args: []string{"apply", "-f", "/dev/zero"},
			want: []string{"kiln: read cluster spec: /dev/zero: larger than the limit of " + specLimit},
		},
		{
			name:  "apply an absurd count",
			files: map[string]string{"huge.yaml": absurd},
			args:  []string{"apply", "-f", "huge.yaml"},
			want:  []string{"huge.yaml:13:14: spec.nodePools[0].count: must be at most 1000, got 9223372036854775807"},
		},
		{
			name: "init with authorized keys from /dev/zero",
			args: []string{"init", "demo", "--ssh-authorized-keys", "/dev/zero"},
			want: []string{"--ssh-authorized-keys: /dev/zero: larger than the limit of " + readlimit.Size(readlimit.Key)},
		},
		{
			name:  "validate a metal cluster whose inventory is endless",
			files: map[string]string{"cluster.yaml": ""}, // written by kiln init, the inventory set to /dev/zero
			args:  []string{"validate", "-f", "cluster.yaml"},
			want:  []string{"/dev/zero: larger than the limit of " + invLimit, "kiln: /dev/zero: invalid (1 finding(s))"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tc.files {
				if name == "cluster.yaml" {
					initMetal(t, dir, "/dev/zero")
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			st, out := limited(t, dir, memoryLimit, tc.stdin, tc.args...)
			t.Logf("exit %d in %s, %s of user time, output %d bytes", st.ExitCode(), time.Since(start).Round(time.Millisecond), st.UserTime().Round(time.Millisecond), len(out))
			ws := st.Sys().(syscall.WaitStatus)
			switch {
			case ws.Signaled():
				t.Fatalf("killed by %v:\n%s", ws.Signal(), tail(out))
			case ws.ExitStatus() != 1:
				t.Fatalf("exit %d, want 1 (an error):\n%s", ws.ExitStatus(), tail(out))
			}
			for _, bad := range []string{"fatal error", "out of memory", "panic", "goroutine "} {
				if strings.Contains(out, bad) {
					t.Fatalf("the output has %q:\n%s", bad, tail(out))
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("the output lacks %q:\n%s", w, tail(out))
				}
			}
		})
	}
}

// TestTheLimitBinds: the limit the test sets is one kiln feels. In a quarter of it kiln cannot even
// start (the Go runtime dies out of memory); in all of it, it does.
func TestTheLimitBinds(t *testing.T) {
	st, out := limited(t, t.TempDir(), memoryLimit/4, nil, "version")
	if st.Success() || strings.HasPrefix(out, "kiln ") {
		t.Fatalf("kiln version in %d MiB: exit %d, want a runtime failure:\n%s", memoryLimit/4>>20, st.ExitCode(), tail(out))
	}
	if st, out := limited(t, t.TempDir(), memoryLimit, nil, "version"); !st.Success() {
		t.Fatalf("kiln version in %d MiB: exit %d:\n%s", memoryLimit>>20, st.ExitCode(), tail(out))
	}
}

// initMetal writes a metal cluster's spec into dir whose inventory is inventory.
func initMetal(t *testing.T, dir, inventory string) {
	t.Helper()
	init := exec.Command(kilnBin, "init", "demo", "--provider", "metal")
	init.Dir = dir
	init.Env = append(os.Environ(), "KILN_STATE_DIR="+filepath.Join(dir, "state"), "HOME="+dir)
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("kiln init: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "cluster.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.Replace(string(raw), "inventory: machines.yaml", "inventory: "+inventory, 1)
	if spec == string(raw) {
		t.Fatalf("kiln init's metal spec names no inventory: machines.yaml:\n%s", raw)
	}
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(s string) string {
	if len(s) > 3000 {
		return "...\n" + s[len(s)-3000:]
	}
	return s
}
