package awstest

import (
	"net/netip"
	"slices"
)

var vpcActions = actions{
	"CreateVpc":    (*Server).createVpc,
	"DescribeVpcs": (*Server).describeVpcs,
	"DeleteVpc":    (*Server).deleteVpc,
}

type vpc struct {
	id   string
	cidr netip.Prefix
	tags tags
}

type xmlVpc struct {
	ID        string   `xml:"vpcId"`
	CIDR      string   `xml:"cidrBlock"`
	State     string   `xml:"state"`
	IsDefault bool     `xml:"isDefault"`
	OwnerID   string   `xml:"ownerId"`
	Tags      []xmlTag `xml:"tagSet>item"`
}

func (v *vpc) xml() xmlVpc {
	return xmlVpc{ID: v.id, CIDR: v.cidr.String(), State: "available", OwnerID: AccountID, Tags: v.tags.xml()}
}

func (s *Server) createVpc(p params) (any, error) {
	cidr, err := parseCIDR("cidrBlock", p.get("CidrBlock"))
	if err != nil {
		return nil, err
	}
	if cidr.Bits() < 16 || cidr.Bits() > 28 {
		return nil, badRequest("InvalidVpc.Range", "The CIDR '%s' is invalid: a VPC is a /16 to a /28", cidr)
	}
	t, err := tagsFrom(p, "vpc")
	if err != nil {
		return nil, err
	}
	v := &vpc{id: s.id("vpc"), cidr: cidr, tags: t}
	s.ec2.vpcs[v.id] = v
	// Every VPC comes with a main route table and a default security group.
	rt := &routeTable{id: s.id("rtb"), vpc: v.id, routes: []route{{dest: cidr.String(), gateway: "local"}}, tags: tags{}}
	rt.associations = []association{{id: s.id("rtbassoc"), main: true}}
	s.ec2.tables[rt.id] = rt
	sg := &securityGroup{id: s.id("sg"), name: "default", description: "default VPC security group", vpc: v.id, tags: tags{}}
	sg.ingress = []Rule{{Protocol: "-1", Group: sg.id}}
	sg.egress = []Rule{{Protocol: "-1", CIDR: "0.0.0.0/0"}}
	s.ec2.groups[sg.id] = sg
	return &struct {
		ec2Meta
		Vpc xmlVpc `xml:"vpc"`
	}{Vpc: v.xml()}, nil
}

func (s *Server) describeVpcs(p params) (any, error) {
	fs := filtersFrom(p)
	ids := p.list("VpcId")
	var out []xmlVpc
	for _, id := range sortedKeys(s.ec2.vpcs) {
		v := s.ec2.vpcs[id]
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		ok, err := match(fs, v.tags, map[string][]string{"vpc-id": {v.id}, "cidr": {v.cidr.String()}, "state": {"available"}})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, v.xml())
		}
	}
	for _, id := range ids {
		if _, ok := s.ec2.vpcs[id]; !ok {
			return nil, notFound("InvalidVpcID.NotFound", "vpc ID", id)
		}
	}
	from, to, next, err := page(p, len(out))
	if err != nil {
		return nil, err
	}
	return &struct {
		ec2Meta
		Vpcs []xmlVpc `xml:"vpcSet>item"`
		Next string   `xml:"nextToken,omitempty"`
	}{Vpcs: out[from:to], Next: next}, nil
}

func (s *Server) deleteVpc(p params) (any, error) {
	id := p.get("VpcId")
	if _, ok := s.ec2.vpcs[id]; !ok {
		return nil, notFound("InvalidVpcID.NotFound", "vpc ID", id)
	}
	dep := func(kind, depID string) error {
		return badRequest("DependencyViolation", "The vpc '%s' has dependencies and cannot be deleted (%s %s).", id, kind, depID)
	}
	for _, sn := range s.ec2.subnets {
		if sn.vpc == id {
			return nil, dep("subnet", sn.id)
		}
	}
	for _, g := range s.ec2.igws {
		if g.vpc == id {
			return nil, dep("internet gateway", g.id)
		}
	}
	for _, sg := range s.ec2.groups {
		if sg.vpc == id && sg.name != "default" {
			return nil, dep("security group", sg.id)
		}
	}
	for _, rt := range s.ec2.tables {
		if rt.vpc == id && !rt.isMain() {
			return nil, dep("route table", rt.id)
		}
	}
	for _, lb := range s.elb.lbs {
		if lb.vpc == id {
			return nil, dep("load balancer", lb.name)
		}
	}
	for k, rt := range s.ec2.tables {
		if rt.vpc == id {
			delete(s.ec2.tables, k)
		}
	}
	for k, sg := range s.ec2.groups {
		if sg.vpc == id {
			delete(s.ec2.groups, k)
		}
	}
	delete(s.ec2.vpcs, id)
	return okReturn(), nil
}
