package aws

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/kiln-dev/kiln/provisioner"
)

// DeleteNetwork deletes everything EnsureNetwork made for the cluster, found by tag, in dependency
// order (teardown): the load balancer's listeners, the load balancer and its target group, the NAT
// gateways (waiting until they are gone) and their Elastic IPs, the route tables, the network
// interfaces left holding reserved addresses (of machines never made, or whose Delete did not
// finish), the security groups, the subnets, the internet gateway and the VPC (never a VPC kiln did
// not create). It refuses while machines of the cluster still exist. Calling it again, or on a
// cluster without a network, does nothing.
func (p *Provider) DeleteNetwork(ctx context.Context, c string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c == "" {
		return fmt.Errorf("aws: delete network: no cluster name: %w", ErrInvalidSpec)
	}
	ms, err := p.List(ctx, c)
	if err != nil {
		return err
	}
	var live []string
	for _, m := range ms {
		if m.State != provisioner.StateGone {
			live = append(live, m.Name)
		}
	}
	if len(live) > 0 {
		return fmt.Errorf("aws: delete network of cluster %q: machines %s still exist, delete them first: %w", c, strings.Join(live, ", "), ErrInUse)
	}
	p.mu.Lock()
	delete(p.nets, c)
	p.mu.Unlock()
	return p.tearDown(ctx, c, teardown)
}

// teardownStep is a row of a teardown table: a step[T] for the SDK type T of its resources.
type teardownStep interface {
	// String says what the step does: "delete security group".
	String() string
	run(ctx context.Context, p *Provider, c string) error
}

// tearDown runs the steps in order and stops at the first that fails.
func (p *Provider) tearDown(ctx context.Context, c string, steps []teardownStep) error {
	for _, s := range steps {
		if err := s.run(ctx, p, c); err != nil {
			return err
		}
	}
	return nil
}

// step deletes every resource of one kind that a cluster has left.
type step[T any] struct {
	// kind of resource, as errors name it: "security group".
	kind string
	// op is what delete does to one, as errors say it; "delete" if empty.
	op string
	// list returns the cluster's resources of the kind. Its errors say what it listed.
	list func(ctx context.Context, p *Provider, c string) ([]T, error)
	// id names one in errors.
	id func(T) string
	// delete deletes one; a nil error with nothing done is fine (a NAT gateway already deleting).
	delete func(ctx context.Context, p *Provider, r T) error
	// retry are the AWS error codes that mean "not yet" (a dependency still going away): delete is
	// tried again, PollInterval apart, PollAttempts times in all.
	retry []string
	// gone are the AWS error codes that mean it is gone already.
	gone []string
	// settle, if set, waits until the resources listed are gone for good, once they are deleted.
	settle func(ctx context.Context, p *Provider, c string, deleted []T) error
}

func (s step[T]) String() string {
	if s.op == "" {
		return "delete " + s.kind
	}
	return s.op + " " + s.kind
}

// run is the executor of a step: list, delete each (retrying while AWS says "not yet", taking "not
// found" for done), settle.
func (s step[T]) run(ctx context.Context, p *Provider, c string) error {
	rs, err := s.list(ctx, p, c)
	if err != nil {
		return err
	}
	for _, r := range rs {
		what := s.String() + " " + s.id(r)
		err := p.retryWhile(ctx, what, s.retry, func(ctx context.Context) error { return s.delete(ctx, p, r) })
		if err != nil && !slices.Contains(s.gone, apiCode(err)) {
			return err
		}
	}
	if s.settle != nil && len(rs) > 0 {
		return s.settle(ctx, p, c, rs)
	}
	return nil
}

// igwAttachment is an internet gateway attached to a VPC.
type igwAttachment struct{ gateway, vpc string }

