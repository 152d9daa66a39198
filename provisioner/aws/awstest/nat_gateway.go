package awstest

import "time"

var natGatewayActions = actions{
	"CreateNatGateway":    (*Server).createNatGateway,
	"DescribeNatGateways": (*Server).describeNatGateways,
	"DeleteNatGateway":    (*Server).deleteNatGateway,
}

type natGateway struct {
	id, vpc, subnet, allocation, state string
	created                            time.Time
	tags                               tags
}

type xmlNat struct {
	ID        string          `xml:"natGatewayId"`
	VpcID     string          `xml:"vpcId"`
	SubnetID  string          `xml:"subnetId"`
	State     string          `xml:"state"`
	Created   string          `xml:"createTime"`
	Type      string          `xml:"connectivityType"`
	Addresses []xmlNatAddress `xml:"natGatewayAddressSet>item"`
	Tags      []xmlTag        `xml:"tagSet>item"`
}

type xmlNatAddress struct {
	AllocationID string `xml:"allocationId"`
	PublicIP     string `xml:"publicIp"`
	IsPrimary    bool   `xml:"isPrimary"`
}

func (s *Server) natXML(n *natGateway) xmlNat {
	x := xmlNat{ID: n.id, VpcID: n.vpc, SubnetID: n.subnet, State: n.state, Created: n.created.UTC().Format(timeFormat),
		Type: "public", Tags: n.tags.xml()}
	if a := s.ec2.addresses[n.allocation]; a != nil {
		x.Addresses = []xmlNatAddress{{AllocationID: a.allocation, PublicIP: a.publicIP, IsPrimary: true}}
	}
	return x
}

func (s *Server) createNatGateway(p params) (any, error) {
	if id, err := s.ec2.idempotent("CreateNatGateway", p); err != nil || id != "" {
		if err != nil {
			return nil, err
		}
		return &struct {
			ec2Meta
			Token string `xml:"clientToken"`
			Nat   xmlNat `xml:"natGateway"`
		}{Token: p.get("ClientToken"), Nat: s.natXML(s.ec2.nats[id])}, nil
	}
	sn, ok := s.ec2.subnets[p.get("SubnetId")]
	if !ok {
		return nil, notFound("InvalidSubnetID.NotFound", "subnet ID", p.get("SubnetId"))
	}
	a, ok := s.ec2.addresses[p.get("AllocationId")]
	if !ok {
		return nil, notFound("InvalidAllocationID.NotFound", "allocation ID", p.get("AllocationId"))
	}
	if a.association != "" {
		return nil, badRequest("Resource.AlreadyAssociated", "Elastic IP address [%s] is already associated", a.allocation)
	}
	t, err := tagsFrom(p, "natgateway")
	if err != nil {
		return nil, err
	}
	n := &natGateway{id: s.id("nat"), vpc: sn.vpc, subnet: sn.id, allocation: a.allocation, state: "pending", created: s.now(), tags: t}
	a.association = s.id("eipassoc")
	a.nat = n.id
	s.ec2.nats[n.id] = n
	s.ec2.remember("CreateNatGateway", p, n.id)
	return &struct {
		ec2Meta
		Token string `xml:"clientToken,omitempty"`
		Nat   xmlNat `xml:"natGateway"`
	}{Token: p.get("ClientToken"), Nat: s.natXML(n)}, nil
}

func (s *Server) describeNatGateways(p params) (any, error) {
	fs := filtersFrom(p)
	var out []xmlNat
	var seen []*natGateway
	for _, id := range sortedKeys(s.ec2.nats) {
		n := s.ec2.nats[id]
		ok, err := match(fs, n.tags, map[string][]string{"vpc-id": {n.vpc}, "subnet-id": {n.subnet}, "state": {n.state}, "nat-gateway-id": {n.id}})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, s.natXML(n))
			seen = append(seen, n)
		}
	}
	// Gateways settle once they have been seen in their transitional state.
	for _, n := range seen {
		switch n.state {
		case "pending":
			n.state = "available"
		case "deleting":
			n.state = "deleted"
			if a := s.ec2.addresses[n.allocation]; a != nil {
				a.association, a.nat = "", ""
			}
		}
	}
	from, to, next, err := page(p, len(out))
	if err != nil {
		return nil, err
	}
	return &struct {
		ec2Meta
		Nats []xmlNat `xml:"natGatewaySet>item"`
		Next string   `xml:"nextToken,omitempty"`
	}{Nats: out[from:to], Next: next}, nil
}

func (s *Server) deleteNatGateway(p params) (any, error) {
	n, ok := s.ec2.nats[p.get("NatGatewayId")]
	if !ok || n.state == "deleted" {
		return nil, badRequest("NatGatewayNotFound", "NAT gateway %s was not found", p.get("NatGatewayId"))
	}
	n.state = "deleting"
	return &struct {
		ec2Meta
		ID string `xml:"natGatewayId"`
	}{ID: n.id}, nil
}
