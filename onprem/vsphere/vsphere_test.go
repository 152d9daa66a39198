package vsphere

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/privatenet"
	"github.com/kiln-dev/kiln/provisioner"
)

func extraConfigMap(m []types.BaseOptionValue) map[string]string {
	out := map[string]string{}
	for _, o := range m {
		ov := o.GetOptionValue()
		s, _ := ov.Value.(string)
		out[ov.Key] = s
	}
	return out
}

func TestGuestinfo(t *testing.T) {
	for _, kind := range simKinds {
		t.Run(kind, func(t *testing.T) {
			h := newSim(t, kind)
			p := h.newProvider(t)
			ctx := t.Context()
			spec := h.spec("gi", "workers", 0)
			spec.Ignition = []byte(`{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/kiln"}]}}`)
			if _, err := p.Create(ctx, spec); err != nil {
				t.Fatal(err)
			}
			vm := h.vm(t, spec.Name, "config.extraConfig", "config.hardware.device")
			got := extraConfigMap(vm.Config.ExtraConfig)
			want := map[string]string{
				KeyIgnitionEncoding: "base64",
				KeyCluster:          "gi",
				KeyName:             spec.Name,
				KeyRole:             v1alpha1.RoleWorker,
				KeyPool:             "workers",
				KeyImage:            h.template,
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("ExtraConfig[%s] = %q, want %q", k, got[k], v)
				}
			}

			// The config carries spec.Ignition whole and the network file that sets the machine's
			// reserved address on its NIC, matched by the NIC's static MAC.
			files := guestinfoConfig(t, got[KeyIgnitionData], spec.Ignition)
			network := files[privatenet.NetworkFile]
			for _, w := range []string{"MACAddress=00:50:56:00:00:03\n", "Address=10.0.0.3/16\n", "Gateway=10.0.0.1\n"} {
				if !strings.Contains(network, w) {
					t.Errorf("%s lacks %q:\n%s", privatenet.NetworkFile, w, network)
				}
			}
			if !strings.Contains(files[privatenet.HostsFile], "10.0.0.3\t"+spec.Name+"\n") {
				t.Errorf("%s does not name the machine:\n%s", privatenet.HostsFile, files[privatenet.HostsFile])
			}

			// One NIC, on the configured port group, with the MAC the network file matches.
			nics := object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualEthernetCard)(nil))
			if len(nics) != 1 {
				t.Fatalf("VM has %d NICs, want 1", len(nics))
			}
			card := nics[0].(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
			if card.MacAddress != "00:50:56:00:00:03" || card.AddressType != string(types.VirtualEthernetCardMacTypeManual) {
				t.Errorf("NIC MAC %q (%s), want 00:50:56:00:00:03 (manual)", card.MacAddress, card.AddressType)
			}
			switch b := nics[0].GetVirtualDevice().Backing.(type) {
			case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
				if kind != "vpx" || !strings.HasPrefix(b.Port.PortgroupKey, "dvportgroup-") {
					t.Errorf("NIC backing is port group %q on %s", b.Port.PortgroupKey, kind)
				}
			case *types.VirtualEthernetCardNetworkBackingInfo:
				if kind != "esx" || b.DeviceName != "VM Network" {
					t.Errorf("NIC backing is network %q on %s", b.DeviceName, kind)
				}
			default:
				t.Errorf("NIC backing %T", b)
			}

			if err := p.ClearIgnition(ctx, spec.Name); err != nil {
				t.Fatal(err)
			}
			got = extraConfigMap(h.vm(t, spec.Name, "config.extraConfig").Config.ExtraConfig)
			for _, k := range []string{KeyIgnitionData, KeyIgnitionEncoding} {
				if v, ok := got[k]; ok {
					t.Errorf("after ClearIgnition, ExtraConfig[%s] = %q, want no such key", k, v)
				}
			}
			if got[KeyCluster] != "gi" {
				t.Errorf("ClearIgnition took the labels too: %v", got)
			}
			ms, err := p.List(ctx, "gi")
			if err != nil || len(ms) != 1 {
				t.Fatalf("List after ClearIgnition = %v, %v", ms, err)
			}
			if err := p.ClearIgnition(ctx, "gi-workers-9"); !errors.Is(err, ErrNotFound) {
				t.Errorf("ClearIgnition of a missing VM: %v, want ErrNotFound", err)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	transientClone := &types.TaskInProgress{}
	for _, tc := range []struct {
		name   string
		method string
		rule   simulator.FaultInjectionRule
		// calls is how many times the method is called; wantErr what the error must say (none if empty).
		calls   int
		wantErr []string
		exhaust bool
		// off: the VM exists, kiln's and powered off, before Create (the clone task powers a new VM on,
		// so only such a VM takes a PowerOnVM_Task).
		off bool
	}{
		{
			name:   "clone fails twice with SystemError, then succeeds",
			method: "CloneVM_Task",
			rule:   simulator.FaultInjectionRule{FaultType: simulator.FaultTypeGeneric, Message: "disk busy", MaxCount: 2},
			calls:  3,
		},
		{
			name:   "clone fails with TaskInProgress, then succeeds",
			method: "CloneVM_Task",
			rule:   simulator.FaultInjectionRule{FaultType: simulator.FaultTypeCustom, Fault: transientClone, MaxCount: 1},
			calls:  2,
		},
		{
			name:   "power on fails three times with ResourceInUse, then succeeds",
			method: "PowerOnVM_Task",
			rule:   simulator.FaultInjectionRule{FaultType: simulator.FaultTypeResourceInUse, Message: "host busy", MaxCount: 3},
			calls:  4,
			off:    true,
		},
		{
			name:    "clone without permission fails at once",
			method:  "CloneVM_Task",
			rule:    simulator.FaultInjectionRule{FaultType: simulator.FaultTypeNoPermission, Message: "kiln may not clone"},
			calls:   1,
			wantErr: []string{`vsphere: clone "rt-workers-0": kiln may not clone (NoPermission)`},
		},
		{
			name:    "clone without capacity fails at once",
			method:  "CloneVM_Task",
			rule:    simulator.FaultInjectionRule{FaultType: simulator.FaultTypeInsufficientResourcesFault, Message: "no memory left"},
			calls:   1,
			wantErr: []string{`vsphere: clone "rt-workers-0": no memory left (InsufficientResourcesFault)`},
		},
		{
			name:    "power on that keeps failing gives up after the last attempt",
			method:  "PowerOnVM_Task",
			rule:    simulator.FaultInjectionRule{FaultType: simulator.FaultTypeGeneric, Message: "host busy"},
			calls:   4,
			wantErr: []string{`vsphere: power on "rt-workers-0": retries exhausted after 4 attempts: host busy (SystemError)`},
			exhaust: true,
			off:     true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newSim(t, "vpx")
			spec := h.spec("rt", "workers", 0)
			if tc.off {
				h.createOff(t, spec)
			}
			p := h.newProvider(t)
			c := count(p)
			rule := tc.rule
			rule.MethodName, rule.ObjectType, rule.ObjectName, rule.Probability = tc.method, "VirtualMachine", "*", 1
			h.faults(&rule)
			m, err := p.Create(t.Context(), spec)
			if got := c.calls(tc.method); got != tc.calls {
				t.Errorf("%s called %d times, want %d", tc.method, got, tc.calls)
			}
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Create: %v", err)
				}
				if m.State != provisioner.StateRunning {
					t.Errorf("State = %s, want running", m.State)
				}
				return
			}
			if err == nil {
				t.Fatal("Create succeeded, want an error")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if errors.Is(err, ErrRetriesExhausted) != tc.exhaust {
				t.Errorf("errors.Is(%v, ErrRetriesExhausted) = %t, want %t", err, !tc.exhaust, tc.exhaust)
			}
			if !fault.Is(err, rule.Fault) && rule.Fault != nil {
				t.Errorf("fault.Is(%v, %T) = false", err, rule.Fault)
			}
		})
	}
}

