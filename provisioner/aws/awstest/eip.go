package awstest

import "fmt"

var eipActions = actions{
	"AllocateAddress":   (*Server).allocateAddress,
	"DescribeAddresses": (*Server).describeAddresses,
	"ReleaseAddress":    (*Server).releaseAddress,
}

type address struct {
	allocation, publicIP, association, nat string
	tags                                   tags
}

type xmlAddress struct {
	AllocationID  string   `xml:"allocationId"`
	PublicIP      string   `xml:"publicIp"`
	Domain        string   `xml:"domain"`
	AssociationID string   `xml:"associationId,omitempty"`
	Tags          []xmlTag `xml:"tagSet>item"`
}

func (s *Server) allocateAddress(p params) (any, error) {
	t, err := tagsFrom(p, "elastic-ip")
	if err != nil {
		return nil, err
	}
	a := &address{allocation: s.id("eipalloc"), publicIP: fmt.Sprintf("198.51.100.%d", len(s.ec2.addresses)+1), tags: t}
	s.ec2.addresses[a.allocation] = a
	return &struct {
		ec2Meta
		AllocationID string `xml:"allocationId"`
		PublicIP     string `xml:"publicIp"`
		Domain       string `xml:"domain"`
	}{AllocationID: a.allocation, PublicIP: a.publicIP, Domain: "vpc"}, nil
}

func (s *Server) describeAddresses(p params) (any, error) {
	fs := filtersFrom(p)
	var out []xmlAddress
	for _, id := range sortedKeys(s.ec2.addresses) {
		a := s.ec2.addresses[id]
		ok, err := match(fs, a.tags, map[string][]string{"allocation-id": {a.allocation}, "domain": {"vpc"}})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, xmlAddress{AllocationID: a.allocation, PublicIP: a.publicIP, Domain: "vpc", AssociationID: a.association, Tags: a.tags.xml()})
		}
	}
	return &struct {
		ec2Meta
		Addresses []xmlAddress `xml:"addressesSet>item"`
	}{Addresses: out}, nil
}

func (s *Server) releaseAddress(p params) (any, error) {
	a, ok := s.ec2.addresses[p.get("AllocationId")]
	if !ok {
		return nil, badRequest("InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist", p.get("AllocationId"))
	}
	if a.association != "" {
		return nil, badRequest("InvalidIPAddress.InUse", "Address %s is in use", a.publicIP)
	}
	delete(s.ec2.addresses, a.allocation)
	return &struct {
		ec2Meta
		Return bool `xml:"return"`
	}{Return: true}, nil
}
