package awstest

var internetGatewayActions = actions{
	"CreateInternetGateway":    (*Server).createInternetGateway,
	"AttachInternetGateway":    (*Server).attachInternetGateway,
	"DetachInternetGateway":    (*Server).detachInternetGateway,
	"DeleteInternetGateway":    (*Server).deleteInternetGateway,
	"DescribeInternetGateways": (*Server).describeInternetGateways,
}

type igw struct {
	id   string
	vpc  string // attached VPC, or empty
	tags tags
}

type xmlIGW struct {
	ID          string          `xml:"internetGatewayId"`
	OwnerID     string          `xml:"ownerId"`
	Attachments []xmlAttachment `xml:"attachmentSet>item"`
	Tags        []xmlTag        `xml:"tagSet>item"`
}

type xmlAttachment struct {
	VpcID string `xml:"vpcId"`
	State string `xml:"state"`
}

func (g *igw) xml() xmlIGW {
	x := xmlIGW{ID: g.id, OwnerID: AccountID, Tags: g.tags.xml()}
	if g.vpc != "" {
		x.Attachments = []xmlAttachment{{VpcID: g.vpc, State: "available"}}
	}
	return x
}

func (s *Server) createInternetGateway(p params) (any, error) {
	t, err := tagsFrom(p, "internet-gateway")
	if err != nil {
		return nil, err
	}
	g := &igw{id: s.id("igw"), tags: t}
	s.ec2.igws[g.id] = g
	return &struct {
		ec2Meta
		IGW xmlIGW `xml:"internetGateway"`
	}{IGW: g.xml()}, nil
}

// internetGateway is the gateway InternetGatewayId names.
func (s *Server) internetGateway(p params) (*igw, error) {
	g, ok := s.ec2.igws[p.get("InternetGatewayId")]
	if !ok {
		return nil, notFound("InvalidInternetGatewayID.NotFound", "internetGateway ID", p.get("InternetGatewayId"))
	}
	return g, nil
}

func (s *Server) attachInternetGateway(p params) (any, error) {
	g, err := s.internetGateway(p)
	if err != nil {
		return nil, err
	}
	if _, ok := s.ec2.vpcs[p.get("VpcId")]; !ok {
		return nil, notFound("InvalidVpcID.NotFound", "vpc ID", p.get("VpcId"))
	}
	if g.vpc != "" {
		return nil, badRequest("Resource.AlreadyAssociated", "resource %s is already attached to network %s", g.id, g.vpc)
	}
	g.vpc = p.get("VpcId")
	return okReturn(), nil
}

func (s *Server) detachInternetGateway(p params) (any, error) {
	g, err := s.internetGateway(p)
	if err != nil {
		return nil, err
	}
	if g.vpc != p.get("VpcId") {
		return nil, badRequest("Gateway.NotAttached", "resource %s is not attached to network %s", g.id, p.get("VpcId"))
	}
	for _, a := range s.ec2.addresses {
		if a.association != "" {
			if n := s.ec2.nats[a.nat]; n != nil && n.vpc == g.vpc {
				return nil, badRequest("DependencyViolation", "Network %s has some mapped public address(es). Please unmap those public address(es) before detaching the gateway.", g.vpc)
			}
		}
	}
	g.vpc = ""
	return okReturn(), nil
}

func (s *Server) deleteInternetGateway(p params) (any, error) {
	g, err := s.internetGateway(p)
	if err != nil {
		return nil, err
	}
	if g.vpc != "" {
		return nil, badRequest("DependencyViolation", "The internetGateway '%s' has dependencies and cannot be deleted.", g.id)
	}
	delete(s.ec2.igws, g.id)
	return okReturn(), nil
}

func (s *Server) describeInternetGateways(p params) (any, error) {
	fs := filtersFrom(p)
	var out []xmlIGW
	for _, id := range sortedKeys(s.ec2.igws) {
		g := s.ec2.igws[id]
		ok, err := match(fs, g.tags, map[string][]string{"internet-gateway-id": {g.id}, "attachment.vpc-id": {g.vpc}})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, g.xml())
		}
	}
	from, to, next, err := page(p, len(out))
	if err != nil {
		return nil, err
	}
	return &struct {
		ec2Meta
		IGWs []xmlIGW `xml:"internetGatewaySet>item"`
		Next string   `xml:"nextToken,omitempty"`
	}{IGWs: out[from:to], Next: next}, nil
}
