package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/provisioner"
)

// clusterNet is what Create needs of a cluster's network, found by tag and cached.
type clusterNet struct {
	vpc string
	// private subnet IDs in plan order (private-0, private-1, ...).
	private []string
	// groups maps a role, or "pool-NAME", to its security group ID.
	groups map[string]string
}

func tag(k, v string) ec2types.Tag { return ec2types.Tag{Key: aws.String(k), Value: aws.String(v)} }

// tagSpec tags a new resource with the cluster, kiln's name for it and a Name for the console.
func tagSpec(rt ec2types.ResourceType, cluster, resource string, extra ...ec2types.Tag) []ec2types.TagSpecification {
	ts := []ec2types.Tag{tag(TagCluster, cluster), tag(TagResource, resource), tag("Name", "kiln-"+cluster+"-"+resource)}
	return []ec2types.TagSpecification{{ResourceType: rt, Tags: append(ts, extra...)}}
}

func filter(name string, values ...string) ec2types.Filter {
	return ec2types.Filter{Name: aws.String(name), Values: values}
}

func clusterFilter(cluster string) ec2types.Filter { return filter("tag:"+TagCluster, cluster) }

func tagValue(ts []ec2types.Tag, key string) string {
	for _, t := range ts {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// EnsureNetwork makes the cluster's network match spec: the VPC (or the configured one), an internet
// gateway, private subnets for the nodes and public ones for the NAT gateways and the load balancer
// in every availability zone, route tables (private to the zone's NAT gateway, public to the internet
// gateway), security groups compiled from spec.Firewall (SecurityGroups), and a network load
// balancer with a target group and a listener on the API port, the running control-plane instances
// registered. Everything is tagged kiln.dev/cluster and found by tag before anything is created, so
// a second call creates nothing; security group rules that the intent does not hold are revoked.
func (p *Provider) EnsureNetwork(ctx context.Context, spec provisioner.NetworkSpec) (provisioner.Network, error) {
	if err := ctx.Err(); err != nil {
		return provisioner.Network{}, err
	}
	c := spec.Cluster
	if c == "" {
		return provisioner.Network{}, fmt.Errorf("aws: ensure network: no cluster name: %w", ErrInvalidSpec)
	}
	plan, err := PlanSubnets(spec.NodeCIDR, spec.Subnets, p.opts.AvailabilityZones)
	if err != nil {
		return provisioner.Network{}, err
	}
	node := netip.MustParsePrefix(spec.NodeCIDR)
	api := APIAccess{From: []netip.Prefix{node}}
	if spec.APIEndpoint.Port < 1 || spec.APIEndpoint.Port > 65535 {
		return provisioner.Network{}, fmt.Errorf("aws: ensure network %q: network.apiEndpoint.port %d is not a port: %w", c, spec.APIEndpoint.Port, ErrInvalidSpec)
	}
	api.Port = uint16(spec.APIEndpoint.Port)
	for i, s := range p.opts.AdminCIDRs {
		a, err := netip.ParsePrefix(s)
		if err != nil {
			return provisioner.Network{}, fmt.Errorf("aws: network.adminCIDRs[%d] %q is not a CIDR: %w", i, s, ErrInvalidConfig)
		}
		api.From = append(api.From, a.Masked())
	}
	groups, err := SecurityGroups(spec.Firewall, api)
	if err != nil {
		return provisioner.Network{}, err
	}

	vpcID, err := p.ensureVPC(ctx, c, node)
	if err != nil {
		return provisioner.Network{}, err
	}
	igwID, err := p.ensureIGW(ctx, c, vpcID)
	if err != nil {
		return provisioner.Network{}, err
	}
	subnets, err := p.ensureSubnets(ctx, c, vpcID, plan)
	if err != nil {
		return provisioner.Network{}, err
	}
	tables, err := p.routeTables(ctx, c, vpcID)
	if err != nil {
		return provisioner.Network{}, err
	}
	var public []string
	for _, s := range plan {
		if s.Public {
			public = append(public, subnets[s.Name])
		}
	}
	if err := p.ensureRouteTable(ctx, c, vpcID, "rt-public", tables, ec2types.Route{GatewayId: aws.String(igwID)}, public); err != nil {
		return provisioner.Network{}, err
	}
	nats, err := p.ensureNATs(ctx, c, plan, subnets)
	if err != nil {
		return provisioner.Network{}, err
	}
	net := &clusterNet{vpc: vpcID}
	for _, az := range p.opts.AvailabilityZones {
		var ids []string
		for _, s := range plan {
			if !s.Public && s.AZ == az {
				ids = append(ids, subnets[s.Name])
			}
		}
		if err := p.ensureRouteTable(ctx, c, vpcID, "rt-private-"+az, tables, ec2types.Route{NatGatewayId: aws.String(nats[az])}, ids); err != nil {
			return provisioner.Network{}, err
		}
	}
	for _, s := range plan {
		if !s.Public {
			net.private = append(net.private, subnets[s.Name])
		}
	}
	net.groups, err = p.ensureGroups(ctx, c, vpcID, groups)
	if err != nil {
		return provisioner.Network{}, err
	}
	dns, tgARN, err := p.ensureLoadBalancer(ctx, c, vpcID, public, net.groups[RoleLoadBalancer], api.Port)
	if err != nil {
		return provisioner.Network{}, err
	}
	p.mu.Lock()
	p.nets[c] = net
	p.mu.Unlock()
	if err := p.registerControlPlane(ctx, c, tgARN, ""); err != nil {
		return provisioner.Network{}, err
	}
	return provisioner.Network{
		Cluster:     c,
		ID:          vpcID,
		Subnets:     slices.Clone(net.private),
		APIEndpoint: provisioner.Endpoint{Name: dns, Port: int(api.Port)},
	}, nil
}

func (p *Provider) ensureVPC(ctx context.Context, c string, node netip.Prefix) (string, error) {
	if id := p.opts.VPCID; id != "" {
		out, err := p.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{id}})
		if err != nil {
			return "", wrap(err, "find VPC %s", id)
		}
		if len(out.Vpcs) != 1 {
			return "", fmt.Errorf("aws: VPC %s not found: %w", id, ErrInvalidConfig)
		}
		cidr, err := netip.ParsePrefix(aws.ToString(out.Vpcs[0].CidrBlock))
		if err != nil || !cidr.Contains(node.Addr()) || cidr.Bits() > node.Bits() {
			return "", fmt.Errorf("aws: network.nodeCIDR %s is not inside VPC %s (%s): %w", node, id, aws.ToString(out.Vpcs[0].CidrBlock), ErrInvalidSpec)
		}
		return id, nil
	}
	out, err := p.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: []ec2types.Filter{clusterFilter(c), filter("tag:"+TagResource, "vpc")}})
	if err != nil {
		return "", wrap(err, "find the VPC of cluster %q", c)
	}
	if len(out.Vpcs) > 0 {
		v := out.Vpcs[0]
		if aws.ToString(v.CidrBlock) != node.String() {
			return "", fmt.Errorf("aws: VPC %s of cluster %q has CIDR %s, network.nodeCIDR is %s: %w", aws.ToString(v.VpcId), c, aws.ToString(v.CidrBlock), node, ErrDrift)
		}
		return aws.ToString(v.VpcId), nil
	}
	created, err := p.ec2.CreateVpc(ctx, &ec2.CreateVpcInput{
		CidrBlock:         aws.String(node.String()),
		TagSpecifications: tagSpec(ec2types.ResourceTypeVpc, c, "vpc"),
	})
	if err != nil {
		return "", wrap(err, "create the VPC of cluster %q", c)
	}
	return aws.ToString(created.Vpc.VpcId), nil
}

