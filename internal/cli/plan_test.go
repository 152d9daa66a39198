package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/provisioner/reconcile"
)

// scale sets the count of the starter spec's worker pool.
func scale(t *testing.T, dir string, from, to string) {
	t.Helper()
	path := filepath.Join(dir, "cluster.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	old := "      count: " + from + "\n"
	if strings.Count(string(b), old) != 1 {
		t.Fatalf("cluster.yaml has no single %q", old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, "      count: "+to+"\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func machineNames(mem *providertest.Memory) string {
	var names []string
	for _, m := range mem.Machines() {
		names = append(names, m.Name)
	}
	return strings.Join(names, " ")
}

// A scale-down deletes a healthy machine: kiln apply shows the plan, and acts on it only with --yes
// or a yes at a terminal; --dry-run and kiln plan never act.
func TestApplyConfirmsHealthyDeletes(t *testing.T) {
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo")
	mem := providertest.NewMemory(nil)
	apply := []string{"apply", "--interval", "1ms", "--timeout", "10s"}

	// Before anything exists, plan shows the creates, and makes nothing.
	code, out, errOut := kilnOn(t, mem, dir, "plan")
	if code != 0 || !strings.Contains(out, "create  demo-workers-1") || !strings.Contains(out, "plan: 3 to create") {
		t.Fatalf("plan of a new cluster: exit %d\n%s%s", code, out, errOut)
	}
	if got := machineNames(mem); got != "" {
		t.Fatalf("plan made machines: %s", got)
	}
	if code, out, errOut := kilnOn(t, mem, dir, apply...); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	} else if !strings.Contains(errOut, "create  demo-control-plane-0") {
		t.Fatalf("apply printed no plan before acting:\n%s", errOut)
	}
	const all = "demo-control-plane-0 demo-workers-0 demo-workers-1"
	if got := machineNames(mem); got != all {
		t.Fatalf("after apply: %s", got)
	}

	scale(t, dir, "2", "1")
	for _, tc := range []struct {
		name    string
		args    []string
		answers string // "" for no terminal
		code    int
		want    []string // in stdout and stderr
	}{
		{
			name: "no terminal, no --yes",
			args: apply, code: 1,
			want: []string{"delete  demo-workers-1  workers  healthy, asks first", "deletes 1 healthy machine (demo-workers-1)", "pass --yes"},
		},
		{
			name: "terminal says no",
			args: apply, answers: "n\n", code: 1,
			want: []string{"Delete 1 healthy machine (demo-workers-1)? [y/N]", "declined"},
		},
		{
			name: "dry run",
			args: append(apply, "--dry-run", "--yes"), code: 0,
			want: []string{"delete  demo-workers-1", "plan: 1 to delete (1 healthy without a replacement: confirm)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var answers *strings.Reader
			if tc.answers != "" {
				answers = strings.NewReader(tc.answers)
			}
			var code int
			var out, errOut string
			if answers != nil {
				code, out, errOut = kilnAsked(t, mem, dir, answers, tc.args...)
			} else {
				code, out, errOut = kilnOn(t, mem, dir, tc.args...)
			}
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out+errOut, w) {
					t.Errorf("output lacks %q:\n%s%s", w, out, errOut)
				}
			}
			if got := machineNames(mem); got != all {
				t.Fatalf("machines changed: %s", got)
			}
		})
	}

	// kiln plan -o json: the versioned document.
	code, out, errOut = kilnOn(t, mem, dir, "plan", "-o", "json")
	if code != 0 {
		t.Fatalf("plan -o json: exit %d\n%s", code, errOut)
	}
	var doc reconcile.Document
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("plan -o json: %v\n%s", err, out)
	}
	want := reconcile.Document{
		APIVersion: reconcile.PlanAPIVersion, Kind: reconcile.PlanKind, Cluster: "demo", NeedsConfirmation: true,
		Actions: []reconcile.Action{{Verb: reconcile.VerbDelete, Machine: "demo-workers-1", Pool: "workers", Healthy: true, Confirm: true}},
	}
	for i := range doc.Actions {
		doc.Actions[i].Reason = ""
	}
	if d := cmp.Diff(want, doc); d != "" {
		t.Fatalf("plan -o json (-want +got):\n%s", d)
	}
	if code, out, _ := kilnOn(t, mem, dir, "plan", "-o", "yaml"); code != 0 || !strings.Contains(out, "kind: Plan") {
		t.Fatalf("plan -o yaml: exit %d\n%s", code, out)
	}

	// With --watch and no terminal, a pass that needs confirmation is held, and the next pass comes.
	g := &globals{
		newProvider: memoryProvider(mem),
		terminal:    func() bool { return false },
	}
	root := newRoot(g)
	var stdout, stderr bytes.Buffer
	root.SetArgs([]string{"apply", "--watch", "--interval", "50ms"})
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("apply --watch: %v\n%s", err, stderr.String())
	}
	if n := strings.Count(stderr.String(), "pass held: its plan is not approved"); n < 2 || !strings.Contains(stderr.String(), "pass --yes") {
		t.Fatalf("apply --watch held %d passes:\n%s", n, stderr.String())
	}
	if got := machineNames(mem); got != all {
		t.Fatalf("apply --watch without --yes changed machines: %s", got)
	}

	// A yes at the terminal acts; so does --yes, and in --log-format json the plan is an event.
	if code, out, errOut := kilnAsked(t, mem, dir, strings.NewReader("y\n"), apply...); code != 0 {
		t.Fatalf("apply, answered yes: exit %d\n%s%s", code, out, errOut)
	}
	if got := machineNames(mem); got != "demo-control-plane-0 demo-workers-0" {
		t.Fatalf("after yes: %s", got)
	}
	scale(t, dir, "1", "0")
	code, out, errOut = kilnOn(t, mem, dir, append([]string{"--log-format", "json"}, append(apply, "--yes")...)...)
	if code != 0 {
		t.Fatalf("apply --yes: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, `"msg":"plan"`) || !strings.Contains(errOut, `"apiVersion":"kiln.dev/v1alpha1"`) || !strings.Contains(errOut, `"confirm":true`) {
		t.Fatalf("no plan event in:\n%s", errOut)
	}
	if got := machineNames(mem); got != "demo-control-plane-0" {
		t.Fatalf("after --yes: %s", got)
	}
}