// teardown is what DeleteNetwork deletes, in this order: each kind once nothing that depends on it
// is left.
var teardown = []teardownStep{
	step[elbtypes.Listener]{
		kind: "listener",
		list: func(ctx context.Context, p *Provider, c string) ([]elbtypes.Listener, error) {
			name := shortName(c, "api")
			lb, err := p.findLoadBalancer(ctx, c, name)
			if err != nil || lb == nil {
				return nil, err
			}
			out, err := p.elb.DescribeListeners(ctx, &elb.DescribeListenersInput{LoadBalancerArn: lb.LoadBalancerArn})
			if err != nil {
				return nil, wrap(err, "list the listeners of load balancer %s", name)
			}
			return out.Listeners, nil
		},
		id: func(l elbtypes.Listener) string { return aws.ToString(l.ListenerArn) },
		delete: func(ctx context.Context, p *Provider, l elbtypes.Listener) error {
			_, err := p.elb.DeleteListener(ctx, &elb.DeleteListenerInput{ListenerArn: l.ListenerArn})
			return err
		},
		gone: []string{"ListenerNotFound"},
	},
	step[elbtypes.LoadBalancer]{
		kind: "load balancer",
		list: func(ctx context.Context, p *Provider, c string) ([]elbtypes.LoadBalancer, error) {
			lb, err := p.findLoadBalancer(ctx, c, shortName(c, "api"))
			if err != nil || lb == nil {
				return nil, err
			}
			return []elbtypes.LoadBalancer{*lb}, nil
		},
		id: func(lb elbtypes.LoadBalancer) string { return aws.ToString(lb.LoadBalancerName) },
		delete: func(ctx context.Context, p *Provider, lb elbtypes.LoadBalancer) error {
			_, err := p.elb.DeleteLoadBalancer(ctx, &elb.DeleteLoadBalancerInput{LoadBalancerArn: lb.LoadBalancerArn})
			return err
		},
		gone: []string{"LoadBalancerNotFound"},
	},
	step[elbtypes.TargetGroup]{
		kind: "target group",
		list: func(ctx context.Context, p *Provider, c string) ([]elbtypes.TargetGroup, error) {
			tg, err := p.findTargetGroup(ctx, c, shortName(c, "api"))
			if err != nil || tg == nil {
				return nil, err
			}
			return []elbtypes.TargetGroup{*tg}, nil
		},
		id: func(tg elbtypes.TargetGroup) string { return aws.ToString(tg.TargetGroupName) },
		delete: func(ctx context.Context, p *Provider, tg elbtypes.TargetGroup) error {
			_, err := p.elb.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: tg.TargetGroupArn})
			return err
		},
		retry: []string{"ResourceInUse"},
		gone:  []string{"TargetGroupNotFound"},
	},
	step[ec2types.NatGateway]{
		kind: "NAT gateway",
		list: func(ctx context.Context, p *Provider, c string) ([]ec2types.NatGateway, error) {
			out, err := p.ec2.DescribeNatGateways(ctx, &ec2.DescribeNatGatewaysInput{Filter: []ec2types.Filter{clusterFilter(c), filter("state", "pending", "available", "deleting")}})
			if err != nil {
				return nil, wrap(err, "list the NAT gateways of cluster %q", c)
			}
			return out.NatGateways, nil
		},
		id: func(n ec2types.NatGateway) string { return aws.ToString(n.NatGatewayId) },
		delete: func(ctx context.Context, p *Provider, n ec2types.NatGateway) error {
			if n.State == ec2types.NatGatewayStateDeleting {
				return nil
			}
			_, err := p.ec2.DeleteNatGateway(ctx, &ec2.DeleteNatGatewayInput{NatGatewayId: n.NatGatewayId})
			return err
		},
		gone:   []string{"NatGatewayNotFound"},
		settle: natGatewaysDeleted,
	},
	step[ec2types.Address]{
		kind: "Elastic IP",
		op:   "release",
		list: func(ctx context.Context, p *Provider, c string) ([]ec2types.Address, error) {
			out, err := p.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{clusterFilter(c)}})
			if err != nil {
				return nil, wrap(err, "list the Elastic IPs of cluster %q", c)
			}
			return out.Addresses, nil
		},
		id: func(a ec2types.Address) string { return aws.ToString(a.AllocationId) },
		delete: func(ctx context.Context, p *Provider, a ec2types.Address) error {
			_, err := p.ec2.ReleaseAddress(ctx, &ec2.ReleaseAddressInput{AllocationId: a.AllocationId})
			return err
		},
		retry: []string{"InvalidIPAddress.InUse"},
		gone:  []string{"InvalidAllocationID.NotFound"},
	},
	step[ec2types.RouteTableAssociation]{
		kind: "route table association",
		op:   "disassociate",
		list: func(ctx context.Context, p *Provider, c string) ([]ec2types.RouteTableAssociation, error) {
			tables, err := p.clusterRouteTables(ctx, c)
			if err != nil {
				return nil, err
			}
			var out []ec2types.RouteTableAssociation
			for _, t := range tables {
				for _, a := range t.Associations {
					if !aws.ToBool(a.Main) {
						out = append(out, a)
					}
				}
			}
			return out, nil
		},
		id: func(a ec2types.RouteTableAssociation) string {
			return aws.ToString(a.RouteTableAssociationId) + " of route table " + aws.ToString(a.RouteTableId)
		},
		delete: func(ctx context.Context, p *Provider, a ec2types.RouteTableAssociation) error {
			_, err := p.ec2.DisassociateRouteTable(ctx, &ec2.DisassociateRouteTableInput{AssociationId: a.RouteTableAssociationId})
			return err
		},
		gone: []string{"InvalidAssociationID.NotFound"},
	},
	step[ec2types.RouteTable]{
		kind: "route table",
		list: func(ctx context.Context, p *Provider, c string) ([]ec2types.RouteTable, error) {
			return p.clusterRouteTables(ctx, c)
		},
		id: func(t ec2types.RouteTable) string { return aws.ToString(t.RouteTableId) },
		delete: func(ctx context.Context, p *Provider, t ec2types.RouteTable) error {
			_, err := p.ec2.DeleteRouteTable(ctx, &ec2.DeleteRouteTableInput{RouteTableId: t.RouteTableId})
			return err
		},
		gone: []string{"InvalidRouteTableID.NotFound"},
	},
	// Reserved addresses whose machines never came, or whose Delete did not finish: each interface
	// uses a subnet and security groups, which cannot go before it.
	step[ec2types.NetworkInterface]{
		kind: "network interface",
		list: func(ctx context.Context, p *Provider, c string) ([]ec2types.NetworkInterface, error) {
			enis, err := p.interfaces(ctx, c, "")
			if err != nil {
				return nil, wrap(err, "list the network interfaces of cluster %q", c)
			}
			return enis, nil
		},
		id: func(n ec2types.NetworkInterface) string {
			return fmt.Sprintf("%s of %q in subnet %s", aws.ToString(n.NetworkInterfaceId), tagValue(n.TagSet, TagName), aws.ToString(n.SubnetId))
		},
		// An interface is in use only while an instance that DeleteNetwork found gone (shutting down)
		// lets go of it.
		delete: func(ctx context.Context, p *Provider, n ec2types.NetworkInterface) error {
			_, err := p.ec2.DeleteNetworkInterface(ctx, &ec2.DeleteNetworkInterfaceInput{NetworkInterfaceId: n.NetworkInterfaceId})
			return err
		},
		retry: []string{"InvalidNetworkInterface.InUse"},
		gone:  []string{"InvalidNetworkInterfaceID.NotFound"},
	},
	// Rules that name another group go first, so that no group is still referenced when it goes.
	step[ec2types.SecurityGroup]{
		kind: "group rules of security group",
		op:   "revoke",
		list: func(ctx context.Context, p *Provider, c string) ([]ec2types.SecurityGroup, error) {
			groups, err := p.clusterSecurityGroups(ctx, c)
			if err != nil {
				return nil, err
			}
			return slices.DeleteFunc(groups, func(g ec2types.SecurityGroup) bool { return len(groupRules(g)) == 0 }), nil
		},
		id: func(g ec2types.SecurityGroup) string { return aws.ToString(g.GroupId) },
		delete: func(ctx context.Context, p *Provider, g ec2types.SecurityGroup) error {
			_, err := p.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: g.GroupId, IpPermissions: groupRules(g)})
			return err
		},
		gone: []string{"InvalidGroup.NotFound", "InvalidPermission.NotFound"},
	},
	step[ec2types.SecurityGroup]{
		kind: "security group",
		list: func(ctx context.Context, p *Provider, c string) ([]ec2types.SecurityGroup, error) {
			return p.clusterSecurityGroups(ctx, c)
		},
		id: func(g ec2types.SecurityGroup) string { return aws.ToString(g.GroupId) },
		delete: func(ctx context.Context, p *Provider, g ec2types.SecurityGroup) error {
			_, err := p.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: g.GroupId})
			return err
		},
		retry: []string{"DependencyViolation"},
		gone:  []string{"InvalidGroup.NotFound"},
	},
	step[ec2types.Subnet]{
		kind: "subnet",
		list: func(ctx context.Context, p *Provider, c string) ([]ec2types.Subnet, error) {
			out, err := p.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{clusterFilter(c)}})
			if err != nil {
				return nil, wrap(err, "list the subnets of cluster %q", c)
			}
			return out.Subnets, nil
		},
		id: func(s ec2types.Subnet) string { return aws.ToString(s.SubnetId) },
		delete: func(ctx context.Context, p *Provider, s ec2types.Subnet) error {
			_, err := p.ec2.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: s.SubnetId})
			return err
		},
		retry: []string{"DependencyViolation"},
		gone:  []string{"InvalidSubnetID.NotFound"},
	},
	step[igwAttachment]{
		kind: "internet gateway",
		op:   "detach",
		list: func(ctx context.Context, p *Provider, c string) ([]igwAttachment, error) {
			igws, err := p.clusterInternetGateways(ctx, c)
			if err != nil {
				return nil, err
			}
			var out []igwAttachment
			for _, g := range igws {
				for _, a := range g.Attachments {
					out = append(out, igwAttachment{gateway: aws.ToString(g.InternetGatewayId), vpc: aws.ToString(a.VpcId)})
				}
			}
			return out, nil
		},
		id: func(a igwAttachment) string { return a.gateway + " from VPC " + a.vpc },
		delete: func(ctx context.Context, p *Provider, a igwAttachment) error {
			_, err := p.ec2.DetachInternetGateway(ctx, &ec2.DetachInternetGatewayInput{InternetGatewayId: aws.String(a.gateway), VpcId: aws.String(a.vpc)})
			return err
		},
		retry: []string{"DependencyViolation"},
		gone:  []string{"Gateway.NotAttached", "InvalidInternetGatewayID.NotFound"},
	},
	step[ec2types.InternetGateway]{
		kind: "internet gateway",
		list: func(ctx context.Context, p *Provider, c string) ([]ec2types.InternetGateway, error) {
			return p.clusterInternetGateways(ctx, c)
		},
		id: func(g ec2types.InternetGateway) string { return aws.ToString(g.InternetGatewayId) },
		delete: func(ctx context.Context, p *Provider, g ec2types.InternetGateway) error {
			_, err := p.ec2.DeleteInternetGateway(ctx, &ec2.DeleteInternetGatewayInput{InternetGatewayId: g.InternetGatewayId})
			return err
		},
		gone: []string{"InvalidInternetGatewayID.NotFound"},
	},
	// Only the VPC kiln made carries kiln.dev/resource=vpc: a VPC of the user's is never listed.
	step[ec2types.Vpc]{
		kind: "VPC",
		list: func(ctx context.Context, p *Provider, c string) ([]ec2types.Vpc, error) {
			out, err := p.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: []ec2types.Filter{clusterFilter(c), filter("tag:"+TagResource, "vpc")}})
			if err != nil {
				return nil, wrap(err, "find the VPC of cluster %q", c)
			}
			return out.Vpcs, nil
		},
		id: func(v ec2types.Vpc) string { return aws.ToString(v.VpcId) },
		delete: func(ctx context.Context, p *Provider, v ec2types.Vpc) error {
			_, err := p.ec2.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: v.VpcId})
			return err
		},
		retry: []string{"DependencyViolation"},
		gone:  []string{"InvalidVpcID.NotFound"},
	},
}

