package vsphere

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_5"
	"github.com/vmware/govmomi/simulator"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/lint"
	"github.com/kiln-dev/kiln/bootstrap/privatenet"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/addrpool"
	"github.com/kiln-dev/kiln/state/statetest"
)

// guestinfoConfig decodes a guestinfo.ignition.config.data value as Ignition's vmware provider reads
// it, checks that the outer config merges inner, whole, and returns the files the outer config
// writes.
func guestinfoConfig(t *testing.T, data string, inner []byte) map[string]string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		t.Fatalf("guestinfo is not base64: %v", err)
	}
	cfg, rpt, err := v3_5.Parse(raw)
	if err != nil || len(rpt.Entries) > 0 {
		t.Fatalf("guestinfo config: %v %s", err, rpt)
	}
	if len(cfg.Ignition.Config.Merge) != 1 {
		t.Fatalf("guestinfo config merges %d configs, want 1", len(cfg.Ignition.Config.Merge))
	}
	m := cfg.Ignition.Config.Merge[0]
	z, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(*m.Source, "data:;base64,"))
	if err != nil || m.Compression == nil || *m.Compression != "gzip" {
		t.Fatalf("merged config: %v, compression %v; want gzip", err, m.Compression)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	merged, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(merged, inner) {
		t.Fatalf("merged config = %q (%v), want the machine's config whole", merged, err)
	}
	files := map[string]string{}
	for _, f := range cfg.Storage.Files {
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(*f.Contents.Source, "data:;base64,"))
		if err != nil {
			t.Fatal(err)
		}
		files[f.Path] = string(b)
	}
	return files
}

func TestMaxIgnitionSizeIsTheLintLimit(t *testing.T) {
	if l := lint.Limits["vsphere"]; l.Bytes != MaxIgnitionSize || !l.Base64 {
		t.Errorf("lint.Limits[vsphere] = %+v, MaxIgnitionSize = %d: they must agree", l, MaxIgnitionSize)
	}
}

func TestMACFor(t *testing.T) {
	for addr, want := range map[string]string{
		"10.0.0.3":     "00:50:56:00:00:03",
		"10.20.30.40":  "00:50:56:14:1e:28",
		"192.168.1.77": "00:50:56:28:01:4d", // 168 = 0xa8, its low 6 bits 0x28
	} {
		if got := macFor(netip.MustParseAddr(addr)); got != want {
			t.Errorf("macFor(%s) = %s, want %s", addr, got, want)
		}
	}
}