func (p *Provider) ensureIGW(ctx context.Context, c, vpcID string) (string, error) {
	attached, err := p.ec2.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{Filters: []ec2types.Filter{filter("attachment.vpc-id", vpcID)}})
	if err != nil {
		return "", wrap(err, "find the internet gateway of VPC %s", vpcID)
	}
	if len(attached.InternetGateways) > 0 {
		return aws.ToString(attached.InternetGateways[0].InternetGatewayId), nil
	}
	ours, err := p.ec2.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{Filters: []ec2types.Filter{clusterFilter(c)}})
	if err != nil {
		return "", wrap(err, "find the internet gateway of cluster %q", c)
	}
	var id string
	if len(ours.InternetGateways) > 0 {
		id = aws.ToString(ours.InternetGateways[0].InternetGatewayId)
	} else {
		created, err := p.ec2.CreateInternetGateway(ctx, &ec2.CreateInternetGatewayInput{TagSpecifications: tagSpec(ec2types.ResourceTypeInternetGateway, c, "igw")})
		if err != nil {
			return "", wrap(err, "create the internet gateway of cluster %q", c)
		}
		id = aws.ToString(created.InternetGateway.InternetGatewayId)
	}
	if _, err := p.ec2.AttachInternetGateway(ctx, &ec2.AttachInternetGatewayInput{InternetGatewayId: aws.String(id), VpcId: aws.String(vpcID)}); err != nil {
		return "", wrap(err, "attach internet gateway %s to VPC %s", id, vpcID)
	}
	return id, nil
}

