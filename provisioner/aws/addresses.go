package aws

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
)

// resourceAddress is the kiln.dev/resource tag of the network interface that holds a machine's
// reserved address.
const resourceAddress = "address"

// Reserve gives the machine called name of cluster its private address before the machine exists,
// so that the address can be rendered into its config. The address is held by EC2 itself: an elastic
// network interface in the machine's private subnet (the one Create would launch it in) with its
// security groups, tagged kiln.dev/cluster, kiln.dev/name and kiln.dev/resource=address, its address
// picked by EC2. Reserving the name again finds that interface by tag and returns its address, so a
// crash loses nothing; reserves of one name in this process are serialized, and the SDK's
// idempotency token keeps a retried call from making a second interface. A machine launched before
// its address was reserved keeps the address it has (heldAddress). Create launches the machine with
// the interface as its primary one, and Delete deletes the interface once the instance is gone.
//
// The name is MachineName(cluster, pool, ordinal): its pool says the machine's role (the control
// plane's pool, or a worker's) and so its subnet and security groups.
func (p *Provider) Reserve(ctx context.Context, cluster, name string) (netip.Addr, error) {
	if err := ctx.Err(); err != nil {
		return netip.Addr{}, err
	}
	spec, err := reservedSpec(cluster, name)
	if err != nil {
		return netip.Addr{}, err
	}
	defer p.lockName(name)()
	ins, err := p.byName(ctx, name, "pending", "running", "stopping", "stopped")
	if err != nil {
		return netip.Addr{}, wrap(err, "reserve the address of %q: find its instance", name)
	}
	enis, err := p.interfaces(ctx, cluster, name)
	if err != nil {
		return netip.Addr{}, wrap(err, "reserve the address of %q: find its network interface", name)
	}
	if addr, ok, err := heldAddress(cluster, name, ins, enis); err != nil || ok {
		return addr, err
	}
	net, err := p.network(ctx, cluster)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("aws: reserve the address of %q: %w", name, err)
	}
	subnet, groups, err := net.place(spec)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("aws: reserve the address of %q: %w", name, err)
	}
	out, err := p.ec2.CreateNetworkInterface(ctx, &ec2.CreateNetworkInterfaceInput{
		SubnetId:    aws.String(subnet),
		Groups:      groups,
		Description: aws.String("kiln: the private address of machine " + name),
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeNetworkInterface,
			Tags:         append(machineTags(spec), tag(TagResource, resourceAddress)),
		}},
	})
	if err != nil {
		return netip.Addr{}, wrap(err, "reserve the address of %q in subnet %s", name, subnet)
	}
	if out.NetworkInterface == nil {
		return netip.Addr{}, fmt.Errorf("aws: reserve the address of %q in subnet %s: CreateNetworkInterface returned no network interface", name, subnet)
	}
	return interfaceAddr(*out.NetworkInterface, name)
}

// reservedSpec is what Reserve knows of a machine from its name, "<cluster>-<pool>-<ordinal>"
// (provisioner.MachineName): its pool, and its role, which the pool says.
func reservedSpec(cluster, name string) (provisioner.MachineSpec, error) {
	if cluster == "" {
		return provisioner.MachineSpec{}, fmt.Errorf("aws: reserve the address of %q: cluster is empty: %w", name, ErrInvalidSpec)
	}
	rest, _ := strings.CutPrefix(name, cluster+"-")
	pool := rest[:max(0, strings.LastIndexByte(rest, '-'))]
	if _, ok := provisioner.Ordinal(cluster, pool, name); !ok || pool == "" {
		return provisioner.MachineSpec{}, fmt.Errorf("aws: reserve the address of %q: name is not <cluster>-<pool>-<ordinal> of cluster %q: %w", name, cluster, ErrInvalidSpec)
	}
	role := v1alpha1.RoleWorker
	if pool == provisioner.ControlPlanePool {
		role = v1alpha1.RoleControlPlane
	}
	return provisioner.MachineSpec{Cluster: cluster, Name: name, Role: role, Pool: pool}, nil
}