// TestAddresses: Reserve gives a machine its address before it exists, the same one again, another
// machine another; Create makes the VM with it, and Delete releases it once the VM is gone.
func TestAddresses(t *testing.T) {
	for _, kind := range simKinds {
		t.Run(kind, func(t *testing.T) {
			h := newSim(t, kind)
			p := h.newProvider(t)
			ctx := t.Context()
			reserve := func(cluster, name, want string) {
				t.Helper()
				got, err := p.Reserve(ctx, cluster, name)
				if err != nil || got.String() != want {
					t.Fatalf("Reserve(%s, %s) = %v, %v; want %s", cluster, name, got, err, want)
				}
			}
			cp := h.spec("ad", provisioner.ControlPlanePool, 0)
			w0 := h.spec("ad", "workers", 0)
			reserve("ad", cp.Name, "10.0.0.3") // .1 the gateway, .2 the API endpoint
			reserve("ad", cp.Name, "10.0.0.3")
			reserve("ad", w0.Name, "10.0.0.4")

			// Create uses the reserved address; a second provider over the same store sees it too.
			if _, err := h.newProvider(t).Create(ctx, w0); err != nil {
				t.Fatal(err)
			}
			files := guestinfoConfig(t, extraConfigMap(h.vm(t, w0.Name, "config.extraConfig").Config.ExtraConfig)[KeyIgnitionData], w0.Ignition)
			if !strings.Contains(files[privatenet.NetworkFile], "Address=10.0.0.4/16\n") {
				t.Errorf("%s of %s:\n%s\nwant Address=10.0.0.4/16", privatenet.NetworkFile, w0.Name, files[privatenet.NetworkFile])
			}
			// /etc/hosts names every machine of the cluster reserved so far.
			if hosts := files[privatenet.HostsFile]; !strings.Contains(hosts, "10.0.0.4\t"+w0.Name+"\n") || !strings.Contains(hosts, "10.0.0.3\t"+cp.Name+"\n") {
				t.Errorf("%s of %s:\n%s", privatenet.HostsFile, w0.Name, hosts)
			}

			// A machine created without a reservation gets the next address.
			w1 := h.spec("ad", "workers", 1)
			if _, err := p.Create(ctx, w1); err != nil {
				t.Fatal(err)
			}
			reserve("ad", w1.Name, "10.0.0.5")

			// Delete releases, after the VM is gone; the lowest free address is given next.
			if err := p.Delete(ctx, w0.Name); err != nil {
				t.Fatal(err)
			}
			reserve("ad", h.spec("ad", "workers", 2).Name, "10.0.0.4")
			// A reservation whose machine was never made goes with Delete too.
			if err := p.Delete(ctx, cp.Name); err != nil {
				t.Fatal(err)
			}
			holds, err := p.addrs.Holds()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, h := range holds {
				names = append(names, h.Name)
			}
			if got, want := strings.Join(names, " "), "ad-workers-2 ad-workers-1"; got != want {
				t.Errorf("held after the deletes: %s, want %s", got, want)
			}
		})
	}
}