func (p *Provider) ensureSubnets(ctx context.Context, c, vpcID string, plan []SubnetPlan) (map[string]string, error) {
	have := map[string]ec2types.Subnet{}
	pages := ec2.NewDescribeSubnetsPaginator(p.ec2, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{clusterFilter(c), filter("vpc-id", vpcID)}})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap(err, "list the subnets of cluster %q", c)
		}
		for _, s := range out.Subnets {
			have[tagValue(s.Tags, TagResource)] = s
		}
	}
	ids := map[string]string{}
	for _, s := range plan {
		if h, ok := have[s.Name]; ok {
			if aws.ToString(h.CidrBlock) != s.CIDR.String() || aws.ToString(h.AvailabilityZone) != s.AZ {
				return nil, fmt.Errorf("aws: subnet %s (%s) of cluster %q is %s in %s, the spec wants %s in %s: %w", aws.ToString(h.SubnetId), s.Name, c,
					aws.ToString(h.CidrBlock), aws.ToString(h.AvailabilityZone), s.CIDR, s.AZ, ErrDrift)
			}
			ids[s.Name] = aws.ToString(h.SubnetId)
			continue
		}
		tier := "private"
		if s.Public {
			tier = "public"
		}
		out, err := p.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{
			VpcId:             aws.String(vpcID),
			CidrBlock:         aws.String(s.CIDR.String()),
			AvailabilityZone:  aws.String(s.AZ),
			TagSpecifications: tagSpec(ec2types.ResourceTypeSubnet, c, s.Name, tag("kiln.dev/tier", tier)),
		})
		if err != nil {
			return nil, wrap(err, "create subnet %s (%s in %s) of cluster %q", s.Name, s.CIDR, s.AZ, c)
		}
		ids[s.Name] = aws.ToString(out.Subnet.SubnetId)
	}
	return ids, nil
}

func (p *Provider) routeTables(ctx context.Context, c, vpcID string) (map[string]ec2types.RouteTable, error) {
	have := map[string]ec2types.RouteTable{}
	pages := ec2.NewDescribeRouteTablesPaginator(p.ec2, &ec2.DescribeRouteTablesInput{Filters: []ec2types.Filter{clusterFilter(c), filter("vpc-id", vpcID)}})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap(err, "list the route tables of cluster %q", c)
		}
		for _, t := range out.RouteTables {
			have[tagValue(t.Tags, TagResource)] = t
		}
	}
	return have, nil
}

// ensureRouteTable makes the named table exist with a default route to target, associated with
// subnets.
func (p *Provider) ensureRouteTable(ctx context.Context, c, vpcID, name string, have map[string]ec2types.RouteTable, target ec2types.Route, subnets []string) error {
	t, ok := have[name]
	if !ok {
		out, err := p.ec2.CreateRouteTable(ctx, &ec2.CreateRouteTableInput{VpcId: aws.String(vpcID), ClientToken: aws.String(createToken(vpcID, name)),
			TagSpecifications: tagSpec(ec2types.ResourceTypeRouteTable, c, name)})
		if err != nil {
			return wrap(err, "create route table %s of cluster %q", name, c)
		}
		t = *out.RouteTable
	}
	id := aws.ToString(t.RouteTableId)
	want := aws.ToString(target.GatewayId) + aws.ToString(target.NatGatewayId)
	hasRoute := false
	for _, r := range t.Routes {
		if aws.ToString(r.DestinationCidrBlock) != "0.0.0.0/0" {
			continue
		}
		if got := aws.ToString(r.GatewayId) + aws.ToString(r.NatGatewayId); got != want {
			return fmt.Errorf("aws: route table %s (%s) of cluster %q sends 0.0.0.0/0 to %s, not %s: %w", id, name, c, got, want, ErrDrift)
		}
		hasRoute = true
	}
	if !hasRoute {
		_, err := p.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(id), DestinationCidrBlock: aws.String("0.0.0.0/0"),
			GatewayId: target.GatewayId, NatGatewayId: target.NatGatewayId})
		if err != nil {
			return wrap(err, "route 0.0.0.0/0 to %s in route table %s of cluster %q", want, name, c)
		}
	}
	for _, s := range subnets {
		if slices.ContainsFunc(t.Associations, func(a ec2types.RouteTableAssociation) bool { return aws.ToString(a.SubnetId) == s }) {
			continue
		}
		if _, err := p.ec2.AssociateRouteTable(ctx, &ec2.AssociateRouteTableInput{RouteTableId: aws.String(id), SubnetId: aws.String(s)}); err != nil {
			return wrap(err, "associate subnet %s with route table %s of cluster %q", s, name, c)
		}
	}
	return nil
}