// heldAddress decides the address that machine name of cluster holds already, from its live
// instances (ins) and the network interfaces tagged with its name (enis): its instance's first (one
// launched before its address was reserved keeps its own; one launched with its interface has the
// interface's), else that of the interface that holds its reservation (reservedInterface). ok is
// false when it holds none, and Reserve makes the interface.
func heldAddress(cluster, name string, ins []ec2types.Instance, enis []ec2types.NetworkInterface) (addr netip.Addr, ok bool, err error) {
	ins = slices.Clone(ins)
	slices.SortFunc(ins, func(a, b ec2types.Instance) int {
		return cmp.Compare(aws.ToString(a.InstanceId), aws.ToString(b.InstanceId))
	})
	for _, in := range ins {
		if tagValue(in.Tags, TagCluster) != cluster || tagValue(in.Tags, TagName) != name || in.PrivateIpAddress == nil {
			continue
		}
		a, err := netip.ParseAddr(aws.ToString(in.PrivateIpAddress))
		if err != nil {
			return netip.Addr{}, false, fmt.Errorf("aws: the address of %q: instance %s in subnet %s has private address %q: %w",
				name, aws.ToString(in.InstanceId), aws.ToString(in.SubnetId), aws.ToString(in.PrivateIpAddress), err)
		}
		return a, true, nil
	}
	eni := reservedInterface(cluster, name, enis)
	if eni == nil {
		return netip.Addr{}, false, nil
	}
	a, err := interfaceAddr(*eni, name)
	return a, err == nil, err
}

// reservedInterface is the network interface, of those listed, that holds the reserved address of
// machine name of cluster, nil if none does. Should there be several (two controllers reserved the
// name at once), the one an instance uses wins, else the lowest ID, so that Reserve and Create agree;
// Delete deletes them all.
func reservedInterface(cluster, name string, enis []ec2types.NetworkInterface) *ec2types.NetworkInterface {
	var best *ec2types.NetworkInterface
	for i := range enis {
		n := &enis[i]
		if tagValue(n.TagSet, TagCluster) != cluster || tagValue(n.TagSet, TagName) != name || tagValue(n.TagSet, TagResource) != resourceAddress {
			continue
		}
		if best == nil || better(n, best) {
			best = n
		}
	}
	if best == nil {
		return nil
	}
	n := *best
	return &n
}

// better orders two interfaces of one machine: in use first, then by ID.
func better(a, b *ec2types.NetworkInterface) bool {
	aUsed, bUsed := a.Status == ec2types.NetworkInterfaceStatusInUse, b.Status == ec2types.NetworkInterfaceStatusInUse
	if aUsed != bUsed {
		return aUsed
	}
	return aws.ToString(a.NetworkInterfaceId) < aws.ToString(b.NetworkInterfaceId)
}

// interfaceAddr is the private address of a machine's network interface.
func interfaceAddr(eni ec2types.NetworkInterface, name string) (netip.Addr, error) {
	a, err := netip.ParseAddr(aws.ToString(eni.PrivateIpAddress))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("aws: the reserved address of %q: network interface %s in subnet %s has private address %q: %w",
			name, aws.ToString(eni.NetworkInterfaceId), aws.ToString(eni.SubnetId), aws.ToString(eni.PrivateIpAddress), err)
	}
	return a, nil
}

// reservedFits checks that the network interface reserved for a machine carries the security groups
// the machine needs. Its address is in the machine's config already, so kiln does not swap it: a
// pool that gained inbound rules of its own after the reserve needs the machine deleted (which
// releases the address) and made again.
func reservedFits(eni ec2types.NetworkInterface, spec provisioner.MachineSpec, groups []string) error {
	var have []string
	for _, g := range eni.Groups {
		have = append(have, aws.ToString(g.GroupId))
	}
	want := slices.Clone(groups)
	slices.Sort(have)
	slices.Sort(want)
	if !slices.Equal(have, want) {
		return fmt.Errorf("aws: run instance %q: network interface %s in subnet %s, which holds its reserved address, has security groups %v, the machine needs %v (delete the machine to release the address): %w",
			spec.Name, aws.ToString(eni.NetworkInterfaceId), aws.ToString(eni.SubnetId), have, want, ErrDrift)
	}
	return nil
}

