package awstest

import "slices"

var routeTableActions = actions{
	"CreateRouteTable":       (*Server).createRouteTable,
	"DescribeRouteTables":    (*Server).describeRouteTables,
	"CreateRoute":            (*Server).createRoute,
	"AssociateRouteTable":    (*Server).associateRouteTable,
	"DisassociateRouteTable": (*Server).disassociateRouteTable,
	"DeleteRouteTable":       (*Server).deleteRouteTable,
}

type route struct {
	dest, gateway, nat string
}

type association struct {
	id, subnet string
	main       bool
}

type routeTable struct {
	id, vpc      string
	routes       []route
	associations []association
	tags         tags
}

type xmlRoute struct {
	Dest    string `xml:"destinationCidrBlock"`
	Gateway string `xml:"gatewayId,omitempty"`
	Nat     string `xml:"natGatewayId,omitempty"`
	State   string `xml:"state"`
	Origin  string `xml:"origin"`
}

type xmlAssociation struct {
	ID     string `xml:"routeTableAssociationId"`
	Table  string `xml:"routeTableId"`
	Subnet string `xml:"subnetId,omitempty"`
	Main   bool   `xml:"main"`
	State  string `xml:"associationState>state"`
}

type xmlRouteTable struct {
	ID           string           `xml:"routeTableId"`
	VpcID        string           `xml:"vpcId"`
	OwnerID      string           `xml:"ownerId"`
	Routes       []xmlRoute       `xml:"routeSet>item"`
	Associations []xmlAssociation `xml:"associationSet>item"`
	Tags         []xmlTag         `xml:"tagSet>item"`
}

func (rt *routeTable) isMain() bool {
	return slices.ContainsFunc(rt.associations, func(a association) bool { return a.main })
}

func (rt *routeTable) xml() xmlRouteTable {
	x := xmlRouteTable{ID: rt.id, VpcID: rt.vpc, OwnerID: AccountID, Tags: rt.tags.xml()}
	for _, r := range rt.routes {
		origin := "CreateRoute"
		if r.gateway == "local" {
			origin = "CreateRouteTable"
		}
		x.Routes = append(x.Routes, xmlRoute{Dest: r.dest, Gateway: r.gateway, Nat: r.nat, State: "active", Origin: origin})
	}
	for _, a := range rt.associations {
		x.Associations = append(x.Associations, xmlAssociation{ID: a.id, Table: rt.id, Subnet: a.subnet, Main: a.main, State: "associated"})
	}
	return x
}

func (s *Server) createRouteTable(p params) (any, error) {
	if id, err := s.ec2.idempotent("CreateRouteTable", p); err != nil || id != "" {
		if err != nil {
			return nil, err
		}
		if rt, ok := s.ec2.tables[id]; ok {
			return &struct {
				ec2Meta
				Token string        `xml:"clientToken"`
				Table xmlRouteTable `xml:"routeTable"`
			}{Token: p.get("ClientToken"), Table: rt.xml()}, nil
		}
	}
	v, ok := s.ec2.vpcs[p.get("VpcId")]
	if !ok {
		return nil, notFound("InvalidVpcID.NotFound", "vpc ID", p.get("VpcId"))
	}
	t, err := tagsFrom(p, "route-table")
	if err != nil {
		return nil, err
	}
	rt := &routeTable{id: s.id("rtb"), vpc: v.id, routes: []route{{dest: v.cidr.String(), gateway: "local"}}, tags: t}
	s.ec2.tables[rt.id] = rt
	s.ec2.remember("CreateRouteTable", p, rt.id)
	return &struct {
		ec2Meta
		Token string        `xml:"clientToken,omitempty"`
		Table xmlRouteTable `xml:"routeTable"`
	}{Token: p.get("ClientToken"), Table: rt.xml()}, nil
}

// routeTable is the table RouteTableId names.
func (s *Server) routeTable(p params) (*routeTable, error) {
	rt, ok := s.ec2.tables[p.get("RouteTableId")]
	if !ok {
		return nil, notFound("InvalidRouteTableID.NotFound", "routeTable ID", p.get("RouteTableId"))
	}
	return rt, nil
}

