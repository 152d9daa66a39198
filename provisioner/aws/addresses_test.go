package aws

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/provisioner/aws/awstest"
)

var ign = []byte(`{"ignition":{"version":"3.5.0"}}`)

// interfacesNamed returns the fake's network interfaces tagged with the machine name.
func interfacesNamed(f *awstest.Server, name string) []awstest.NetworkInterface {
	var out []awstest.NetworkInterface
	for _, n := range f.NetworkInterfaces() {
		if n.Tags[TagName] == name {
			out = append(out, n)
		}
	}
	return out
}

func TestReservedSpec(t *testing.T) {
	for _, tc := range []struct {
		name, cluster, machine string
		want                   provisioner.MachineSpec
		bad                    bool
	}{
		{name: "worker", cluster: "demo", machine: "demo-workers-0",
			want: provisioner.MachineSpec{Cluster: "demo", Name: "demo-workers-0", Role: v1alpha1.RoleWorker, Pool: "workers"}},
		{name: "control plane", cluster: "demo", machine: "demo-control-plane-2",
			want: provisioner.MachineSpec{Cluster: "demo", Name: "demo-control-plane-2", Role: v1alpha1.RoleControlPlane, Pool: provisioner.ControlPlanePool}},
		{name: "pool with dashes", cluster: "demo", machine: "demo-gpu-big-12",
			want: provisioner.MachineSpec{Cluster: "demo", Name: "demo-gpu-big-12", Role: v1alpha1.RoleWorker, Pool: "gpu-big"}},
		{name: "cluster with dashes", cluster: "kt-workers", machine: "kt-workers-control-plane-0",
			want: provisioner.MachineSpec{Cluster: "kt-workers", Name: "kt-workers-control-plane-0", Role: v1alpha1.RoleControlPlane, Pool: provisioner.ControlPlanePool}},
		{name: "pool named like the cluster's prefix", cluster: "kt", machine: "kt-workers-3",
			want: provisioner.MachineSpec{Cluster: "kt", Name: "kt-workers-3", Role: v1alpha1.RoleWorker, Pool: "workers"}},
		{name: "no cluster", cluster: "", machine: "demo-workers-0", bad: true},
		{name: "other cluster", cluster: "demo", machine: "other-workers-0", bad: true},
		{name: "no ordinal", cluster: "demo", machine: "demo-workers", bad: true},
		{name: "no pool", cluster: "demo", machine: "demo-0", bad: true},
		{name: "leading zero", cluster: "demo", machine: "demo-workers-01", bad: true},
		{name: "ordinal not a number", cluster: "demo", machine: "demo-workers-x", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := reservedSpec(tc.cluster, tc.machine)
			if tc.bad {
				if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.machine) {
					t.Errorf("reservedSpec(%q, %q) = %+v, %v; want ErrInvalidSpec naming the machine", tc.cluster, tc.machine, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("reservedSpec(%q, %q) (-want +got):\n%s", tc.cluster, tc.machine, d)
			}
		})
	}
}

// eniOf is a network interface that holds the reserved address of machine name of cluster demo.
func eniOf(name, id, addr string, status ec2types.NetworkInterfaceStatus) ec2types.NetworkInterface {
	return ec2types.NetworkInterface{
		NetworkInterfaceId: aws.String(id), SubnetId: aws.String("subnet-1"), PrivateIpAddress: aws.String(addr), Status: status,
		TagSet: []ec2types.Tag{tag(TagCluster, "demo"), tag(TagName, name), tag(TagResource, resourceAddress)},
	}
}

// instanceOf is a live instance of machine name of cluster.
func instanceOf(cluster, name, id, addr string) ec2types.Instance {
	return ec2types.Instance{
		InstanceId: aws.String(id), SubnetId: aws.String("subnet-1"), PrivateIpAddress: aws.String(addr),
		Tags: []ec2types.Tag{tag(TagCluster, cluster), tag(TagName, name)},
	}
}

