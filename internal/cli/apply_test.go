package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/providertest"
)

// kilnOn runs the command line with the machines of mem as the provider.
func kilnOn(t *testing.T, mem *providertest.Memory, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return kilnAsked(t, mem, dir, nil, args...)
}

// kilnAsked is kilnOn with a terminal that answers from answers, or with no terminal when answers is
// nil.
func kilnAsked(t *testing.T, mem *providertest.Memory, dir string, answers io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Chdir(dir)
	t.Setenv("KILN_STATE_DIR", filepath.Join(dir, "state"))
	os.Unsetenv("KILN_STATE_KEY")
	g := &globals{
		newProvider: func(context.Context, *v1alpha1.Cluster) (provisioner.Provider, error) { return mem.New(), nil },
		in:          answers,
		terminal:    func() bool { return answers != nil },
	}
	var out, errOut bytes.Buffer
	code = run(newRoot(g), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestApplyGetDelete(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	mem := providertest.NewMemory(nil)
	must := func(args ...string) (string, string) {
		t.Helper()
		code, out, errOut := kilnOn(t, mem, dir, args...)
		if code != 0 {
			t.Fatalf("kiln %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out, errOut
	}

	_, progress := must("apply", "-f", "cluster.yaml", "--interval", "1ms", "--timeout", "5s")
	if !strings.Contains(progress, "demo has converged") || !strings.Contains(progress, "create demo-workers-0") {
		t.Fatalf("apply said:\n%s", progress)
	}
	out, _ := must("get", "nodes", "-o", "json")
	var nodes []nodeView
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatalf("get nodes -o json: %v\n%s", err, out)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name+"="+n.Health)
	}
	want := "demo-control-plane-0=ready demo-workers-0=ready demo-workers-1=ready"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("get nodes: %s, want %s", got, want)
	}

	// A failed worker is replaced: created first, then the old one deleted.
	mem.SetState("demo-workers-1", provisioner.StateError)
	out, _ = must("get", "nodes", "-o", "wide")
	if !strings.Contains(out, "demo-workers-1") || !strings.Contains(out, "unhealthy") {
		t.Fatalf("get nodes -o wide after a failure:\n%s", out)
	}
	_, progress = must("apply", "--interval", "1ms")
	if !strings.Contains(progress, "create demo-workers-2") || !strings.Contains(progress, "delete demo-workers-1") {
		t.Fatalf("apply after a failure said:\n%s", progress)
	}

	code, _, errOut := kilnOn(t, mem, dir, "delete")
	if code == 0 || !strings.Contains(errOut, "--yes") {
		t.Fatalf("delete without --yes: exit %d, %s", code, errOut)
	}
	must("delete", "--yes")
	if ms := mem.Machines(); len(ms) != 0 {
		t.Fatalf("after delete: %v", ms)
	}
}

func TestApplyErrors(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown log format", []string{"apply", "--log-format", "xml"}, "--log-format xml"},
		{"missing spec", []string{"apply", "-f", "nope.yaml"}, "nope.yaml"},
		{"qemu image missing", []string{"apply", "--timeout", "1s"}, "spec.nodePools[0].image: qemu: image"},
		{"unknown output", []string{"get", "nodes", "-o", "xml"}, "-o xml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := kiln(t, dir, tc.args...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want failure naming %q", code, errOut, tc.want)
			}
		})
	}
}