// ensureNATs makes one NAT gateway, with its Elastic IP, in the public subnet of every zone, and
// returns their IDs by zone.
func (p *Provider) ensureNATs(ctx context.Context, c string, plan []SubnetPlan, subnets map[string]string) (map[string]string, error) {
	nats := map[string]string{}
	out, err := p.ec2.DescribeNatGateways(ctx, &ec2.DescribeNatGatewaysInput{Filter: []ec2types.Filter{clusterFilter(c), filter("state", "pending", "available")}})
	if err != nil {
		return nil, wrap(err, "list the NAT gateways of cluster %q", c)
	}
	for _, n := range out.NatGateways {
		nats[strings.TrimPrefix(tagValue(n.Tags, TagResource), "nat-")] = aws.ToString(n.NatGatewayId)
	}
	addrs, err := p.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{clusterFilter(c)}})
	if err != nil {
		return nil, wrap(err, "list the Elastic IPs of cluster %q", c)
	}
	eips := map[string]ec2types.Address{}
	for _, a := range addrs.Addresses {
		eips[tagValue(a.Tags, TagResource)] = a
	}
	for _, s := range plan {
		if !s.Public || nats[s.AZ] != "" {
			continue
		}
		eip, ok := eips["eip-"+s.AZ]
		if !ok || eip.AssociationId != nil {
			if ok {
				return nil, fmt.Errorf("aws: Elastic IP %s of cluster %q is associated with something else: %w", aws.ToString(eip.AllocationId), c, ErrDrift)
			}
			a, err := p.ec2.AllocateAddress(ctx, &ec2.AllocateAddressInput{Domain: ec2types.DomainTypeVpc, TagSpecifications: tagSpec(ec2types.ResourceTypeElasticIp, c, "eip-"+s.AZ)})
			if err != nil {
				return nil, wrap(err, "allocate the Elastic IP of the NAT gateway in %s for cluster %q", s.AZ, c)
			}
			eip = ec2types.Address{AllocationId: a.AllocationId}
		}
		n, err := p.ec2.CreateNatGateway(ctx, &ec2.CreateNatGatewayInput{
			ClientToken:       aws.String(createToken(subnets[s.Name], aws.ToString(eip.AllocationId))),
			SubnetId:          aws.String(subnets[s.Name]),
			AllocationId:      eip.AllocationId,
			ConnectivityType:  ec2types.ConnectivityTypePublic,
			TagSpecifications: tagSpec(ec2types.ResourceTypeNatgateway, c, "nat-"+s.AZ),
		})
		if err != nil {
			return nil, wrap(err, "create the NAT gateway in %s for cluster %q", s.AZ, c)
		}
		nats[s.AZ] = aws.ToString(n.NatGateway.NatGatewayId)
	}
	return nats, nil
}

// createToken is the client token of creating a network resource: the same for the same resource
// in the same parent (so an SDK retry after a lost answer makes no second one), different once the
// parent is new.
func createToken(parent, resource string) string {
	sum := sha256.Sum256([]byte("kiln.dev/network\x00" + parent + "\x00" + resource))
	return hex.EncodeToString(sum[:])
}

// rule is a security group permission with its source resolved to a CIDR or a group ID.
type rule struct {
	proto    string
	from, to int32
	cidr     string
	cidr6    string
	group    string
	desc     string
}

func (r rule) key() string {
	return fmt.Sprintf("%s/%d/%d/%s/%s/%s", r.proto, r.from, r.to, r.cidr, r.cidr6, r.group)
}

