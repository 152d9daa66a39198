package cli

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/onprem/vsphere"
	"github.com/kiln-dev/kiln/onprem/vsphere/vspheretest"
	"github.com/kiln-dev/kiln/provisioner/addrpool"
)

// TestApplyOnVSphereSimulator runs kiln apply, get nodes and delete against govmomi's vCenter
// simulator, with the real vSphere client and nothing of kiln replaced, and a real API server whose
// Nodes the test registers as the machines' kubelets would: a VM is ready, and its config is removed
// from guestinfo, only once its Node is Ready.
func TestApplyOnVSphereSimulator(t *testing.T) {
	controlplanetest.Binaries(t) // found from the repository, before kiln's runs change the directory
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

	// render reserves, with the provider, the addresses its configs name (the subnet 10.0.0.0/24: .1
	// the gateway, .5 the API endpoint; the control plane's reserved first), as apply would.
	for _, r := range []struct{ role, node, want string }{
		{v1alpha1.RoleControlPlane, "demo-control-plane-0", "--advertise-address=10.0.0.2"},
		{v1alpha1.RoleWorker, "demo-workers-0", "--node-ip=10.0.0.3"},
	} {
		cfg, _ := kilnOK(t, dir, "render", "ignition", "--role", r.role, "--node", r.node)
		if units := configUnits(t, []byte(cfg)); !strings.Contains(units, r.want+" ") && !strings.Contains(units, r.want+"\n") {
			t.Errorf("%s's config lacks %s", r.node, r.want)
		}
	}

	// A slow first boot, as on a real vCenter: the clones are powered on at once, and nothing of them
	// answers yet. Nor could it: kiln reaches no vSphere machine's SSH, and the cluster's API endpoint
	// (api.demo.kiln.internal) is not reachable from here. apply says so once, naming what to
	// configure, counts no machine ready, and leaves every config in guestinfo.
	machines := []string{"demo-control-plane-0", "demo-workers-0", "demo-workers-1"}
	code, _, errOut = kiln(t, dir, "apply", "--interval", "10ms", "--concurrency", "1", "--timeout", "5s")
	const unheard = "no machine can be judged ready: no SSH probe runs and the cluster's Nodes cannot be read"
	if code == 0 || strings.Count(errOut, unheard) != 1 || !strings.Contains(errOut, "apply --kubeconfig FILE") ||
		!strings.Contains(errOut, "https://api.demo.kiln.internal:6443 reachable from this host") ||
		!strings.Contains(errOut, "0 of 3 machines ready; create demo-") || strings.Contains(errOut, " machines ready; joined") ||
		!strings.Contains(errOut, "demo has not converged within --timeout 5s") || !strings.Contains(errOut, "demo-workers-1: unheard: ") {
		t.Fatalf("apply with nothing to hear the machines by: exit %d\n%s", code, errOut)
	}
	for _, name := range machines {
		if vmGuestinfo(t, sim, name) == "" {
			t.Errorf("%s's guestinfo lost its config before the node answered", name)
		}
	}
	if out, _ := kilnOK(t, dir, "get", "nodes"); strings.Count(out, "unheard") != 3 {
		t.Errorf("get nodes does not show the machines unheard:\n%s", out)
	}

	// The cluster's API, reached through a tunnel of the user's own (kiln kubeconfig --server): its
	// Nodes are not registered yet, and then they are.
	api := startClusterAPI(t, dir, "demo")
	code, _, errOut = kiln(t, dir, "apply", "--kubeconfig", api.kubeconfig, "--interval", "10ms", "--concurrency", "1", "--timeout", "3s")
	if code == 0 || !strings.Contains(errOut, "pass 2: 0 of 3 machines ready\n") || strings.Contains(errOut, "msg=joined") ||
		!strings.Contains(errOut, "demo-workers-1: starting: no Ready Node yet") {
		t.Fatalf("apply with the API and no Node: exit %d\n%s", code, errOut)
	}
	for _, name := range machines {
		if vmGuestinfo(t, sim, name) == "" {
			t.Errorf("%s's guestinfo lost its config before its Node was Ready", name)
		}
		readyNode(t, api.admin, name)
	}
	_, progress := kilnOK(t, dir, "apply", "--kubeconfig", api.kubeconfig, "--interval", "10ms", "--concurrency", "1", "--timeout", "2m")
	if !strings.Contains(progress, "demo has converged: 3 machines") || strings.Count(progress, `msg=joined`) != 3 ||
		!strings.Contains(progress, `reason="its Node is Ready"`) {
		t.Fatalf("apply said:\n%s", progress)
	}
	for _, name := range machines {
		if got := vmGuestinfo(t, sim, name); got != "" {
			t.Errorf("%s's guestinfo still holds its config (%d bytes) once its Node is Ready", name, len(got))
		}
	}
	// apply made the machines render named with the addresses render reserved, and gave the next
	// one the next address: each VM's NIC has the static MAC of its address, which its config's
	// network file matches (onprem/vsphere checks the config itself).
	want := map[string]string{"demo-control-plane-0": "10.0.0.2", "demo-workers-0": "10.0.0.3", "demo-workers-1": "10.0.0.4"}
	if got := addressHolds(t, dir); !maps.Equal(got, want) {
		t.Errorf("addresses held after apply: %v, want %v", got, want)
	}
	for name, mac := range map[string]string{"demo-control-plane-0": "00:50:56:00:00:02", "demo-workers-0": "00:50:56:00:00:03", "demo-workers-1": "00:50:56:00:00:04"} {
		if got := vmMAC(t, sim, name); got != mac {
			t.Errorf("%s's NIC has MAC %s, want %s (of %s)", name, got, mac, want[name])
		}
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
	if got := addressHolds(t, dir); len(got) != 0 {
		t.Errorf("addresses held after delete: %v, want none", got)
	}
}

// configUnits returns the contents of the systemd units of the Ignition config cfg.
func configUnits(t *testing.T, cfg []byte) string {
	t.Helper()
	c, _, err := v3_5.Parse(cfg)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	var u strings.Builder
	for _, unit := range c.Systemd.Units {
		if unit.Contents != nil {
			u.WriteString(*unit.Contents)
		}
	}
	return u.String()
}

// addressHolds returns the addresses the state store in dir holds in the simulator's port group
// subnet, 10.0.0.0/24, by machine.
func addressHolds(t *testing.T, dir string) map[string]string {
	t.Helper()
	st, err := (&globals{stateDir: filepath.Join(dir, "state")}).openState()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pool, err := addrpool.New(st, netip.MustParsePrefix("10.0.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	holds, err := pool.Holds()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range holds {
		got[h.Name] = h.Address.String()
	}
	return got
}

// vmGuestinfo returns the Ignition config in the guestinfo of the simulator's VM name; "" when there
// is none.
func vmGuestinfo(t *testing.T, sim *vspheretest.Sim, name string) string {
	t.Helper()
	for _, o := range vmProps(t, sim, name, "config.extraConfig").Config.ExtraConfig {
		if ov := o.GetOptionValue(); ov.Key == vsphere.KeyIgnitionData {
			s, _ := ov.Value.(string)
			return s
		}
	}
	return ""
}

// vmProps reads props of the simulator's VM name.
func vmProps(t *testing.T, sim *vspheretest.Sim, name string, props ...string) mo.VirtualMachine {
	t.Helper()
	ctx := t.Context()
	ref, err := object.NewSearchIndex(sim.Client.Client).FindChild(ctx, sim.Folder, name)
	if err != nil || ref == nil {
		t.Fatalf("find %s: %v", name, err)
	}
	var vm mo.VirtualMachine
	if err := sim.Client.RetrieveOne(ctx, ref.Reference(), props, &vm); err != nil {
		t.Fatal(err)
	}
	return vm
}

// vmMAC returns the MAC of the only NIC of the simulator's VM name.
func vmMAC(t *testing.T, sim *vspheretest.Sim, name string) string {
	t.Helper()
	vm := vmProps(t, sim, name, "config.hardware.device")
	nics := object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualEthernetCard)(nil))
	if len(nics) != 1 {
		t.Fatalf("%s has %d NICs, want 1", name, len(nics))
	}
	return nics[0].(types.BaseVirtualEthernetCard).GetVirtualEthernetCard().MacAddress
}

func kilnOK(t *testing.T, dir string, args ...string) (string, string) {
	t.Helper()
	code, out, errOut := kiln(t, dir, args...)
	if code != 0 {
		t.Fatalf("kiln %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out, errOut
}
