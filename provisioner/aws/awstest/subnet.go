package awstest

import (
	"net/netip"
	"slices"
	"strings"
)

var subnetActions = actions{
	"CreateSubnet":    (*Server).createSubnet,
	"DescribeSubnets": (*Server).describeSubnets,
	"DeleteSubnet":    (*Server).deleteSubnet,
}

type subnet struct {
	id, vpc, az string
	cidr        netip.Prefix
	mapPublicIP bool
	// used maps each address in use (an instance's, an interface's) to its holder's ID.
	used map[netip.Addr]string
	tags tags
}

type xmlSubnet struct {
	ID          string   `xml:"subnetId"`
	VpcID       string   `xml:"vpcId"`
	CIDR        string   `xml:"cidrBlock"`
	AZ          string   `xml:"availabilityZone"`
	State       string   `xml:"state"`
	MapPublicIP bool     `xml:"mapPublicIpOnLaunch"`
	Available   int      `xml:"availableIpAddressCount"`
	Tags        []xmlTag `xml:"tagSet>item"`
}

func (sn *subnet) xml() xmlSubnet {
	return xmlSubnet{ID: sn.id, VpcID: sn.vpc, CIDR: sn.cidr.String(), AZ: sn.az, State: "available",
		MapPublicIP: sn.mapPublicIP, Available: sn.size() - 5 - len(sn.used), Tags: sn.tags.xml()}
}

func overlaps(a, b netip.Prefix) bool { return a.Overlaps(b) }

func (sn *subnet) size() int { return 1 << (32 - sn.cidr.Bits()) }

// usable reports whether a is an address of the subnet that EC2 hands out: not the network address,
// the next three (the VPC router, DNS, reserved for the future) or the broadcast address.
func (sn *subnet) usable(a netip.Addr) bool {
	if !sn.cidr.Contains(a) {
		return false
	}
	base := sn.cidr.Addr().As4()
	ip := a.As4()
	off := 0
	for i := range 4 {
		off = off<<8 | int(ip[i]-base[i])
	}
	return off >= 4 && off < sn.size()-1
}

// allocate takes the lowest free address of the subnet for holder.
func (sn *subnet) allocate(holder string) (netip.Addr, error) {
	for a := sn.cidr.Addr(); sn.cidr.Contains(a); a = a.Next() {
		if _, taken := sn.used[a]; !taken && sn.usable(a) {
			sn.used[a] = holder
			return a, nil
		}
	}
	return netip.Addr{}, badRequest("InsufficientFreeAddressesInSubnet", "There are not enough free addresses in subnet '%s' to satisfy the requested number of instances.", sn.id)
}

// take takes the address ip of the subnet for holder.
func (sn *subnet) take(ip, holder string) (netip.Addr, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil || !sn.usable(a) {
		return netip.Addr{}, badRequest("InvalidParameterValue", "Address %s does not fall within the subnet's address range or is reserved by AWS (subnet %s, %s)", ip, sn.id, sn.cidr)
	}
	if by, taken := sn.used[a]; taken {
		return netip.Addr{}, badRequest("InvalidIPAddress.InUse", "The specified address %s is already in use by %s", ip, by)
	}
	sn.used[a] = holder
	return a, nil
}

// release gives an address back.
func (sn *subnet) release(a netip.Addr) { delete(sn.used, a) }

func (s *Server) createSubnet(p params) (any, error) {
	v, ok := s.ec2.vpcs[p.get("VpcId")]
	if !ok {
		return nil, notFound("InvalidVpcID.NotFound", "vpc ID", p.get("VpcId"))
	}
	cidr, err := parseCIDR("cidrBlock", p.get("CidrBlock"))
	if err != nil {
		return nil, err
	}
	if !v.cidr.Contains(cidr.Addr()) || cidr.Bits() < v.cidr.Bits() || cidr.Bits() > 28 {
		return nil, badRequest("InvalidSubnet.Range", "The CIDR '%s' is invalid for the VPC %s (%s).", cidr, v.id, v.cidr)
	}
	for _, sn := range s.ec2.subnets {
		if sn.vpc == v.id && overlaps(sn.cidr, cidr) {
			return nil, badRequest("InvalidSubnet.Conflict", "The CIDR '%s' conflicts with another subnet (%s)", cidr, sn.id)
		}
	}
	az := p.get("AvailabilityZone")
	if !strings.HasPrefix(az, Region) || len(az) != len(Region)+1 {
		return nil, badRequest("InvalidParameterValue", "Value (%s) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: %sa, %sb, %sc.", az, Region, Region, Region)
	}
	t, err := tagsFrom(p, "subnet")
	if err != nil {
		return nil, err
	}
	sn := &subnet{id: s.id("subnet"), vpc: v.id, az: az, cidr: cidr, used: map[netip.Addr]string{}, tags: t}
	s.ec2.subnets[sn.id] = sn
	return &struct {
		ec2Meta
		Subnet xmlSubnet `xml:"subnet"`
	}{Subnet: sn.xml()}, nil
}

func (s *Server) describeSubnets(p params) (any, error) {
	fs := filtersFrom(p)
	ids := p.list("SubnetId")
	var out []xmlSubnet
	for _, id := range sortedKeys(s.ec2.subnets) {
		sn := s.ec2.subnets[id]
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		ok, err := match(fs, sn.tags, map[string][]string{"vpc-id": {sn.vpc}, "subnet-id": {sn.id},
			"availability-zone": {sn.az}, "cidr-block": {sn.cidr.String()}, "state": {"available"}})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, sn.xml())
		}
	}
	from, to, next, err := page(p, len(out))
	if err != nil {
		return nil, err
	}
	return &struct {
		ec2Meta
		Subnets []xmlSubnet `xml:"subnetSet>item"`
		Next    string      `xml:"nextToken,omitempty"`
	}{Subnets: out[from:to], Next: next}, nil
}

func (s *Server) deleteSubnet(p params) (any, error) {
	id := p.get("SubnetId")
	if _, ok := s.ec2.subnets[id]; !ok {
		return nil, notFound("InvalidSubnetID.NotFound", "subnet ID", id)
	}
	for _, in := range s.ec2.instances {
		if in.SubnetID == id && in.State != "terminated" {
			return nil, badRequest("DependencyViolation", "The subnet '%s' has dependencies and cannot be deleted (instance %s).", id, in.ID)
		}
	}
	for _, n := range s.ec2.enis {
		if n.subnet == id {
			return nil, badRequest("DependencyViolation", "The subnet '%s' has dependencies and cannot be deleted (network interface %s).", id, n.id)
		}
	}
	for _, n := range s.ec2.nats {
		if n.subnet == id && n.state != "deleted" {
			return nil, badRequest("DependencyViolation", "The subnet '%s' has dependencies and cannot be deleted (NAT gateway %s).", id, n.id)
		}
	}
	for _, lb := range s.elb.lbs {
		if slices.Contains(lb.subnets, id) {
			return nil, badRequest("DependencyViolation", "The subnet '%s' has dependencies and cannot be deleted (load balancer %s).", id, lb.name)
		}
	}
	for _, rt := range s.ec2.tables {
		rt.associations = slices.DeleteFunc(rt.associations, func(a association) bool { return a.subnet == id })
	}
	delete(s.ec2.subnets, id)
	return okReturn(), nil
}