func (r rule) permission() ec2types.IpPermission {
	perm := ec2types.IpPermission{IpProtocol: aws.String(r.proto), FromPort: aws.Int32(r.from), ToPort: aws.Int32(r.to)}
	desc := aws.String(r.desc)
	if r.desc == "" {
		desc = nil
	}
	switch {
	case r.group != "":
		perm.UserIdGroupPairs = []ec2types.UserIdGroupPair{{GroupId: aws.String(r.group), Description: desc}}
	case r.cidr6 != "":
		perm.Ipv6Ranges = []ec2types.Ipv6Range{{CidrIpv6: aws.String(r.cidr6), Description: desc}}
	default:
		perm.IpRanges = []ec2types.IpRange{{CidrIp: aws.String(r.cidr), Description: desc}}
	}
	return perm
}

// rulesOf flattens a group's permissions to one rule per source.
func rulesOf(perms []ec2types.IpPermission) []rule {
	var out []rule
	for _, p := range perms {
		base := rule{proto: aws.ToString(p.IpProtocol), from: aws.ToInt32(p.FromPort), to: aws.ToInt32(p.ToPort)}
		if p.FromPort == nil {
			base.from, base.to = -1, -1
		}
		for _, r := range p.IpRanges {
			x := base
			x.cidr, x.desc = aws.ToString(r.CidrIp), aws.ToString(r.Description)
			out = append(out, x)
		}
		for _, r := range p.Ipv6Ranges {
			x := base
			x.cidr6, x.desc = aws.ToString(r.CidrIpv6), aws.ToString(r.Description)
			out = append(out, x)
		}
		for _, g := range p.UserIdGroupPairs {
			x := base
			x.group, x.desc = aws.ToString(g.GroupId), aws.ToString(g.Description)
			out = append(out, x)
		}
	}
	return out
}

// ensureGroups makes one security group per GroupSpec and makes its inbound rules exactly the
// spec's, and returns their IDs by role.
func (p *Provider) ensureGroups(ctx context.Context, c, vpcID string, specs []GroupSpec) (map[string]string, error) {
	have := map[string]ec2types.SecurityGroup{}
	pages := ec2.NewDescribeSecurityGroupsPaginator(p.ec2, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{clusterFilter(c), filter("vpc-id", vpcID)}})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap(err, "list the security groups of cluster %q", c)
		}
		for _, g := range out.SecurityGroups {
			have[tagValue(g.Tags, TagResource)] = g
		}
	}
	ids := map[string]string{}
	for _, g := range specs {
		key := g.Key()
		name := "sg-" + key
		if h, ok := have[name]; ok {
			ids[key] = aws.ToString(h.GroupId)
			continue
		}
		tags := []ec2types.Tag{tag(TagRole, g.Role)}
		if g.Pool != "" {
			tags = append(tags, tag(TagPool, g.Pool))
		}
		out, err := p.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
			VpcId:             aws.String(vpcID),
			GroupName:         aws.String("kiln-" + c + "-" + key),
			Description:       aws.String(g.Description),
			TagSpecifications: tagSpec(ec2types.ResourceTypeSecurityGroup, c, name, tags...),
		})
		if err != nil {
			return nil, wrap(err, "create the %s security group of cluster %q", key, c)
		}
		ids[key] = aws.ToString(out.GroupId)
	}
	for _, g := range specs {
		id := ids[g.Key()]
		want := map[string]rule{}
		for _, perm := range g.Ingress {
			r := rule{proto: perm.Protocol, from: perm.FromPort, to: perm.ToPort, desc: perm.Description}
			switch {
			case perm.SourceRole != "":
				r.group = ids[perm.SourceRole]
				if r.group == "" {
					return nil, fmt.Errorf("aws: %s security group rule from unknown role %q: %w", g.Key(), perm.SourceRole, ErrInvalidSpec)
				}
			case perm.CIDR.Addr().Is6():
				r.cidr6 = perm.CIDR.String()
			default:
				r.cidr = perm.CIDR.String()
			}
			want[r.key()] = r
		}
		got := map[string]rule{}
		for _, r := range rulesOf(have["sg-"+g.Key()].IpPermissions) {
			got[r.key()] = r
		}
		var add, drop []ec2types.IpPermission
		for _, k := range sortedKeys(want) {
			if _, ok := got[k]; !ok {
				add = append(add, want[k].permission())
			}
		}
		for _, k := range sortedKeys(got) {
			if _, ok := want[k]; !ok {
				drop = append(drop, got[k].permission())
			}
		}
		if len(drop) > 0 {
			if _, err := p.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: drop}); err != nil {
				return nil, wrap(err, "revoke %d rule(s) the firewall intent does not hold from the %s security group of cluster %q", len(drop), g.Key(), c)
			}
		}
		if len(add) > 0 {
			if _, err := p.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: aws.String(id), IpPermissions: add}); err != nil {
				return nil, wrap(err, "authorize %d rule(s) in the %s security group of cluster %q", len(add), g.Key(), c)
			}
		}
	}
	return ids, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ensureLoadBalancer makes the internet-facing network load balancer in the public subnets with the