func (p *Provider) clusterRouteTables(ctx context.Context, c string) ([]ec2types.RouteTable, error) {
	out, err := p.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: []ec2types.Filter{clusterFilter(c)}})
	if err != nil {
		return nil, wrap(err, "list the route tables of cluster %q", c)
	}
	return out.RouteTables, nil
}

func (p *Provider) clusterSecurityGroups(ctx context.Context, c string) ([]ec2types.SecurityGroup, error) {
	out, err := p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{clusterFilter(c)}})
	if err != nil {
		return nil, wrap(err, "list the security groups of cluster %q", c)
	}
	return out.SecurityGroups, nil
}

func (p *Provider) clusterInternetGateways(ctx context.Context, c string) ([]ec2types.InternetGateway, error) {
	out, err := p.ec2.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{Filters: []ec2types.Filter{clusterFilter(c)}})
	if err != nil {
		return nil, wrap(err, "list the internet gateways of cluster %q", c)
	}
	return out.InternetGateways, nil
}

// groupRules are the inbound rules of g whose source is a security group.
func groupRules(g ec2types.SecurityGroup) []ec2types.IpPermission {
	var refs []ec2types.IpPermission
	for _, r := range rulesOf(g.IpPermissions) {
		if r.group != "" {
			refs = append(refs, r.permission())
		}
	}
	return refs
}

