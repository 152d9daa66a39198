package metal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/onprem/pxe"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/providertest"
	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/statetest"
)

// fakeBMC is a Redfish service with real state, for there is no BMC here: systems with a power state
// and a boot override, the Reset action and PATCH of Boot, behind basic authentication. A one-time
// PXE override is consumed by the next power-on, which counts as a network boot.
type fakeBMC struct {
	srv      *httptest.Server
	user, pw string

	mu      sync.Mutex
	systems map[string]*fakeSystem
	fail    bool
}

type fakeSystem struct {
	Power    string // On, Off
	Target   string // Pxe, None
	Enabled  string // Once, Disabled, Continuous
	PXEBoots int
}

func newFakeBMC(t *testing.T, n int) *fakeBMC {
	b := &fakeBMC{user: "admin", pw: "s3cret-Pa55", systems: map[string]*fakeSystem{}}
	for i := range n {
		b.systems[fmt.Sprintf("node%d", i)] = &fakeSystem{Power: "Off", Target: "None", Enabled: "Disabled"}
	}
	b.srv = httptest.NewTLSServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *fakeBMC) serve(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if r.URL.Path != "/redfish/v1/" && r.URL.Path != "/redfish/v1" && (!ok || u != b.user || p != b.pw) {
		http.Error(w, `{"error":{"message":"unauthorized"}}`, http.StatusUnauthorized)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail {
		http.Error(w, `{"error":{"message":"BMC busy"}}`, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == "/redfish/v1" && r.Method == http.MethodGet:
		json.NewEncoder(w).Encode(map[string]any{"@odata.id": "/redfish/v1/", "Id": "RootService",
			"RedfishVersion": "1.15.0", "Systems": map[string]string{"@odata.id": "/redfish/v1/Systems"}})
	case path == "/redfish/v1/Systems" && r.Method == http.MethodGet:
		var members []map[string]string
		for id := range b.systems {
			members = append(members, map[string]string{"@odata.id": "/redfish/v1/Systems/" + id})
		}
		json.NewEncoder(w).Encode(map[string]any{"@odata.id": "/redfish/v1/Systems", "Members": members,
			"Members@odata.count": len(members)})
	case strings.HasPrefix(path, "/redfish/v1/Systems/"):
		rest := strings.TrimPrefix(path, "/redfish/v1/Systems/")
		id, action, _ := strings.Cut(rest, "/")
		s, ok := b.systems[id]
		if !ok {
			http.NotFound(w, r)
			return
		}
		switch {
		case action == "" && r.Method == http.MethodGet:
			json.NewEncoder(w).Encode(map[string]any{"@odata.id": "/redfish/v1/Systems/" + id, "Id": id,
				"PowerState": s.Power,
				"Boot":       map[string]string{"BootSourceOverrideTarget": s.Target, "BootSourceOverrideEnabled": s.Enabled},
				"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
					"target":                            "/redfish/v1/Systems/" + id + "/Actions/ComputerSystem.Reset",
					"ResetType@Redfish.AllowableValues": []string{"On", "ForceOff", "ForceRestart"}}}})
		case action == "" && r.Method == http.MethodPatch:
			var body struct {
				Boot struct{ BootSourceOverrideTarget, BootSourceOverrideEnabled string }
			}
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if body.Boot.BootSourceOverrideTarget != "" {
				s.Target = body.Boot.BootSourceOverrideTarget
			}
			if body.Boot.BootSourceOverrideEnabled != "" {
				s.Enabled = body.Boot.BootSourceOverrideEnabled
			}
			w.WriteHeader(http.StatusNoContent)
		case action == "Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
			var body struct{ ResetType string }
			json.NewDecoder(r.Body).Decode(&body)
			switch body.ResetType {
			case "On", "ForceRestart":
				if body.ResetType == "On" && s.Power == "On" {
					http.Error(w, `{"error":{"message":"already on"}}`, http.StatusConflict)
					return
				}
				s.Power = "On"
				if s.Target == "Pxe" {
					s.PXEBoots++
					if s.Enabled == "Once" {
						s.Target, s.Enabled = "None", "Disabled"
					}
				}
			case "ForceOff":
				s.Power = "Off"
			default:
				http.Error(w, "bad reset type", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	default:
		http.NotFound(w, r)
	}
}

func (b *fakeBMC) system(id string) fakeSystem {
	b.mu.Lock()
	defer b.mu.Unlock()
	return *b.systems[id]
}

// newPool makes a state store with an inventory of control-plane and worker machines on bmc.
func newPool(t *testing.T, bmc *fakeBMC, controlPlanes, workers int) *statetest.Memory {
	t.Helper()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "bmc-password")
	os.WriteFile(pwFile, []byte(bmc.pw+"\n"), 0o600)
	var y strings.Builder
	y.WriteString("apiVersion: kiln.dev/v1alpha1\nkind: MachineInventory\nmachines:\n")
	for i := range controlPlanes + workers {
		role, pool := "control-plane", ""
		if i >= controlPlanes {
			role, pool = "worker", "workers"
		}
		fmt.Fprintf(&y, "  - name: node%d\n    mac: 52:54:00:00:01:%02x\n    role: %s\n", i, i, role)
		if pool != "" {
			fmt.Fprintf(&y, "    pool: %s\n", pool)
		}
		fmt.Fprintf(&y, "    bmc: {driver: redfish, address: %q, systemID: node%d, username: %s, passwordFile: %q, insecure: true}\n",
			bmc.srv.URL, i, bmc.user, pwFile)
	}
	inv, err := pxe.DecodeInventory([]byte(y.String()), "machines.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return statetest.NewFixed(t, statetest.Values{pxe.BucketInventory: {pxe.InventoryKey: inv}})
}

func TestContract(t *testing.T) {
	providertest.Run(t, func(t *testing.T) providertest.Setup {
		bmc := newFakeBMC(t, 8)
		st := newPool(t, bmc, 2, 6)
		power := BMCs{Redfish: &Redfish{}}
		return providertest.Setup{
			New:     func() provisioner.Provider { return New(st, power) },
			Image:   "kiln-debian-12",
			Timeout: time.Minute,
		}
	})
}

func TestCreateBootsAndDeleteReleases(t *testing.T) {
	bmc := newFakeBMC(t, 3)
	st := newPool(t, bmc, 1, 2)
	p := New(st, BMCs{Redfish: &Redfish{}})
	ctx := context.Background()
	spec := func(i int) provisioner.MachineSpec {
		return provisioner.MachineSpec{Cluster: "demo", Name: provisioner.MachineName("demo", "workers", i), Role: "worker",
			Pool: "workers", Image: "img", Ignition: []byte(`{"ignition":{"version":"3.5.0"}}`)}
	}
	m0, err := p.Create(ctx, spec(0))
	if err != nil {
		t.Fatal(err)
	}
	if m0.State != provisioner.StatePending {
		t.Errorf("new machine is %s, want pending until it fetched its Ignition", m0.State)
	}
	// node0 is the control plane; the first worker is node1: on, booted once from the network, and
	// its one-time override consumed.
	if s := bmc.system("node1"); s.Power != "On" || s.PXEBoots != 1 || s.Target != "None" {
		t.Fatalf("node1 after Create: %+v", s)
	}
	if _, err := p.Create(ctx, spec(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(ctx, spec(2)); !errors.Is(err, ErrNoFreeMachine) {
		t.Fatalf("third worker from a pool of two: %v", err)
	}
	// The machine fetches its Ignition: the boot records say so, and List says running.
	inv, _ := pxe.LoadInventory(st)
	node1, _ := inv.Lookup("52:54:00:00:01:01")
	rec := pxe.NewRecorder(func() time.Time { return time.Now().Add(time.Second) })
	rec.Observe(node1, pxe.StepDHCP, "10.0.0.100 ipxe")
	rec.Observe(node1, pxe.StepIgnition, "7000 bytes")
	if err := rec.Flush(st); err != nil {
		t.Fatal(err)
	}
	ms, err := p.List(ctx, "demo")
	if err != nil || len(ms) != 2 || ms[0].State != provisioner.StateRunning || ms[0].Address != "10.0.0.100" {
		t.Fatalf("List: %+v %v", ms, err)
	}
	if err := p.Delete(ctx, spec(0).Name); err != nil {
		t.Fatal(err)
	}
	if s := bmc.system("node1"); s.Power != "Off" {
		t.Fatalf("node1 after Delete: %+v", s)
	}
	// Released: the next create gets it again.
	if _, err := p.Create(ctx, spec(2)); err != nil {
		t.Fatalf("create after a release: %v", err)
	}
	if s := bmc.system("node1"); s.PXEBoots != 2 {
		t.Fatalf("node1 not booted again: %+v", s)
	}
}

func TestBMCErrorsKeepPasswordOut(t *testing.T) {
	bmc := newFakeBMC(t, 1)
	st := newPool(t, bmc, 0, 1)
	bmc.pw = "another-password" // the file now holds a wrong one
	p := New(st, BMCs{Redfish: &Redfish{}})
	_, err := p.Create(context.Background(), provisioner.MachineSpec{Cluster: "demo", Name: "demo-workers-0", Role: "worker", Pool: "workers"})
	if err == nil {
		t.Fatal("create with a wrong BMC password succeeded")
	}
	if strings.Contains(err.Error(), "s3cret-Pa55") || strings.Contains(err.Error(), "another-password") {
		t.Fatalf("error shows a password: %v", err)
	}
	// No BMC driver for the machine.
	q := New(st, BMCs{})
	if err := q.Delete(context.Background(), "demo-workers-0"); !errors.Is(err, ErrNoBMC) {
		t.Fatalf("delete without a driver: %v", err)
	}
}

// TestCreateSkipsClaimedMachines: a machine claimed in the store, by a create that has not recorded
// its allocation yet or by one that crashed before it could, is never given to another name.
func TestCreateSkipsClaimedMachines(t *testing.T) {
	bmc := newFakeBMC(t, 3)
	st := newPool(t, bmc, 1, 2)
	if err := st.Create(BucketClaims, "52:54:00:00:01:01", "demo-workers-other"); err != nil {
		t.Fatal(err)
	}
	p := New(st, BMCs{Redfish: &Redfish{}})
	spec := provisioner.MachineSpec{Cluster: "demo", Name: "demo-workers-0", Role: "worker", Pool: "workers"}
	m, err := p.Create(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	var a Allocation
	if err := st.Get(BucketMachines, spec.Name, &a); err != nil || a.Host != "node2" || m.Name != spec.Name {
		t.Fatalf("allocation %+v, %v; want node2, node1 being claimed", a, err)
	}
	var holder string
	if err := st.Get(BucketClaims, "52:54:00:00:01:01", &holder); err != nil || holder != "demo-workers-other" {
		t.Errorf("claim of node1 = %q, %v; want it left to its holder", holder, err)
	}
	if s := bmc.system("node1"); s.PXEBoots != 0 || s.Power != "Off" {
		t.Errorf("node1, claimed by another, was booted: %+v", s)
	}
	if _, err := p.Create(context.Background(), provisioner.MachineSpec{Cluster: "demo", Name: "demo-workers-1", Role: "worker", Pool: "workers"}); !errors.Is(err, ErrNoFreeMachine) {
		t.Errorf("second create with the only other worker claimed = %v, want ErrNoFreeMachine", err)
	}
}

// failAllocation is a store whose allocations cannot be recorded: the claim before them can.
type failAllocation struct {
	*statetest.Memory
	err error
}

func (f failAllocation) Create(bucket, key string, v any) error {
	if bucket == BucketMachines {
		return f.err
	}
	return f.Memory.Create(bucket, key, v)
}

func TestCreateReleasesTheClaimWhenTheAllocationFails(t *testing.T) {
	bmc := newFakeBMC(t, 2)
	errDisk := errors.New("no space left on device")
	st := failAllocation{Memory: newPool(t, bmc, 1, 1), err: errDisk}
	_, err := New(st, BMCs{Redfish: &Redfish{}}).Create(context.Background(),
		provisioner.MachineSpec{Cluster: "demo", Name: "demo-workers-0", Role: "worker", Pool: "workers"})
	if want := "metal: create demo-workers-0 on node1: no space left on device"; !errors.Is(err, errDisk) || err.Error() != want {
		t.Fatalf("Create = %v, want %q", err, want)
	}
	if keys, _ := st.List(BucketClaims); len(keys) != 0 {
		t.Errorf("claims left after a failed create: %v", keys)
	}
	if s := bmc.system("node1"); s.PXEBoots != 0 {
		t.Errorf("node1 booted although its allocation was not recorded: %+v", s)
	}
}

// TestCreateArmsAndDeleteDisarms: Create arms the machine it takes with the config the provisioner
// rendered, before powering it on; Stop and Delete disarm it, but never an arm another name made.
func TestCreateArmsAndDeleteDisarms(t *testing.T) {
	bmc := newFakeBMC(t, 3)
	st := newPool(t, bmc, 0, 3)
	p := New(st, BMCs{Redfish: &Redfish{}})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	ctx := context.Background()
	spec := func(i int) provisioner.MachineSpec {
		return provisioner.MachineSpec{Cluster: "demo", Name: provisioner.MachineName("demo", "workers", i), Role: "worker",
			Pool: "workers", Ignition: fmt.Appendf(nil, `{"worker":%d}`, i)}
	}
	for i := range 3 {
		if _, err := p.Create(ctx, spec(i)); err != nil {
			t.Fatal(err)
		}
	}
	arms, err := pxe.LoadArms(st)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]pxe.Arm{}
	for i := range 3 {
		mac := fmt.Sprintf("52:54:00:00:01:%02x", i)
		want[mac] = pxe.Arm{MAC: mac, Cluster: "demo", Machine: spec(i).Name, By: pxe.ArmedByMetal, At: now, Config: spec(i).Ignition}
	}
	if diff := cmp.Diff(want, arms); diff != "" {
		t.Fatalf("arms after Create (-want +got):\n%s", diff)
	}
	// The allocation does not keep the config: only the arm does, until it is served.
	var a map[string]any
	if err := st.Get(BucketMachines, spec(0).Name, &a); err != nil {
		t.Fatal(err)
	}
	for k, v := range a {
		if fmt.Sprint(v) == string(spec(0).Ignition) || k == "ignition" {
			t.Errorf("the allocation keeps the config: %v", a)
		}
	}

	// spec 1's machine was given a script: its ticket goes with it.
	if _, _, err := enroll.Issue(st, enroll.Issuing{Cluster: "demo", Machine: spec(1).Name, Config: spec(1).Ignition, Now: now}); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(ctx, spec(0).Name); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, spec(1).Name); err != nil {
		t.Fatal(err)
	}
	if _, err := enroll.Get(st, "demo", spec(1).Name); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("ticket of a deleted machine: %v, want it revoked", err)
	}
	// Another name armed node2 since (by hand): deleting spec 2 leaves that arm alone.
	other := pxe.Arm{MAC: "52:54:00:00:01:02", By: pxe.ArmedByCLI, At: now}
	if err := pxe.ArmMachine(st, other); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, spec(2).Name); err != nil {
		t.Fatal(err)
	}
	arms, err = pxe.LoadArms(st)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]pxe.Arm{other.MAC: other}, arms); diff != "" {
		t.Errorf("arms after Stop and Delete (-want +got):\n%s", diff)
	}
}

// TestStoreErrors: a state store that fails is reported with what the provider was doing to which
// machine, never swallowed.
func TestStoreErrors(t *testing.T) {
	errDisk := errors.New("input/output error")
	p := New(statetest.Broken{Err: errDisk}, BMCs{Redfish: &Redfish{}})
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{name: "create", call: func() error {
			_, err := p.Create(ctx, provisioner.MachineSpec{Cluster: "demo", Name: "demo-workers-0", Role: "worker", Pool: "workers"})
			return err
		}, want: "metal: create demo-workers-0: input/output error"},
		{name: "delete", call: func() error { return p.Delete(ctx, "demo-workers-0") }, want: "metal: delete demo-workers-0: input/output error"},
		{name: "stop", call: func() error { return p.Stop(ctx, "demo-workers-0") }, want: "metal: stop demo-workers-0: input/output error"},
		{name: "list", call: func() error { _, err := p.List(ctx, "demo"); return err }, want: "metal: list demo: input/output error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, errDisk) || err.Error() != tc.want {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}