// load balancer security group, its target group (TCP on the API port, instance targets) and the
// listener, and returns the load balancer's DNS name and the target group's ARN.
func (p *Provider) ensureLoadBalancer(ctx context.Context, c, vpcID string, public []string, group string, port uint16) (string, string, error) {
	name := shortName(c, "api")
	lb, err := p.findLoadBalancer(ctx, c, name)
	if err != nil {
		return "", "", err
	}
	if lb == nil {
		out, err := p.elb.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{
			Name:           aws.String(name),
			Type:           elbtypes.LoadBalancerTypeEnumNetwork,
			Scheme:         elbtypes.LoadBalancerSchemeEnumInternetFacing,
			Subnets:        public,
			SecurityGroups: []string{group},
			IpAddressType:  elbtypes.IpAddressTypeIpv4,
			Tags:           elbTags(c, "nlb"),
		})
		if err != nil {
			return "", "", wrap(err, "create load balancer %s of cluster %q", name, c)
		}
		lb = &out.LoadBalancers[0]
	}
	tg, err := p.findTargetGroup(ctx, c, name)
	if err != nil {
		return "", "", err
	}
	if tg == nil {
		out, err := p.elb.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
			Name:                aws.String(name),
			Protocol:            elbtypes.ProtocolEnumTcp,
			Port:                aws.Int32(int32(port)),
			VpcId:               aws.String(vpcID),
			TargetType:          elbtypes.TargetTypeEnumInstance,
			HealthCheckProtocol: elbtypes.ProtocolEnumTcp,
			Tags:                elbTags(c, "api-targets"),
		})
		if err != nil {
			return "", "", wrap(err, "create target group %s of cluster %q", name, c)
		}
		tg = &out.TargetGroups[0]
	}
	ls, err := p.elb.DescribeListeners(ctx, &elb.DescribeListenersInput{LoadBalancerArn: lb.LoadBalancerArn})
	if err != nil {
		return "", "", wrap(err, "list the listeners of load balancer %s", name)
	}
	found := false
	for _, l := range ls.Listeners {
		if aws.ToInt32(l.Port) != int32(port) {
			continue
		}
		found = true
		if len(l.DefaultActions) != 1 || aws.ToString(l.DefaultActions[0].TargetGroupArn) != aws.ToString(tg.TargetGroupArn) {
			return "", "", fmt.Errorf("aws: the listener on port %d of load balancer %s does not forward to target group %s: %w", port, name, name, ErrDrift)
		}
	}
	if !found {
		_, err := p.elb.CreateListener(ctx, &elb.CreateListenerInput{
			LoadBalancerArn: lb.LoadBalancerArn,
			Protocol:        elbtypes.ProtocolEnumTcp,
			Port:            aws.Int32(int32(port)),
			DefaultActions:  []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: tg.TargetGroupArn}},
		})
		if err != nil {
			return "", "", wrap(err, "create the listener on port %d of load balancer %s", port, name)
		}
	}
	return aws.ToString(lb.DNSName), aws.ToString(tg.TargetGroupArn), nil
}

func elbTags(c, resource string) []elbtypes.Tag {
	return []elbtypes.Tag{
		{Key: aws.String(TagCluster), Value: aws.String(c)},
		{Key: aws.String(TagResource), Value: aws.String(resource)},
	}
}

// owned checks that the load balancing resource arn carries the cluster's tag.
func (p *Provider) owned(ctx context.Context, c, arn string) error {
	out, err := p.elb.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: []string{arn}})
	if err != nil {
		return wrap(err, "read the tags of %s", arn)
	}
	for _, d := range out.TagDescriptions {
		for _, t := range d.Tags {
			if aws.ToString(t.Key) == TagCluster && aws.ToString(t.Value) == c {
				return nil
			}
		}
	}
	return fmt.Errorf("aws: %s is not tagged %s=%s, kiln will not use or delete it: %w", arn, TagCluster, c, ErrDrift)
}