// natGatewaysDeleted waits, with EC2's NatGatewayDeleted waiter, until the NAT gateways are deleted
// (or not even listed any more): their Elastic IPs stay associated until then.
func natGatewaysDeleted(ctx context.Context, p *Provider, c string, nats []ec2types.NatGateway) error {
	what := fmt.Sprintf("wait for the NAT gateways of cluster %q to go", c)
	var ids []string
	for _, n := range nats {
		ids = append(ids, aws.ToString(n.NatGatewayId))
	}
	in := &ec2.DescribeNatGatewaysInput{Filter: []ec2types.Filter{filter("nat-gateway-id", ids...)}}
	err := ec2.NewNatGatewayDeletedWaiter(p.ec2).Wait(ctx, in, p.waitBudget(), func(o *ec2.NatGatewayDeletedWaiterOptions) {
		o.MinDelay, o.MaxDelay = p.opts.PollInterval, p.opts.PollInterval
		deleted := o.Retryable
		o.Retryable = capChecks(p, what, func(ctx context.Context, in *ec2.DescribeNatGatewaysInput, out *ec2.DescribeNatGatewaysOutput, err error) (bool, error) {
			if err == nil && len(out.NatGateways) == 0 {
				return false, nil // AWS forgets deleted gateways after a while
			}
			return deleted(ctx, in, out, err)
		})
	})
	return waited(ctx, what, err)
}
