package awstest

import (
	"net/netip"
	"slices"
)

var networkInterfaceActions = actions{
	"CreateNetworkInterface":    (*Server).createNetworkInterface,
	"DescribeNetworkInterfaces": (*Server).describeNetworkInterfaces,
	"DeleteNetworkInterface":    (*Server).deleteNetworkInterface,
}

// networkInterface is an elastic network interface made by CreateNetworkInterface. The primary
// interfaces RunInstances makes for an instance launched into a subnet are not kept as such: the
// instance holds their address.
type networkInterface struct {
	id, subnet, vpc, az, description string
	addr                             netip.Addr
	groups                           []string
	// instance it is attached to, "" while available; attachment is the attachment's ID.
	instance, attachment string
	tags                 tags
}

type xmlENI struct {
	ID          string        `xml:"networkInterfaceId"`
	SubnetID    string        `xml:"subnetId"`
	VpcID       string        `xml:"vpcId"`
	AZ          string        `xml:"availabilityZone"`
	Description string        `xml:"description"`
	OwnerID     string        `xml:"ownerId"`
	Status      string        `xml:"status"`
	Type        string        `xml:"interfaceType"`
	PrivateIP   string        `xml:"privateIpAddress"`
	Addresses   []xmlENIAddr  `xml:"privateIpAddressesSet>item"`
	Groups      []xmlGroupRef `xml:"groupSet>item"`
	Attachment  *xmlENIAttach `xml:"attachment,omitempty"`
	Tags        []xmlTag      `xml:"tagSet>item"`
}

type xmlENIAddr struct {
	IP      string `xml:"privateIpAddress"`
	Primary bool   `xml:"primary"`
}

type xmlGroupRef struct {
	ID   string `xml:"groupId"`
	Name string `xml:"groupName"`
}