func (p *Provider) findLoadBalancer(ctx context.Context, c, name string) (*elbtypes.LoadBalancer, error) {
	out, err := p.elb.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{Names: []string{name}})
	if apiCode(err) == "LoadBalancerNotFound" {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err, "find load balancer %s", name)
	}
	if len(out.LoadBalancers) == 0 {
		return nil, nil
	}
	lb := out.LoadBalancers[0]
	return &lb, p.owned(ctx, c, aws.ToString(lb.LoadBalancerArn))
}

func (p *Provider) findTargetGroup(ctx context.Context, c, name string) (*elbtypes.TargetGroup, error) {
	out, err := p.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{name}})
	if apiCode(err) == "TargetGroupNotFound" {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err, "find target group %s", name)
	}
	if len(out.TargetGroups) == 0 {
		return nil, nil
	}
	tg := out.TargetGroups[0]
	return &tg, p.owned(ctx, c, aws.ToString(tg.TargetGroupArn))
}

// registerControlPlane registers the cluster's running control-plane instances (only the one named,
// if name is set) with the API target group, those not registered yet.
func (p *Provider) registerControlPlane(ctx context.Context, c, tgARN, name string) error {
	filters := []ec2types.Filter{clusterFilter(c), filter("tag:"+TagRole, v1alpha1.RoleControlPlane), filter("instance-state-name", "running")}
	if name != "" {
		filters = append(filters, filter("tag:"+TagName, name))
	}
	instances, err := p.describe(ctx, filters)
	if err != nil {
		return wrap(err, "list the control-plane instances of cluster %q", c)
	}
	if len(instances) == 0 {
		return nil
	}
	health, err := p.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: aws.String(tgARN)})
	if err != nil {
		return wrap(err, "list the API targets of cluster %q", c)
	}
	var targets []elbtypes.TargetDescription
	for _, in := range instances {
		id := aws.ToString(in.InstanceId)
		if !slices.ContainsFunc(health.TargetHealthDescriptions, func(d elbtypes.TargetHealthDescription) bool {
			return d.Target != nil && aws.ToString(d.Target.Id) == id
		}) {
			targets = append(targets, elbtypes.TargetDescription{Id: aws.String(id)})
		}
	}
	if len(targets) == 0 {
		return nil
	}
	if _, err := p.elb.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: aws.String(tgARN), Targets: targets}); err != nil {
		return wrap(err, "register %d control-plane instance(s) of cluster %q with the API load balancer", len(targets), c)
	}
	return nil
}

// network returns the cluster's network as Create needs it, from the cache or found by tag.
func (p *Provider) network(ctx context.Context, c string) (*clusterNet, error) {
	p.mu.Lock()
	n := p.nets[c]
	p.mu.Unlock()
	if n != nil {
		return n, nil
	}
	subnets, err := p.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{clusterFilter(c), filter("tag:kiln.dev/tier", "private")}})
	if err != nil {
		return nil, wrap(err, "find the private subnets of cluster %q", c)
	}
	groups, err := p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{clusterFilter(c)}})
	if err != nil {
		return nil, wrap(err, "find the security groups of cluster %q", c)
	}
	n = &clusterNet{groups: map[string]string{}}
	byName := map[string]string{}
	for _, s := range subnets.Subnets {
		byName[tagValue(s.Tags, TagResource)] = aws.ToString(s.SubnetId)
		n.vpc = aws.ToString(s.VpcId)
	}
	for i := 0; ; i++ {
		id, ok := byName[fmt.Sprintf("private-%d", i)]
		if !ok {
			break
		}
		n.private = append(n.private, id)
	}
	for _, g := range groups.SecurityGroups {
		key := GroupSpec{Role: tagValue(g.Tags, TagRole), Pool: tagValue(g.Tags, TagPool)}.Key()
		if key != "" {
			n.groups[key] = aws.ToString(g.GroupId)
		}
	}
	if len(n.private) == 0 || n.groups[v1alpha1.RoleControlPlane] == "" || n.groups[v1alpha1.RoleWorker] == "" {
		return nil, fmt.Errorf("aws: cluster %q has no private subnets or node security groups (run EnsureNetwork first): %w", c, ErrNoNetwork)
	}
	p.mu.Lock()
	p.nets[c] = n
	p.mu.Unlock()
	return n, nil
}