func TestRetryStopsWhenCancelled(t *testing.T) {
	h := newSim(t, "vpx")
	cfg := h.cfg
	cfg.Retry = Retry{Attempts: 100, Initial: time.Hour}
	h.createOff(t, h.spec("rt", "workers", 0))
	p := h.newProviderWith(t, cfg)
	h.faults(&simulator.FaultInjectionRule{MethodName: "PowerOnVM_Task", ObjectType: "*", ObjectName: "*", Probability: 1,
		FaultType: simulator.FaultTypeGeneric, Message: "host busy"})
	// Long enough for the clone to land under load; the hour-long backoff after the first PowerOn fault
	// is what the deadline must cut short.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := p.Create(ctx, h.spec("rt", "workers", 0))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "host busy") {
		t.Fatalf("Create = %v, want the deadline and the last fault", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Fatalf("Create took %s: the backoff ignored the context", d)
	}
}

func TestConcurrentCreateRaces(t *testing.T) {
	// Several goroutines and a second controller create one name: every clone but one fails with
	// DuplicateName and returns the winner's VM.
	h := newSim(t, "vpx")
	p1, p2 := h.newProvider(t), h.newProvider(t)
	c1, c2 := count(p1), count(p2)
	// Slow clones down, so that every creator has looked the name up and found nothing before the
	// first clone lands.
	h.model.DelayConfig.MethodDelay = map[string]int{"CloneVM_Task": 200}
	spec := h.spec("race", "workers", 0)
	const n = 6
	errs := make([]error, n)
	ms := make([]provisioner.Machine, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		p := p1
		if i%2 == 1 {
			p = p2
		}
		wg.Go(func() {
			<-start
			ms[i], errs[i] = p.Create(t.Context(), spec)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if clones := c1.calls("CloneVM_Task") + c2.calls("CloneVM_Task"); clones < 2 {
		t.Fatalf("%d clones started, want several racing", clones)
	}
	list, err := p1.List(t.Context(), "race")
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v; want one machine", list, err)
	}
	for i, m := range ms {
		if m.Name != spec.Name || m.Created != list[0].Created {
			t.Errorf("Create #%d returned %+v, want the one machine %+v", i, m, list[0])
		}
	}
}

func TestCreateOwnership(t *testing.T) {
	h := newSim(t, "vpx")
	p := h.newProvider(t)
	ctx := t.Context()

	// A machine of another cluster holds the name.
	theirs := h.spec("b", "workers", 0)
	theirs.Name = "shared-0"
	if _, err := p.Create(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	mine := h.spec("a", "workers", 0)
	mine.Name = "shared-0"
	if _, err := p.Create(ctx, mine); !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("Create over another cluster's VM: %v, want ErrNameTaken naming cluster b", err)
	}

	// A VM that is not kiln's, in kiln's folder.
	admin := object.NewSearchIndex(h.admin)
	tmplRef, err := admin.FindByInventoryPath(ctx, "/DC0/vm/"+h.template)
	if err != nil || tmplRef == nil {
		t.Fatalf("template: %v", err)
	}
	folderRef, err := admin.FindByInventoryPath(ctx, "/DC0/vm/kiln")
	if err != nil || folderRef == nil {
		t.Fatalf("folder: %v", err)
	}
	pool := p.pool
	wait(t, "clone a foreign VM", func() (*object.Task, error) {
		return object.NewVirtualMachine(h.admin, tmplRef.Reference()).Clone(ctx, folderRef.(*object.Folder), "not-kiln",
			types.VirtualMachineCloneSpec{Location: types.VirtualMachineRelocateSpec{Pool: &pool}, PowerOn: true})
	})
	foreign := h.spec("a", "workers", 1)
	foreign.Name = "not-kiln"
	if _, err := p.Create(ctx, foreign); !errors.Is(err, ErrNotKiln) {
		t.Errorf("Create over a foreign VM: %v, want ErrNotKiln", err)
	}
	if err := p.Delete(ctx, "not-kiln"); !errors.Is(err, ErrNotKiln) {
		t.Errorf("Delete of a foreign VM: %v, want ErrNotKiln", err)
	}
	if err := p.Stop(ctx, "not-kiln"); !errors.Is(err, ErrNotKiln) {
		t.Errorf("Stop of a foreign VM: %v, want ErrNotKiln", err)
	}
	if err := p.ClearIgnition(ctx, "not-kiln"); !errors.Is(err, ErrNotKiln) {
		t.Errorf("ClearIgnition of a foreign VM: %v, want ErrNotKiln", err)
	}
	if h.vm(t, "not-kiln", "runtime.powerState").Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		t.Error("the foreign VM was powered off")
	}
	if ms, err := p.List(ctx, ""); err != nil || len(ms) != 0 {
		t.Errorf("List of the empty cluster = %v, %v: unlabelled VMs must not show", ms, err)
	}
}

func TestCreatePowersOnAStoppedMachine(t *testing.T) {
	// A controller that crashed between clone and power-on leaves a VM that is off: creating the
	// machine again powers it on.
	h := newSim(t, "esx")
	p := h.newProvider(t)
	spec := h.spec("po", "workers", 0)
	if _, err := p.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(t.Context(), spec.Name); err != nil {
		t.Fatal(err)
	}
	m, err := p.Create(t.Context(), spec)
	if err != nil || m.State != provisioner.StateRunning {
		t.Fatalf("Create of a stopped machine = %+v, %v; want it running", m, err)
	}
}

func TestLinkedClone(t *testing.T) {
	h := newSim(t, "vpx")
	cfg := h.cfg
	cfg.LinkedClone = true
	p := h.newProviderWith(t, cfg)
	c := count(p)
	if _, err := p.Create(t.Context(), h.spec("lc", "workers", 0)); err != nil {
		t.Fatal(err)
	}
	snap := h.vm(t, h.template, "snapshot").Snapshot.CurrentSnapshot
	if len(c.clones) != 1 {
		t.Fatalf("%d clones, want 1", len(c.clones))
	}
	cs := c.clones[0]
	if cs.Snapshot == nil || *cs.Snapshot != *snap || cs.Location.DiskMoveType != string(types.VirtualMachineRelocateDiskMoveOptionsCreateNewChildDiskBacking) {
		t.Errorf("linked clone spec: snapshot %v (want %v), disk move %q", cs.Snapshot, snap, cs.Location.DiskMoveType)
	}

	// A template without a snapshot cannot be linked from.
	ctx := t.Context()
	other := object.NewVirtualMachine(h.admin, h.vm(t, "DC0_H0_VM1", "name").Self)
	wait(t, "power off", func() (*object.Task, error) { return other.PowerOff(ctx) })
	spec := h.spec("lc", "workers", 1)
	spec.Image = "DC0_H0_VM1"
	if _, err := p.Create(ctx, spec); !errors.Is(err, ErrNoSnapshot) || !strings.Contains(err.Error(), `template "DC0_H0_VM1"`) {
		t.Errorf("linked clone of a template without a snapshot: %v, want ErrNoSnapshot naming it", err)
	}

	// A full clone copies the disks.
	full := h.newProvider(t)
	fc := count(full)
	if _, err := full.Create(ctx, h.spec("lc", "workers", 2)); err != nil {
		t.Fatal(err)
	}
	if cs := fc.clones[0]; cs.Snapshot != nil || cs.Location.DiskMoveType != "" {
		t.Errorf("full clone spec: snapshot %v, disk move %q", cs.Snapshot, cs.Location.DiskMoveType)
	}
}

func TestListStatesAndAddresses(t *testing.T) {
	h := newSim(t, "vpx")
	p := h.newProvider(t)
	ctx := t.Context()
	before := time.Now().Add(-time.Minute)
	h.populate(t, p, "st", 5)
	names := func(i int) string { return provisioner.MachineName("st", "workers", i) }

	if err := p.Stop(ctx, names(1)); err != nil {
		t.Fatal(err)
	}
	wait(t, "suspend", func() (*object.Task, error) {
		return object.NewVirtualMachine(h.admin, h.vm(t, names(2), "name").Self).Suspend(ctx)
	})
	h.setVM(t, names(3), types.PropertyChange{Name: "runtime.connectionState", Val: types.VirtualMachineConnectionStateOrphaned})
	h.setVM(t, names(4), types.PropertyChange{Name: "runtime.connectionState", Val: types.VirtualMachineConnectionStateDisconnected})
	h.setVM(t, names(0), types.PropertyChange{Name: "guest.ipAddress", Val: "10.0.0.17"})

	ms, err := p.List(ctx, "st")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Name    string
		State   provisioner.State
		Address string
	}
	var got []row
	for _, m := range ms {
		got = append(got, row{m.Name, m.State, m.Address})
		if m.Created.Before(before) || m.Created.After(time.Now().Add(time.Minute)) {
			t.Errorf("%s Created = %s, want about now", m.Name, m.Created)
		}
	}
	want := []row{
		{names(0), provisioner.StateRunning, "10.0.0.17"},
		{names(1), provisioner.StateStopped, ""},
		{names(2), provisioner.StateStopped, ""},
		{names(3), provisioner.StateError, ""},
		{names(4), provisioner.StateRunning, ""},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("List (-want +got):\n%s", d)
	}

	// Delete takes a suspended machine too.
	if err := p.Delete(ctx, names(2)); err != nil {
		t.Fatal(err)
	}
}

