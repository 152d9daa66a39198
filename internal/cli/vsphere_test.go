package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/onprem/vsphere/vspheretest"
)

// TestApplyOnVSphereSimulator runs kiln apply, get nodes and delete against govmomi's vCenter
// simulator, with the real vSphere client and nothing of kiln replaced.
func TestApplyOnVSphereSimulator(t *testing.T) {
	sim := vspheretest.Start(t)
	caFile := sim.CAFile

	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo", "--provider", "vsphere")
	spec, err := os.ReadFile(filepath.Join(dir, "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := v1alpha1.Decode(spec, "cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cl.Spec.Provider.VSphere = &v1alpha1.VSphereProvider{Server: sim.URL.Host, Datacenter: vspheretest.Datacenter, Cluster: vspheretest.Cluster,
		Folder: "/DC0/vm/kiln", Datastore: "LocalDS_0", Network: "DC0_DVPG0"}
	cl.Spec.ControlPlane.Image = "DC0_H0_VM0"
	for i := range cl.Spec.NodePools {
		cl.Spec.NodePools[i].Image = "DC0_H0_VM0"
	}
	spec, err = v1alpha1.Marshal(cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}

	code, _, errOut := kiln(t, dir, "apply", "--timeout", "10s")
	if code == 0 || !strings.Contains(errOut, envVSpherePassword) {
		t.Fatalf("apply without credentials: exit %d, %s", code, errOut)
	}
	t.Setenv(envVSphereUser, "kiln")
	t.Setenv(envVSpherePassword, "sim-password")
	t.Setenv(envVSphereCAFile, caFile)

	_, progress := kilnOK(t, dir, "apply", "--interval", "10ms", "--concurrency", "1", "--timeout", "2m")
	if !strings.Contains(progress, "demo has converged: 3 machines") {
		t.Fatalf("apply said:\n%s", progress)
	}
	out, _ := kilnOK(t, dir, "get", "nodes", "-o", "wide")
	for _, n := range []string{"demo-control-plane-0", "demo-workers-0", "demo-workers-1"} {
		if !strings.Contains(out, n) {
			t.Fatalf("get nodes lacks %s:\n%s", n, out)
		}
	}
	if strings.Contains(out+progress, "sim-password") {
		t.Fatal("the vCenter password reached kiln's output")
	}
	kilnOK(t, dir, "delete", "--yes")
	out, _ = kilnOK(t, dir, "get", "nodes")
	if strings.Contains(out, "demo-") {
		t.Fatalf("machines left after delete:\n%s", out)
	}
}

func kilnOK(t *testing.T, dir string, args ...string) (string, string) {
	t.Helper()
	code, out, errOut := kiln(t, dir, args...)
	if code != 0 {
		t.Fatalf("kiln %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out, errOut
}