func (s *Server) createRoute(p params) (any, error) {
	rt, err := s.routeTable(p)
	if err != nil {
		return nil, err
	}
	dest, err := parseCIDR("destinationCidrBlock", p.get("DestinationCidrBlock"))
	if err != nil {
		return nil, err
	}
	r := route{dest: dest.String(), gateway: p.get("GatewayId"), nat: p.get("NatGatewayId")}
	switch {
	case r.gateway != "":
		g, ok := s.ec2.igws[r.gateway]
		if !ok {
			return nil, notFound("InvalidGatewayID.NotFound", "gateway ID", r.gateway)
		}
		if g.vpc != rt.vpc {
			return nil, badRequest("InvalidParameterValue", "route table %s and network gateway %s belong to different networks", rt.id, g.id)
		}
	case r.nat != "":
		n, ok := s.ec2.nats[r.nat]
		if !ok || n.state == "deleted" {
			return nil, notFound("InvalidNatGatewayID.NotFound", "NAT gateway ID", r.nat)
		}
		if n.vpc != rt.vpc {
			return nil, badRequest("InvalidParameterValue", "route table %s and NAT gateway %s belong to different networks", rt.id, n.id)
		}
	default:
		return nil, badRequest("MissingParameter", "a route needs a target (GatewayId or NatGatewayId)")
	}
	for _, have := range rt.routes {
		if have.dest == r.dest {
			return nil, badRequest("RouteAlreadyExists", "The route identified by %s already exists.", r.dest)
		}
	}
	rt.routes = append(rt.routes, r)
	return okReturn(), nil
}

func (s *Server) associateRouteTable(p params) (any, error) {
	rt, err := s.routeTable(p)
	if err != nil {
		return nil, err
	}
	sn, ok := s.ec2.subnets[p.get("SubnetId")]
	if !ok {
		return nil, notFound("InvalidSubnetID.NotFound", "subnet ID", p.get("SubnetId"))
	}
	if sn.vpc != rt.vpc {
		return nil, badRequest("InvalidParameterValue", "route table %s and subnet %s belong to different networks", rt.id, sn.id)
	}
	for _, other := range s.ec2.tables {
		for _, a := range other.associations {
			if a.subnet == sn.id {
				return nil, badRequest("Resource.AlreadyAssociated", "the specified association for route table %s conflicts with an existing association", other.id)
			}
		}
	}
	a := association{id: s.id("rtbassoc"), subnet: sn.id}
	rt.associations = append(rt.associations, a)
	return &struct {
		ec2Meta
		ID    string `xml:"associationId"`
		State string `xml:"associationState>state"`
	}{ID: a.id, State: "associated"}, nil
}

func (s *Server) disassociateRouteTable(p params) (any, error) {
	id := p.get("AssociationId")
	for _, rt := range s.ec2.tables {
		for i, a := range rt.associations {
			if a.id == id && !a.main {
				rt.associations = slices.Delete(rt.associations, i, i+1)
				return okReturn(), nil
			}
		}
	}
	return nil, notFound("InvalidAssociationID.NotFound", "association ID", id)
}

func (s *Server) deleteRouteTable(p params) (any, error) {
	rt, err := s.routeTable(p)
	if err != nil {
		return nil, err
	}
	if len(rt.associations) > 0 {
		return nil, badRequest("DependencyViolation", "The routeTable '%s' has dependencies and cannot be deleted.", rt.id)
	}
	delete(s.ec2.tables, rt.id)
	return okReturn(), nil
}

func (s *Server) describeRouteTables(p params) (any, error) {
	fs := filtersFrom(p)
	var out []xmlRouteTable
	for _, id := range sortedKeys(s.ec2.tables) {
		rt := s.ec2.tables[id]
		main := "false"
		if rt.isMain() {
			main = "true"
		}
		var subnets []string
		for _, a := range rt.associations {
			if a.subnet != "" {
				subnets = append(subnets, a.subnet)
			}
		}
		ok, err := match(fs, rt.tags, map[string][]string{"vpc-id": {rt.vpc}, "route-table-id": {rt.id},
			"association.main": {main}, "association.subnet-id": subnets})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, rt.xml())
		}
	}
	from, to, next, err := page(p, len(out))
	if err != nil {
		return nil, err
	}
	return &struct {
		ec2Meta
		Tables []xmlRouteTable `xml:"routeTableSet>item"`
		Next   string          `xml:"nextToken,omitempty"`
	}{Tables: out[from:to], Next: next}, nil
}