func TestListRoundTrips(t *testing.T) {
	h := newSim(t, "vpx")
	p := h.newProvider(t)
	h.populate(t, p, "other", 3) // another cluster in the same folder
	trips := func(want int) int64 {
		t.Helper()
		c := count(p)
		defer func() { p.client.RoundTripper = c.rt }()
		ms, err := p.List(t.Context(), "rt")
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != want {
			t.Fatalf("List = %d machines, want %d", len(ms), want)
		}
		return c.n.Load()
	}
	h.populate(t, p, "rt", 10)
	small := trips(10)
	if err := createAll(t.Context(), p, h, "rt", 10, 200, 8); err != nil {
		t.Fatal(err)
	}
	large := trips(200)
	if small != large || large > 5 {
		t.Errorf("List made %d round trips over 10 VMs and %d over 200, want the same number, at most 5", small, large)
	}
	t.Logf("List: %d round trips over 10 and over 200 VMs", large)
}

func TestNewErrors(t *testing.T) {
	h := newSim(t, "vpx")
	const secret = "s3cret-Pa55"
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   []string
		is     error
	}{
		{
			name:   "every missing field at once",
			change: func(c *Config) { *c = Config{Password: secret} },
			want:   []string{"vsphere: server: is required", "vsphere: datacenter: is required", "vsphere: datastore: is required", "vsphere: network: is required", "vsphere: username: is required"},
			is:     ErrInvalidConfig,
		},
		{
			name:   "credentials in the URL",
			change: func(c *Config) { c.Server = "https://admin:" + secret + "@" + c.Server + "/sdk" },
			want:   []string{"vsphere: server: holds credentials"},
			is:     ErrInvalidConfig,
		},
		{
			name:   "an unparsable URL that holds a password",
			change: func(c *Config) { c.Server = "https://admin:" + secret + "@vc:port/sdk" },
			want:   []string{"vsphere: server: not a URL or host name"},
			is:     ErrInvalidConfig,
		},
		{
			name:   "both cluster and resource pool",
			change: func(c *Config) { c.ResourcePool = "DC0_C0/Resources" },
			want:   []string{"vsphere: resourcePool: set either cluster or resourcePool"},
			is:     ErrInvalidConfig,
		},
		{
			name:   "wrong password",
			change: func(c *Config) { c.Password = secret },
			want:   []string{"vsphere: log in to", `as "kiln"`, "(InvalidLogin)"},
		},
		{
			name:   "untrusted certificate",
			change: func(c *Config) { c.CAFile = "" },
			want:   []string{"vsphere: connect to", "certificate"},
		},
		{
			name:   "wrong thumbprint",
			change: func(c *Config) { c.CAFile, c.Thumbprint = "", strings.Repeat("AB:", 31)+"AB" },
			want:   []string{"vsphere: connect to", "thumbprint"},
		},
		{
			name:   "malformed thumbprint",
			change: func(c *Config) { c.CAFile, c.Thumbprint = "", "AA:BB:CC" },
			want:   []string{`vsphere: thumbprint: "AA:BB:CC" is not a SHA-256 or SHA-1 thumbprint`},
			is:     ErrInvalidConfig,
		},
		{
			name:   "missing CA file",
			change: func(c *Config) { c.CAFile = "/nonexistent/ca.pem" },
			want:   []string{`vsphere: caFile "/nonexistent/ca.pem"`},
		},
		{
			name:   "missing datastore",
			change: func(c *Config) { c.Datastore = "nope" },
			want:   []string{`vsphere: datastore "nope": not found`},
			is:     ErrNotFound,
		},
		{
			name:   "missing port group",
			change: func(c *Config) { c.Network = "private" },
			want:   []string{`vsphere: network "private": not found`},
			is:     ErrNotFound,
		},
		{
			name:   "missing folder",
			change: func(c *Config) { c.Folder = "/DC0/vm/nope" },
			want:   []string{`vsphere: folder "/DC0/vm/nope": not found`},
			is:     ErrNotFound,
		},
		{
			name:   "missing cluster",
			change: func(c *Config) { c.Cluster = "C9" },
			want:   []string{`vsphere: cluster "C9": not found`},
			is:     ErrNotFound,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := h.cfg
			tc.change(&cfg)
			p, err := New(t.Context(), cfg, h.addrs)
			if err == nil {
				_ = p.Close(t.Context())
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q holds the password", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
		})
	}
}