func TestHeldAddress(t *testing.T) {
	const name = "demo-workers-0"
	avail, inUse := ec2types.NetworkInterfaceStatusAvailable, ec2types.NetworkInterfaceStatusInUse
	for _, tc := range []struct {
		name string
		ins  []ec2types.Instance
		enis []ec2types.NetworkInterface
		want string // "" for none held
		err  string
	}{
		{name: "nothing"},
		{name: "reserved", enis: []ec2types.NetworkInterface{eniOf(name, "eni-1", "10.0.1.4", avail)}, want: "10.0.1.4"},
		{name: "launched with its interface", ins: []ec2types.Instance{instanceOf("demo", name, "i-1", "10.0.1.4")},
			enis: []ec2types.NetworkInterface{eniOf(name, "eni-1", "10.0.1.4", inUse)}, want: "10.0.1.4"},
		{name: "launched before reserving keeps its own", ins: []ec2types.Instance{instanceOf("demo", name, "i-1", "10.0.1.9")}, want: "10.0.1.9"},
		{name: "its instance wins over a stray interface", ins: []ec2types.Instance{instanceOf("demo", name, "i-1", "10.0.1.9")},
			enis: []ec2types.NetworkInterface{eniOf(name, "eni-1", "10.0.1.4", avail)}, want: "10.0.1.9"},
		{name: "the interface in use wins", enis: []ec2types.NetworkInterface{
			eniOf(name, "eni-1", "10.0.1.4", avail), eniOf(name, "eni-2", "10.0.1.5", inUse)}, want: "10.0.1.5"},
		{name: "else the lowest ID", enis: []ec2types.NetworkInterface{
			eniOf(name, "eni-2", "10.0.1.5", avail), eniOf(name, "eni-1", "10.0.1.4", avail)}, want: "10.0.1.4"},
		{name: "instance of another cluster", ins: []ec2types.Instance{instanceOf("other", name, "i-1", "10.0.1.9")},
			enis: []ec2types.NetworkInterface{eniOf(name, "eni-1", "10.0.1.4", avail)}, want: "10.0.1.4"},
		{name: "interface of another machine", enis: []ec2types.NetworkInterface{eniOf("demo-workers-1", "eni-1", "10.0.1.4", avail)}},
		{name: "bad interface address", enis: []ec2types.NetworkInterface{eniOf(name, "eni-1", "", avail)},
			err: `the reserved address of "demo-workers-0": network interface eni-1 in subnet subnet-1 has private address ""`},
		{name: "bad instance address", ins: []ec2types.Instance{instanceOf("demo", name, "i-1", "10.0.1")},
			err: `the address of "demo-workers-0": instance i-1 in subnet subnet-1 has private address "10.0.1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := heldAddress("demo", name, tc.ins, tc.enis)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || ok {
					t.Errorf("heldAddress = %s, %t, %v; want an error saying %s", got, ok, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if ok {
					t.Errorf("heldAddress = %s, want none held", got)
				}
				return
			}
			if !ok || got != netip.MustParseAddr(tc.want) {
				t.Errorf("heldAddress = %s, %t; want %s", got, ok, tc.want)
			}
		})
	}
}

func TestReservedFits(t *testing.T) {
	eni := eniOf("demo-workers-0", "eni-1", "10.0.1.4", ec2types.NetworkInterfaceStatusAvailable)
	eni.Groups = []ec2types.GroupIdentifier{{GroupId: aws.String("sg-pool")}, {GroupId: aws.String("sg-worker")}}
	spec := provisioner.MachineSpec{Cluster: "demo", Name: "demo-workers-0", Role: v1alpha1.RoleWorker, Pool: "workers"}
	for _, tc := range []struct {
		name   string
		groups []string
		fits   bool
	}{
		{name: "same groups", groups: []string{"sg-pool", "sg-worker"}, fits: true},
		{name: "same groups in another order", groups: []string{"sg-worker", "sg-pool"}, fits: true},
		{name: "the pool's group went", groups: []string{"sg-worker"}},
		{name: "another role's group", groups: []string{"sg-control-plane"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := reservedFits(eni, spec, tc.groups)
			if tc.fits != (err == nil) {
				t.Fatalf("reservedFits: %v, want fits %t", err, tc.fits)
			}
			if err != nil && (!errors.Is(err, ErrDrift) || !strings.Contains(err.Error(), "demo-workers-0") ||
				!strings.Contains(err.Error(), "eni-1") || !strings.Contains(err.Error(), "subnet-1")) {
				t.Errorf("reservedFits: %v, want ErrDrift naming the machine, interface and subnet", err)
			}
		})
	}
}

func TestReserve(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	ctx := t.Context()
	ensureNetwork(t, p, "demo")
	net := p.nets["demo"]
	subnets := map[string]netip.Prefix{}
	for _, s := range f.Subnets() {
		subnets[s.ID] = netip.MustParsePrefix(s.CIDR)
	}

	for _, tc := range []struct {
		name string
		spec provisioner.MachineSpec
	}{
		{name: "worker", spec: workerSpec("demo", 1, nil)},
		{name: "control plane", spec: controlPlaneSpec("demo", 2, nil)},
		{name: "worker of a pool with dashes", spec: provisioner.MachineSpec{Cluster: "demo", Name: "demo-gpu-big-0", Role: "worker", Pool: "gpu-big"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, err := p.Reserve(ctx, "demo", tc.spec.Name)
			if err != nil {
				t.Fatal(err)
			}
			again, err := newProvider(t, f).Reserve(ctx, "demo", tc.spec.Name)
			if err != nil {
				t.Fatal(err)
			}
			if again != addr {
				t.Errorf("second Reserve: %s, first %s", again, addr)
			}
			enis := interfacesNamed(f, tc.spec.Name)
			if len(enis) != 1 {
				t.Fatalf("%d network interfaces for %s, want 1: %+v", len(enis), tc.spec.Name, enis)
			}
			eni := enis[0]
			subnet, groups, err := net.place(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if eni.SubnetID != subnet || !subnets[subnet].Contains(addr) || eni.PrivateIP != addr.String() {
				t.Errorf("interface %s in %s with %s, Reserve said %s; want the machine's subnet %s (%s)", eni.ID, eni.SubnetID, eni.PrivateIP, addr, subnet, subnets[subnet])
			}
			if d := cmp.Diff(groups, eni.SecurityGroups); d != "" {
				t.Errorf("security groups (-want +got):\n%s", d)
			}
			for k, v := range map[string]string{TagCluster: "demo", TagName: tc.spec.Name, TagResource: resourceAddress, TagRole: tc.spec.Role, TagPool: tc.spec.Pool} {
				if eni.Tags[k] != v {
					t.Errorf("tag %s = %q, want %q", k, eni.Tags[k], v)
				}
			}
		})
	}
	if n := f.Calls("CreateNetworkInterface"); n != 3 {
		t.Errorf("%d CreateNetworkInterface calls for 3 names reserved twice each", n)
	}
	ms, err := p.List(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 0 {
		t.Errorf("List counts reserved addresses as machines: %v", ms)
	}
}

func TestReserveConcurrently(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	ensureNetwork(t, p, "demo")
	name := provisioner.MachineName("demo", "workers", 0)
	addrs := make([]netip.Addr, 8)
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i := range addrs {
		wg.Go(func() { addrs[i], errs[i] = p.Reserve(t.Context(), "demo", name) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs[1:] {
		if a != addrs[0] {
			t.Errorf("concurrent reserves returned %v", addrs)
			break
		}
	}
	if enis := interfacesNamed(f, name); len(enis) != 1 {
		t.Errorf("concurrent reserves made %d network interfaces: %+v", len(enis), enis)
	}
}

func TestReserveErrors(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	ensureNetwork(t, p, "demo")
	for _, tc := range []struct {
		name, cluster, machine string
		is                     error
		says                   string
	}{
		{name: "no cluster", cluster: "", machine: "demo-workers-0", is: ErrInvalidSpec, says: "cluster is empty"},
		{name: "name of another cluster", cluster: "demo", machine: "other-workers-0", is: ErrInvalidSpec, says: "name is not <cluster>-<pool>-<ordinal>"},
		{name: "name without an ordinal", cluster: "demo", machine: "demo-workers", is: ErrInvalidSpec, says: "name is not"},
		{name: "name without a pool", cluster: "demo", machine: "demo-0", is: ErrInvalidSpec, says: "name is not"},
		{name: "ordinal with a leading zero", cluster: "demo", machine: "demo-workers-01", is: ErrInvalidSpec, says: "name is not"},
		{name: "no network", cluster: "nonet", machine: "nonet-workers-0", is: ErrNoNetwork, says: "run EnsureNetwork first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Reserve(t.Context(), tc.cluster, tc.machine)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Reserve(%q, %q): %v, want %v saying %q", tc.cluster, tc.machine, err, tc.is, tc.says)
			}
		})
	}
	if n := f.Calls("CreateNetworkInterface"); n != 0 {
		t.Errorf("%d CreateNetworkInterface calls for bad inputs", n)
	}
}

func TestCreateWithReservedAddress(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	ctx := t.Context()
	ensureNetwork(t, p, "demo")
	spec := workerSpec("demo", 0, ign)
	addr, err := p.Reserve(ctx, "demo", spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Reserve(ctx, "demo", provisioner.MachineName("demo", "workers", 1)); err != nil {
		t.Fatal(err)
	}

	m, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	eni := interfacesNamed(f, spec.Name)[0]
	in := instanceNamed(t, f, spec.Name)
	if in.NetworkInterface != eni.ID || eni.Instance != in.ID {
		t.Errorf("instance %s launched with interface %q, reserved %s (attached to %q)", in.ID, in.NetworkInterface, eni.ID, eni.Instance)
	}
	if in.PrivateIP != addr.String() || m.Address != addr.String() {
		t.Errorf("instance address %s, Create said %s, reserved %s", in.PrivateIP, m.Address, addr)
	}
	if in.PublicIP != "" {
		t.Errorf("instance has public IP %s", in.PublicIP)
	}
	if again, err := p.Reserve(ctx, "demo", spec.Name); err != nil || again != addr {
		t.Errorf("Reserve of a made machine: %s, %v; want %s", again, err, addr)
	}
	if again, err := p.Create(ctx, spec); err != nil || again.Address != addr.String() {
		t.Errorf("second Create: %+v, %v", again, err)
	}
	ms, err := p.List(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Name != spec.Name || ms[0].Address != addr.String() {
		t.Errorf("List: %+v, want only %s at %s (the other name has only an address)", ms, spec.Name, addr)
	}

	t.Run("a machine made again after its instance died keeps its address", func(t *testing.T) {
		if _, err := ec2.NewFromConfig(f.Config()).TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{in.ID}}); err != nil {
			t.Fatal(err)
		}
		m, err := p.Create(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if now := instanceNamed(t, f, spec.Name); now.ID == in.ID || now.PrivateIP != addr.String() || m.Address != addr.String() {
			t.Errorf("new instance %s at %s, old %s; want a new one at %s", now.ID, now.PrivateIP, in.ID, addr)
		}
	})

	t.Run("Delete releases the address", func(t *testing.T) {
		if err := p.Delete(ctx, spec.Name); err != nil {
			t.Fatal(err)
		}
		if enis := interfacesNamed(f, spec.Name); len(enis) != 0 {
			t.Errorf("interfaces left after Delete: %+v", enis)
		}
		// Only an address: Delete releases it too.
		other := provisioner.MachineName("demo", "workers", 1)
		if err := p.Delete(ctx, other); err != nil {
			t.Fatal(err)
		}
		if enis := interfacesNamed(f, other); len(enis) != 0 {
			t.Errorf("interfaces left after Delete of a reserved name: %+v", enis)
		}
		if err := p.Delete(ctx, spec.Name); err != nil {
			t.Errorf("second Delete: %v", err)
		}
		if _, err := p.Reserve(ctx, "demo", spec.Name); err != nil {
			t.Errorf("Reserve after Delete: %v", err)
		}
	})
}

func TestReserveKeepsTheAddressOfAMachineMadeWithout(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	ctx := t.Context()
	ensureNetwork(t, p, "demo")
	m, err := p.Create(ctx, workerSpec("demo", 0, ign))
	if err != nil {
		t.Fatal(err)
	}
	addr, err := p.Reserve(ctx, "demo", m.Name)
	if err != nil {
		t.Fatal(err)
	}
	if addr.String() != m.Address {
		t.Errorf("Reserve of a machine made before: %s, the machine has %s", addr, m.Address)
	}
	if n := f.Calls("CreateNetworkInterface"); n != 0 {
		t.Errorf("%d CreateNetworkInterface calls for a machine that has its address", n)
	}
}

func TestCreateRefusesAReservationWithOtherGroups(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	ctx := t.Context()
	ensureNetwork(t, p, "demo")
	// Reserved as a worker of pool "workers"; created as a control-plane machine of that name.
	spec := workerSpec("demo", 0, ign)
	if _, err := p.Reserve(ctx, "demo", spec.Name); err != nil {
		t.Fatal(err)
	}
	spec.Role = "control-plane"
	_, err := p.Create(ctx, spec)
	if !errors.Is(err, ErrDrift) || !strings.Contains(err.Error(), "security groups") {
		t.Errorf("Create with a reservation of other groups: %v, want ErrDrift naming the security groups", err)
	}
	if n := f.Calls("RunInstances"); n != 0 {
		t.Errorf("%d RunInstances calls", n)
	}
}

func TestDeleteNetworkReleasesAddresses(t *testing.T) {
	f := startFake(t)
	p := newProvider(t, f)
	ctx := t.Context()
	ensureNetwork(t, p, "demo")
	ensureNetwork(t, p, "other")
	for _, name := range []string{"demo-control-plane-0", "demo-workers-0"} {
		if _, err := p.Reserve(ctx, "demo", name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Reserve(ctx, "other", "other-workers-0"); err != nil {
		t.Fatal(err)
	}
	// One machine came and went; its interface stays until DeleteNetwork.
	m, err := p.Create(ctx, workerSpec("demo", 0, ign))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec2.NewFromConfig(f.Config()).TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{instanceNamed(t, f, m.Name).ID}}); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteNetwork(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if left := f.Tagged(TagCluster, "demo"); len(left) > 0 {
		t.Errorf("DeleteNetwork left %v tagged", left)
	}
	if enis := interfacesNamed(f, "other-workers-0"); len(enis) != 1 {
		t.Errorf("DeleteNetwork(demo) took the other cluster's address: %+v", enis)
	}
	var order []string
	for _, r := range f.Requests() {
		if r.Action == "DeleteNetworkInterface" || r.Action == "DeleteSubnet" || r.Action == "DeleteSecurityGroup" {
			order = append(order, r.Action)
		}
	}
	if len(order) == 0 || order[0] != "DeleteNetworkInterface" || order[1] != "DeleteNetworkInterface" {
		t.Errorf("the interfaces should go before the groups and subnets: %v", order)
	}
}

// TestCrashPoints stops the controller right after each call that changes EC2 in a machine's life
// (its address reserved, its instance launched, both deleted), before it hears back; with crash
// false the answer is only lost and the SDK tries again. A restarted controller (a new provider) does
// the step again, as the executor would. It must converge: one interface and one instance for the
// machine, at the address Reserve said, and after Delete neither.
func TestCrashPoints(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action string
		crash  bool
		// inDelete: the crash is in Delete, after the machine was made.
		inDelete bool
	}{
		{name: "reserve crashes after CreateNetworkInterface", action: "CreateNetworkInterface", crash: true},
		{name: "reserve loses the answer of CreateNetworkInterface", action: "CreateNetworkInterface"},
		{name: "create crashes after RunInstances", action: "RunInstances", crash: true},
		{name: "create loses the answer of RunInstances", action: "RunInstances"},
		{name: "delete crashes after TerminateInstances", action: "TerminateInstances", crash: true, inDelete: true},
		{name: "delete crashes after DeleteNetworkInterface", action: "DeleteNetworkInterface", crash: true, inDelete: true},
		{name: "delete loses the answer of DeleteNetworkInterface", action: "DeleteNetworkInterface", inDelete: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t)
			ensureNetwork(t, newProvider(t, f), "demo")
			spec := controlPlaneSpec("demo", 1, ign)
			ctx, crash := context.WithCancel(t.Context())
			defer crash()
			var hit atomic.Int32
			f.SetFaults(awstest.Faults{AfterAction: func(action string) error {
				if action != tc.action || !hit.CompareAndSwap(0, 1) {
					return nil
				}
				if tc.crash {
					crash()
				}
				return errors.New("the answer is lost")
			}})
			// makeMachine reserves the machine's address and creates it, as apply does.
			makeMachine := func(ctx context.Context, p *Provider) (netip.Addr, error) {
				addr, err := p.Reserve(ctx, "demo", spec.Name)
				if err != nil {
					return netip.Addr{}, err
				}
				m, err := p.Create(ctx, spec)
				if err != nil {
					return netip.Addr{}, err
				}
				if m.Address != addr.String() {
					t.Errorf("Create made %s at %s, Reserve said %s", m.Name, m.Address, addr)
				}
				return addr, nil
			}
			addr, err := makeMachine(ctx, newProvider(t, f))
			if !tc.inDelete {
				if tc.crash && err == nil {
					t.Fatal("no error though the controller crashed")
				}
				f.SetFaults(awstest.Faults{})
				if tc.crash {
					if addr, err = makeMachine(t.Context(), newProvider(t, f)); err != nil {
						t.Fatalf("after the crash: %v", err)
					}
				} else if err != nil {
					t.Fatalf("the SDK's retry of the lost answer: %v", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				err := newProvider(t, f).Delete(ctx, spec.Name)
				if tc.crash && err == nil {
					t.Fatal("no error though the controller crashed")
				}
				f.SetFaults(awstest.Faults{})
				if !tc.crash && err != nil {
					t.Fatalf("the SDK's retry of the lost answer: %v", err)
				}
			}
			if hit.Load() != 1 {
				t.Fatalf("%s was not called: no crash point", tc.action)
			}
			if !tc.inDelete {
				enis := interfacesNamed(f, spec.Name)
				if len(enis) != 1 || enis[0].PrivateIP != addr.String() {
					t.Errorf("network interfaces %+v, want one at %s", enis, addr)
				}
				if n := liveByName(f)[spec.Name]; n != 1 {
					t.Errorf("%d instances of %s", n, spec.Name)
				}
				if in := instanceNamed(t, f, spec.Name); in.PrivateIP != addr.String() || len(enis) == 0 || in.NetworkInterface != enis[0].ID {
					t.Errorf("instance %s at %s with interface %q, want it launched with the reserved interface at %s", in.ID, in.PrivateIP, in.NetworkInterface, addr)
				}
			}
			if err := newProvider(t, f).Delete(t.Context(), spec.Name); err != nil {
				t.Fatalf("Delete after the crash: %v", err)
			}
			if enis := interfacesNamed(f, spec.Name); len(enis) != 0 {
				t.Errorf("network interfaces left after Delete: %+v", enis)
			}
			if n := liveByName(f)[spec.Name]; n != 0 {
				t.Errorf("%d instances of %s left after Delete", n, spec.Name)
			}
		})
	}
}