// lockName serializes the reserves and creates of one machine name in this provider, and returns
// the unlock.
func (p *Provider) lockName(name string) func() {
	p.mu.Lock()
	l, ok := p.names[name]
	if !ok {
		l = &sync.Mutex{}
		p.names[name] = l
	}
	p.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// interfaces lists the network interfaces that hold reserved addresses, of a cluster ("" for any)
// and of a machine ("" for every machine).
func (p *Provider) interfaces(ctx context.Context, cluster, name string) ([]ec2types.NetworkInterface, error) {
	fs := []ec2types.Filter{filter("tag:"+TagResource, resourceAddress)}
	if cluster != "" {
		fs = append(fs, clusterFilter(cluster))
	}
	if name != "" {
		fs = append(fs, filter("tag:"+TagName, name))
	}
	var out []ec2types.NetworkInterface
	pages := ec2.NewDescribeNetworkInterfacesPaginator(p.ec2, &ec2.DescribeNetworkInterfacesInput{Filters: fs})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, page.NetworkInterfaces...)
	}
	return out, nil
}

// interfaceAvailable waits, with EC2's NetworkInterfaceAvailable waiter, until no instance uses
// machine name's network interface id (one that is going away lets go of it). One that is gone is
// not an error.
func (p *Provider) interfaceAvailable(ctx context.Context, name, id string) error {
	what := fmt.Sprintf("wait until network interface %s of %q is detached", id, name)
	in := &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{id}}
	err := ec2.NewNetworkInterfaceAvailableWaiter(p.ec2).Wait(ctx, in, p.waitBudget(), func(o *ec2.NetworkInterfaceAvailableWaiterOptions) {
		o.MinDelay, o.MaxDelay = p.opts.PollInterval, p.opts.PollInterval
		available := o.Retryable
		o.Retryable = capChecks(p, what, func(ctx context.Context, in *ec2.DescribeNetworkInterfacesInput, out *ec2.DescribeNetworkInterfacesOutput, err error) (bool, error) {
			if apiCode(err) == "InvalidNetworkInterfaceID.NotFound" {
				return false, nil // deleted already
			}
			return available(ctx, in, out, err)
		})
	})
	return waited(ctx, what, err)
}

// releaseAddress deletes the network interfaces that hold the reserved address of machine name, each
// once no instance uses it. One that is gone already is not an error.
func (p *Provider) releaseAddress(ctx context.Context, name string) error {
	enis, err := p.interfaces(ctx, "", name)
	if err != nil {
		return wrap(err, "release the address of %q: find its network interface", name)
	}
	for _, eni := range enis {
		id := aws.ToString(eni.NetworkInterfaceId)
		if err := p.interfaceAvailable(ctx, name, id); err != nil {
			return err
		}
		what := fmt.Sprintf("release the address of %q: delete network interface %s in subnet %s", name, id, aws.ToString(eni.SubnetId))
		err := p.retryWhile(ctx, what, []string{"InvalidNetworkInterface.InUse"}, func(ctx context.Context) error {
			_, err := p.ec2.DeleteNetworkInterface(ctx, &ec2.DeleteNetworkInterfaceInput{NetworkInterfaceId: aws.String(id)})
			return err
		})
		if err != nil && apiCode(err) != "InvalidNetworkInterfaceID.NotFound" {
			return err
		}
	}
	return nil
}

// place is where a machine goes in the cluster's network: a private subnet (spread over the zones by
// ordinal, see pickSubnet) and the role's security group, with the pool's own for a worker of a pool
// with inbound rules of its own.
func (n *clusterNet) place(spec provisioner.MachineSpec) (subnet string, groups []string, err error) {
	group := n.groups[spec.Role]
	if group == "" {
		return "", nil, fmt.Errorf("no security group for role %q: %w", spec.Role, ErrNoNetwork)
	}
	groups = []string{group}
	if pg := n.groups[poolKey(spec.Pool)]; pg != "" && spec.Role == v1alpha1.RoleWorker {
		groups = append(groups, pg)
	}
	return pickSubnet(n.private, spec), groups, nil
}
