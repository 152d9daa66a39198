package awstest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// UserDataLimit is the most bytes of user-data EC2 takes (before base64).
const UserDataLimit = 16 << 10

type ec2State struct {
	vpcs      map[string]*vpc
	subnets   map[string]*subnet
	igws      map[string]*igw
	addresses map[string]*address
	nats      map[string]*natGateway
	tables    map[string]*routeTable
	groups    map[string]*securityGroup
	instances map[string]*Instance
	// order keeps instances in creation order for stable pages.
	order  []string
	tokens map[string]clientToken
	// images maps an AMI ID to its root device name.
	images map[string]string
	// created maps ACTION/TOKEN to the fingerprint and ID of what a create with a client token made.
	created map[string][2]string
}

func (e *ec2State) init() {
	e.vpcs = map[string]*vpc{}
	e.subnets = map[string]*subnet{}
	e.igws = map[string]*igw{}
	e.addresses = map[string]*address{}
	e.nats = map[string]*natGateway{}
	e.tables = map[string]*routeTable{}
	e.groups = map[string]*securityGroup{}
	e.instances = map[string]*Instance{}
	e.tokens = map[string]clientToken{}
	e.images = map[string]string{}
	e.created = map[string][2]string{}
}

// idempotent looks a create's client token up: the ID it made before, IdempotentParameterMismatch for
// the same token with other parameters, or "" for a new token. remember records a new one.
func (e *ec2State) idempotent(action string, p params) (string, error) {
	token := p.get("ClientToken")
	if token == "" {
		return "", nil
	}
	if len(token) > 64 {
		return "", badRequest("InvalidParameterValue", "ClientToken is longer than 64 characters")
	}
	prev, ok := e.created[action+"/"+token]
	if !ok {
		return "", nil
	}
	if prev[0] != fingerprint(p) {
		return "", badRequest("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
	}
	return prev[1], nil
}

func (e *ec2State) remember(action string, p params, id string) {
	if token := p.get("ClientToken"); token != "" {
		e.created[action+"/"+token] = [2]string{fingerprint(p), id}
	}
}

// AddImage registers an AMI that instances can be launched from, with its root device name
// ("/dev/xvda" if empty).
func (s *Server) AddImage(id, rootDevice string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rootDevice == "" {
		rootDevice = "/dev/xvda"
	}
	s.ec2.images[id] = rootDevice
}

type vpc struct {
	id   string
	cidr netip.Prefix
	tags tags
}

type subnet struct {
	id, vpc, az string
	cidr        netip.Prefix
	mapPublicIP bool
	nextIP      int
	tags        tags
}

type igw struct {
	id   string
	vpc  string // attached VPC, or empty
	tags tags
}

type address struct {
	allocation, publicIP, association, nat string
	tags                                   tags
}

type natGateway struct {
	id, vpc, subnet, allocation, state string
	created                            time.Time
	tags                               tags
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

// Rule is one ingress or egress permission of a security group, as the fake keeps it: one source per
// rule.
type Rule struct {
	Protocol string // tcp, udp, icmp, icmpv6, -1
	FromPort int
	ToPort   int
	// One of CIDR, CIDRv6 and Group (a security group ID) is set.
	CIDR, CIDRv6, Group string
	Description         string
}

type securityGroup struct {
	id, name, description, vpc string
	ingress, egress            []Rule
	tags                       tags
}

// Instance is an EC2 instance as the fake keeps it, with what RunInstances asked for.
type Instance struct {
	ID, ImageID, InstanceType, SubnetID, VPCID string
	SecurityGroups                             []string
	PrivateIP, PublicIP                        string
	State                                      string
	Launched                                   time.Time
	ClientToken, Reservation                   string
	Tags                                       map[string]string
	// UserData is the decoded user-data.
	UserData []byte
	// Metadata options: HttpTokens ("required" or "optional"), HttpPutResponseHopLimit, HttpEndpoint.
	HTTPTokens    string
	HopLimit      int
	HTTPEndpoint  string
	RootEncrypted bool
	// BlockDevices asked for, by device name: whether each is encrypted.
	BlockDevices    map[string]bool
	InstanceProfile string

	hidden int
}

type clientToken struct {
	fingerprint string
	reservation string
	ids         []string
}

func (s *Server) ec2Action(action string, p params) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &s.ec2
	switch action {
	case "CreateVpc":
		return s.createVpc(p)
	case "DescribeVpcs":
		return s.describeVpcs(p)
	case "DeleteVpc":
		return s.deleteVpc(p)
	case "CreateSubnet":
		return s.createSubnet(p)
	case "DescribeSubnets":
		return s.describeSubnets(p)
	case "DeleteSubnet":
		return s.deleteSubnet(p)
	case "CreateInternetGateway":
		t, err := tagsFrom(p, "internet-gateway")
		if err != nil {
			return nil, err
		}
		g := &igw{id: s.id("igw"), tags: t}
		e.igws[g.id] = g
		return &struct {
			ec2Meta
			IGW xmlIGW `xml:"internetGateway"`
		}{IGW: g.xml()}, nil
	case "AttachInternetGateway", "DetachInternetGateway", "DeleteInternetGateway":
		return s.internetGateway(action, p)
	case "DescribeInternetGateways":
		return s.describeInternetGateways(p)
	case "AllocateAddress":
		t, err := tagsFrom(p, "elastic-ip")
		if err != nil {
			return nil, err
		}
		a := &address{allocation: s.id("eipalloc"), publicIP: fmt.Sprintf("198.51.100.%d", len(e.addresses)+1), tags: t}
		e.addresses[a.allocation] = a
		return &struct {
			ec2Meta
			AllocationID string `xml:"allocationId"`
			PublicIP     string `xml:"publicIp"`
			Domain       string `xml:"domain"`
		}{AllocationID: a.allocation, PublicIP: a.publicIP, Domain: "vpc"}, nil
	case "DescribeAddresses":
		return s.describeAddresses(p)
	case "ReleaseAddress":
		a, ok := e.addresses[p.get("AllocationId")]
		if !ok {
			return nil, badRequest("InvalidAllocationID.NotFound", "The allocation ID '%s' does not exist", p.get("AllocationId"))
		}
		if a.association != "" {
			return nil, badRequest("InvalidIPAddress.InUse", "Address %s is in use", a.publicIP)
		}
		delete(e.addresses, a.allocation)
		return &struct {
			ec2Meta
			Return bool `xml:"return"`
		}{Return: true}, nil
	case "CreateNatGateway":
		return s.createNatGateway(p)
	case "DescribeNatGateways":
		return s.describeNatGateways(p)
	case "DeleteNatGateway":
		n, ok := e.nats[p.get("NatGatewayId")]
		if !ok || n.state == "deleted" {
			return nil, badRequest("NatGatewayNotFound", "NAT gateway %s was not found", p.get("NatGatewayId"))
		}
		n.state = "deleting"
		return &struct {
			ec2Meta
			ID string `xml:"natGatewayId"`
		}{ID: n.id}, nil
	case "CreateRouteTable":
		return s.createRouteTable(p)
	case "DescribeRouteTables":
		return s.describeRouteTables(p)
	case "CreateRoute", "AssociateRouteTable", "DisassociateRouteTable", "DeleteRouteTable":
		return s.routeTableAction(action, p)
	case "CreateSecurityGroup":
		return s.createSecurityGroup(p)
	case "DescribeSecurityGroups":
		return s.describeSecurityGroups(p)
	case "AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress":
		return s.changeIngress(action, p)
	case "DeleteSecurityGroup":
		return s.deleteSecurityGroup(p)
	case "RunInstances":
		return s.runInstances(p)
	case "DescribeInstances":
		return s.describeInstances(p)
	case "DescribeImages":
		type image struct {
			ID         string `xml:"imageId"`
			State      string `xml:"imageState"`
			RootDevice string `xml:"rootDeviceName"`
			RootType   string `xml:"rootDeviceType"`
			Owner      string `xml:"imageOwnerId"`
		}
		var out []image
		for _, id := range p.list("ImageId") {
			root, ok := e.images[id]
			if !ok {
				return nil, badRequest("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
			}
			out = append(out, image{ID: id, State: "available", RootDevice: root, RootType: "ebs", Owner: AccountID})
		}
		return &struct {
			ec2Meta
			Images []image `xml:"imagesSet>item"`
		}{Images: out}, nil
	case "TerminateInstances", "StopInstances":
		return s.changeInstances(action, p)
	}
	return nil, badRequest("InvalidAction", "The action %s is not valid for this web service.", action)
}

type ok struct {
	ec2Meta
	Return bool `xml:"return"`
}

func okReturn() *ok { return &ok{Return: true} }

func notFound(code, what, id string) error {
	return badRequest(code, "The %s '%s' does not exist", what, id)
}

// ---- VPCs

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

func parseCIDR(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p != p.Masked() {
		return netip.Prefix{}, badRequest("InvalidParameterValue", "Value (%s) for parameter %s is invalid. This is not a valid CIDR block.", s, field)
	}
	return p, nil
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

// ---- Subnets

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
		MapPublicIP: sn.mapPublicIP, Available: (1 << (32 - sn.cidr.Bits())) - 5 - sn.nextIP, Tags: sn.tags.xml()}
}

func overlaps(a, b netip.Prefix) bool { return a.Overlaps(b) }

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
	sn := &subnet{id: s.id("subnet"), vpc: v.id, az: az, cidr: cidr, tags: t}
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

// ---- Internet gateways

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

func (s *Server) internetGateway(action string, p params) (any, error) {
	g, ok := s.ec2.igws[p.get("InternetGatewayId")]
	if !ok {
		return nil, notFound("InvalidInternetGatewayID.NotFound", "internetGateway ID", p.get("InternetGatewayId"))
	}
	switch action {
	case "AttachInternetGateway":
		if _, ok := s.ec2.vpcs[p.get("VpcId")]; !ok {
			return nil, notFound("InvalidVpcID.NotFound", "vpc ID", p.get("VpcId"))
		}
		if g.vpc != "" {
			return nil, badRequest("Resource.AlreadyAssociated", "resource %s is already attached to network %s", g.id, g.vpc)
		}
		g.vpc = p.get("VpcId")
	case "DetachInternetGateway":
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
	case "DeleteInternetGateway":
		if g.vpc != "" {
			return nil, badRequest("DependencyViolation", "The internetGateway '%s' has dependencies and cannot be deleted.", g.id)
		}
		delete(s.ec2.igws, g.id)
	}
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

// ---- Elastic IPs

type xmlAddress struct {
	AllocationID  string   `xml:"allocationId"`
	PublicIP      string   `xml:"publicIp"`
	Domain        string   `xml:"domain"`
	AssociationID string   `xml:"associationId,omitempty"`
	Tags          []xmlTag `xml:"tagSet>item"`
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

// ---- NAT gateways

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

const timeFormat = "2006-01-02T15:04:05.000Z"

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

// ---- Route tables

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

func (s *Server) routeTableAction(action string, p params) (any, error) {
	if action == "DisassociateRouteTable" {
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
	rt, ok := s.ec2.tables[p.get("RouteTableId")]
	if !ok {
		return nil, notFound("InvalidRouteTableID.NotFound", "routeTable ID", p.get("RouteTableId"))
	}
	switch action {
	case "CreateRoute":
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
	case "AssociateRouteTable":
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
	case "DeleteRouteTable":
		if len(rt.associations) > 0 {
			return nil, badRequest("DependencyViolation", "The routeTable '%s' has dependencies and cannot be deleted.", rt.id)
		}
		delete(s.ec2.tables, rt.id)
		return okReturn(), nil
	}
	return nil, badRequest("InvalidAction", "The action %s is not valid for this web service.", action)
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

// ---- Security groups

type xmlPermission struct {
	Protocol string      `xml:"ipProtocol"`
	FromPort *int        `xml:"fromPort,omitempty"`
	ToPort   *int        `xml:"toPort,omitempty"`
	Groups   []xmlPair   `xml:"groups>item"`
	Ranges   []xmlRange  `xml:"ipRanges>item"`
	Ranges6  []xmlRange6 `xml:"ipv6Ranges>item"`
}

type xmlPair struct {
	GroupID     string `xml:"groupId"`
	UserID      string `xml:"userId"`
	Description string `xml:"description,omitempty"`
}

type xmlRange struct {
	CIDR        string `xml:"cidrIp"`
	Description string `xml:"description,omitempty"`
}

type xmlRange6 struct {
	CIDR        string `xml:"cidrIpv6"`
	Description string `xml:"description,omitempty"`
}

type xmlGroup struct {
	ID          string          `xml:"groupId"`
	Name        string          `xml:"groupName"`
	Description string          `xml:"groupDescription"`
	VpcID       string          `xml:"vpcId"`
	OwnerID     string          `xml:"ownerId"`
	Ingress     []xmlPermission `xml:"ipPermissions>item"`
	Egress      []xmlPermission `xml:"ipPermissionsEgress>item"`
	Tags        []xmlTag        `xml:"tagSet>item"`
}

// permissionsXML groups rules by protocol and ports, as EC2 does.
func permissionsXML(rules []Rule) []xmlPermission {
	var out []xmlPermission
	index := map[string]int{}
	for _, r := range rules {
		key := fmt.Sprintf("%s/%d/%d", r.Protocol, r.FromPort, r.ToPort)
		i, ok := index[key]
		if !ok {
			perm := xmlPermission{Protocol: r.Protocol}
			if r.Protocol != "-1" {
				from, to := r.FromPort, r.ToPort
				perm.FromPort, perm.ToPort = &from, &to
			}
			out = append(out, perm)
			i = len(out) - 1
			index[key] = i
		}
		switch {
		case r.Group != "":
			out[i].Groups = append(out[i].Groups, xmlPair{GroupID: r.Group, UserID: AccountID, Description: r.Description})
		case r.CIDRv6 != "":
			out[i].Ranges6 = append(out[i].Ranges6, xmlRange6{CIDR: r.CIDRv6, Description: r.Description})
		default:
			out[i].Ranges = append(out[i].Ranges, xmlRange{CIDR: r.CIDR, Description: r.Description})
		}
	}
	return out
}

func (sg *securityGroup) xml() xmlGroup {
	return xmlGroup{ID: sg.id, Name: sg.name, Description: sg.description, VpcID: sg.vpc, OwnerID: AccountID,
		Ingress: permissionsXML(sg.ingress), Egress: permissionsXML(sg.egress), Tags: sg.tags.xml()}
}

func (s *Server) createSecurityGroup(p params) (any, error) {
	v, ok := s.ec2.vpcs[p.get("VpcId")]
	if !ok {
		return nil, notFound("InvalidVpcID.NotFound", "vpc ID", p.get("VpcId"))
	}
	name := p.get("GroupName")
	if name == "" || strings.HasPrefix(name, "sg-") || len(name) > 255 {
		return nil, badRequest("InvalidParameterValue", "Invalid security group name %q", name)
	}
	if d := p.get("GroupDescription"); d == "" || len(d) > 255 {
		return nil, badRequest("InvalidParameterValue", "GroupDescription must be 1 to 255 characters")
	}
	for _, sg := range s.ec2.groups {
		if sg.vpc == v.id && sg.name == name {
			return nil, badRequest("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, v.id)
		}
	}
	t, err := tagsFrom(p, "security-group")
	if err != nil {
		return nil, err
	}
	sg := &securityGroup{id: s.id("sg"), name: name, description: p.get("GroupDescription"), vpc: v.id, tags: t,
		egress: []Rule{{Protocol: "-1", CIDR: "0.0.0.0/0"}}}
	s.ec2.groups[sg.id] = sg
	return &struct {
		ec2Meta
		ID   string   `xml:"groupId"`
		Tags []xmlTag `xml:"tagSet>item"`
	}{ID: sg.id, Tags: sg.tags.xml()}, nil
}

func (s *Server) describeSecurityGroups(p params) (any, error) {
	fs := filtersFrom(p)
	ids := p.list("GroupId")
	var out []xmlGroup
	for _, id := range sortedKeys(s.ec2.groups) {
		sg := s.ec2.groups[id]
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		ok, err := match(fs, sg.tags, map[string][]string{"vpc-id": {sg.vpc}, "group-name": {sg.name}, "group-id": {sg.id}})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, sg.xml())
		}
	}
	for _, id := range ids {
		if _, ok := s.ec2.groups[id]; !ok {
			return nil, notFound("InvalidGroup.NotFound", "security group", id)
		}
	}
	from, to, next, err := page(p, len(out))
	if err != nil {
		return nil, err
	}
	return &struct {
		ec2Meta
		Groups []xmlGroup `xml:"securityGroupInfo>item"`
		Next   string     `xml:"nextToken,omitempty"`
	}{Groups: out[from:to], Next: next}, nil
}

// rulesFrom reads IpPermissions.N into one rule per source.
func (s *Server) rulesFrom(p params, vpcID string) ([]Rule, error) {
	var out []Rule
	for _, perm := range p.items("IpPermissions") {
		proto := perm.get("IpProtocol")
		switch proto {
		case "tcp", "udp", "icmp", "icmpv6", "-1":
		case "6":
			proto = "tcp"
		case "17":
			proto = "udp"
		case "1":
			proto = "icmp"
		default:
			return nil, badRequest("InvalidParameterValue", "Invalid value '%s' for IP protocol.", proto)
		}
		from, err := perm.int("FromPort", -1)
		if err != nil {
			return nil, err
		}
		to, err := perm.int("ToPort", -1)
		if err != nil {
			return nil, err
		}
		if proto == "tcp" || proto == "udp" {
			if from < 0 || to > 65535 || from > to {
				return nil, badRequest("InvalidParameterValue", "Invalid port range %d-%d for %s", from, to, proto)
			}
		}
		base := Rule{Protocol: proto, FromPort: from, ToPort: to}
		n := 0
		for _, r := range perm.items("IpRanges") {
			c, err := parseCIDR("cidrIp", r.get("CidrIp"))
			if err != nil {
				return nil, err
			}
			rule := base
			rule.CIDR, rule.Description = c.String(), r.get("Description")
			out = append(out, rule)
			n++
		}
		for _, r := range perm.items("Ipv6Ranges") {
			c, err := netip.ParsePrefix(r.get("CidrIpv6"))
			if err != nil || !c.Addr().Is6() {
				return nil, badRequest("InvalidParameterValue", "Value (%s) for parameter cidrIpv6 is invalid", r.get("CidrIpv6"))
			}
			rule := base
			rule.CIDRv6, rule.Description = c.String(), r.get("Description")
			out = append(out, rule)
			n++
		}
		for _, g := range perm.items("Groups") {
			src, ok := s.ec2.groups[g.get("GroupId")]
			if !ok {
				return nil, notFound("InvalidGroup.NotFound", "security group", g.get("GroupId"))
			}
			if src.vpc != vpcID {
				return nil, badRequest("InvalidParameterValue", "security group %s is in another VPC", src.id)
			}
			rule := base
			rule.Group, rule.Description = src.id, g.get("Description")
			out = append(out, rule)
			n++
		}
		if n == 0 {
			return nil, badRequest("MissingParameter", "a permission needs a source (IpRanges, Ipv6Ranges or Groups)")
		}
	}
	if len(out) == 0 {
		return nil, badRequest("MissingParameter", "The request must contain the parameter ipPermissions")
	}
	return out, nil
}

func sameRule(a, b Rule) bool {
	return a.Protocol == b.Protocol && a.FromPort == b.FromPort && a.ToPort == b.ToPort &&
		a.CIDR == b.CIDR && a.CIDRv6 == b.CIDRv6 && a.Group == b.Group
}

func (s *Server) changeIngress(action string, p params) (any, error) {
	sg, ok := s.ec2.groups[p.get("GroupId")]
	if !ok {
		return nil, notFound("InvalidGroup.NotFound", "security group", p.get("GroupId"))
	}
	rules, err := s.rulesFrom(p, sg.vpc)
	if err != nil {
		return nil, err
	}
	if action == "AuthorizeSecurityGroupIngress" {
		for _, r := range rules {
			if slices.ContainsFunc(sg.ingress, func(h Rule) bool { return sameRule(h, r) }) {
				return nil, badRequest("InvalidPermission.Duplicate", "the specified rule \"peer: %s%s%s, %s, from port: %d, to port: %d, ALLOW\" already exists", r.CIDR, r.CIDRv6, r.Group, r.Protocol, r.FromPort, r.ToPort)
			}
		}
		sg.ingress = append(sg.ingress, rules...)
		return okReturn(), nil
	}
	for _, r := range rules {
		i := slices.IndexFunc(sg.ingress, func(h Rule) bool { return sameRule(h, r) })
		if i < 0 {
			return nil, badRequest("InvalidPermission.NotFound", "The specified rule does not exist in this security group.")
		}
		sg.ingress = slices.Delete(sg.ingress, i, i+1)
	}
	return okReturn(), nil
}

func (s *Server) deleteSecurityGroup(p params) (any, error) {
	sg, ok := s.ec2.groups[p.get("GroupId")]
	if !ok {
		return nil, notFound("InvalidGroup.NotFound", "security group", p.get("GroupId"))
	}
	if sg.name == "default" {
		return nil, badRequest("CannotDelete", "the default security group cannot be deleted")
	}
	for _, other := range s.ec2.groups {
		if other.id == sg.id {
			continue
		}
		for _, r := range append(append([]Rule(nil), other.ingress...), other.egress...) {
			if r.Group == sg.id {
				return nil, badRequest("DependencyViolation", "resource %s has a dependent object (rule of %s)", sg.id, other.id)
			}
		}
	}
	for _, in := range s.ec2.instances {
		if in.State != "terminated" && slices.Contains(in.SecurityGroups, sg.id) {
			return nil, badRequest("DependencyViolation", "resource %s has a dependent object (instance %s)", sg.id, in.ID)
		}
	}
	for _, lb := range s.elb.lbs {
		if slices.Contains(lb.groups, sg.id) {
			return nil, badRequest("DependencyViolation", "resource %s has a dependent object (load balancer %s)", sg.id, lb.name)
		}
	}
	delete(s.ec2.groups, sg.id)
	return okReturn(), nil
}

// ---- Instances

var stateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

type xmlState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type xmlInstance struct {
	ID           string        `xml:"instanceId"`
	ImageID      string        `xml:"imageId"`
	State        xmlState      `xml:"instanceState"`
	PrivateIP    string        `xml:"privateIpAddress,omitempty"`
	PublicIP     string        `xml:"ipAddress,omitempty"`
	InstanceType string        `xml:"instanceType"`
	LaunchTime   string        `xml:"launchTime"`
	SubnetID     string        `xml:"subnetId"`
	VpcID        string        `xml:"vpcId"`
	ClientToken  string        `xml:"clientToken,omitempty"`
	Groups       []xmlGroupID  `xml:"groupSet>item"`
	Metadata     xmlMetadata   `xml:"metadataOptions"`
	Profile      *xmlProfile   `xml:"iamInstanceProfile,omitempty"`
	Devices      []xmlBlockDev `xml:"blockDeviceMapping>item"`
	Tags         []xmlTag      `xml:"tagSet>item"`
}

type xmlGroupID struct {
	ID string `xml:"groupId"`
}

type xmlMetadata struct {
	State    string `xml:"state"`
	Tokens   string `xml:"httpTokens"`
	HopLimit int    `xml:"httpPutResponseHopLimit"`
	Endpoint string `xml:"httpEndpoint"`
}

type xmlProfile struct {
	ARN string `xml:"arn"`
	ID  string `xml:"id"`
}

type xmlBlockDev struct {
	Device string `xml:"deviceName"`
	Volume string `xml:"ebs>volumeId"`
	Status string `xml:"ebs>status"`
}

func (in *Instance) xml() xmlInstance {
	x := xmlInstance{ID: in.ID, ImageID: in.ImageID, State: xmlState{Code: stateCodes[in.State], Name: in.State},
		PrivateIP: in.PrivateIP, PublicIP: in.PublicIP, InstanceType: in.InstanceType,
		LaunchTime: in.Launched.UTC().Format(timeFormat), SubnetID: in.SubnetID, VpcID: in.VPCID, ClientToken: in.ClientToken,
		Metadata: xmlMetadata{State: "applied", Tokens: in.HTTPTokens, HopLimit: in.HopLimit, Endpoint: in.HTTPEndpoint},
		Tags:     tags(in.Tags).xml()}
	for _, g := range in.SecurityGroups {
		x.Groups = append(x.Groups, xmlGroupID{ID: g})
	}
	if in.InstanceProfile != "" {
		x.Profile = &xmlProfile{ARN: "arn:aws:iam::" + AccountID + ":instance-profile/" + in.InstanceProfile, ID: "AIPAKILN" + strings.ToUpper(in.ID[2:10])}
	}
	for _, d := range sortedKeys(in.BlockDevices) {
		x.Devices = append(x.Devices, xmlBlockDev{Device: d, Volume: "vol-" + in.ID[2:], Status: "attached"})
	}
	return x
}

type xmlReservation struct {
	ID        string        `xml:"reservationId"`
	OwnerID   string        `xml:"ownerId"`
	Instances []xmlInstance `xml:"instancesSet>item"`
}

// fingerprint is what makes two RunInstances calls "the same request" for a client token: every
// parameter but the token itself.
func fingerprint(p params) string {
	var keys []string
	for k := range p {
		if k != "ClientToken" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%q\n", k, p[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Server) runInstances(p params) (any, error) {
	token := p.get("ClientToken")
	if len(token) > 64 {
		return nil, badRequest("InvalidParameterValue", "ClientToken is longer than 64 characters")
	}
	if token != "" {
		if prev, ok := s.ec2.tokens[token]; ok {
			if prev.fingerprint != fingerprint(p) {
				return nil, badRequest("IdempotentParameterMismatch", "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
			}
			return s.reservation(prev.reservation, prev.ids), nil
		}
	}
	in, err := s.instanceFrom(p)
	if err != nil {
		return nil, err
	}
	in.ID = s.id("i")
	in.Reservation = s.id("r")
	in.ClientToken = token
	in.State = "pending"
	in.Launched = s.now()
	in.hidden = s.faults.HideNewInstances
	s.ec2.instances[in.ID] = in
	s.ec2.order = append(s.ec2.order, in.ID)
	if token != "" {
		s.ec2.tokens[token] = clientToken{fingerprint: fingerprint(p), reservation: in.Reservation, ids: []string{in.ID}}
	}
	if hook := s.faults.AfterRunInstances; hook != nil {
		// The hook may call back into the fake; let it.
		s.mu.Unlock()
		err := hook([]string{in.ID})
		s.mu.Lock()
		if err != nil {
			return nil, dropConnection{}
		}
	}
	return s.reservation(in.Reservation, []string{in.ID}), nil
}

func (s *Server) reservation(id string, ids []string) any {
	r := xmlReservation{ID: id, OwnerID: AccountID}
	for _, i := range ids {
		r.Instances = append(r.Instances, s.ec2.instances[i].xml())
	}
	return &struct {
		ec2Meta
		xmlReservation
	}{xmlReservation: r}
}

// instanceFrom checks RunInstances' parameters and builds the instance they ask for.
func (s *Server) instanceFrom(p params) (*Instance, error) {
	in := &Instance{ImageID: p.get("ImageId"), InstanceType: p.get("InstanceType"), BlockDevices: map[string]bool{}}
	if !strings.HasPrefix(in.ImageID, "ami-") {
		return nil, badRequest("InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")", in.ImageID)
	}
	root, ok := s.ec2.images[in.ImageID]
	if !ok {
		return nil, badRequest("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", in.ImageID)
	}
	if in.InstanceType == "" {
		in.InstanceType = "m1.small"
	}
	minCount, err := p.int("MinCount", 0)
	if err != nil {
		return nil, err
	}
	maxCount, err := p.int("MaxCount", 0)
	if err != nil {
		return nil, err
	}
	if minCount != 1 || maxCount != 1 {
		return nil, badRequest("InvalidParameterValue", "the fake makes one instance per call (MinCount=%d, MaxCount=%d)", minCount, maxCount)
	}
	subnetID := p.get("SubnetId")
	groups := p.list("SecurityGroupId")
	var publicIP *bool
	if nis := p.items("NetworkInterface"); len(nis) > 0 {
		if len(nis) > 1 || subnetID != "" || len(groups) > 0 {
			return nil, badRequest("InvalidParameterCombination", "Network interfaces and an instance-level subnet ID or security groups may not be specified on the same request")
		}
		ni := nis[0]
		if ni.get("DeviceIndex") != "0" {
			return nil, badRequest("InvalidParameterValue", "the primary network interface has DeviceIndex 0")
		}
		subnetID, groups = ni.get("SubnetId"), ni.list("SecurityGroupId")
		if v := ni.get("AssociatePublicIpAddress"); v != "" {
			b := v == "true"
			publicIP = &b
		}
	}
	sn, ok := s.ec2.subnets[subnetID]
	if !ok {
		return nil, notFound("InvalidSubnetID.NotFound", "subnet ID", subnetID)
	}
	in.SubnetID, in.VPCID = sn.id, sn.vpc
	for _, g := range groups {
		sg, ok := s.ec2.groups[g]
		if !ok {
			return nil, notFound("InvalidGroup.NotFound", "security group", g)
		}
		if sg.vpc != sn.vpc {
			return nil, badRequest("InvalidParameter", "Security group %s and subnet %s belong to different networks.", g, sn.id)
		}
	}
	in.SecurityGroups = groups
	if ud := p.get("UserData"); ud != "" {
		raw, err := base64.StdEncoding.DecodeString(ud)
		if err != nil {
			return nil, badRequest("InvalidParameterValue", "Invalid BASE64 encoding of user data.")
		}
		if len(raw) > UserDataLimit {
			return nil, badRequest("InvalidParameterValue", "User data is limited to %d bytes", UserDataLimit)
		}
		in.UserData = raw
	}
	in.HTTPTokens, in.HopLimit, in.HTTPEndpoint = "optional", 1, "enabled"
	if md := p.sub("MetadataOptions"); len(md) > 0 {
		if v := md.get("HttpTokens"); v != "" {
			if v != "required" && v != "optional" {
				return nil, badRequest("InvalidParameterValue", "Invalid HttpTokens %q", v)
			}
			in.HTTPTokens = v
		}
		if in.HopLimit, err = md.int("HttpPutResponseHopLimit", 1); err != nil {
			return nil, err
		}
		if v := md.get("HttpEndpoint"); v != "" {
			in.HTTPEndpoint = v
		}
	}
	for _, bd := range p.items("BlockDeviceMapping") {
		dev := bd.get("DeviceName")
		if dev == "" {
			return nil, badRequest("MissingParameter", "BlockDeviceMapping needs a DeviceName")
		}
		in.BlockDevices[dev] = bd.get("Ebs.Encrypted") == "true"
	}
	if _, ok := in.BlockDevices[root]; !ok {
		in.BlockDevices[root] = false // the AMI's root device, unencrypted unless asked
	}
	in.RootEncrypted = in.BlockDevices[root]
	if name := p.get("IamInstanceProfile.Name"); name != "" {
		in.InstanceProfile = name
	} else if arn := p.get("IamInstanceProfile.Arn"); arn != "" {
		in.InstanceProfile = arn[strings.LastIndex(arn, "/")+1:]
	}
	t, err := tagsFrom(p.withoutTagSpecs("volume"), "instance")
	if err != nil {
		return nil, err
	}
	in.Tags = t
	// Private address: the subnet's next free one past the 4 AWS reserves (and the last one).
	if 4+sn.nextIP+1 >= 1<<(32-sn.cidr.Bits()) {
		return nil, badRequest("InsufficientFreeAddressesInSubnet", "There are not enough free addresses in subnet '%s' to satisfy the requested number of instances.", sn.id)
	}
	sn.nextIP++
	addr := sn.cidr.Addr()
	for range 3 + sn.nextIP {
		addr = addr.Next()
	}
	in.PrivateIP = addr.String()
	if (publicIP != nil && *publicIP) || (publicIP == nil && sn.mapPublicIP) {
		in.PublicIP = "203.0.113." + strconv.Itoa(len(s.ec2.instances)%250+1)
	}
	return in, nil
}

// withoutTagSpecs drops the TagSpecification entries of a resource type (volumes, tagged alike).
func (p params) withoutTagSpecs(resourceType string) params {
	out := params{}
	for k, v := range p {
		out[k] = v
	}
	for _, n := range func() []int { _, idx := p.indexes("TagSpecification"); return idx }() {
		prefix := "TagSpecification." + strconv.Itoa(n)
		if p.get(prefix+".ResourceType") == resourceType {
			for k := range p {
				if strings.HasPrefix(k, prefix+".") {
					delete(out, k)
				}
			}
		}
	}
	return out
}

func (s *Server) describeInstances(p params) (any, error) {
	fs := filtersFrom(p)
	ids := p.list("InstanceId")
	if len(ids) > 0 && p.has("MaxResults") {
		return nil, badRequest("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
	}
	var match1 []*Instance
	for _, id := range s.ec2.order {
		in := s.ec2.instances[id]
		if in.hidden > 0 {
			continue
		}
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		attrs := map[string][]string{"instance-id": {in.ID}, "instance-state-name": {in.State}, "client-token": {in.ClientToken},
			"subnet-id": {in.SubnetID}, "vpc-id": {in.VPCID}, "image-id": {in.ImageID}, "private-ip-address": {in.PrivateIP}}
		ok, err := match(fs, in.Tags, attrs)
		if err != nil {
			return nil, err
		}
		if ok {
			match1 = append(match1, in)
		}
	}
	for _, id := range ids {
		if _, ok := s.ec2.instances[id]; !ok {
			return nil, notFound("InvalidInstanceID.NotFound", "instance ID", id)
		}
	}
	from, to, next, err := page(p, len(match1))
	if err != nil {
		return nil, err
	}
	var res []xmlReservation
	byID := map[string]int{}
	for _, in := range match1[from:to] {
		i, ok := byID[in.Reservation]
		if !ok {
			res = append(res, xmlReservation{ID: in.Reservation, OwnerID: AccountID})
			i = len(res) - 1
			byID[in.Reservation] = i
		}
		res[i].Instances = append(res[i].Instances, in.xml())
	}
	// Time passes: hidden instances come closer to showing, transitions settle.
	for _, in := range s.ec2.instances {
		if in.hidden > 0 {
			in.hidden--
			continue
		}
		switch in.State {
		case "pending":
			in.State = "running"
		case "stopping":
			in.State = "stopped"
		case "shutting-down":
			in.State = "terminated"
		}
	}
	return &struct {
		ec2Meta
		Reservations []xmlReservation `xml:"reservationSet>item"`
		Next         string           `xml:"nextToken,omitempty"`
	}{Reservations: res, Next: next}, nil
}

type xmlStateChange struct {
	ID       string   `xml:"instanceId"`
	Current  xmlState `xml:"currentState"`
	Previous xmlState `xml:"previousState"`
}

func (s *Server) changeInstances(action string, p params) (any, error) {
	ids := p.list("InstanceId")
	if len(ids) == 0 {
		return nil, badRequest("MissingParameter", "The request must contain the parameter InstanceId")
	}
	for _, id := range ids {
		if _, ok := s.ec2.instances[id]; !ok {
			return nil, notFound("InvalidInstanceID.NotFound", "instance ID", id)
		}
	}
	var out []xmlStateChange
	for _, id := range ids {
		in := s.ec2.instances[id]
		prev := in.State
		if action == "StopInstances" {
			switch in.State {
			case "running":
				in.State = "stopping"
			case "stopping", "stopped":
			default:
				return nil, badRequest("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be stopped.", id)
			}
		} else if in.State != "terminated" {
			in.State = "shutting-down"
			s.deregisterEverywhere(id)
		}
		out = append(out, xmlStateChange{ID: id, Current: xmlState{Code: stateCodes[in.State], Name: in.State},
			Previous: xmlState{Code: stateCodes[prev], Name: prev}})
	}
	return &struct {
		ec2Meta
		Changes []xmlStateChange `xml:"instancesSet>item"`
	}{Changes: out}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
