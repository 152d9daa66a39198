package cli

import (
	"bytes"
	"encoding/base64"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/controlplane/controlplanetest"
	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/internal/ignitiontest"
	"github.com/kiln-dev/kiln/internal/testtool"
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
	// A control plane's config no longer fits guestinfo (64 KiB): it carries a stub, and kiln serves
	// the config.
	cl.Spec.Provider.VSphere = &v1alpha1.VSphereProvider{Server: sim.URL.Host, Datacenter: vspheretest.Datacenter, Cluster: vspheretest.Cluster,
		Folder: "/DC0/vm/kiln", Datastore: "LocalDS_0", Network: "DC0_DVPG0", ConfigServer: net.JoinHostPort("127.0.0.1", strconv.Itoa(testtool.FreePort(t)))}
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

// TestVSphereStubFetchedOnce runs kiln apply on the vCenter simulator with a config server
// (provider.vsphere.configServer): each VM's guestinfo carries only a stub, holding no key and not
// the machine's bootstrap token; the real Ignition binary, as the worker's first boot, fetches the
// worker's config from the apply that runs next (the server resumes for machines created by an
// earlier one), and the same stub fetched again is refused and shows as a possible theft; kiln
// delete drops the tickets, with the configs never fetched.
func TestVSphereStubFetchedOnce(t *testing.T) {
	testtool.Ignition(t) // found from the repository, before kiln's runs change the directory
	sim := vspheretest.Start(t)
	dir := t.TempDir()
	mustKiln(t, dir, "init", "demo", "--provider", "vsphere")
	path := filepath.Join(dir, "cluster.yaml")
	spec, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := v1alpha1.Decode(spec, "cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	server := net.JoinHostPort("127.0.0.1", strconv.Itoa(testtool.FreePort(t)))
	cl.Spec.Provider.VSphere = &v1alpha1.VSphereProvider{Server: sim.URL.Host, Datacenter: vspheretest.Datacenter, Cluster: vspheretest.Cluster,
		Folder: vspheretest.Folder, Datastore: vspheretest.Datastore, Network: vspheretest.Network, ConfigServer: server}
	cl.Spec.ControlPlane.Image = vspheretest.Template
	cl.Spec.NodePools = cl.Spec.NodePools[:1]
	cl.Spec.NodePools[0].Image, cl.Spec.NodePools[0].Count = vspheretest.Template, 1
	if spec, err = v1alpha1.Marshal(cl); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envVSphereUser, vspheretest.User)
	t.Setenv(envVSpherePassword, vspheretest.Password)
	t.Setenv(envVSphereCAFile, sim.CAFile)

	// The machines are created, with stubs, and nothing of them answers before apply gives up.
	code, _, errOut := kiln(t, dir, "apply", "--interval", "10ms", "--concurrency", "1", "--timeout", "5s")
	if code == 0 || !strings.Contains(errOut, "serving the machines' configs, each once") {
		t.Fatalf("apply: exit %d\n%s", code, errOut)
	}
	worker := cl.Spec.NodePools[0].Name
	worker = "demo-" + worker + "-0"
	stubs := map[string][]byte{}
	for _, name := range []string{"demo-control-plane-0", worker} {
		gi := vmGuestinfo(t, sim, name)
		raw, err := base64.StdEncoding.DecodeString(gi)
		if err != nil || gi == "" {
			t.Fatalf("%s's guestinfo: %v (%d bytes)", name, err, len(gi))
		}
		stubs[name] = raw
	}

	// The apply that runs next serves the configs the first one issued tickets for; the worker's
	// first boot (the real Ignition binary) fetches its config there, once.
	errs := make(chan string, 1)
	go func() {
		var out, errOut bytes.Buffer
		Main([]string{"apply", "--interval", "10ms", "--concurrency", "1", "--timeout", "15s"}, &out, &errOut)
		errs <- errOut.String()
	}()
	waitListening(t, server, 10*time.Second)
	root, err := ignitiontest.Try(t, stubs[worker])
	if err != nil {
		t.Fatalf("the worker's first boot: %v", err)
	}
	kubeconfig, err := os.ReadFile(filepath.Join(root, "etc/kubernetes/bootstrap-kubelet.conf"))
	if err != nil {
		t.Fatalf("the worker's config was not applied: %v", err)
	}
	if _, err := ignitiontest.Try(t, stubs[worker]); err == nil || !strings.Contains(err.Error(), "GET result: Forbidden") {
		t.Errorf("the worker's stub applied a second time: %v, want the fetch refused (403)", err)
	}
	if second := <-errs; !strings.Contains(second, "machines still to fetch their configs") {
		t.Errorf("the second apply did not resume serving:\n%s", second)
	}

	// What anyone who reads guestinfo gets: no key, not the bootstrap token the worker joins with.
	b := loadBundle(t, dir, "demo")
	var token string
	for _, tk := range b.BootstrapTokens {
		if tk.Machine == worker {
			token = tk.ID + "." + tk.Secret
		}
	}
	if token == "" || !strings.Contains(string(kubeconfig), token) {
		t.Fatalf("the worker's applied config lacks its own bootstrap token")
	}
	for name, raw := range stubs {
		text := ignitiontest.Decoded(t, raw)
		if !strings.Contains(text, "https://"+server+enroll.ConfigPath("demo", name)) {
			t.Errorf("%s's guestinfo does not fetch from the config server:\n%s", name, text)
		}
		for what, secret := range map[string]string{"a private key": "PRIVATE KEY", "the worker's bootstrap token": token} {
			if strings.Contains(text, secret) {
				t.Errorf("%s's guestinfo holds %s", name, what)
			}
		}
	}
	tickets := enrollTickets(t, dir)
	if w := tickets[worker]; w.Spent == nil || !w.Suspect() {
		t.Errorf("the worker's ticket reads %q, want spent and a possible theft", w.State(time.Now()))
	}
	if cp := tickets["demo-control-plane-0"]; cp.Spent != nil {
		t.Errorf("the control plane's ticket is spent (%+v), though nothing fetched it", cp.Spent)
	}

	kilnOK(t, dir, "delete", "--yes")
	if left := enrollTickets(t, dir); len(left) != 0 {
		t.Errorf("tickets left after delete: %v", slices.Collect(maps.Keys(left)))
	}
}

// waitListening waits until something accepts connections at addr.
func waitListening(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens at %s after %s: %v", addr, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// enrollTickets returns the enrollment tickets of cluster demo in the state store in dir, by machine.
func enrollTickets(t *testing.T, dir string) map[string]enroll.Ticket {
	t.Helper()
	st, err := (&globals{stateDir: filepath.Join(dir, "state")}).openState()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ts, err := enroll.List(st, "demo")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]enroll.Ticket{}
	for _, tk := range ts {
		out[tk.Machine] = tk
	}
	return out
}