// A machine whose clone failed, or whose creator crashed, keeps its reservation: the next Create of
// it, by the same kiln or the next, makes it with the same address, and no other machine is given
// that address meanwhile.
func TestAddressKeptForRetries(t *testing.T) {
	h := newSim(t, "vpx")
	ctx := t.Context()
	w0, w1 := h.spec("rt", "workers", 0), h.spec("rt", "workers", 1)
	h.faults(&simulator.FaultInjectionRule{MethodName: "CloneVM_Task", ObjectType: "VirtualMachine", ObjectName: "*", Probability: 1,
		FaultType: simulator.FaultTypeNoPermission, Message: "kiln may not clone", MaxCount: 1})
	if _, err := h.newProvider(t).Create(ctx, w0); err == nil || !strings.Contains(err.Error(), "kiln may not clone") {
		t.Fatalf("Create = %v, want the injected fault", err)
	}
	next := h.newProvider(t) // the next kiln, with the same state store
	for _, spec := range []provisioner.MachineSpec{w1, w0} {
		if _, err := next.Create(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]string{w0.Name: "Address=10.0.0.3/16\n", w1.Name: "Address=10.0.0.4/16\n"} {
		files := guestinfoConfig(t, extraConfigMap(h.vm(t, name, "config.extraConfig").Config.ExtraConfig)[KeyIgnitionData], w0.Ignition)
		if !strings.Contains(files[privatenet.NetworkFile], want) {
			t.Errorf("%s of %s:\n%s\nwant %q", privatenet.NetworkFile, name, files[privatenet.NetworkFile], want)
		}
	}
}

func TestReserveErrors(t *testing.T) {
	h := newSim(t, "esx")
	p := h.newProvider(t)
	var err error
	// One address to give: 10.9.0.2 (.1 the gateway, .3 broadcast).
	if p.addrs, err = (Addresses{Store: statetest.NewEmpty(), Subnet: netip.MustParsePrefix("10.9.0.0/30")}).pool(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := p.Reserve(ctx, "x", "x-workers-0"); err != nil {
		t.Fatal(err)
	}
	_, err = p.Reserve(ctx, "x", "x-workers-1")
	if !errors.Is(err, addrpool.ErrExhausted) {
		t.Errorf("Reserve in a full subnet: %v; want ErrExhausted", err)
	}
	for _, w := range []string{`"x-workers-1"`, "spec.network.privateSubnets[0]", "10.9.0.0/30: all 1 addresses"} {
		if !strings.Contains(fmt.Sprint(err), w) {
			t.Errorf("Reserve in a full subnet: %v; want it to name %s", err, w)
		}
	}
	_, err = p.Create(ctx, h.spec("x", "workers", 1))
	if !errors.Is(err, addrpool.ErrExhausted) || !strings.Contains(err.Error(), `clone "x-workers-1"`) || !strings.Contains(err.Error(), "spec.network.privateSubnets[0]") {
		t.Errorf("Create in a full subnet: %v; want ErrExhausted naming the machine and the field", err)
	}
	if ms, err := p.List(ctx, "x"); err != nil || len(ms) != 0 {
		t.Errorf("List after a Create that found no address = %v, %v; want no machine", ms, err)
	}

	broken := errors.New("state file on fire")
	if p.addrs, err = (Addresses{Store: statetest.Broken{Err: broken}, Subnet: simSubnet, Endpoint: simEndpoint}).pool(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Reserve(ctx, "x", "x-workers-0"); !errors.Is(err, broken) {
		t.Errorf("Reserve on a broken store: %v", err)
	}
	if _, err := p.Create(ctx, h.spec("x", "workers", 2)); !errors.Is(err, broken) {
		t.Errorf("Create on a broken store: %v", err)
	}
	if err := p.Delete(ctx, "x-workers-2"); !errors.Is(err, broken) {
		t.Errorf("Delete on a broken store: %v; want the store's error (the address is not released)", err)
	}
}

// A config that fits guestinfo only compressed is handed over; one that does not fit even so is
// refused before anything is cloned.
func TestGuestinfoLimit(t *testing.T) {
	h := newSim(t, "esx")
	p := h.newProvider(t)
	ctx := t.Context()
	config := func(payload []byte) []byte {
		return []byte(`{"ignition":{"version":"3.5.0"},"storage":{"files":[{"path":"/etc/kiln/x","contents":{"source":"data:;base64,` +
			base64.StdEncoding.EncodeToString(payload) + `"}}]}}`)
	}
	fits := h.spec("gl", "workers", 0)
	fits.Ignition = config(bytes.Repeat([]byte("[Unit]\nDescription=kiln\n"), 1400)) // about 45 KiB, 60 KiB base64
	if _, err := p.Create(ctx, fits); err != nil {
		t.Fatalf("Create of a config that fits compressed: %v", err)
	}
	tooLarge := h.spec("gl", "workers", 1)
	// Random bytes, base64 in the config, compress to about 3/4: a config just within the limit of
	// checkSpec grows by about 1.35 once wrapped, compressed and encoded twice.
	noise := make([]byte, 36700)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(noise)
	tooLarge.Ignition = config(noise)
	if err := checkSpec(tooLarge); err != nil {
		t.Fatalf("the test's config must pass checkSpec: %v", err)
	}
	_, err := p.Create(ctx, tooLarge)
	if !errors.Is(err, ErrIgnitionTooLarge) || !strings.Contains(err.Error(), "with the network config") {
		t.Fatalf("Create of a config too large once wrapped: %v; want ErrIgnitionTooLarge", err)
	}
	if ms, err := p.List(ctx, "gl"); err != nil || len(ms) != 1 {
		t.Errorf("List = %v, %v; want only the machine that fits", ms, err)
	}
}

func TestAddressesFor(t *testing.T) {
	st := statetest.NewEmpty()
	c := &v1alpha1.Cluster{}
	c.Spec.Network.PrivateSubnets = []string{"10.1.0.0/24", "10.1.1.0/24"}
	c.Spec.Network.APIEndpoint.Address = "10.1.0.5"
	a, err := AddressesFor(c, st)
	if err != nil || a.Subnet.String() != "10.1.0.0/24" || a.Endpoint.String() != "10.1.0.5" || a.Store != st {
		t.Fatalf("AddressesFor = %+v, %v", a, err)
	}
	for _, tc := range []struct {
		name    string
		subnets []string
		address string
		// want are the spec fields the error names, in order, one finding each.
		want []string
	}{
		{name: "no subnet", want: []string{"spec.network.privateSubnets: required"}},
		{name: "not a prefix", subnets: []string{"10.1.0.0"}, address: "10.1.0.5", want: []string{"spec.network.privateSubnets[0]: netip.ParsePrefix"}},
		{name: "not an address, and not a prefix", subnets: []string{"10.1.0.0"}, address: "api",
			want: []string{"spec.network.privateSubnets[0]: ", "spec.network.apiEndpoint.address: "}},
		{name: "IPv6", subnets: []string{"fd00::/64"}, want: []string{"spec.network.privateSubnets[0]: fd00::/64 is IPv6"}},
		{name: "no room", subnets: []string{"10.1.0.0/31"}, want: []string{"spec.network.privateSubnets[0]: 10.1.0.0/31 leaves no address for a machine"}},
		{name: "no room beside the endpoint", subnets: []string{"10.1.0.0/30"}, address: "10.1.0.2",
			want: []string{"spec.network.privateSubnets[0]: 10.1.0.0/30 leaves no address for a machine besides its network address, its gateway, the API endpoint (10.1.0.2)"}},
		{name: "larger than a /10", subnets: []string{"10.0.0.0/8"}, address: "10.0.0.5", want: []string{"spec.network.privateSubnets[0]: 10.0.0.0/8 is larger than a /10"}},
		{name: "endpoint outside", subnets: []string{"10.1.0.0/24", "10.1.1.0/24"}, address: "10.1.1.5",
			want: []string{"spec.network.apiEndpoint.address: 10.1.1.5 is not in spec.network.privateSubnets[0] (10.1.0.0/24), the port group's subnet"}},
		{name: "endpoint at the gateway", subnets: []string{"10.1.0.0/24"}, address: "10.1.0.1",
			want: []string{"spec.network.apiEndpoint.address: 10.1.0.1 is the first host address of spec.network.privateSubnets[0] (10.1.0.0/24), which vsphere takes as the port group's gateway"}},
		{name: "endpoint at the network address", subnets: []string{"10.1.0.0/24"}, address: "10.1.0.0",
			want: []string{"spec.network.apiEndpoint.address: 10.1.0.0 is the network address"}},
		{name: "endpoint at broadcast", subnets: []string{"10.1.0.0/24"}, address: "10.1.0.255",
			want: []string{"spec.network.apiEndpoint.address: 10.1.0.255 is the broadcast address"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &v1alpha1.Cluster{}
			c.Spec.Network.PrivateSubnets = tc.subnets
			c.Spec.Network.APIEndpoint.Address = tc.address
			_, err := AddressesFor(c, st)
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("AddressesFor: %v; want ErrInvalidConfig", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("AddressesFor: %d findings, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], "vsphere: "+w) {
					t.Errorf("finding %d: %s\nwant it to start with vsphere: %s", i, lines[i], w)
				}
			}
		})
	}

	// New checks Addresses made by hand the same way.
	h := newSim(t, "esx")
	for name, a := range map[string]Addresses{
		"no store":         {Subnet: netip.MustParsePrefix("10.0.0.0/24")},
		"no subnet":        {Store: st},
		"IPv6":             {Store: st, Subnet: netip.MustParsePrefix("fd00::/64")},
		"endpoint outside": {Store: st, Subnet: netip.MustParsePrefix("10.0.0.0/24"), Endpoint: netip.MustParseAddr("10.0.1.5")},
	} {
		if p, err := New(t.Context(), h.cfg, a); !errors.Is(err, ErrInvalidConfig) {
			if p != nil {
				_ = p.Close(t.Context())
			}
			t.Errorf("New with addresses %s: %v; want ErrInvalidConfig", name, err)
		}
	}
}