type xmlENIAttach struct {
	ID                  string `xml:"attachmentId"`
	InstanceID          string `xml:"instanceId"`
	DeviceIndex         int    `xml:"deviceIndex"`
	Status              string `xml:"status"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

func (s *Server) eniXML(n *networkInterface) xmlENI {
	x := xmlENI{ID: n.id, SubnetID: n.subnet, VpcID: n.vpc, AZ: n.az, Description: n.description, OwnerID: AccountID,
		Status: "available", Type: "interface", PrivateIP: n.addr.String(),
		Addresses: []xmlENIAddr{{IP: n.addr.String(), Primary: true}}, Tags: n.tags.xml()}
	for _, g := range n.groups {
		ref := xmlGroupRef{ID: g}
		if sg := s.ec2.groups[g]; sg != nil {
			ref.Name = sg.name
		}
		x.Groups = append(x.Groups, ref)
	}
	if n.instance != "" {
		x.Status = "in-use"
		x.Attachment = &xmlENIAttach{ID: n.attachment, InstanceID: n.instance, Status: "attached"}
	}
	return x
}

func (s *Server) createNetworkInterface(p params) (any, error) {
	answer := func(n *networkInterface) any {
		return &struct {
			ec2Meta
			ENI   xmlENI `xml:"networkInterface"`
			Token string `xml:"clientToken,omitempty"`
		}{ENI: s.eniXML(n), Token: p.get("ClientToken")}
	}
	if id, err := s.ec2.idempotent("CreateNetworkInterface", p); err != nil || id != "" {
		if err != nil {
			return nil, err
		}
		n, ok := s.ec2.enis[id]
		if !ok {
			return nil, notFound("InvalidNetworkInterfaceID.NotFound", "network interface ID", id)
		}
		return answer(n), nil
	}
	sn, ok := s.ec2.subnets[p.get("SubnetId")]
	if !ok {
		return nil, notFound("InvalidSubnetID.NotFound", "subnet ID", p.get("SubnetId"))
	}
	groups := p.list("SecurityGroupId")
	for _, g := range groups {
		sg, ok := s.ec2.groups[g]
		if !ok {
			return nil, notFound("InvalidGroup.NotFound", "security group", g)
		}
		if sg.vpc != sn.vpc {
			return nil, badRequest("InvalidParameter", "Security group %s and subnet %s belong to different networks.", g, sn.id)
		}
	}
	if len(groups) == 0 {
		for _, sg := range s.ec2.groups {
			if sg.vpc == sn.vpc && sg.name == "default" {
				groups = []string{sg.id}
			}
		}
	}
	t, err := tagsFrom(p, "network-interface")
	if err != nil {
		return nil, err
	}
	n := &networkInterface{id: s.id("eni"), subnet: sn.id, vpc: sn.vpc, az: sn.az, description: p.get("Description"),
		groups: groups, tags: t}
	if ip := p.get("PrivateIpAddress"); ip != "" {
		if n.addr, err = sn.take(ip, n.id); err != nil {
			return nil, err
		}
	} else if n.addr, err = sn.allocate(n.id); err != nil {
		return nil, err
	}
	s.ec2.enis[n.id] = n
	s.ec2.remember("CreateNetworkInterface", p, n.id)
	return answer(n), nil
}

func (s *Server) describeNetworkInterfaces(p params) (any, error) {
	fs := filtersFrom(p)
	ids := p.list("NetworkInterfaceId")
	for _, id := range ids {
		if _, ok := s.ec2.enis[id]; !ok {
			return nil, notFound("InvalidNetworkInterfaceID.NotFound", "network interface ID", id)
		}
	}
	var out []xmlENI
	for _, id := range sortedKeys(s.ec2.enis) {
		n := s.ec2.enis[id]
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		x := s.eniXML(n)
		attrs := map[string][]string{"network-interface-id": {n.id}, "subnet-id": {n.subnet}, "vpc-id": {n.vpc},
			"availability-zone": {n.az}, "status": {x.Status}, "private-ip-address": {n.addr.String()},
			"addresses.private-ip-address": {n.addr.String()}, "group-id": n.groups, "description": {n.description},
			"attachment.instance-id": {n.instance}}
		ok, err := match(fs, n.tags, attrs)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, x)
		}
	}
	from, to, next, err := page(p, len(out))
	if err != nil {
		return nil, err
	}
	// Time passes: instances shutting down finish, and their interfaces come off them.
	for _, in := range s.ec2.instances {
		if in.State == "shutting-down" {
			s.terminated(in)
		}
	}
	return &struct {
		ec2Meta
		ENIs []xmlENI `xml:"networkInterfaceSet>item"`
		Next string   `xml:"nextToken,omitempty"`
	}{ENIs: out[from:to], Next: next}, nil
}

func (s *Server) deleteNetworkInterface(p params) (any, error) {
	id := p.get("NetworkInterfaceId")
	n, ok := s.ec2.enis[id]
	if !ok {
		return nil, notFound("InvalidNetworkInterfaceID.NotFound", "network interface ID", id)
	}
	if n.instance != "" {
		return nil, badRequest("InvalidNetworkInterface.InUse", "Interface: [%s] in use.", id)
	}
	if sn := s.ec2.subnets[n.subnet]; sn != nil {
		sn.release(n.addr)
	}
	delete(s.ec2.enis, id)
	return okReturn(), nil
}

// attach attaches the interface id to instance in as its primary interface, as RunInstances does
// with NetworkInterface.1.NetworkInterfaceId: the instance takes its subnet, groups and address.
func (s *Server) attach(id string, in *Instance) error {
	n, ok := s.ec2.enis[id]
	if !ok {
		return notFound("InvalidNetworkInterfaceID.NotFound", "network interface ID", id)
	}
	if n.instance != "" {
		return badRequest("InvalidNetworkInterface.InUse", "Interface: [%s] in use.", id)
	}
	n.instance, n.attachment = in.ID, s.id("eni-attach")
	in.SubnetID, in.VPCID, in.SecurityGroups, in.PrivateIP = n.subnet, n.vpc, slices.Clone(n.groups), n.addr.String()
	in.NetworkInterface = n.id
	return nil
}

// terminated ends an instance: an interface it was launched with is detached and stays (EC2's
// DeleteOnTermination is false for an interface that existed before the instance), and the address
// of a primary interface RunInstances made goes back to its subnet.
func (s *Server) terminated(in *Instance) {
	in.State = "terminated"
	if n := s.ec2.enis[in.NetworkInterface]; n != nil && n.instance == in.ID {
		n.instance, n.attachment = "", ""
		return
	}
	if sn := s.ec2.subnets[in.SubnetID]; sn != nil {
		if a, err := netip.ParseAddr(in.PrivateIP); err == nil && sn.used[a] == in.ID {
			sn.release(a)
		}
	}
}

// NetworkInterface is an elastic network interface made by CreateNetworkInterface.
type NetworkInterface struct {
	ID, SubnetID, VPCID, PrivateIP string
	SecurityGroups                 []string
	// Instance it is attached to, empty while it is available.
	Instance string
	Tags     map[string]string
}

// NetworkInterfaces returns every network interface made by CreateNetworkInterface, sorted by ID.
func (s *Server) NetworkInterfaces() []NetworkInterface {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []NetworkInterface
	for _, id := range sortedKeys(s.ec2.enis) {
		n := s.ec2.enis[id]
		out = append(out, NetworkInterface{ID: id, SubnetID: n.subnet, VPCID: n.vpc, PrivateIP: n.addr.String(),
			SecurityGroups: slices.Clone(n.groups), Instance: n.instance, Tags: n.tags.clone()})
	}
	return out
}