// TestThumbprint pins the simulator's TLS certificate by its thumbprint, SHA-256 and SHA-1, in the
// forms people paste (openssl's upper case with colons, lower case, bare hex).
func TestThumbprint(t *testing.T) {
	h := newSim(t, "esx")
	cert := h.server.Certificate()
	sum := sha256.Sum256(cert.Raw)
	for _, tc := range []struct{ name, thumbprint string }{
		{name: "sha-256 as govmomi prints it", thumbprint: soap.ThumbprintSHA256(cert)},
		{name: "sha-256 bare lower-case hex", thumbprint: hex.EncodeToString(sum[:])},
		{name: "sha-256 lower case with colons", thumbprint: strings.ToLower(soap.ThumbprintSHA256(cert))},
		{name: "sha-1", thumbprint: soap.ThumbprintSHA1(cert)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := h.cfg
			cfg.CAFile = ""
			cfg.Thumbprint = tc.thumbprint
			p := h.newProviderWith(t, cfg)
			if _, err := p.List(t.Context(), "any"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConfigHidesPassword(t *testing.T) {
	const secret = "s3cret-Pa55"
	c := Config{Username: "kiln", Password: secret}
	c.Server = "vc.example"
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("connecting", "config", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%s", &c), logged.String()} {
		if strings.Contains(s, secret) {
			t.Errorf("%q holds the password", s)
		}
		if !strings.Contains(s, "vc.example") || !strings.Contains(s, "[redacted]") {
			t.Errorf("%q does not describe the config", s)
		}
	}
}

func TestCheckSpec(t *testing.T) {
	ok := provisioner.MachineSpec{Cluster: "c", Name: "c-workers-0", Role: "worker", Pool: "workers", Image: "tmpl", Ignition: []byte("{}")}
	for _, tc := range []struct {
		name   string
		change func(s *provisioner.MachineSpec)
		want   []string
		is     error
	}{
		{"valid", func(*provisioner.MachineSpec) {}, nil, nil},
		{"everything missing", func(s *provisioner.MachineSpec) { *s = provisioner.MachineSpec{} },
			[]string{"name: is required", "cluster: is required", "image: is required", "ignition: is empty"}, nil},
		{"name too long", func(s *provisioner.MachineSpec) { s.Name = strings.Repeat("a", 81) }, []string{"name: 81 characters, vSphere allows 80"}, nil},
		{"name with a slash", func(s *provisioner.MachineSpec) { s.Name = "a/b" }, []string{`name: must not contain "/"`}, nil},
		{"ignition too large", func(s *provisioner.MachineSpec) { s.Ignition = make([]byte, 48<<10+1) },
			[]string{`vsphere: create "c-workers-0": ignition: 65540 bytes base64, guestinfo takes 65536`}, ErrIgnitionTooLarge},
		{"ignition just fits", func(s *provisioner.MachineSpec) { s.Ignition = make([]byte, 48<<10) }, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.change(&s)
			err := checkSpec(s)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("checkSpec: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("checkSpec passed, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
		})
	}
}

func TestMachineState(t *testing.T) {
	on, off, sus := types.VirtualMachinePowerStatePoweredOn, types.VirtualMachinePowerStatePoweredOff, types.VirtualMachinePowerStateSuspended
	for _, tc := range []struct {
		power types.VirtualMachinePowerState
		conn  types.VirtualMachineConnectionState
		want  provisioner.State
	}{
		{on, types.VirtualMachineConnectionStateConnected, provisioner.StateRunning},
		{off, types.VirtualMachineConnectionStateConnected, provisioner.StateStopped},
		{sus, types.VirtualMachineConnectionStateConnected, provisioner.StateStopped},
		{on, types.VirtualMachineConnectionStateDisconnected, provisioner.StateRunning},
		{off, types.VirtualMachineConnectionStateDisconnected, provisioner.StateStopped},
		{on, types.VirtualMachineConnectionStateOrphaned, provisioner.StateError},
		{off, types.VirtualMachineConnectionStateInaccessible, provisioner.StateError},
		{"", types.VirtualMachineConnectionStateInvalid, provisioner.StateError},
		{"", "", provisioner.StatePending},
	} {
		if got := machineState(tc.power, tc.conn); got != tc.want {
			t.Errorf("machineState(%q, %q) = %s, want %s", tc.power, tc.conn, got, tc.want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	r := Retry{Initial: 100 * time.Millisecond, Max: time.Second}.withDefaults()
	for _, tc := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second},
		{50, 500 * time.Millisecond, time.Second},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := r.delay(tc.attempt)
			if d < tc.min || d > tc.max {
				t.Fatalf("delay(%d) = %s, want within [%s, %s]", tc.attempt, d, tc.min, tc.max)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("delay(%d) is always %v: no jitter", tc.attempt, seen)
		}
	}
	if got := (Retry{}).withDefaults(); got != (Retry{Attempts: 5, Initial: time.Second, Max: 30 * time.Second}) {
		t.Errorf("defaults = %+v", got)
	}
}

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&vimError{msg: "x", err: fakeTaskErr(&types.TaskInProgress{})}, true},
		{fakeTaskErr(&types.SystemError{Reason: "x"}), true},
		{fakeTaskErr(&types.HostCommunication{}), true},
		{fakeTaskErr(&types.NoPermission{}), false},
		{fakeTaskErr(&types.DuplicateName{}), false},
		{fakeTaskErr(&types.InvalidArgument{}), false},
		{context.Canceled, false},
		{fmt.Errorf("post: %w", &timeoutErr{}), true},
		{errors.New("something else"), false},
	} {
		if got := transient(tc.err); got != tc.want {
			t.Errorf("transient(%v) = %t, want %t", tc.err, got, tc.want)
		}
	}
}

// fakeTaskErr is the error a task that failed with f returns.
func fakeTaskErr(f types.BaseMethodFault) error {
	return task.Error{LocalizedMethodFault: &types.LocalizedMethodFault{Fault: f, LocalizedMessage: "failed"}}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestSessionLoss(t *testing.T) {
	// vCenter forgets the session (it expired while idle, vCenter restarted): the provider logs in
	// again, once, however many calls fail together.
	h := newSim(t, "esx")
	p := h.newProvider(t)
	ctx := t.Context()
	h.populate(t, p, "sl", 2)
	old, err := p.session.UserSession(ctx)
	if err != nil || old == nil {
		t.Fatalf("UserSession: %v, %v", old, err)
	}
	if err := session.NewManager(h.admin).TerminateSession(ctx, []string{old.Key}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			ms, err := p.List(ctx, "sl")
			if err == nil && len(ms) != 2 {
				err = fmt.Errorf("List = %d machines, want 2", len(ms))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("List after the session was lost: %v", err)
	}
	cur, err := p.session.UserSession(ctx)
	if err != nil || cur == nil || cur.Key == old.Key {
		t.Fatalf("session after the loss: %v, %v; want a new one", cur, err)
	}
	if n := p.client.RoundTripper.(*relogin).gen; n != 1 {
		t.Errorf("%d logins after the loss, want 1", n)
	}

	// A lost session is reported, not retried forever, when logging in fails too.
	h.faults(&simulator.FaultInjectionRule{MethodName: "Login", ObjectType: "*", ObjectName: "*", Probability: 1, FaultType: simulator.FaultTypeNotAuthenticated, Message: "directory down"})
	cur, _ = p.session.UserSession(ctx)
	if err := session.NewManager(h.admin).TerminateSession(ctx, []string{cur.Key}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.List(ctx, "sl"); !fault.Is(err, &types.NotAuthenticated{}) {
		t.Errorf("List when the login fails: %v, want NotAuthenticated", err)
	}
}
